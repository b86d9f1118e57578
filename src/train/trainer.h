#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "src/config/options.h"
#include "src/io/metrics_log.h"
#include "src/models/model.h"
#include "src/train/optimizer.h"
#include "src/train/precision.h"

namespace distill::dist {
class ProcessGroup;
}

namespace distill::io {
class Checkpoint;
}

namespace distill::train {

// Cross-entropy for class ids (int64 N); for soft labels (float N,K rows of probabilities) the
// KL divergence to softmax(logits / T), scaled by T^2 so gradients keep their size (Hinton KD).
// With `targets_are_logits` the rows are logits (INFER's interpolated labels) and the target
// distribution is softmax(targets / T).
at::Tensor classification_loss(const at::Tensor& logits, const at::Tensor& targets,
                               double temperature = 1.0, bool targets_are_logits = false);

// Random transformation applied to each training batch (DSA, crop+flip, none), drawing only from
// the generator it is given.
using AugmentFn = std::function<at::Tensor(const at::Tensor& images, at::Generator& generator)>;

struct TrainOptions {
  int64_t epochs = 300;
  int64_t batch_size = 256;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  double label_temperature = 1.0;
  std::string soft_targets = "probabilities";
  int64_t eval_every = 0;        // test accuracy every N epochs (0 = at the end only)
  int64_t checkpoint_every = 1;  // epochs between checkpoints (when the run has a checkpoint path)
  double ema_decay = 0.0;
  bool sync_batchnorm = false;
  std::string precision = "fp32";
  bool channels_last = false;
  LossScaleOptions loss_scale;

  void visit(config::Visitor& v) {
    v.field("epochs", epochs, "training epochs", config::Range::at_least(1));
    v.field("batch_size", batch_size, "mini-batch size", config::Range::at_least(1));
    v.section("optimizer", optimizer);
    v.section("schedule", schedule);
    v.field("label_temperature", label_temperature, "soft labels: temperature of the KL loss",
            config::Range::above(0));
    v.choice("soft_targets", soft_targets,
             "soft labels: rows of probabilities, or logits (INFER's interpolated labels: "
             "CutMix/Mixup blend the logits and the target is softmax(logits / "
             "label_temperature)); distill eval takes it from the set",
             {"probabilities", "logits"});
    v.field("eval_every", eval_every, "test every N epochs (0 = only at the end)",
            config::Range::at_least(0));
    v.field("checkpoint_every", checkpoint_every,
            "epochs between checkpoints (0 = none: the run cannot be resumed)",
            config::Range::at_least(0));
    v.field("ema_decay", ema_decay, "keep an EMA of the weights with this decay (0 = off)",
            config::Range::from_below(0, 1));
    v.field("sync_batchnorm", sync_batchnorm,
            "data-parallel runs: batch norm uses the statistics of the whole global batch "
            "(SyncBatchNorm; one all-reduce per layer and step); no effect on one process");
    v.choice("precision", precision,
             "arithmetic of the forward pass: fp32, bf16 or fp16 (autocast, as torch.autocast; "
             "weights, optimizer state and loss stay fp32; fp16 scales the loss dynamically)",
             precision_choices());
    v.field("channels_last", channels_last,
            "feed 4-D batches in channels-last memory format (NHWC, what tensor-core "
            "convolutions prefer); the same results up to float rounding");
    v.section("loss_scale", loss_scale);
  }
};

// One training step as a custom objective sees it: KD losses need the (augmented) batch the
// model saw, its named features and the teacher's view of the same images.
struct StepContext {
  at::Tensor images;                           // the batch after augmentation
  at::Tensor targets;                          // its targets (class ids or soft labels)
  at::Tensor indices;                          // positions of the batch in the training set
  at::Tensor logits;                           // the model's output (train mode)
  const models::Features* features = nullptr;  // filled when the objective wants features
  at::Tensor aux;  // the objective's own trainable parameters (requires grad) or undefined
  at::Tensor params;  // the model's flat parameters (requires grad): for gradient penalties
  at::Tensor clean_images;  // the batch before augmentation and mixing (this rank's part)
  // The model's forward pass with this step's parameters and arguments (train mode), for
  // penalties that need another pass (an input-gradient penalty); features are not reported.
  // As a second train-mode pass in PyTorch, it updates batch-norm running statistics again.
  // Not for data-parallel runs with sync_batchnorm: a rank with an empty part would not join
  // the pass's collectives.
  std::function<at::Tensor(const at::Tensor&)> forward;
  int64_t epoch = 0;
  int64_t step = 0;
  double lr = 0.0;  // the learning rate this step's update uses (after the schedule)
};

// A training objective other than classification_loss (KD: teacher-driven losses). It may own
// extra trainable parameters (FitNets regressors) as one flat tensor, which the trainer steps
// with a second optimizer of the same settings and keeps in checkpoints.
class StepObjective {
 public:
  virtual ~StepObjective() = default;
  virtual bool wants_features() const { return false; }
  // Initial auxiliary parameters (undefined or empty = none).
  virtual at::Tensor init_aux(at::Generator& generator) const { return {}; }
  // The auxiliary parameters' learning rate as a multiple of the model's (same schedule).
  virtual double aux_lr_scale() const { return 1.0; }
  // The scalar loss of one step; differentiable in step.logits/features and step.aux.
  virtual at::Tensor loss(const StepContext& step) = 0;
  // Named scalars for metrics.jsonl (e.g. each term's epoch mean), read once per epoch.
  virtual std::map<std::string, double> take_epoch_metrics() { return {}; }
};

// Everything a run needs to continue exactly where it stopped.
// Running sums of the epoch in progress.
struct EpochSums {
  double loss_sum = 0.0;     // sum of per-sample losses
  int64_t seen = 0;          // samples
  int64_t correct = 0;       // of which the argmax was right
  int64_t skipped = 0;       // fp16 steps skipped for overflow
  double allreduce_s = 0.0;  // data-parallel: time in the per-step all-reduce (not checkpointed)
};

struct TrainState {
  at::Tensor params;   // flat, float
  at::Tensor buffers;  // flat running statistics (may be empty)
  at::Tensor aux;      // the objective's trainable parameters (undefined when it has none)
  at::Tensor ema;      // EMA of params when enabled
  int64_t epoch = 0;   // epochs completed
  int64_t batch = 0;   // batches completed within `epoch` (non-zero after an interrupt)
  int64_t step = 0;    // optimizer steps in total (skipped fp16 overflow steps included)
  double loss_scale = 0;         // fp16: the dynamic loss scale (0 = not started)
  int64_t loss_scale_good = 0;   // fp16: good steps since the scale last changed
  std::map<std::string, double> last_metrics;
  // The sums of epoch `epoch` so far; checkpointed mid-epoch, so a resumed epoch's logged train
  // loss and accuracy cover all its batches, as a straight run's do.
  EpochSums epoch_sums;
};

struct EvalResult {
  double accuracy = 0.0;
  double loss = 0.0;
  at::Tensor confusion;  // int64 [classes, classes] on the CPU: rows true class, columns predicted
};

// One test evaluation during a run: (epochs completed, test accuracy).
using TestCurve = std::vector<std::pair<int64_t, double>>;

// At least how many bytes one training step (forward, backward) of `model` takes at its peak on
// batches of `batch_size` images shaped like `images` (N,C,H,W): measured through the caching
// CPU allocator on two small batches and extrapolated linearly in the batch size (blocks under
// the allocator's 1 MiB threshold are not counted). 0 when it cannot be measured (no caching
// allocator, images on a GPU).
double estimate_training_step_bytes(const models::Model& model, const at::Tensor& images,
                                    int64_t batch_size);
// Refuses a training step whose estimate exceeds the memory available (an Error naming `what`,
// the estimate and the machine's memory) before it allocates until the machine gives up.
// `copies`: how many such steps are alive at once (stacked students).
void check_training_memory(const models::Model& model, const at::Tensor& images,
                           int64_t batch_size, const std::string& what, double copies = 1);

// Adds the counts of (true class, predicted class) pairs to `confusion` ([classes, classes] int64
// on the CPU; created when undefined).
void add_confusion(at::Tensor& confusion, const at::Tensor& truth, const at::Tensor& predicted,
                   int64_t classes);

// Test accuracy/loss (and confusion matrix) of `params` in eval mode, in batches.
EvalResult evaluate(const models::Model& model, const at::Tensor& params, const at::Tensor& buffers,
                    const at::Tensor& images, const at::Tensor& labels, int64_t batch_size = 500);

// Trains a functional model on (images, targets) with mini-batch SGD-family updates.
// Randomness: the epoch-e permutation and the step-s augmentation come from generators derived
// from (seed, e) and (seed, s), so a resumed run draws exactly what an uninterrupted one would.
class Trainer {
 public:
  Trainer(const models::Model& model, TrainOptions options, uint64_t seed);

  void set_augment(AugmentFn augment) { augment_ = std::move(augment); }
  // Mixes each batch after augmentation, images and targets together (CutMix), drawing from the
  // step's augmentation generator after the augmentation's own draws.
  using BatchMixFn = std::function<std::pair<at::Tensor, at::Tensor>(
      const at::Tensor& images, const at::Tensor& targets, at::Generator& generator)>;
  void set_batch_mix(BatchMixFn mix) { batch_mix_ = std::move(mix); }
  // Replaces classification_loss (set before init_state/load_checkpoint: it may own parameters).
  void set_objective(std::shared_ptr<StepObjective> objective) {
    objective_ = std::move(objective);
  }
  void set_test_set(const at::Tensor& images, const at::Tensor& labels);
  // Replayed batches (FKD-style stored views): the batch at `index` in `epoch` comes from this
  // function, images and targets, instead of the training tensors; augmentation still applies.
  using BatchSource =
      std::function<std::pair<at::Tensor, at::Tensor>(const at::Tensor& index, int64_t epoch)>;
  void set_batch_source(BatchSource source) { batch_source_ = std::move(source); }
  void set_metrics(io::MetricsLog* metrics) { metrics_ = metrics; }
  void set_checkpoint(const std::string& path) { checkpoint_path_ = path; }
  void set_progress(const std::string& label, bool enabled) {
    progress_label_ = label;
    progress_enabled_ = enabled;
  }
  // Data-parallel training over the ranks of `group` when its world size is > 1 (a world of one
  // changes nothing). train.batch_size stays the global batch: every rank draws the same epoch
  // order, takes its contiguous part of each global batch, and the gradients are combined into
  // the global batch's mean, so the run matches one process up to float summation order (and a
  // checkpoint resumes under any world size). Only rank 0 shows progress, logs metrics and writes
  // checkpoints. Not synchronised: batch statistics of batch norm in the forward pass (each rank
  // normalises its part; running statistics are averaged) and dropout masks (drawn per rank).
  void set_process_group(std::shared_ptr<const dist::ProcessGroup> group) {
    group_ = std::move(group);
  }
  // Called after every completed epoch (experts store parameter snapshots here).
  void on_epoch_end(std::function<void(const TrainState&)> hook) { epoch_hook_ = std::move(hook); }

  // Fresh state: PyTorch-default initialization drawn from the seed.
  TrainState init_state() const;

  // The draws of a one-process fit(), one at a time, for trainers that step several models
  // together (StackedTrainer): epoch `epoch`'s order of `n` images, and the batch at position
  // `batch` of that order at global step `step` (after augmentation and mixing; clean = before).
  at::Tensor epoch_order(int64_t epoch, int64_t n, c10::Device device) const;
  struct DrawnBatch {
    at::Tensor index, x, y, clean;
    at::Generator draw;  // the step's generator, after the augmentation's and mixing's draws
  };
  DrawnBatch draw_batch(const at::Tensor& images, const at::Tensor& targets,
                        const at::Tensor& order, int64_t batch, int64_t batch_size,
                        int64_t epoch, int64_t step) const;
  // The learning rate at batch `batch` of `batches` in `epoch` (schedule over options.epochs).
  static double learning_rate(const TrainOptions& options, int64_t epoch, int64_t batch,
                              int64_t batches);
  // Reads a checkpoint written by this trainer; Error when it belongs to another model.
  TrainState load_checkpoint(const std::string& path);
  void save_checkpoint(const std::string& path, const TrainState& state);

  // The last test evaluation's confusion matrix (undefined before one) and every test accuracy
  // this trainer measured, by epoch (those of fit() calls on this object: a resumed run's curve
  // starts at its resume).
  const at::Tensor& test_confusion() const { return test_confusion_; }
  const TestCurve& test_curve() const { return test_curve_; }

  // Runs the remaining epochs of `state`. Returns the final metrics (train loss, test accuracy,
  // best test accuracy when eval_every > 0). Throws RuntimeFailure on a non-finite loss and
  // Interrupted on Ctrl-C (after saving a checkpoint).
  std::map<std::string, double> fit(TrainState& state, const at::Tensor& images,
                                    const at::Tensor& targets);

 private:
  // What a checkpoint holds (io::Checkpoint: one list for saving and loading).
  void checkpoint_fields(io::Checkpoint& checkpoint, TrainState& state);
  // fit() is a driver over these: one call's fixed setup, one step, one epoch's end.
  struct FitSetup;
  struct StepBatch;
  struct StepResult;
  FitSetup begin_fit(TrainState& state, const at::Tensor& images, const at::Tensor& targets) const;
  // One optimizer step on batch state.batch of `order`; true when the run must stop (interrupt).
  bool train_step(TrainState& state, FitSetup& fit, int64_t epoch, const at::Tensor& order);
  StepBatch make_batch(const TrainState& state, const FitSetup& fit, int64_t epoch,
                       const at::Tensor& order) const;
  StepResult forward_backward(TrainState& state, const FitSetup& fit, int64_t epoch,
                              StepBatch& batch, const at::Tensor& aux, double lr);
  void reduce_over_ranks(TrainState& state, StepResult& step, double grad_weight,
                         double n_r) const;
  // Metrics, test accuracy, log, epoch hook and checkpoint after epoch state.epoch.
  void end_epoch(TrainState& state, FitSetup& fit);
  EvalResult evaluate_test_set(const TrainState& state, const FitSetup& fit) const;
  double lr_at(const TrainState& state, int64_t batches_per_epoch) const;

  const models::Model& model_;
  TrainOptions options_;
  uint64_t seed_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<Optimizer> aux_optimizer_;
  std::shared_ptr<StepObjective> objective_;
  AugmentFn augment_;
  BatchMixFn batch_mix_;
  at::Tensor test_images_, test_labels_;
  io::MetricsLog* metrics_ = nullptr;
  std::string checkpoint_path_;
  std::string progress_label_ = "train";
  bool progress_enabled_ = true;
  std::function<void(const TrainState&)> epoch_hook_;
  BatchSource batch_source_;
  std::shared_ptr<const dist::ProcessGroup> group_;
  at::Tensor test_confusion_;
  TestCurve test_curve_;
};

}  // namespace distill::train
