#include "src/kd/kd_objective.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "src/kd/kd_losses.h"
#include "src/kd/nd_loss.h"
#include "src/kd/ofa_loss.h"
#include "tests/support/test_support.h"

namespace distill::kd {
namespace {

using testing::error_of;

std::unique_ptr<models::Model> mlp(std::vector<int64_t> hidden, int64_t classes = 4) {
  models::ModelOptions o;
  o.arch = "mlp";
  o.hidden = std::move(hidden);
  return models::make_model(o, 1, 8, classes);
}

std::unique_ptr<models::Model> convnet(int64_t width) {
  models::ModelOptions o;
  o.width = width;
  o.depth = 2;
  o.norm = "none";
  o.pool = "maxpool";
  return models::make_model(o, 1, 8, 4);
}

LossSpec term(const std::string& name, double weight, double T = 4.0) {
  LossSpec s;
  s.name = name;
  s.weight = weight;
  s.T = T;
  return s;
}

// Class k images: noise plus a bright k-th quadrant (as in the trainer tests).
std::pair<at::Tensor, at::Tensor> toy_data(int64_t n, uint64_t seed) {
  at::Generator gen = make_generator(seed);
  at::Tensor labels = at::randint(4, {n}, gen);
  at::Tensor images = at::randn({n, 1, 8, 8}, gen) * 0.3;
  for (int64_t i = 0; i < n; ++i) {
    int64_t k = labels[i].item<int64_t>();
    images[i].narrow(1, (k / 2) * 4, 4).narrow(2, (k % 2) * 4, 4).add_(1.0);
  }
  return {images, labels};
}

std::shared_ptr<Teacher> random_teacher(std::unique_ptr<models::Model> model, uint64_t seed) {
  at::Generator gen = make_generator(seed);
  at::Tensor params = model->init_params(gen) * 3;  // sharper outputs than a fresh init
  at::Tensor buffers = model->init_buffers();
  return std::make_shared<Teacher>(teacher_from_state(std::move(model), params, buffers));
}

TEST(LossTerms, WeightedSumOfTheNamedTerms) {
  auto student = mlp({6});
  auto teacher = mlp({5});
  LossTerms terms({term("hinton", 0.9, 3.0), term("ce", 0.1), term("hinton", 0.5, 1.0)},
                  "kd.losses", *student, teacher.get());
  EXPECT_EQ(terms.metric_names(),
            (std::vector<std::string>{"loss_hinton", "loss_ce", "loss_hinton_2"}));
  at::Generator gen = make_generator(1);
  at::Tensor s = at::randn({5, 4}, gen), t = at::randn({5, 4}, gen);
  at::Tensor y = at::tensor({0, 1, 2, 3, 0}, at::kLong);
  std::vector<double> values;
  at::Tensor total = terms.evaluate({s, nullptr}, new LossTerms::Side{t, nullptr}, y, {}, &values);
  const double h3 = hinton_loss(s, t, 3.0).item<double>(),
               h1 = hinton_loss(s, t, 1.0).item<double>();
  const double ce = at::cross_entropy_loss(s, y).item<double>();
  EXPECT_NEAR(total.item<double>(), 0.9 * h3 + 0.1 * ce + 0.5 * h1, 1e-6);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_NEAR(values[0], h3, 1e-6);
  EXPECT_NEAR(values[1], ce, 1e-6);
  EXPECT_NEAR(values[2], h1, 1e-6);
}

TEST(LossTerms, BadSettingsNameTheKeyAndValueBeforeTraining) {
  auto student = convnet(4);
  auto teacher = convnet(8);
  auto make = [&](std::vector<LossSpec> specs, const models::Model* t) {
    return error_of([&] { LossTerms(specs, "kd.losses", *student, t); });
  };
  EXPECT_NE(make({term("ce", 1), term("hinton", 1, 0.0)}, teacher.get())
                .find("key 'kd.losses[1].T' must be > 0, found 0"),
            std::string::npos);
  EXPECT_NE(make({term("dkd", 1, -2.0)}, teacher.get())
                .find("key 'kd.losses[0].T' must be > 0, found -2"),
            std::string::npos);
  EXPECT_NE(make({term("ce", -1)}, teacher.get())
                .find("key 'kd.losses[0].weight' must be >= 0, found -1"),
            std::string::npos);
  LossSpec at_term = term("at", 1);
  at_term.student_layer = at_term.teacher_layer = "block0";
  at_term.p = 0;
  EXPECT_NE(make({at_term}, teacher.get()).find("key 'kd.losses[0].p' must be > 0, found 0"),
            std::string::npos);
  LossSpec fitnet = term("fitnet", 1);
  EXPECT_NE(make({fitnet}, teacher.get()).find("kd.losses[0].student_layer (fitnet) is required"),
            std::string::npos);
  fitnet.student_layer = "blok0";
  fitnet.teacher_layer = "block0";
  std::string unknown = make({fitnet}, teacher.get());
  EXPECT_NE(unknown.find("kd.losses[0].student_layer (fitnet): the student (convnet) has no "
                         "feature 'blok0' (did you mean 'block0'?); available: block0, block1, "
                         "embedding, logits"),
            std::string::npos)
      << unknown;
  EXPECT_NE(
      make({term("hinton", 1)}, nullptr).find("compares with a teacher, but none is configured"),
      std::string::npos);
  EXPECT_NE(make({}, teacher.get()).find("kd.losses is empty"), std::string::npos);
  // Settings a term does not read are errors, not silently ignored.
  LossSpec tempered_ce = term("ce", 1);
  tempered_ce.T = 2;
  EXPECT_NE(make({tempered_ce}, teacher.get())
                .find("kd.losses[0].T does not apply to 'ce' (used by hinton, reverse_kl, dkd, pld, dhkd, ofa, tgeo)"),
            std::string::npos);
  LossSpec layered_hinton = term("hinton", 1);
  layered_hinton.student_layer = "block0";
  EXPECT_NE(make({layered_hinton}, teacher.get())
                .find("kd.losses[0].student_layer does not apply to 'hinton'"),
            std::string::npos);
}

TEST(KdObjective, RegressorsAreSizedFromTheFeaturesAndShapeMismatchesFailEarly) {
  auto student = convnet(4);
  auto [images, labels] = toy_data(6, 2);
  LossSpec conv_hint = term("fitnet", 1);
  conv_hint.student_layer = "block0";
  conv_hint.teacher_layer = "block0";
  LossSpec flat_hint = term("fitnet", 1);
  flat_hint.student_layer = "embedding";  // 4 channels x 3 x 3 (8 -> 12 padded -> 6 -> 3)
  flat_hint.teacher_layer = "logits";     // 4 classes
  KdObjective objective({conv_hint, flat_hint}, "kd.losses", *student,
                        random_teacher(convnet(8), 3), images);
  at::Generator gen = make_generator(0);
  // 1x1 conv 4 -> 8 channels (+ bias), then linear 36 -> 4 (+ bias).
  EXPECT_EQ(objective.init_aux(gen).numel(), 8 * 4 + 8 + 4 * 36 + 4);
  EXPECT_TRUE(objective.wants_features());

  LossSpec at_term = term("at", 1);
  at_term.student_layer = "block0";  // 6x6 maps
  at_term.teacher_layer = "block1";  // 3x3 maps
  std::string message = error_of([&] {
    KdObjective({at_term}, "kd.losses", *student, random_teacher(convnet(8), 3), images);
  });
  EXPECT_NE(message.find("kd.losses[0] (at): attention transfer: student and teacher maps must"),
            std::string::npos)
      << message;
  message = error_of([&] {
    KdObjective({term("hinton", 1)}, "kd.losses", *student, random_teacher(mlp({5}, 3), 1), images);
  });
  EXPECT_NE(message.find("the teacher predicts 3 classes, the student 4"), std::string::npos)
      << message;
}

// DHKD's routing: with [ce, dhkd], the auxiliary head (the term's own parameters) gets only
// dhkd's gradient and the student's classifier only ce's; the backbone gets both.
TEST(LossTerms, DhkdHeadsGetOnlyTheirOwnLossesGradients) {
  auto student = convnet(4);
  auto teacher = random_teacher(convnet(8), 3);
  auto [images, labels] = toy_data(6, 2);
  LossSpec aux_term = term("dhkd", 1.0, 2.0);
  aux_term.student_layer = "embedding";
  LossTerms both({term("ce", 1.0), aux_term}, "kd.losses", *student, teacher->model.get());
  LossTerms dhkd_only({aux_term}, "kd.losses", *student, teacher->model.get());
  LossTerms ce_only({term("ce", 1.0)}, "kd.losses", *student, teacher->model.get());
  at::Generator gen = make_generator(4);
  const at::Tensor params = student->init_params(gen);
  at::Tensor teacher_logits = teacher->forward(images);
  auto gradients = [&](LossTerms& terms, at::Tensor aux) {
    at::Tensor p = params.clone().requires_grad_(true);
    models::Features features;
    models::ForwardArgs args;
    args.features = &features;
    args.train = true;
    at::Tensor logits = student->forward(images, p, args);
    LossTerms::Side side{logits, &features}, teacher_side{teacher_logits, nullptr};
    terms.prepare(side, teacher_side);
    std::vector<at::Tensor> inputs = {p};
    if (aux.defined()) inputs.push_back(aux.clone().requires_grad_(true));
    at::Tensor loss = terms.evaluate(side, &teacher_side, labels,
                                     aux.defined() ? inputs[1] : at::Tensor());
    return torch::autograd::grad({loss}, inputs, {}, false, false, true);
  };
  // The auxiliary head: classes x the embedding's 36 values, plus a bias.
  at::Tensor aux = [&] {
    at::Tensor probe = params.clone();
    models::Features f;
    models::ForwardArgs a;
    a.features = &f;
    LossTerms::Side side{student->forward(images, probe, a), &f}, t{teacher_logits, nullptr};
    both.prepare(side, t);
    return both.init_aux(gen);
  }();
  ASSERT_EQ(aux.numel(), 4 * 36 + 4);
  auto g_both = gradients(both, aux), g_dhkd = gradients(dhkd_only, aux), g_ce = gradients(ce_only, {});
  // The classifier is the convnet's last layer: its weight and bias are the last params.
  const auto& specs = student->param_specs();
  ASSERT_EQ(specs[specs.size() - 2].name, "classifier.weight");
  const int64_t head = specs[specs.size() - 2].numel() + specs.back().numel();
  const int64_t backbone = params.numel() - head;
  EXPECT_EQ(g_dhkd[0].narrow(0, backbone, head).abs().max().item<double>(), 0.0)
      << "dhkd moved the student's classifier";
  EXPECT_GT(g_dhkd[0].narrow(0, 0, backbone).abs().max().item<double>(), 0.0);
  EXPECT_TRUE(g_both[1].equal(g_dhkd[1])) << "ce reached the auxiliary head";
  EXPECT_TRUE(at::allclose(g_both[0].narrow(0, backbone, head), g_ce[0].narrow(0, backbone, head),
                           1e-6, 1e-7));
  EXPECT_TRUE(at::allclose(g_both[0], g_ce[0] + g_dhkd[0], 1e-5, 1e-6));  // the backbone: both
  // The term needs a student feature and reads no teacher layer.
  LossSpec no_layer = term("dhkd", 1.0, 2.0);
  EXPECT_NE(error_of([&] { LossTerms({no_layer}, "kd.losses", *student, teacher->model.get()); })
                .find("kd.losses[0].student_layer (dhkd) is required"),
            std::string::npos);
  LossSpec with_teacher_layer = aux_term;
  with_teacher_layer.teacher_layer = "block0";
  EXPECT_NE(error_of([&] { LossTerms({with_teacher_layer}, "kd.losses", *student, teacher->model.get()); })
                .find("kd.losses[0].teacher_layer does not apply to 'dhkd'"),
            std::string::npos);
}

// OFA's branches: a term with student_layer owns a branch sized max(feature, teacher's last
// feature) (or branch_width), reaching the logits without the student's classifier; a term without
// one scores the output. Neither reads a teacher feature, so the teacher's logits can be cached.
TEST(LossTerms, OfaBranchesAreSizedFromBothModelsAndSkipTheClassifier) {
  auto student = mlp({6});
  auto teacher = random_teacher(convnet(8), 3);
  auto [images, labels] = toy_data(6, 2);
  LossSpec on_output = term("ofa", 1.0, 1.0);
  on_output.eps = 1.5;
  LossSpec branch = on_output;
  branch.student_layer = "hidden0";
  at::Generator gen = make_generator(4);
  const at::Tensor params = student->init_params(gen);
  models::Features teacher_features;
  at::Tensor teacher_logits = teacher->forward(images, &teacher_features);
  LossTerms::Side teacher_side{teacher_logits, &teacher_features};
  ASSERT_EQ(teacher_features.back().first, "embedding");
  const int64_t width = teacher_features.back().second.size(1);  // wider than hidden0's 6
  ASSERT_GT(width, 6);
  auto prepared = [&](LossTerms& terms) {
    models::Features f;
    models::ForwardArgs a;
    a.features = &f;
    terms.prepare({student->forward(images, params, a), &f}, teacher_side);
    return terms.init_aux(gen);
  };
  LossTerms branch_only({branch}, "kd.losses", *student, teacher->model.get());
  at::Tensor aux = prepared(branch_only);
  ASSERT_EQ(branch_only.aux_specs().size(), 4u);
  EXPECT_EQ(branch_only.aux_specs()[0].shape, (std::vector<int64_t>{width, 6}));
  EXPECT_EQ(branch_only.aux_specs()[2].shape, (std::vector<int64_t>{4, width}));
  EXPECT_FALSE(branch_only.needs_teacher_features());
  EXPECT_TRUE(branch_only.needs_features());
  LossSpec narrow = branch;
  narrow.branch_width = 5;
  LossTerms narrow_terms({narrow}, "kd.losses", *student, teacher->model.get());
  EXPECT_EQ(prepared(narrow_terms).numel(), 5 * 6 + 5 + 4 * 5 + 4);
  LossTerms output_only({on_output}, "kd.losses", *student, teacher->model.get());
  EXPECT_EQ(prepared(output_only).numel(), 0);
  EXPECT_FALSE(output_only.needs_features());
  // On a ConvNet's map the hidden layer is a 1x1 convolution over its channels.
  auto conv_student = convnet(4);
  LossSpec map_branch = branch;
  map_branch.student_layer = "block0";
  LossTerms map_terms({map_branch}, "kd.losses", *conv_student, teacher->model.get());
  models::Features conv_features;
  models::ForwardArgs conv_args;
  conv_args.features = &conv_features;
  map_terms.prepare({conv_student->forward(images, conv_student->init_params(gen), conv_args),
                     &conv_features},
                    teacher_side);
  EXPECT_EQ(map_terms.aux_specs()[0].shape, (std::vector<int64_t>{width, 4, 1, 1}));

  // The branch's loss reaches the first layer and the branch, never the classifier (layers.1).
  at::Tensor p = params.clone().requires_grad_(true), x = aux.clone().requires_grad_(true);
  models::Features f;
  models::ForwardArgs a;
  a.features = &f;
  LossTerms::Side side{student->forward(images, p, a), &f};
  at::Tensor loss = branch_only.evaluate(side, &teacher_side, labels, x);
  auto g = torch::autograd::grad({loss}, {p, x});
  const auto& specs = student->param_specs();
  const int64_t head = specs[specs.size() - 2].numel() + specs.back().numel();
  EXPECT_EQ(g[0].narrow(0, p.numel() - head, head).abs().max().item<double>(), 0.0);
  EXPECT_GT(g[0].narrow(0, 0, p.numel() - head).abs().max().item<double>(), 0.0);
  EXPECT_GT(g[1].abs().max().item<double>(), 0.0);
  // Its value: the OFA loss of the branch's logits.
  auto views = models::Model::unflatten(aux, branch_only.aux_specs());
  at::Tensor hidden;
  for (const auto& [name, tensor] : f) {
    if (name == "hidden0") hidden = tensor;
  }
  EXPECT_NEAR(loss.item<double>(),
              ofa_loss(ofa_branch(hidden, views), teacher_logits, labels, 1.5, 1.0).item<double>(),
              1e-6);

  // Cached teacher logits are allowed (no teacher feature is read).
  KdObjective objective({branch}, "kd.losses", *student, teacher, images);
  EXPECT_NO_THROW(objective.cache_teacher_logits(images));

  LossSpec wide_output = on_output;
  wide_output.branch_width = 8;
  EXPECT_NE(error_of([&] { LossTerms({wide_output}, "kd.losses", *student, teacher->model.get()); })
                .find("kd.losses[0].branch_width (ofa) sizes a branch, and this term has none"),
            std::string::npos);
  LossSpec eps_on_hinton = term("hinton", 1.0);
  eps_on_hinton.eps = 2;
  EXPECT_NE(error_of([&] { LossTerms({eps_on_hinton}, "kd.losses", *student, teacher->model.get()); })
                .find("kd.losses[0].eps does not apply to 'hinton' (used by ofa)"),
            std::string::npos);
  LossSpec teacher_layer = branch;
  teacher_layer.teacher_layer = "embedding";
  EXPECT_NE(error_of([&] { LossTerms({teacher_layer}, "kd.losses", *student, teacher->model.get()); })
                .find("kd.losses[0].teacher_layer does not apply to 'ofa'"),
            std::string::npos);
}

// ND's class means are the teacher's per-class average feature; the term projects a student
// feature of another size linearly, and refuses to train without the means.
TEST(KdObjective, NdUsesTheTeachersClassMeanFeatures) {
  auto student = mlp({6});
  auto teacher = random_teacher(convnet(8), 3);
  auto [images, labels] = toy_data(40, 7);
  at::Tensor means = class_mean_features(*teacher, "embedding", images, labels, 4, 7);
  for (int64_t c = 0; c < 4; ++c) {
    models::Features features;
    teacher->forward(images, &features);
    at::Tensor embedding;
    for (const auto& [name, value] : features) {
      if (name == "embedding") embedding = value.flatten(1);
    }
    at::Tensor expected = embedding.index({labels.eq(c)}).mean(0);
    EXPECT_TRUE(at::allclose(means[c], expected, 1e-5, 1e-6)) << "class " << c;
  }
  LossSpec nd = term("nd", 1.0);
  nd.T = LossSpec{}.T;
  nd.student_layer = "hidden0";   // 6 values
  nd.teacher_layer = "embedding"; // 8 channels x 3 x 3 = 72: a 72 x 6 projection
  KdObjective objective({nd, term("ce", 1.0)}, "kd.losses", *student, teacher, images.narrow(0, 0, 4));
  at::Generator gen = make_generator(1);
  EXPECT_EQ(objective.init_aux(gen).numel(), 72 * 6 + 72);
  EXPECT_EQ(objective.terms().class_mean_layers(), std::vector<std::string>{"embedding"});
  train::StepContext step;
  step.images = images.narrow(0, 0, 4);
  step.targets = labels.narrow(0, 0, 4);
  step.indices = at::arange(4);
  models::Features features;
  models::ForwardArgs args;
  args.features = &features;
  step.params = student->init_params(gen);
  step.logits = student->forward(step.images, step.params, args);
  step.features = &features;
  step.aux = objective.init_aux(gen);
  EXPECT_NE(error_of([&] { objective.loss(step); }).find("class means of 'embedding' were not computed"),
            std::string::npos);
  objective.compute_class_means(images, labels, 4);
  EXPECT_TRUE(std::isfinite(objective.loss(step).item<double>()));
  EXPECT_NE(error_of([&] { class_mean_features(*teacher, "embedding", images, labels, 5); })
                .find("class 4 has no training image"),
            std::string::npos);
}

TEST(KdObjective, CachedTeacherLogitsGiveTheSameLoss) {
  auto student = mlp({8});
  auto [images, labels] = toy_data(20, 4);
  auto teacher = random_teacher(convnet(4), 5);
  KdObjective live({term("hinton", 0.7), term("ce", 0.3)}, "kd.losses", *student, teacher, images);
  KdObjective cached({term("hinton", 0.7), term("ce", 0.3)}, "kd.losses", *student, teacher,
                     images);
  cached.cache_teacher_logits(images, 7);  // several chunks
  at::Generator gen = make_generator(6);
  at::Tensor params = student->init_params(gen);
  train::StepContext step;
  step.indices = at::tensor({3, 17, 5, 0}, at::kLong);
  step.images = images.index_select(0, step.indices);
  step.targets = labels.index_select(0, step.indices);
  step.logits = student->forward(step.images, params);
  models::Features none;
  step.features = &none;
  EXPECT_NEAR(live.loss(step).item<double>(), cached.loss(step).item<double>(), 1e-6);
  auto metrics = cached.take_epoch_metrics();
  EXPECT_TRUE(metrics.count("loss_hinton") && metrics.count("loss_ce"));
}

TEST(KdObjective, TrainingWithTheTrainerPullsTheStudentTowardsTheTeacher) {
  auto student = mlp({16});
  auto [images, labels] = toy_data(128, 7);
  auto teacher = random_teacher(convnet(4), 8);
  auto objective = std::make_shared<KdObjective>(std::vector<LossSpec>{term("hinton", 1.0, 2.0)},
                                                 "kd.losses", *student, teacher, images);
  train::TrainOptions o;
  o.epochs = 30;
  o.batch_size = 32;
  o.optimizer.name = "adam";
  o.optimizer.lr = 0.01;
  o.optimizer.weight_decay = 0;
  train::Trainer trainer(*student, o, 1);
  trainer.set_objective(objective);
  trainer.set_progress("test", false);
  train::TrainState state = trainer.init_state();
  auto kl_to_teacher = [&](const at::Tensor& params) {
    at::NoGradGuard no_grad;
    return hinton_loss(student->forward(images, params), teacher->forward(images), 2.0)
        .item<double>();
  };
  const double before = kl_to_teacher(state.params);
  trainer.fit(state, images, labels);
  const double after = kl_to_teacher(state.params);
  EXPECT_LT(after, 0.2 * before) << before << " -> " << after;
  // The student now predicts what the (random, label-agnostic) teacher predicts.
  at::NoGradGuard no_grad;
  at::Tensor agree =
      student->forward(images, state.params).argmax(1).eq(teacher->forward(images).argmax(1));
  EXPECT_GT(agree.to(at::kDouble).mean().item<double>(), 0.9);
}

TEST(KdObjective, FitnetRegressorIsTrainedAsAuxParameters) {
  auto student = convnet(4);
  auto [images, labels] = toy_data(64, 9);
  LossSpec hint = term("fitnet", 1);
  hint.student_layer = "block1";
  hint.teacher_layer = "block1";
  auto objective = std::make_shared<KdObjective>(std::vector<LossSpec>{hint}, "kd.losses", *student,
                                                 random_teacher(convnet(8), 10), images);
  train::TrainOptions o;
  o.epochs = 10;
  o.batch_size = 16;
  o.optimizer.name = "adam";
  o.optimizer.lr = 0.01;
  train::Trainer trainer(*student, o, 2);
  trainer.set_objective(objective);
  trainer.set_progress("test", false);
  train::TrainState state = trainer.init_state();
  at::Tensor aux_before = state.aux.clone();
  auto metrics = trainer.fit(state, images, labels);
  EXPECT_GT((state.aux - aux_before).abs().max().item<double>(), 1e-3);
  // The hint loss fell: first-epoch mean vs. the final epoch's.
  EXPECT_TRUE(metrics.count("loss_fitnet"));
}

TEST(Cohort, SplitsParametersAndRecordsEveryMember) {
  std::vector<std::unique_ptr<models::Model>> members;
  members.push_back(mlp({6}));
  members.push_back(mlp({6}));
  Cohort cohort(std::move(members));
  EXPECT_EQ(cohort.num_params(), 2 * cohort.member(0).num_params());
  EXPECT_EQ(cohort.param_specs()[0].name, "member0.layers.0.weight");
  at::Generator gen = make_generator(3);
  at::Tensor params = cohort.init_params(gen);
  at::Tensor x = at::randn({3, 1, 8, 8}, gen);
  models::Features features;
  models::ForwardArgs args;
  args.features = &features;
  at::Tensor out = cohort.forward(x, params, args);
  at::Tensor m0 = cohort.member(0).forward(x, cohort.member_params(params, 0));
  at::Tensor m1 = cohort.member(1).forward(x, cohort.member_params(params, 1));
  EXPECT_TRUE(at::allclose(out, m0));
  auto second = Cohort::member_features(features, 1);
  ASSERT_EQ(second.size(), 2u);  // logits, hidden0
  EXPECT_EQ(second[0].first, "logits");
  EXPECT_TRUE(at::allclose(second[0].second, m1));
  EXPECT_FALSE(at::allclose(m0, m1));  // members start from different draws
  std::vector<std::unique_ptr<models::Model>> one;
  one.push_back(mlp({6}));
  EXPECT_NE(error_of([&] { Cohort alone(std::move(one)); }).find("at least 2 students, found 1"),
            std::string::npos);
}

TEST(MutualObjective, EachMemberGetsTheGradientOfItsOwnLoss) {
  std::vector<std::unique_ptr<models::Model>> members;
  for (int i = 0; i < 3; ++i) members.push_back(mlp({5}));
  Cohort cohort(std::move(members));
  auto [images, labels] = toy_data(6, 11);
  MutualObjective objective({term("hinton", 1.0, 2.0), term("ce", 1.0)}, "kd.losses", cohort,
                            images);
  at::Generator gen = make_generator(12);
  at::Tensor flat = cohort.init_params(gen).to(at::kDouble);
  at::Tensor x = images.to(at::kDouble);

  at::Tensor params = flat.clone().requires_grad_(true);
  models::Features features;
  models::ForwardArgs args;
  args.features = &features;
  train::StepContext step;
  step.images = x;
  step.targets = labels;
  step.logits = cohort.forward(x, params, args);
  step.features = &features;
  at::Tensor grad = torch::autograd::grad({objective.loss(step)}, {params})[0];

  // Independent: DML eq. 10 per member, peers' predictions as constants.
  std::vector<at::Tensor> logits;
  for (size_t i = 0; i < 3; ++i) {
    logits.push_back(cohort.member(i).forward(x, cohort.member_params(flat, i)).detach());
  }
  for (size_t i = 0; i < 3; ++i) {
    at::Tensor p = cohort.member_params(flat, i).clone().requires_grad_(true);
    at::Tensor z = cohort.member(i).forward(x, p);
    at::Tensor loss = at::cross_entropy_loss(z, labels);
    for (size_t j = 0; j < 3; ++j) {
      if (j != i) loss = loss + hinton_loss(z, logits[j], 2.0) / 2.0;
    }
    at::Tensor expected = torch::autograd::grad({loss}, {p})[0];
    EXPECT_TRUE(at::allclose(cohort.member_params(grad, i), expected, 1e-9, 1e-12))
        << "member " << i;
  }
}

TEST(MutualObjective, TermsWithTheirOwnParametersAreRefusedWithAReason) {
  std::vector<std::unique_ptr<models::Model>> members;
  members.push_back(mlp({5}));
  members.push_back(mlp({5}));
  Cohort cohort(std::move(members));
  LossSpec hint = term("fitnet", 1);
  hint.student_layer = hint.teacher_layer = "hidden0";
  EXPECT_NE(error_of([&] {
              MutualObjective({hint}, "kd.losses", cohort, toy_data(4, 1).first);
            }).find("kd.losses: fitnet trains parameters of its own per student pair"),
            std::string::npos);
  LossSpec head = term("dhkd", 1, 2.0);
  head.student_layer = "hidden0";
  EXPECT_NE(error_of([&] {
              MutualObjective({head}, "kd.losses", cohort, toy_data(4, 1).first);
            }).find("kd.losses: dhkd trains parameters of its own per student pair"),
            std::string::npos);
  LossSpec branch = term("ofa", 1, 1.0);
  branch.student_layer = "hidden0";
  EXPECT_NE(error_of([&] {
              MutualObjective({branch}, "kd.losses", cohort, toy_data(4, 1).first);
            }).find("kd.losses: ofa trains parameters of its own per student pair"),
            std::string::npos);
  // On the members' outputs, ofa has no parameters of its own: mutual learning takes it.
  EXPECT_NO_THROW(MutualObjective({term("ofa", 1, 1.0), term("ce", 1)}, "kd.losses", cohort,
                                  toy_data(4, 1).first));
}

// A model.pt like `distill train` writes: arch, flat params/buffers, state_dict-named tensors.
void write_model_file(const std::string& path, const models::Model& model,
                      const at::Tensor& params) {
  io::TensorDict dict = io::make_dict();
  dict.insert("arch", model.arch());
  dict.insert("params", params);
  dict.insert("buffers", model.init_buffers());
  auto views = models::Model::unflatten(params, model.param_specs());
  for (size_t i = 0; i < views.size(); ++i) dict.insert(model.param_specs()[i].name, views[i]);
  io::save_dict(path, dict);
}

TEST(Teacher, LoadsItsWeightsAndNamesEveryMismatch) {
  testing::TempDir dir;
  auto saved = mlp({16}, 5);
  at::Generator gen = make_generator(13);
  at::Tensor params = saved->init_params(gen);
  write_model_file(dir.file("model.pt"), *saved, params);
  TeacherOptions options;
  options.checkpoint = dir.file("model.pt");
  options.model.arch = "mlp";
  options.model.hidden = {16};
  Teacher teacher = load_teacher(options, 1, 8, 5);
  at::Tensor x = at::randn({2, 1, 8, 8}, gen);
  EXPECT_TRUE(at::equal(teacher.forward(x), saved->forward(x, params)));

  std::string classes = error_of([&] { load_teacher(options, 1, 8, 10); });
  EXPECT_NE(classes.find("was trained for 5 classes (layers.1.bias [5]), the data has 10"),
            std::string::npos)
      << classes;
  options.model.hidden = {32};
  std::string width = error_of([&] { load_teacher(options, 1, 8, 5); });
  EXPECT_NE(width.find("'layers.0.weight' has shape [16, 64], teacher.model builds [32, 64]"),
            std::string::npos)
      << width;
  options.model.arch = "convnet";
  std::string arch = error_of([&] { load_teacher(options, 1, 8, 5); });
  EXPECT_NE(arch.find("holds a 'mlp', but teacher.model.arch builds a 'convnet'"),
            std::string::npos)
      << arch;
  // A file without state_dict names (checkpoint.pt) still fails on the parameter count.
  io::TensorDict bare = io::make_dict();
  bare.insert("arch", std::string("mlp"));
  bare.insert("params", params);
  io::save_dict(dir.file("bare.pt"), bare);
  options.checkpoint = dir.file("bare.pt");
  options.model.arch = "mlp";
  options.model.hidden = {16};
  std::string count = error_of([&] { load_teacher(options, 1, 8, 10); });
  EXPECT_NE(count.find("holds " + std::to_string(params.numel()) + " parameters"),
            std::string::npos)
      << count;
}

TEST(Teacher, TorchScriptTeacherFromPythonGivesPythonsLogits) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  at::Generator gen = make_generator(14);
  at::Tensor x = at::randn({5, 1, 8, 8}, gen);
  io::TensorDict in = io::make_dict();
  in.insert("x", x);
  io::save_dict(dir.file("in.pt"), in);
  testing::run_python_script("make_scripted_teacher.py",
                             {dir.file("teacher.ts"), dir.file("in.pt"), dir.file("out.pt")});
  at::Tensor expected = io::get_tensor(io::load_dict(dir.file("out.pt")), "logits", "out.pt");
  TeacherOptions options;
  options.torchscript = dir.file("teacher.ts");
  auto teacher = std::make_shared<Teacher>(load_teacher(options, 1, 8, 3));
  EXPECT_EQ(teacher->model->arch(), "torchscript");
  EXPECT_TRUE(at::allclose(teacher->forward(x), expected, 1e-5, 1e-6));

  // It drives response-based terms; feature terms name what it lacks.
  auto student = mlp({8}, 3);
  KdObjective objective({term("hinton", 1.0)}, "kd.losses", *student, teacher, x);
  LossSpec hint = term("fitnet", 1);
  hint.student_layer = "hidden0";
  hint.teacher_layer = "hidden0";
  EXPECT_NE(error_of([&] {
              KdObjective({hint}, "kd.losses", *student, teacher, x);
            }).find("the teacher (torchscript) has no feature 'hidden0'; available: logits"),
            std::string::npos);

  std::string classes = error_of([&] { load_teacher(options, 1, 8, 4); });
  EXPECT_NE(classes.find("outputs [2, 3] for a batch of 2; the data has 4 classes"),
            std::string::npos)
      << classes;
  options.torchscript = dir.file("in.pt");  // a tensor file, not a module
  std::string bad = error_of([&] { load_teacher(options, 1, 8, 3); });
  EXPECT_NE(bad.find("cannot be loaded"), std::string::npos) << bad;
}

}  // namespace
}  // namespace distill::kd
