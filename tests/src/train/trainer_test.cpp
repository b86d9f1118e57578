#include "src/train/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>

#include <torch/csrc/autograd/autograd.h>

#include "src/core/caching_allocator.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/train/augment.h"
#include "src/train/cutmix.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

// A learnable toy problem: class k images are noise plus a bright k-th quadrant.
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

std::unique_ptr<models::Model> tiny_convnet() {
  models::ModelOptions o;
  o.width = 8;
  o.depth = 1;
  return models::make_model(o, 1, 8, 4);
}

TrainOptions tiny_options() {
  TrainOptions o;
  o.epochs = 4;
  o.batch_size = 16;
  o.optimizer.lr = 0.05;
  return o;
}

// The up-front estimate (two small probes, extrapolated) against the peak of the real step at the
// full batch, measured the same way: close, and not above it by more than rounding of blocks.
TEST(TrainingMemory, EstimateFromSmallBatchesMatchesTheFullBatchStep) {
  install_caching_cpu_allocator();
  models::ModelOptions o;
  o.width = 32;
  auto model = models::make_model(o, 1, 28, 10);
  const at::Tensor images = at::zeros({1, 1, 28, 28});
  const double estimate = estimate_training_step_bytes(*model, images, 192);
  // The full step, measured directly.
  const CachingCpuAllocator& allocator = *installed_caching_cpu_allocator();
  at::Generator g = make_generator(0);
  at::Tensor params = model->init_params(g).requires_grad_(true);
  const size_t before = allocator.stats().in_use_bytes;
  allocator.reset_peak();
  {
    models::ForwardArgs args;
    args.train = true;
    at::Tensor loss = model->forward(at::zeros({192, 1, 28, 28}), params, args).square().mean();
    torch::autograd::grad({loss}, {params});
  }
  const double measured = static_cast<double>(allocator.stats().peak_in_use_bytes - before);
  ASSERT_GT(measured, 10.0 * (1 << 20));  // tens of MiB: the comparison means something
  EXPECT_GT(estimate, 0.8 * measured);
  EXPECT_LT(estimate, 1.1 * measured);
}

TEST(TrainingMemory, AStepThatCannotFitIsRefusedBeforeItRuns) {
  install_caching_cpu_allocator();
  models::ModelOptions o;
  auto model = models::make_model(o, 3, 64, 10);  // ConvNet-3 w128 on 64x64 RGB
  const std::string message = testing::error_of([&] {
    check_training_memory(*model, at::zeros({1, 3, 64, 64}), 10'000'000, "train.batch_size = 1e7");
  });
  EXPECT_NE(message.find("train.batch_size = 1e7: one training step of a 'convnet' on batches of "
                         "10000000 3x64x64 images needs at least "),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("available of"), std::string::npos) << message;
  // A batch that fits passes.
  check_training_memory(*model, at::zeros({1, 3, 64, 64}), 8, "train.batch_size = 8");
}

// The confusion matrix of evaluate(), counted independently from the logits of the same model.
TEST(Evaluate, ConfusionCountsEachTrueAndPredictedPair) {
  auto model = tiny_convnet();
  at::Generator g = make_generator(4);
  const at::Tensor params = model->init_params(g);
  auto [images, labels] = toy_data(37, 9);
  const EvalResult result = evaluate(*model, params, at::Tensor(), images, labels, 8);
  ASSERT_EQ(result.confusion.sizes(), (std::vector<int64_t>{4, 4}));
  const at::Tensor predicted = model->forward(images, params).argmax(1);
  int64_t correct = 0;
  for (int64_t t = 0; t < 4; ++t) {
    for (int64_t p = 0; p < 4; ++p) {
      const int64_t expected = labels.eq(t).logical_and(predicted.eq(p)).sum().item<int64_t>();
      EXPECT_EQ(result.confusion[t][p].item<int64_t>(), expected) << t << "," << p;
      if (t == p) correct += expected;
    }
  }
  EXPECT_DOUBLE_EQ(result.accuracy, static_cast<double>(correct) / 37);
}

TEST(ClassificationLoss, OneHotSoftLabelsEqualCrossEntropy) {
  at::Generator gen = make_generator(2);
  at::Tensor logits = at::randn({5, 3}, gen, at::kDouble);
  at::Tensor labels = at::tensor({0, 2, 1, 1, 0}, at::kLong);
  at::Tensor one_hot = at::one_hot(labels, 3).to(at::kDouble);
  EXPECT_NEAR(classification_loss(logits, one_hot).item<double>(),
              classification_loss(logits, labels).item<double>(), 1e-12);
}

TEST(ClassificationLoss, SoftLabelsFollowTheKlFormulaAndItsGradient) {
  // Hand formula: T^2/N sum_i sum_k p_ik (log p_ik - log softmax(z_i/T)_k).
  at::Tensor logits = at::tensor({1.0, -0.5, 2.0, 0.0, 0.3, -1.0}, at::kDouble).view({2, 3});
  at::Tensor p = at::tensor({0.7, 0.2, 0.1, 0.0, 0.5, 0.5}, at::kDouble).view({2, 3});
  const double T = 2.0;
  double expected = 0;
  for (int i = 0; i < 2; ++i) {
    double z[3], m = -1e9, s = 0;
    for (int k = 0; k < 3; ++k) m = std::max(m, z[k] = logits[i][k].item<double>() / T);
    for (int k = 0; k < 3; ++k) s += std::exp(z[k] - m);
    for (int k = 0; k < 3; ++k) {
      double pk = p[i][k].item<double>();
      if (pk > 0) expected += pk * (std::log(pk) - (z[k] - m - std::log(s)));
    }
  }
  expected *= T * T / 2;
  at::Tensor z = logits.clone().requires_grad_(true);
  at::Tensor loss = classification_loss(z, p, T);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
  at::Tensor grad = torch::autograd::grad({loss}, {z})[0];
  for (int64_t j = 0; j < 6; ++j) {
    at::Tensor plus = logits.clone(), minus = logits.clone();
    plus.view(-1)[j] += 1e-6;
    minus.view(-1)[j] -= 1e-6;
    double numeric = (classification_loss(plus, p, T).item<double>() -
                      classification_loss(minus, p, T).item<double>()) / 2e-6;
    EXPECT_NEAR(grad.view(-1)[j].item<double>(), numeric, 1e-6);
  }
}

// INFER's interpolated labels: the targets are logits blended with the batch's mix weight; the
// student learns softmax(blend / T), which is not the blend of the two softmaxes.
TEST(ClassificationLoss, LogitTargetsAreBlendedBeforeTheSoftmax) {
  at::Tensor z_a = at::tensor({2.0, -1.0, 0.5}, at::kDouble);
  at::Tensor z_b = at::tensor({-0.5, 1.5, 0.0}, at::kDouble);
  const double lambda = 0.3, T = 3.0;
  // Mixup's blend of the two rows (what the trainer's batch mix does to float targets).
  at::Tensor targets = at::stack({z_a, z_b});
  auto [mixed_images, mixed] =
      train::mixup_with(at::zeros({2, 1, 1, 1}, at::kDouble), targets, 3, lambda,
                        at::tensor({1, 0}, at::kLong));
  // Row 0 by hand: z = 0.3 z_a + 0.7 z_b = (0.25, 0.75, 0.15).
  const double hand_z[3] = {0.3 * 2.0 + 0.7 * -0.5, 0.3 * -1.0 + 0.7 * 1.5, 0.3 * 0.5};
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(mixed[0][k].item<double>(), hand_z[k], 1e-6);  // float rows
  at::Tensor student = at::tensor({0.1, 0.4, -0.2}, at::kDouble).view({1, 3});
  double p[3], q[3], sp = 0, sq = 0;
  for (int k = 0; k < 3; ++k) {
    sp += p[k] = std::exp(hand_z[k] / T);
    sq += q[k] = std::exp(student[0][k].item<double>() / T);
  }
  double expected = 0;
  for (int k = 0; k < 3; ++k) expected += p[k] / sp * std::log((p[k] / sp) / (q[k] / sq));
  expected *= T * T;
  at::Tensor blended_logits = at::tensor({hand_z[0], hand_z[1], hand_z[2]}, at::kDouble).view({1, 3});
  EXPECT_NEAR(classification_loss(student, blended_logits, T, true).item<double>(), expected, 1e-12);
  EXPECT_NEAR(classification_loss(student, mixed.narrow(0, 0, 1).to(at::kDouble), T, true)
                  .item<double>(), expected, 1e-6);
  // Blending probabilities instead gives another target (the two forms are not interchangeable).
  at::Tensor blended_probabilities =
      lambda * at::softmax(z_a / T, 0) + (1 - lambda) * at::softmax(z_b / T, 0);
  EXPECT_GT(std::abs(classification_loss(student, blended_probabilities.view({1, 3}), T)
                         .item<double>() - expected),
            1e-4);
}

TEST(Trainer, LearnsASeparableToyProblem) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(256, 1);
  auto [test_images, test_labels] = toy_data(200, 2);
  TrainOptions o = tiny_options();
  o.epochs = 8;
  Trainer trainer(*model, o, 7);
  trainer.set_test_set(test_images, test_labels);
  trainer.set_progress("test", false);
  TrainState state = trainer.init_state();
  EvalResult before = evaluate(*model, state.params, state.buffers, test_images, test_labels);
  auto metrics = trainer.fit(state, images, labels);
  EXPECT_GT(metrics.at("test_accuracy"), 0.9);
  EXPECT_LT(before.accuracy, 0.6);
  EXPECT_EQ(state.epoch, 8);
  EXPECT_EQ(state.step, 8 * 16);
}

TEST(Trainer, InterruptedAndResumedRunEqualsUninterruptedRun) {
  set_threads(2);
  install_interrupt_handler();
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(100, 3);  // 7 batches per epoch, the last one short
  TrainOptions o = tiny_options();
  o.optimizer.momentum = 0.9;
  AugmentOptions augment;  // DSA: the augmentation stream must resume too
  testing::TempDir dir;

  Trainer straight(*model, o, 11);
  straight.set_augment(make_augment(augment, 8));
  straight.set_progress("test", false);
  std::map<int64_t, std::map<std::string, double>> straight_epochs, resumed_epochs;
  straight.on_epoch_end([&](const TrainState& s) { straight_epochs[s.epoch] = s.last_metrics; });
  TrainState full = straight.init_state();
  straight.fit(full, images, labels);

  Trainer first(*model, o, 11);
  first.set_augment(make_augment(augment, 8));
  first.set_progress("test", false);
  first.set_checkpoint(dir.file("ckpt.pt"));
  // Ctrl-C during epoch 2: the trainer finishes the current step, checkpoints and stops.
  first.on_epoch_end([](const TrainState& s) {
    if (s.epoch == 2) std::raise(SIGINT);
  });
  TrainState partial = first.init_state();
  EXPECT_THROW(first.fit(partial, images, labels), Interrupted);
  clear_interrupt_request();

  Trainer second(*model, o, 11);
  second.set_augment(make_augment(augment, 8));
  second.set_progress("test", false);
  TrainState resumed = second.load_checkpoint(dir.file("ckpt.pt"));
  EXPECT_EQ(resumed.epoch, 2);
  EXPECT_EQ(resumed.batch, 1);  // stopped mid-epoch, after the first step of epoch 3
  EXPECT_EQ(resumed.epoch_sums.seen, 16);  // that step's 16 images are in the epoch's sums
  second.on_epoch_end([&](const TrainState& s) { resumed_epochs[s.epoch] = s.last_metrics; });
  second.fit(resumed, images, labels);
  EXPECT_EQ(resumed.step, full.step);
  // The interrupted epoch (3) reports all its batches, the one before the interrupt included.
  ASSERT_EQ(resumed_epochs.size(), 2u);
  for (int64_t epoch : {3, 4}) {
    for (const char* key : {"train_loss", "train_accuracy"}) {
      EXPECT_EQ(resumed_epochs[epoch].at(key), straight_epochs[epoch].at(key))
          << key << ", epoch " << epoch;
    }
  }
  EXPECT_TRUE(at::equal(resumed.params, full.params))
      << "max diff " << (resumed.params - full.params).abs().max().item<double>();
}

// Resuming a finished run trains nothing and reports the results the run ended with.
TEST(Trainer, ResumingAFinishedRunReturnsItsFinalMetrics) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(40, 3);
  auto [test_images, test_labels] = toy_data(20, 3);
  TrainOptions o = tiny_options();
  testing::TempDir dir;
  Trainer first(*model, o, 3);
  first.set_progress("test", false);
  first.set_test_set(test_images, test_labels);
  first.set_checkpoint(dir.file("ckpt.pt"));
  TrainState state = first.init_state();
  std::map<std::string, double> finished = first.fit(state, images, labels);
  ASSERT_TRUE(finished.count("test_accuracy"));

  Trainer again(*model, o, 3);
  again.set_progress("test", false);
  again.set_test_set(test_images, test_labels);
  TrainState resumed = again.load_checkpoint(dir.file("ckpt.pt"));
  std::map<std::string, double> reported = again.fit(resumed, images, labels);
  EXPECT_EQ(resumed.step, state.step);
  EXPECT_EQ(reported, finished);
}

TEST(Trainer, NonFiniteLossStopsWithTheStep) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(64, 4);
  TrainOptions o = tiny_options();
  o.optimizer.lr = 1e30;
  Trainer trainer(*model, o, 1);
  trainer.set_progress("test", false);
  TrainState state = trainer.init_state();
  try {
    trainer.fit(state, images, labels);
    FAIL() << "no error";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("at step"), std::string::npos) << e.what();
  }
}

TEST(Trainer, CheckpointOfAnotherModelIsRejected) {
  testing::TempDir dir;
  auto model = tiny_convnet();
  Trainer trainer(*model, tiny_options(), 1);
  trainer.save_checkpoint(dir.file("c.pt"), trainer.init_state());
  models::ModelOptions other;
  other.arch = "mlp";
  auto mlp = models::make_model(other, 1, 8, 4);
  Trainer wrong(*mlp, tiny_options(), 1);
  try {
    wrong.load_checkpoint(dir.file("c.pt"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds a 'convnet'"), std::string::npos) << e.what();
  }
}

// Cross-entropy plus a quadratic pull of its own aux parameters towards 3: a custom objective
// that owns trainable parameters, as KD regressors do.
class PullObjective : public StepObjective {
 public:
  explicit PullObjective(int64_t aux_size, bool use_aux = true)
      : aux_size_(aux_size), use_aux_(use_aux) {}
  at::Tensor init_aux(at::Generator& generator) const override {
    return aux_size_ > 0 ? at::randn({aux_size_}, generator) : at::Tensor();
  }
  at::Tensor loss(const StepContext& step) override {
    ++calls;
    EXPECT_EQ(step.indices.size(0), step.images.size(0));
    at::Tensor ce = classification_loss(step.logits, step.targets);
    if (!use_aux_ || !step.aux.defined()) return ce;
    return ce + 4.0 * (step.aux - 3.0).pow(2).sum();
  }
  std::map<std::string, double> take_epoch_metrics() override { return {{"calls", calls}}; }
  int64_t calls = 0;

 private:
  int64_t aux_size_;
  bool use_aux_;
};

// An objective sees the batch before augmentation (step.clean_images: the training images at the
// step's indices) and a forward pass with the step's parameters (step.forward: the step's logits
// again for the augmented batch).
class CleanBatchObjective : public StepObjective {
 public:
  explicit CleanBatchObjective(at::Tensor images) : images_(std::move(images)) {}
  at::Tensor loss(const StepContext& step) override {
    EXPECT_TRUE(at::equal(step.clean_images, images_.index_select(0, step.indices)));
    EXPECT_FALSE(at::equal(step.clean_images, step.images));  // DSA changed the batch
    EXPECT_TRUE(at::allclose(step.forward(step.images), step.logits, 1e-5, 1e-6));
    ++calls;
    return classification_loss(step.logits, step.targets);
  }
  int64_t calls = 0;

 private:
  at::Tensor images_;
};

TEST(Trainer, ObjectiveSeesTheBatchBeforeAugmentationAndCanRunTheModelAgain) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(40, 6);
  TrainOptions o = tiny_options();
  o.epochs = 1;
  Trainer trainer(*model, o, 3);
  AugmentOptions augment;
  trainer.set_augment(make_augment(augment, 8));
  trainer.set_progress("test", false);
  auto objective = std::make_shared<CleanBatchObjective>(images);
  trainer.set_objective(objective);
  TrainState state = trainer.init_state();
  trainer.fit(state, images, labels);
  EXPECT_EQ(objective->calls, 3);
}

TEST(Trainer, ObjectiveWithTheDefaultLossGivesTheDefaultRun) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(64, 5);
  Trainer plain(*model, tiny_options(), 3);
  plain.set_progress("test", false);
  TrainState a = plain.init_state();
  plain.fit(a, images, labels);

  Trainer hooked(*model, tiny_options(), 3);
  hooked.set_progress("test", false);
  auto objective = std::make_shared<PullObjective>(0);
  hooked.set_objective(objective);
  TrainState b = hooked.init_state();
  EXPECT_FALSE(b.aux.defined());
  auto metrics = hooked.fit(b, images, labels);
  EXPECT_EQ(objective->calls, b.step);
  EXPECT_EQ(metrics.at("calls"), b.step);  // the objective's metrics reach the results
  EXPECT_TRUE(at::equal(a.params, b.params));
}

TEST(Trainer, ObjectiveAuxParametersAreTrainedCheckpointedAndResumed) {
  install_interrupt_handler();
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(100, 6);
  TrainOptions o = tiny_options();
  o.optimizer.lr = 0.05;
  o.optimizer.momentum = 0.0;
  o.optimizer.weight_decay = 0.0;
  o.schedule.name = "constant";
  testing::TempDir dir;

  Trainer straight(*model, o, 4);
  straight.set_progress("test", false);
  straight.set_objective(std::make_shared<PullObjective>(5));
  TrainState full = straight.init_state();
  ASSERT_TRUE(full.aux.defined());
  const double before = (full.aux - 3.0).abs().max().item<double>();
  straight.fit(full, images, labels);
  // 28 plain SGD steps on 4 (a - 3)^2 with lr .05 shrink the distance to 3 by 0.6 each.
  EXPECT_LT((full.aux - 3.0).abs().max().item<double>(), 1e-4 * before);

  Trainer first(*model, o, 4);
  first.set_progress("test", false);
  first.set_objective(std::make_shared<PullObjective>(5));
  first.set_checkpoint(dir.file("ckpt.pt"));
  first.on_epoch_end([](const TrainState& s) {
    if (s.epoch == 1) std::raise(SIGINT);
  });
  TrainState partial = first.init_state();
  EXPECT_THROW(first.fit(partial, images, labels), Interrupted);
  clear_interrupt_request();

  Trainer second(*model, o, 4);
  second.set_progress("test", false);
  second.set_objective(std::make_shared<PullObjective>(5));
  TrainState resumed = second.load_checkpoint(dir.file("ckpt.pt"));
  second.fit(resumed, images, labels);
  EXPECT_TRUE(at::equal(resumed.params, full.params));
  EXPECT_TRUE(at::equal(resumed.aux, full.aux));

  Trainer other(*model, o, 4);
  other.set_objective(std::make_shared<PullObjective>(7));
  try {
    other.load_checkpoint(dir.file("ckpt.pt"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 5 auxiliary (loss) parameters, the configured "
                                         "objective has 7"),
              std::string::npos)
        << e.what();
  }
}

TEST(Trainer, UnusedAuxParametersGetZeroGradient) {
  auto model = tiny_convnet();
  auto [images, labels] = toy_data(32, 7);
  Trainer trainer(*model, tiny_options(), 2);
  trainer.set_progress("test", false);
  trainer.set_objective(std::make_shared<PullObjective>(4, /*use_aux=*/false));
  TrainState state = trainer.init_state();
  at::Tensor start = state.aux.clone();
  trainer.fit(state, images, labels);
  // Weight decay alone moves them (5e-4 x aux per step); no error from the unused input.
  EXPECT_LT((state.aux - start).abs().max().item<double>(), 0.01);
}

}  // namespace
}  // namespace distill::train
