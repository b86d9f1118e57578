#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <memory>
#include <string>

#include "diffusion/model_file.h"
#include "diffusion/noise_schedule.h"
#include "src/config/options.h"
#include "src/dist/process_group.h"
#include "src/train/optimizer.h"

namespace distill::diffusion {

// Denoising score matching of a teacher (EDM sec. 5 / DDPM's simple loss): for clean x0 from the
// data, a level s from `sigma_distribution` and n ~ N(0, I), minimise
// w(s) || D(x0 + s n, s) - x0 ||^2 with Adam, keeping an EMA of the weights.
struct DenoiserTrainOptions {
  int64_t steps = 20000;
  int64_t batch = 128;
  train::OptimizerOptions optimizer = default_optimizer();
  train::ScheduleOptions lr_schedule = constant_lr();
  double ema_decay = 0.999;
  std::string sigma_distribution = "lognormal";
  // EDM's P_mean = -1.2 is for sigma_data 0.5; this data has unit scale, so ln 2 higher.
  double p_mean = -0.5;
  double p_std = 1.2;
  ScheduleOptions schedule;
  std::string weighting = "auto";
  bool class_conditional = false;
  double label_dropout = 0.1;
  int64_t log_every = 50;
  int64_t checkpoint_every = 500;

  static train::OptimizerOptions default_optimizer() {
    train::OptimizerOptions o;
    o.name = "adam";
    o.lr = 2e-4;
    o.weight_decay = 0;
    o.clip_grad_norm = 1.0;
    return o;
  }
  static train::ScheduleOptions constant_lr() {
    train::ScheduleOptions s;
    s.name = "constant";
    s.warmup = 0.01;
    return s;
  }
  void visit(config::Visitor& v) {
    v.field("steps", steps, "optimizer steps", config::Range::at_least(1));
    v.field("batch", batch, "training images per step (each epoch is a fresh permutation)",
            config::Range::at_least(1));
    v.section("optimizer", optimizer);
    v.section("lr_schedule", lr_schedule);  // over the steps
    v.field("ema_decay", ema_decay,
            "decay of the EMA weights sampling uses by default (0 = off); step t uses "
            "min(ema_decay, (1 + t) / (10 + t))",
            config::Range::from_below(0, 1));
    v.choice("sigma_distribution", sigma_distribution,
             "training noise levels: lognormal (EDM: ln s ~ N(p_mean, p_std^2)) or schedule "
             "(t ~ U(0, 1] on `schedule`, as Progressive Distillation trains)",
             {"lognormal", "schedule"});
    v.field("p_mean", p_mean, "lognormal: mean of ln s");
    v.field("p_std", p_std, "lognormal: standard deviation of ln s", config::Range::above(0));
    v.rule(std::isfinite(p_mean),
           "diffusion.train.p_mean must be finite, found " + std::to_string(p_mean));
    v.section("schedule", schedule);
    v.choice("weighting", weighting,
             "loss weight on ||D - x0||^2: auto (the plain MSE of what the network outputs: EDM's "
             "lambda for edm, snr for eps, snr + 1 for v, 1 for x), edm ((s^2 + sd^2) / (s sd)^2), "
             "snr (1 / s^2), truncated_snr (max(snr, 1)), snr_plus_one or constant",
             {"auto", "edm", "snr", "truncated_snr", "snr_plus_one", "constant"});
    v.field("class_conditional", class_conditional,
            "unet: condition on the class (labels dropped to the null class with label_dropout)");
    v.field("label_dropout", label_dropout,
            "class_conditional: probability a training label is replaced by the null class",
            config::Range::between(0, 1));
    v.field("log_every", log_every, "steps between metrics.jsonl lines");
    v.field("checkpoint_every", checkpoint_every,
            "steps between checkpoints (0 = only at the end)");
  }
};

// Everything the settings alone can get wrong (before data is read): the declared ranges and
// rules, and the lr schedule's parameters; `key` prefixes the names ("diffusion.train").
void validate(const DenoiserTrainOptions& options, const std::string& key);

// The loss weight w(s) per item (`output` = precondition.output for auto).
at::Tensor denoiser_loss_weight(const std::string& weighting, const std::string& output,
                                const at::Tensor& sigma, double sigma_data);

// Trains `model` (its options, item_shape, num_classes, mean/std and dataset filled in; params
// ignored unless resuming) on `images` (N x item_shape, normalized) and `labels` (int64 N).
// Writes out/checkpoint.pt (a model file plus optimizer state, atomically), out/metrics.jsonl
// (step, time_s, loss, lr) and out/model.pt at the end. Randomness comes only from `seed`, per
// step, so `resume` (from out/checkpoint.pt) continues exactly as an uninterrupted run would.
// Returns the final model (params, ema, steps).
// With a distributed `group`, every rank draws the whole batch (the single-process draws) and
// computes the loss of its contiguous share of the rows; one all-reduce of the flat gradient per
// step makes every rank take the single-process step (up to float summation order). Rank 0
// writes the files.
DenoiserModel train_denoiser(DenoiserModel model, const DenoiserTrainOptions& options,
                             const at::Tensor& images, const at::Tensor& labels, uint64_t seed,
                             const std::string& out, bool resume, bool progress,
                             std::shared_ptr<const dist::ProcessGroup> group = nullptr);

}  // namespace distill::diffusion
