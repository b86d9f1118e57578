// Consistency distillation: the loss of the exact consistency function of a Gaussian, the
// boundary condition, multistep sampling, distances, and a 2-D mixture distilled to one step.
#include "diffusion/consistency_distillation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion/exact_denoisers.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/parameterization.h"
#include "diffusion/samplers.h"
#include "tests/diffusion/mixture_fixture.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);
constexpr double kSigmaMin = 0.002;

// x0 ~ N(mu, diag v): the ODE solution from s to s' is mu + (x - mu) sqrt((v + s'^2) / (v + s^2))
// (see samplers_test.cpp), so the exact consistency function is the solution to sigma_min.
struct Gaussian {
  at::Tensor mu = at::tensor({0.3, -0.6, 1.0, 0.0}, kDouble);
  at::Tensor var = at::tensor({0.25, 0.04, 1.0, 0.5}, kDouble);
  GaussianMixture teacher{at::ones({1}, kDouble), mu.unsqueeze(0), at::diag(var).unsqueeze(0)};
  at::Tensor flow(const at::Tensor& x, const at::Tensor& s, const at::Tensor& s_next) const {
    return mu + (x - mu) * ((var + s_next.unsqueeze(1).pow(2)) / (var + s.unsqueeze(1).pow(2))).sqrt();
  }
  Denoiser consistency() const {
    return [this](const at::Tensor& x, const at::Tensor& s) {
      return flow(x, s, at::full_like(s, kSigmaMin));
    };
  }
};

struct Batch {
  at::Tensor x0, z, s_n, s_next;
};
Batch draw(int64_t n, int64_t discretisation, at::Generator& gen) {
  std::vector<double> grid = karras_grid(discretisation, kSigmaMin, 80.0, 7.0);
  at::Tensor table = at::tensor(grid, kDouble);
  at::Tensor i = at::randint(0, discretisation - 1, {n}, gen, at::TensorOptions().dtype(at::kLong));
  return {at::randn({n, 4}, gen, kDouble), at::randn({n, 4}, gen, kDouble), table.index({i}),
          table.index({i + 1})};
}

TEST(ConsistencyLoss, IsZeroForTheExactConsistencyFunctionOfAGaussian) {
  Gaussian g;
  at::Generator gen = make_generator(1);
  Batch b = draw(512, 18, gen);
  OdeStep exact = [&](const at::Tensor& x, const at::Tensor& s, const at::Tensor& s_next) {
    return g.flow(x, s, s_next);
  };
  for (std::string d : {"l2", "pseudo_huber"}) {
    const double loss = consistency_loss(g.consistency(), g.consistency(), exact, b.x0, b.z, b.s_n,
                                         b.s_next, d, 0.0)
                            .item<double>();
    EXPECT_LT(std::abs(loss), 1e-12) << d;
  }
  // Not vacuous: the denoiser D itself is not a consistency function and has a clear loss.
  EXPECT_GT(consistency_loss(g.teacher, g.teacher, exact, b.x0, b.z, b.s_n, b.s_next, "l2", 0)
                .item<double>(),
            1e-3);
  // With the teacher's Heun step instead of the exact flow, the loss is the Heun step's error:
  // small, and shrinking fast as the grid is refined (local error O(h^3)).
  auto heun_loss = [&](int64_t n) {
    at::Generator gen2 = make_generator(2);
    Batch c = draw(512, n, gen2);
    return consistency_loss(g.consistency(), g.consistency(), heun_step(g.teacher), c.x0, c.z, c.s_n,
                            c.s_next, "l2", 0)
        .item<double>();
  };
  const double coarse = heun_loss(18), fine = heun_loss(72);
  std::cout << "CD loss of the exact consistency function with Heun steps: N = 18 " << coarse
            << ", N = 72 " << fine << "\n";
  EXPECT_LT(coarse, 1e-3);
  EXPECT_LT(fine, coarse / 100) << coarse << " " << fine;
}

TEST(ConsistencyModel, BoundaryConditionAndMultistepSampling) {
  Network net = [](const at::Tensor& input, const at::Tensor& c_noise) {
    return at::tanh(input * 3) + c_noise.unsqueeze(1);
  };
  PreconditionOptions o;
  o.output = "consistency";
  at::Generator gen = make_generator(3);
  at::Tensor x = at::randn({6, 4}, gen, kDouble);
  EXPECT_TRUE(at::allclose(precondition(net, o)(x, at::full({6}, kSigmaMin, kDouble)), x, 0, 1e-15));
  // Exact consistency function: one step and three steps both give x0's distribution (at
  // sigma_min): mean mu, variance v + sigma_min^2.
  Gaussian g;
  for (std::vector<double> sigmas : {std::vector<double>{80.0}, std::vector<double>{80.0, 2.0, 0.5}}) {
    at::Tensor noise = at::randn({100000, 4}, gen, kDouble) * 80.0 + g.mu;
    at::Tensor out = consistency_sample(g.consistency(), noise, sigmas, kSigmaMin, gen);
    EXPECT_TRUE(at::allclose(out.mean(0), g.mu, 0, 0.01)) << out.mean(0);
    EXPECT_TRUE(at::allclose(out.var(0), g.var + kSigmaMin * kSigmaMin, 0.02, 0)) << out.var(0);
  }
  EXPECT_THROW(consistency_sample(g.consistency(), x, {1.0, 2.0}, kSigmaMin, gen), Error);
}

TEST(ConsistencyLoss, DistancesByHand) {
  at::Tensor a = at::tensor({1.0, 2.0, 3.0, 4.0}, kDouble).view({2, 2});
  at::Tensor b = at::tensor({1.0, 0.0, 0.0, 0.0}, kDouble).view({2, 2});
  at::Tensor l2 = consistency_distance(a, b, "l2", 0);
  EXPECT_NEAR(l2[0].item<double>(), 2.0, 1e-15);  // (0 + 4) / 2
  EXPECT_NEAR(l2[1].item<double>(), 12.5, 1e-15);
  at::Tensor huber = consistency_distance(a, b, "pseudo_huber", 0.5);
  EXPECT_NEAR(huber[0].item<double>(), std::sqrt(4.25) - 0.5, 1e-15);
  EXPECT_NEAR(huber[1].item<double>(), std::sqrt(25.25) - 0.5, 1e-15);
  EXPECT_NEAR(consistency_distance(a, b, "pseudo_huber", 0)[0].item<double>(),
              std::sqrt(4 + std::pow(0.00054 * std::sqrt(2.0), 2)) - 0.00054 * std::sqrt(2.0),
              1e-15);
  try {
    consistency_distance(a, b, "lpips", 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown distance 'lpips'"), std::string::npos);
  }
  ConsistencyOptions o;
  o.sigma_min = 1.0;
  o.sigma_max = 0.5;
  try {
    config::check(o, "distill.consistency");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("settings: distill.consistency.sigma_min and sigma_max "
                                         "must be finite with sigma_min < sigma_max"),
              std::string::npos)
        << e.what();
  }
}

using fixture::four_mode_shares;

TEST(ConsistencyDistillation, TwoDimensionalMixtureInOneStepKeepsItsModes) {
  const fixture::FourModes mixture = fixture::four_mode_mixture();
  const at::Tensor& means = mixture.means;
  const GaussianMixture& teacher = mixture.teacher;
  MlpDenoiserNet net(2, MlpDenoiserOptions{{64, 64, 64}, 6});
  PreconditionOptions pre;
  pre.output = "consistency";
  pre.sigma_data = 1.0;
  StudentFactory student = [&](const at::Tensor& params) {
    return precondition(net.network(params), pre);
  };
  DataSource data = [&](int64_t n, at::Generator& g) { return teacher.sample(n, g); };
  at::Generator gen = make_generator(5);
  at::Tensor params = net.init_params(gen);
  // As in the paper, the student starts from a denoiser of the teacher (here fitted to it).
  ProgressiveOptions fit;
  fit.schedule.name = "karras";
  fit.iterations = 800;
  fit.optimizer.lr = 3e-3;
  fit_denoiser(teacher, student, params, data, fit, gen);
  at::Tensor fitted = params.clone();
  ConsistencyOptions o;
  o.iterations = 3000;  // ~8 s; 1000 iterations leave the 1-step student at ~20 % near the modes
  o.optimizer.lr = 3e-3;
  at::Tensor target;
  consistency_distillation(teacher, student, params, target, data, o, gen);
  at::NoGradGuard no_grad;
  at::Tensor noise = at::randn({4000, 2}, gen) * 80.0;
  at::Tensor one = consistency_sample(student(target), noise, {80.0}, kSigmaMin, gen);
  at::Tensor two = consistency_sample(student(target), noise, {80.0, 0.8}, kSigmaMin, gen);
  at::Tensor init = consistency_sample(student(fitted), noise, {80.0}, kSigmaMin, gen);
  at::Tensor one_share = four_mode_shares(one, means), two_share = four_mode_shares(two, means);
  // The starting point, a denoiser used as a 1-step model, lands on the data mean.
  EXPECT_LT(four_mode_shares(init, means).sum().item<double>(), 0.05);
  // After distillation one step puts most samples near the modes (exact distribution: 95.6 %),
  // every mode keeping a fair share of 0.25; two steps (80 -> 0.8) too.
  EXPECT_GT(one_share.sum().item<double>(), 0.7) << one_share;
  EXPECT_GT(one_share.min().item<double>(), 0.12) << one_share;
  EXPECT_GT(two_share.sum().item<double>(), 0.7) << two_share;
  std::cout << "near-mode share: CD 1 step " << one_share.sum().item<double>() << ", 2 steps "
            << two_share.sum().item<double>() << "\n";
}

}  // namespace
}  // namespace distill::diffusion
