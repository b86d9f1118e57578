#include "src/train/trainer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>

#include "src/core/caching_allocator.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/differentiable_sum.h"
#include "src/dist/process_group.h"
#include "src/io/progress.h"
#include "src/io/checkpoint.h"
#include "src/io/tensor_file.h"
#include "src/core/random_streams.h"
#include "src/train/autocast_compat.h"

namespace distill::train {

at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& target_rows,
                               double temperature, bool targets_are_logits) {
  if (target_rows.scalar_type() == at::kLong) return at::cross_entropy_loss(logits, target_rows);
  if (!(temperature > 0)) {
    throw Error("label_temperature must be > 0, found " + std::to_string(temperature));
  }
  const at::Tensor targets =
      targets_are_logits ? at::softmax(target_rows / temperature, 1) : target_rows;
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
  at::Tensor confusion;
  models::ForwardArgs args;
  args.buffers = buffers;
  for (int64_t start = 0; start < n; start += batch_size) {
    int64_t count = std::min(batch_size, n - start);
    at::Tensor x = images.narrow(0, start, count);
    at::Tensor y = labels.narrow(0, start, count);
    at::Tensor logits = model.forward(x, params.detach(), args);
    loss_sum += at::cross_entropy_loss(logits, y).item<double>() * static_cast<double>(count);
    const at::Tensor predicted = logits.argmax(1);
    correct += predicted.eq(y).sum().item<int64_t>();
    add_confusion(confusion, y, predicted, logits.size(1));
  }
  return {static_cast<double>(correct) / static_cast<double>(n), loss_sum / static_cast<double>(n),
          confusion};
}

void add_confusion(at::Tensor& confusion, const at::Tensor& truth, const at::Tensor& predicted,
                   int64_t classes) {
  const at::Tensor counts =
      at::bincount(truth * classes + predicted, {}, classes * classes).view({classes, classes});
  confusion = confusion.defined() ? confusion + counts.cpu() : counts.cpu();
}

namespace {

// The peak bytes of one training step of `model` on `batch`, through the caching allocator.
double step_peak_bytes(const CachingCpuAllocator& allocator, const models::Model& model,
                       const at::Tensor& batch) {
  at::Generator generator = make_generator(0);
  at::Tensor params = model.init_params(generator).requires_grad_(true);
  models::ForwardArgs args;
  args.train = true;
  args.buffers = model.init_buffers();
  args.generator = &generator;
  const size_t before = allocator.stats().in_use_bytes;
  allocator.reset_peak();
  {
    at::Tensor loss = model.forward(batch, params, args).square().mean();
    torch::autograd::grad({loss}, {params});
  }
  return static_cast<double>(allocator.stats().peak_in_use_bytes - before);
}

std::string gib(double bytes) {
  return std::to_string(bytes / static_cast<double>(1 << 30)).substr(0, 5) + " GiB";
}

constexpr int64_t kProbeBatch = 16;  // the memory probe's small batches: 16 and 32 images

}  // namespace

double estimate_training_step_bytes(const models::Model& model, const at::Tensor& images,
                                    int64_t batch_size) {
  const CachingCpuAllocator* allocator = installed_caching_cpu_allocator();
  if (!allocator || !images.device().is_cpu() || images.dim() != 4 || images.size(0) == 0) {
    return 0;
  }
  // Measured once per model shape, image shape and batch (evaluations train many students of one
  // kind; a benchmark's timed runs then measure training alone).
  static std::mutex mutex;
  static std::map<std::string, double> known;
  const std::string key = model.arch() + " " + std::to_string(model.num_params()) + " " +
                          c10::str(images.sizes().slice(1)) + " " + std::to_string(batch_size);
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  // Two small batches (the probe itself must fit), then linear in the batch size: activations
  // grow with it, the parameters and their gradient do not. Float, as the parameters.
  std::vector<int64_t> shape = images.sizes().vec();
  auto probe = [&](int64_t n) {
    shape[0] = n;
    return step_peak_bytes(*allocator, model, at::zeros(shape, at::kFloat));
  };
  double estimate = 0;
  if (batch_size <= 2 * kProbeBatch) {
    estimate = probe(batch_size);
  } else {
    const double one = probe(kProbeBatch), two = probe(2 * kProbeBatch);
    estimate = one + std::max(0.0, two - one) * static_cast<double>(batch_size - kProbeBatch) /
                         static_cast<double>(kProbeBatch);
  }
  std::lock_guard<std::mutex> lock(mutex);
  known[key] = estimate;
  return estimate;
}

void check_training_memory(const models::Model& model, const at::Tensor& images,
                           int64_t batch_size, const std::string& what, double copies) {
  const MachineMemory memory = machine_memory();
  if (memory.available_bytes <= 0) return;
  const double estimate = copies * estimate_training_step_bytes(model, images, batch_size);
  if (estimate > memory.available_bytes) {
    throw Error(what + ": one training step of a '" + model.arch() + "' on batches of " +
                std::to_string(batch_size) + " " + std::to_string(images.size(1)) + "x" +
                std::to_string(images.size(2)) + "x" + std::to_string(images.size(3)) +
                " images" + (copies > 1 ? " for " + std::to_string(static_cast<int64_t>(copies)) +
                                              " stacked students"
                                        : std::string()) +
                " needs at least " + gib(estimate) +
                (batch_size > 2 * kProbeBatch
                     ? " (measured on batches of 16 and 32, extrapolated)"
                     : std::string(" (measured)")) +
                ", the machine has " + gib(memory.available_bytes) +
                " available of " + gib(memory.total_bytes) + "; use a smaller batch or model");
  }
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
  at::Generator generator = make_generator(seed_, streams::kTrainerInit);
  state.params = model_.init_params(generator);
  state.buffers = model_.init_buffers();
  if (objective_) {
    at::Generator aux_generator = make_generator(seed_, streams::kTrainerAuxInit);
    at::Tensor aux = objective_->init_aux(aux_generator);
    if (aux.defined() && aux.numel() > 0) state.aux = aux;
  }
  if (options_.ema_decay > 0) state.ema = state.params.clone();
  return state;
}

// The one list of what a training checkpoint holds, for saving and loading alike.
void Trainer::checkpoint_fields(io::Checkpoint& c, TrainState& state) {
  c.expect("arch", model_.arch());
  c.expect("num_params", model_.num_params());
  c.tensor("params", state.params);
  c.tensor("buffers", state.buffers);
  c.tensor("ema", state.ema);
  if (state.aux.defined()) {
    c.tensor("aux", state.aux);
    c.part("aux_optimizer.", *aux_optimizer_);
  }
  c.integer("epoch", state.epoch);
  c.integer("batch", state.batch);
  c.integer("step", state.step);
  // Mid-epoch (an interrupt): the epoch's sums so far.
  c.real("epoch_sums.loss_sum", state.epoch_sums.loss_sum);
  c.integer("epoch_sums.seen", state.epoch_sums.seen);
  c.integer("epoch_sums.correct", state.epoch_sums.correct);
  c.integer("epoch_sums.skipped", state.epoch_sums.skipped);
  c.real("loss_scale", state.loss_scale);
  c.integer("loss_scale_good", state.loss_scale_good);
  // The last epoch's metrics, so resuming a finished run reports its results instead of nothing.
  c.reals("metric.", state.last_metrics);
  c.part("optimizer.", *optimizer_);
}

void Trainer::save_checkpoint(const std::string& path, const TrainState& state) {
  io::Checkpoint checkpoint = io::Checkpoint::for_saving();
  checkpoint_fields(checkpoint, const_cast<TrainState&>(state));  // saving only reads
  checkpoint.save(path);
}

TrainState Trainer::load_checkpoint(const std::string& path) {
  io::Checkpoint checkpoint = io::Checkpoint::for_loading(path);
  const io::TensorDict& dict = checkpoint.dict();
  // The model first, with both sides named (the fields would name only the first difference).
  const std::string arch = dict.contains("arch") && dict.at("arch").isString()
                               ? dict.at("arch").toStringRef()
                               : std::string("?");
  const int64_t num_params =
      dict.contains("num_params") && dict.at("num_params").isInt() ? dict.at("num_params").toInt() : -1;
  if (arch != model_.arch() || num_params != model_.num_params()) {
    throw Error("checkpoint '" + path + "' holds a '" + arch + "' with " +
                std::to_string(num_params) + " parameters, the config builds a '" +
                model_.arch() + "' with " + std::to_string(model_.num_params()));
  }
  TrainState state = init_state();  // its defined tensors are the fields expected
  const int64_t aux_expected = state.aux.defined() ? state.aux.numel() : 0;
  const int64_t aux_found =
      dict.contains("aux") ? io::get_tensor(dict, "aux", path).numel() : 0;
  if (aux_found != aux_expected) {
    throw Error("checkpoint '" + path + "' holds " + std::to_string(aux_found) +
                " auxiliary (loss) parameters, the configured objective has " +
                std::to_string(aux_expected));
  }
  if (!dict.contains("ema")) state.ema = at::Tensor();  // ema_decay set after the run began
  checkpoint_fields(checkpoint, state);
  return state;
}

double Trainer::learning_rate(const TrainOptions& options, int64_t epoch, int64_t batch,
                              int64_t batches) {
  const double at = static_cast<double>(epoch) +
                    static_cast<double>(batch) / static_cast<double>(batches);
  return options.optimizer.lr * lr_multiplier(options.schedule, at, options.epochs);
}

double Trainer::lr_at(const TrainState& state, int64_t batches_per_epoch) const {
  return learning_rate(options_, state.epoch, state.batch, batches_per_epoch);
}

at::Tensor Trainer::epoch_order(int64_t epoch, int64_t n, c10::Device device) const {
  at::Generator shuffle =
      make_generator(seed_, streams::kTrainerShuffle, static_cast<uint64_t>(epoch));
  return at::randperm(n, shuffle, at::kLong).to(device);
}

// What one fit() call works with besides the state: fixed for the call.
struct Trainer::FitSetup {
  at::Tensor images;
  at::Tensor targets;  // on the images' device
  int64_t n = 0;
  int64_t batch_size = 0;
  int64_t batches = 0;
  bool parallel = false;
  int64_t rank = 0;
  bool writer = true;  // the one rank that logs, shows progress and checkpoints
  c10::ScalarType compute = at::kFloat;
  std::optional<LossScaler> scaler;
  std::map<std::string, double> result;  // the latest value of every metric
  double best_test = 0.0;
};

// One step's batch after augmentation, mixing and (data-parallel) this rank's share of it.
struct Trainer::StepBatch {
  at::Tensor index, x, y, clean;
  at::Generator draw;       // the step's draws: augmentation, mixing, dropout on one process
  at::Generator rank_draw;  // data-parallel: this rank's dropout
};

// One step's loss and gradients, reduced over the ranks when data-parallel.
struct Trainer::StepResult {
  double loss = 0.0;
  std::vector<at::Tensor> grads;  // params, then aux when the objective has some
  int64_t count = 0, correct = 0;
  bool stop = false;
  double allreduce_s = 0.0;
};

std::map<std::string, double> Trainer::fit(TrainState& state, const at::Tensor& images,
                                           const at::Tensor& targets) {
  FitSetup fit = begin_fit(state, images, targets);
  io::Progress progress(progress_label_, options_.epochs * fit.batches,
                        state.epoch * fit.batches + state.batch, progress_enabled_ && fit.writer);
  for (int64_t epoch = state.epoch; epoch < options_.epochs; ++epoch) {
    const at::Tensor order = epoch_order(epoch, fit.n, images.device());
    if (state.batch == 0) state.epoch_sums = EpochSums{};
    while (state.batch < fit.batches) {
      const bool stop = train_step(state, fit, epoch, order);
      const EpochSums& sums = state.epoch_sums;
      progress.update(epoch * fit.batches + state.batch,
                      "loss " + std::to_string(sums.loss_sum / static_cast<double>(sums.seen))
                                    .substr(0, 6));
      if (stop) {
        if (!checkpoint_path_.empty() && fit.writer) save_checkpoint(checkpoint_path_, state);
        throw Interrupted("interrupted at step " + std::to_string(state.step) +
                          (checkpoint_path_.empty() ? std::string()
                                                    : "; resume with --resume (checkpoint " +
                                                          checkpoint_path_ + ")"));
      }
    }
    state.epoch = epoch + 1;
    state.batch = 0;
    end_epoch(state, fit);
  }
  progress.finish();
  return fit.result;
}

Trainer::FitSetup Trainer::begin_fit(TrainState& state, const at::Tensor& images,
                                     const at::Tensor& targets) const {
  FitSetup fit;
  fit.n = images.size(0);
  if (fit.n == 0) throw Error("training set is empty");
  if (targets.size(0) != fit.n) {
    throw Error("training set has " + std::to_string(fit.n) + " images but " +
                std::to_string(targets.size(0)) + " targets");
  }
  fit.images = images;
  fit.targets = targets.to(images.device());
  fit.batch_size = std::min(options_.batch_size, fit.n);
  fit.batches = (fit.n + fit.batch_size - 1) / fit.batch_size;
  fit.parallel = group_ && group_->distributed();
  fit.rank = fit.parallel ? group_->rank() : 0;
  fit.writer = fit.rank == 0;
  // Replayed views may have another shape than the stored images; a rank holds only its part.
  if (!batch_source_ && !fit.parallel) {
    check_training_memory(model_, images, fit.batch_size,
                          "train.batch_size = " + std::to_string(options_.batch_size));
  }
  if (fit.parallel) {
    // Every rank starts from rank 0's state (they agree already when all read the same
    // checkpoint or seed; this makes a mismatch impossible rather than silent).
    group_->broadcast(state.params);
    if (state.buffers.numel() > 0) group_->broadcast(state.buffers);
    if (state.aux.defined()) group_->broadcast(state.aux);
    if (state.ema.defined()) group_->broadcast(state.ema);
  }
  // Mixed precision: the forward pass under autocast; fp16 with a dynamic loss scale that a
  // checkpoint carries (a resumed run scales exactly as a straight one).
  fit.compute = compute_dtype(options_.precision, images.device(), "train.precision");
  if (fit.compute == at::kHalf) {
    fit.scaler.emplace(options_.loss_scale);
    if (state.loss_scale > 0) fit.scaler->restore(state.loss_scale, state.loss_scale_good);
  }
  fit.result = state.last_metrics;
  fit.best_test = fit.result.count("best_test_accuracy") ? fit.result["best_test_accuracy"] : 0.0;
  return fit;
}

bool Trainer::train_step(TrainState& state, FitSetup& fit, int64_t epoch,
                         const at::Tensor& order) {
  StepBatch batch = make_batch(state, fit, epoch, order);
  const double lr = lr_at(state, fit.batches);
  const at::Tensor aux =
      state.aux.defined() ? state.aux.detach().requires_grad_(true) : at::Tensor();
  StepResult step = forward_backward(state, fit, epoch, batch, aux, lr);
  // A non-finite loss is a diverged run even in fp16 (a loss scale cures overflowing
  // gradients, not an overflowing forward pass): stop, naming the step.
  if (!std::isfinite(step.loss)) {
    throw RuntimeFailure("training loss became " + std::to_string(step.loss) + " at step " +
                         std::to_string(state.step) + " (epoch " + std::to_string(epoch) +
                         ", lr " + std::to_string(lr) + ")" +
                         (checkpoint_path_.empty() || !std::filesystem::exists(checkpoint_path_)
                              ? std::string("; no checkpoint was written before it")
                              : "; the last good checkpoint is " + checkpoint_path_));
  }
  bool apply = true;
  if (fit.scaler) {
    // Unscale, then skip the step when anything overflowed (every rank sees the same reduced
    // gradients, so all decide alike).
    for (auto& g : step.grads) {
      if (g.defined()) g = g / fit.scaler->scale();
    }
    apply = fit.scaler->update(all_finite(step.grads));
    state.loss_scale = fit.scaler->scale();
    state.loss_scale_good = fit.scaler->good_steps();
  }
  if (apply) {
    at::NoGradGuard no_grad;
    if (aux.defined()) {
      aux_optimizer_->step(state.aux,
                           step.grads[1].defined() ? step.grads[1] : at::zeros_like(state.aux),
                           lr * objective_->aux_lr_scale());
    }
    optimizer_->step(state.params,
                     step.grads[0].defined() ? step.grads[0] : at::zeros_like(state.params), lr);
    if (state.ema.defined()) ema_update(state.ema, state.params, options_.ema_decay);
  } else {
    ++state.epoch_sums.skipped;
  }
  EpochSums& sums = state.epoch_sums;
  sums.loss_sum += step.loss * static_cast<double>(step.count);
  sums.seen += step.count;
  sums.correct += step.correct;
  sums.allreduce_s += step.allreduce_s;
  ++state.batch;
  ++state.step;
  return step.stop;
}

Trainer::DrawnBatch Trainer::draw_batch(const at::Tensor& images, const at::Tensor& targets,
                                        const at::Tensor& order, int64_t batch,
                                        int64_t batch_size, int64_t epoch, int64_t step) const {
  DrawnBatch drawn;
  const int64_t n = images.size(0);
  drawn.index = order.slice(0, batch * batch_size, std::min(n, (batch + 1) * batch_size));
  drawn.x = images.index_select(0, drawn.index);
  drawn.y = targets.index_select(0, drawn.index);
  if (batch_source_) std::tie(drawn.x, drawn.y) = batch_source_(drawn.index, epoch);
  drawn.clean = drawn.x;
  drawn.draw = make_generator(seed_, streams::kTrainerAugment, static_cast<uint64_t>(step));
  if (augment_) {
    at::NoGradGuard no_grad;
    drawn.x = augment_(drawn.x, drawn.draw);
  }
  if (batch_mix_) {
    at::NoGradGuard no_grad;
    std::tie(drawn.x, drawn.y) = batch_mix_(drawn.x, drawn.y, drawn.draw);
  }
  return drawn;
}

Trainer::StepBatch Trainer::make_batch(const TrainState& state, const FitSetup& fit,
                                       int64_t epoch, const at::Tensor& order) const {
  DrawnBatch drawn = draw_batch(fit.images, fit.targets, order, state.batch, fit.batch_size,
                                epoch, state.step);
  StepBatch batch;
  batch.index = drawn.index;
  batch.x = drawn.x;
  batch.y = drawn.y;
  batch.clean = drawn.clean;
  batch.draw = drawn.draw;
  // After augmentation: its resampling (grid_sample) returns contiguous NCHW.
  if (options_.channels_last && batch.x.dim() == 4) {
    batch.x = batch.x.contiguous(at::MemoryFormat::ChannelsLast);
  }
  // Data-parallel: this rank's contiguous part of the global batch, augmented as part of the
  // whole batch (the same draws as one process, at the price of augmenting W times).
  if (fit.parallel) {
    const auto [lo, hi] = group_->share_of(batch.index.size(0));
    batch.index = batch.index.slice(0, lo, hi);
    batch.x = batch.x.slice(0, lo, hi);
    batch.y = batch.y.slice(0, lo, hi);
    batch.clean = batch.clean.slice(0, lo, hi);
    batch.rank_draw = make_generator(mix_seed(seed_, streams::kTrainerRankDropout, state.step), 0,
                                     static_cast<uint64_t>(fit.rank));
  }
  return batch;
}

Trainer::StepResult Trainer::forward_backward(TrainState& state, const FitSetup& fit,
                                              int64_t epoch, StepBatch& batch,
                                              const at::Tensor& aux, double lr) {
  at::Tensor params = state.params.detach().requires_grad_(true);
  models::Features features;
  models::ForwardArgs args;
  args.train = true;
  args.buffers = state.buffers;
  args.generator = fit.parallel ? &batch.rank_draw : &batch.draw;
  if (objective_ && objective_->wants_features()) args.features = &features;
  const bool sync_batchnorm = fit.parallel && options_.sync_batchnorm;
  if (sync_batchnorm) {
    args.sum_over_replicas = [this](const at::Tensor& t) {
      return dist::differentiable_sum(*group_, t);
    };
  }
  // A rank whose part of a short last batch is empty still joins the all-reduce below (and,
  // with synchronised batch norm, the per-layer collectives of forward and backward).
  const bool empty_part = batch.x.size(0) == 0;
  const c10::ScalarType compute = fit.compute;
  at::Tensor logits;
  if (!empty_part || sync_batchnorm) {
    AutocastGuard autocast(batch.x.device().type(), compute);
    logits = model_.forward(batch.x, params, args);
  }
  // Losses (and the objectives' feature terms) in the weights' precision, whatever the forward
  // pass computed in.
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
    step.images = batch.x;
    step.targets = batch.y;
    step.indices = batch.index;
    step.logits = logits;
    step.features = &features;
    step.aux = aux;
    step.params = params;
    step.clean_images = batch.clean;
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
    step.lr = lr;
    loss = objective_->loss(step);
  } else {
    loss = classification_loss(logits, batch.y, options_.label_temperature,
                               options_.soft_targets == "logits");
  }
  StepResult result;
  result.loss = loss.item<double>();
  std::vector<at::Tensor> inputs = {params};
  if (aux.defined()) inputs.push_back(aux);
  // Synchronised batch norm couples the ranks' losses, so each rank differentiates its weighted
  // share n_r L_r of the global loss (the backward collectives then sum gradients of one
  // objective); otherwise each rank's mean-loss gradient is weighted by n_r afterwards.
  const double n_r = static_cast<double>(batch.x.size(0));
  const double loss_scale = fit.scaler ? fit.scaler->scale() : 1.0;
  // fp32 and bf16 differentiate the loss itself (no multiplication by 1 in the graph).
  const auto scaled = [&](const at::Tensor& t, double by) { return fit.scaler ? t * by : t; };
  // allow_unused: an objective may leave its aux parameters out of some steps.
  result.grads = empty_part && !sync_batchnorm
                     ? std::vector<at::Tensor>(inputs.size())
                     : torch::autograd::grad({scaled((sync_batchnorm ? loss * n_r : loss), loss_scale)},
                                             inputs, {}, c10::nullopt, false, /*allow_unused=*/true);
  if (!empty_part) {
    at::Tensor predicted = logits.argmax(1);
    at::Tensor truth = batch.y.dim() == 2 ? batch.y.argmax(1) : batch.y;
    result.correct = predicted.eq(truth).sum().item<int64_t>();
  }
  result.count = batch.x.size(0);
  result.stop = interrupt_requested();
  if (fit.parallel) reduce_over_ranks(state, result, sync_batchnorm ? 1.0 : n_r, n_r);
  return result;
}

void Trainer::reduce_over_ranks(TrainState& state, StepResult& step, double grad_weight,
                                double n_r) const {
  // One all-reduce per step of one flat tensor: the flat parameter gradient is already a single
  // contiguous bucket (DDP's bucketing exists to group many small per-layer tensors), and the
  // step's bookkeeping rides along, so every rank sees the same global loss, count, accuracy and
  // stop decision. Each part is weighted by its size n_r so that sum_r n_r g_r / sum_r n_r is
  // the global batch's mean gradient even for unequal parts.
  const bool has_aux = step.grads.size() > 1;
  std::vector<at::Tensor> parts;
  parts.push_back(step.grads[0].defined() ? step.grads[0].detach().reshape(-1) * grad_weight
                                          : at::zeros_like(state.params));
  if (has_aux) {
    parts.push_back(step.grads[1].defined() ? step.grads[1].detach().reshape(-1) * grad_weight
                                            : at::zeros_like(state.aux));
  }
  if (state.buffers.numel() > 0) parts.push_back(state.buffers.reshape(-1) * n_r);
  parts.push_back(at::tensor({step.loss * n_r, n_r, static_cast<double>(step.correct),
                              step.stop ? 1.0 : 0.0},
                             state.params.options()));
  at::Tensor flat = at::cat(parts);
  const auto sent = std::chrono::steady_clock::now();
  group_->all_reduce(flat, dist::Reduce::kSum);
  step.allreduce_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  const int64_t tail = flat.numel() - 4;
  at::Tensor book = flat.narrow(0, tail, 4).to(at::kDouble).cpu();
  const double total = book[1].item<double>();
  int64_t offset = 0;
  step.grads[0] = flat.narrow(0, offset, state.params.numel()).div(total);
  offset += state.params.numel();
  if (has_aux) {
    step.grads[1] = flat.narrow(0, offset, state.aux.numel()).div(total);
    offset += state.aux.numel();
  }
  if (state.buffers.numel() > 0) {
    at::NoGradGuard no_grad;
    state.buffers.copy_(
        flat.narrow(0, offset, state.buffers.numel()).div(total).view(state.buffers.sizes()));
  }
  step.loss = book[0].item<double>() / total;
  step.count = static_cast<int64_t>(std::llround(total));
  step.correct = static_cast<int64_t>(std::llround(book[2].item<double>()));
  step.stop = book[3].item<double>() > 0;
}

void Trainer::end_epoch(TrainState& state, FitSetup& fit) {
  const EpochSums tally = state.epoch_sums;
  state.epoch_sums = EpochSums{};
  std::map<std::string, double> metrics;
  if (tally.seen > 0) {
    metrics["train_loss"] = tally.loss_sum / static_cast<double>(tally.seen);
    metrics["train_accuracy"] = static_cast<double>(tally.correct) / static_cast<double>(tally.seen);
  }
  metrics["lr"] = lr_at(state, fit.batches);
  if (fit.scaler) {
    metrics["loss_scale"] = fit.scaler->scale();
    metrics["skipped_steps"] = static_cast<double>(tally.skipped);
  }
  // Communication plus waiting for the slower rank (the two are not separable from here).
  if (fit.parallel) metrics["allreduce_s"] = tally.allreduce_s;
  if (objective_) {
    for (const auto& [k, v] : objective_->take_epoch_metrics()) metrics[k] = v;
  }
  const bool last = state.epoch == options_.epochs;
  const bool eval_now = options_.eval_every > 0 && state.epoch % options_.eval_every == 0;
  if (test_images_.defined() && (eval_now || last)) {
    const EvalResult test = evaluate_test_set(state, fit);
    test_confusion_ = test.confusion;
    test_curve_.emplace_back(state.epoch, test.accuracy);
    metrics["test_accuracy"] = test.accuracy;
    metrics["test_loss"] = test.loss;
    fit.best_test = std::max(fit.best_test, test.accuracy);
    metrics["best_test_accuracy"] = fit.best_test;
  }
  metrics["epoch"] = static_cast<double>(state.epoch);
  for (const auto& [k, v] : metrics) fit.result[k] = v;
  state.last_metrics = fit.result;
  if (metrics_ && fit.writer) metrics_->log(state.step, metrics);
  if (epoch_hook_) epoch_hook_(state);
  const bool checkpoint_now =
      options_.checkpoint_every > 0 && state.epoch % options_.checkpoint_every == 0;
  if (!checkpoint_path_.empty() && fit.writer && (checkpoint_now || last)) {
    save_checkpoint(checkpoint_path_, state);
  }
}

EvalResult Trainer::evaluate_test_set(const TrainState& state, const FitSetup& fit) const {
  const at::Tensor& weights = state.ema.defined() ? state.ema : state.params;
  if (!fit.parallel) return evaluate(model_, weights, state.buffers, test_images_, test_labels_);
  // Each rank scores a contiguous part of the test set; sums combine them.
  const int64_t total = test_images_.size(0);
  const auto [lo, hi] = group_->share_of(total);
  EvalResult part = evaluate(model_, weights, state.buffers, test_images_.slice(0, lo, hi),
                             test_labels_.slice(0, lo, hi));
  const double count = static_cast<double>(hi - lo);
  at::Tensor sums = at::tensor({part.accuracy * count, part.loss * count}, at::kDouble);
  group_->all_reduce(sums, dist::Reduce::kSum);
  EvalResult test;
  test.accuracy = sums[0].item<double>() / static_cast<double>(total);
  test.loss = sums[1].item<double>() / static_cast<double>(total);
  // The ranks' matrices, summed (a rank with an empty part has none: it sends nothing).
  std::vector<double> mine;
  if (part.confusion.defined()) {
    const at::Tensor flat = part.confusion.to(at::kDouble).contiguous();
    mine.assign(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
  }
  std::vector<double> sum;
  for (const std::vector<double>& theirs : group_->all_gather(mine)) {
    if (theirs.size() > sum.size()) sum.resize(theirs.size(), 0.0);
    for (size_t i = 0; i < theirs.size(); ++i) sum[i] += theirs[i];
  }
  const auto classes = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(sum.size()))));
  if (classes > 0) {
    test.confusion = at::tensor(sum, at::kDouble).view({classes, classes}).round().to(at::kLong);
  }
  return test;
}

}  // namespace distill::train
