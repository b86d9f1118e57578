#pragma once
// The 2-D, three-component Gaussian mixture the exact-denoiser and sampler tests share: unequal
// weights and correlated, anisotropic covariances, so no symmetry hides an error.
#include <ATen/ATen.h>

#include "diffusion/exact_denoisers.h"

namespace distill::diffusion::fixture {

inline GaussianMixture three_component_mixture() {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor w = at::tensor({0.5, 0.3, 0.2}, f64);
  at::Tensor means = at::tensor({-1.0, 0.0, 1.0, 0.5, 0.0, -1.2}, f64).view({3, 2});
  at::Tensor covs =
      at::tensor({0.05, 0.02, 0.02, 0.03, 0.02, 0.0, 0.0, 0.08, 0.04, -0.01, -0.01, 0.02}, f64)
          .view({3, 2, 2});
  return GaussianMixture(w, means, covs);
}

}  // namespace distill::diffusion::fixture
