// TrigFlow and sCM (diffusion/trigflow.h): conversions on oracle networks and the exact Gaussian
// teacher, the ODE velocity, the Jacobian-vector product, the sCM tangent of an exact consistency
// function, and the loss gradient.
#include "diffusion/trigflow.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "diffusion/exact_denoisers.h"
#include "diffusion/parameterization.h"
#include "src/core/runtime.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);
constexpr double kSigmaD = 0.5;

// x0 ~ N(mu, diag v); everything about it in closed form.
struct Gaussian {
  at::Tensor mu = at::tensor({0.3, -0.6, 1.0, 0.0}, kDouble);
  at::Tensor var = at::tensor({0.25, 0.04, 1.0, 0.5}, kDouble);
  GaussianMixture teacher{at::ones({1}, kDouble), mu.unsqueeze(0), at::diag(var).unsqueeze(0)};
  // E[x0 | x_t] for x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2): the Gaussian posterior mean.
  at::Tensor trig_posterior_mean(const at::Tensor& x_t, const at::Tensor& t) const {
    at::Tensor c = at::cos(t).unsqueeze(1), s = at::sin(t).unsqueeze(1);
    return mu + var * c * (x_t - c * mu) / (c * c * var + s * s * kSigmaD * kSigmaD);
  }
  // The ODE's solution in TrigFlow from (x_t, t) to time t2: x_edm moves as
  // mu + (x - mu) sqrt((v + s2^2) / (v + s^2)), and x_t = cos t x_edm.
  at::Tensor flow(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& t2) const {
    at::Tensor s = edm_sigma(t, kSigmaD).unsqueeze(1), s2 = edm_sigma(t2, kSigmaD).unsqueeze(1);
    at::Tensor x = x_t / at::cos(t).unsqueeze(1);
    at::Tensor x2 = mu + (x - mu) * ((var + s2 * s2) / (var + s * s)).sqrt();
    return x2 * at::cos(t2).unsqueeze(1);
  }
  // The exact consistency function: the solution to t = 0.
  TrigDenoiser consistency() const {
    return [this](const at::Tensor& x_t, const at::Tensor& t) {
      return flow(x_t, t, at::zeros_like(t));
    };
  }
};

at::Tensor times() { return at::tensor({0.05, 0.3, 0.8, 1.2, 1.5}, kDouble); }

TEST(TrigFlow, TimeAndSigmaRoundTripAndEdmTeacherIsThePosteriorMean) {
  at::Tensor sigma = at::tensor({0.002, 0.1, 0.5, 3.0, 80.0}, kDouble);
  EXPECT_TRUE(at::allclose(edm_sigma(trig_time(sigma, kSigmaD), kSigmaD), sigma, 1e-12, 0));
  EXPECT_NEAR(trig_time(at::tensor({kSigmaD}, kDouble), kSigmaD)[0].item<double>(), M_PI / 4, 1e-15);
  Gaussian g;
  at::Generator gen = make_generator(3);
  at::Tensor t = times();
  at::Tensor x_t = at::randn({5, 4}, gen, kDouble);
  TrigDenoiser trig = to_trigflow(std::cref(g.teacher), kSigmaD);
  EXPECT_TRUE(at::allclose(trig(x_t, t), g.trig_posterior_mean(x_t, t), 1e-12, 1e-12));
}

// Networks that know x0 and the noise predict each target exactly; through precondition() and
// to_trigflow, every output kind must give back x0 from x_t = cos t x0 + sin t sigma_d n.
TEST(TrigFlow, OracleNetworksOfEveryParameterisationDenoiseTrigFlowPointsExactly) {
  at::Generator gen = make_generator(4);
  at::Tensor x0 = at::randn({5, 3}, gen, kDouble), n = at::randn({5, 3}, gen, kDouble);
  at::Tensor t = times();
  at::Tensor x_t = at::cos(t).unsqueeze(1) * x0 + at::sin(t).unsqueeze(1) * kSigmaD * n;
  // The EDM point and level the conversion must hand the denoiser.
  at::Tensor sigma = edm_sigma(t, kSigmaD);
  at::Tensor x_edm = x0 + per_sample(sigma, x0) * n;
  EXPECT_TRUE(at::allclose(x_t / at::cos(t).unsqueeze(1), x_edm, 1e-12, 1e-12));
  for (std::string kind : {"eps", "x", "v", "edm"}) {
    Network oracle = [&, kind](const at::Tensor& input, const at::Tensor& c_noise) {
      at::Tensor s = per_sample((4 * c_noise).exp(), input);
      if (kind == "edm") {  // F = (x0 - c_skip x) / c_out with EDM's scalings at sigma_data
        const double sd = kSigmaD;
        at::Tensor c_skip = sd * sd / (s * s + sd * sd), c_out = s * sd / (s * s + sd * sd).sqrt();
        return (x0 - c_skip * x_edm) / c_out;
      }
      at::Tensor alpha = (1 + s * s).rsqrt();
      return prediction_from_x_eps(parse_prediction(kind, "test"), x0, n, alpha, s * alpha);
    };
    PreconditionOptions o;
    o.output = kind;
    o.sigma_data = kSigmaD;
    TrigDenoiser trig = to_trigflow(precondition(oracle, o), kSigmaD);
    EXPECT_TRUE(at::allclose(trig(x_t, t), x0, 1e-9, 1e-9)) << kind;
  }
}

// The velocity is the time derivative of the exact ODE solution (central differences in t), and
// the point's own velocity cos t z - sin t x0 on average.
TEST(TrigFlow, VelocityIsTheDerivativeOfTheOdeSolution) {
  Gaussian g;
  at::Generator gen = make_generator(5);
  at::Tensor t = times(), x_t = at::randn({5, 4}, gen, kDouble);
  at::Tensor v = trigflow_velocity(to_trigflow(std::cref(g.teacher), kSigmaD), x_t, t);
  const double h = 1e-5;
  at::Tensor numeric = (g.flow(x_t, t, t + h) - g.flow(x_t, t, t - h)) / (2 * h);
  EXPECT_TRUE(at::allclose(v, numeric, 1e-7, 1e-7)) << (v - numeric).abs().max().item<double>();
}

TEST(TrigFlow, JacobianVectorProductMatchesCentralFiniteDifferences) {
  at::Generator gen = make_generator(6);
  at::Tensor W = at::randn({3, 3}, gen, kDouble);
  TimeFunction fn = [&](const at::Tensor& x, const at::Tensor& t) {
    return at::tanh(at::matmul(x, W)) * at::cos(t).unsqueeze(1) + x * x * t.unsqueeze(1);
  };
  at::Tensor x = at::randn({4, 3}, gen, kDouble), t = at::tensor({0.1, 0.5, 0.9, 1.3}, kDouble);
  at::Tensor dx = at::randn({4, 3}, gen, kDouble), dt = at::randn({4}, gen, kDouble);
  auto [y, jvp] = time_jvp(fn, x, t, dx, dt);
  EXPECT_TRUE(at::allclose(y, fn(x, t)));
  const double h = 1e-6;
  at::Tensor numeric = (fn(x + h * dx, t + h * dt) - fn(x - h * dx, t - h * dt)) / (2 * h);
  EXPECT_TRUE(at::allclose(jvp, numeric, 1e-8, 1e-8)) << (jvp - numeric).abs().max().item<double>();
  // A function of t alone, and one of neither.
  auto [y2, jvp_t] = time_jvp([](const at::Tensor& x, const at::Tensor& t) {
    return at::zeros_like(x) + at::sin(t).unsqueeze(1);
  }, x, t, dx, dt);
  EXPECT_TRUE(at::allclose(jvp_t, (at::cos(t) * dt).unsqueeze(1).expand({4, 3}), 1e-12, 1e-12));
}

// The exact consistency function of a Gaussian has tangent 0 (its F is constant along the ODE:
// df/dt = 0); the denoiser itself (not a consistency function) and the warm-up's r < 1 do not.
TEST(ScmTangent, IsZeroForTheExactConsistencyFunctionOfAGaussian) {
  Gaussian g;
  at::Generator gen = make_generator(7);
  at::Tensor t = at::rand({256}, gen, kDouble) * 1.5 + 0.02;
  at::Tensor x0 = g.mu + g.var.sqrt() * at::randn({256, 4}, gen, kDouble);
  at::Tensor x_t = at::cos(t).unsqueeze(1) * x0 + at::sin(t).unsqueeze(1) * kSigmaD *
                                                      at::randn({256, 4}, gen, kDouble);
  at::Tensor dx_dt = trigflow_velocity(to_trigflow(std::cref(g.teacher), kSigmaD), x_t, t);
  auto tangent = [&](const TrigDenoiser& f, double r) {
    TimeFunction F = [&](const at::Tensor& x, const at::Tensor& s) {
      return trigflow_F(f, x, s, kSigmaD);
    };
    auto [F_minus, dF_dt] = time_jvp(F, x_t, t, dx_dt, at::ones_like(t));
    return scm_tangent(x_t, t, F_minus, dF_dt, dx_dt, kSigmaD, r, 0.0);
  };
  const double exact = tangent(g.consistency(), 1.0).abs().max().item<double>();
  EXPECT_LT(exact, 1e-8);
  EXPECT_GT(tangent(g.consistency(), 0.5).abs().max().item<double>(), 1e-2);
  EXPECT_GT(tangent(to_trigflow(std::cref(g.teacher), kSigmaD), 1.0).abs().max().item<double>(), 1e-2);
  // cos t df/dt of f = cos t x_t - sin t sigma_d F is the tangent (r = 1), for any f: check it on
  // the denoiser with central differences along the exact trajectory.
  TrigDenoiser d = to_trigflow(std::cref(g.teacher), kSigmaD);
  const double h = 1e-5;
  at::Tensor df_dt = (d(g.flow(x_t, t, t + h), t + h) - d(g.flow(x_t, t, t - h), t - h)) / (2 * h);
  EXPECT_TRUE(at::allclose(tangent(d, 1.0), at::cos(t).unsqueeze(1) * df_dt, 1e-6, 1e-6));
  // Normalisation: g / (|g| + c) per sample.
  at::Tensor raw = tangent(d, 1.0);
  TimeFunction F = [&](const at::Tensor& x, const at::Tensor& s) { return trigflow_F(d, x, s, kSigmaD); };
  auto [F_minus, dF_dt] = time_jvp(F, x_t, t, dx_dt, at::ones_like(t));
  at::Tensor normalised = scm_tangent(x_t, t, F_minus, dF_dt, dx_dt, kSigmaD, 1.0, 0.1);
  EXPECT_TRUE(at::allclose(normalised, raw / (raw.norm(2, {1}, true) + 0.1), 1e-12, 1e-12));
}

// The loss is zero at F = F- with g = 0 and its gradient in theta matches central differences (F-
// and g held fixed, as sCM's stop-gradient).
TEST(ScmLoss, ZeroAtTheTargetAndGradientMatchesFiniteDifferences) {
  at::Generator gen = make_generator(8);
  at::Tensor x = at::randn({6, 3}, gen, kDouble), t = at::rand({6}, gen, kDouble) + 0.1;
  at::Tensor F_minus = at::randn({6, 3}, gen, kDouble), g = at::randn({6, 3}, gen, kDouble) * 0.1;
  EXPECT_EQ(scm_loss(F_minus, F_minus, at::zeros_like(g)).abs().max().item<double>(), 0.0);
  auto model = [&](const at::Tensor& theta) {  // F_theta(x, t) = theta0 x + theta1 sin t + theta2 x^2
    return theta[0] * x + theta[1] * at::sin(t).unsqueeze(1) + theta[2] * x * x;
  };
  at::Tensor theta = at::tensor({0.7, -0.3, 0.2}, kDouble).requires_grad_(true);
  at::Tensor loss = scm_loss(model(theta), F_minus, g).mean();
  at::Tensor grad = torch::autograd::grad({loss}, {theta})[0];
  for (int64_t i = 0; i < 3; ++i) {
    at::Tensor plus = theta.detach().clone(), minus = theta.detach().clone();
    plus[i] += 1e-6;
    minus[i] -= 1e-6;
    const double numeric = (scm_loss(model(plus), F_minus, g).mean().item<double>() -
                            scm_loss(model(minus), F_minus, g).mean().item<double>()) / 2e-6;
    EXPECT_NEAR(grad[i].item<double>(), numeric, 1e-8) << i;
  }
}

}  // namespace
}  // namespace distill::diffusion
