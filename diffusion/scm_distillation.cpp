#include "diffusion/scm_distillation.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

#include "diffusion/noise.h"
#include "diffusion/parameterization.h"
#include "diffusion/trigflow.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/random_streams.h"

namespace distill::diffusion {

at::Tensor scm_times(int64_t n, const ScmOptions& o, at::Generator& generator,
                     const at::TensorOptions& tensor_options) {
  at::Tensor tau = at::randn({n}, generator, tensor_options) * o.p_std + o.p_mean;
  const double t_max = std::atan(o.sigma_max / o.sigma_d);
  return at::clamp_max(at::atan(at::exp(tau) / o.sigma_d), t_max);
}

at::Tensor scm_batch_loss(const StudentFactory& student, const at::Tensor& params,
                          const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& dx_dt,
                          const ScmOptions& o, double warmup_r) {
  // F- and dF-/dt along the ODE: the same weights, detached (theta- = stopgrad theta).
  const TrigDenoiser f_minus = to_trigflow(student(params.detach()), o.sigma_d);
  const TimeFunction F_minus_of = [&](const at::Tensor& x, const at::Tensor& s) {
    return trigflow_F(f_minus, x, s, o.sigma_d);
  };
  auto [F_minus, dF_dt] = time_jvp(F_minus_of, x_t, t, dx_dt, at::ones_like(t));
  const at::Tensor g = scm_tangent(x_t, t, F_minus, dF_dt, dx_dt, o.sigma_d, warmup_r, o.tangent_c);
  const at::Tensor F_theta = trigflow_F(to_trigflow(student(params), o.sigma_d), x_t, t, o.sigma_d);
  return scm_loss(F_theta, F_minus, g).mean();
}

void scm_distillation(const Denoiser& teacher, const StudentFactory& student,
                      DistillationState& state, const TrainingData& data, const ScmOptions& o,
                      const LoopControl& control) {
  config::check(o, "distill.scm");
  if (!data.clean && !data.points) throw Error("sCM: no training data");
  if (o.objective == "training" && !data.clean) {
    throw Error("distill.scm.objective = training (sCT) needs training images (x0 and its noise "
                "give the velocity); with --data none use objective = distillation");
  }
  if (state.stage != 0) {
    throw Error("sCM: state at stage " + std::to_string(state.stage) + ", sCM has one stage (0)");
  }
  at::Tensor& params = state.params;
  at::Tensor& ema = state.target;
  auto optimizer = train::Optimizer::make(o.optimizer);
  optimizer->load_state(state.optimizer, "");
  params = params.detach().clone();
  ema = ema.defined() ? ema.detach().clone() : params.clone();
  const TrigDenoiser trig_teacher = to_trigflow(teacher, o.sigma_d);
  const auto options = at::TensorOptions().dtype(params.scalar_type());
  for (int64_t it = state.iteration; it < o.iterations; ++it) {
    at::Generator generator = step_generator(state, streams::kScmStep);
    // Whole batches are drawn (the single-process draws); this rank fits its rows of them.
    at::Tensor t = scm_times(o.batch, o, generator, options);
    at::Tensor x_t, dx_dt;
    if (data.clean) {
      at::Tensor x0 = data.clean(o.batch, generator).to(params.scalar_type());
      at::Tensor z = gaussian_like(x0, generator) * o.sigma_d;
      x0 = control.batch.rows(x0);
      z = control.batch.rows(z);
      t = control.batch.rows(t);
      at::Tensor cos_t = per_sample(at::cos(t), x0), sin_t = per_sample(at::sin(t), x0);
      x_t = cos_t * x0 + sin_t * z;
      if (o.objective == "training") dx_dt = cos_t * z - sin_t * x0;
    } else {
      // A point at EDM level sigma is x_t / cos t: scaled into TrigFlow.
      at::Tensor x = data.points(edm_sigma(t, o.sigma_d), generator).to(params.scalar_type());
      x = control.batch.rows(x);
      t = control.batch.rows(t);
      x_t = per_sample(at::cos(t), x) * x;
    }
    if (!dx_dt.defined()) {
      at::NoGradGuard no_grad;
      dx_dt = trigflow_velocity(trig_teacher, x_t, t);
    }
    const double r = o.warmup > 0 ? std::min(1.0, static_cast<double>(it) / o.warmup) : 1.0;
    at::Tensor leaf = params.detach().requires_grad_(true);
    at::Tensor loss = scm_batch_loss(student, leaf, x_t, t, dx_dt, o, r);
    ema_loop_step(state, *optimizer, loss, leaf, t.size(0), o.batch,
                  o.optimizer.lr * train::lr_multiplier(o.lr_schedule, it, o.iterations),
                  o.ema_decay, o.iterations, control, "sCM");
  }
}

}  // namespace distill::diffusion
