#include "src/train/standard_augment.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "src/core/runtime.h"

namespace distill::train {
namespace {

// One bright pixel per image: wherever crop + flip put it, it must stay within `pad` pixels of
// its origin (or of its mirror image).
TEST(StandardAugment, MovesContentByAtMostThePadding) {
  StandardAugmentOptions o;
  o.pad = 2;
  StandardAugment augment(o);
  at::Tensor x = at::zeros({64, 1, 8, 8});
  x.select(2, 3).select(2, 5).fill_(1.0);  // pixel (3, 5) in every image
  at::Generator gen = make_generator(1);
  at::Tensor y = augment(x, gen);
  ASSERT_EQ(y.sizes(), x.sizes());
  int moved = 0;
  for (int64_t i = 0; i < 64; ++i) {
    at::Tensor where = at::nonzero(y[i][0]);
    if (where.size(0) == 0) continue;  // shifted out through the zero padding is impossible here
    int64_t r = where[0][0].item<int64_t>(), c = where[0][1].item<int64_t>();
    bool near_origin = std::abs(r - 3) <= 2 && std::abs(c - 5) <= 2;
    bool near_mirror = std::abs(r - 3) <= 2 && std::abs(c - 2) <= 2;
    EXPECT_TRUE(near_origin || near_mirror) << r << "," << c;
    moved += (r != 3 || c != 5);
  }
  EXPECT_GT(moved, 32);
}

TEST(StandardAugment, FlipOffAndNoPadIsIdentity) {
  StandardAugmentOptions o;
  o.pad = 0;
  o.flip = false;
  StandardAugment augment(o);
  at::Generator gen = make_generator(2);
  at::Tensor x = at::rand({5, 3, 6, 6}, gen);
  EXPECT_TRUE(at::equal(augment(x, gen), x));
}

TEST(StandardAugment, SameSeedSameOutput) {
  StandardAugment augment{StandardAugmentOptions{}};
  at::Tensor x = at::rand({8, 3, 32, 32});
  at::Generator a = make_generator(3), b = make_generator(3), c = make_generator(4);
  at::Tensor ya = augment(x, a), yb = augment(x, b), yc = augment(x, c);
  EXPECT_TRUE(at::equal(ya, yb));
  EXPECT_FALSE(at::equal(ya, yc));
}

}  // namespace
}  // namespace distill::train
