// Exact teachers against brute force, the single-Gaussian closed form and Monte Carlo.
#include "diffusion/exact_denoisers.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

TEST(FiniteSetDenoiser, MatchesBruteForceWeightedMean) {
  at::Generator gen = make_generator(1);
  at::Tensor data = at::randn({7, 2, 3}, gen, kDouble);
  at::Tensor x = at::randn({4, 2, 3}, gen, kDouble) * 1.5;
  at::Tensor sigma = at::tensor({0.4, 0.8, 1.5, 3.0}, kDouble);
  FiniteSetDenoiser denoiser(data);
  at::Tensor got = denoiser(x, sigma);
  for (int64_t n = 0; n < 4; ++n) {
    const double s = sigma[n].item<double>();
    std::vector<double> w(7);
    double total = 0;
    for (int64_t i = 0; i < 7; ++i) {
      double d2 = 0;
      for (int64_t j = 0; j < 6; ++j) {
        const double diff = x[n].view(-1)[j].item<double>() - data[i].view(-1)[j].item<double>();
        d2 += diff * diff;
      }
      w[i] = std::exp(-d2 / (2 * s * s));
      total += w[i];
    }
    for (int64_t j = 0; j < 6; ++j) {
      double expected = 0;
      for (int64_t i = 0; i < 7; ++i) expected += w[i] / total * data[i].view(-1)[j].item<double>();
      EXPECT_NEAR(got[n].view(-1)[j].item<double>(), expected, 1e-12) << n << " " << j;
    }
  }
  // Limits: a tiny level returns the nearest training point, a huge one the data mean.
  at::Tensor near = data.index({at::tensor({2, 5}, at::kLong)}) + 1e-3;
  EXPECT_TRUE(at::allclose(denoiser(near, at::full({2}, 1e-4, kDouble)),
                           data.index({at::tensor({2, 5}, at::kLong)})));
  EXPECT_TRUE(at::allclose(denoiser(x, at::full({4}, 1e6, kDouble)),
                           data.mean(0).expand_as(x), 1e-6, 1e-6));
}

TEST(GaussianMixture, SingleGaussianIsTheClosedFormPosteriorMean) {
  at::Tensor mu = at::tensor({0.5, -1.0, 2.0}, kDouble);
  at::Tensor var = at::tensor({0.3, 1.2, 0.05}, kDouble);
  GaussianMixture g(at::ones({1}, kDouble), mu.unsqueeze(0), at::diag(var).unsqueeze(0));
  at::Generator gen = make_generator(2);
  at::Tensor x = at::randn({5, 3}, gen, kDouble) * 3;
  at::Tensor sigma = at::tensor({0.01, 0.2, 1.0, 5.0, 80.0}, kDouble);
  // Per dimension: mu + v / (v + s^2) (x - mu).
  at::Tensor expected = mu + var / (var + sigma.unsqueeze(1).pow(2)) * (x - mu);
  EXPECT_TRUE(at::allclose(g(x, sigma), expected, 1e-12, 1e-12));
  // The same levels for the whole batch take the shared-factorization path.
  at::Tensor same = at::full({5}, 0.7, kDouble);
  EXPECT_TRUE(at::allclose(g(x, same), mu + var / (var + 0.49) * (x - mu), 1e-12, 1e-12));
}

// Monte Carlo: the posterior mean of x0 given x is the prior-sample average weighted by the
// likelihood N(x; x0, s^2), i.e. the finite-set denoiser of many exact samples.
TEST(GaussianMixture, MatchesMonteCarloPosteriorMeanAndMoments) {
  GaussianMixture g = fixture::three_component_mixture();
  at::Generator gen = make_generator(3);
  at::Tensor samples = g.sample(400000, gen);
  EXPECT_TRUE(at::allclose(samples.mean(0), g.mean(), 0, 0.005));
  at::Tensor centred = samples - samples.mean(0);
  EXPECT_TRUE(at::allclose(at::matmul(centred.t(), centred) / samples.size(0), g.covariance(), 0,
                           0.006));
  FiniteSetDenoiser monte_carlo(samples);
  at::Tensor x = at::tensor({-1.2, 0.1, 0.3, 0.3, 0.0, -0.5, 1.0, 1.0}, kDouble).view({4, 2});
  for (double s : {0.3, 1.0, 3.0}) {
    at::Tensor sigma = at::full({4}, s, kDouble);
    at::Tensor exact = g(x, sigma), estimate = monte_carlo(x, sigma);
    EXPECT_LT((exact - estimate).abs().max().item<double>(), 0.01) << s << "\n" << exact << estimate;
  }
  // Responsibilities sum to one and pick the nearest mode at small noise.
  at::Tensor r = g.responsibilities(g.means(), at::full({3}, 0.05, kDouble));
  EXPECT_TRUE(at::allclose(r.sum(1), at::ones({3}, kDouble)));
  EXPECT_TRUE(at::equal(r.argmax(1), at::arange(3, at::kLong)));
}

}  // namespace
}  // namespace distill::diffusion
