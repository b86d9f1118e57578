#include "diffusion/consistency_distillation.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "diffusion/noise.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/parameterization.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/random_streams.h"

namespace distill::diffusion {

OdeStep heun_step(Denoiser teacher) {
  return [teacher](const at::Tensor& x, const at::Tensor& s, const at::Tensor& s_next) {
    at::Tensor h = per_sample(s_next - s, x);
    at::Tensor slope = (x - teacher(x, s)) / per_sample(s, x);
    at::Tensor euler = x + h * slope;
    at::Tensor slope_next = (euler - teacher(euler, s_next)) / per_sample(s_next, x);
    return x + h * 0.5 * (slope + slope_next);
  };
}

at::Tensor consistency_distance(const at::Tensor& a, const at::Tensor& b,
                                const std::string& distance, double huber_c) {
  at::Tensor squared = (a - b).pow(2).flatten(1);
  if (distance == "l2") return squared.mean(1);
  if (distance == "pseudo_huber") {
    const double c = huber_c > 0 ? huber_c : 0.00054 * std::sqrt(static_cast<double>(squared.size(1)));
    return (squared.sum(1) + c * c).sqrt() - c;
  }
  throw Error("consistency.distance: unknown distance '" + distance +
              "' (expected l2 or pseudo_huber)");
}

at::Tensor consistency_loss(const Denoiser& f, const Denoiser& f_target, const OdeStep& step,
                            const at::Tensor& x0, const at::Tensor& z, const at::Tensor& s_n,
                            const at::Tensor& s_next, const std::string& distance,
                            double huber_c) {
  return consistency_loss(f, f_target, step, x0 + per_sample(s_next, x0) * z, s_n, s_next,
                          distance, huber_c);
}

at::Tensor consistency_loss(const Denoiser& f, const Denoiser& f_target, const OdeStep& step,
                            const at::Tensor& x_next, const at::Tensor& s_n,
                            const at::Tensor& s_next, const std::string& distance,
                            double huber_c) {
  at::Tensor target;
  {
    at::NoGradGuard no_grad;
    target = f_target(step(x_next, s_next, s_n), s_n);
  }
  return consistency_distance(f(x_next, s_next), target, distance, huber_c).mean();
}

void consistency_distillation(const Denoiser& teacher, const StudentFactory& student,
                              at::Tensor& params, at::Tensor& target, const TrainingData& data,
                              const ConsistencyOptions& o, at::Generator& generator,
                              const ProgressiveCallback& callback) {
  DistillationState state;
  state.params = params;
  state.target = target;
  state.seed = draw_seed(generator);
  LoopControl control;
  control.on_step = callback;
  consistency_distillation(teacher, student, state, data, o, control);
  params = state.params;
  target = state.target;
}

void consistency_distillation(const Denoiser& teacher, const StudentFactory& student,
                              DistillationState& state, const TrainingData& data,
                              const ConsistencyOptions& o, const LoopControl& control) {
  config::check(o, "distill.consistency");  // the declared ranges and rules (ConsistencyOptions)
  if (!data.clean && !data.points) throw Error("consistency distillation: no training data");
  if (state.stage != 0) {
    throw Error("consistency distillation: state at stage " + std::to_string(state.stage) +
                ", consistency distillation has one stage (0)");
  }
  at::Tensor& params = state.params;
  at::Tensor& target = state.target;
  std::vector<double> grid = karras_grid(o.discretisation, o.sigma_min, o.sigma_max, o.rho);
  at::Tensor table = at::tensor(grid, at::kDouble).to(params.scalar_type());
  OdeStep step = heun_step(teacher);
  auto optimizer = train::Optimizer::make(o.optimizer);
  optimizer->load_state(state.optimizer, "");
  params = params.detach().clone();
  target = target.defined() ? target.detach().clone() : params.clone();
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  for (int64_t it = state.iteration; it < o.iterations; ++it) {
    at::Generator generator = step_generator(state, streams::kConsistencyStep);
    at::Tensor loss;
    at::Tensor leaf = params.detach().requires_grad_(true);
    // Whole batches are drawn (the single-process draws); this rank fits its rows of them.
    int64_t rows = o.batch;
    if (data.clean) {
      // Draw order of the original loop: data, levels, noise.
      at::Tensor x0 = data.clean(o.batch, generator).to(params.scalar_type());
      at::Tensor n = at::randint(0, o.discretisation - 1, {o.batch}, generator, long_options);
      at::Tensor z = gaussian_like(x0, generator);
      x0 = control.batch.rows(x0);
      n = control.batch.rows(n);
      rows = n.size(0);
      loss = consistency_loss(student(leaf), student(target), step, x0, control.batch.rows(z),
                              table.index({n}), table.index({n + 1}), o.distance, o.huber_c);
    } else {
      at::Tensor n = at::randint(0, o.discretisation - 1, {o.batch}, generator, long_options);
      at::Tensor s_next = table.index({n + 1});
      at::Tensor x_next = data.points(s_next, generator).to(params.scalar_type());
      n = control.batch.rows(n);
      rows = n.size(0);
      loss = consistency_loss(student(leaf), student(target), step, control.batch.rows(x_next),
                              table.index({n}), control.batch.rows(s_next), o.distance, o.huber_c);
    }
    ema_loop_step(state, *optimizer, loss, leaf, rows, o.batch,
                  o.optimizer.lr * train::lr_multiplier(o.lr_schedule, it, o.iterations),
                  o.ema_decay, o.iterations, control, "consistency distillation");
  }
}

}  // namespace distill::diffusion
