#include "diffusion/samplers.h"

#include <ATen/ATen.h>

#include <cmath>

#include "diffusion/noise.h"
#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {
namespace {

void check_grid(const std::vector<double>& sigmas) {
  if (sigmas.size() < 2) {
    throw Error("sampler: the noise-level grid needs at least 2 entries, found " +
                std::to_string(sigmas.size()));
  }
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    if (!(sigmas[i] > sigmas[i + 1]) || !(sigmas[i + 1] >= 0) || !std::isfinite(sigmas[i])) {
      throw Error("sampler: noise levels must decrease to >= 0, found sigma[" + std::to_string(i) +
                  "] = " + std::to_string(sigmas[i]) + " then " + std::to_string(sigmas[i + 1]));
    }
  }
}

at::Tensor level(const at::Tensor& x, double sigma) {
  return at::full({x.size(0)}, sigma, x.options());
}

}  // namespace

at::Tensor sample_ddim(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas) {
  check_grid(sigmas);
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    at::Tensor d = denoiser(x, level(x, sigmas[i]));
    x = d + (sigmas[i + 1] / sigmas[i]) * (x - d);
  }
  return x;
}

at::Tensor sample_ddpm(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas,
                       at::Generator& generator) {
  check_grid(sigmas);
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double s2 = sigmas[i] * sigmas[i], n2 = sigmas[i + 1] * sigmas[i + 1];
    at::Tensor d = denoiser(x, level(x, sigmas[i]));
    x = d * ((s2 - n2) / s2) + x * (n2 / s2);
    if (n2 > 0) {
      x = x + std::sqrt(n2 * (s2 - n2) / s2) * gaussian_like(x, generator);
    }
  }
  return x;
}

at::Tensor sample_heun(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas) {
  check_grid(sigmas);
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double s = sigmas[i], next = sigmas[i + 1];
    at::Tensor slope = (x - denoiser(x, level(x, s))) / s;
    at::Tensor euler = x + (next - s) * slope;
    if (next == 0) {
      x = euler;
    } else {
      at::Tensor slope_next = (euler - denoiser(euler, level(x, next))) / next;
      x = x + (next - s) * 0.5 * (slope + slope_next);
    }
  }
  return x;
}

at::Tensor sample_dpmpp_2m(const Denoiser& denoiser, at::Tensor x,
                           const std::vector<double>& sigmas) {
  check_grid(sigmas);
  at::Tensor previous;
  double previous_h = 0;
  for (size_t i = 0; i + 1 < sigmas.size(); ++i) {
    const double s = sigmas[i], next = sigmas[i + 1];
    at::Tensor d = denoiser(x, level(x, s));
    if (next == 0) {
      x = d;  // the first-order step to sigma = 0 lands on the denoised point
      break;
    }
    const double h = std::log(s / next);  // lambda step, lambda = -log sigma
    at::Tensor used = d;
    if (previous.defined()) {
      const double r = previous_h / h;
      used = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * previous;
    }
    // x' = (s'/s) x - (e^-h - 1) D  (DPM-Solver++ eq. for alpha = 1)
    x = (next / s) * x - std::expm1(-h) * used;
    previous = d;
    previous_h = h;
  }
  return x;
}

at::Tensor consistency_sample(const Denoiser& f, at::Tensor x, const std::vector<double>& sigmas,
                              double sigma_min, at::Generator& generator) {
  if (sigmas.empty()) throw Error("consistency sampling: needs at least one noise level");
  for (size_t i = 0; i < sigmas.size(); ++i) {
    if (!(sigmas[i] > sigma_min) || (i > 0 && !(sigmas[i] < sigmas[i - 1]))) {
      throw Error("consistency sampling: levels must decrease and stay above sigma_min = " +
                  std::to_string(sigma_min) + ", found sigma[" + std::to_string(i) +
                  "] = " + std::to_string(sigmas[i]));
    }
  }
  auto level = [&](double s) { return at::full({x.size(0)}, s, x.options()); };
  x = f(x, level(sigmas[0]));
  for (size_t i = 1; i < sigmas.size(); ++i) {
    const double s = sigmas[i];
    x = x + std::sqrt(s * s - sigma_min * sigma_min) * gaussian_like(x, generator);
    x = f(x, level(s));
  }
  return x;
}

std::vector<double> sampler_sigmas(const SamplerOptions& options, const std::string& key) {
  config::check(options, key);  // the declared ranges and rules (SamplerOptions)
  if (options.sigmas.empty()) return sampling_sigmas(options.schedule, options.steps);
  std::vector<double> grid = options.sigmas;
  grid.push_back(0.0);
  return grid;
}

at::Tensor run_sampler(const std::string& name, const Denoiser& denoiser, at::Tensor x,
                       const std::vector<double>& sigmas, at::Generator& generator) {
  if (name == "ddim") return sample_ddim(denoiser, std::move(x), sigmas);
  if (name == "ddpm") return sample_ddpm(denoiser, std::move(x), sigmas, generator);
  if (name == "heun") return sample_heun(denoiser, std::move(x), sigmas);
  if (name == "dpmpp_2m") return sample_dpmpp_2m(denoiser, std::move(x), sigmas);
  if (name == "consistency") {
    check_grid(sigmas);
    if (sigmas.back() != 0) {
      throw Error(
          "sampler consistency: the grid must end at sigma = 0 (its output is clean), found " +
          std::to_string(sigmas.back()));
    }
    return consistency_sample(denoiser, std::move(x), {sigmas.begin(), sigmas.end() - 1}, 0.0,
                              generator);
  }
  throw Error("sampler.name: unknown sampler '" + name +
              "' (expected ddim, ddpm, heun, dpmpp_2m or consistency)");
}

at::Tensor generate(const SamplerOptions& options, const Denoiser& denoiser,
                    const std::vector<int64_t>& item_shape, int64_t count,
                    at::Generator& generator, at::ScalarType dtype) {
  std::vector<double> sigmas = sampler_sigmas(options, "sampler");
  std::vector<int64_t> shape = {count};
  shape.insert(shape.end(), item_shape.begin(), item_shape.end());
  at::Tensor x = sigmas.front() * gaussian(shape, at::TensorOptions().dtype(dtype), generator);
  return run_sampler(options.name, denoiser, x, sigmas, generator);
}

}  // namespace distill::diffusion
