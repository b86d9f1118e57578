#include "trajectories/trajectory_distillation.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <iostream>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/io/tensor_file.h"
#include "src/train/optimizer.h"
#include "src/core/random_streams.h"
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

}  // namespace

eval::SyntheticSet run_trajectory_matching(const MttOptions& options, const data::Dataset& train,
                                           const data::Dataset& test,
                                           const data::Normalization& norm,
                                           const std::string& dataset_name, uint64_t seed,
                                           const std::string& out, bool resume, bool progress,
                                           const std::function<void()>& on_checkpoint,
                                           std::shared_ptr<const dist::ProcessGroup> group) {
  const bool writer = !group || group->is_main();  // the one rank that writes files
  if (options.ipc < 1) throw Error("mtt.ipc must be >= 1, found " + std::to_string(options.ipc));
  auto model = models::make_model(options.model, train.channels(), train.height(), train.num_classes);
  std::vector<Trajectory> experts = load_expert_folder(options.buffer, *model);
  const MatchingOptions& m = options.matching;
  const int64_t window_end = final_window_end(m);
  for (size_t k = 0; k < experts.size(); ++k) {
    int64_t epochs = static_cast<int64_t>(experts[k].size()) - 1;
    if (window_end < 1 || window_end - 1 + m.expert_epochs > epochs) {
      throw Error("mtt.matching: start epochs up to " + std::to_string(window_end - 1) +
                  " (max_start_epoch/final_max_start_epoch) + expert_epochs " +
                  std::to_string(m.expert_epochs) + " need experts with at least " +
                  std::to_string(window_end - 1 + m.expert_epochs) + " epochs; expert " +
                  std::to_string(k) + " in '" + options.buffer + "' has " + std::to_string(epochs));
    }
  }
  if (options.ema_decay < 0 || options.ema_decay >= 1) {
    throw Error("mtt.ema_decay must lie in [0, 1), found " + std::to_string(options.ema_decay));
  }
  TrajectoryMatcher matcher(*model, m, train::make_augment(options.augment, train.height()));
  matcher.set_process_group(group, options.dist_split);

  // Initial set: class-balanced real images (DATM: ones the experts get right, or noise), class
  // ids as labels.
  at::Generator init_generator = make_generator(seed, streams::kMttInit);
  const bool by_experts =
      options.init == "real_correct" || options.init == "kmeans" || m.soft_labels != "none";
  const std::vector<at::Tensor> label_experts =
      by_experts ? label_parameters(experts, m.label_epoch, window_end) : std::vector<at::Tensor>{};
  if (options.init == "kmeans" && options.kmeans_iterations < 0) {
    throw Error("mtt.kmeans_iterations must be >= 0, found " +
                std::to_string(options.kmeans_iterations));
  }
  // A resumed run takes its images (and label logits) from the checkpoint, so only the set's
  // layout (ipc images per class, class-major) is needed: the expert-driven selections (a forward
  // pass over the training set, k-means) are skipped.
  const std::string init = resume ? "real" : options.init;
  eval::SyntheticSet set =
      init == "real_correct"
          ? eval::Evaluator::real_set(train, norm,
                                      correctly_classified_index(*model, label_experts, train,
                                                                 options.ipc, init_generator),
                                      dataset_name)
      : init == "kmeans" ? eval::Evaluator::real_set(
                               train, norm,
                               representative_index(*model, label_experts[0], train, options.ipc,
                                                    options.kmeans_iterations, init_generator),
                               dataset_name)
                         : eval::Evaluator::random_real_set(train, norm, options.ipc,
                                                            init_generator, dataset_name);
  if (init == "noise") set.images = at::randn(set.images.sizes(), init_generator);
  set.method = "mtt";
  // The matcher's labels: class ids, or (DATM) learnable logits from the experts.
  at::Tensor labels = set.labels;
  if (m.soft_labels == "expert") labels = expert_logits(*model, label_experts[0], set.images);
  if (m.soft_labels == "experts_correct") {
    labels = correct_experts_logits(*model, label_experts, set.images, set.labels);
  }
  if (!(m.max_loss >= 0)) {
    throw Error("mtt.matching.max_loss must be >= 0 (0 = off), found " +
                std::to_string(m.max_loss));
  }
  at::Tensor ema = options.ema_decay > 0 ? set.images.clone() : at::Tensor();
  double lr = m.lr_teacher;
  auto image_optimizer = train::Optimizer::make(momentum_sgd(m.lr_img));
  auto lr_optimizer = train::Optimizer::make(momentum_sgd(m.lr_lr));
  train::OptimizerOptions label_sgd = momentum_sgd(m.lr_label);
  label_sgd.momentum = m.label_momentum;
  auto label_optimizer = train::Optimizer::make(label_sgd);
  int64_t iteration = 0, failures = 0;
  double best_eval = -1;  // best eval_accuracy so far (mtt.eval_every), its set in syn_best.pt
  const std::string checkpoint = out + "/checkpoint.pt";
  if (resume) {
    io::TensorDict dict = io::load_dict(checkpoint);
    set.images = io::get_tensor(dict, "images", checkpoint).clone();
    lr = io::get_tensor(dict, "lr", checkpoint).item<double>();
    iteration = dict.at("iteration").toInt();
    failures = dict.at("failures").toInt();
    image_optimizer->load_state(dict, "image_optimizer.");
    lr_optimizer->load_state(dict, "lr_optimizer.");
    if (labels.is_floating_point()) {
      labels = io::get_tensor(dict, "label_logits", checkpoint).clone();
      label_optimizer->load_state(dict, "label_optimizer.");
    }
    if (ema.defined()) ema = io::get_tensor(dict, "ema_images", checkpoint).clone();
    if (io::has_key(dict, "best_eval_accuracy")) {
      best_eval = io::get_tensor(dict, "best_eval_accuracy", checkpoint).item<double>();
    }
  }
  auto save_checkpoint = [&](int64_t completed) {
    if (!writer) return;
    io::TensorDict dict = io::make_dict();
    dict.insert("images", set.images);
    dict.insert("lr", at::scalar_tensor(lr, at::kDouble));
    dict.insert("iteration", completed);
    dict.insert("failures", failures);
    image_optimizer->save_state(dict, "image_optimizer.");
    lr_optimizer->save_state(dict, "lr_optimizer.");
    if (labels.is_floating_point()) {
      dict.insert("label_logits", labels);
      label_optimizer->save_state(dict, "label_optimizer.");
    }
    if (ema.defined()) dict.insert("ema_images", ema);
    if (best_eval >= 0)
      dict.insert("best_eval_accuracy", at::scalar_tensor(best_eval, at::kDouble));
    io::save_dict(checkpoint, dict);
  };
  // What is saved: the EMA of the images when kept (FTD), soft labels as probabilities.
  auto current_set = [&] {
    eval::SyntheticSet result = set;
    result.lr = lr;
    if (ema.defined()) result.images = ema.clone();
    if (labels.is_floating_point()) result.labels = at::softmax(labels, 1);
    return result;
  };
  auto write_set = [&] {
    if (!writer) return;
    eval::SyntheticSet result = current_set();
    eval::save_synthetic_set(out + "/syn.pt", result);
    eval::save_set_grid(out + "/grid.png", result, norm.zca.get());
  };
  io::MetricsLog metrics(out + "/metrics.jsonl",
                         resume ? std::optional<int64_t>(iteration) : std::nullopt, writer);
  io::Progress bar("mtt", options.iterations, iteration, progress && writer);
  const int64_t first_iteration = iteration;
  int64_t applied = 0;  // updates made by this process
  for (; iteration < options.iterations; ++iteration) {
    auto begin = std::chrono::steady_clock::now();
    at::Generator draw = make_generator(seed, streams::kMttIteration, static_cast<uint64_t>(iteration));
    const int64_t num_experts = static_cast<int64_t>(experts.size());
    int64_t expert = at::randint(num_experts, {1}, draw).item<int64_t>();
    if (m.expert_order == "shuffled") {
      // Pass p visits the experts in its own random order; a resumed run finds the same one.
      at::Generator pass =
          make_generator(seed, streams::kMttExpertOrder, static_cast<uint64_t>(iteration / num_experts));
      expert = at::randperm(num_experts, pass, at::kLong)[iteration % num_experts].item<int64_t>();
    }
    StartWindow window = start_epoch_window(m, iteration, options.iterations);
    int64_t start = at::randint(window.begin, window.end, {1}, draw).item<int64_t>();
    MatchingTask task{experts[expert][start], experts[expert][start + m.expert_epochs],
                      mix_seed(seed, streams::kMttIteration, static_cast<uint64_t>(iteration))};
    if (m.weight_perturbation) {  // AST; its own stream, so runs without it keep their draws
      at::Generator perturb =
          make_generator(seed, streams::kMttPerturbation, static_cast<uint64_t>(iteration));
      task.start = perturb_conv_kernels(task.start, *model, perturb);
    }
    if (m.balanced_inner_loss) task.loss_scale = balanced_loss_scale(start, m.max_start_epoch);
    if (m.intermediate != "none") {
      for (int64_t i = 1; i < m.expert_epochs; ++i) {
        task.intermediate_targets.push_back(experts[expert][start + i]);
      }
    }
    MetaGradient g = matcher.meta_gradient(set.images, labels, lr, task);
    bool finite = std::isfinite(g.loss) && std::isfinite(g.lr_grad) &&
                  at::isfinite(g.images_grad).all().item<bool>() &&
                  (!g.labels_grad.defined() || at::isfinite(g.labels_grad).all().item<bool>());
    // A skipped update leaves the set as it was; the iteration still ends as every other (eval,
    // snapshot, checkpoint, interrupt) below.
    if (!finite) {
      // Too many in a row means divergence.
      ++failures;
      metrics.log(iteration + 1, {{"skipped_non_finite", 1.0}});
      if (writer)
        std::cerr << "mtt: iteration " << iteration
                  << ": non-finite matching loss, update skipped\n";
      if (failures >= options.max_failures) {
        save_checkpoint(iteration);
        throw RuntimeFailure("mtt: " + std::to_string(failures) +
                             " consecutive non-finite iterations (last " + std::to_string(iteration) +
                             "); lower mtt.matching.lr_img or lr_lr. Last good state: " + checkpoint);
      }
    } else if (m.max_loss > 0 && g.loss > m.max_loss) {
      // DATM: a trajectory segment this far from the student's reach teaches nothing useful.
      failures = 0;
      metrics.log(iteration + 1, {{"matching_loss", g.loss}, {"skipped_above_max_loss", 1.0}});
      bar.update(iteration + 1, "loss " + std::to_string(g.loss).substr(0, 6) + " (skipped)");
    } else {
      failures = 0;
      ++applied;
      image_optimizer->step(set.images, g.images_grad, m.lr_img);
      if (g.labels_grad.defined()) label_optimizer->step(labels, g.labels_grad, m.lr_label);
      if (ema.defined()) ema.mul_(options.ema_decay).add_(set.images, 1.0 - options.ema_decay);
      if (m.learn_lr) {
        at::Tensor lr_tensor = at::scalar_tensor(lr, at::kDouble);
        lr_optimizer->step(lr_tensor, at::scalar_tensor(g.lr_grad, at::kDouble), m.lr_lr);
        lr = lr_tensor.item<double>();
      }
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
      metrics.log(iteration + 1, {{"matching_loss", g.loss},
                                  {"syn_lr", lr},
                                  {"s_per_iter", seconds},
                                  {"start_epoch", static_cast<double>(start)},
                                  {"expert", static_cast<double>(expert)},
                                  {"window_end", static_cast<double>(window.end)}});
      bar.update(iteration + 1, "loss " + std::to_string(g.loss).substr(0, 6));
    }
    if (options.eval_every > 0 && (iteration + 1) % options.eval_every == 0) {
      // Students trained on the set as it is now (the saved form: EMA images, soft labels).
      eval::EvalOptions protocol;
      eval::apply_protocol("dc", protocol);
      protocol.runs = options.eval_runs;
      protocol.train.epochs = options.eval_epochs;
      protocol.train.eval_every = 0;
      protocol.model = options.model;
      eval::Evaluator evaluator(protocol, train, test, norm,
                                mix_seed(seed, streams::kMttEvalStudents, static_cast<uint64_t>(iteration)),
                                set.images.device(), false);
      evaluator.set_process_group(group);
      eval::Scores scores = evaluator.score_set(current_set(), "mtt", options.model.arch);
      if (scores.last_mean() > best_eval) {
        // The best-scoring set so far (DATM's images_best.pt): what a run is usually judged by.
        best_eval = scores.last_mean();
        if (writer) {
          eval::SyntheticSet best = current_set();
          eval::save_synthetic_set(out + "/syn_best.pt", best);
          eval::save_set_grid(out + "/grid_best.png", best, norm.zca.get());
        }
      }
      metrics.log(iteration + 1, {{"eval_accuracy", scores.last_mean()},
                                  {"eval_accuracy_std", scores.last_std()},
                                  {"best_eval_accuracy", best_eval}});
      if (writer)
        std::cerr << "mtt: iteration " << iteration + 1 << ": students on the set reach "
                  << 100 * scores.last_mean() << " % test accuracy\n";
    }
    bool last = iteration + 1 == options.iterations;
    // Several processes: stop together when any rank was interrupted (a signal may reach the
    // ranks on either side of this point), so none waits in the next iteration's collectives.
    const bool stop = group ? group->any(interrupt_requested()) : interrupt_requested();
    if (options.snapshot_every > 0 && (iteration + 1) % options.snapshot_every == 0) {
      if (!last) write_set();
      // The history of the images (distill report shows snapshots/ in order).
      if (writer) io::make_dirs(out + "/snapshots");
      if (writer)
        eval::save_set_grid(out + "/snapshots/grid_" + std::to_string(iteration + 1) + ".png",
                            current_set(), norm.zca.get());
    }
    if ((options.checkpoint_every > 0 && (iteration + 1) % options.checkpoint_every == 0) || last ||
        stop) {
      save_checkpoint(iteration + 1);
      if (on_checkpoint && !last && writer) on_checkpoint();
    }
    if (stop) {
      write_set();
      throw Interrupted("mtt interrupted after iteration " + std::to_string(iteration + 1) +
                        "; continue with --resume");
    }
  }
  bar.finish();
  // A run whose every iteration was skipped would hand back its initial images as "distilled".
  if (first_iteration == 0 && iteration > 0 && applied == 0) {
    throw RuntimeFailure("mtt: all " + std::to_string(iteration) +
                         " iterations were skipped (non-finite matching loss, or above "
                         "mtt.matching.max_loss), so the set is still its initialisation; check "
                         "the expert buffer and the matching settings (metrics.jsonl has the "
                         "skipped_* counts)");
  }
  write_set();
  return current_set();
}

}  // namespace distill::trajectories
