#include "src/train/precision.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/models/model.h"
#include "src/train/autocast_compat.h"
#include "src/train/trainer.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

TEST(LossScaler, AnOverflowSkipsTheStepAndHalvesTheScale) {
  LossScaleOptions o;
  o.initial = 1024;
  o.growth_interval = 3;
  LossScaler scaler(o);
  EXPECT_TRUE(scaler.update(true));
  EXPECT_EQ(scaler.good_steps(), 1);
  EXPECT_FALSE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.good_steps(), 0);  // the count restarts after an overflow
}

TEST(LossScaler, TheScaleDoublesAfterGrowthIntervalGoodStepsInARow) {
  LossScaleOptions o;
  o.initial = 8;
  o.growth_interval = 3;
  LossScaler scaler(o);
  scaler.update(true);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 8);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 16);
  EXPECT_EQ(scaler.good_steps(), 0);
  scaler.update(true);
  scaler.update(false);  // interrupts the run of good steps
  scaler.update(true);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 8);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 16);
}

TEST(LossScaler, NonFiniteAtEveryScaleIsADivergedRun) {
  LossScaleOptions o;
  o.initial = 1;
  LossScaler scaler(o);
  for (int i = 0; i < 24; ++i) EXPECT_FALSE(scaler.update(false));
  EXPECT_THROW(scaler.update(false), RuntimeFailure);
}

TEST(LossScaler, BadSettingsNameTheirKey) {
  LossScaleOptions o;
  o.initial = 0;
  try {
    LossScaler scaler(o);
    FAIL() << "accepted a zero loss scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.loss_scale.initial"), std::string::npos);
  }
  o.initial = 2;
  o.growth_interval = 0;
  try {
    LossScaler scaler(o);
    FAIL() << "accepted a growth interval of 0";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.loss_scale.growth_interval"), std::string::npos);
  }
}

TEST(Precision, AllFiniteSeesInfAndNanAnywhere) {
  at::Tensor ok = at::ones({3});
  EXPECT_TRUE(all_finite({ok, at::Tensor(), at::zeros({0})}));
  at::Tensor inf = at::ones({4});
  inf[2] = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(all_finite({ok, inf}));
  at::Tensor nan = at::ones({2, 2});
  nan[1][0] = std::nan("");
  EXPECT_FALSE(all_finite({nan, ok}));
}

TEST(Precision, ComputeDtypeOfEachSetting) {
  const c10::Device cpu(c10::kCPU);
  EXPECT_EQ(compute_dtype("fp32", cpu, "k"), at::kFloat);
  EXPECT_EQ(compute_dtype("bf16", cpu, "k"), at::kBFloat16);
  try {
    compute_dtype("fp8", cpu, "train.precision");
    FAIL() << "fp8 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision: expected fp32, bf16 or fp16, found 'fp8'"),
              std::string::npos)
        << e.what();
  }
  if (!DISTILL_CPU_AUTOCAST_HAS_FP16) {
    try {
      compute_dtype("fp16", cpu, "train.precision");
      FAIL() << "fp16 on the CPU of LibTorch " TORCH_VERSION " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("train.precision"), std::string::npos);
    }
  } else {
    EXPECT_EQ(compute_dtype("fp16", cpu, "k"), at::kHalf);
  }
}

// bf16 autocast against fp32 on the same weights and batch: the logits and the parameter
// gradient agree to bf16's precision (8 bits of mantissa: relative rounding 2^-9 per operation,
// accumulated over the layers). Tolerances: logits within 5 % (relative L2); the whole gradient
// within `grad_tolerance` (relative L2) and at cosine above `min_cosine`.
void expect_bf16_close_to_fp32(const std::string& arch, int64_t channels, int64_t size,
                               double grad_tolerance, double min_cosine) {
  models::ModelOptions o;
  o.arch = arch;
  auto model = models::make_model(o, channels, size, 10);
  at::Generator gen = make_generator(11);
  at::Tensor params = model->init_params(gen);
  at::Tensor x = at::randn({8, channels, size, size}, gen);
  at::Tensor y = at::randint(10, {8}, gen);
  auto run = [&](c10::ScalarType dtype) {
    at::Tensor p = params.detach().clone().requires_grad_(true);
    models::ForwardArgs args;
    args.train = true;
    args.buffers = model->init_buffers();
    at::Tensor logits;
    {
      AutocastGuard autocast(c10::kCPU, dtype);
      logits = model->forward(x, p, args);
    }
    EXPECT_EQ(logits.scalar_type(), dtype) << arch << ": autocast did not reach the last layer";
    logits = logits.to(at::kFloat);
    at::Tensor loss = at::cross_entropy_loss(logits, y);
    at::Tensor grad = torch::autograd::grad({loss}, {p})[0];
    return std::make_pair(logits.detach(), grad);
  };
  auto [logits32, grad32] = run(at::kFloat);
  auto [logits16, grad16] = run(at::kBFloat16);
  EXPECT_EQ(grad16.scalar_type(), at::kFloat);  // gradients reach the fp32 master weights
  auto relative = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).norm().item<double>() / b.norm().item<double>();
  };
  EXPECT_LT(relative(logits16, logits32), 0.05) << arch << " logits";
  EXPECT_LT(relative(grad16, grad32), grad_tolerance) << arch << " gradient";
  const double cosine =
      (grad16 * grad32).sum().item<double>() / (grad16.norm() * grad32.norm()).item<double>();
  EXPECT_GT(cosine, min_cosine) << arch;
}

TEST(Precision, Bf16ConvNetForwardAndBackwardMatchFp32) {
  expect_bf16_close_to_fp32("convnet", 1, 28, 0.05, 0.99);
}

// A deep network's gradient at initialisation is far more sensitive to rounding: PyTorch's own
// bf16 autocast on torchvision's ResNet-18 (3x3 stem, batch norm, a batch of 8 CIFAR-sized
// images) gives a relative gradient error of 0.31 and cosine 0.95 against fp32 (python3-torch
// 1.13 on this machine kind), with logits within 1.4 %. The bounds here allow that, not more.
TEST(Precision, Bf16ResNet18ForwardAndBackwardMatchFp32) {
  expect_bf16_close_to_fp32("resnet18", 3, 32, 0.5, 0.9);
  expect_bf16_close_to_fp32("resnet18bn", 3, 32, 0.5, 0.9);
}

TEST(Precision, AutocastGuardRestoresTheOuterState) {
  at::Tensor a = at::randn({4, 4});
  {
    AutocastGuard outer(c10::kCPU, at::kBFloat16);
    EXPECT_EQ(at::mm(a, a).scalar_type(), at::kBFloat16);
    {
      AutocastGuard off(c10::kCPU, at::kFloat);  // fp32: changes nothing
      EXPECT_EQ(at::mm(a, a).scalar_type(), at::kBFloat16);
    }
    {
      // A nested active region: on its exit the outer one is still on (nesting counted, cache
      // kept for the outer region), with the outer dtype.
      AutocastGuard inner(c10::kCPU, at::kBFloat16);
      EXPECT_EQ(at::mm(a, a).scalar_type(), at::kBFloat16);
    }
    EXPECT_EQ(at::mm(a, a).scalar_type(), at::kBFloat16);
  }
  EXPECT_EQ(at::mm(a, a).scalar_type(), at::kFloat);
}

// A one-block ConvNet of width 8 on 8x8 one-channel images, 4 classes.
std::unique_ptr<models::Model> tiny_convnet() {
  models::ModelOptions o;
  o.width = 8;
  o.depth = 1;
  return models::make_model(o, 1, 8, 4);
}

// A trainer run in bf16 learns like fp32 on a separable problem, and records no loss scale. The
// weights it ends with differ from an fp32 run's (so the forward pass did run in bf16) by less
// than the training moved them.
TEST(Precision, Bf16TrainingLearnsAToyProblem) {
  auto model = tiny_convnet();
  at::Generator gen = make_generator(5);
  at::Tensor labels = at::randint(4, {64}, gen);
  at::Tensor images = at::randn({64, 1, 8, 8}, gen) * 0.3;
  for (int64_t i = 0; i < 64; ++i) {
    const int64_t k = labels[i].item<int64_t>();
    images[i].narrow(1, (k / 2) * 4, 4).narrow(2, (k % 2) * 4, 4).add_(1.0);
  }
  TrainOptions o;
  o.epochs = 6;
  o.batch_size = 16;
  o.optimizer.lr = 0.05;
  o.precision = "bf16";
  o.channels_last = true;
  Trainer trainer(*model, o, 3);
  trainer.set_progress("bf16", false);
  trainer.set_test_set(images, labels);
  TrainState state = trainer.init_state();
  const at::Tensor start = state.params.clone();
  auto metrics = trainer.fit(state, images, labels);
  EXPECT_GT(metrics.at("test_accuracy"), 0.9);
  EXPECT_EQ(state.params.scalar_type(), at::kFloat);
  EXPECT_EQ(state.loss_scale, 0.0);
  o.precision = "fp32";
  Trainer fp32(*model, o, 3);
  fp32.set_progress("fp32", false);
  TrainState reference = fp32.init_state();
  fp32.fit(reference, images, labels);
  EXPECT_FALSE(at::equal(state.params, reference.params)) << "bf16 did not change the arithmetic";
  EXPECT_LT((state.params - reference.params).norm().item<double>(),
            (reference.params - start).norm().item<double>());
}

// fp16 training on `images`/`labels` (2 per step) from a given loss scale, growth off.
struct Fp16Run {
  at::Tensor before, after;
  std::map<std::string, double> metrics;
  TrainState state;
};
Fp16Run fp16_run(const at::Tensor& images, const at::Tensor& labels, double initial_scale) {
  auto model = tiny_convnet();
  TrainOptions o;
  o.epochs = 1;
  o.batch_size = 2;
  o.optimizer.lr = 0.05;
  o.precision = "fp16";
  o.loss_scale.initial = initial_scale;
  o.loss_scale.growth_interval = 1000;
  Trainer trainer(*model, o, 3);
  trainer.set_progress("fp16", false);
  Fp16Run run;
  run.state = trainer.init_state();
  run.before = run.state.params.clone();
  run.metrics = trainer.fit(run.state, images, labels);
  run.after = run.state.params;
  return run;
}

// fp16 with a loss scale far too large: while the scaled gradients overflow (fp16's largest
// value is 65504), steps are skipped, the weights do not move and the scale halves; once it fits,
// the steps apply.
TEST(Precision, Fp16OverflowSkipsStepsUntilTheScaleFits) {
  if (!DISTILL_CPU_AUTOCAST_HAS_FP16) GTEST_SKIP() << "fp16 autocast on the CPU needs LibTorch >= 2.4";
  at::Generator gen = make_generator(6);
  at::Tensor labels = at::randint(4, {2}, gen);
  at::Tensor images = at::randn({2, 1, 8, 8}, gen);
  // One step at a scale no gradient survives: skipped, weights bit-for-bit unchanged.
  Fp16Run hopeless = fp16_run(images, labels, std::ldexp(1.0, 100));
  EXPECT_EQ(hopeless.metrics.at("skipped_steps"), 1);
  EXPECT_EQ(hopeless.metrics.at("loss_scale"), std::ldexp(1.0, 99));
  EXPECT_TRUE(at::equal(hopeless.before, hopeless.after));
  // The same batch 40 times from 2^40: the first steps skip until the scale fits, the rest apply.
  images = images.repeat({40, 1, 1, 1});
  labels = labels.repeat({40});
  Fp16Run run = fp16_run(images, labels, std::ldexp(1.0, 40));
  const double skipped = run.metrics.at("skipped_steps");
  EXPECT_GE(skipped, 10);  // 2^40 x these gradients is far above 65504
  EXPECT_LT(skipped, 40);
  EXPECT_EQ(run.metrics.at("loss_scale"), std::ldexp(1.0, 40 - static_cast<int>(skipped)));
  EXPECT_EQ(run.state.loss_scale, run.metrics.at("loss_scale"));
  EXPECT_TRUE(all_finite({run.after}));
  EXPECT_FALSE(at::equal(run.before, run.after));  // the steps after the skips did apply
}

// The loss scale is part of the checkpoint: an fp16 run interrupted and resumed continues with
// the scale (and good-step count) it had, so it ends where the straight run ends.
TEST(Precision, Fp16LossScaleSurvivesACheckpoint) {
  if (!DISTILL_CPU_AUTOCAST_HAS_FP16) GTEST_SKIP() << "fp16 autocast on the CPU needs LibTorch >= 2.4";
  at::Generator gen = make_generator(8);
  at::Tensor labels = at::randint(4, {24}, gen);
  at::Tensor images = at::randn({24, 1, 8, 8}, gen);
  auto model = tiny_convnet();
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 4;
  o.optimizer.lr = 0.05;
  o.precision = "fp16";
  o.loss_scale.initial = std::ldexp(1.0, 24);
  o.loss_scale.growth_interval = 3;  // grows within the run, so the good-step count matters too
  o.schedule.name = "constant";      // the 1-epoch first half then has the straight run's lr
  Trainer straight(*model, o, 4);
  straight.set_progress("straight", false);
  TrainState full = straight.init_state();
  straight.fit(full, images, labels);
  testing::TempDir dir;
  o.epochs = 1;
  Trainer first(*model, o, 4);
  first.set_progress("first", false);
  TrainState half = first.init_state();
  first.fit(half, images, labels);
  first.save_checkpoint(dir.file("ckpt.pt"), half);
  o.epochs = 2;
  Trainer second(*model, o, 4);
  second.set_progress("second", false);
  TrainState resumed = second.load_checkpoint(dir.file("ckpt.pt"));
  EXPECT_EQ(resumed.loss_scale, half.loss_scale);
  EXPECT_EQ(resumed.loss_scale_good, half.loss_scale_good);
  second.fit(resumed, images, labels);
  EXPECT_EQ(resumed.loss_scale, full.loss_scale);
  EXPECT_TRUE(at::equal(resumed.params, full.params));
}

}  // namespace
}  // namespace distill::train
