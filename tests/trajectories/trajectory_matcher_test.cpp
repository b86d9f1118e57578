#include "trajectories/trajectory_matcher.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"
#include "src/train/augment.h"

namespace distill::trajectories {
namespace {

// A small double-precision case: 6 images of 1x8x8 in 3 classes, a one-block ConvNet.
struct Case {
  std::unique_ptr<models::Model> model;
  at::Tensor images, labels;
  MatchingTask task;
};

Case make_case() {
  Case c;
  models::ModelOptions o;
  o.width = 4;
  o.depth = 1;
  c.model = models::make_model(o, 1, 8, 3);
  at::Generator gen = make_generator(3);
  c.images = at::randn({6, 1, 8, 8}, gen).to(at::kDouble);
  c.labels = at::tensor({0, 0, 1, 1, 2, 2}, at::kLong);
  at::Tensor start = c.model->init_params(gen).to(at::kDouble);
  c.task.start = start;
  c.task.target = start + 0.05 * at::randn(start.sizes(), gen).to(at::kDouble);
  c.task.seed = 17;
  return c;
}

MatchingOptions small_options(const std::string& meta_grad) {
  MatchingOptions o;
  o.syn_steps = 4;
  o.batch_syn = 4;  // mini-batches: the permutation is refilled mid-run
  o.meta_grad = meta_grad;
  return o;
}

train::AugmentFn dsa() {
  train::AugmentOptions a;
  a.name = "dsa";
  return train::make_augment(a, 8);
}

double relative_difference(const at::Tensor& a, const at::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

TEST(TrajectoryMatcher, AdjointEqualsUnrolledAutograd) {
  for (bool augment : {false, true}) {
    Case c = make_case();
    TrajectoryMatcher unroll(*c.model, small_options("unroll"), augment ? dsa() : train::AugmentFn());
    TrajectoryMatcher adjoint(*c.model, small_options("adjoint"), augment ? dsa() : train::AugmentFn());
    MetaGradient u = unroll.meta_gradient(c.images, c.labels, 0.1, c.task);
    MetaGradient a = adjoint.meta_gradient(c.images, c.labels, 0.1, c.task);
    EXPECT_NEAR(a.loss, u.loss, 1e-12 * std::abs(u.loss));
    EXPECT_LT(relative_difference(a.images_grad, u.images_grad), 1e-5) << "augment " << augment;
    EXPECT_NEAR(a.lr_grad, u.lr_grad, 1e-5 * std::abs(u.lr_grad)) << "augment " << augment;
    EXPECT_GT(u.images_grad.abs().max().item<double>(), 0.0);
  }
}

TEST(TrajectoryMatcher, GradientsMatchCentralFiniteDifferences) {
  Case c = make_case();
  for (const std::string method : {"unroll", "adjoint"}) {
    TrajectoryMatcher matcher(*c.model, small_options(method), dsa());
    const double lr = 0.1, h = 1e-5;
    MetaGradient g = matcher.meta_gradient(c.images, c.labels, lr, c.task);
    for (int64_t pixel : {3, 70, 200, 383}) {
      at::Tensor plus = c.images.clone(), minus = c.images.clone();
      plus.view(-1)[pixel] += h;
      minus.view(-1)[pixel] -= h;
      double numeric = (matcher.meta_gradient(plus, c.labels, lr, c.task).loss -
                        matcher.meta_gradient(minus, c.labels, lr, c.task).loss) / (2 * h);
      double analytic = g.images_grad.view(-1)[pixel].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::abs(numeric)) << method << " pixel " << pixel;
    }
    double numeric_lr = (matcher.meta_gradient(c.images, c.labels, lr + h, c.task).loss -
                         matcher.meta_gradient(c.images, c.labels, lr - h, c.task).loss) / (2 * h);
    EXPECT_NEAR(g.lr_grad, numeric_lr, 1e-6 + 1e-4 * std::abs(numeric_lr)) << method;
  }
}

TEST(TrajectoryMatcher, LossIsZeroWhenTheStudentLandsOnTheTarget) {
  Case c = make_case();
  MatchingOptions o = small_options("adjoint");
  // lr 0: the student stays at the start; with target == start + d the loss is exactly 1.
  TrajectoryMatcher matcher(*c.model, o, train::AugmentFn());
  EXPECT_NEAR(matcher.meta_gradient(c.images, c.labels, 0.0, c.task).loss, 1.0, 1e-12);
}

}  // namespace
}  // namespace distill::trajectories
