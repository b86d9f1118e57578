// Exact sample-quality figures on the 2-D toy mixture (diffusion/mixture_distance.*): the density
// against a closed form and a numerical integral, exact samples scoring ~0, and mode collapse
// showing in the moments and the mode coverage.
#include "diffusion/mixture_distance.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"

namespace distill::diffusion {
namespace {

const auto kF64 = at::TensorOptions().dtype(at::kDouble);

// One component N(mu, diag(2, 0.5)) twice (weights .5/.5 = the same density): det Sigma = 1 and
// x - mu = (2, 1) gives a Mahalanobis distance 4/2 + 1/0.5 = 4, so log p = -log(2 pi) - 2.
TEST(MixtureDistance, LogDensityMatchesTheGaussianFormula) {
  at::Tensor cov = at::tensor({2.0, 0.0, 0.0, 0.5}, kF64).view({1, 2, 2});
  GaussianMixture twice(at::tensor({1.0, 1.0}, kF64),
                        at::tensor({1.0, -1.0, 1.0, -1.0}, kF64).view({2, 2}), at::cat({cov, cov}));
  at::Tensor x = at::tensor({3.0, 0.0}, kF64).view({1, 2});
  EXPECT_NEAR(mixture_log_density(twice, x).item<double>(), -std::log(2 * M_PI) - 2, 1e-12);
}

// The three-component fixture's density integrates to 1 (midpoint rule on a fine grid).
TEST(MixtureDistance, DensityIntegratesToOne) {
  GaussianMixture mixture = fixture::three_component_mixture();
  const double h = 0.01;
  at::Tensor axis = at::arange(-3.0 + h / 2, 3.0, h, kF64);
  auto grid = at::meshgrid({axis, axis}, "ij");
  at::Tensor points = at::stack({grid[0].reshape({-1}), grid[1].reshape({-1})}, 1);
  const double mass = mixture_log_density(mixture, points).exp().sum().item<double>() * h * h;
  EXPECT_NEAR(mass, 1.0, 1e-4);
}

TEST(MixtureDistance, ExactSamplesScoreNearZero) {
  GaussianMixture mixture = fixture::three_component_mixture();
  at::Generator gen = make_generator(21);
  at::Tensor samples = mixture.sample(20000, gen);
  MixtureScore s = score_mixture_samples(mixture, samples, 20000, gen);
  // Monte Carlo error at 20000 draws: moments ~1e-3, the log-density means ~1e-2.
  EXPECT_LT(s.frechet_to_moments, 2e-3);
  EXPECT_LT(std::abs(s.cross_entropy_gap), 0.03);
  EXPECT_DOUBLE_EQ(s.modes.covered, 1.0);
  EXPECT_LT(s.modes.kl_to_reference, 1e-3);
}

// Mode collapse: every sample from the first component. The moments move (the mixture's spread
// between modes is lost), two of three modes are never hit, and the histogram's KL to the
// mixture's weights is log(1 / 0.5) — the samples' single mode has weight .5.
TEST(MixtureDistance, ModeCollapseShows) {
  GaussianMixture mixture = fixture::three_component_mixture();
  at::Generator gen = make_generator(22);
  GaussianMixture first(at::ones({1}, kF64), mixture.means().narrow(0, 0, 1),
                        mixture.covariances().narrow(0, 0, 1));
  MixtureScore s = score_mixture_samples(mixture, first.sample(1000, gen), 20000, gen);
  EXPECT_GT(s.frechet_to_moments, 0.5);
  EXPECT_NEAR(s.modes.covered, 1.0 / 3, 1e-12);
  EXPECT_NEAR(s.modes.kl_to_reference, std::log(2.0), 0.05);
}

}  // namespace
}  // namespace distill::diffusion
