#include "diffusion/trigflow.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "diffusion/parameterization.h"

namespace distill::diffusion {

at::Tensor trig_time(const at::Tensor& sigma, double sigma_d) { return at::atan(sigma / sigma_d); }

at::Tensor edm_sigma(const at::Tensor& t, double sigma_d) { return at::tan(t) * sigma_d; }

TrigDenoiser to_trigflow(Denoiser denoiser, double sigma_d) {
  return [denoiser = std::move(denoiser), sigma_d](const at::Tensor& x_t, const at::Tensor& t) {
    return denoiser(x_t / per_sample(at::cos(t), x_t), edm_sigma(t, sigma_d));
  };
}

at::Tensor trigflow_velocity(const TrigDenoiser& denoiser, const at::Tensor& x_t,
                             const at::Tensor& t) {
  return (per_sample(at::cos(t), x_t) * x_t - denoiser(x_t, t)) / per_sample(at::sin(t), x_t);
}

at::Tensor trigflow_F(const TrigDenoiser& f, const at::Tensor& x_t, const at::Tensor& t,
                      double sigma_d) {
  return (per_sample(at::cos(t), x_t) * x_t - f(x_t, t)) / (per_sample(at::sin(t), x_t) * sigma_d);
}

std::pair<at::Tensor, at::Tensor> time_jvp(const TimeFunction& fn, const at::Tensor& x,
                                           const at::Tensor& t, const at::Tensor& dx,
                                           const at::Tensor& dt) {
  at::AutoGradMode autograd(true);
  at::Tensor x_leaf = x.detach().requires_grad_(true);
  at::Tensor t_leaf = t.detach().requires_grad_(true);
  at::Tensor y = fn(x_leaf, t_leaf);
  // u is a dummy cotangent: J^T u is linear in u, so d/du <J^T u, v> = J v.
  at::Tensor u = at::zeros_like(y).requires_grad_(true);
  std::vector<at::Tensor> vjp =
      torch::autograd::grad({y}, {x_leaf, t_leaf}, {u}, /*retain_graph=*/true,
                            /*create_graph=*/true, /*allow_unused=*/true);
  at::Tensor dot = at::zeros({}, y.options());
  if (vjp[0].defined()) dot = dot + (vjp[0] * dx).sum();
  if (vjp[1].defined()) dot = dot + (vjp[1] * dt).sum();
  at::Tensor jvp = dot.requires_grad()
                       ? torch::autograd::grad({dot}, {u}, {}, false, false, true)[0]
                       : at::Tensor();
  if (!jvp.defined()) jvp = at::zeros_like(y);  // fn does not depend on (x, t)
  return {y.detach(), jvp.detach()};
}

at::Tensor scm_tangent(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& F_minus,
                       const at::Tensor& dF_dt, const at::Tensor& dx_dt, double sigma_d,
                       double warmup_r, double normalise_c) {
  at::Tensor cos_t = per_sample(at::cos(t), x_t), sin_t = per_sample(at::sin(t), x_t);
  at::Tensor g = -cos_t * cos_t * (sigma_d * F_minus - dx_dt) -
                 warmup_r * cos_t * sin_t * (x_t + sigma_d * dF_dt);
  if (normalise_c > 0) {
    at::Tensor norm = g.flatten(1).norm(2, 1);
    g = g / per_sample(norm + normalise_c, g);
  }
  return g;
}

at::Tensor scm_loss(const at::Tensor& F_theta, const at::Tensor& F_minus, const at::Tensor& g) {
  return (F_theta - F_minus.detach() - g.detach()).pow(2).flatten(1).mean(1);
}

}  // namespace distill::diffusion
