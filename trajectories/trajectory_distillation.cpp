#include "trajectories/trajectory_distillation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "src/config/config_io.h"
#include "src/core/caching_allocator.h"
#include "src/core/error.h"
#include "src/core/random_streams.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/train/optimizer.h"
#include "trajectories/expert_init.h"
#include "trajectories/experts.h"

namespace distill::trajectories {
namespace {

train::OptimizerOptions momentum_sgd(double lr) {
  train::OptimizerOptions o;  // the reference's torch.optim.SGD(momentum=0.5)
  o.name = "sgd";
  o.lr = lr;
  o.momentum = 0.5;
  o.weight_decay = 0.0;
  return o;
}

// Everything an MTT run changes as it goes: what checkpoint.pt holds.
struct MatchingState {
  eval::SyntheticSet set;  // set.images are the learnt pixels; set.labels the class ids
  at::Tensor labels;       // the matcher's labels: class ids, or (DATM) learnable logits
  at::Tensor ema;          // FTD: EMA of the images (undefined when off)
  double lr = 0;           // the learnt student learning rate
  int64_t iteration = 0;   // iterations completed
  int64_t failures = 0;    // consecutive non-finite iterations
  double best_eval = -1;   // best eval_accuracy so far (mtt.eval_every), its set in syn_best.pt
  std::unique_ptr<train::Optimizer> image_optimizer, lr_optimizer, label_optimizer;
};

void checkpoint_fields(io::Checkpoint& c, MatchingState& s) {
  c.tensor("images", s.set.images);
  c.real("lr", s.lr);
  c.integer("iteration", s.iteration);
  c.integer("failures", s.failures);
  c.part("image_optimizer.", *s.image_optimizer);
  c.part("lr_optimizer.", *s.lr_optimizer);
  if (s.labels.is_floating_point()) {
    c.tensor("label_logits", s.labels);
    c.part("label_optimizer.", *s.label_optimizer);
  }
  c.tensor("ema_images", s.ema);
  c.real("best_eval_accuracy", s.best_eval);
}

// What one iteration did, for the driver's log and progress line.
enum class Outcome { kApplied, kAboveMaxLoss, kNonFinite };

// One `distill mtt` run: the experts, the matcher and the state, with one method per part of an
// iteration. run_trajectory_matching drives it.
class MatchingRun {
 public:
  MatchingRun(const MttOptions& options, const data::Dataset& train, const data::Dataset& test,
              const data::Normalization& norm, const std::string& dataset_name, uint64_t seed,
              const std::string& out, bool resume, std::shared_ptr<const dist::ProcessGroup> group);

  MatchingState& state() { return state_; }
  bool resumed() const { return resumed_; }
  bool writer() const { return writer_; }
  const std::string& checkpoint_path() const { return checkpoint_; }

  // One matching iteration: draws the expert segment, computes the meta-gradient and applies it
  // (unless skipped). Logs its metrics; throws RuntimeFailure after too many non-finite ones.
  Outcome step(io::MetricsLog& metrics, double& loss);
  // Students trained on the set as it is now (the saved form: EMA images, soft labels).
  void evaluate(io::MetricsLog& metrics);
  // The set as saved: the EMA of the images when kept (FTD), soft labels as probabilities.
  eval::SyntheticSet current_set() const;
  void write_set() const;
  void write_snapshot() const;
  void save_checkpoint() const;

 private:
  void check_expert_lengths(const std::vector<Trajectory>& experts) const;
  void check_unrolled_memory() const;
  void initialise(bool resume);

  const MttOptions& options_;
  const data::Dataset& train_;
  const data::Dataset& test_;
  const data::Normalization& norm_;
  std::string dataset_name_, out_, checkpoint_;
  uint64_t seed_;
  std::shared_ptr<const dist::ProcessGroup> group_;
  bool writer_, resumed_ = false;
  std::unique_ptr<models::Model> model_;
  std::vector<Trajectory> experts_;
  std::unique_ptr<TrajectoryMatcher> matcher_;
  MatchingState state_;
};

MatchingRun::MatchingRun(const MttOptions& options, const data::Dataset& train,
                         const data::Dataset& test, const data::Normalization& norm,
                         const std::string& dataset_name, uint64_t seed, const std::string& out,
                         bool resume, std::shared_ptr<const dist::ProcessGroup> group)
    : options_(options),
      train_(train),
      test_(test),
      norm_(norm),
      dataset_name_(dataset_name),
      out_(out),
      checkpoint_(out + "/checkpoint.pt"),
      seed_(seed),
      group_(std::move(group)),
      writer_(!group_ || group_->is_main()) {  // the one rank that writes files
  config::check(options, "mtt");  // the declared ranges and rules (MttOptions)
  model_ = models::make_model(options.model, train.channels(), train.height(), train.num_classes);
  experts_ = load_expert_folder(options.buffer, *model_);
  check_expert_lengths(experts_);
  matcher_ = std::make_unique<TrajectoryMatcher>(*model_, options.matching,
                                                 train::make_augment(options.augment, train.height()));
  matcher_->set_process_group(group_, options.dist_split);
  // A run killed after a snapshot (syn.pt) but before its first checkpoint has nothing to
  // continue from: it starts again, as one killed before writing anything does.
  resumed_ = resume && std::filesystem::exists(checkpoint_);
  if (resume && !resumed_ && writer_) {
    std::cerr << "mtt: no checkpoint in '" << out << "' yet: starting from the beginning\n";
  }
  initialise(resumed_);
  // Every meta-gradient runs at least one student step on batch_syn synthetic images (IPC x
  // classes when 0): refused up front when that alone cannot fit, as is an unroll that cannot.
  const int64_t images = state_.set.images.size(0);
  const int64_t batch_syn = options.matching.batch_syn > 0
                                ? std::min(options.matching.batch_syn, images)
                                : images;
  // Ranks measure their own machine's memory: all stop when one refuses (none waits alone in
  // the first iteration's collectives).
  std::string refused;
  try {
    check_unrolled_memory();
    train::check_training_memory(*model_, state_.set.images, batch_syn,
                                 "mtt: ipc = " + std::to_string(options.ipc) +
                                     " with matching.batch_syn = " +
                                     std::to_string(options.matching.batch_syn));
  } catch (const Error& e) {
    refused = e.what();
  }
  if (group_ ? group_->any(!refused.empty()) : !refused.empty()) {
    throw Error(refused.empty() ? "mtt: another rank cannot fit a student step in its memory "
                                  "(its error names the estimate)"
                                : refused);
  }
}

// meta_grad = unroll keeps every student step's graph until the backward pass, so its memory
// grows with syn_steps; a run that cannot fit would allocate until the machine gives up. One and
// two unrolled steps are measured on the real set and model (CPU, through the caching allocator's
// peak; blocks below its threshold are not counted, so this is a lower bound) and extrapolated.
void MatchingRun::check_unrolled_memory() const {
  const MatchingOptions& m = options_.matching;
  const CachingCpuAllocator* allocator = installed_caching_cpu_allocator();
  constexpr int64_t kProbeFrom = 16;  // short unrolls fit anywhere a step fits
  if (m.meta_grad != "unroll" || m.syn_steps < kProbeFrom || !allocator ||
      !state_.set.images.device().is_cpu()) {
    return;
  }
  auto peak_of = [&](int64_t steps) {
    MatchingOptions probe = m;
    probe.syn_steps = steps;
    probe.intermediate = "none";
    TrajectoryMatcher matcher(*model_, probe, train::make_augment(options_.augment, train_.height()));
    MatchingTask task{experts_[0][0], experts_[0][m.expert_epochs], 0};
    const size_t before = allocator->stats().in_use_bytes;
    allocator->reset_peak();
    matcher.meta_gradient(state_.set.images, state_.labels, state_.lr, task);
    return static_cast<double>(allocator->stats().peak_in_use_bytes - before);
  };
  const double one = peak_of(1), two = peak_of(2);
  const double estimate = one + static_cast<double>(m.syn_steps - 1) * std::max(0.0, two - one);
  const MachineMemory memory = machine_memory();
  if (memory.available_bytes > 0 && estimate > memory.available_bytes) {
    auto gib = [](double bytes) { return std::to_string(bytes / (1 << 30)).substr(0, 5) + " GiB"; };
    throw Error("mtt.matching.meta_grad = unroll with syn_steps = " + std::to_string(m.syn_steps) +
                " needs at least " + gib(estimate) + " (measured " + gib(two - one) +
                " per unrolled step), the machine has " + gib(memory.available_bytes) +
                " available of " + gib(memory.total_bytes) +
                "; use meta_grad = adjoint (the same gradient in the memory of one step) or "
                "fewer syn_steps / a smaller batch_syn");
  }
}

void MatchingRun::check_expert_lengths(const std::vector<Trajectory>& experts) const {
  const MatchingOptions& m = options_.matching;
  const int64_t window_end = final_window_end(m);
  for (size_t k = 0; k < experts.size(); ++k) {
    int64_t epochs = static_cast<int64_t>(experts[k].size()) - 1;
    if (window_end < 1 || window_end - 1 + m.expert_epochs > epochs) {
      throw Error("mtt.matching: start epochs up to " + std::to_string(window_end - 1) +
                  " (max_start_epoch/final_max_start_epoch) + expert_epochs " +
                  std::to_string(m.expert_epochs) + " need experts with at least " +
                  std::to_string(window_end - 1 + m.expert_epochs) + " epochs; expert " +
                  std::to_string(k) + " in '" + options_.buffer + "' has " + std::to_string(epochs));
    }
  }
}

void MatchingRun::initialise(bool resume) {
  const MatchingOptions& m = options_.matching;
  // Initial set: class-balanced real images (DATM: ones the experts get right, or noise), class
  // ids as labels.
  at::Generator init_generator = make_generator(seed_, streams::kMttInit);
  const bool by_experts =
      options_.init == "real_correct" || options_.init == "kmeans" || m.soft_labels != "none";
  const std::vector<at::Tensor> label_experts =
      by_experts ? label_parameters(experts_, m.label_epoch, final_window_end(m))
                 : std::vector<at::Tensor>{};
  // A resumed run takes its images (and label logits) from the checkpoint, so only the set's
  // layout (ipc images per class, class-major) is needed: the expert-driven selections (a forward
  // pass over the training set, k-means) are skipped.
  const std::string init = resume ? "real" : options_.init;
  eval::SyntheticSet& set = state_.set;
  if (init == "real_correct") {
    set = eval::Evaluator::real_set(
        train_, norm_,
        correctly_classified_index(*model_, label_experts, train_, options_.ipc, init_generator),
        dataset_name_);
  } else if (init == "kmeans") {
    set = eval::Evaluator::real_set(
        train_, norm_,
        representative_index(*model_, label_experts[0], train_, options_.ipc,
                             options_.kmeans_iterations, init_generator),
        dataset_name_);
  } else {
    set = eval::Evaluator::random_real_set(train_, norm_, options_.ipc, init_generator,
                                           dataset_name_);
  }
  if (init == "noise") set.images = at::randn(set.images.sizes(), init_generator);
  set.method = "mtt";
  // The matcher's labels: class ids, or (DATM) learnable logits from the experts.
  state_.labels = set.labels;
  if (m.soft_labels == "expert") {
    state_.labels = expert_logits(*model_, label_experts[0], set.images);
  }
  if (m.soft_labels == "experts_correct") {
    state_.labels = correct_experts_logits(*model_, label_experts, set.images, set.labels);
  }
  state_.ema = options_.ema_decay > 0 ? set.images.clone() : at::Tensor();
  state_.lr = m.lr_teacher;
  state_.image_optimizer = train::Optimizer::make(momentum_sgd(m.lr_img));
  state_.lr_optimizer = train::Optimizer::make(momentum_sgd(m.lr_lr));
  train::OptimizerOptions label_sgd = momentum_sgd(m.lr_label);
  label_sgd.momentum = m.label_momentum;
  state_.label_optimizer = train::Optimizer::make(label_sgd);
  if (resume) io::load_checkpoint(checkpoint_, state_);
}

Outcome MatchingRun::step(io::MetricsLog& metrics, double& loss) {
  const MatchingOptions& m = options_.matching;
  MatchingState& s = state_;
  const int64_t iteration = s.iteration;
  auto begin = std::chrono::steady_clock::now();
  at::Generator draw = make_generator(seed_, streams::kMttIteration, static_cast<uint64_t>(iteration));
  const int64_t num_experts = static_cast<int64_t>(experts_.size());
  int64_t expert = at::randint(num_experts, {1}, draw).item<int64_t>();
  if (m.expert_order == "shuffled") {
    // Pass p visits the experts in its own random order; a resumed run finds the same one.
    at::Generator pass = make_generator(seed_, streams::kMttExpertOrder,
                                        static_cast<uint64_t>(iteration / num_experts));
    expert = at::randperm(num_experts, pass, at::kLong)[iteration % num_experts].item<int64_t>();
  }
  StartWindow window = start_epoch_window(m, iteration, options_.iterations);
  int64_t start = at::randint(window.begin, window.end, {1}, draw).item<int64_t>();
  MatchingTask task{experts_[expert][start], experts_[expert][start + m.expert_epochs],
                    mix_seed(seed_, streams::kMttIteration, static_cast<uint64_t>(iteration))};
  if (m.weight_perturbation) {  // AST; its own stream, so runs without it keep their draws
    at::Generator perturb =
        make_generator(seed_, streams::kMttPerturbation, static_cast<uint64_t>(iteration));
    task.start = perturb_conv_kernels(task.start, *model_, perturb);
  }
  if (m.balanced_inner_loss) task.loss_scale = balanced_loss_scale(start, m.max_start_epoch);
  if (m.intermediate != "none") {
    for (int64_t i = 1; i < m.expert_epochs; ++i) {
      task.intermediate_targets.push_back(experts_[expert][start + i]);
    }
  }
  MetaGradient g = matcher_->meta_gradient(s.set.images, s.labels, s.lr, task);
  loss = g.loss;
  bool finite = std::isfinite(g.loss) && std::isfinite(g.lr_grad) &&
                at::isfinite(g.images_grad).all().item<bool>() &&
                (!g.labels_grad.defined() || at::isfinite(g.labels_grad).all().item<bool>());
  if (!finite) {  // skipped: the set stays as it was; too many in a row means divergence
    ++s.failures;
    metrics.log(iteration + 1, {{"skipped_non_finite", 1.0}});
    if (writer_)
      std::cerr << "mtt: iteration " << iteration << ": non-finite matching loss, update skipped\n";
    if (s.failures >= options_.max_failures) {
      save_checkpoint();
      throw RuntimeFailure("mtt: " + std::to_string(s.failures) +
                           " consecutive non-finite iterations (last " + std::to_string(iteration) +
                           "); lower mtt.matching.lr_img or lr_lr. Last good state: " + checkpoint_);
    }
    return Outcome::kNonFinite;
  }
  s.failures = 0;
  if (m.max_loss > 0 && g.loss > m.max_loss) {
    // DATM: a trajectory segment this far from the student's reach teaches nothing useful.
    metrics.log(iteration + 1, {{"matching_loss", g.loss}, {"skipped_above_max_loss", 1.0}});
    return Outcome::kAboveMaxLoss;
  }
  s.image_optimizer->step(s.set.images, g.images_grad, m.lr_img);
  if (g.labels_grad.defined()) s.label_optimizer->step(s.labels, g.labels_grad, m.lr_label);
  if (s.ema.defined()) s.ema.mul_(options_.ema_decay).add_(s.set.images, 1.0 - options_.ema_decay);
  if (m.learn_lr) {
    at::Tensor lr_tensor = at::scalar_tensor(s.lr, at::kDouble);
    s.lr_optimizer->step(lr_tensor, at::scalar_tensor(g.lr_grad, at::kDouble), m.lr_lr);
    s.lr = lr_tensor.item<double>();
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  metrics.log(iteration + 1, {{"matching_loss", g.loss},
                              {"syn_lr", s.lr},
                              {"s_per_iter", seconds},
                              {"start_epoch", static_cast<double>(start)},
                              {"expert", static_cast<double>(expert)},
                              {"window_end", static_cast<double>(window.end)}});
  return Outcome::kApplied;
}

void MatchingRun::evaluate(io::MetricsLog& metrics) {
  const int64_t iteration = state_.iteration;  // completed, this one included
  eval::EvalOptions protocol;
  eval::apply_protocol("dc", protocol);
  protocol.runs = options_.eval_runs;
  protocol.train.epochs = options_.eval_epochs;
  protocol.train.eval_every = 0;
  protocol.model = options_.model;
  eval::Evaluator evaluator(
      protocol, train_, test_, norm_,
      mix_seed(seed_, streams::kMttEvalStudents, static_cast<uint64_t>(iteration - 1)),
      state_.set.images.device(), false);
  evaluator.set_process_group(group_);
  eval::Scores scores = evaluator.score_set(current_set(), "mtt", options_.model.arch);
  if (scores.last_mean() > state_.best_eval) {
    // The best-scoring set so far (DATM's images_best.pt): what a run is usually judged by.
    state_.best_eval = scores.last_mean();
    if (writer_) {
      eval::SyntheticSet best = current_set();
      eval::save_synthetic_set(out_ + "/syn_best.pt", best);
      eval::save_set_grid(out_ + "/grid_best.png", best, norm_.zca.get());
    }
  }
  metrics.log(iteration, {{"eval_accuracy", scores.last_mean()},
                          {"eval_accuracy_std", scores.last_std()},
                          {"best_eval_accuracy", state_.best_eval}});
  if (writer_)
    std::cerr << "mtt: iteration " << iteration << ": students on the set reach "
              << 100 * scores.last_mean() << " % test accuracy\n";
}

eval::SyntheticSet MatchingRun::current_set() const {
  eval::SyntheticSet result = state_.set;
  result.lr = state_.lr;
  if (state_.ema.defined()) result.images = state_.ema.clone();
  if (state_.labels.is_floating_point()) result.labels = at::softmax(state_.labels, 1);
  return result;
}

void MatchingRun::write_set() const {
  if (!writer_) return;
  eval::SyntheticSet result = current_set();
  eval::save_synthetic_set(out_ + "/syn.pt", result);
  eval::save_set_grid(out_ + "/grid.png", result, norm_.zca.get());
}

void MatchingRun::write_snapshot() const {
  if (!writer_) return;
  // The history of the images (distill report shows snapshots/ in order).
  io::make_dirs(out_ + "/snapshots");
  eval::save_set_grid(out_ + "/snapshots/grid_" + std::to_string(state_.iteration) + ".png",
                      current_set(), norm_.zca.get());
}

void MatchingRun::save_checkpoint() const {
  if (writer_) io::save_checkpoint(checkpoint_, state_);
}

bool every(int64_t period, int64_t count) { return period > 0 && count % period == 0; }

// mtt.snapshot_every = -1: every iterations / 10 (at least 1): ten snapshots for runs of a
// multiple of ten iterations, up to 19 for shorter ones.
int64_t snapshot_period(const MttOptions& options) {
  return options.snapshot_every >= 0 ? options.snapshot_every
                                     : std::max<int64_t>(1, options.iterations / 10);
}

}  // namespace

eval::SyntheticSet run_trajectory_matching(const MttOptions& options, const data::Dataset& train,
                                           const data::Dataset& test,
                                           const data::Normalization& norm,
                                           const std::string& dataset_name, uint64_t seed,
                                           const std::string& out, bool resume, bool progress,
                                           const std::function<void()>& on_checkpoint,
                                           std::shared_ptr<const dist::ProcessGroup> group) {
  MatchingRun run(options, train, test, norm, dataset_name, seed, out, resume, group);
  MatchingState& state = run.state();
  const int64_t snapshot_every = snapshot_period(options);
  io::MetricsLog metrics(out + "/metrics.jsonl",
                         run.resumed() ? std::optional<int64_t>(state.iteration) : std::nullopt,
                         run.writer());
  io::Progress bar("mtt", options.iterations, state.iteration, progress && run.writer());
  const int64_t first_iteration = state.iteration;
  int64_t applied = 0;  // updates made by this process
  while (state.iteration < options.iterations) {
    double loss = 0;
    const Outcome outcome = run.step(metrics, loss);
    const int64_t done = ++state.iteration;
    applied += outcome == Outcome::kApplied;
    if (outcome != Outcome::kNonFinite) {
      const std::string status = "loss " + std::to_string(loss).substr(0, 6);
      bar.update(done, outcome == Outcome::kApplied ? status : status + " (skipped)");
    }
    if (every(options.eval_every, done)) run.evaluate(metrics);
    const bool last = done == options.iterations;
    // Several processes: stop together when any rank was interrupted (a signal may reach the
    // ranks on either side of this point), so none waits in the next iteration's collectives.
    const bool stop = group ? group->any(interrupt_requested()) : interrupt_requested();
    if (every(snapshot_every, done)) {
      if (!last) run.write_set();
      run.write_snapshot();
    }
    if (every(options.checkpoint_every, done) || last || stop) {
      run.save_checkpoint();
      if (on_checkpoint && !last && run.writer()) on_checkpoint();
    }
    if (stop) {
      run.write_set();
      throw Interrupted("mtt interrupted after iteration " + std::to_string(done) +
                        "; continue with --resume");
    }
  }
  bar.finish();
  // A run whose every iteration was skipped would hand back its initial images as "distilled".
  if (first_iteration == 0 && state.iteration > 0 && applied == 0) {
    throw RuntimeFailure("mtt: all " + std::to_string(state.iteration) +
                         " iterations were skipped (non-finite matching loss, or above "
                         "mtt.matching.max_loss), so the set is still its initialisation; check "
                         "the expert buffer and the matching settings (metrics.jsonl has the "
                         "skipped_* counts)");
  }
  run.write_set();
  return run.current_set();
}

}  // namespace distill::trajectories
