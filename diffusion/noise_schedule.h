#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "src/config/options.h"

namespace distill::diffusion {

// Every sampler and distillation method here works in the variance-exploding form of EDM
// (Karras et al. 2022): a noisy point is x = x0 + sigma * n. A variance-preserving point
// z = alpha x0 + s n is the same point scaled, x = z / alpha with sigma = s / alpha, and its
// log-SNR is log(alpha^2 / s^2) = -2 log(sigma). So one noise level sigma describes both.
struct ScheduleOptions {
  std::string name = "karras";
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double rho = 7.0;
  double logsnr_min = -20.0;
  double logsnr_max = 20.0;

  void visit(config::Visitor& v) {
    v.choice("name", name,
             "noise levels a sampler visits: karras (EDM eq. 5) or vp_cosine (Progressive "
             "Distillation's cosine log-SNR, uniform in t)",
             {"karras", "vp_cosine"});
    v.field("sigma_min", sigma_min, "karras: smallest noise level before the final step to 0",
            config::Range::above(0));
    v.field("sigma_max", sigma_max, "karras: largest noise level (where sampling starts)",
            config::Range::above(0));
    v.field("rho", rho, "karras: warping of the steps (EDM uses 7)", config::Range::above(0));
    v.field("logsnr_min", logsnr_min, "vp_cosine: log-SNR at t = 1 (where sampling starts)");
    v.field("logsnr_max", logsnr_max, "vp_cosine: log-SNR at t = 0 (the network's input range)");
    // This struct sits under several sections (diffusion.sampler, diffusion.train,
    // distill.progressive), so the rules name the fields relative to `schedule`.
    v.rule(name != "karras" ||
               (std::isfinite(sigma_max) && sigma_min < sigma_max && std::isfinite(rho)),
           "schedule karras: sigma_min and sigma_max must be finite with sigma_min < sigma_max "
           "(an increasing range) and rho finite, found sigma_min = " +
               std::to_string(sigma_min) + ", sigma_max = " + std::to_string(sigma_max) +
               ", rho = " + std::to_string(rho));
    v.rule(name != "vp_cosine" ||
               (std::isfinite(logsnr_min) && std::isfinite(logsnr_max) && logsnr_min < logsnr_max),
           "schedule vp_cosine: logsnr_min and logsnr_max must be finite with logsnr_min < "
           "logsnr_max (an increasing range), found logsnr_min = " +
               std::to_string(logsnr_min) + ", logsnr_max = " + std::to_string(logsnr_max));
  }
};

// Progressive Distillation's cosine schedule with the log-SNR clipped to [logsnr_min,
// logsnr_max]: logsnr(t) = -2 log tan(a t + b), with b = atan(exp(-logsnr_max / 2)) and
// a = atan(exp(-logsnr_min / 2)) - b, so logsnr(0) = logsnr_max and logsnr(1) = logsnr_min.
double vp_cosine_logsnr(double t, double logsnr_min, double logsnr_max);

// The variance-preserving pair of a log-SNR: alpha^2 = sigmoid(logsnr), s^2 = sigmoid(-logsnr).
struct VpLevel {
  double alpha;
  double sigma;
};
VpLevel vp_level(double logsnr);

// The EDM noise level of a log-SNR and back: sigma = exp(-logsnr / 2).
double sigma_from_logsnr(double logsnr);
double logsnr_from_sigma(double sigma);

// The named schedule's noise level at continuous time t in [0, 1]: t = 1 is sigma_max (or
// logsnr_min), t -> 0 approaches sigma_min (or logsnr_max), and t = 0 itself is clean data
// (sigma 0), where every sampler ends. Progressive distillation picks its times from this.
double schedule_sigma(const ScheduleOptions& options, double t);
// The same for a tensor of times (double), elementwise, as one tensor expression.
at::Tensor schedule_sigma(const ScheduleOptions& options, const at::Tensor& t);

// The noise levels of a `steps`-step sampler: steps + 1 decreasing values ending with 0.
//   karras: EDM eq. 5, sigma_i = (smax^(1/rho) + i/(steps-1) (smin^(1/rho) - smax^(1/rho)))^rho
//           for i < steps, then 0 (one step: sigma_max then 0);
//   vp_cosine: schedule_sigma(1 - i / steps) for i <= steps.
std::vector<double> sampling_sigmas(const ScheduleOptions& options, int64_t steps);

// EDM eq. 5 directly (used by consistency distillation's discretisation, where the grid runs
// from sigma_min up to sigma_max without the final 0): n increasing values.
std::vector<double> karras_grid(int64_t n, double sigma_min, double sigma_max, double rho);

}  // namespace distill::diffusion
