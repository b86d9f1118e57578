#include "src/train/optimizer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

struct Case {
  std::string name;
  OptimizerOptions options;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  OptimizerOptions sgd;
  sgd.name = "sgd";
  sgd.momentum = 0;
  sgd.weight_decay = 0;
  out.push_back({"sgd_plain", sgd});
  sgd.momentum = 0.9;
  sgd.weight_decay = 5e-4;
  out.push_back({"sgd_momentum_wd", sgd});
  sgd.nesterov = true;
  out.push_back({"sgd_nesterov", sgd});
  sgd.nesterov = false;
  sgd.clip_grad_norm = 0.5;
  out.push_back({"sgd_clip", sgd});
  OptimizerOptions adam;
  adam.name = "adam";
  adam.weight_decay = 1e-2;
  out.push_back({"adam_wd", adam});
  adam.name = "adamw";
  adam.beta1 = 0.8;
  adam.beta2 = 0.99;
  out.push_back({"adamw", adam});
  return out;
}

// Same parameters, same gradient sequence and per-step learning rates through our optimizers and
// through torch.optim (tests/python/optimizer_reference.py); the trajectories must agree.
TEST(Optimizer, MatchesTorchOptimOnTheSameGradients) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  at::Generator gen = make_generator(5);
  const int64_t steps = 6, size = 50;
  at::Tensor p0 = at::randn({size}, gen, at::kDouble);
  at::Tensor grads = at::randn({steps, size}, gen, at::kDouble);
  at::Tensor lrs = at::tensor({0.1, 0.1, 0.05, 0.05, 0.01, 0.2}, at::kDouble);
  io::TensorDict inputs = io::make_dict();
  inputs.insert("p0", p0);
  inputs.insert("grads", grads);
  inputs.insert("lrs", lrs);
  std::vector<std::string> names;
  for (const auto& c : cases()) {
    io::TensorDict options = io::make_dict();
    options.insert("name", c.options.name);
    options.insert("momentum", c.options.momentum);
    options.insert("nesterov", c.options.nesterov);
    options.insert("weight_decay", c.options.weight_decay);
    options.insert("beta1", c.options.beta1);
    options.insert("beta2", c.options.beta2);
    options.insert("eps", c.options.eps);
    options.insert("clip_grad_norm", c.options.clip_grad_norm);
    inputs.insert("case." + c.name, options);
    names.push_back(c.name);
  }
  io::save_dict(dir.file("in.pt"), inputs);
  testing::run_python_script("optimizer_reference.py", {dir.file("in.pt"), dir.file("out.pt")});
  io::TensorDict expected = io::load_dict(dir.file("out.pt"));
  for (const auto& c : cases()) {
    auto optimizer = Optimizer::make(c.options);
    at::Tensor p = p0.clone();
    for (int64_t s = 0; s < steps; ++s) {
      optimizer->step(p, grads[s], lrs[s].item<double>());
    }
    at::Tensor reference = io::get_tensor(expected, c.name, "out.pt");
    EXPECT_TRUE(at::allclose(p, reference, 1e-10, 1e-12))
        << c.name << ": max diff " << (p - reference).abs().max().item<double>();
  }
}

TEST(Optimizer, StateRoundTripContinuesIdentically) {
  OptimizerOptions adam;
  adam.name = "adam";
  at::Generator gen = make_generator(1);
  at::Tensor g1 = at::randn({8}, gen), g2 = at::randn({8}, gen);
  auto a = Optimizer::make(adam);
  at::Tensor pa = at::zeros({8});
  a->step(pa, g1, 0.1);
  io::TensorDict state = io::make_dict();
  a->save_state(state, "opt.");
  auto b = Optimizer::make(adam);
  b->load_state(state, "opt.");
  at::Tensor pb = pa.clone();
  a->step(pa, g2, 0.1);
  b->step(pb, g2, 0.1);
  EXPECT_TRUE(at::equal(pa, pb));
}

TEST(Optimizer, UnknownNameIsAnError) {
  OptimizerOptions o;
  o.name = "rmsprop";
  EXPECT_THROW(Optimizer::make(o), Error);
}

TEST(Schedule, MultistepDecaysAtWholeEpochMilestones) {
  ScheduleOptions s;  // x0.1 at half, the DC protocol
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 0.0, 300), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 149.9, 300), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 150.0, 300), 0.1);
  s.milestones = {0.5, 0.75};
  EXPECT_NEAR(lr_multiplier(s, 299.0, 300), 0.01, 1e-15);
}

TEST(Schedule, StepDecaysEveryStepSizeEpochs) {
  ScheduleOptions s;
  s.name = "step";
  s.step_size = 30;
  s.gamma = 0.5;
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 29.9, 100), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 30.0, 100), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 95.0, 100), 0.125);
}

TEST(Schedule, CosineAndWarmupFollowTheirClosedForms) {
  ScheduleOptions s;
  s.name = "cosine";
  EXPECT_DOUBLE_EQ(lr_multiplier(s, 0.0, 100), 1.0);
  EXPECT_NEAR(lr_multiplier(s, 50.0, 100), 0.5, 1e-12);
  EXPECT_NEAR(lr_multiplier(s, 25.0, 100), 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(lr_multiplier(s, 100.0, 100), 0.0, 1e-12);
  s.warmup = 0.1;  // 10 epochs of linear warm-up, then cosine over the remaining 90
  EXPECT_NEAR(lr_multiplier(s, 5.0, 100), 0.5, 1e-12);
  EXPECT_NEAR(lr_multiplier(s, 55.0, 100), 0.5, 1e-12);
}

TEST(Ema, MovesTowardsTheParameters) {
  at::Tensor ema = at::zeros({3});
  ema_update(ema, at::ones({3}), 0.9);
  EXPECT_TRUE(at::allclose(ema, at::full({3}, 0.1)));
}

}  // namespace
}  // namespace distill::train
