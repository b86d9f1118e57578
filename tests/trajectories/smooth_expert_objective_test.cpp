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

Case make_case(int64_t channels = 1) {
  Case c;
  models::ModelOptions o;
  o.width = 3;
  o.depth = 1;
  c.model = models::make_model(o, channels, 8, 3);
  at::Generator gen = make_generator(8);
  c.images = at::randn({5, channels, 8, 8}, gen).to(at::kDouble);
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

// The model's sum of logits over the batch, for finite differences in the input.
double sum_of_logits(const Case& c, const at::Tensor& images) {
  models::ForwardArgs args;
  args.train = true;
  return c.model->forward(images, c.params, args).sum().item<double>();
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

// AST's penalty: weight * mean over pixels of (||d sum(logits) / dx||_2 over channels - 1)^2, on
// the batch before augmentation, added after the loss scaling. The input gradient here comes from
// finite differences; the penalty's gradient in θ is checked by finite differences too.
TEST(SmoothExpertObjective, InputGradientPenaltyIsAstsOnTheUnaugmentedBatch) {
  Case c = make_case(/*channels=*/2);
  SmoothingOptions o;
  o.input_gradient_penalty = 2.0;
  o.loss_scale = {0.5};
  SmoothExpertObjective objective(o);
  const at::Tensor augmented = c.images.flip({3}) * 0.7;
  auto value_at = [&](const at::Tensor& theta, int64_t epoch) {
    train::StepContext step;
    models::ForwardArgs args;
    args.train = true;
    step.params = theta;
    step.images = augmented;
    step.clean_images = c.images;
    step.targets = c.labels;
    step.logits = c.model->forward(augmented, theta, args);
    step.forward = [&](const at::Tensor& x) { return c.model->forward(x, theta, args); };
    step.epoch = epoch;
    return objective.loss(step);
  };
  at::Tensor theta = c.params.clone().requires_grad_(true);
  at::Tensor value = value_at(theta, 0);

  const double h = 1e-6;
  at::Tensor grad_x = at::zeros_like(c.images);
  for (int64_t i = 0; i < c.images.numel(); ++i) {
    at::Tensor plus = c.images.clone(), minus = c.images.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    grad_x.view(-1)[i] = (sum_of_logits(c, plus) - sum_of_logits(c, minus)) / (2 * h);
  }
  const double penalty = (grad_x.pow(2).sum(1).sqrt() - 1).pow(2).mean().item<double>();
  models::ForwardArgs args;
  args.train = true;
  const double ce =
      train::classification_loss(c.model->forward(augmented, c.params, args), c.labels)
          .item<double>();
  EXPECT_NEAR(value.item<double>(), 0.5 * ce + 2.0 * penalty, 1e-7);
  // Past the schedule only the cross-entropy's scale changes.
  EXPECT_NEAR(value_at(theta, 3).item<double>(), ce + 2.0 * penalty, 1e-7);

  at::Tensor analytic = torch::autograd::grad({value}, {theta})[0];
  for (int64_t i : {0, 7, 20, 50}) {
    at::Tensor plus = c.params.clone(), minus = c.params.clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    const double numeric =
        (value_at(plus, 0).item<double>() - value_at(minus, 0).item<double>()) / (2 * h);
    EXPECT_NEAR(analytic.view(-1)[i].item<double>(), numeric, 1e-6 + 1e-5 * std::abs(numeric)) << i;
  }
  EXPECT_GT(objective.take_epoch_metrics().at("input_gradient_penalty"), 0.0);
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
