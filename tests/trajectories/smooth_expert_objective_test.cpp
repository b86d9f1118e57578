// AST-style expert smoothing: the loss-scale schedule and the gradient penalty.
#include "trajectories/smooth_expert_objective.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "trajectories/experts.h"
#include "tests/support/test_support.h"

namespace distill::trajectories {
namespace {

struct Case {
  std::unique_ptr<models::Model> model;
  at::Tensor images, labels, params;
};

Case make_case() {
  Case c;
  models::ModelOptions o;
  o.width = 3;
  o.depth = 1;
  c.model = models::make_model(o, 1, 8, 3);
  at::Generator gen = make_generator(8);
  c.images = at::randn({5, 1, 8, 8}, gen).to(at::kDouble);
  c.labels = at::tensor({0, 1, 2, 0, 1}, at::kLong);
  c.params = c.model->init_params(gen).to(at::kDouble);
  return c;
}

// The objective's value as a function of θ, evaluated as the trainer would.
at::Tensor objective_value(SmoothExpertObjective& objective, const Case& c, const at::Tensor& theta,
                           int64_t epoch) {
  train::StepContext step;
  step.params = theta;
  step.images = c.images;
  step.targets = c.labels;
  models::ForwardArgs args;
  args.train = true;
  step.logits = c.model->forward(c.images, theta, args);
  step.epoch = epoch;
  return objective.loss(step);
}

TEST(SmoothExpertObjective, GradientPenaltyValueAndGradientMatchFiniteDifferences) {
  Case c = make_case();
  SmoothingOptions o;
  o.gradient_penalty = 0.3;
  o.loss_scale = {0.5};
  SmoothExpertObjective objective(o);
  at::Tensor theta = c.params.clone().requires_grad_(true);
  at::Tensor value = objective_value(objective, c, theta, 0);
  // Independent value: 0.5 * (CE + 0.3 ||∇CE||²) with the gradient from a separate autograd call.
  at::Tensor leaf = c.params.clone().requires_grad_(true);
  models::ForwardArgs args;
  args.train = true;
  at::Tensor ce = train::classification_loss(c.model->forward(c.images, leaf, args), c.labels);
  at::Tensor g = torch::autograd::grad({ce}, {leaf})[0];
  EXPECT_NEAR(value.item<double>(), 0.5 * (ce.item<double>() + 0.3 * g.pow(2).sum().item<double>()),
              1e-12);
  at::Tensor analytic = torch::autograd::grad({value}, {theta})[0];
  const double h = 1e-6;
  for (int64_t i : {0, 5, 17, 40}) {
    at::Tensor plus = c.params.clone(), minus = c.params.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    auto at_theta = [&](const at::Tensor& t) {
      return objective_value(objective, c, t.clone().requires_grad_(true), 0).item<double>();
    };
    double numeric = (at_theta(plus) - at_theta(minus)) / (2 * h);
    EXPECT_NEAR(analytic.view(-1)[i].item<double>(), numeric, 1e-6 + 1e-5 * std::abs(numeric)) << i;
  }
  // Epochs past the schedule use scale 1.
  EXPECT_NEAR(objective_value(objective, c, theta, 3).item<double>(), 2 * value.item<double>(),
              1e-12);
}

// With plain SGD, scaling the loss of epoch 0 by s is the same as scaling that epoch's lr by s:
// an expert with loss_scale [0.5] equals, after epoch 0, one trained at half the lr.
TEST(SmoothExpertObjective, LossScaleActsLikeAScaledLearningRate) {
  testing::TempDir dir;
  at::Generator gen = make_generator(2);
  data::Dataset train;
  train.images = at::rand({32, 1, 8, 8}, gen);
  train.labels = at::arange(32, at::kLong).remainder(3);
  train.num_classes = 3;
  ExpertOptions o;
  o.num_experts = 1;
  o.model.width = 4;
  o.model.depth = 1;
  o.train.epochs = 1;
  o.train.batch_size = 8;
  o.augment.name = "none";
  o.smoothing.loss_scale = {0.5};
  train_experts(o, train, train, 3, dir.file("scaled"), false);
  o.smoothing.loss_scale.clear();
  o.train.optimizer.lr *= 0.5;
  train_experts(o, train, train, 3, dir.file("half_lr"), false);
  auto model = models::make_model(o.model, 1, 8, 3);
  auto a = load_expert_folder(dir.file("scaled"), *model);
  auto b = load_expert_folder(dir.file("half_lr"), *model);
  EXPECT_TRUE(at::allclose(a[0][1], b[0][1], 1e-5, 1e-7));
  EXPECT_FALSE(at::allclose(a[0][0], a[0][1]));
}

TEST(SmoothExpertObjective, BadSettingsAreNamed) {
  SmoothingOptions o;
  o.loss_scale = {0.5, 0.0};
  try {
    SmoothExpertObjective bad(o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("experts.smoothing.loss_scale"), std::string::npos);
  }
}

}  // namespace
}  // namespace distill::trajectories
