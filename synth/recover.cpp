#include "synth/recover.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/kmeans.h"
#include "src/io/atomic_file.h"
#include "src/io/checkpoint.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/io/tensor_file.h"
#include "src/train/optimizer.h"
#include "src/core/random_streams.h"
#include "synth/kmeans_selection.h"

namespace distill::synth {
namespace {

int64_t batch_ipc_of(const RecoverOptions& o) {
  return o.batch_ipc > 0 ? std::min(o.batch_ipc, o.ipc) : o.ipc;
}

}  // namespace

MemberLoss member_loss(const Member& member, const at::Tensor& images, const at::Tensor& labels,
                       double first_multiplier) {
  models::ForwardArgs args;
  args.train = false;  // SRe2L: the teacher in eval mode, statistics taken from the hook
  args.buffers = member.teacher.buffers;
  std::vector<models::NormInput> norm_inputs;
  models::Features features;
  if (member.batch_norm) {
    args.norm_inputs = &norm_inputs;
  } else {
    args.features = &features;
  }
  // The member's weights are constants: gradients flow to the images only.
  at::Tensor logits = member.teacher.model->forward(images, member.teacher.params.detach(), args);
  MemberLoss out;
  out.ce = at::cross_entropy_loss(logits, labels);
  out.statistics = member.batch_norm
                       ? batch_norm_statistics_loss(norm_inputs, first_multiplier)
                       : feature_statistics_loss(features, member.feature_stats, first_multiplier);
  out.accuracy = logits.detach().argmax(1).eq(labels).to(at::kFloat).mean().item<double>();
  return out;
}

train::OptimizerOptions pixel_adam(double lr, double beta1, double beta2) {
  train::OptimizerOptions o;
  o.name = "adam";
  o.lr = lr;
  o.beta1 = beta1;
  o.beta2 = beta2;
  o.weight_decay = 0.0;
  return o;
}

double cosine_lr(double lr, int64_t it, int64_t iterations) {
  train::ScheduleOptions cosine;
  cosine.name = "cosine";
  return lr * train::lr_multiplier(cosine, static_cast<double>(it), iterations);
}

PixelRange::PixelRange(const data::Normalization& norm, c10::Device device) {
  if (norm.zca) return;
  lo = ((0.0 - norm.mean) / norm.std).view({1, -1, 1, 1}).to(device);
  hi = ((1.0 - norm.mean) / norm.std).view({1, -1, 1, 1}).to(device);
}

at::Tensor PixelRange::clamp(const at::Tensor& x) const {
  return lo.defined() ? at::maximum(at::minimum(x, hi), lo) : x;
}

nlohmann::json member_accuracies(const std::vector<Member>& committee, const at::Tensor& images,
                                 const at::Tensor& classes) {
  at::NoGradGuard no_grad;
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : committee) {
    at::Tensor logits = m.teacher.forward(images);
    members.push_back(
        {{"arch", m.options.model.arch},
         {"val_accuracy", m.options.val_accuracy},
         {"accuracy_on_set", logits.argmax(1).eq(classes).to(at::kFloat).mean().item<double>()}});
  }
  return members;
}

at::Tensor random_resized_crop_flip(const at::Tensor& x, double min_scale, bool flip,
                                    at::Generator& generator) {
  const int64_t h = x.size(2), w = x.size(3);
  const std::array<int64_t, 5> box = draw_crop_box(h, w, min_scale, flip, generator);
  // One box for the whole batch (SRe2L applies torchvision's transform to the batch tensor).
  at::Tensor out = x.narrow(2, box[0], box[2]).narrow(3, box[1], box[3]);
  if (box[2] != h || box[3] != w) out = at::upsample_bilinear2d(out, {h, w}, false);
  if (box[4]) out = at::flip(out, {3});
  return out;
}

at::Tensor multi_crop_loss(const at::Tensor& x, int64_t crops, double min_scale, bool flip,
                           at::Generator& generator,
                           const std::function<at::Tensor(const at::Tensor& view)>& loss_of_view) {
  if (crops < 1) throw Error("synth.recover.crops must be >= 1, found " + std::to_string(crops));
  at::Tensor total = loss_of_view(random_resized_crop_flip(x, min_scale, flip, generator));
  if (crops == 1) return total;  // the single-crop step exactly, no extra op in its graph
  for (int64_t c = 1; c < crops; ++c) {
    total = total + loss_of_view(random_resized_crop_flip(x, min_scale, flip, generator));
  }
  return total / static_cast<double>(crops);
}

void add_replay_views(eval::SyntheticSet& set, const std::vector<Member>& committee,
                      const RelabelOptions& options, double weight_temperature, uint64_t seed,
                      c10::Device device) {
  const int64_t n = set.images.size(0), views = options.views;
  if (views < 1) throw Error("synth.relabel.views must be >= 1 to store views, found " + std::to_string(views));
  config::check(options, "synth.relabel");
  const int64_t h = set.images.size(2), w = set.images.size(3);
  at::Tensor boxes = at::empty({n, views, 5}, at::kLong);
  auto access = boxes.accessor<int64_t, 3>();
  for (int64_t i = 0; i < n; ++i) {
    at::Generator generator = make_generator(seed, streams::kRecoverView, static_cast<uint64_t>(i));
    for (int64_t v = 0; v < views; ++v) {
      const auto box = draw_crop_box(h, w, options.view_min_scale, options.view_flip, generator);
      for (int64_t k = 0; k < 5; ++k) access[i][v][k] = box[k];
    }
  }
  std::vector<at::Tensor> labels;
  at::Tensor images = set.images.to(device);
  for (int64_t v = 0; v < views; ++v) {
    at::Tensor view = eval::crop_resize_flip(images, boxes.select(1, v));
    labels.push_back(
        committee_soft_labels(committee, view, weight_temperature, options.T).cpu());
  }
  set.view_boxes = boxes;
  set.view_labels = at::stack(labels, 1);
}

void check_recover_options(const SynthOptions& options, int64_t committee_size,
                           const data::Dataset& train) {
  const RecoverOptions& r = options.recover;
  if (options.draw < 1 || options.draw > committee_size) {
    throw Error("synth.draw must be between 1 and the committee size " +
                std::to_string(committee_size) + ", found " + std::to_string(options.draw));
  }
  config::check(options, "synth");  // the declared ranges and rules (SynthOptions)
  if (r.init == "real" || r.init == "kmeans") {
    at::Tensor counts = at::bincount(train.labels.cpu(), {}, train.num_classes);
    for (int64_t c = 0; c < train.num_classes; ++c) {
      const int64_t have = counts[c].item<int64_t>();
      if (have < r.ipc) {
        throw Error("synth.recover.ipc = " + std::to_string(r.ipc) + " with init \"" + r.init +
                    "\": class " + std::to_string(c) + " has only " + std::to_string(have) +
                    " training images");
      }
    }
  }
}

namespace {

// Where a recovery stands: what checkpoint.pt holds (single process; several processes keep
// finished batches in batches/ instead).
struct RecoveryState {
  at::Tensor images;     // all images, image-major: image i*K + c is the i-th of class c
  int64_t batch = 0;     // the batch being recovered
  int64_t iteration = 0; // its steps done
  std::unique_ptr<train::Optimizer> optimizer;  // that batch's Adam (each batch starts afresh)
};

void checkpoint_fields(io::Checkpoint& c, RecoveryState& s) {
  c.tensor("images", s.images);
  c.integer("batch", s.batch);
  c.integer("iteration", s.iteration);
  if (s.iteration > 0) c.part("adam.", *s.optimizer);
}

// A finished batch of a multi-process recovery: batches/batch_<b>.pt.
struct FinishedBatch {
  at::Tensor images;
};

void checkpoint_fields(io::Checkpoint& c, FinishedBatch& s) { c.tensor("images", s.images); }

// What one step reports: losses weighted over the drawn members, averaged over crops.
struct StepLosses {
  double ce = 0, statistics = 0, accuracy = 0;
};

// One `distill synth recover` run; recover_images drives it batch by batch, step by step.
class Recovery {
 public:
  Recovery(const SynthOptions& options, const std::vector<Member>& committee,
           const data::Dataset& train, const data::Normalization& norm, uint64_t seed,
           const std::string& out, bool resume, c10::Device device,
           std::shared_ptr<const dist::ProcessGroup> group);

  int64_t batches() const { return batches_; }
  int64_t total_steps() const { return batches_ * options_.recover.iterations; }
  bool writer() const { return writer_; }
  bool resumed() const { return resumed_; }
  const RecoveryState& state() const { return state_; }

  // Several processes: true when batch b is another rank's, or finished before a resume (then
  // copied from batches/).
  bool skip_batch(int64_t b);
  // One Adam step on batch b's images (step `it` of the batch's cosine schedule).
  StepLosses step(int64_t b, int64_t it);
  // Records that batch b has `it` steps done (it == iterations: the batch is finished and the
  // next starts with a fresh optimizer); saves the checkpoint when `save`.
  void advance(int64_t b, int64_t it, bool save);
  void save_checkpoint();
  // Several processes: every rank ends with all batches.
  void gather_batches();
  eval::SyntheticSet finished_set(const std::string& dataset_name) const;
  void write_results(const eval::SyntheticSet& set, double seconds, int64_t steps) const;

 private:
  at::Tensor initial_images(uint64_t seed) const;
  at::Tensor batch_images(int64_t b) {
    return state_.images.narrow(0, b * per_batch_, std::min(per_batch_, n_ - b * per_batch_));
  }
  std::string batch_file(int64_t b) const {
    return out_ + "/batches/batch_" + std::to_string(b) + ".pt";
  }
  train::OptimizerOptions adam() const {
    const RecoverOptions& r = options_.recover;
    return pixel_adam(r.lr, r.beta1, r.beta2);
  }

  const SynthOptions& options_;
  const std::vector<Member>& committee_;
  const data::Dataset& train_;
  const data::Normalization& norm_;
  std::string out_, checkpoint_;
  uint64_t seed_;
  std::shared_ptr<const dist::ProcessGroup> group_;
  bool parallel_, writer_, resumed_;
  int64_t n_, per_batch_, batches_;
  at::Tensor labels_;
  PixelRange pixels_;
  std::vector<double> accuracies_;
  RecoveryState state_;
};

Recovery::Recovery(const SynthOptions& options, const std::vector<Member>& committee,
                   const data::Dataset& train, const data::Normalization& norm, uint64_t seed,
                   const std::string& out, bool resume, c10::Device device,
                   std::shared_ptr<const dist::ProcessGroup> group)
    : options_(options), committee_(committee), train_(train), norm_(norm), out_(out),
      checkpoint_(out + "/checkpoint.pt"), seed_(seed), group_(std::move(group)),
      pixels_(norm, device) {
  check_recover_options(options, static_cast<int64_t>(committee.size()), train);
  const RecoverOptions& r = options.recover;
  parallel_ = group_ && group_->distributed();
  writer_ = !parallel_ || group_->is_main();
  n_ = r.ipc * train.num_classes;
  per_batch_ = batch_ipc_of(r) * train.num_classes;
  batches_ = (n_ + per_batch_ - 1) / per_batch_;
  // Image i*K + c is the i-th of class c: every consecutive slice of K*b images is balanced.
  labels_ = at::arange(n_, at::kLong).remainder(train.num_classes).to(device);
  for (const auto& m : committee) accuracies_.push_back(m.options.val_accuracy);
  if (parallel_ && batches_ < group_->world_size() && writer_) {
    std::cerr << "synth recover: " << batches_ << " batch(es) for " << group_->world_size()
              << " processes: some ranks have nothing to do (lower synth.recover.batch_ipc)\n";
  }
  const bool has_checkpoint = std::filesystem::exists(checkpoint_);
  const bool has_batches = std::filesystem::exists(out + "/batches");
  if (resume && !parallel_ && !has_checkpoint && has_batches) {
    throw Error("'" + out + "' holds the finished batches of a multi-process recovery (" + out +
                "/batches) but no checkpoint.pt: resume it with several processes");
  }
  if (resume && parallel_ && has_checkpoint && !has_batches) {
    throw Error("'" + checkpoint_ +
                "' is the checkpoint of a single-process recovery: resume it as one process "
                "(multi-process runs resume from " + out + "/batches)");
  }
  // Killed before its first checkpoint: nothing to continue from, so it starts again.
  resumed_ = resume && (parallel_ || has_checkpoint);
  if (resume && !resumed_ && writer_) {
    std::cerr << "synth recover: no checkpoint in '" << out << "' yet: starting from the beginning\n";
  }
  state_.optimizer = train::Optimizer::make(adam());
  if (resumed_ && !parallel_) {
    state_.images = at::empty({n_, train.channels(), train.height(), train.width()});
    io::load_checkpoint(checkpoint_, state_);
  } else {
    state_.images = initial_images(seed);
  }
  state_.images = state_.images.to(device).contiguous();
}

at::Tensor Recovery::initial_images(uint64_t seed) const {
  const RecoverOptions& r = options_.recover;
  const int64_t classes = train_.num_classes;
  at::Generator generator = make_generator(seed, streams::kRecoverInit);
  if (r.init != "real" && r.init != "kmeans") {
    return at::randn({n_, train_.channels(), train_.height(), train_.width()}, generator);
  }
  at::Tensor index;
  if (r.init == "kmeans") {
    const Member& member = committee_[feature_member(committee_)];
    at::Tensor features = penultimate_features(member, train_.images.to(labels_.device()));
    index = data::kmeans_per_class(features, train_.labels, classes, r.ipc, r.kmeans_iterations,
                                   generator);
  } else {
    index = data::sample_per_class(train_.labels, classes, r.ipc, generator);
  }
  index = index.view({classes, r.ipc}).t().reshape({-1});  // class-major -> image-major
  return train_.images.index_select(0, index).clone();
}

bool Recovery::skip_batch(int64_t b) {
  if (!parallel_) return false;
  if (!dist::owns_item(*group_, b)) return true;
  if (!resumed_ || !std::filesystem::exists(batch_file(b))) return false;
  FinishedBatch done{batch_images(b)};
  io::load_checkpoint(batch_file(b), done);
  batch_images(b).copy_(done.images);
  return true;
}

StepLosses Recovery::step(int64_t b, int64_t it) {
  const RecoverOptions& r = options_.recover;
  at::Tensor x = batch_images(b);  // a view: the step updates the images in place
  at::Tensor y = labels_.narrow(0, b * per_batch_, x.size(0));
  const int64_t step = b * r.iterations + it;
  at::Generator generator = make_generator(seed_, streams::kRecoverStep, static_cast<uint64_t>(step));
  std::vector<int64_t> drawn =
      draw_members(static_cast<int64_t>(committee_.size()), options_.draw, generator);
  std::vector<double> drawn_acc;
  for (int64_t k : drawn) drawn_acc.push_back(accuracies_[k]);
  at::Tensor weights = committee_weights(drawn_acc, options_.temperature);
  at::Tensor leaf = x.detach().requires_grad_(true);
  StepLosses out;
  const double per_crop = 1.0 / static_cast<double>(r.crops);
  at::Tensor loss = multi_crop_loss(
      leaf, r.crops, r.crop_min_scale, r.flip, generator, [&](const at::Tensor& view) {
        at::Tensor view_loss;
        for (size_t j = 0; j < drawn.size(); ++j) {
          MemberLoss m = member_loss(committee_[drawn[j]], view, y, r.first_multiplier);
          const double w = weights[static_cast<int64_t>(j)].item<double>();
          at::Tensor term = (m.ce + m.statistics * r.statistics_weight) * w;
          view_loss = view_loss.defined() ? view_loss + term : term;
          out.ce += per_crop * w * m.ce.item<double>();
          out.statistics += per_crop * w * m.statistics.item<double>();
          out.accuracy += per_crop * w * m.accuracy;
        }
        return view_loss;
      });
  if (!std::isfinite(loss.item<double>())) {
    throw RuntimeFailure("synth recover: non-finite loss at batch " + std::to_string(b) +
                         ", step " + std::to_string(it));
  }
  at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
  at::NoGradGuard no_grad;
  // SRe2L's recovery: cosine decay of the lr from r.lr to 0 over each batch's iterations.
  at::Tensor flat = x.view({-1});
  state_.optimizer->step(flat, grad.reshape({-1}), cosine_lr(r.lr, it, r.iterations));
  if (pixels_.lo.defined()) x.copy_(pixels_.clamp(x));  // SRe2L clips to the pixel range
  return out;
}

void Recovery::advance(int64_t b, int64_t it, bool save) {
  const bool finished = it == options_.recover.iterations;
  state_.batch = finished ? b + 1 : b;
  state_.iteration = finished ? 0 : it;
  if (finished) state_.optimizer = train::Optimizer::make(adam());  // each batch is its own
  if (save) save_checkpoint();
}

void Recovery::save_checkpoint() {
  if (!parallel_) {
    io::save_checkpoint(checkpoint_, state_);
    return;
  }
  // Several processes: finished batches only, one file each (world-size independent).
  if (state_.iteration != 0 || state_.batch == 0) return;
  io::make_dirs(out_ + "/batches");
  io::save_checkpoint(batch_file(state_.batch - 1), FinishedBatch{batch_images(state_.batch - 1)});
}

void Recovery::gather_batches() {
  if (!parallel_) return;
  // Each rank holds its batches: zero the others' and sum.
  at::Tensor mine = at::zeros({n_}, at::kBool);
  for (int64_t b = 0; b < batches_; ++b) {
    if (dist::owns_item(*group_, b))
      mine.narrow(0, b * per_batch_, std::min(per_batch_, n_ - b * per_batch_)).fill_(true);
  }
  at::Tensor& images = state_.images;
  at::Tensor assembled =
      images * mine.to(images.device()).view({-1, 1, 1, 1}).to(images.dtype());
  group_->wait_for_peers("recovered batches");  // uneven shares: the last batch may be short
  group_->all_reduce(assembled, dist::Reduce::kSum);
  images = assembled;
}

eval::SyntheticSet Recovery::finished_set(const std::string& dataset_name) const {
  eval::SyntheticSet set;
  set.images = state_.images.cpu();
  set.labels = labels_.cpu();
  set.num_classes = train_.num_classes;
  set.mean = norm_.mean;
  set.std = norm_.std;
  set.zca_eps = norm_.zca ? norm_.zca->eps() : 0.0;
  set.dataset = dataset_name;
  set.method = "committee-recover";
  return set;
}

void Recovery::write_results(const eval::SyntheticSet& set, double seconds, int64_t steps) const {
  eval::save_synthetic_set(out_ + "/syn.pt", set);
  eval::save_set_grid(out_ + "/grid.png", set, norm_.zca.get());
  // How each member classifies the finished set (un-augmented): the images were optimised for it.
  nlohmann::json results;
  results["images"] = n_;
  results["ipc"] = options_.recover.ipc;
  results["steps"] = steps;
  results["seconds"] = seconds;
  results["images_per_s"] =
      seconds > 0 ? static_cast<double>(n_) * (static_cast<double>(steps) / total_steps()) / seconds
                  : 0.0;
  results["peak_rss_mib"] = peak_rss_mib();
  results["members"] = member_accuracies(committee_, state_.images, labels_);
  io::write_file_atomic(out_ + "/results.json", results.dump(2) + "\n");
}

}  // namespace

eval::SyntheticSet recover_images(const SynthOptions& options, const std::vector<Member>& committee,
                                  const data::Dataset& train, const data::Normalization& norm,
                                  const std::string& dataset_name, uint64_t seed,
                                  const std::string& out, bool resume, bool progress,
                                  c10::Device device,
                                  std::shared_ptr<const dist::ProcessGroup> group) {
  Recovery run(options, committee, train, norm, seed, out, resume, device, group);
  const RecoverOptions& r = options.recover;
  const int64_t start_batch = run.state().batch, start_iteration = run.state().iteration;
  const int64_t first_step = start_batch * r.iterations + start_iteration;
  // Several processes: rank 0's metrics and progress cover its own batches.
  io::MetricsLog metrics(out + "/metrics.jsonl",
                         run.resumed() ? std::optional<int64_t>(first_step) : std::nullopt,
                         run.writer());
  io::Progress bar("recover", run.total_steps(), first_step, progress && run.writer());
  const auto begin = std::chrono::steady_clock::now();
  StepLosses sums;
  int64_t summed = 0;
  for (int64_t b = start_batch; b < run.batches(); ++b) {
    if (run.skip_batch(b)) continue;
    for (int64_t it = b == start_batch ? start_iteration : 0; it < r.iterations; ++it) {
      const StepLosses losses = run.step(b, it);
      const int64_t step = b * r.iterations + it;
      sums.ce += losses.ce;
      sums.statistics += losses.statistics;
      sums.accuracy += losses.accuracy;
      ++summed;
      if ((step + 1) % std::max<int64_t>(1, r.log_every) == 0 || it + 1 == r.iterations) {
        metrics.log(step + 1, {{"ce", sums.ce / summed},
                               {"statistics", sums.statistics / summed},
                               {"member_accuracy", sums.accuracy / summed},
                               {"batch", static_cast<double>(b)}});
        sums = StepLosses{};
        summed = 0;
      }
      char status[96];
      std::snprintf(status, sizeof status, "batch %lld/%lld ce %.3f stat %.3f",
                    static_cast<long long>(b + 1), static_cast<long long>(run.batches()),
                    losses.ce, losses.statistics);
      bar.update(step + 1, status);
      const bool interrupted = interrupt_requested();
      run.advance(b, it + 1,
                  interrupted || it + 1 == r.iterations ||
                      (r.checkpoint_every > 0 && (it + 1) % r.checkpoint_every == 0));
      if (interrupted) {
        throw Interrupted("synth recover interrupted at step " + std::to_string(step + 1) +
                          "; checkpoint saved, continue with --resume");
      }
    }
  }
  bar.finish();
  run.gather_batches();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  eval::SyntheticSet set = run.finished_set(dataset_name);
  if (run.writer()) run.write_results(set, seconds, run.total_steps() - first_step);
  return set;
}

at::Tensor committee_soft_labels(const std::vector<Member>& committee, const at::Tensor& images,
                                 double weight_temperature, double T, int64_t batch_size,
                                 bool batch_statistics) {
  std::vector<double> accuracies;
  for (const auto& m : committee) {
    accuracies.push_back(m.options.val_accuracy);
    if (batch_statistics && (m.options.model.dropout > 0 || m.options.model.input_dropout > 0)) {
      throw Error("batch-statistics soft labels: committee member " + m.options.model.arch +
                  " has dropout, which train mode would switch on (use members without dropout)");
    }
  }
  at::Tensor weights = committee_weights(accuracies, weight_temperature);
  auto member_logits = [batch_statistics](const Member& m, const at::Tensor& x) {
    // A batch of one image has no batch statistics to speak of (and deep 1x1 feature maps none
    // at all): it is labelled with the running statistics.
    if (!batch_statistics || m.teacher.buffers.numel() == 0 || x.size(0) < 2) {
      return m.teacher.forward(x);
    }
    at::NoGradGuard no_grad;
    models::ForwardArgs args;
    args.train = true;
    args.buffers = m.teacher.buffers.clone();  // train mode updates them: keep the member's
    return m.teacher.model->forward(x, m.teacher.params, args);
  };
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    at::Tensor x = images.narrow(0, start, std::min(batch_size, images.size(0) - start));
    std::vector<at::Tensor> logits;
    for (const auto& m : committee) logits.push_back(member_logits(m, x));
    parts.push_back(ensemble_soft_labels(logits, weights, T));
  }
  return at::cat(parts, 0);
}

}  // namespace distill::synth
