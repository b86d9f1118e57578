#include "diffusion/denoiser_training.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "diffusion/batch_share.h"
#include "diffusion/parameterization.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/checkpoint.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/core/random_streams.h"

namespace distill::diffusion {
namespace {

// Generator streams: every draw is a function of (seed, stream, index) alone, so a resumed run
// draws what an uninterrupted one would (runtime.h).

}  // namespace

void validate(const DenoiserTrainOptions& o, const std::string& key) {
  config::check(o, key);  // the declared ranges and rules (DenoiserTrainOptions)
  // lr_multiplier checks what the schedule does not declare (step_size): fail here, not mid-run.
  lr_multiplier(o.lr_schedule, 0, 1);
}

at::Tensor denoiser_loss_weight(const std::string& weighting, const std::string& output,
                                const at::Tensor& s, double sigma_data) {
  std::string w = weighting;
  if (w == "auto") {
    // The weights under which ||D - x0||^2 is the plain MSE of the network's own target:
    // eps: x - x_hat = s (eps_hat - eps) (alpha cancels in the EDM form), so snr = 1 / s^2;
    // v: |v_hat - v|^2 = (1 + snr) |x_hat - x|^2 (PD eq. of sec. 4); edm: EDM eq. 8's lambda.
    w = output == "edm" || output == "consistency" ? "edm"
        : output == "eps"                          ? "snr"
        : output == "v"                            ? "snr_plus_one"
                                                   : "constant";
  }
  if (w == "edm") {
    const double sd2 = sigma_data * sigma_data;
    return (s * s + sd2) / (s * s * sd2);
  }
  if (w == "snr") return s.pow(-2);
  if (w == "truncated_snr") return at::clamp_min(s.pow(-2), 1.0);
  if (w == "snr_plus_one") return s.pow(-2) + 1;
  if (w == "constant") return at::ones_like(s);
  throw Error("weighting: unknown '" + weighting +
              "' (expected auto, edm, snr, truncated_snr, snr_plus_one or constant)");
}

namespace {

// checkpoint.pt of a denoiser training: the model file's entries (so `diffusion sample` and
// `distill` read it as they read model.pt) and the optimizer.
struct TrainingCheckpoint {
  DenoiserModel& model;
  train::Optimizer& optimizer;
};

void checkpoint_fields(io::Checkpoint& c, TrainingCheckpoint& s) {
  if (c.saving()) {
    io::TensorDict entries = denoiser_model_dict(s.model);
    c.entries("", entries);
  } else {
    DenoiserModel saved = load_denoiser_model(c.path());
    DenoiserArchOptions ours = s.model.options, theirs = saved.options;
    if (config::dump(ours) != config::dump(theirs) || saved.item_shape != s.model.item_shape ||
        saved.num_classes != s.model.num_classes) {
      throw Error("'" + c.path() + "' holds a " + saved.options.arch + " for " +
                  shape_string(saved.item_shape) + " items, " + std::to_string(saved.num_classes) +
                  " classes, other settings than this run's; resume with the settings the run "
                  "was started with");
    }
    s.model.params = saved.params;
    s.model.ema = saved.ema;
    s.model.steps = saved.steps;
  }
  c.part("optimizer.", s.optimizer);
}

}  // namespace

DenoiserModel train_denoiser(DenoiserModel model, const DenoiserTrainOptions& o,
                             const at::Tensor& images, const at::Tensor& labels, uint64_t seed,
                             const std::string& out, bool resume, bool progress,
                             std::shared_ptr<const dist::ProcessGroup> group) {
  validate(o, "diffusion.train");
  const int64_t n = images.size(0);
  if (n < 1) throw Error("diffusion train: no training images");
  const bool writer = !group || group->is_main();
  const BatchShare share = BatchShare::of(group, o.batch, "diffusion.train.batch");
  std::unique_ptr<models::Model> net =
      make_denoiser_net(model.options, model.item_shape, model.num_classes);
  auto optimizer = train::Optimizer::make(o.optimizer);
  const std::string checkpoint_path = out + "/checkpoint.pt";
  if (resume) {
    TrainingCheckpoint saved{model, *optimizer};
    io::load_checkpoint(checkpoint_path, saved);
    if (model.ema.defined() != (o.ema_decay > 0)) {
      throw Error("'" + checkpoint_path + "' was written " +
                  (model.ema.defined() ? "with" : "without") +
                  " an EMA of the weights, diffusion.train.ema_decay asks for the other; resume "
                  "with the settings the run was started with");
    }
  } else {
    at::Generator init = make_generator(seed, streams::kDenoiserInit);
    model.params = net->init_params(init);
    model.ema = o.ema_decay > 0 ? model.params.clone() : at::Tensor();
    model.steps = 0;
  }
  const c10::Device device = images.device();
  model.params = model.params.to(device);
  if (model.ema.defined()) model.ema = model.ema.to(device);

  auto save_checkpoint = [&] {
    if (writer) io::save_checkpoint(checkpoint_path, TrainingCheckpoint{model, *optimizer});
  };

  io::MetricsLog metrics(out + "/metrics.jsonl",
                         resume ? std::optional<int64_t>(model.steps) : std::nullopt, writer);
  io::Progress bar("diffusion train " + model.options.arch, o.steps, model.steps,
                   progress && writer);
  // Draws happen on the CPU (generators are CPU ones) and move to the data's device.
  const auto cpu = at::TensorOptions().dtype(images.scalar_type());
  at::Tensor permutation;
  int64_t permutation_epoch = -1;
  double loss_sum = 0;
  int64_t loss_count = 0;
  for (int64_t step = model.steps; step < o.steps; ++step) {
    // Batch: positions [b * batch, (b + 1) * batch) of the epoch's permutation, wrapping into
    // the next epoch's, so every image is seen once per epoch.
    std::vector<at::Tensor> parts;
    for (int64_t k = step * o.batch, end = (step + 1) * o.batch; k < end;) {
      const int64_t epoch = k / n, offset = k % n, take = std::min(end - k, n - offset);
      if (epoch != permutation_epoch) {
        at::Generator g = make_generator(seed, streams::kDenoiserEpoch, static_cast<uint64_t>(epoch));
        permutation = at::randperm(n, g, at::TensorOptions().dtype(at::kLong)).to(device);
        permutation_epoch = epoch;
      }
      parts.push_back(permutation.narrow(0, offset, take));
      k += take;
    }
    at::Tensor index = at::cat(parts);
    at::Tensor x0 = images.index_select(0, index);
    at::Generator g = make_generator(seed, streams::kDenoiserStep, static_cast<uint64_t>(step));
    at::Tensor s;
    if (o.sigma_distribution == "lognormal") {
      s = at::exp(o.p_mean + o.p_std * at::randn({o.batch}, g, cpu));
    } else {
      at::Tensor t = 1 - at::rand({o.batch}, g, at::TensorOptions().dtype(at::kDouble));  // (0, 1]
      std::vector<double> levels(o.batch);
      for (int64_t i = 0; i < o.batch; ++i) {
        levels[i] = schedule_sigma(o.schedule, t[i].item<double>());
      }
      s = at::tensor(levels, at::kDouble).to(images.scalar_type());
    }
    s = s.to(device);
    at::Tensor noisy = x0 + per_sample(s, x0) * at::randn(x0.sizes(), g, cpu).to(device);
    at::Tensor y;
    if (model.num_classes > 0) {
      y = labels.index_select(0, index).to(at::kLong);
      // Classifier-free guidance training (Ho & Salimans 2022): some labels become the null one.
      at::Tensor drop =
          at::rand({o.batch}, g, at::TensorOptions().dtype(at::kFloat)) < o.label_dropout;
      y = at::where(drop.to(device), at::full_like(y, model.num_classes), y);
    }
    // This rank's rows of the batch (all of them on one process).
    x0 = share.rows(x0);
    noisy = share.rows(noisy);
    s = share.rows(s);
    if (y.defined()) y = share.rows(y);
    at::Tensor leaf = model.params.detach().requires_grad_(true);
    Denoiser d = make_denoiser(model.options, *net, leaf, y);
    at::Tensor per_item = (d(noisy, s) - x0).pow(2).flatten(1).mean(1);
    at::Tensor weight = denoiser_loss_weight(o.weighting, model.options.precondition.output, s,
                                             model.options.precondition.sigma_data);
    at::Tensor loss = share.batch_mean(weight * per_item, o.batch);
    at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
    const double value = share.sum_loss_and_gradient(loss.item<double>(), grad);
    if (!std::isfinite(value)) {
      throw RuntimeFailure("diffusion train: non-finite loss at step " + std::to_string(step) +
                           (resume || step >= o.checkpoint_every
                                ? "; the last good checkpoint is " + checkpoint_path
                                : std::string()));
    }
    // The schedule at the step's position after it: with the default linear warm-up the first
    // step is not taken at lr 0 (the Trainer, which uses the position before, does take it); a
    // cosine schedule's last step is at its minimum.
    const double lr = o.optimizer.lr *
                      train::lr_multiplier(o.lr_schedule, static_cast<double>(step + 1), o.steps);
    {
      at::NoGradGuard no_grad;
      optimizer->step(model.params, grad, lr);
      // EMA with tf.train.ExponentialMovingAverage's num_updates warm-up: decay
      // min(d, (1 + t) / (10 + t)), so a short run's EMA is not mostly the initialization
      // (at d = 0.999 a plain EMA after 300 steps still weighs the init by 0.74).
      const double t = static_cast<double>(step);
      if (model.ema.defined()) {
        train::ema_update(model.ema, model.params, std::min(o.ema_decay, (1 + t) / (10 + t)));
      }
    }
    model.steps = step + 1;
    loss_sum += value;
    ++loss_count;
    if (model.steps % std::max<int64_t>(1, o.log_every) == 0 || model.steps == o.steps) {
      metrics.log(model.steps, {{"loss", loss_sum / loss_count}, {"lr", lr}});
      loss_sum = 0;
      loss_count = 0;
    }
    char status[64];
    std::snprintf(status, sizeof status, "loss %.4f", value);
    bar.update(model.steps, status);
    // Several processes stop together when any was interrupted (one tiny all-reduce per step),
    // so none waits alone in the next step's all-reduce.
    if (group ? group->any(interrupt_requested()) : interrupt_requested()) {
      save_checkpoint();
      throw Interrupted("diffusion train interrupted at step " + std::to_string(model.steps) +
                        "; checkpoint saved, continue with --resume");
    }
    if (model.steps == o.steps ||
        (o.checkpoint_every > 0 && model.steps % o.checkpoint_every == 0)) {
      save_checkpoint();
    }
  }
  bar.finish();
  if (writer) save_denoiser_model(out + "/model.pt", model);
  return model;
}

}  // namespace distill::diffusion
