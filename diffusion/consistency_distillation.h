#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/progressive_distillation.h"
#include "src/config/options.h"
#include "src/train/optimizer.h"

namespace distill::diffusion {

// Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2). A consistency
// function f(x, s) maps every point of a probability-flow ODE trajectory to its end at
// s = sigma_min; it has the Denoiser signature, and precondition() with output = "consistency"
// builds one from a network with f(x, sigma_min) = x exactly.

// One step of an ODE solver from level s to s_next (per-sample tensors of shape N).
using OdeStep =
    std::function<at::Tensor(const at::Tensor& x, const at::Tensor& s, const at::Tensor& s_next)>;

// The teacher's Heun step (EDM Algorithm 1, one step; s_next > 0).
OdeStep heun_step(Denoiser teacher);

// Per-item distances N: l2 = |a - b|^2 (mean over dimensions, as the paper's squared L2 up to a
// constant), pseudo_huber = sqrt(|a - b|^2 + c^2) - c on the summed squares (Song & Dhariwal
// 2023, "Improved Techniques for Training Consistency Models", c = 0.00054 sqrt(d) by default).
at::Tensor consistency_distance(const at::Tensor& a, const at::Tensor& b,
                                const std::string& distance, double huber_c);

// The CD loss for given clean points x0 (N x ...), noise z and adjacent levels s_n < s_next
// (shape N): x_next = x0 + s_next z, x_n = step(x_next, s_next, s_n) and
// loss = mean d(f(x_next, s_next), f_target(x_n, s_n)) with weight 1.
at::Tensor consistency_loss(const Denoiser& f, const Denoiser& f_target, const OdeStep& step,
                            const at::Tensor& x0, const at::Tensor& z, const at::Tensor& s_n,
                            const at::Tensor& s_next, const std::string& distance,
                            double huber_c);
// The same from the noisy point itself (x_next at s_next, e.g. on a teacher trajectory).
at::Tensor consistency_loss(const Denoiser& f, const Denoiser& f_target, const OdeStep& step,
                            const at::Tensor& x_next, const at::Tensor& s_n,
                            const at::Tensor& s_next, const std::string& distance,
                            double huber_c);

struct ConsistencyOptions {
  int64_t discretisation = 18;  // N of the Karras grid sigma_1 = sigma_min < ... < sigma_N
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double rho = 7.0;
  std::string distance = "l2";
  double huber_c = 0.0;  // <= 0: 0.00054 sqrt(d)
  double ema_decay = 0.95;
  int64_t iterations = 2000;
  int64_t batch = 256;
  train::OptimizerOptions optimizer = ProgressiveOptions::default_optimizer();
  train::ScheduleOptions lr_schedule = ProgressiveOptions::cosine_decay();

  void visit(config::Visitor& v) {
    v.field("discretisation", discretisation, "N: noise levels of the Karras grid",
            config::Range::at_least(2));
    v.field("sigma_min", sigma_min, "smallest level (f is the identity there)",
            config::Range::above(0));
    v.field("sigma_max", sigma_max, "largest level", config::Range::above(0));
    v.field("rho", rho, "Karras grid warping", config::Range::above(0));
    v.rule(std::isfinite(sigma_max) && sigma_min < sigma_max && std::isfinite(rho),
           "distill.consistency.sigma_min and sigma_max must be finite with sigma_min < "
           "sigma_max (an increasing range) and rho finite, found sigma_min = " +
               std::to_string(sigma_min) + ", sigma_max = " + std::to_string(sigma_max) +
               ", rho = " + std::to_string(rho));
    v.choice("distance", distance, "d(f, f_target)", {"l2", "pseudo_huber"});
    v.field("huber_c", huber_c, "pseudo_huber: c (<= 0: 0.00054 sqrt(dimensions))");
    v.field("ema_decay", ema_decay, "mu: decay of the EMA target network",
            config::Range::from_below(0, 1));
    v.field("iterations", iterations, "optimizer steps", config::Range::at_least(1));
    v.field("batch", batch, "training points per step", config::Range::at_least(1));
    v.section("optimizer", optimizer);
    v.section("lr_schedule", lr_schedule);
  }
};

// Trains the consistency model `student(params)` (params in place) against the teacher's Heun
// steps; `target` holds the EMA parameters (initialised to params when undefined). The callback
// receives (0, iteration, loss).
void consistency_distillation(const Denoiser& teacher, const StudentFactory& student,
                              at::Tensor& params, at::Tensor& target, const TrainingData& data,
                              const ConsistencyOptions& options, at::Generator& generator,
                              const ProgressiveCallback& callback = {});

// The resumable form: continues from `state` (fresh: iteration 0, params = the starting student,
// target undefined = params) to options.iterations; state.target holds the EMA network. A run
// resumed from any state handed to control.on_checkpoint ends bit-identical to a straight one
// (each step's draws come from (state.seed, iteration); the entry point above draws the seed from
// its generator).
// With data-free points, x_next is the point at s_next itself (no clean x0 + noise).
void consistency_distillation(const Denoiser& teacher, const StudentFactory& student,
                              DistillationState& state, const TrainingData& data,
                              const ConsistencyOptions& options, const LoopControl& control);

// Multistep consistency sampling: consistency_sample in samplers.h.

}  // namespace distill::diffusion
