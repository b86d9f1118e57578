#include "src/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <tuple>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/differentiable_sum.h"
#include "src/dist/process_group.h"
#include "src/io/progress.h"
#include "src/io/tensor_file.h"
#include "src/train/autocast_compat.h"

namespace distill::train {
namespace {

// Independent random streams of one run (see make_generator).
constexpr uint64_t kInitStream = 1;
constexpr uint64_t kShuffleStream = 2;
constexpr uint64_t kAugmentStream = 3;
constexpr uint64_t kAuxInitStream = 4;
constexpr uint64_t kRankDropoutStream = 5;

}  // namespace

at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& targets,
                               double temperature) {
  if (targets.scalar_type() == at::kLong) return at::cross_entropy_loss(logits, targets);
  if (!(temperature > 0)) {
    throw Error("label_temperature must be > 0, found " + std::to_string(temperature));
  }
  at::Tensor log_probs = at::log_softmax(logits / temperature, 1);
  // KL(p || q) = sum p (log p - log q); 0 log 0 = 0.
  at::Tensor plogp = at::xlogy(targets, targets);
  return (plogp - targets * log_probs).sum() / logits.size(0) * (temperature * temperature);
}

EvalResult evaluate(const models::Model& model, const at::Tensor& params, const at::Tensor& buffers,
                    const at::Tensor& images, const at::Tensor& labels, int64_t batch_size) {
  at::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  if (n == 0) return {};
  double loss_sum = 0.0;
  int64_t correct = 0;
  models::ForwardArgs args;
  args.buffers = buffers;
  for (int64_t start = 0; start < n; start += batch_size) {
    int64_t count = std::min(batch_size, n - start);
    at::Tensor x = images.narrow(0, start, count);
    at::Tensor y = labels.narrow(0, start, count);
    at::Tensor logits = model.forward(x, params.detach(), args);
    loss_sum += at::cross_entropy_loss(logits, y).item<double>() * static_cast<double>(count);
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  return {static_cast<double>(correct) / static_cast<double>(n), loss_sum / static_cast<double>(n)};
}

Trainer::Trainer(const models::Model& model, TrainOptions options, uint64_t seed)
    : model_(model), options_(std::move(options)), seed_(seed) {
  if (options_.epochs < 0) throw Error("train.epochs must be >= 0, found " + std::to_string(options_.epochs));
  if (options_.batch_size < 1) {
    throw Error("train.batch_size must be >= 1, found " + std::to_string(options_.batch_size));
  }
  optimizer_ = Optimizer::make(options_.optimizer);
  aux_optimizer_ = Optimizer::make(options_.optimizer);
}

void Trainer::set_test_set(const at::Tensor& images, const at::Tensor& labels) {
  // An empty split would report 0 % accuracy and loss 0, which reads as a result.
  if (images.defined() && images.size(0) == 0) {
    throw Error("the test set is empty (an image folder without test/?): there is nothing to "
                "report test accuracy on; add the test split to the data (data.path)");
  }
  test_images_ = images;
  test_labels_ = labels;
}

TrainState Trainer::init_state() const {
  TrainState state;
  at::Generator generator = make_generator(seed_, kInitStream);
  state.params = model_.init_params(generator);
  state.buffers = model_.init_buffers();
  if (objective_) {
    at::Generator aux_generator = make_generator(seed_, kAuxInitStream);
    at::Tensor aux = objective_->init_aux(aux_generator);
    if (aux.defined() && aux.numel() > 0) state.aux = aux;
  }
  if (options_.ema_decay > 0) state.ema = state.params.clone();
  return state;
}

void Trainer::save_checkpoint(const std::string& path, const TrainState& state) const {
  io::TensorDict dict = io::make_dict();
  dict.insert("arch", model_.arch());
  dict.insert("num_params", model_.num_params());
  dict.insert("params", state.params.detach().cpu());
  dict.insert("buffers", state.buffers.cpu());
  if (state.ema.defined()) dict.insert("ema", state.ema.cpu());
  if (state.aux.defined()) {
    dict.insert("aux", state.aux.detach().cpu());
    aux_optimizer_->save_state(dict, "aux_optimizer.");
  }
  dict.insert("epoch", state.epoch);
  dict.insert("batch", state.batch);
  dict.insert("step", state.step);
  if (state.loss_scale > 0) {
    dict.insert("loss_scale", state.loss_scale);
    dict.insert("loss_scale_good", state.loss_scale_good);
  }
  // The last epoch's metrics, so resuming a finished run reports its results instead of nothing.
  for (const auto& [name, value] : state.last_metrics) dict.insert("metric." + name, value);
  optimizer_->save_state(dict, "optimizer.");
  io::save_dict(path, dict);
}

TrainState Trainer::load_checkpoint(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  auto integer = [&](const std::string& key) {
    if (!dict.contains(key) || !dict.at(key).isInt()) {
      throw Error("checkpoint '" + path + "': missing integer '" + key + "'");
    }
    return dict.at(key).toInt();
  };
  std::string arch = dict.contains("arch") ? dict.at("arch").toStringRef() : "?";
  if (arch != model_.arch() || integer("num_params") != model_.num_params()) {
    throw Error("checkpoint '" + path + "' holds a '" + arch + "' with " +
                std::to_string(integer("num_params")) + " parameters, the config builds a '" +
                model_.arch() + "' with " + std::to_string(model_.num_params()));
  }
  TrainState state;
  state.params = io::get_tensor(dict, "params", path).clone();
  state.buffers = io::get_tensor(dict, "buffers", path).clone();
  if (dict.contains("ema")) state.ema = io::get_tensor(dict, "ema", path).clone();
  const TrainState fresh = init_state();  // what the objective expects of aux
  const int64_t aux_expected = fresh.aux.defined() ? fresh.aux.numel() : 0;
  const int64_t aux_found = dict.contains("aux") ? io::get_tensor(dict, "aux", path).numel() : 0;
  if (aux_found != aux_expected) {
    throw Error("checkpoint '" + path + "' holds " + std::to_string(aux_found) +
                " auxiliary (loss) parameters, the configured objective has " +
                std::to_string(aux_expected));
  }
  if (aux_found > 0) {
    state.aux = io::get_tensor(dict, "aux", path).clone();
    aux_optimizer_->load_state(dict, "aux_optimizer.");
  }
  state.epoch = integer("epoch");
  state.batch = integer("batch");
  state.step = integer("step");
  if (dict.contains("loss_scale") && dict.at("loss_scale").isDouble()) {
    state.loss_scale = dict.at("loss_scale").toDouble();
    state.loss_scale_good = integer("loss_scale_good");
  }
  for (const auto& entry : dict) {
    const std::string& key = entry.key().toStringRef();
    if (key.rfind("metric.", 0) == 0 && entry.value().isDouble()) {
      state.last_metrics[key.substr(7)] = entry.value().toDouble();
    }
  }
  if (dict.contains("best_test_accuracy")) {  // checkpoints written before the metric.* keys
    state.last_metrics["best_test_accuracy"] = dict.at("best_test_accuracy").toDouble();
  }
  optimizer_->load_state(dict, "optimizer.");
  return state;
}

double Trainer::lr_at(const TrainState& state, int64_t batches_per_epoch) const {
  double epoch = static_cast<double>(state.epoch) +
                 static_cast<double>(state.batch) / static_cast<double>(batches_per_epoch);
  return options_.optimizer.lr * lr_multiplier(options_.schedule, epoch, options_.epochs);
}

std::map<std::string, double> Trainer::fit(TrainState& state, const at::Tensor& images,
                                           const at::Tensor& targets) {
  const int64_t n = images.size(0);
  if (n == 0) throw Error("training set is empty");
  if (targets.size(0) != n) {
    throw Error("training set has " + std::to_string(n) + " images but " +
                std::to_string(targets.size(0)) + " targets");
  }
  const int64_t batch_size = std::min(options_.batch_size, n);
  const int64_t batches = (n + batch_size - 1) / batch_size;
  const bool parallel = group_ && group_->distributed();
  const int64_t rank = parallel ? group_->rank() : 0;
  const bool writer = rank == 0;  // the one rank that logs, shows progress and checkpoints
  if (parallel) {
    // Every rank starts from rank 0's state (they agree already when all read the same
    // checkpoint or seed; this makes a mismatch impossible rather than silent).
    group_->broadcast(state.params);
    if (state.buffers.numel() > 0) group_->broadcast(state.buffers);
    if (state.aux.defined()) group_->broadcast(state.aux);
    if (state.ema.defined()) group_->broadcast(state.ema);
  }
  io::Progress progress(progress_label_, options_.epochs * batches,
                        state.epoch * batches + state.batch, progress_enabled_ && writer);
  const at::Tensor device_targets = targets.to(images.device());
  // Mixed precision: the forward pass under autocast; fp16 with a dynamic loss scale that a
  // checkpoint carries (a resumed run scales exactly as a straight one).
  const c10::ScalarType compute = compute_dtype(options_.precision, images.device(), "train.precision");
  std::optional<LossScaler> scaler;
  if (compute == at::kHalf) {
    scaler.emplace(options_.loss_scale);
    if (state.loss_scale > 0) scaler->restore(state.loss_scale, state.loss_scale_good);
  }
  std::map<std::string, double> result = state.last_metrics;
  double best_test = result.count("best_test_accuracy") ? result["best_test_accuracy"] : 0.0;

  for (int64_t epoch = state.epoch; epoch < options_.epochs; ++epoch) {
    at::Generator shuffle = make_generator(seed_, kShuffleStream, static_cast<uint64_t>(epoch));
    at::Tensor order = at::randperm(n, shuffle, at::kLong).to(images.device());
    double loss_sum = 0.0;
    double allreduce_s = 0.0;  // data-parallel: time in the per-step all-reduce
    int64_t seen = 0, correct = 0, skipped = 0;
    for (int64_t b = state.batch; b < batches; ++b) {
      at::Tensor index = order.slice(0, b * batch_size, std::min(n, (b + 1) * batch_size));
      at::Tensor x = images.index_select(0, index);
      at::Tensor y = device_targets.index_select(0, index);
      if (batch_source_) std::tie(x, y) = batch_source_(index, epoch);
      at::Tensor clean = x;
      at::Generator draw = make_generator(seed_, kAugmentStream, static_cast<uint64_t>(state.step));
      if (augment_) {
        at::NoGradGuard no_grad;
        x = augment_(x, draw);
      }
      if (batch_mix_) {
        at::NoGradGuard no_grad;
        std::tie(x, y) = batch_mix_(x, y, draw);
      }
      // After augmentation: its resampling (grid_sample) returns contiguous NCHW.
      if (options_.channels_last && x.dim() == 4) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      // Data-parallel: this rank's contiguous part of the global batch, augmented as part of the
      // whole batch (the same draws as one process, at the price of augmenting W times).
      at::Generator rank_draw;
      if (parallel) {
        const auto [lo, hi] = group_->share_of(index.size(0));
        index = index.slice(0, lo, hi);
        x = x.slice(0, lo, hi);
        y = y.slice(0, lo, hi);
        clean = clean.slice(0, lo, hi);
        rank_draw = make_generator(mix_seed(seed_, kRankDropoutStream, state.step), 0,
                                   static_cast<uint64_t>(rank));
      }
      double lr = lr_at(state, batches);
      at::Tensor params = state.params.detach().requires_grad_(true);
      at::Tensor aux = state.aux.defined() ? state.aux.detach().requires_grad_(true) : at::Tensor();
      models::Features features;
      models::ForwardArgs args;
      args.train = true;
      args.buffers = state.buffers;
      args.generator = parallel ? &rank_draw : &draw;
      if (objective_ && objective_->wants_features()) args.features = &features;
      const bool sync_batchnorm = parallel && options_.sync_batchnorm;
      if (sync_batchnorm) {
        args.sum_over_replicas = [this](const at::Tensor& t) {
          return dist::differentiable_sum(*group_, t);
        };
      }
      // A rank whose part of a short last batch is empty still joins the all-reduce below (and,
      // with synchronised batch norm, the per-layer collectives of forward and backward).
      const bool empty_part = x.size(0) == 0;
      at::Tensor logits;
      if (!empty_part || sync_batchnorm) {
        AutocastGuard autocast(x.device().type(), compute);
        logits = model_.forward(x, params, args);
      }
      // Losses (and the objectives' feature terms) in the weights' precision, whatever the
      // forward pass computed in.
      const auto to_weight_precision = [&](at::Tensor& t) {
        if (t.defined() && t.scalar_type() != state.params.scalar_type()) {
          t = t.to(state.params.scalar_type());
        }
      };
      to_weight_precision(logits);
      for (auto& feature : features) to_weight_precision(feature.second);
      at::Tensor loss;
      if (empty_part) {
        loss = sync_batchnorm ? logits.sum() * 0 : at::zeros({}, state.params.options());
      } else if (objective_) {
        StepContext step;
        step.images = x;
        step.targets = y;
        step.indices = index;
        step.logits = logits;
        step.features = &features;
        step.aux = aux;
        step.params = params;
        step.clean_images = clean;
        step.forward = [this, &params, args, compute](const at::Tensor& input) {
          models::ForwardArgs again = args;
          again.features = nullptr;
          at::Tensor out;
          {
            AutocastGuard autocast(input.device().type(), compute);
            out = model_.forward(input, params, again);
          }
          return out.to(params.scalar_type());
        };
        step.epoch = epoch;
        step.step = state.step;
        loss = objective_->loss(step);
      } else {
        loss = classification_loss(logits, y, options_.label_temperature);
      }
      double loss_value = loss.item<double>();
      std::vector<at::Tensor> inputs = {params};
      if (aux.defined()) inputs.push_back(aux);
      // Synchronised batch norm couples the ranks' losses, so each rank differentiates its
      // weighted share n_r L_r of the global loss (the backward collectives then sum gradients of
      // one objective); otherwise each rank's mean-loss gradient is weighted by n_r afterwards.
      const double n_r = static_cast<double>(x.size(0));
      const double grad_weight = sync_batchnorm ? 1.0 : n_r;
      const double loss_scale = scaler ? scaler->scale() : 1.0;
      // fp32 and bf16 differentiate the loss itself (no multiplication by 1 in the graph).
      const auto scaled = [&](const at::Tensor& t, double by) { return scaler ? t * by : t; };
      // allow_unused: an objective may leave its aux parameters out of some steps.
      std::vector<at::Tensor> grads =
          empty_part && !sync_batchnorm
              ? std::vector<at::Tensor>(inputs.size())
              : torch::autograd::grad({scaled((sync_batchnorm ? loss * n_r : loss), loss_scale)},
                                      inputs, {}, c10::nullopt, false, /*allow_unused=*/true);
      int64_t batch_correct = 0;
      if (!empty_part) {
        at::Tensor predicted = logits.argmax(1);
        at::Tensor truth = y.dim() == 2 ? y.argmax(1) : y;
        batch_correct = predicted.eq(truth).sum().item<int64_t>();
      }
      int64_t batch_count = x.size(0);
      bool stop = interrupt_requested();
      if (parallel) {
        // One all-reduce per step of one flat tensor: the flat parameter gradient is already a
        // single contiguous bucket (DDP's bucketing exists to group many small per-layer
        // tensors), and the step's bookkeeping rides along, so every rank sees the same global
        // loss, count, accuracy and stop decision. Each part is weighted by its size n_r so that
        // sum_r n_r g_r / sum_r n_r is the global batch's mean gradient even for unequal parts.
        std::vector<at::Tensor> parts;
        parts.push_back(grads[0].defined() ? grads[0].detach().reshape(-1) * grad_weight
                                           : at::zeros_like(state.params));
        if (aux.defined()) {
          parts.push_back(grads[1].defined() ? grads[1].detach().reshape(-1) * grad_weight
                                             : at::zeros_like(state.aux));
        }
        if (state.buffers.numel() > 0) parts.push_back(state.buffers.reshape(-1) * n_r);
        parts.push_back(at::tensor(
            {loss_value * n_r, n_r, static_cast<double>(batch_correct), stop ? 1.0 : 0.0},
            state.params.options()));
        at::Tensor flat = at::cat(parts);
        const auto sent = std::chrono::steady_clock::now();
        group_->all_reduce(flat, dist::Reduce::kSum);
        allreduce_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
        const int64_t tail = flat.numel() - 4;
        at::Tensor book = flat.narrow(0, tail, 4).to(at::kDouble).cpu();
        const double total = book[1].item<double>();
        int64_t offset = 0;
        grads[0] = flat.narrow(0, offset, state.params.numel()).div(total);
        offset += state.params.numel();
        if (aux.defined()) {
          grads[1] = flat.narrow(0, offset, state.aux.numel()).div(total);
          offset += state.aux.numel();
        }
        if (state.buffers.numel() > 0) {
          at::NoGradGuard no_grad;
          state.buffers.copy_(
              flat.narrow(0, offset, state.buffers.numel()).div(total).view(state.buffers.sizes()));
        }
        loss_value = book[0].item<double>() / total;
        batch_count = static_cast<int64_t>(std::llround(total));
        batch_correct = static_cast<int64_t>(std::llround(book[2].item<double>()));
        stop = book[3].item<double>() > 0;
      }
      // A non-finite loss is a diverged run even in fp16 (a loss scale cures overflowing
      // gradients, not an overflowing forward pass): stop, naming the step.
      if (!std::isfinite(loss_value)) {
        throw RuntimeFailure("training loss became " + std::to_string(loss_value) + " at step " +
                             std::to_string(state.step) + " (epoch " + std::to_string(epoch) +
                             ", lr " + std::to_string(lr) + ")" +
                             (checkpoint_path_.empty() || !std::filesystem::exists(checkpoint_path_)
                                  ? std::string("; no checkpoint was written before it")
                                  : "; the last good checkpoint is " + checkpoint_path_));
      }
      bool apply = true;
      if (scaler) {
        // Unscale, then skip the step when anything overflowed (every rank sees the same
        // reduced gradients, so all decide alike).
        for (auto& g : grads) {
          if (g.defined()) g = g / loss_scale;
        }
        apply = scaler->update(all_finite(grads));
        state.loss_scale = scaler->scale();
        state.loss_scale_good = scaler->good_steps();
      }
      at::Tensor grad = grads[0].defined() ? grads[0] : at::zeros_like(state.params);
      if (apply) {
        at::NoGradGuard no_grad;
        if (aux.defined()) {
          at::Tensor aux_grad = grads[1].defined() ? grads[1] : at::zeros_like(state.aux);
          aux_optimizer_->step(state.aux, aux_grad, lr);
        }
        optimizer_->step(state.params, grad, lr);
        if (state.ema.defined()) ema_update(state.ema, state.params, options_.ema_decay);
      } else {
        ++skipped;
      }
      loss_sum += loss_value * static_cast<double>(batch_count);
      seen += batch_count;
      correct += batch_correct;
      state.batch = b + 1;
      ++state.step;
      progress.update(epoch * batches + state.batch,
                      "loss " + std::to_string(loss_sum / static_cast<double>(seen)).substr(0, 6));
      if (stop) {
        if (!checkpoint_path_.empty() && writer) save_checkpoint(checkpoint_path_, state);
        throw Interrupted("interrupted at step " + std::to_string(state.step) +
                          (checkpoint_path_.empty() ? std::string()
                                                    : "; resume with --resume (checkpoint " +
                                                          checkpoint_path_ + ")"));
      }
    }
    state.epoch = epoch + 1;
    state.batch = 0;
    std::map<std::string, double> metrics;
    if (seen > 0) {
      metrics["train_loss"] = loss_sum / static_cast<double>(seen);
      metrics["train_accuracy"] = static_cast<double>(correct) / static_cast<double>(seen);
    }
    metrics["lr"] = lr_at(state, batches);
    if (scaler) {
      metrics["loss_scale"] = scaler->scale();
      metrics["skipped_steps"] = static_cast<double>(skipped);
    }
    // Communication plus waiting for the slower rank (the two are not separable from here).
    if (parallel) metrics["allreduce_s"] = allreduce_s;
    if (objective_) {
      for (const auto& [k, v] : objective_->take_epoch_metrics()) metrics[k] = v;
    }
    bool last = state.epoch == options_.epochs;
    bool eval_now = options_.eval_every > 0 && state.epoch % options_.eval_every == 0;
    if (test_images_.defined() && (eval_now || last)) {
      const at::Tensor& weights = state.ema.defined() ? state.ema : state.params;
      EvalResult test;
      if (parallel) {
        // Each rank scores a contiguous part of the test set; sums combine them.
        const int64_t total = test_images_.size(0);
        const auto [lo, hi] = group_->share_of(total);
        EvalResult part = evaluate(model_, weights, state.buffers, test_images_.slice(0, lo, hi),
                                   test_labels_.slice(0, lo, hi));
        const double count = static_cast<double>(hi - lo);
        at::Tensor sums = at::tensor({part.accuracy * count, part.loss * count}, at::kDouble);
        group_->all_reduce(sums, dist::Reduce::kSum);
        test.accuracy = sums[0].item<double>() / static_cast<double>(total);
        test.loss = sums[1].item<double>() / static_cast<double>(total);
      } else {
        test = evaluate(model_, weights, state.buffers, test_images_, test_labels_);
      }
      metrics["test_accuracy"] = test.accuracy;
      metrics["test_loss"] = test.loss;
      best_test = std::max(best_test, test.accuracy);
      metrics["best_test_accuracy"] = best_test;
    }
    metrics["epoch"] = static_cast<double>(state.epoch);
    for (const auto& [k, v] : metrics) result[k] = v;
    state.last_metrics = result;
    if (metrics_ && writer) metrics_->log(state.step, metrics);
    if (epoch_hook_) epoch_hook_(state);
    bool checkpoint_now = options_.checkpoint_every > 0 && state.epoch % options_.checkpoint_every == 0;
    if (!checkpoint_path_.empty() && writer && (checkpoint_now || last)) {
      save_checkpoint(checkpoint_path_, state);
    }
  }
  progress.finish();
  return result;
}

}  // namespace distill::train
