#include "src/kd/tgeo_kd.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/kd/kd_losses.h"
#include "tests/support/test_support.h"

namespace distill::kd {
namespace {

using testing::error_of;

std::unique_ptr<models::Model> small_mlp() {
  models::ModelOptions o;
  o.arch = "mlp";
  o.hidden = {5};
  return models::make_model(o, 1, 3, 3);
}

// Layout by hand for one example of 2 classes: S, T, G, T-bar, then the five squared edges.
TEST(TgeoKd, InputsAreTheTrilateralGeometryInThePapersOrder) {
  const at::Tensor s = at::tensor({0.0, std::log(3.0)}, at::kDouble).view({1, 2});  // S = .25 .75
  const at::Tensor t = at::tensor({std::log(4.0), 0.0}, at::kDouble).view({1, 2});  // T = .8 .2
  const at::Tensor labels = at::tensor({1}, at::kLong);
  const at::Tensor average = at::tensor({0.9, 0.1, 0.3, 0.7}, at::kDouble).view({2, 2});
  const at::Tensor x = tgeo_inputs(s, t, labels, average);
  const std::vector<double> S = {.25, .75}, T = {.8, .2}, G = {0, 1}, B = {.3, .7};
  std::vector<double> expected;
  for (const auto* v : {&S, &T, &G, &B}) expected.insert(expected.end(), v->begin(), v->end());
  auto edge = [&](const std::vector<double>& a, const std::vector<double>& b) {
    for (int k = 0; k < 2; ++k) expected.push_back((a[k] - b[k]) * (a[k] - b[k]));
  };
  edge(B, S), edge(G, S), edge(T, S), edge(T, G), edge(B, G);
  ASSERT_EQ(x.size(1), 18);
  for (int j = 0; j < 18; ++j) EXPECT_NEAR(x[0][j].item<double>(), expected[j], 1e-12) << j;
}

// r = 1 is Hinton KD (T^2 KL, batch mean), r = 0 cross-entropy, and a ratio per example mixes
// each example's own two values.
TEST(TgeoKd, StudentLossMixesEachExamplesKdAndCrossEntropy) {
  at::Generator gen = make_generator(1);
  const at::Tensor s = at::randn({4, 3}, gen, at::kDouble), t = at::randn({4, 3}, gen, at::kDouble);
  const at::Tensor y = at::tensor({0, 2, 1, 2}, at::kLong);
  const double T = 3.0;
  const at::Tensor ones = at::ones({4}, at::kDouble);
  EXPECT_NEAR(tgeo_student_loss(s, t, y, ones, T).item<double>(),
              hinton_loss(s, t, T).item<double>(), 1e-12);
  EXPECT_NEAR(tgeo_student_loss(s, t, y, ones * 0, T).item<double>(),
              at::cross_entropy_loss(s, y).item<double>(), 1e-12);
  const at::Tensor r = at::tensor({0.1, 0.5, 0.9, 0.3}, at::kDouble);
  double expected = 0;
  for (int i = 0; i < 4; ++i) {
    const at::Tensor si = s.narrow(0, i, 1), ti = t.narrow(0, i, 1), yi = y.narrow(0, i, 1);
    const double ri = r[i].item<double>();
    expected += ri * hinton_loss(si, ti, T).item<double>() +
                (1 - ri) * at::cross_entropy_loss(si, yi).item<double>();
  }
  EXPECT_NEAR(tgeo_student_loss(s, t, y, r, T).item<double>(), expected / 4, 1e-12);
  EXPECT_NE(error_of([&] { tgeo_student_loss(s, t, y.to(at::kFloat), r, T); })
                .find("tgeo needs int64 class ids"),
            std::string::npos);
}

// The fusion network's hypergradient: autograd through the virtual SGD step against central
// differences of the whole bilevel objective (recomputed from scratch for each perturbation).
TEST(TgeoKd, HypergradientMatchesCentralDifferences) {
  auto model = small_mlp();
  at::Generator gen = make_generator(2);
  const at::Tensor params = model->init_params(gen).to(at::kDouble) * 2;
  const at::Tensor images = at::randn({6, 1, 3, 3}, gen, at::kDouble);
  const at::Tensor teacher = at::randn({6, 3}, gen, at::kDouble) * 2;
  const at::Tensor labels = at::tensor({0, 1, 2, 2, 1, 0}, at::kLong);
  const at::Tensor average = at::softmax(at::randn({3, 3}, gen, at::kDouble), 1);
  const at::Tensor held = at::randn({5, 1, 3, 3}, gen, at::kDouble);
  const at::Tensor held_labels = at::tensor({2, 0, 1, 1, 0}, at::kLong);
  int64_t total = 0;
  for (const auto& spec : fusion_specs(3)) total += spec.numel();
  const at::Tensor fusion = at::randn({total}, gen, at::kDouble) * 0.3;
  auto objective = [&](const at::Tensor& f) {
    return tgeo_validation_loss(*model, params, at::Tensor(), images, teacher, labels, average, f,
                                2.0, 0.5, held, held_labels);
  };
  at::Tensor leaf = fusion.clone().requires_grad_(true);
  const at::Tensor grad = torch::autograd::grad({objective(leaf)}, {leaf})[0];
  EXPECT_GT(grad.abs().max().item<double>(), 1e-6);  // the held-out loss does reach the network
  const double h = 1e-6;
  for (int64_t j = 0; j < total; j += 37) {  // a spread of the weights of all three layers
    at::Tensor plus = fusion.clone(), minus = fusion.clone();
    plus[j] += h;
    minus[j] -= h;
    const double numeric = (objective(plus).item<double>() - objective(minus).item<double>()) / (2 * h);
    EXPECT_NEAR(grad[j].item<double>(), numeric, 1e-7) << "weight " << j;
  }
}

// In the trainer's step: the student's parameters get the r-weighted loss's gradient only (the
// held-out term reaches the fusion network, not them); the value reported is the student's loss.
TEST(TgeoKd, ObjectiveRoutesTheHeldOutLossToTheFusionNetworkOnly) {
  auto model = small_mlp();
  at::Generator gen = make_generator(3);
  models::ModelOptions teacher_options;
  teacher_options.arch = "mlp";
  teacher_options.hidden = {7};
  auto teacher_model = models::make_model(teacher_options, 1, 3, 3);
  at::Tensor teacher_params = teacher_model->init_params(gen) * 3;
  auto teacher = std::make_shared<Teacher>(
      teacher_from_state(std::move(teacher_model), teacher_params, at::Tensor()));
  const at::Tensor images = at::randn({12, 1, 3, 3}, gen);
  const at::Tensor labels = at::tensor({0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, at::kLong);
  const at::Tensor held = at::randn({6, 1, 3, 3}, gen);
  const at::Tensor held_labels = at::tensor({0, 1, 2, 0, 1, 2}, at::kLong);
  TgeoObjective objective(*model, teacher, 2.0, 1.0, 100.0, images, labels, 3, held,
                          held_labels, 4, 7, /*cache_teacher=*/true);
  EXPECT_EQ(objective.aux_lr_scale(), 100.0);
  // The class averages are the teacher's mean softmax per true class.
  const at::Tensor probabilities = at::softmax(teacher->forward(images), 1);
  EXPECT_TRUE(at::allclose(objective.class_average()[1],
                           probabilities.index_select(0, at::tensor({1, 4, 7, 10})).mean(0), 1e-5,
                           1e-6));
  at::Tensor params = model->init_params(gen).requires_grad_(true);
  at::Tensor aux = objective.init_aux(gen).requires_grad_(true);
  const at::Tensor batch = at::tensor({0, 1, 2, 3, 4}, at::kLong);
  train::StepContext step;
  step.images = images.index_select(0, batch);
  step.targets = labels.index_select(0, batch);
  step.indices = batch;
  models::ForwardArgs args;
  args.train = true;
  step.logits = model->forward(step.images, params, args);
  step.params = params;
  step.aux = aux;
  step.step = 3;
  step.lr = 0.1;
  const at::Tensor loss = objective.loss(step);
  auto grads = torch::autograd::grad({loss}, {params, aux}, {}, true, false, true);
  const std::vector<at::Tensor> weights = models::Model::unflatten(aux, fusion_specs(3));
  const at::Tensor teacher_logits = teacher->forward(step.images);
  const at::Tensor ratio =
      fusion_ratio(tgeo_inputs(step.logits.detach(), teacher_logits, step.targets,
                               objective.class_average()),
                   weights)
          .detach();
  const at::Tensor student = tgeo_student_loss(step.logits, teacher_logits, step.targets, ratio, 2.0);
  EXPECT_NEAR(loss.item<double>(), student.item<double>(), 1e-5);
  const at::Tensor expected = torch::autograd::grad({student}, {params}, {}, true)[0];
  EXPECT_TRUE(at::allclose(grads[0], expected, 1e-5, 1e-7));
  ASSERT_TRUE(grads[1].defined());
  EXPECT_GT(grads[1].abs().max().item<double>(), 0.0);
  const std::map<std::string, double> metrics = objective.take_epoch_metrics();
  EXPECT_TRUE(metrics.count("tgeo_validation_loss") && metrics.count("tgeo_mean_ratio"));
}

}  // namespace
}  // namespace distill::kd
