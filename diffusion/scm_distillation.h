#pragma once
// Continuous-time consistency models in TrigFlow (sCM): Lu & Song, "Simplifying, Stabilizing and
// Scaling Continuous-Time Consistency Models" (2024, arXiv 2410.11081), Algorithm 1: consistency
// distillation (sCD: the teacher's PF-ODE velocity) and consistency training (sCT: the point's
// own velocity cos t z - sin t x0). Run on teacher-trajectory points instead of noised training
// images (TrainingData::from_points, `--data none`) it is TBCM's image-free distillation (Image-Free
// Timestep Distillation via Continuous-Time Consistency with Trajectory-Sampled Pairs, 2025).
//
// The student is a Denoiser in EDM form whose consistency function in TrigFlow is
// f(x_t, t) = D(x_t / cos t, sigma_d tan t) (trigflow.h), with F = (cos t x_t - f) / (sigma_d sin t);
// a consistency-preconditioned student (f(x, sigma_min) = x) samples with `consistency_sample`.
#include <cmath>
#include <string>

#include "diffusion/denoiser.h"
#include "diffusion/distillation_state.h"
#include "diffusion/progressive_distillation.h"
#include "src/config/options.h"
#include "src/train/optimizer.h"

namespace distill::diffusion {

struct ScmOptions {
  std::string objective = "distillation";
  double sigma_d = 0.5;
  double p_mean = -1.0;
  double p_std = 1.4;
  double sigma_max = 80.0;
  double tangent_c = 0.1;
  int64_t warmup = 10000;
  double ema_decay = 0.999;
  int64_t iterations = 2000;
  int64_t batch = 256;
  train::OptimizerOptions optimizer = default_optimizer();
  train::ScheduleOptions lr_schedule = constant_lr();

  static train::OptimizerOptions default_optimizer() {
    train::OptimizerOptions o;  // sCM CIFAR-10: RAdam lr 1e-4, betas (0.9, 0.99); distill: Adam
    o.name = "adam";
    o.lr = 1e-4;
    o.beta1 = 0.9;
    o.beta2 = 0.99;
    o.weight_decay = 0.0;
    return o;
  }
  static train::ScheduleOptions constant_lr() {
    train::ScheduleOptions s;
    s.name = "constant";  // sCM: no learning-rate schedule
    return s;
  }

  void visit(config::Visitor& v) {
    v.choice("objective", objective,
             "distillation (sCD: dx/dt from the teacher's probability-flow ODE; with --data none "
             "on the teacher's trajectories: TBCM) or training (sCT: dx/dt = cos t z - sin t x0, "
             "needs training images)",
             {"distillation", "training"});
    v.field("sigma_d", sigma_d, "TrigFlow's data scale sigma_d (x_t = cos t x0 + sin t z, "
            "z ~ N(0, sigma_d^2)); use the teacher's sigma_data", config::Range::above(0));
    v.field("p_mean", p_mean, "training times: log(sigma_d tan t) ~ N(p_mean, p_std^2) (sCM: -1.0)");
    v.field("p_std", p_std, "see p_mean (sCM CIFAR-10: 1.4)", config::Range::above(0));
    v.field("sigma_max", sigma_max,
            "largest EDM level sampled (t <= atan(sigma_max / sigma_d)); sampling starts there",
            config::Range::above(0));
    v.field("tangent_c", tangent_c, "tangent normalisation g / (|g| + c) (sCM: 0.1; 0 = off)",
            config::Range::at_least(0));
    v.field("warmup", warmup,
            "iterations over which the tangent's second term ramps in, r = min(1, it / warmup) "
            "(sCM: 10000; 0 = r = 1 from the start)",
            config::Range::at_least(0));
    v.field("ema_decay", ema_decay,
            "EMA of the student kept for sampling (the model file's ema weights)",
            config::Range::from_below(0, 1));
    v.field("iterations", iterations, "optimizer steps", config::Range::at_least(1));
    v.field("batch", batch, "training points per step", config::Range::at_least(1));
    v.section("optimizer", optimizer);
    v.section("lr_schedule", lr_schedule);
  }
};

// Training times t (shape n) of sCM's proposal, clipped to (0, atan(sigma_max / sigma_d)].
at::Tensor scm_times(int64_t n, const ScmOptions& options, at::Generator& generator,
                     const at::TensorOptions& tensor_options);

// The batch's sCM loss (mean over points) for the student at `params` (a leaf: the loss is
// differentiable in it) at TrigFlow points x_t, times t and velocities dx_dt; F- and its time
// derivative come from the same parameters, detached (sCM's theta- = stopgrad(theta)).
at::Tensor scm_batch_loss(const StudentFactory& student, const at::Tensor& params,
                          const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& dx_dt,
                          const ScmOptions& options, double warmup_r);

// The resumable loop (as consistency_distillation): continues `state` to options.iterations;
// state.target holds the sampling EMA (initialised to params when undefined). A run resumed from
// any checkpointed state ends bit-identical to a straight one.
void scm_distillation(const Denoiser& teacher, const StudentFactory& student,
                      DistillationState& state, const TrainingData& data,
                      const ScmOptions& options, const LoopControl& control);

}  // namespace distill::diffusion
