// Data-free training points lie on the teacher's own ODE trajectories; a data-free PD student
// keeps the mixture's modes; hybrid sampling (teacher first, student after) equals either
// sampler at its extremes and keeps the modes.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <iostream>

#include "diffusion/exact_denoisers.h"
#include "diffusion/hybrid_sampler.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"
#include "diffusion/progressive_distillation.h"
#include "diffusion/samplers.h"
#include "diffusion/trajectory_points.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"

namespace distill::diffusion {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

// With the exact denoiser of a finite set, the ODE from noise ends on a training point. A
// data-free point at level s, integrated on from s to 0, must end on the same training point
// as the whole trajectory from its starting noise: it lies on that trajectory.
TEST(TeacherTrajectoryPoints, LieOnTheTeachersOdeTrajectories) {
  at::Generator data_gen = make_generator(1);
  FiniteSetDenoiser exact(at::rand({12, 3}, data_gen, kDouble) * 4 - 2);
  Denoiser teacher = [&](const at::Tensor& x, const at::Tensor& s) { return exact(x, s); };
  const double sigma_max = 20.0;
  PointSource points = teacher_trajectory_points(teacher, {3}, at::kDouble, sigma_max, 48);
  at::Tensor levels = at::tensor({30.0, 20.0, 5.0, 1.0, 0.3, 0.05, 2.0, 0.6}, kDouble);
  at::Generator g1 = make_generator(7), g2 = make_generator(7);
  at::Tensor x = points(levels, g1);
  // The same starting noise, re-created from the documented first draw.
  at::Tensor noise = at::randn({8, 3}, g2, kDouble);
  for (int64_t i = 0; i < 8; ++i) {
    const double s = levels[i].item<double>();
    const double start = std::max(s, sigma_max);
    at::Tensor x_t = noise.slice(0, i, i + 1) * start;
    if (s >= sigma_max) {
      EXPECT_TRUE(at::allclose(x.slice(0, i, i + 1), x_t)) << s;
      continue;
    }
    ScheduleOptions grid;
    grid.sigma_max = start;
    grid.sigma_min = 1e-3;
    // The whole trajectory from the noise, and the rest of it from the data-free point.
    at::Tensor whole = sample_heun(teacher, x_t, sampling_sigmas(grid, 256));
    grid.sigma_max = s;
    at::Tensor rest = sample_heun(teacher, x.slice(0, i, i + 1), sampling_sigmas(grid, 256));
    at::Tensor to_data = at::cdist(whole, exact.data());
    EXPECT_LT(to_data.min().item<double>(), 1e-4) << s;  // the trajectory ends on the data
    EXPECT_LT((rest - whole).abs().max().item<double>(), 1e-4) << "level " << s;
  }
  EXPECT_THROW(teacher_trajectory_points(teacher, {3}, at::kDouble, 0.0, 4), Error);
}

// Share of samples within 0.5 of each mode of the mixture.
at::Tensor mode_shares(const at::Tensor& samples, const GaussianMixture& g) {
  auto [nearest, which] = at::cdist(samples.to(at::kDouble), g.means().to(at::kDouble)).min(1);
  return at::one_hot(which.masked_select(nearest < 0.5), g.means().size(0)).to(at::kDouble).sum(0) /
         samples.size(0);
}

TEST(DataFreeAndHybrid, TwoStepStudentFromTeacherTrajectoriesAndHybridSampling) {
  GaussianMixture exact = fixture::three_component_mixture();
  GaussianMixture mixture(exact.weights().to(at::kFloat), exact.means().to(at::kFloat),
                          exact.covariances().to(at::kFloat));
  Denoiser teacher = [&](const at::Tensor& x, const at::Tensor& s) { return mixture(x, s); };
  MlpDenoiserNet net(2, MlpDenoiserOptions{{64, 64, 64}, 6});
  PreconditionOptions pre;
  pre.output = "v";
  StudentFactory student = [&](const at::Tensor& params) {
    return precondition(net.network(params), pre);
  };
  ProgressiveOptions o;
  o.teacher_steps = 8;
  o.student_steps = 2;
  o.fit_iterations = 800;
  o.iterations = 500;
  o.batch = 256;
  o.optimizer.lr = 3e-3;
  // Data-free: every training point comes from the teacher's own trajectories (16 Heun steps
  // from noise at sigma 80; above it points are noise); there is no clean source to call.
  TrainingData data =
      TrainingData::from_points(teacher_trajectory_points(teacher, {2}, at::kFloat, 80.0, 16));
  ASSERT_FALSE(data.clean);
  at::Generator gen = make_generator(21);
  at::Tensor params =
      progressive_distillation(teacher, student, net.init_params(gen), data, o, gen);
  Denoiser distilled = student(params);

  at::NoGradGuard no_grad;
  std::vector<double> two = sampling_sigmas(o.schedule, 2);  // t = 1, 0.5, 0
  std::vector<double> eight = sampling_sigmas(o.schedule, 8);
  at::Tensor noise = two.front() * at::randn({4000, 2}, gen);
  // Extremes: all steps by one model equal that model's own sampler, bit for bit.
  at::Tensor teacher_only =
      sample_hybrid({teacher, "ddim", two}, {distilled, "ddim", {0.0}}, noise, gen);
  EXPECT_TRUE(at::equal(teacher_only, sample_ddim(teacher, noise, two)));
  at::Tensor student_only =
      sample_hybrid({teacher, "ddim", {two.front()}}, {distilled, "ddim", two}, noise, gen);
  at::Tensor student_alone = sample_ddim(distilled, noise, two);
  EXPECT_TRUE(at::equal(student_only, student_alone));
  // Hybrid: the teacher's 8-step grid down to t = 0.5 (4 steps), the student's last step.
  std::vector<double> first(eight.begin(), eight.begin() + 5);
  ASSERT_NEAR(first.back(), two[1], 1e-12 * two[1]);
  first.back() = two[1];
  at::Tensor hybrid =
      sample_hybrid({teacher, "ddim", first}, {distilled, "ddim", {two[1], 0.0}}, noise, gen);
  at::Tensor shares_student = mode_shares(student_alone, exact);
  at::Tensor shares_hybrid = mode_shares(hybrid, exact);
  at::Tensor shares_teacher2 = mode_shares(teacher_only, exact);
  at::Tensor shares_teacher8 = mode_shares(sample_ddim(teacher, noise, eight), exact);
  std::cout << "near-mode shares (weights .5 .3 .2): teacher 2 steps " << shares_teacher2
            << " teacher 8 steps " << shares_teacher8 << " data-free student 2 steps "
            << shares_student << " hybrid (teacher to t=.5, student 1 step) " << shares_hybrid
            << "\n";
  // The data-free student in 2 steps puts most samples near the modes, each mode its share.
  EXPECT_GT(shares_student.sum().item<double>(), 0.7) << shares_student;
  // The hybrid keeps every mode near its weight.
  EXPECT_GT(shares_hybrid.sum().item<double>(), 0.75) << shares_hybrid;
  at::Tensor weights = exact.weights().to(at::kDouble);
  EXPECT_LT((shares_hybrid / shares_hybrid.sum() - weights).abs().max().item<double>(), 0.08)
      << shares_hybrid;
  // Parts that do not join are an error.
  try {
    sample_hybrid({teacher, "ddim", {10.0, 1.0}}, {distilled, "ddim", {2.0, 0.0}}, noise, gen);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must join"), std::string::npos) << e.what();
  }
}

// The split form hands the base exactly the first base_steps levels it steps from and the student
// the rest: recording denoisers see which levels each model is evaluated at.
TEST(HybridSampling, SplitGridGivesTheBaseTheFirstSteps) {
  const std::vector<double> grid = {8.0, 4.0, 2.0, 1.0, 0.5, 0.0};
  at::Generator gen = make_generator(0);
  for (int64_t k = 1; k < 5; ++k) {
    std::vector<double> seen_base, seen_student;
    auto recorder = [](std::vector<double>& seen) {
      return [&seen](const at::Tensor& x, const at::Tensor& sigma) {
        seen.push_back(sigma[0].item<double>());
        return x * 0.5;
      };
    };
    sample_hybrid(recorder(seen_base), "ddim", recorder(seen_student), "ddim", grid, k,
                  at::ones({2, 2}, kDouble), gen);
    EXPECT_EQ(seen_base, std::vector<double>(grid.begin(), grid.begin() + k)) << k;
    EXPECT_EQ(seen_student, std::vector<double>(grid.begin() + k, grid.end() - 1)) << k;
  }
  for (int64_t bad : {0, 5}) {
    try {
      sample_hybrid(Denoiser(), "ddim", Denoiser(), "ddim", grid, bad, at::ones({2, 2}, kDouble),
                    gen);
      FAIL() << "no error for " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("must be in 1 .. 4 of the grid's 5, found " +
                                           std::to_string(bad)),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
}  // namespace distill::diffusion
