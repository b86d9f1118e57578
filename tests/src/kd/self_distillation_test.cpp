#include "src/kd/self_distillation.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>

#include "src/core/runtime.h"
#include "src/kd/kd_losses.h"
#include "src/train/trainer.h"
#include "tests/support/test_support.h"

namespace distill::kd {
namespace {

using testing::error_of;

TEST(SelfDistillation, GroundTruthWeightIsTheLeastSquaresPointOnTheLineByHand) {
  const at::Tensor f0 = at::zeros({2, 2}, at::kDouble), f1 = at::ones({2, 2}, at::kDouble);
  EXPECT_NEAR(estimate_ground_truth_weight(f0, f1, f1 * 0.25).weight, 0.25, 1e-15);
  // Beyond the segment: the least-squares value is kept, the weight clipped to [0, 1].
  GroundTruthWeight beyond = estimate_ground_truth_weight(f0, f1, f1 * 2);
  EXPECT_NEAR(beyond.unclipped, 2.0, 1e-15);
  EXPECT_EQ(beyond.weight, 1.0);
  GroundTruthWeight before = estimate_ground_truth_weight(f0, f1, -f1);
  EXPECT_NEAR(before.unclipped, -1.0, 1e-15);
  EXPECT_EQ(before.weight, 0.0);
  // Targets off the line: only their component along f1 - f0 counts.
  const at::Tensor off = at::tensor({1.0, 0.0, 0.0, 0.0}, at::kDouble).view({2, 2});
  EXPECT_NEAR(estimate_ground_truth_weight(f0, f1, off).unclipped, 0.25, 1e-15);
  EXPECT_NE(error_of([&] { estimate_ground_truth_weight(f1, f1, off); })
                .find("predict the same on the held-out split"),
            std::string::npos);
}

// The paper's setting: kernel ridge regression is linear in its targets, so the round-2 predictor
// trained on alpha y + (1 - alpha) f_1 is f_0 + alpha (f_1 - f_0) and the derived weight is the
// alpha closest to the truth. Brute force: fit round 2 for a fine grid of alpha and keep the one
// with the smallest squared error against sin(2 pi x).
TEST(SelfDistillation, DerivedWeightIsTheBestAlphaOfKernelRidgeSelfDistillation) {
  at::Generator gen = make_generator(3);
  const int64_t n = 11;
  const double lambda = 0.2, gamma = 80;
  const at::Tensor x = at::linspace(0, 1, n, at::kDouble);
  const at::Tensor y = at::sin(2 * M_PI * x) + 0.3 * at::randn({n}, gen, at::kDouble);
  const at::Tensor grid = at::linspace(0, 1, 101, at::kDouble);
  auto kernel = [&](const at::Tensor& a, const at::Tensor& b) {
    return at::exp(-gamma * (a.unsqueeze(1) - b.unsqueeze(0)).pow(2));
  };
  const at::Tensor regularised = kernel(x, x) + lambda * at::eye(n, at::kDouble);
  // Kernel ridge fit to targets z: its predictions on `at` points.
  auto fit = [&](const at::Tensor& z, const at::Tensor& at_points) {
    return at::matmul(kernel(at_points, x), at::linalg_solve(regularised, z.unsqueeze(1))).squeeze(1);
  };
  const at::Tensor round1_train = fit(y, x);
  auto round2 = [&](double alpha) { return fit(alpha * y + (1 - alpha) * round1_train, grid); };
  const at::Tensor truth = at::sin(2 * M_PI * grid);
  double best_alpha = 0, best_error = std::numeric_limits<double>::infinity();
  for (int i = -20000; i <= 20000; ++i) {
    const double alpha = i * 1e-4;
    const double error = (round2(alpha) - truth).pow(2).sum().item<double>();
    if (error < best_error) best_error = error, best_alpha = alpha;
  }
  const GroundTruthWeight w = estimate_ground_truth_weight(round2(0), round2(1), truth);
  EXPECT_NEAR(w.unclipped, best_alpha, 1e-4);
  EXPECT_EQ(w.weight, std::clamp(w.unclipped, 0.0, 1.0));
}

// The two terms are cross-entropy against alpha y + (1 - alpha) p_teacher: the same gradient,
// the value lower by (1 - alpha) x the teacher's entropy.
TEST(SelfDistillation, WeightedTermsAreCrossEntropyWithTheMixedTarget) {
  at::Generator gen = make_generator(5);
  const at::Tensor teacher = at::randn({4, 3}, gen, at::kDouble) * 2;
  const at::Tensor labels = at::tensor({0, 2, 1, 2}, at::kLong);
  const at::Tensor student = at::randn({4, 3}, gen, at::kDouble);
  const double alpha = 0.35;
  const std::vector<LossSpec> terms = weighted_ground_truth_losses(alpha);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[0].name, "ce");
  EXPECT_EQ(terms[1].name, "hinton");
  EXPECT_EQ(terms[1].T, 1.0);
  const at::Tensor p = at::softmax(teacher, 1);
  const at::Tensor mixed = alpha * at::one_hot(labels, 3).to(at::kDouble) + (1 - alpha) * p;
  at::Tensor a = student.clone().requires_grad_(true), b = student.clone().requires_grad_(true);
  at::Tensor sum = terms[0].weight * train::classification_loss(a, labels) +
                   terms[1].weight * hinton_loss(a, teacher, terms[1].T);
  at::Tensor reference = -(mixed * at::log_softmax(b, 1)).sum(1).mean();
  const double entropy = -(p * p.log()).sum(1).mean().item<double>();
  EXPECT_NEAR(sum.item<double>() + (1 - alpha) * entropy, reference.item<double>(), 1e-12);
  at::Tensor ga = torch::autograd::grad({sum}, {a})[0], gb = torch::autograd::grad({reference}, {b})[0];
  EXPECT_TRUE(at::allclose(ga, gb, 1e-12, 1e-12));
  EXPECT_NE(error_of([] { weighted_ground_truth_losses(1.5); })
                .find("the ground-truth weight must be in [0, 1], found 1.5"),
            std::string::npos);
}

}  // namespace
}  // namespace distill::kd
