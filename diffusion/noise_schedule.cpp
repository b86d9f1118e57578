#include "diffusion/noise_schedule.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {
namespace {

std::string num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

}  // namespace

double vp_cosine_logsnr(double t, double logsnr_min, double logsnr_max) {
  const double b = std::atan(std::exp(-0.5 * logsnr_max));
  const double a = std::atan(std::exp(-0.5 * logsnr_min)) - b;
  return -2.0 * std::log(std::tan(a * t + b));
}

VpLevel vp_level(double logsnr) {
  // sigmoid(l) = 1 / (1 + exp(-l)), computed without overflow for large |l|.
  auto sigmoid = [](double l) {
    return l >= 0 ? 1.0 / (1.0 + std::exp(-l)) : std::exp(l) / (1.0 + std::exp(l));
  };
  return {std::sqrt(sigmoid(logsnr)), std::sqrt(sigmoid(-logsnr))};
}

double sigma_from_logsnr(double logsnr) { return std::exp(-0.5 * logsnr); }
double logsnr_from_sigma(double sigma) { return -2.0 * std::log(sigma); }

double schedule_sigma(const ScheduleOptions& o, double t) {
  config::check(o, "schedule");  // the declared ranges and rules (ScheduleOptions)
  if (!(t >= 0 && t <= 1)) throw Error("schedule: time must be in [0, 1], found " + num(t));
  if (t == 0) return 0.0;
  if (o.name == "karras") {
    const double lo = std::pow(o.sigma_min, 1.0 / o.rho), hi = std::pow(o.sigma_max, 1.0 / o.rho);
    return std::pow(lo + t * (hi - lo), o.rho);
  }
  return sigma_from_logsnr(vp_cosine_logsnr(t, o.logsnr_min, o.logsnr_max));
}

at::Tensor schedule_sigma(const ScheduleOptions& o, const at::Tensor& t) {
  config::check(o, "schedule");
  if (t.numel() > 0 && !(t.min().item<double>() >= 0 && t.max().item<double>() <= 1)) {
    throw Error("schedule: times must be in [0, 1], found " + num(t.min().item<double>()) +
                " .. " + num(t.max().item<double>()));
  }
  at::Tensor sigma;
  if (o.name == "karras") {
    const double lo = std::pow(o.sigma_min, 1.0 / o.rho), hi = std::pow(o.sigma_max, 1.0 / o.rho);
    sigma = (lo + t * (hi - lo)).pow(o.rho);
  } else {
    // The scalar form's steps: logsnr = -2 log tan(a t + b), sigma = exp(-logsnr / 2).
    const double b = std::atan(std::exp(-0.5 * o.logsnr_max));
    const double a = std::atan(std::exp(-0.5 * o.logsnr_min)) - b;
    at::Tensor logsnr = -2.0 * at::log(at::tan(a * t + b));
    sigma = at::exp(-0.5 * logsnr);
  }
  return at::where(t == 0, at::zeros_like(sigma), sigma);
}

std::vector<double> karras_grid(int64_t n, double sigma_min, double sigma_max, double rho) {
  if (n < 2) throw Error("karras grid: needs at least 2 noise levels, found " + std::to_string(n));
  const double lo = std::pow(sigma_min, 1.0 / rho), hi = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> grid(n);
  for (int64_t i = 0; i < n; ++i) {
    grid[i] = std::pow(lo + static_cast<double>(i) / (n - 1) * (hi - lo), rho);
  }
  grid.front() = sigma_min;  // exact endpoints despite rounding in pow
  grid.back() = sigma_max;
  return grid;
}

std::vector<double> sampling_sigmas(const ScheduleOptions& o, int64_t steps) {
  config::check(o, "schedule");
  if (steps < 1) throw Error("sampler: steps must be >= 1, found " + std::to_string(steps));
  std::vector<double> sigmas;
  if (o.name == "karras") {
    if (steps == 1) {
      sigmas = {o.sigma_max};
    } else {
      std::vector<double> grid = karras_grid(steps, o.sigma_min, o.sigma_max, o.rho);
      sigmas.assign(grid.rbegin(), grid.rend());
    }
    sigmas.push_back(0.0);
  } else {
    for (int64_t i = 0; i <= steps; ++i) {
      sigmas.push_back(schedule_sigma(o, 1.0 - static_cast<double>(i) / steps));
    }
    sigmas.back() = 0.0;
  }
  return sigmas;
}

}  // namespace distill::diffusion
