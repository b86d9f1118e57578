// Mechanisms of synth/: statistics losses, committee weights, draws, the relabel ensemble,
// the augmentation between steps and the manifest.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <csignal>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "synth/committee.h"
#include "synth/recover.h"
#include "synth/statistics_loss.h"
#include "tests/support/test_support.h"

namespace distill::synth {
namespace {

models::ModelOptions bn_convnet() {
  models::ModelOptions o;
  o.norm = "batchnorm";
  o.width = 4;
  return o;
}

// Per-channel mean and biased variance written out by hand (loops over channels).
std::pair<at::Tensor, at::Tensor> hand_statistics(const at::Tensor& x) {
  const int64_t c = x.size(1);
  at::Tensor mean = at::empty({c}, x.options()), var = at::empty({c}, x.options());
  for (int64_t k = 0; k < c; ++k) {
    at::Tensor v = x.select(1, k).reshape({-1});
    const double m = v.sum().item<double>() / static_cast<double>(v.numel());
    mean[k] = m;
    var[k] = ((v - m) * (v - m)).sum().item<double>() / static_cast<double>(v.numel());
  }
  return {mean, var};
}

double bn_loss_of(const models::Model& model, const at::Tensor& params, const at::Tensor& buffers,
                  const at::Tensor& x, double first_multiplier, at::Tensor* grad = nullptr) {
  at::Tensor leaf = x.detach().requires_grad_(grad != nullptr);
  std::vector<models::NormInput> layers;
  models::ForwardArgs args;
  args.buffers = buffers;
  args.norm_inputs = &layers;
  model.forward(leaf, params, args);
  at::Tensor loss = batch_norm_statistics_loss(layers, first_multiplier);
  if (grad) *grad = torch::autograd::grad({loss}, {leaf})[0];
  return loss.item<double>();
}

TEST(StatisticsLoss, ZeroWhenBatchStatisticsEqualTheRunningStatistics) {
  auto model = models::make_model(bn_convnet(), 1, 8, 3);
  at::Generator gen = make_generator(3);
  at::Tensor params = model->init_params(gen).to(at::kDouble);
  at::Tensor buffers = model->init_buffers().to(at::kDouble);
  at::Tensor x = at::randn({6, 1, 8, 8}, gen).to(at::kDouble) * 2 + 0.5;
  auto b = models::Model::unflatten(buffers, model->buffer_specs());
  // Layer l's input depends on layers < l only: set the running statistics one layer at a time
  // to the hand-computed statistics of what that layer sees.
  for (size_t l = 0; l < b.size() / 2; ++l) {
    std::vector<models::NormInput> layers;
    models::ForwardArgs args;
    args.buffers = buffers;
    args.norm_inputs = &layers;
    model->forward(x, params, args);
    auto [mean, var] = hand_statistics(layers[l].input);
    b[2 * l].copy_(mean);
    b[2 * l + 1].copy_(var);
  }
  EXPECT_LT(bn_loss_of(*model, params, buffers, x, 10.0), 1e-10);
  // Another batch does not match them.
  EXPECT_GT(bn_loss_of(*model, params, buffers, at::randn({6, 1, 8, 8}, gen).to(at::kDouble), 10.0),
            0.1);
}

TEST(StatisticsLoss, ValueIsTheHandFormula) {
  at::Generator gen = make_generator(4);
  at::Tensor a = at::randn({5, 3, 4, 4}, gen), c = at::randn({5, 2}, gen);
  std::vector<ChannelStatistics> targets = {{at::randn({3}, gen), at::rand({3}, gen)},
                                            {at::randn({2}, gen), at::rand({2}, gen)}};
  double expected = 0;
  const std::vector<at::Tensor> inputs = {a, c};
  for (size_t l = 0; l < 2; ++l) {
    auto [mean, var] = hand_statistics(inputs[l]);
    double dm = 0, dv = 0;
    for (int64_t k = 0; k < mean.numel(); ++k) {
      dm += std::pow(mean[k].item<double>() - targets[l].mean[k].item<double>(), 2);
      dv += std::pow(var[k].item<double>() - targets[l].var[k].item<double>(), 2);
    }
    expected += (l == 0 ? 3.0 : 1.0) * (std::sqrt(dm) + std::sqrt(dv));
  }
  EXPECT_NEAR(statistics_loss(inputs, targets, 3.0).item<double>(), expected, 1e-5);
  try {
    statistics_loss({a}, targets);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 layers but 2"), std::string::npos) << e.what();
  }
}

TEST(StatisticsLoss, GradientMatchesCentralFiniteDifferences) {
  auto model = models::make_model(bn_convnet(), 1, 8, 3);
  at::Generator gen = make_generator(5);
  at::Tensor params = model->init_params(gen).to(at::kDouble);
  at::Tensor buffers = model->init_buffers().to(at::kDouble);
  buffers.uniform_(0.2, 1.2, gen);
  at::Tensor x = at::randn({4, 1, 8, 8}, gen).to(at::kDouble);
  at::Tensor grad;
  bn_loss_of(*model, params, buffers, x, 10.0, &grad);
  const double eps = 1e-6;
  at::Tensor flat = x.view({-1});
  for (int64_t i : {0, 17, 63, 100, 200, 255}) {
    at::Tensor plus = x.clone(), minus = x.clone();
    plus.view({-1})[i] += eps;
    minus.view({-1})[i] -= eps;
    const double fd = (bn_loss_of(*model, params, buffers, plus, 10.0) -
                       bn_loss_of(*model, params, buffers, minus, 10.0)) / (2 * eps);
    EXPECT_NEAR(grad.view({-1})[i].item<double>(), fd, 1e-6 + 1e-4 * std::abs(fd)) << "pixel " << i;
  }
}

TEST(StatisticsLoss, RealFeatureStatisticsInBatchesEqualTheWholeSet) {
  models::ModelOptions o;  // convnet with instance norm: no running statistics
  o.width = 4;
  auto model = models::make_model(o, 1, 8, 3);
  at::Generator gen = make_generator(6);
  at::Tensor params = model->init_params(gen);
  at::Tensor x = at::randn({23, 1, 8, 8}, gen);
  FeatureStatistics stats = real_feature_statistics(*model, params, model->init_buffers(), x, 7);
  models::Features features;
  models::ForwardArgs args;
  args.features = &features;
  model->forward(x, params, args);
  ASSERT_EQ(stats.size(), features.size());
  for (size_t f = 0; f < stats.size(); ++f) {
    EXPECT_EQ(stats[f].first, features[f].first);
    auto [mean, var] = hand_statistics(features[f].second.to(at::kDouble));
    EXPECT_TRUE(at::allclose(stats[f].second.mean.to(at::kDouble), mean, 1e-5, 1e-6)) << stats[f].first;
    EXPECT_TRUE(at::allclose(stats[f].second.var.to(at::kDouble), var, 1e-5, 1e-6)) << stats[f].first;
  }
  // The whole set matches its own statistics; the loss's gradient matches finite differences.
  EXPECT_LT(feature_statistics_loss(features, stats).item<double>(), 1e-4);
  at::Tensor xd = x.narrow(0, 0, 4).to(at::kDouble);
  at::Tensor pd = params.to(at::kDouble);
  auto loss_at = [&](const at::Tensor& input, at::Tensor* grad) {
    at::Tensor leaf = input.detach().requires_grad_(grad != nullptr);
    models::Features f;
    models::ForwardArgs a;
    a.features = &f;
    model->forward(leaf, pd, a);
    FeatureStatistics targets = stats;
    for (auto& [name, s] : targets) {
      s.mean = s.mean.to(at::kDouble);
      s.var = s.var.to(at::kDouble);
    }
    at::Tensor loss = feature_statistics_loss(f, targets, 2.0);
    if (grad) *grad = torch::autograd::grad({loss}, {leaf})[0];
    return loss.item<double>();
  };
  at::Tensor grad;
  loss_at(xd, &grad);
  for (int64_t i : {3, 64, 130, 250}) {
    at::Tensor plus = xd.clone(), minus = xd.clone();
    plus.view({-1})[i] += 1e-6;
    minus.view({-1})[i] -= 1e-6;
    const double fd = (loss_at(plus, nullptr) - loss_at(minus, nullptr)) / 2e-6;
    EXPECT_NEAR(grad.view({-1})[i].item<double>(), fd, 1e-6 + 1e-4 * std::abs(fd)) << i;
  }
  testing::TempDir dir;
  save_feature_statistics(dir.file("stats.pt"), stats);
  FeatureStatistics back = load_feature_statistics(dir.file("stats.pt"));
  ASSERT_EQ(back.size(), stats.size());
  EXPECT_EQ(back.back().first, stats.back().first);
  EXPECT_TRUE(at::equal(back.back().second.var, stats.back().second.var));
}

TEST(Committee, WeightsAreSoftmaxOfAccuracyOverTemperature) {
  const std::vector<double> acc = {0.9, 0.8, 0.75};
  const double T = 0.1;
  at::Tensor w = committee_weights(acc, T);
  double z = 0;
  for (double a : acc) z += std::exp(a / T);
  for (size_t i = 0; i < acc.size(); ++i) {
    EXPECT_NEAR(w[static_cast<int64_t>(i)].item<double>(), std::exp(acc[i] / T) / z, 1e-6);
  }
  EXPECT_NEAR(committee_weights({0.5, 0.9}, 1e6)[0].item<double>(), 0.5, 1e-6);  // T -> inf: uniform
  try {
    committee_weights(acc, 0.0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("synth.temperature must be > 0"), std::string::npos);
  }
}

TEST(Committee, DrawsAreDistinctMembersAndBadSizesAreErrors) {
  at::Generator gen = make_generator(7);
  std::vector<int> seen(5, 0);
  for (int i = 0; i < 200; ++i) {
    auto drawn = draw_members(5, 2, gen);
    ASSERT_EQ(drawn.size(), 2u);
    EXPECT_NE(drawn[0], drawn[1]);
    for (int64_t k : drawn) ++seen[k];
  }
  for (int count : seen) EXPECT_GT(count, 40);  // 80 expected per member
  for (int64_t draw : {0, 6}) {
    try {
      draw_members(5, draw, gen);
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("synth.draw must be between 1 and the committee size 5, found " +
                                           std::to_string(draw)),
                std::string::npos) << e.what();
    }
  }
}

TEST(Committee, EnsembleIsTheWeightedMeanOfSoftenedOutputs) {
  // Member 0: logits (0, 0) -> (1/2, 1/2) at any T. Member 1: (2 ln 3, 0) at T = 2 -> (3/4, 1/4).
  // Weights 1/4, 3/4: (1/8 + 9/16, 1/8 + 3/16) = (0.6875, 0.3125).
  at::Tensor m0 = at::zeros({1, 2});
  at::Tensor m1 = at::tensor({2 * std::log(3.0), 0.0}, at::kFloat).view({1, 2});
  at::Tensor soft = ensemble_soft_labels({m0, m1}, at::tensor({0.25, 0.75}, at::kFloat), 2.0);
  EXPECT_NEAR(soft[0][0].item<double>(), 0.6875, 1e-6);
  EXPECT_NEAR(soft[0][1].item<double>(), 0.3125, 1e-6);
  try {
    ensemble_soft_labels({m0}, at::tensor({0.25, 0.75}, at::kFloat), 2.0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 members' logits but 2 weights"), std::string::npos);
  }
}

TEST(Recover, CropAndFlipKeepShapeAndGradient) {
  at::Generator gen = make_generator(8);
  at::Tensor x = at::randn({3, 1, 8, 8}, gen);
  // Scale 1 and no flip: the identity.
  EXPECT_TRUE(at::equal(random_resized_crop_flip(x, 1.0, false, gen), x));
  int flips = 0;
  for (int i = 0; i < 40; ++i) {
    at::Tensor y = random_resized_crop_flip(x, 1.0, true, gen);
    if (at::equal(y, at::flip(x, {3}))) {
      ++flips;
    } else {
      EXPECT_TRUE(at::equal(y, x));
    }
  }
  EXPECT_GT(flips, 5);
  EXPECT_LT(flips, 35);
  at::Tensor leaf = x.clone().requires_grad_(true);
  at::Tensor y = random_resized_crop_flip(leaf, 0.3, true, gen);
  EXPECT_EQ(y.sizes(), x.sizes());
  at::Tensor g = torch::autograd::grad({y.sum()}, {leaf})[0];
  EXPECT_GT(g.abs().sum().item<double>(), 0);
}

TEST(Recover, MultiCropWithOneCropIsTheSingleCropStepAndKCropsScoreKViews) {
  at::Generator gen = make_generator(13);
  at::Tensor x = at::randn({4, 1, 8, 8}, gen).requires_grad_(true);
  std::vector<at::Tensor> seen;
  auto f = [](const at::Tensor& v) { return (v * v).sum() + v.mean() * 3.0; };
  auto recording = [&](const at::Tensor& v) {
    seen.push_back(v.detach().clone());
    return f(v);
  };
  // One crop: the step as it was before the option, bit for bit (value, gradient, and the
  // generator left where the single crop leaves it).
  at::Generator g1 = make_generator(7, 1), g2 = make_generator(7, 1);
  at::Tensor a = multi_crop_loss(x, 1, 0.3, true, g1, recording);
  at::Tensor b = f(random_resized_crop_flip(x, 0.3, true, g2));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_TRUE(at::equal(torch::autograd::grad({a}, {x})[0], torch::autograd::grad({b}, {x})[0]));
  EXPECT_TRUE(at::equal(at::rand({3}, g1), at::rand({3}, g2)));
  EXPECT_EQ(seen.size(), 1u);
  // k crops: the loss is called on k views, the k successive crops of the generator, averaged.
  seen.clear();
  at::Generator g3 = make_generator(8), g4 = make_generator(8);
  at::Tensor c = multi_crop_loss(x, 3, 0.3, true, g3, recording);
  ASSERT_EQ(seen.size(), 3u);
  double sum = 0;
  for (size_t k = 0; k < 3; ++k) {
    at::Tensor view = random_resized_crop_flip(x, 0.3, true, g4);
    EXPECT_TRUE(at::equal(seen[k], view.detach())) << "view " << k;
    sum += f(view).item<double>();
  }
  EXPECT_FALSE(at::equal(seen[0], seen[1]));
  EXPECT_NEAR(c.item<double>(), sum / 3.0, 1e-4 * std::abs(sum));
  at::Generator g5 = make_generator(8);
  EXPECT_EQ(testing::error_of([&] { multi_crop_loss(x, 0, 0.3, true, g5, recording); }),
            "synth.recover.crops must be >= 1, found 0");
}

TEST(Committee, ManifestRoundTripsAndAnEmptyOneIsAnError) {
  testing::TempDir dir;
  CommitteeManifest manifest;
  manifest.dataset = "tiny";
  manifest.channels = 1;
  manifest.image_size = 8;
  manifest.num_classes = 3;
  MemberOptions a;
  a.checkpoint = "member_0/model.pt";
  a.val_accuracy = 0.75;
  a.model.arch = "resnet18bn";
  MemberOptions b;
  b.checkpoint = "/abs/model.pt";
  b.val_accuracy = 0.5;
  b.feature_stats = "member_1/feature_stats.pt";
  b.model.arch = "mlp";
  b.model.hidden = {16};
  manifest.members = {a, b};
  save_manifest(dir.file("committee.toml"), manifest);
  CommitteeManifest back = load_manifest(dir.file("committee.toml"));
  ASSERT_EQ(back.members.size(), 2u);
  EXPECT_EQ(back.members[0].model.arch, "resnet18bn");
  EXPECT_EQ(back.members[1].model.hidden, std::vector<int64_t>{16});
  EXPECT_DOUBLE_EQ(back.members[0].val_accuracy, 0.75);
  EXPECT_EQ(back.members[1].feature_stats, "member_1/feature_stats.pt");
  EXPECT_EQ(back.num_classes, 3);
  manifest.members.clear();
  save_manifest(dir.file("empty.toml"), manifest);
  try {
    load_manifest(dir.file("empty.toml"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty.toml': committee of size 0"), std::string::npos)
        << e.what();
  }
}

// A committee of two untrained members (one with batch norm, one matched on feature statistics
// of random "real" images) is enough to exercise recovery's bookkeeping.
std::vector<Member> tiny_committee(const at::Tensor& real) {
  std::vector<Member> committee;
  at::Generator gen = make_generator(10);
  for (const char* norm : {"batchnorm", "instancenorm"}) {
    Member m;
    m.options.model = bn_convnet();
    m.options.model.norm = norm;
    m.options.val_accuracy = m.options.model.norm == "batchnorm" ? 0.8 : 0.6;
    auto model = models::make_model(m.options.model, 1, 8, 3);
    at::Tensor params = model->init_params(gen), buffers = model->init_buffers();
    m.teacher = kd::teacher_from_state(std::move(model), params, buffers);
    m.batch_norm = m.teacher.buffers.numel() > 0;
    if (!m.batch_norm) {
      m.feature_stats = real_feature_statistics(*m.teacher.model, m.teacher.params,
                                                m.teacher.buffers, real);
    }
    committee.push_back(std::move(m));
  }
  return committee;
}

// CV-DD's batch-specific soft labels: an image's label depends on the batch it is labelled in
// (its companions' statistics) exactly when batch statistics are on; the members' running
// statistics stay as they were.
TEST(Committee, BatchStatisticsLabelsDependOnTheBatch) {
  at::Generator gen = make_generator(12);
  at::Tensor images = at::randn({6, 1, 8, 8}, gen) * 2 + 1;  // far from the running statistics
  std::vector<Member> committee = tiny_committee(images);
  const at::Tensor running = committee[0].teacher.buffers.clone();
  // Image 0 with two different sets of companions.
  at::Tensor first = images.narrow(0, 0, 3),
             second = at::cat({images.narrow(0, 0, 1), images.narrow(0, 3, 2)});
  auto label_of_image_0 = [&](const at::Tensor& batch, bool batch_statistics) {
    return committee_soft_labels(committee, batch, 0.1, 2.0, 256, batch_statistics)[0];
  };
  EXPECT_FALSE(
      at::allclose(label_of_image_0(first, true), label_of_image_0(second, true), 1e-4, 1e-4))
      << "with batch statistics the companions made no difference";
  EXPECT_TRUE(
      at::allclose(label_of_image_0(first, false), label_of_image_0(second, false), 1e-5, 1e-6))
      << "with running statistics the companions changed the label";
  EXPECT_TRUE(committee[0].teacher.buffers.equal(running)) << "running statistics changed";
  // A single image keeps the running statistics.
  EXPECT_TRUE(at::allclose(label_of_image_0(images.narrow(0, 0, 1), true),
                           label_of_image_0(images.narrow(0, 0, 1), false), 1e-5, 1e-6));
  committee[1].options.model.dropout = 0.5;
  EXPECT_NE(testing::error_of([&] {
              committee_soft_labels(committee, images, 0.1, 2.0, 256, true);
            }).find("has dropout"),
            std::string::npos);
}

TEST(Recover, InterruptedAndResumedRunEqualsUninterruptedRun) {
  install_interrupt_handler();
  at::Generator gen = make_generator(11);
  data::Dataset train;
  train.images = at::rand({30, 1, 8, 8}, gen);
  train.labels = at::arange(30, at::kLong).remainder(3);
  train.num_classes = 3;
  data::Normalization norm{at::full({1}, 0.5), at::full({1}, 0.25), nullptr};
  std::vector<Member> committee = tiny_committee(train.images);
  SynthOptions o;
  o.recover.ipc = 2;
  o.recover.batch_ipc = 1;
  o.recover.iterations = 3;
  o.recover.init = "real";
  o.recover.checkpoint_every = 0;
  testing::TempDir dir;
  eval::SyntheticSet straight = recover_images(o, committee, train, norm, "toy", 5,
                                               dir.file("a"), false, false, at::kCPU);
  ASSERT_EQ(straight.images.size(0), 6);
  EXPECT_TRUE(at::equal(straight.labels, at::tensor({0, 1, 2, 0, 1, 2}, at::kLong)));
  // Ctrl-C before the run: it stops after its first step, with a checkpoint.
  std::raise(SIGINT);
  EXPECT_THROW(recover_images(o, committee, train, norm, "toy", 5, dir.file("b"), false, false,
                              at::kCPU),
               Interrupted);
  clear_interrupt_request();
  eval::SyntheticSet resumed =
      recover_images(o, committee, train, norm, "toy", 5, dir.file("b"), true, false, at::kCPU);
  EXPECT_TRUE(at::equal(resumed.images, straight.images))
      << "max diff " << (resumed.images - straight.images).abs().max().item<double>();
  // The images stay in the normalized range of [0, 1] pixels.
  EXPECT_GE(straight.images.min().item<double>(), -2.0 - 1e-6);
  EXPECT_LE(straight.images.max().item<double>(), 2.0 + 1e-6);
  EXPECT_TRUE(at::equal(eval::load_synthetic_set(dir.file("a/syn.pt")).images, straight.images));
  // Resumed before its first checkpoint (killed at start-up): it starts again, same result.
  eval::SyntheticSet restarted =
      recover_images(o, committee, train, norm, "toy", 5, dir.file("c"), true, false, at::kCPU);
  EXPECT_TRUE(at::equal(restarted.images, straight.images));
  // A checkpoint of other settings (more images) is refused, naming the shapes.
  o.recover.ipc = 3;
  EXPECT_EQ(testing::error_of([&] {
              recover_images(o, committee, train, norm, "toy", 5, dir.file("b"), true, false,
                             at::kCPU);
            }),
            "checkpoint '" + dir.file("b") + "/checkpoint.pt': 'images' has shape [6, 1, 8, 8], "
            "the settings make [9, 1, 8, 8]; resume with the settings the run was started with");
}

TEST(Recover, StoredViewsReplayTheSameCropAndLabel) {
  at::Generator gen = make_generator(12);
  at::Tensor real = at::randn({12, 1, 8, 8}, gen);
  std::vector<Member> committee = tiny_committee(real);
  eval::SyntheticSet set;
  set.images = at::randn({4, 1, 8, 8}, gen);
  set.labels = at::tensor({0, 1, 2, 0}, at::kLong);
  set.num_classes = 3;
  RelabelOptions o;
  o.views = 3;
  o.view_min_scale = 0.3;
  o.T = 2.0;
  add_replay_views(set, committee, o, 0.1, 9, at::kCPU);
  ASSERT_EQ(set.view_boxes.sizes(), (std::vector<int64_t>{4, 3, 5}));
  ASSERT_EQ(set.view_labels.sizes(), (std::vector<int64_t>{4, 3, 3}));
  // Boxes lie inside the image and cover at least ~min_scale of it (rounding aside).
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t v = 0; v < 3; ++v) {
      auto b = set.view_boxes[i][v];
      const int64_t top = b[0].item<int64_t>(), left = b[1].item<int64_t>();
      const int64_t h = b[2].item<int64_t>(), w = b[3].item<int64_t>();
      EXPECT_TRUE(top >= 0 && left >= 0 && top + h <= 8 && left + w <= 8);
      EXPECT_GE(h * w, 10);  // 0.3 * 64 = 19.2 before rounding each side
    }
  }
  // Epoch 4 replays view 4 % 3 = 1: the crop cut out here by hand and its stored label, which is
  // the committee's soft label of that very crop.
  auto [images, labels] = eval::replay_views(set, at::tensor({2, 0}, at::kLong), 4);
  for (int64_t j = 0; j < 2; ++j) {
    const int64_t i = j == 0 ? 2 : 0;
    auto b = set.view_boxes[i][1];
    at::Tensor crop = set.images.narrow(0, i, 1)
                          .narrow(2, b[0].item<int64_t>(), b[2].item<int64_t>())
                          .narrow(3, b[1].item<int64_t>(), b[3].item<int64_t>());
    crop = at::upsample_bilinear2d(crop, {8, 8}, false);
    if (b[4].item<int64_t>()) crop = at::flip(crop, {3});
    EXPECT_TRUE(at::allclose(images.narrow(0, j, 1), crop)) << "image " << i;
    EXPECT_TRUE(at::equal(labels[j], set.view_labels[i][1]));
  }
  EXPECT_TRUE(at::allclose(committee_soft_labels(committee, images, 0.1, 2.0), labels, 1e-5, 1e-6));
  // The same seed draws the same views; the set file keeps them.
  eval::SyntheticSet again = set;
  add_replay_views(again, committee, o, 0.1, 9, at::kCPU);
  EXPECT_TRUE(at::equal(again.view_boxes, set.view_boxes));
  testing::TempDir dir;
  set.mean = at::zeros({1});
  set.std = at::ones({1});
  eval::save_synthetic_set(dir.file("views.pt"), set);
  eval::SyntheticSet back = eval::load_synthetic_set(dir.file("views.pt"));
  // Soft labels keep the set's budget as its IPC, whatever the argmax says (4 images, 3 classes).
  back.labels = at::zeros({4, 3});
  back.labels.select(1, 0).fill_(1.0);
  EXPECT_EQ(back.images_per_class(), 2);
  EXPECT_TRUE(at::equal(back.view_boxes, set.view_boxes));
  EXPECT_TRUE(at::equal(back.view_labels, set.view_labels));
}

}  // namespace
}  // namespace distill::synth
