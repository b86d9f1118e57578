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

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/kmeans.h"
#include "src/io/atomic_file.h"
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

// One member's loss on a batch: cross-entropy to the class plus the weighted statistics term.
struct MemberLoss {
  at::Tensor ce, statistics;
  double accuracy = 0;
};

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

}  // namespace

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
  if (!(options.view_min_scale > 0 && options.view_min_scale <= 1)) {
    throw Error("synth.relabel.view_min_scale must be in (0, 1], found " +
                std::to_string(options.view_min_scale));
  }
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
  if (!(options.temperature > 0)) {
    throw Error("synth.temperature must be > 0, found " + std::to_string(options.temperature));
  }
  if (r.ipc < 1) throw Error("synth.recover.ipc must be >= 1, found " + std::to_string(r.ipc));
  if (r.crops < 1) {
    throw Error("synth.recover.crops must be >= 1, found " + std::to_string(r.crops));
  }
  if (r.iterations < 1) {
    throw Error("synth.recover.iterations must be >= 1, found " + std::to_string(r.iterations));
  }
  if (!(r.crop_min_scale > 0 && r.crop_min_scale <= 1)) {
    throw Error("synth.recover.crop_min_scale must be in (0, 1], found " +
                std::to_string(r.crop_min_scale));
  }
  if (r.init == "kmeans" && r.kmeans_iterations < 0) {
    throw Error("synth.recover.kmeans_iterations must be >= 0, found " +
                std::to_string(r.kmeans_iterations));
  }
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

eval::SyntheticSet recover_images(const SynthOptions& options, const std::vector<Member>& committee,
                                  const data::Dataset& train, const data::Normalization& norm,
                                  const std::string& dataset_name, uint64_t seed,
                                  const std::string& out, bool resume, bool progress,
                                  c10::Device device,
                                  std::shared_ptr<const dist::ProcessGroup> group) {
  check_recover_options(options, static_cast<int64_t>(committee.size()), train);
  const bool parallel = group && group->distributed();
  const bool writer = !parallel || group->is_main();
  const RecoverOptions& r = options.recover;
  const int64_t classes = train.num_classes;
  const int64_t n = r.ipc * classes;
  const int64_t per_batch = batch_ipc_of(r) * classes;
  const int64_t batches = (n + per_batch - 1) / per_batch;
  const int64_t total_steps = batches * r.iterations;
  // Image i*K + c is the i-th of class c: every consecutive slice of K*b images is balanced.
  at::Tensor labels = at::arange(n, at::kLong).remainder(classes);

  // Pixel range of [0, 1] images in the normalized space (SRe2L clips after every step).
  at::Tensor lo, hi;
  if (!norm.zca) {
    lo = ((0.0 - norm.mean) / norm.std).view({1, -1, 1, 1}).to(device);
    hi = ((1.0 - norm.mean) / norm.std).view({1, -1, 1, 1}).to(device);
  }

  at::Tensor images;
  int64_t start_batch = 0, start_iteration = 0;
  train::OptimizerOptions adam;
  adam.name = "adam";
  adam.lr = r.lr;
  adam.beta1 = r.beta1;
  adam.beta2 = r.beta2;
  adam.weight_decay = 0.0;
  auto optimizer = train::Optimizer::make(adam);
  // SRe2L's recovery: cosine decay of the lr from r.lr to 0 over each batch's iterations.
  train::ScheduleOptions cosine;
  cosine.name = "cosine";
  const std::string checkpoint_path = out + "/checkpoint.pt";
  if (parallel && batches < group->world_size() && writer) {
    std::cerr << "synth recover: " << batches << " batch(es) for " << group->world_size()
              << " processes: some ranks have nothing to do (lower synth.recover.batch_ipc)\n";
  }
  if (resume && !parallel && !std::filesystem::exists(checkpoint_path) &&
      std::filesystem::exists(out + "/batches")) {
    throw Error("'" + out + "' holds the finished batches of a multi-process recovery (" + out +
                "/batches) but no checkpoint.pt: resume it with several processes");
  }
  if (resume && parallel && std::filesystem::exists(checkpoint_path) &&
      !std::filesystem::exists(out + "/batches")) {
    throw Error("'" + checkpoint_path +
                "' is the checkpoint of a single-process recovery: resume "
                "it as one process (multi-process runs resume from " +
                out + "/batches)");
  }
  if (resume && !parallel) {
    io::TensorDict dict = io::load_dict(checkpoint_path);
    images = io::get_tensor(dict, "images", checkpoint_path).to(at::kFloat);
    if (images.dim() != 4 || images.size(0) != n || images.size(1) != train.channels() ||
        images.size(2) != train.height()) {
      throw Error("'" + checkpoint_path + "' holds " + std::to_string(images.size(0)) +
                  " images of another shape than synth.recover asks (" + std::to_string(n) +
                  "); resume with the settings the run was started with");
    }
    start_batch = io::get_tensor(dict, "batch", checkpoint_path).item<int64_t>();
    start_iteration = io::get_tensor(dict, "iteration", checkpoint_path).item<int64_t>();
    optimizer->load_state(dict, "adam.");
  } else {
    at::Generator generator = make_generator(seed, streams::kRecoverInit);
    if (r.init == "real" || r.init == "kmeans") {
      at::Tensor index;
      if (r.init == "kmeans") {
        const Member& member = committee[feature_member(committee)];
        at::Tensor features = penultimate_features(member, train.images.to(device));
        index = data::kmeans_per_class(features, train.labels, classes, r.ipc, r.kmeans_iterations,
                                       generator);
      } else {
        index = data::sample_per_class(train.labels, classes, r.ipc, generator);
      }
      index = index.view({classes, r.ipc}).t().reshape({-1});  // class-major -> image-major
      images = train.images.index_select(0, index).clone();
    } else {
      images = at::randn({n, train.channels(), train.height(), train.width()}, generator);
    }
  }
  images = images.to(device).contiguous();
  labels = labels.to(device);

  std::vector<double> accuracies;
  for (const auto& m : committee) accuracies.push_back(m.options.val_accuracy);

  // Several processes: rank 0's metrics and progress cover its own batches.
  io::MetricsLog metrics(
      out + "/metrics.jsonl",
      resume ? std::optional<int64_t>(start_batch * r.iterations + start_iteration) : std::nullopt,
      writer);
  io::Progress bar("recover", total_steps, start_batch * r.iterations + start_iteration,
                   progress && writer);
  const auto begin = std::chrono::steady_clock::now();
  auto batch_file = [&](int64_t b) { return out + "/batches/batch_" + std::to_string(b) + ".pt"; };
  auto save_checkpoint = [&](int64_t batch, int64_t iteration) {
    if (parallel) {  // finished batches only, one file each (world-size independent)
      if (iteration != 0 || batch == 0) return;
      io::make_dirs(out + "/batches");
      io::TensorDict dict = io::make_dict();
      const int64_t first = (batch - 1) * per_batch;
      dict.insert("images", images.narrow(0, first, std::min(per_batch, n - first)).cpu());
      io::save_dict(batch_file(batch - 1), dict);
      return;
    }
    io::TensorDict dict = io::make_dict();
    dict.insert("images", images.cpu());
    dict.insert("batch", at::scalar_tensor(batch, at::kLong));
    dict.insert("iteration", at::scalar_tensor(iteration, at::kLong));
    if (iteration > 0) optimizer->save_state(dict, "adam.");
    io::save_dict(checkpoint_path, dict);
  };

  double sum_ce = 0, sum_stat = 0, sum_acc = 0;
  int64_t logged = 0;
  for (int64_t b = start_batch; b < batches; ++b) {
    const int64_t first = b * per_batch, size = std::min(per_batch, n - first);
    at::Tensor x = images.narrow(0, first, size);  // a view: steps update `images` in place
    at::Tensor y = labels.narrow(0, first, size);
    if (parallel) {
      if (!dist::owns_item(*group, b)) continue;
      if (resume && std::filesystem::exists(batch_file(b))) {
        at::Tensor done = io::get_tensor(io::load_dict(batch_file(b)), "images", batch_file(b));
        if (!done.sizes().equals(x.sizes())) {
          throw Error("'" + batch_file(b) + "' holds a batch of another shape than " +
                      "synth.recover asks; resume with the settings the run was started with");
        }
        x.copy_(done);
        continue;
      }
    }
    for (int64_t it = b == start_batch ? start_iteration : 0; it < r.iterations; ++it) {
      const int64_t step = b * r.iterations + it;
      at::Generator generator = make_generator(seed, streams::kRecoverStep, static_cast<uint64_t>(step));
      std::vector<int64_t> drawn =
          draw_members(static_cast<int64_t>(committee.size()), options.draw, generator);
      std::vector<double> drawn_acc;
      for (int64_t k : drawn) drawn_acc.push_back(accuracies[k]);
      at::Tensor weights = committee_weights(drawn_acc, options.temperature);
      at::Tensor leaf = x.detach().requires_grad_(true);
      double ce = 0, stat = 0, acc = 0;  // logged: weighted over members, averaged over crops
      const double per_crop = 1.0 / static_cast<double>(r.crops);
      at::Tensor loss = multi_crop_loss(
          leaf, r.crops, r.crop_min_scale, r.flip, generator, [&](const at::Tensor& view) {
            at::Tensor view_loss;
            for (size_t j = 0; j < drawn.size(); ++j) {
              MemberLoss m = member_loss(committee[drawn[j]], view, y, r.first_multiplier);
              const double w = weights[static_cast<int64_t>(j)].item<double>();
              at::Tensor term = (m.ce + m.statistics * r.statistics_weight) * w;
              view_loss = view_loss.defined() ? view_loss + term : term;
              ce += per_crop * w * m.ce.item<double>();
              stat += per_crop * w * m.statistics.item<double>();
              acc += per_crop * w * m.accuracy;
            }
            return view_loss;
          });
      if (!std::isfinite(loss.item<double>())) {
        throw RuntimeFailure("synth recover: non-finite loss at batch " + std::to_string(b) +
                             ", step " + std::to_string(it));
      }
      at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
      {
        at::NoGradGuard no_grad;
        const double lr =
            r.lr * train::lr_multiplier(cosine, static_cast<double>(it), r.iterations);
        at::Tensor flat = x.view({-1});
        optimizer->step(flat, grad.reshape({-1}), lr);
        if (lo.defined()) x.copy_(at::maximum(at::minimum(x, hi), lo));
      }
      sum_ce += ce;
      sum_stat += stat;
      sum_acc += acc;
      ++logged;
      if ((step + 1) % std::max<int64_t>(1, r.log_every) == 0 || it + 1 == r.iterations) {
        metrics.log(step + 1, {{"ce", sum_ce / logged},
                               {"statistics", sum_stat / logged},
                               {"member_accuracy", sum_acc / logged},
                               {"batch", static_cast<double>(b)}});
        sum_ce = sum_stat = sum_acc = 0;
        logged = 0;
      }
      char status[96];
      std::snprintf(status, sizeof status, "batch %lld/%lld ce %.3f stat %.3f",
                    static_cast<long long>(b + 1), static_cast<long long>(batches), ce, stat);
      bar.update(step + 1, status);
      const bool last_of_batch = it + 1 == r.iterations;
      if (interrupt_requested()) {
        last_of_batch ? save_checkpoint(b + 1, 0) : save_checkpoint(b, it + 1);
        throw Interrupted("synth recover interrupted at step " + std::to_string(step + 1) +
                          "; checkpoint saved, continue with --resume");
      }
      if (last_of_batch) {
        optimizer = train::Optimizer::make(adam);  // every batch is its own optimisation
        save_checkpoint(b + 1, 0);
      } else if (r.checkpoint_every > 0 && (it + 1) % r.checkpoint_every == 0) {
        save_checkpoint(b, it + 1);
      }
    }
  }
  bar.finish();
  if (parallel) {
    // Each rank holds its batches: zero the others' and sum.
    at::Tensor mine = at::zeros({n}, at::kBool);
    for (int64_t b = 0; b < batches; ++b) {
      if (dist::owns_item(*group, b))
        mine.narrow(0, b * per_batch, std::min(per_batch, n - b * per_batch)).fill_(true);
    }
    at::Tensor assembled = images * mine.to(images.device()).view({-1, 1, 1, 1}).to(images.dtype());
    group->wait_for_peers("recovered batches");  // uneven shares: the last batch may be short
    group->all_reduce(assembled, dist::Reduce::kSum);
    images = assembled;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();

  eval::SyntheticSet set;
  set.images = images.cpu();
  set.labels = labels.cpu();
  set.num_classes = classes;
  set.mean = norm.mean;
  set.std = norm.std;
  set.zca_eps = norm.zca ? norm.zca->eps() : 0.0;
  set.dataset = dataset_name;
  set.method = "committee-recover";
  if (!writer) return set;
  eval::save_synthetic_set(out + "/syn.pt", set);
  eval::save_set_grid(out + "/grid.png", set, norm.zca.get());

  // How each member classifies the finished set (un-augmented): the images were optimised for it.
  nlohmann::json results;
  results["images"] = n;
  results["ipc"] = r.ipc;
  results["steps"] = total_steps - (start_batch * r.iterations + start_iteration);
  results["seconds"] = seconds;
  results["images_per_s"] = seconds > 0 ? static_cast<double>(n) * (results["steps"].get<double>() /
                                                                    total_steps) / seconds
                                        : 0.0;
  results["peak_rss_mib"] = peak_rss_mib();
  nlohmann::json members = nlohmann::json::array();
  {
    at::NoGradGuard no_grad;
    for (const auto& m : committee) {
      at::Tensor logits = m.teacher.forward(images);
      members.push_back({{"arch", m.options.model.arch},
                         {"val_accuracy", m.options.val_accuracy},
                         {"accuracy_on_set",
                          logits.argmax(1).eq(labels).to(at::kFloat).mean().item<double>()}});
    }
  }
  results["members"] = members;
  io::write_file_atomic(out + "/results.json", results.dump(2) + "\n");
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
