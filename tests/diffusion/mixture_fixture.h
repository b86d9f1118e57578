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

// Four equal modes N(mu_k, 0.04 I) at (+-1, +-1) (float): the few-step distillation tests' toy.
struct FourModes {
  at::Tensor means;  // 4 x 2, double
  GaussianMixture teacher;
};
inline FourModes four_mode_mixture() {
  at::Tensor means =
      at::tensor({-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0}, at::kDouble).view({4, 2});
  return {means, GaussianMixture(at::ones({4}), means.to(at::kFloat),
                                 (0.04 * at::eye(2)).expand({4, 2, 2}).contiguous())};
}

// Share of samples within 0.5 of each of the four modes.
inline at::Tensor four_mode_shares(const at::Tensor& samples, const at::Tensor& means) {
  auto [nearest, which] = at::cdist(samples.to(at::kDouble), means).min(1);
  return at::one_hot(which.masked_select(nearest < 0.5), 4).to(at::kDouble).sum(0) /
         samples.size(0);
}

}  // namespace distill::diffusion::fixture
