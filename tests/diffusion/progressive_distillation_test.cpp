// Progressive distillation: the target's defining identity, the paper's VP form, bad step
// counts, and a 2-D mixture distilled to one and two steps keeping its modes.
#include "diffusion/progressive_distillation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "diffusion/exact_denoisers.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"
#include "diffusion/samplers.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

GaussianMixture four_modes(at::ScalarType dtype) {
  at::Tensor means = at::tensor({-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0}, kDouble).view({4, 2});
  at::Tensor covs = (0.04 * at::eye(2, kDouble)).expand({4, 2, 2}).contiguous();
  return GaussianMixture(at::ones({4}, kDouble).to(dtype), means.to(dtype), covs.to(dtype));
}

TEST(ProgressiveTarget, OneStudentStepEqualsTwoTeacherSteps) {
  GaussianMixture teacher = four_modes(at::kDouble);
  ScheduleOptions schedule = ProgressiveOptions::vp_cosine_schedule();
  at::Generator gen = make_generator(4);
  const int64_t n = 4;  // student steps; teacher grid t_j = j / 8
  for (int64_t i = 1; i <= n; ++i) {
    const double s = schedule_sigma(schedule, i / 4.0), mid = schedule_sigma(schedule, (2 * i - 1) / 8.0);
    const double end = schedule_sigma(schedule, (i - 1) / 4.0);
    at::Tensor x = teacher.sample(16, gen) + s * at::randn({16, 2}, gen, kDouble);
    at::Tensor target = progressive_target(teacher, x, at::full({16}, s, kDouble),
                                           at::full({16}, mid, kDouble), at::full({16}, end, kDouble));
    // Two DDIM steps of the teacher (the sampler's own code) vs one DDIM step with the target.
    at::Tensor two = sample_ddim(teacher, x, end > 0 ? std::vector<double>{s, mid, end}
                                                     : std::vector<double>{s, mid, 0.0});
    at::Tensor one = target + (end / s) * (x - target);
    EXPECT_TRUE(at::allclose(one, two, 1e-9, 1e-9 * (1 + s))) << i;
  }
}

// The paper's formula in VP notation (PD Algorithm 2): z = alpha x + sigma eps,
// z' = alpha' x^ + (sigma' / sigma)(z - alpha x^), x~ = (z'' - (sigma'' / sigma) z) /
// (alpha'' - (sigma'' / sigma) alpha), the teacher seeing z through x^ = D(z / alpha, sigma / alpha).
TEST(ProgressiveTarget, EqualsThePapersVariancePreservingFormula) {
  GaussianMixture teacher = four_modes(at::kDouble);
  at::Generator gen = make_generator(6);
  for (double t : {1.0, 0.6, 0.25}) {
    const double dt = 0.125;
    VpLevel a = vp_level(vp_cosine_logsnr(t, -20, 20));
    VpLevel b = vp_level(vp_cosine_logsnr(t - dt / 2, -20, 20));
    VpLevel c = vp_level(vp_cosine_logsnr(t - dt, -20, 20));
    at::Tensor x0 = teacher.sample(8, gen), eps = at::randn({8, 2}, gen, kDouble);
    at::Tensor z = a.alpha * x0 + a.sigma * eps;
    auto x_hat = [&](const at::Tensor& zz, VpLevel l) {
      return teacher(zz / l.alpha, at::full({8}, l.sigma / l.alpha, kDouble));
    };
    at::Tensor xa = x_hat(z, a);
    at::Tensor z1 = b.alpha * xa + (b.sigma / a.sigma) * (z - a.alpha * xa);
    at::Tensor xb = x_hat(z1, b);
    at::Tensor z2 = c.alpha * xb + (c.sigma / b.sigma) * (z1 - b.alpha * xb);
    at::Tensor paper = (z2 - (c.sigma / a.sigma) * z) / (c.alpha - (c.sigma / a.sigma) * a.alpha);
    at::Tensor ours = progressive_target(teacher, z / a.alpha, at::full({8}, a.sigma / a.alpha, kDouble),
                                         at::full({8}, b.sigma / b.alpha, kDouble),
                                         at::full({8}, c.sigma / c.alpha, kDouble));
    EXPECT_TRUE(at::allclose(ours, paper, 1e-8, 1e-8)) << t << "\n" << ours << paper;
  }
}

TEST(ProgressiveDistillation, StepCountsNotReachableByHalvingAreErrors) {
  ProgressiveOptions o;
  o.teacher_steps = 6;
  o.student_steps = 4;
  try {
    config::check(o, "distill.progressive");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "settings: distill.progressive: student_steps = 4 is not reachable by halving "
              "teacher_steps = 6 (teacher_steps must be student_steps * 2^k, k >= 1)");
  }
  o.teacher_steps = 8;
  o.student_steps = 1;
  EXPECT_NO_THROW(config::check(o, "distill.progressive"));
  o.weighting = "snr";
  EXPECT_THROW(config::check(o, "distill.progressive"), Error);
}

// Share of samples within 0.5 (2.5 standard deviations) of each of the four modes.
at::Tensor mode_shares(const at::Tensor& samples, const GaussianMixture& g) {
  at::Tensor d = at::cdist(samples.to(at::kDouble), g.means().to(at::kDouble));
  auto [nearest, which] = d.min(1);
  at::Tensor hit = nearest < 0.5;
  return at::one_hot(which.masked_select(hit), 4).to(at::kDouble).sum(0) / samples.size(0);
}

TEST(ProgressiveDistillation, TwoDimensionalMixtureKeepsItsModesInOneAndTwoSteps) {
  GaussianMixture teacher = four_modes(at::kFloat);
  MlpDenoiserNet net(2, MlpDenoiserOptions{{64, 64, 64}, 6});
  PreconditionOptions pre;
  pre.output = "v";
  StudentFactory student = [&](const at::Tensor& params) {
    return precondition(net.network(params), pre);
  };
  at::Generator gen = make_generator(9);
  ProgressiveOptions o;
  o.teacher_steps = 8;
  o.student_steps = 1;
  o.iterations = 600;
  o.batch = 256;
  o.optimizer.lr = 3e-3;
  DataSource data = [&](int64_t n, at::Generator& g) { return teacher.sample(n, g); };
  at::Tensor params = net.init_params(gen);
  // Stage 0: the MLP copies the exact teacher, so distillation starts from "the teacher".
  ProgressiveOptions fit = o;
  fit.iterations = 1000;
  fit_denoiser(teacher, student, params, data, fit, gen);
  ProgressiveOptions two = o;
  two.student_steps = 2;
  at::Tensor two_step = progressive_distillation(teacher, student, params, data, two, gen);
  // Continue from the 2-step student to 1 step (the full run is 8 -> 4 -> 2 -> 1).
  ProgressiveOptions last = o;
  last.teacher_steps = 2;
  at::Tensor one_step = progressive_distillation(student(two_step), student, two_step, data, last, gen);

  SamplerOptions sampler;
  sampler.name = "ddim";
  sampler.schedule = o.schedule;
  auto shares = [&](const Denoiser& d, int64_t steps) {
    sampler.steps = steps;
    at::NoGradGuard no_grad;
    return mode_shares(generate(sampler, d, {2}, 4000, gen, at::kFloat), teacher);
  };
  at::Tensor teacher_one = shares(teacher, 1);
  at::Tensor teacher_eight = shares(teacher, 8);
  at::Tensor student_one = shares(student(one_step), 1);
  at::Tensor student_two = shares(student(two_step), 2);
  // The teacher's own 1-step DDIM lands on the data mean, far from every mode.
  EXPECT_LT(teacher_one.sum().item<double>(), 0.05) << teacher_one;
  // The 8-step teacher puts ~95 % of its samples near the modes (the exact distribution: 95.6 %).
  EXPECT_GT(teacher_eight.sum().item<double>(), 0.9) << teacher_eight;
  // The students put most samples near the modes, and every mode keeps a fair share (0.25).
  for (const at::Tensor& s : {student_one, student_two}) {
    EXPECT_GT(s.sum().item<double>(), 0.75) << s;
    EXPECT_GT(s.min().item<double>(), 0.15) << s;
  }
  std::cout << "near-mode share: teacher 8 steps " << teacher_eight.sum().item<double>()
            << ", teacher 1 step " << teacher_one.sum().item<double>() << ", student 2 steps "
            << student_two.sum().item<double>() << ", student 1 step "
            << student_one.sum().item<double>() << "\n";
}

}  // namespace
}  // namespace distill::diffusion
