#include "diffusion/trajectory_points.h"

#include <ATen/ATen.h>

#include <cmath>

#include "diffusion/consistency_distillation.h"
#include "diffusion/noise.h"
#include "diffusion/parameterization.h"
#include "src/core/error.h"

namespace distill::diffusion {

PointSource teacher_trajectory_points(Denoiser teacher, std::vector<int64_t> item_shape,
                                      at::ScalarType dtype, double sigma_max, int64_t steps) {
  if (!(sigma_max > 0) || !std::isfinite(sigma_max)) {
    throw Error("data-free points: sigma_max must be positive and finite, found " +
                std::to_string(sigma_max));
  }
  if (steps < 1) {
    throw Error("data-free points: steps must be >= 1, found " + std::to_string(steps));
  }
  return [teacher, item_shape, dtype, sigma_max, steps](const at::Tensor& sigma,
                                                        at::Generator& generator) {
    at::NoGradGuard no_grad;
    std::vector<int64_t> shape = {sigma.size(0)};
    shape.insert(shape.end(), item_shape.begin(), item_shape.end());
    at::Tensor end = sigma.to(dtype);
    at::Tensor start = at::clamp_min(end, sigma_max);
    at::Tensor x = gaussian(shape, at::TensorOptions().dtype(dtype), generator);
    x = x * per_sample(start, x);
    // Per item Karras grid (EDM eq. 5): ((1 - k/K) start^(1/rho) + k/K end^(1/rho))^rho.
    const double rho = 7.0;
    at::Tensor hi = start.pow(1.0 / rho), lo = end.pow(1.0 / rho);
    OdeStep step = heun_step(teacher);
    at::Tensor s = start;
    for (int64_t k = 1; k <= steps; ++k) {
      const double f = static_cast<double>(k) / steps;
      at::Tensor next = k == steps ? end : (hi + f * (lo - hi)).pow(rho);
      // Items already at their level (start == end) stay where they are.
      at::Tensor moving = next < s;
      at::Tensor stepped = step(x, s, at::where(moving, next, s));
      x = at::where(per_sample(moving, x), stepped, x);
      s = next;
    }
    return x;
  };
}

}  // namespace distill::diffusion
