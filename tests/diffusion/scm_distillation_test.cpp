// sCM's loop (diffusion/scm_distillation.h): its time proposal, and sCD / sCT distilling the 2-D
// four-mode mixture's exact teacher into a one-step model that keeps the modes.
#include "diffusion/scm_distillation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <iostream>

#include "diffusion/exact_denoisers.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"
#include "diffusion/samplers.h"
#include "diffusion/trigflow.h"
#include "tests/diffusion/mixture_fixture.h"
#include "src/core/runtime.h"

namespace distill::diffusion {
namespace {

TEST(ScmTimes, LogSigmaIsNormalWithTheProposalsMeanAndStd) {
  ScmOptions o;
  o.sigma_max = 1e6;  // no clipping in range
  at::Generator gen = make_generator(1);
  at::Tensor t = scm_times(200000, o, gen, at::TensorOptions().dtype(at::kDouble));
  at::Tensor log_sigma = at::log(edm_sigma(t, o.sigma_d));
  EXPECT_NEAR(log_sigma.mean().item<double>(), o.p_mean, 0.01);
  EXPECT_NEAR(log_sigma.std().item<double>(), o.p_std, 0.01);
  o.sigma_max = 0.5;  // clipped to atan(sigma_max / sigma_d) = pi / 4
  at::Tensor clipped = scm_times(1000, o, gen, at::TensorOptions().dtype(at::kDouble));
  EXPECT_NEAR(clipped.max().item<double>(), M_PI / 4, 1e-12);
  EXPECT_GT(clipped.min().item<double>(), 0.0);
}

// sCM's gradient is the continuous-time limit of consistency distillation's: for a student f and
// the exact ODE step from t to t - dt, the gradient of |f(x_t, t) - f-(x_{t-dt}, t - dt)|^2 / 2
// is about dt (df/dtheta)^T df-/dt = -dt sigma_d sin t (dF/dtheta)^T df-/dt, and sCM's (r = 1, no
// normalisation) is -(dF/dtheta)^T g with g = cos t df-/dt: the two agree after dividing by
// dt sigma_d tan t, per sample, to O(dt).
TEST(ScmLoss, GradientIsTheContinuousLimitOfConsistencyDistillations) {
  const double sigma_d = 0.5;
  GaussianMixture teacher(at::ones({1}, at::kDouble), at::tensor({0.3, -0.2}, at::kDouble).view({1, 2}),
                          at::tensor({0.2, 0.05, 0.05, 0.1}, at::kDouble).view({1, 2, 2}));
  MlpDenoiserNet net(2, MlpDenoiserOptions{{16, 16}, 4});
  PreconditionOptions pre;
  pre.output = "consistency";
  pre.sigma_data = sigma_d;
  StudentFactory student = [&](const at::Tensor& params) {
    return precondition(net.network(params), pre);
  };
  at::Generator gen = make_generator(3);
  const at::Tensor params = net.init_params(gen).to(at::kDouble);
  const TrigDenoiser trig_teacher = to_trigflow(std::cref(teacher), sigma_d);
  ScmOptions o;
  o.sigma_d = sigma_d;
  o.tangent_c = 0;
  for (double t_value : {0.3, 0.9, 1.3}) {
    at::Tensor t = at::full({1}, t_value, at::kDouble);
    at::Tensor x_t = at::tensor({0.4, -0.7}, at::kDouble).view({1, 2});
    at::Tensor dx_dt = trigflow_velocity(trig_teacher, x_t, t);
    at::Tensor leaf = params.clone().requires_grad_(true);
    at::Tensor scm = torch::autograd::grad(
        {scm_batch_loss(student, leaf, x_t, t, dx_dt, o, 1.0) / 2}, {leaf})[0];
    auto cd_gradient = [&](double dt) {
      // x_{t-dt} on the teacher's ODE: a fine RK4 integration of the velocity.
      at::Tensor x = x_t.clone(), s = t.clone();
      const int steps = 50;
      const double h = -dt / steps;
      auto v = [&](const at::Tensor& y, const at::Tensor& time) {
        return trigflow_velocity(trig_teacher, y, time);
      };
      for (int i = 0; i < steps; ++i) {
        at::Tensor k1 = v(x, s), k2 = v(x + h / 2 * k1, s + h / 2), k3 = v(x + h / 2 * k2, s + h / 2),
                   k4 = v(x + h * k3, s + h);
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
        s = s + h;
      }
      at::Tensor earlier = to_trigflow(student(params), sigma_d)(x, s).detach();
      at::Tensor p = params.clone().requires_grad_(true);
      at::Tensor now = to_trigflow(student(p), sigma_d)(x_t, t);
      at::Tensor loss = (now - earlier).pow(2).sum() / 2 / 2;  // / D, as scm_loss's mean
      return torch::autograd::grad({loss}, {p})[0] / (dt * sigma_d * std::tan(t_value));
    };
    at::Tensor coarse = cd_gradient(1e-3), fine = cd_gradient(1e-4);
    const double scale = scm.abs().max().item<double>();
    const double error_fine = (fine - scm).abs().max().item<double>() / scale;
    const double error_coarse = (coarse - scm).abs().max().item<double>() / scale;
    EXPECT_LT(error_fine, 1e-3) << "t = " << t_value;
    EXPECT_LT(error_fine, error_coarse / 5) << "t = " << t_value << ": not converging in dt";
  }
}

using fixture::four_mode_shares;

void distil_the_mixture(const std::string& objective) {
  const fixture::FourModes mixture = fixture::four_mode_mixture();
  const at::Tensor& means = mixture.means;
  const GaussianMixture& teacher = mixture.teacher;
  MlpDenoiserNet net(2, MlpDenoiserOptions{{64, 64, 64}, 6});
  PreconditionOptions pre;
  pre.output = "consistency";
  pre.sigma_data = 1.0;
  pre.sigma_min = 0.002;
  StudentFactory student = [&](const at::Tensor& params) {
    return precondition(net.network(params), pre);
  };
  DataSource data = [&](int64_t n, at::Generator& g) { return teacher.sample(n, g); };
  at::Generator gen = make_generator(5);
  at::Tensor params = net.init_params(gen);
  ProgressiveOptions fit;  // the student starts from a denoiser of the teacher
  fit.schedule.name = "karras";
  fit.iterations = 800;
  fit.optimizer.lr = 3e-3;
  fit_denoiser(teacher, student, params, data, fit, gen);
  const at::Tensor fitted = params.clone();
  // sCM's time proposal and tangent normalisation as in the paper; the budget and lr are this
  // test's (measured on Debian's LibTorch 1.13: 2000 steps at lr 3e-3 left sCD at 37 % near the
  // modes in one step, lr 3e-4 at 46 %; 4000 at 1e-3: sCD 78 %, sCT 85 %). One-step sCD at this
  // budget is not robust: the same seeds on the 2.15 wheel's kernels gave 37 % in one step (one
  // mode at 1 %) and 75 % in two (its smallest mode at 9.6 %). So one step must only leave the
  // denoiser's collapse behind, and two steps must keep every mode (each above 5 %).
  ScmOptions o;
  o.objective = objective;
  o.sigma_d = 1.0;
  o.iterations = 4000;
  o.warmup = 200;
  o.batch = 256;
  o.ema_decay = 0.99;
  o.optimizer.lr = 1e-3;
  DistillationState state;
  state.params = params;
  state.seed = 9;
  scm_distillation(teacher, student, state, data, o, LoopControl{});
  at::NoGradGuard no_grad;
  at::Tensor noise = at::randn({4000, 2}, gen) * 80.0;
  at::Tensor one = consistency_sample(student(state.target), noise, {80.0}, 0.002, gen);
  at::Tensor two = consistency_sample(student(state.target), noise, {80.0, 0.98}, 0.002, gen);
  at::Tensor init = consistency_sample(student(fitted), noise, {80.0}, 0.002, gen);
  at::Tensor one_share = four_mode_shares(one, means), two_share = four_mode_shares(two, means);
  EXPECT_LT(four_mode_shares(init, means).sum().item<double>(), 0.05);  // a denoiser lands on the mean
  EXPECT_GT(one_share.sum().item<double>(), 0.3) << objective << " " << one_share;
  EXPECT_GT(two_share.sum().item<double>(), 0.6) << objective << " " << two_share;
  EXPECT_GT(two_share.min().item<double>(), 0.05) << objective << " " << two_share;
  std::cout << "near-mode shares by mode (" << objective << "):";
  for (const auto& [name, shares] : {std::pair{"1 step", one_share}, std::pair{"2 steps", two_share}}) {
    std::cout << " " << name;
    for (int64_t k = 0; k < 4; ++k) std::cout << " " << shares[k].item<double>();
  }
  std::cout << "\n";
  std::cout << "near-mode share: " << objective << " 1 step " << one_share.sum().item<double>()
            << ", 2 steps " << two_share.sum().item<double>() << "\n";
}

TEST(ScmDistillation, TwoDimensionalMixtureInOneStepKeepsItsModes) { distil_the_mixture("distillation"); }

TEST(ScmTraining, TwoDimensionalMixtureInOneStepKeepsItsModes) { distil_the_mixture("training"); }

}  // namespace
}  // namespace distill::diffusion
