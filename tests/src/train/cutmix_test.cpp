// CutMix: pasted boxes and the area-weighted label mix, on hand-made cases.
#include "src/train/cutmix.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

TEST(CutMix, FixedBoxPastesThePartnersPixelsAndMixesSoftLabelsByArea) {
  // Image i is filled with the value i + 1, so every pixel tells where it came from.
  at::Tensor images = at::arange(1, 4, at::kFloat).view({3, 1, 1, 1}).expand({3, 1, 4, 4}).clone();
  at::Tensor soft = at::tensor({0.7f, 0.2f, 0.1f, 0.1f, 0.1f, 0.8f, 0.3f, 0.3f, 0.4f}).view({3, 3});
  at::Tensor partner = at::tensor({1, 2, 0}, at::kLong);
  // A 2x2 box at (1, 1): a quarter of the 4x4 image comes from the partner.
  auto [x, y] = cutmix_box(images, soft, 3, {1, 1, 2, 2}, partner);
  for (int64_t i = 0; i < 3; ++i) {
    const float own = static_cast<float>(i + 1),
                other = static_cast<float>(partner[i].item<int64_t>() + 1);
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t c = 0; c < 4; ++c) {
        const bool inside = r >= 1 && r < 3 && c >= 1 && c < 3;
        EXPECT_EQ(x[i][0][r][c].item<float>(), inside ? other : own) << i << " " << r << " " << c;
      }
    }
  }
  // Hand-computed: 0.75 * own + 0.25 * partner's label.
  at::Tensor expected =
      at::tensor(
          {0.75f * 0.7f + 0.25f * 0.1f, 0.75f * 0.2f + 0.25f * 0.1f, 0.75f * 0.1f + 0.25f * 0.8f,
           0.75f * 0.1f + 0.25f * 0.3f, 0.75f * 0.1f + 0.25f * 0.3f, 0.75f * 0.8f + 0.25f * 0.4f,
           0.75f * 0.3f + 0.25f * 0.7f, 0.75f * 0.3f + 0.25f * 0.2f, 0.75f * 0.4f + 0.25f * 0.1f})
          .view({3, 3});
  EXPECT_TRUE(at::allclose(y, expected, 1e-6, 1e-7)) << y;
  // Class ids become one-hot rows first: image 0 (class 2) with partner 1 (class 0).
  auto [x2, hard] = cutmix_box(images, at::tensor({2, 0, 1}, at::kLong), 3, {0, 0, 4, 1}, partner);
  EXPECT_TRUE(at::allclose(hard[0], at::tensor({0.25f, 0.0f, 0.75f})));
}

TEST(CutMix, RandomBoxLabelsEqualTheFractionOfPixelsTakenFromThePartner) {
  at::Generator gen = make_generator(41);
  at::Tensor images =
      at::arange(1, 9, at::kFloat).view({8, 1, 1, 1}).expand({8, 1, 16, 16}).clone();
  at::Tensor labels = at::arange(8, at::kLong);  // image i is class i: label mass = pixel share
  CutMixOptions o;
  o.prob = 1.0;
  int64_t mixed_batches = 0;
  for (int trial = 0; trial < 20; ++trial) {
    auto [x, y] = cutmix(images, labels, 8, o, gen);
    for (int64_t i = 0; i < 8; ++i) {
      // The share of image i's pixels holding value k + 1 is its label's mass on class k.
      for (int64_t k = 0; k < 8; ++k) {
        const double share =
            x[i].eq(static_cast<float>(k + 1)).to(at::kDouble).mean().item<double>();
        EXPECT_NEAR(y[i][k].item<double>(), share, 1e-6) << trial << " " << i << " " << k;
      }
    }
    if (!at::equal(x, images)) ++mixed_batches;
  }
  EXPECT_GT(mixed_batches, 10);
  // prob 0: the batch as it was, labels as one-hot rows; the draws are the same either way.
  o.prob = 0.0;
  at::Generator a = make_generator(42), b = make_generator(42);
  auto [x0, y0] = cutmix(images, labels, 8, o, a);
  EXPECT_TRUE(at::equal(x0, images));
  EXPECT_TRUE(at::equal(y0, at::one_hot(labels, 8).to(at::kFloat)));
  o.prob = 1.0;
  cutmix(images, labels, 8, o, b);
  EXPECT_TRUE(at::equal(at::rand({2}, a), at::rand({2}, b)));
  o.beta = 0.0;
  EXPECT_EQ(testing::error_of([&] { cutmix(images, labels, 8, o, a); }),
            "cutmix.beta must be > 0, found 0.000000");
}

}  // namespace
}  // namespace distill::train
