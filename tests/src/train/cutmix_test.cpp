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
            "key 'eval.cutmix.beta' must be > 0, found 0");
}

TEST(Mixup, BlendsImagesAndLabelsWithTheSameWeight) {
  at::Tensor images = at::arange(1, 4, at::kFloat).view({3, 1, 1, 1}).expand({3, 1, 2, 2}).clone();
  at::Tensor partner = at::tensor({2, 0, 1}, at::kLong);
  // Hand-computed: image 0 (value 1, class 1) with partner 2 (value 3, class 0) at lambda 0.7.
  auto [x, y] = mixup_with(images, at::tensor({1, 2, 0}, at::kLong), 3, 0.7, partner);
  EXPECT_TRUE(at::allclose(x[0], at::full({1, 2, 2}, 0.7f * 1 + 0.3f * 3)));
  EXPECT_TRUE(at::allclose(y[0], at::tensor({0.3f, 0.7f, 0.0f})));
  EXPECT_TRUE(at::allclose(y[1], at::tensor({0.0f, 0.3f, 0.7f})));

  // Random draws: every mixed image is lambda x_i + (1 - lambda) x_j, and its label carries
  // lambda on its own class and 1 - lambda on the partner's (images i hold the value i + 1).
  at::Generator gen = make_generator(43);
  at::Tensor many = at::arange(1, 9, at::kFloat).view({8, 1, 1, 1}).expand({8, 1, 2, 2}).clone();
  MixupOptions o;
  o.prob = 1.0;
  for (int trial = 0; trial < 10; ++trial) {
    auto [mx, my] = mixup(many, at::arange(8, at::kLong), 8, o, gen);
    for (int64_t i = 0; i < 8; ++i) {
      const double own = my[i][i].item<double>();
      int64_t other = i;
      for (int64_t k = 0; k < 8; ++k) {
        if (k != i && my[i][k].item<double>() > 0) other = k;
      }
      const double expected = other == i ? i + 1 : own * (i + 1) + (1 - own) * (other + 1);
      EXPECT_NEAR(mx[i][0][0][0].item<double>(), expected, 1e-5) << trial << " " << i;
      EXPECT_NEAR(my[i].sum().item<double>(), 1.0, 1e-6);
    }
  }
  // The weights follow Beta(alpha, alpha): mean 1/2, variance 1 / (4 (2 alpha + 1)).
  for (double alpha : {0.4, 4.0}) {
    o.alpha = alpha;
    at::Tensor two = at::arange(2, at::kFloat).view({2, 1, 1, 1});
    std::vector<double> weights;
    for (int draw = 0; draw < 2000; ++draw) {
      // With two images the partner is the other image or itself; only swaps show the weight.
      auto [bx, by] = mixup(two, at::arange(2, at::kLong), 2, o, gen);
      if (by[0][0].item<double>() < 1) weights.push_back(by[0][0].item<double>());
    }
    ASSERT_GT(weights.size(), 500u);
    const at::Tensor w = at::tensor(weights, at::kDouble);
    EXPECT_NEAR(w.mean().item<double>(), 0.5, 0.03) << alpha;
    EXPECT_NEAR(w.var().item<double>(), 1.0 / (4 * (2 * alpha + 1)), 0.15 / (4 * (2 * alpha + 1)))
        << alpha;
  }
  o.alpha = -1;
  EXPECT_EQ(testing::error_of([&] { mixup(many, at::arange(8, at::kLong), 8, o, gen); }),
            "key 'eval.mixup.alpha' must be > 0, found -1");
}

}  // namespace
}  // namespace distill::train
