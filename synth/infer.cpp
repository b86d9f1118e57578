#include "synth/infer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/random_streams.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/io/tensor_file.h"
#include "src/train/optimizer.h"
#include "synth/recover.h"

namespace distill::synth {

int64_t infer_real_per_class(int64_t ipc, int64_t classes, int64_t members) {
  // Integer arithmetic: the float form floor(ipc / (1 + M / C)) rounds 10 / 1.4 and the like.
  return ipc * classes / (classes + members);
}

int64_t infer_real_batches(const InferOptions& options, int64_t classes, int64_t members) {
  return options.real_per_class > 0 ? options.real_per_class
                                    : infer_real_per_class(options.ipc, classes, members);
}

at::Tensor jitter_roll(const at::Tensor& x, int64_t dy, int64_t dx) {
  if (dy == 0 && dx == 0) return x;
  return at::roll(x, {dy, dx}, {2, 3});
}

namespace {

// The compensator's objective and the member's accuracy on the batch, as one step reports them.
struct CompensatorLoss {
  at::Tensor loss;
  double accuracy = 0;
};

CompensatorLoss compensator_terms(const Member& member, const at::Tensor& real, const at::Tensor& u,
                                  const at::Tensor& labels, std::array<int64_t, 2> shift,
                                  const InferOptions& options) {
  MemberLoss m = member_loss(member, jitter_roll(real + u, shift[0], shift[1]), labels,
                             options.first_multiplier);
  return {m.ce + m.statistics * options.statistics_weight, m.accuracy};
}

}  // namespace

at::Tensor compensator_loss(const Member& member, const at::Tensor& real, const at::Tensor& u,
                            const at::Tensor& labels, std::array<int64_t, 2> shift,
                            const InferOptions& options) {
  return compensator_terms(member, real, u, labels, shift, options).loss;
}

at::Tensor committee_mean_logits(const std::vector<Member>& committee, const at::Tensor& images,
                                 int64_t batch_size) {
  if (committee.empty()) throw Error("committee_mean_logits: committee of size 0");
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    at::Tensor x = images.narrow(0, start, std::min(batch_size, images.size(0) - start));
    at::Tensor sum;
    for (const auto& m : committee) {
      at::Tensor logits = m.teacher.forward(x).to(at::kFloat);
      sum = sum.defined() ? sum + logits : logits;
    }
    parts.push_back(sum / static_cast<double>(committee.size()));
  }
  return at::cat(parts, 0);
}

void check_infer_options(const InferOptions& options, int64_t members, const data::Dataset& train) {
  config::check(options, "synth.infer");
  if (members < 1) throw Error("synth infer: the committee has no members");
  const int64_t classes = train.num_classes;
  const int64_t k = infer_real_batches(options, classes, members);
  if (k < 1) {
    throw Error("synth.infer.ipc = " + std::to_string(options.ipc) + " holds no real batch: " +
                std::to_string(classes) + " real images and " + std::to_string(members) +
                " compensators per batch need ipc >= " +
                std::to_string((classes + members + classes - 1) / classes));
  }
  const int64_t stored = k * (classes + members), budget = options.ipc * classes;
  if (stored > budget) {
    throw Error("synth.infer.real_per_class = " + std::to_string(k) + " stores " +
                std::to_string(stored) + " images (" + std::to_string(k) + " x (" +
                std::to_string(classes) + " real + " + std::to_string(members) +
                " compensators)), over the budget synth.infer.ipc x classes = " +
                std::to_string(budget) + "; use at most " +
                std::to_string(infer_real_per_class(options.ipc, classes, members)));
  }
  at::Tensor counts = at::bincount(train.labels.cpu(), {}, classes);
  for (int64_t c = 0; c < classes; ++c) {
    if (counts[c].item<int64_t>() < k) {
      throw Error("synth infer: " + std::to_string(k) + " real images per class, but class " +
                  std::to_string(c) + " has only " + std::to_string(counts[c].item<int64_t>()) +
                  " training images");
    }
  }
}

namespace {

// Where a run stands: the real batches, every compensator (finished, current, or still zero),
// the one being optimised and its Adam state.
struct InferState {
  at::Tensor real;          // k*C images, batch-major: image b*C + c is batch b's class c
  at::Tensor compensators;  // k*M, compensator j = m*k + b belongs to member m and batch b
  int64_t compensator = 0;
  int64_t iteration = 0;
  std::unique_ptr<train::Optimizer> optimizer;
};

void checkpoint_fields(io::Checkpoint& c, InferState& s) {
  c.tensor("real", s.real);
  c.tensor("compensators", s.compensators);
  c.integer("compensator", s.compensator);
  c.integer("iteration", s.iteration);
  if (s.iteration > 0) c.part("adam.", *s.optimizer);
}

train::OptimizerOptions adam_of(const InferOptions& o) { return pixel_adam(o.lr, o.beta1, o.beta2); }

struct StepReport {
  double loss = 0, accuracy = 0;
};

class Compensation {
 public:
  Compensation(const InferOptions& options, const std::vector<Member>& committee,
               const data::Dataset& train, const data::Normalization& norm, uint64_t seed,
               const std::string& out, bool resume, c10::Device device)
      : options_(options), committee_(committee), norm_(norm), seed_(seed),
        checkpoint_(out + "/checkpoint.pt"), pixels_(norm, device) {
    check_infer_options(options, static_cast<int64_t>(committee.size()), train);
    classes_ = train.num_classes;
    members_ = static_cast<int64_t>(committee.size());
    k_ = infer_real_batches(options, classes_, members_);
    labels_ = at::arange(classes_, at::kLong).to(device);
    state_.optimizer = train::Optimizer::make(adam_of(options));
    resumed_ = resume && std::filesystem::exists(checkpoint_);
    if (resume && !resumed_) {
      std::cerr << "synth infer: no checkpoint in '" << out << "' yet: starting from the beginning\n";
    }
    const at::IntArrayRef shape = train.images.sizes().slice(1);
    std::vector<int64_t> real_shape = {k_ * classes_}, u_shape = {k_ * members_};
    real_shape.insert(real_shape.end(), shape.begin(), shape.end());
    u_shape.insert(u_shape.end(), shape.begin(), shape.end());
    if (resumed_) {
      state_.real = at::empty(real_shape);
      state_.compensators = at::empty(u_shape);
      io::load_checkpoint(checkpoint_, state_);
    } else {
      at::Generator generator = make_generator(seed, streams::kInferInit);
      at::Tensor index = data::sample_per_class(train.labels, classes_, k_, generator);
      index = index.view({classes_, k_}).t().reshape({-1});  // class-major -> batch-major
      state_.real = train.images.index_select(0, index).clone();
      state_.compensators = at::zeros(u_shape);
    }
    state_.real = state_.real.to(device).contiguous();
    state_.compensators = state_.compensators.to(device).contiguous();
  }

  int64_t compensators() const { return k_ * members_; }
  int64_t total_steps() const { return compensators() * options_.iterations; }
  int64_t first_step() const { return state_.compensator * options_.iterations + state_.iteration; }
  bool resumed() const { return resumed_; }

  // One Adam step of compensator j (step `it` of its cosine schedule).
  StepReport step(int64_t j, int64_t it) {
    const int64_t m = j / k_, b = j % k_;
    at::Tensor x = state_.real.narrow(0, b * classes_, classes_);
    at::Tensor u = state_.compensators.narrow(0, j, 1);  // a view: updated in place
    at::Generator generator = make_generator(
        seed_, streams::kInferStep, static_cast<uint64_t>(j * options_.iterations + it));
    at::Tensor shift = at::randint(-options_.jitter, options_.jitter + 1, {2}, generator);
    const std::array<int64_t, 2> s = {shift[0].item<int64_t>(), shift[1].item<int64_t>()};
    at::AutoGradMode autograd(true);  // also when the caller is in a no-grad scope
    at::Tensor leaf = u.detach().requires_grad_(true);
    const CompensatorLoss terms = compensator_terms(committee_[m], x, leaf, labels_, s, options_);
    const double value = terms.loss.item<double>();
    if (!std::isfinite(value)) {
      throw RuntimeFailure("synth infer: non-finite loss at compensator " + std::to_string(j) +
                           ", step " + std::to_string(it));
    }
    at::Tensor grad = torch::autograd::grad({terms.loss}, {leaf})[0];
    at::NoGradGuard no_grad;
    at::Tensor flat = u.view({-1});
    state_.optimizer->step(flat, grad.reshape({-1}), cosine_lr(options_.lr, it, options_.iterations));
    return {value, terms.accuracy};
  }

  void advance(int64_t j, int64_t it, bool save) {
    const bool finished = it == options_.iterations;
    state_.compensator = finished ? j + 1 : j;
    state_.iteration = finished ? 0 : it;
    if (finished) state_.optimizer = train::Optimizer::make(adam_of(options_));
    if (save) io::save_checkpoint(checkpoint_, state_);
  }

  // Every image the student trains on, group-major: the k real batches, then X_b + u_{m,b} for
  // m = 0..M-1, b = 0..k-1 (the INFER code's order); each group is one image per class.
  eval::SyntheticSet finished_set(const std::string& dataset_name) const {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> groups = {state_.real};
    for (int64_t j = 0; j < compensators(); ++j) {
      const int64_t b = j % k_;
      // The saved images are clamped to the pixel range (the INFER code saves images).
      groups.push_back(pixels_.clamp(state_.real.narrow(0, b * classes_, classes_) +
                                     state_.compensators.narrow(0, j, 1)));
    }
    eval::SyntheticSet set;
    at::Tensor images = at::cat(groups, 0);
    at::Tensor classes = labels_.repeat({compensators() + k_});
    if (options_.labels == "logits") {
      set.labels = committee_mean_logits(committee_, images).cpu();
      set.labels_are_logits = true;
      set.label_temperature = options_.T;
      set.classes = classes.cpu();
    } else {
      set.labels = classes.cpu();
    }
    set.images = images.cpu();
    set.num_classes = classes_;
    set.mean = norm_.mean;
    set.std = norm_.std;
    set.zca_eps = norm_.zca ? norm_.zca->eps() : 0.0;
    set.dataset = dataset_name;
    set.method = "infer";
    return set;
  }

  void write_results(const std::string& out, const eval::SyntheticSet& set, double seconds,
                     int64_t steps) const {
    eval::save_synthetic_set(out + "/syn.pt", set);
    // The stored form: what the budget counts (real images and compensators, not their sums).
    io::TensorDict stored = io::make_dict();
    stored.insert("real_images", state_.real.cpu());
    stored.insert("compensators", state_.compensators.cpu());
    at::Tensor j = at::arange(compensators(), at::kLong);
    stored.insert("compensator_member", j.div(k_, "floor"));
    stored.insert("compensator_batch", j.remainder(k_));
    stored.insert("num_classes", classes_);
    io::save_dict(out + "/compensators.pt", stored);
    eval::save_set_grid(out + "/grid.png", set, norm_.zca.get());
    nlohmann::json results;
    results["method"] = "infer";
    results["ipc"] = options_.ipc;
    results["real_per_class"] = k_;
    results["compensators"] = compensators();
    results["stored_images"] = k_ * classes_ + compensators();
    results["budget_images"] = options_.ipc * classes_;
    results["training_images"] = set.images.size(0);
    results["label_floats"] = set.labels.dim() == 2 ? set.labels.numel() : 0;
    results["steps"] = steps;
    results["seconds"] = seconds;
    results["peak_rss_mib"] = peak_rss_mib();
    results["members"] = member_accuracies(committee_, set.images.to(labels_.device()),
                                           set.class_ids().to(labels_.device()));
    io::write_file_atomic(out + "/results.json", results.dump(2) + "\n");
  }

 private:
  const InferOptions& options_;
  const std::vector<Member>& committee_;
  const data::Normalization& norm_;
  uint64_t seed_;
  std::string checkpoint_;
  int64_t classes_ = 0, members_ = 0, k_ = 0;
  bool resumed_ = false;
  at::Tensor labels_;
  PixelRange pixels_;
  InferState state_;
};

}  // namespace

eval::SyntheticSet infer_compensate(const InferOptions& options,
                                    const std::vector<Member>& committee,
                                    const data::Dataset& train, const data::Normalization& norm,
                                    const std::string& dataset_name, uint64_t seed,
                                    const std::string& out, bool resume, bool progress,
                                    c10::Device device) {
  Compensation run(options, committee, train, norm, seed, out, resume, device);
  const int64_t first = run.first_step();
  io::MetricsLog metrics(out + "/metrics.jsonl",
                         run.resumed() ? std::optional<int64_t>(first) : std::nullopt);
  io::Progress bar("infer", run.total_steps(), first, progress);
  const auto begin = std::chrono::steady_clock::now();
  double loss_sum = 0, accuracy_sum = 0;
  int64_t summed = 0;
  for (int64_t step = first; step < run.total_steps(); ++step) {
    const int64_t j = step / options.iterations, it = step % options.iterations;
    const StepReport report = run.step(j, it);
    loss_sum += report.loss;
    accuracy_sum += report.accuracy;
    ++summed;
    if ((step + 1) % options.log_every == 0 || it + 1 == options.iterations) {
      metrics.log(step + 1, {{"loss", loss_sum / summed},
                             {"member_accuracy", accuracy_sum / summed},
                             {"compensator", static_cast<double>(j)}});
      loss_sum = accuracy_sum = 0;
      summed = 0;
    }
    char status[80];
    std::snprintf(status, sizeof status, "compensator %lld/%lld loss %.3f",
                  static_cast<long long>(j + 1), static_cast<long long>(run.compensators()),
                  report.loss);
    bar.update(step + 1, status);
    const bool interrupted = interrupt_requested();
    run.advance(j, it + 1,
                interrupted || it + 1 == options.iterations ||
                    (options.checkpoint_every > 0 && (it + 1) % options.checkpoint_every == 0));
    if (interrupted) {
      throw Interrupted("synth infer interrupted at step " + std::to_string(step + 1) +
                        "; checkpoint saved, continue with --resume");
    }
  }
  bar.finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  eval::SyntheticSet set = run.finished_set(dataset_name);
  run.write_results(out, set, seconds, run.total_steps() - first);
  return set;
}

}  // namespace distill::synth
