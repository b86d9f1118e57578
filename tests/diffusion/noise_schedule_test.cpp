// Noise schedules and parameterizations against their closed-form definitions.
#include "diffusion/noise_schedule.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion/parameterization.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "tests/support/test_support.h"

namespace distill::diffusion {
namespace {

using testing::error_of;

TEST(VpCosineSchedule, EndpointsAndUnclippedCosine) {
  EXPECT_NEAR(vp_cosine_logsnr(0.0, -20, 20), 20.0, 1e-9);
  EXPECT_NEAR(vp_cosine_logsnr(1.0, -20, 20), -20.0, 1e-9);
  // With a very wide range the clipping vanishes: alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2).
  for (double t : {0.1, 0.3, 0.5, 0.77, 0.9}) {
    VpLevel l = vp_level(vp_cosine_logsnr(t, -60, 60));
    EXPECT_NEAR(l.alpha, std::cos(M_PI * t / 2), 1e-9) << t;
    EXPECT_NEAR(l.sigma, std::sin(M_PI * t / 2), 1e-9) << t;
  }
  // Decreasing in t; alpha^2 + sigma^2 = 1; alpha^2 / sigma^2 = exp(logsnr).
  double previous = INFINITY;
  for (int i = 0; i <= 100; ++i) {
    const double l = vp_cosine_logsnr(i / 100.0, -20, 20);
    EXPECT_LT(l, previous);
    previous = l;
    VpLevel v = vp_level(l);
    EXPECT_NEAR(v.alpha * v.alpha + v.sigma * v.sigma, 1.0, 1e-12);
    EXPECT_NEAR(std::log(v.alpha * v.alpha / (v.sigma * v.sigma)), l, 1e-9);
    // The EDM level of the same point: sigma / alpha.
    EXPECT_NEAR(sigma_from_logsnr(l), v.sigma / v.alpha, 1e-9 * (1 + v.sigma / v.alpha));
    EXPECT_NEAR(logsnr_from_sigma(sigma_from_logsnr(l)), l, 1e-9);
  }
}

TEST(KarrasSchedule, MatchesEdmEquationFive) {
  ScheduleOptions o;  // karras, 0.002 .. 80, rho 7
  std::vector<double> s = sampling_sigmas(o, 18);
  ASSERT_EQ(s.size(), 19u);
  EXPECT_DOUBLE_EQ(s.front(), 80.0);
  EXPECT_DOUBLE_EQ(s[17], 0.002);
  EXPECT_EQ(s.back(), 0.0);
  for (int i = 0; i < 18; ++i) {
    const double hand = std::pow(std::pow(80.0, 1 / 7.0) +
                                     i / 17.0 * (std::pow(0.002, 1 / 7.0) - std::pow(80.0, 1 / 7.0)),
                                 7.0);
    EXPECT_NEAR(s[i], hand, 1e-12 * hand) << i;
    EXPECT_GT(s[i], s[i + 1]);
  }
  EXPECT_EQ(sampling_sigmas(o, 1), (std::vector<double>{80.0, 0.0}));
  // Continuous time: t = 1 is sigma_max, t -> 0 approaches sigma_min, t = 0 is clean.
  EXPECT_NEAR(schedule_sigma(o, 1.0), 80.0, 1e-9);
  EXPECT_NEAR(schedule_sigma(o, 1e-12), 0.002, 1e-9);
  EXPECT_EQ(schedule_sigma(o, 0.0), 0.0);
}

TEST(VpCosineSchedule, SamplingGridIsUniformInTime) {
  ScheduleOptions o;
  o.name = "vp_cosine";
  std::vector<double> s = sampling_sigmas(o, 4);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_NEAR(s[0], std::exp(10.0), 1e-6);
  for (int i = 1; i < 4; ++i) {
    EXPECT_NEAR(s[i], sigma_from_logsnr(vp_cosine_logsnr(1 - i / 4.0, -20, 20)), 1e-12);
    EXPECT_LT(s[i], s[i - 1]);
  }
  EXPECT_EQ(s[4], 0.0);
}

TEST(Schedules, BadInputNamesTheKeyAndValues) {
  ScheduleOptions o;
  o.sigma_min = 80;
  o.sigma_max = 0.002;
  std::string message = error_of([&] { config::check(o, "sampler.schedule"); });
  EXPECT_NE(message.find("settings: schedule karras: "), std::string::npos) << message;
  EXPECT_NE(message.find("increasing"), std::string::npos) << message;
  EXPECT_NE(message.find("sigma_min = 80"), std::string::npos) << message;
  o.sigma_min = 0;
  EXPECT_EQ(error_of([&] { config::check(o, "sampler.schedule"); }),
            "key 'sampler.schedule.sigma_min' must be > 0, found 0");
  o = {};
  o.name = "vp_cosine";
  o.logsnr_min = 5;
  o.logsnr_max = -5;
  message = error_of([&] { sampling_sigmas(o, 4); });
  EXPECT_NE(message.find("logsnr_min = 5"), std::string::npos) << message;
  o = {};
  o.name = "linear";
  message = error_of([&] { schedule_sigma(o, 0.5); });
  EXPECT_EQ(message, "key 'schedule.name' expects one of {karras, vp_cosine}, found \"linear\"");
  message = error_of([&] { sampling_sigmas(ScheduleOptions{}, 0); });
  EXPECT_NE(message.find("steps must be >= 1, found 0"), std::string::npos) << message;
  message = error_of([] { parse_prediction("score", "model.prediction"); });
  EXPECT_NE(message.find("model.prediction: unknown prediction 'score'"), std::string::npos)
      << message;
}

TEST(Parameterization, ConversionsRoundTripAndMatchDefinitions) {
  at::Generator gen = make_generator(3);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x = at::randn({6, 3}, gen, opts), eps = at::randn({6, 3}, gen, opts);
  // A VP level and a general (non-VP) one.
  at::Tensor t = at::rand({6, 1}, gen, opts) * 0.9 + 0.05;
  for (bool vp : {true, false}) {
    at::Tensor alpha = vp ? at::cos(M_PI / 2 * t) : at::rand({6, 1}, gen, opts) + 0.2;
    at::Tensor sigma = vp ? at::sin(M_PI / 2 * t) : at::rand({6, 1}, gen, opts) * 3 + 0.1;
    at::Tensor z = alpha * x + sigma * eps;
    EXPECT_TRUE(at::allclose(prediction_from_x_eps(Prediction::kV, x, eps, alpha, sigma),
                             alpha * eps - sigma * x));
    for (Prediction kind : {Prediction::kEps, Prediction::kX, Prediction::kV}) {
      at::Tensor p = prediction_from_x_eps(kind, x, eps, alpha, sigma);
      EXPECT_TRUE(at::allclose(x_from_prediction(kind, p, z, alpha, sigma), x, 1e-10, 1e-10));
      EXPECT_TRUE(at::allclose(eps_from_prediction(kind, p, z, alpha, sigma), eps, 1e-10, 1e-10));
    }
  }
}

TEST(Parameterization, EdmAndConsistencyScalingsByHand) {
  at::Tensor s = at::tensor({0.002, 0.5, 3.0}, at::kDouble);
  Preconditioning c = edm_preconditioning(s, 0.5);
  for (int i = 0; i < 3; ++i) {
    const double v = s[i].item<double>();
    EXPECT_NEAR(c.c_skip[i].item<double>(), 0.25 / (v * v + 0.25), 1e-14);
    EXPECT_NEAR(c.c_out[i].item<double>(), v * 0.5 / std::sqrt(v * v + 0.25), 1e-14);
    EXPECT_NEAR(c.c_in[i].item<double>(), 1 / std::sqrt(v * v + 0.25), 1e-14);
    EXPECT_NEAR(c.c_noise[i].item<double>(), std::log(v) / 4, 1e-14);
  }
  // EDM's preconditioning goal: the network's effective target (y - c_skip (y + s n)) / c_out
  // has unit variance for data of variance sd^2: ((1 - c_skip)^2 sd^2 + c_skip^2 s^2) / c_out^2 = 1.
  EXPECT_TRUE(at::allclose(((1 - c.c_skip).pow(2) * 0.25 + c.c_skip.pow(2) * s.pow(2)) / c.c_out.pow(2),
                           at::ones_like(s)));
  Preconditioning k = consistency_preconditioning(s, 0.5, 0.002);
  EXPECT_NEAR(k.c_skip[0].item<double>(), 1.0, 1e-15);  // f(x, sigma_min) = x
  EXPECT_NEAR(k.c_out[0].item<double>(), 0.0, 1e-15);
  EXPECT_NEAR(k.c_skip[2].item<double>(), 0.25 / (2.998 * 2.998 + 0.25), 1e-14);
  EXPECT_NEAR(k.c_out[2].item<double>(), 0.5 * 2.998 / std::sqrt(9.25), 1e-14);
}

// A network that knows the clean x0 and the noise predicts each target exactly; every output
// kind must then denoise to x0. Also: v-prediction is EDM preconditioning with sigma_data = 1 and
// the output's sign flipped (both are PD's unit-scale VP view).
TEST(Parameterization, OracleNetworksDenoiseExactly) {
  at::Generator gen = make_generator(5);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x0 = at::randn({5, 2}, gen, opts), n = at::randn({5, 2}, gen, opts);
  at::Tensor sigma = at::tensor({0.01, 0.3, 1.0, 7.0, 60.0}, opts);
  at::Tensor x = x0 + per_sample(sigma, x0) * n;
  for (std::string kind : {"eps", "x", "v"}) {
    Network oracle = [&, kind](const at::Tensor& z, const at::Tensor& c_noise) {
      at::Tensor s = per_sample((4 * c_noise).exp(), z);  // EDM level from c_noise = ln(s)/4
      at::Tensor alpha = (1 + s * s).rsqrt(), vp_sigma = s * alpha;
      EXPECT_TRUE(at::allclose(z, alpha * x));
      return prediction_from_x_eps(parse_prediction(kind, "test"), x0, n, alpha, vp_sigma);
    };
    PreconditionOptions o;
    o.output = kind;
    EXPECT_TRUE(at::allclose(precondition(oracle, o)(x, sigma), x0, 1e-9, 1e-9)) << kind;
  }
  Network net = [](const at::Tensor& input, const at::Tensor& c_noise) {
    return at::sin(input * 1.3) + c_noise.unsqueeze(1);
  };
  Network negated = [net](const at::Tensor& input, const at::Tensor& c_noise) {
    return -net(input, c_noise);
  };
  PreconditionOptions v, edm;
  v.output = "v";
  edm.sigma_data = 1.0;
  EXPECT_TRUE(at::allclose(precondition(net, v)(x, sigma), precondition(negated, edm)(x, sigma)));
}

}  // namespace
}  // namespace distill::diffusion
