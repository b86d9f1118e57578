#pragma once
// TrigFlow and continuous-time consistency (sCM): Lu & Song, "Simplifying, Stabilizing and Scaling
// Continuous-Time Consistency Models" (2024, arXiv 2410.11081), sec. 3-4.
//
// TrigFlow writes a noisy point as x_t = cos(t) x0 + sin(t) z, z ~ N(0, sigma_d^2 I), t in
// [0, pi/2]. It is the EDM point x = x0 + sigma n seen at another scale: x_t = cos(t) x with
// sigma = sigma_d tan(t). So every denoiser here (EDM, or eps/x/v through precondition()) is a
// TrigFlow model: D_trig(x_t, t) = D(x_t / cos t, sigma_d tan t), and an EDM-preconditioned
// network F_net is exactly TrigFlow's f(x_t, t) = cos(t) x_t - sin(t) sigma_d F(x_t / sigma_d, t)
// with F = -F_net (c_skip = cos^2 t, c_out = sigma_d sin t, c_in = cos t / sigma_d at that sigma).
#include <ATen/core/Tensor.h>

#include <functional>

#include "diffusion/denoiser.h"

namespace distill::diffusion {

// A denoiser in TrigFlow coordinates: (x_t, t) -> E[x0 | x_t], t of shape N.
using TrigDenoiser = std::function<at::Tensor(const at::Tensor& x_t, const at::Tensor& t)>;

// t = atan(sigma / sigma_d) and back.
at::Tensor trig_time(const at::Tensor& sigma, double sigma_d);
at::Tensor edm_sigma(const at::Tensor& t, double sigma_d);

// D_trig(x_t, t) = D(x_t / cos t, sigma_d tan t) (t < pi/2).
TrigDenoiser to_trigflow(Denoiser denoiser, double sigma_d);

// The probability-flow ODE in TrigFlow: dx_t/dt = (cos t x_t - D_trig(x_t, t)) / sin t (t > 0):
// with x0 = cos t x_t - sin t v, v = dx_t/dt = cos t z - sin t x0 is the point's velocity.
at::Tensor trigflow_velocity(const TrigDenoiser& denoiser, const at::Tensor& x_t,
                             const at::Tensor& t);

// F of a consistency function f in TrigFlow form: F = (cos t x_t - f(x_t, t)) / (sigma_d sin t),
// so that f = cos t x_t - sin t sigma_d F (t > 0).
at::Tensor trigflow_F(const TrigDenoiser& f, const at::Tensor& x_t, const at::Tensor& t,
                      double sigma_d);

// A function of (x, t) and its Jacobian-vector product along (dx, dt):
// d/de fn(x + e dx, t + e dt) at e = 0, computed by double backward (the JVP is the gradient of
// <J^T u, (dx, dt)> with respect to the dummy cotangent u), so any twice-differentiable model
// works. Returns (fn(x, t) detached, the JVP).
using TimeFunction = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t)>;
std::pair<at::Tensor, at::Tensor> time_jvp(const TimeFunction& fn, const at::Tensor& x,
                                           const at::Tensor& t, const at::Tensor& dx,
                                           const at::Tensor& dt);

// sCM's tangent (eq. 8 with the warm-up factor r of sec. 4.2): with F- = F_theta-(x_t, t) and its
// total derivative dF-/dt along the ODE (dx_t/dt),
//   g = -cos^2 t (sigma_d F- - dx_t/dt) - r cos t sin t (x_t + sigma_d dF-/dt)
// (= cos t df-/dt at r = 1, so g = 0 for an exact consistency function). With normalise_c > 0 it
// is normalised per sample: g / (|g| + normalise_c) (sec. 4.3).
at::Tensor scm_tangent(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& F_minus,
                       const at::Tensor& dF_dt, const at::Tensor& dx_dt, double sigma_d,
                       double warmup_r, double normalise_c);

// The per-sample sCM loss |F_theta - F- - g|^2 / D (mean over dimensions); its gradient in theta
// is sCM's (F- and g are constants).
at::Tensor scm_loss(const at::Tensor& F_theta, const at::Tensor& F_minus, const at::Tensor& g);

}  // namespace distill::diffusion
