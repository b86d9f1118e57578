// INFER (synth/infer.h): the budget, the compensator objective's gradient, the roll, the stored
// layout and labels, and resume.
#include "synth/infer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <csignal>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "synth/recover.h"
#include "tests/support/test_support.h"

namespace distill::synth {
namespace {

Member untrained_member(const std::string& norm, uint64_t seed, at::ScalarType dtype,
                        const at::Tensor& real) {
  Member m;
  m.options.model.norm = norm;
  m.options.model.width = 4;
  m.options.val_accuracy = 0.7;
  auto model = models::make_model(m.options.model, 1, 8, 3);
  at::Generator gen = make_generator(seed);
  at::Tensor params = model->init_params(gen).to(dtype), buffers = model->init_buffers().to(dtype);
  m.teacher = kd::teacher_from_state(std::move(model), params, buffers);
  m.batch_norm = m.teacher.buffers.numel() > 0;
  if (!m.batch_norm) {
    m.feature_stats = real_feature_statistics(*m.teacher.model, m.teacher.params,
                                              m.teacher.buffers, real);
  }
  return m;
}

std::vector<Member> two_members(const at::Tensor& real) {
  std::vector<Member> committee;
  committee.push_back(untrained_member("batchnorm", 1, at::kFloat, real));
  committee.push_back(untrained_member("instancenorm", 2, at::kFloat, real));
  return committee;
}

data::Dataset toy_data(int64_t n) {
  at::Generator gen = make_generator(21);
  data::Dataset train;
  train.images = at::rand({n, 1, 8, 8}, gen) * 4 - 2;  // within the [0, 1] pixel range below
  train.labels = at::arange(n, at::kLong).remainder(3);
  train.num_classes = 3;
  return train;
}

TEST(Infer, BudgetHoldsTheRealBatchesAndCompensatorsTheCodeStores) {
  // The INFER code's int(ipc / (1 + M / C)) with its committee of M = 4, and what it stores.
  EXPECT_EQ(infer_real_per_class(10, 10, 4), 7);    // CIFAR-10 IPC 10: 70 + 28 = 98 <= 100
  EXPECT_EQ(infer_real_per_class(50, 10, 4), 35);   // 350 + 140 = 490 <= 500
  EXPECT_EQ(infer_real_per_class(10, 100, 4), 9);   // 900 + 36 = 936 <= 1000
  EXPECT_EQ(infer_real_per_class(50, 100, 4), 48);  // 4800 + 192 = 4992 <= 5000
  EXPECT_EQ(infer_real_per_class(7, 10, 4), 5);     // 10 * 7 / 14 exactly: 5 * 14 = 70
  for (int64_t ipc : {1, 2, 10, 50}) {
    for (int64_t m : {1, 3, 4}) {
      const int64_t k = infer_real_per_class(ipc, 10, m);
      EXPECT_LE(k * (10 + m), ipc * 10);
      EXPECT_GT((k + 1) * (10 + m), ipc * 10) << "a larger k would have fit";
    }
  }
  data::Dataset train = toy_data(12);  // 4 images per class
  InferOptions o;
  o.ipc = 1;
  EXPECT_EQ(testing::error_of([&] { check_infer_options(o, 2, train); }),
            "synth.infer.ipc = 1 holds no real batch: 3 real images and 2 compensators per batch "
            "need ipc >= 2");
  o.ipc = 2;
  o.real_per_class = 2;
  EXPECT_EQ(testing::error_of([&] { check_infer_options(o, 2, train); }),
            "synth.infer.real_per_class = 2 stores 10 images (2 x (3 real + 2 compensators)), over "
            "the budget synth.infer.ipc x classes = 6; use at most 1");
  o.ipc = 10;
  o.real_per_class = 5;
  EXPECT_EQ(testing::error_of([&] { check_infer_options(o, 2, train); }),
            "synth infer: 5 real images per class, but class 0 has only 4 training images");
  o.real_per_class = 0;
  o.lr = 0;
  EXPECT_NE(testing::error_of([&] { check_infer_options(o, 2, train); }).find("synth.infer.lr"),
            std::string::npos);
}

TEST(Infer, RollMovesEveryPixelByTheShiftAndWrapsAround) {
  at::Tensor x = at::arange(2 * 1 * 4 * 5, at::kFloat).view({2, 1, 4, 5});
  at::Tensor rolled = jitter_roll(x, 1, -2);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j)
        EXPECT_EQ(rolled[n][0][i][j].item<float>(), x[n][0][(i + 3) % 4][(j + 2) % 5].item<float>());
  EXPECT_TRUE(jitter_roll(x, 0, 0).equal(x));
}

// The compensator's gradient: central finite differences in double, and the chain rule of the
// broadcast (d/du = sum over the batch of d/dx_i).
TEST(Infer, CompensatorGradientMatchesFiniteDifferencesAndSumsTheImageGradients) {
  at::Generator gen = make_generator(22);
  at::Tensor real = at::randn({3, 1, 8, 8}, gen, at::kDouble);
  at::Tensor labels = at::arange(3, at::kLong);
  InferOptions o;
  o.statistics_weight = 0.5;
  o.first_multiplier = 3.0;
  const std::array<int64_t, 2> shift = {2, -1};
  for (const char* norm : {"batchnorm", "instancenorm"}) {
    SCOPED_TRACE(norm);
    Member m = untrained_member(norm, 5, at::kDouble, real);
    at::Tensor u = (at::randn({1, 1, 8, 8}, gen, at::kDouble) * 0.3).requires_grad_(true);
    at::Tensor grad = torch::autograd::grad(
        {compensator_loss(m, real, u, labels, shift, o)}, {u})[0];
    at::NoGradGuard no_grad;
    const double h = 1e-5;
    for (int64_t index : {0, 9, 27, 40, 63}) {
      at::Tensor plus = u.detach().clone(), minus = u.detach().clone();
      plus.view(-1)[index] += h;
      minus.view(-1)[index] -= h;
      const double numeric = (compensator_loss(m, real, plus, labels, shift, o).item<double>() -
                              compensator_loss(m, real, minus, labels, shift, o).item<double>()) /
                             (2 * h);
      EXPECT_NEAR(grad.view(-1)[index].item<double>(), numeric, 1e-6 * (1 + std::abs(numeric)))
          << "pixel " << index;
    }
    at::NoGradGuard off;
    {
      at::AutoGradMode on(true);
      at::Tensor images = (real + u.detach()).requires_grad_(true);
      at::Tensor zero = at::zeros_like(u.detach());
      at::Tensor per_image = torch::autograd::grad(
          {compensator_loss(m, images, zero, labels, shift, o)}, {images})[0];
      EXPECT_TRUE(at::allclose(per_image.sum(0, true), grad, 1e-10, 1e-12));
    }
  }
}

TEST(Infer, SetHoldsTheRealBatchesTheirCompensatedCopiesAndTheCommitteeLogits) {
  data::Dataset train = toy_data(30);
  data::Normalization norm{at::full({1}, 0.5), at::full({1}, 0.25), nullptr};  // pixels -> [-2, 2]
  std::vector<Member> committee = two_members(train.images);
  InferOptions o;
  o.ipc = 4;  // k = floor(4 * 3 / 5) = 2 real batches, 2 compensators each
  o.iterations = 40;
  o.lr = 0.05;
  o.jitter = 0;
  testing::TempDir dir;
  eval::SyntheticSet set =
      infer_compensate(o, committee, train, norm, "toy", 3, dir.file("run"), false, false, at::kCPU);
  const int64_t k = 2, C = 3, M = 2;
  ASSERT_EQ(set.images.size(0), (M + 1) * k * C);
  EXPECT_TRUE(set.labels_are_logits);
  EXPECT_EQ(*set.label_temperature, o.T);
  EXPECT_TRUE(set.classes.equal(at::arange((M + 1) * k * C, at::kLong).remainder(C)));
  // The real batches are training images of their class, distinct.
  for (int64_t i = 0; i < k * C; ++i) {
    at::Tensor distance = (train.images - set.images[i]).flatten(1).abs().amax(1);
    const int64_t source = distance.argmin().item<int64_t>();
    EXPECT_EQ(distance[source].item<float>(), 0.0f) << "image " << i << " is not a real image";
    EXPECT_EQ(train.labels[source].item<int64_t>(), i % C);
  }
  // The stored form: compensator j = m * k + b; image (k + j) * C + c = clamp(real_b,c + u_j).
  io::TensorDict stored = io::load_dict(dir.file("run/compensators.pt"));
  at::Tensor u = io::get_tensor(stored, "compensators", "compensators.pt");
  at::Tensor real = io::get_tensor(stored, "real_images", "compensators.pt");
  ASSERT_EQ(u.size(0), k * M);
  EXPECT_TRUE(real.equal(set.images.narrow(0, 0, k * C)));
  EXPECT_TRUE(io::get_tensor(stored, "compensator_member", "c").equal(at::tensor({0, 0, 1, 1}, at::kLong)));
  EXPECT_TRUE(io::get_tensor(stored, "compensator_batch", "c").equal(at::tensor({0, 1, 0, 1}, at::kLong)));
  for (int64_t j = 0; j < k * M; ++j) {
    const int64_t b = j % k;
    at::Tensor expected = at::clamp(real.narrow(0, b * C, C) + u.narrow(0, j, 1), -2.0, 2.0);
    EXPECT_TRUE(at::allclose(set.images.narrow(0, (k + j) * C, C), expected, 1e-6, 1e-6)) << j;
    EXPECT_GT(u[j].abs().max().item<double>(), 0.0) << "compensator " << j << " never moved";
  }
  // Each compensator lowered its own member's objective on its batch (no jitter here).
  const at::Tensor y = at::arange(C, at::kLong);
  for (int64_t j = 0; j < k * M; ++j) {
    const Member& member = committee[j / k];
    at::Tensor x = real.narrow(0, (j % k) * C, C);
    const double before = compensator_loss(member, x, at::zeros({1, 1, 8, 8}), y, {0, 0}, o).item<double>();
    const double after = compensator_loss(member, x, u.narrow(0, j, 1), y, {0, 0}, o).item<double>();
    EXPECT_LT(after, before) << "compensator " << j;
  }
  // The labels are the members' plain mean of logits on the stored images.
  {
    at::NoGradGuard no_grad;
    at::Tensor mean = (committee[0].teacher.forward(set.images) +
                       committee[1].teacher.forward(set.images)) / 2;
    EXPECT_TRUE(at::allclose(set.labels, mean, 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(committee_mean_logits(committee, set.images, 4), mean, 1e-5, 1e-6));
  }
  eval::SyntheticSet saved = eval::load_synthetic_set(dir.file("run/syn.pt"));
  EXPECT_TRUE(saved.labels_are_logits);
  EXPECT_TRUE(saved.images.equal(set.images));
  // Hard labels on request.
  o.labels = "hard";
  eval::SyntheticSet hard =
      infer_compensate(o, committee, train, norm, "toy", 3, dir.file("hard"), false, false, at::kCPU);
  EXPECT_FALSE(hard.soft_labels());
  EXPECT_TRUE(hard.images.equal(set.images));
  EXPECT_TRUE(hard.labels.equal(set.classes));
}

TEST(Infer, InterruptedAndResumedRunEqualsUninterruptedRun) {
  install_interrupt_handler();
  data::Dataset train = toy_data(30);
  data::Normalization norm{at::full({1}, 0.5), at::full({1}, 0.25), nullptr};
  std::vector<Member> committee = two_members(train.images);
  InferOptions o;
  o.ipc = 4;
  o.iterations = 3;
  o.checkpoint_every = 0;
  testing::TempDir dir;
  eval::SyntheticSet straight =
      infer_compensate(o, committee, train, norm, "toy", 7, dir.file("a"), false, false, at::kCPU);
  std::raise(SIGINT);  // stops after the first step, inside the first compensator, with Adam state
  EXPECT_THROW(infer_compensate(o, committee, train, norm, "toy", 7, dir.file("b"), false, false,
                                at::kCPU),
               Interrupted);
  clear_interrupt_request();
  eval::SyntheticSet resumed =
      infer_compensate(o, committee, train, norm, "toy", 7, dir.file("b"), true, false, at::kCPU);
  EXPECT_TRUE(resumed.images.equal(straight.images))
      << (resumed.images - straight.images).abs().max().item<double>();
  EXPECT_TRUE(resumed.labels.equal(straight.labels));
  // A checkpoint of another budget is refused, naming the shapes.
  o.ipc = 9;
  EXPECT_NE(testing::error_of([&] {
              infer_compensate(o, committee, train, norm, "toy", 7, dir.file("b"), true, false,
                               at::kCPU);
            }).find("resume with the settings the run was started with"),
            std::string::npos);
}

}  // namespace
}  // namespace distill::synth
