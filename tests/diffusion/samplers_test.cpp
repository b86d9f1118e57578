// Samplers with exact denoisers: the closed-form ODE solution of a Gaussian and the moments of a
// 2-D Gaussian mixture.
#include "diffusion/samplers.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion/exact_denoisers.h"
#include "diffusion/noise.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

struct GaussianCase {
  at::Tensor mu = at::tensor({0.5, -1.0, 2.0}, kDouble);
  at::Tensor var = at::tensor({0.3, 1.2, 0.05}, kDouble);
  GaussianMixture teacher{at::ones({1}, kDouble), mu.unsqueeze(0), at::diag(var).unsqueeze(0)};
  // For x0 ~ N(mu, v) the probability-flow ODE dx/ds = (x - D(x, s)) / s has
  // D = mu + v / (v + s^2)(x - mu), so d(x - mu)/ds = s / (v + s^2) (x - mu) and
  // x(s') - mu = (x(s) - mu) sqrt((v + s'^2) / (v + s^2)).
  at::Tensor solution(const at::Tensor& x, double from, double to) const {
    return mu + (x - mu) * ((var + to * to) / (var + from * from)).sqrt();
  }
};

double ode_error(const std::string& name, int64_t steps) {
  GaussianCase c;
  ScheduleOptions schedule;
  std::vector<double> sigmas = sampling_sigmas(schedule, steps);
  at::Generator gen = make_generator(11);
  at::Tensor x = c.mu + at::randn({64, 3}, gen, kDouble) * std::sqrt(80.0 * 80.0 + 1.0);
  at::Tensor out = run_sampler(name, c.teacher, x, sigmas, gen);
  return (out - c.solution(x, 80.0, 0.0)).abs().max().item<double>();
}

TEST(Samplers, DdimWithTheExactGaussianDenoiserFollowsTheClosedFormOde) {
  // DDIM is Euler's method on the ODE: first order, so doubling the steps halves the error,
  // and it reaches the closed-form endpoint as steps grow.
  // (Errors are absolute on samples of scale ~1 started at sigma = 80.)
  const double e64 = ode_error("ddim", 64), e128 = ode_error("ddim", 128);
  const double e1024 = ode_error("ddim", 1024);
  EXPECT_NEAR(e64 / e128, 2.0, 0.2);
  EXPECT_LT(e1024, 0.01);
  // Midway levels too: one DDIM step from s to s' is exact when the data is a single point.
  FiniteSetDenoiser point(at::tensor({0.25, -0.75}, kDouble).view({1, 2}));
  at::Tensor x = at::tensor({3.0, 4.0, -8.0, 1.0}, kDouble).view({2, 2});
  at::Tensor one = sample_ddim(point, x, {5.0, 2.0});
  EXPECT_TRUE(at::allclose(one, at::tensor({0.25, -0.75}, kDouble) +
                                    (x - at::tensor({0.25, -0.75}, kDouble)) * 0.4));
}

TEST(Samplers, SecondOrderSolversConvergeToTheClosedFormOdeSolution) {
  for (std::string name : {"heun", "dpmpp_2m"}) {
    const double e64 = ode_error(name, 64), e128 = ode_error(name, 128);
    const double e1024 = ode_error(name, 1024);
    EXPECT_NEAR(e64 / e128, 4.0, 0.5) << name << " " << e64 << " " << e128;  // second order
    EXPECT_LT(e1024, 5e-5) << name;
    EXPECT_LT(e64, ode_error("ddim", 64) / 5) << name;
  }
}

// Distance of a sample set to the mixture's known distribution: the largest error of the mean,
// covariance and mode weights (each sample counted for its most probable component).
double moment_error(const GaussianMixture& g, const at::Tensor& samples) {
  at::Tensor mean = samples.mean(0), centred = samples - mean;
  at::Tensor cov = at::matmul(centred.t(), centred) / samples.size(0);
  at::Tensor modes = g.responsibilities(samples, at::full({samples.size(0)}, 1e-3, kDouble));
  at::Tensor share = at::one_hot(modes.argmax(1), 3).to(at::kDouble).mean(0);
  return std::max({(mean - g.mean()).abs().max().item<double>(),
                   (cov - g.covariance()).abs().max().item<double>(),
                   (share - g.weights()).abs().max().item<double>()});
}

double sampler_moment_error(const std::string& name, int64_t steps) {
  GaussianMixture g = fixture::three_component_mixture();
  SamplerOptions o;
  o.name = name;
  o.steps = steps;
  at::Generator gen = make_generator(21);
  return moment_error(g, generate(o, g, {2}, 20000, gen, at::kDouble));
}

TEST(Samplers, EachReproducesTheMixtureMomentsAsStepsGrow) {
  // Monte Carlo floor of 20000 samples: ~0.01 on these moments.
  const std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> cases = {
      {"ddim", {2, 128}}, {"ddpm", {2, 256}}, {"heun", {2, 32}}, {"dpmpp_2m", {2, 32}}};
  for (const auto& [name, steps] : cases) {
    const double coarse = sampler_moment_error(name, steps.first);
    const double fine = sampler_moment_error(name, steps.second);
    EXPECT_LT(fine, 0.025) << name << " at " << steps.second << " steps";
    EXPECT_GT(coarse, 2 * fine) << name << ": " << coarse << " vs " << fine;
  }
}

// Seeded noise takes one path: generate()'s starting noise and every later draw of a stochastic
// sampler are the draws of diffusion::gaussian from the same generator, so generate() equals the
// sampler run by hand on noise drawn that way, bit for bit, for every sampler.
TEST(Samplers, GenerateDrawsItsNoiseThroughTheOneNoisePath) {
  const GaussianMixture g = fixture::three_component_mixture();
  for (const std::string name : {"ddim", "ddpm", "heun", "dpmpp_2m", "consistency"}) {
    SamplerOptions o;
    o.name = name;
    o.steps = 4;
    const std::vector<double> sigmas = sampler_sigmas(o, "sampler");
    at::Generator a = make_generator(5, 2, 1), b = make_generator(5, 2, 1);
    at::Tensor generated = generate(o, g, {2}, 16, a, at::kDouble);
    at::Tensor start = sigmas.front() * gaussian({16, 2}, kDouble, b);
    at::Tensor by_hand = run_sampler(name, g, start, sigmas, b);
    EXPECT_TRUE(at::equal(generated, by_hand)) << name;
    // And that path is the generator's plain normal draw.
    at::Generator c = make_generator(5, 2, 1);
    EXPECT_TRUE(at::equal(start, sigmas.front() * at::randn({16, 2}, c, kDouble))) << name;
  }
}

// The exact consistency function of N(mu, var) data: the ODE solution (GaussianCase::solution)
// from s down to 0.
struct GaussianConsistency {
  GaussianCase c;
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& sigma) const {
    at::Tensor s2 = (sigma * sigma).view({-1, 1});
    return c.mu + (x - c.mu) * (c.var / (c.var + s2)).sqrt();
  }
};

TEST(Samplers, MultistepConsistencySamplingHasTheClosedFormMoments) {
  // Start x ~ N(0, T^2); x0 = mu + a_T (x - mu) with a_s = sqrt(v / (v + s^2)); re-noised to tau
  // and mapped again: out = mu + a_tau (x0 + tau z - mu). So
  //   E[out] = mu (1 - a_tau a_T),  Var[out] = a_tau^2 (a_T^2 T^2 + tau^2).
  GaussianConsistency f;
  const double big = 80.0, tau = 0.7;
  const int64_t n = 200000;
  at::Generator gen = make_generator(31);
  at::Tensor x = big * at::randn({n, 3}, gen, kDouble);
  at::Tensor out = run_sampler("consistency", f, x, {big, tau, 0.0}, gen);
  at::Tensor a_big = (f.c.var / (f.c.var + big * big)).sqrt();
  at::Tensor a_tau = (f.c.var / (f.c.var + tau * tau)).sqrt();
  at::Tensor mean = f.c.mu * (1 - a_tau * a_big);
  at::Tensor var = a_tau * a_tau * (a_big * a_big * big * big + tau * tau);
  // Standard errors: sqrt(var / n) for the mean, var sqrt(2 / n) for the variance; 5 of them.
  EXPECT_TRUE(at::allclose(out.mean(0), mean, 0, 5 * (var / n).sqrt().max().item<double>()))
      << out.mean(0) << mean;
  EXPECT_TRUE(((out.var(0) - var).abs() < 5 * var * std::sqrt(2.0 / n)).all().item<bool>())
      << out.var(0) << var;
  // Re-noising matters: the two-step samples are not the one-step ones (a_T x differs).
  at::Generator gen2 = make_generator(31);
  at::Tensor x2 = big * at::randn({n, 3}, gen2, kDouble);
  at::Tensor one = run_sampler("consistency", f, x2, {big, 0.0}, gen2);
  EXPECT_TRUE(at::allclose(one, f(x2, at::full({n}, big, kDouble))));  // one step = f(x, T)
  EXPECT_GT((one - out).abs().mean().item<double>(), 0.1);
}

TEST(Samplers, ExplicitLevelsReplaceTheScheduleAndBadOnesAreErrors) {
  SamplerOptions o;
  o.steps = 2;
  o.sigmas = {80.0, 0.8};
  EXPECT_EQ(sampler_sigmas(o, "diffusion.sampler"), (std::vector<double>{80.0, 0.8, 0.0}));
  o.sigmas.clear();
  EXPECT_EQ(sampler_sigmas(o, "diffusion.sampler"), sampling_sigmas(o.schedule, 2));
  auto message = [&](std::vector<double> sigmas, int64_t steps) {
    o.sigmas = std::move(sigmas);
    o.steps = steps;
    try {
      sampler_sigmas(o, "diffusion.sampler");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({80.0, 0.8}, 3)
                .find("diffusion.sampler.sigmas has 2 levels, one per step, but "
                      "diffusion.sampler.steps is 3"),
            std::string::npos);
  EXPECT_NE(message({0.8, 80.0}, 2).find("diffusion.sampler.sigmas[1] = 80"), std::string::npos);
  EXPECT_NE(message({80.0, 0.0}, 2).find("diffusion.sampler.sigmas[1] = 0"), std::string::npos);
}

TEST(Samplers, BadGridsAreErrors) {
  GaussianMixture g = fixture::three_component_mixture();
  at::Tensor x = at::zeros({2, 2}, kDouble);
  try {
    sample_ddim(g, x, {1.0, 2.0, 0.0});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must decrease"), std::string::npos) << e.what();
  }
  at::Generator gen = make_generator(0);
  try {
    run_sampler("euler_a", g, x, {1.0, 0.0}, gen);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown sampler 'euler_a'"), std::string::npos);
  }
}

}  // namespace
}  // namespace distill::diffusion
