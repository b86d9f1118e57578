// RandomResizedCrop per image: box statistics as torchvision draws them, crops that keep their
// pixels' origin, and the whole-image case.
#include "src/train/resized_crop.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "src/core/runtime.h"
#include "tests/support/test_support.h"

namespace distill::train {
namespace {

TEST(ResizedCrop, BoxesHaveTheAreaAndAspectDrawn) {
  at::Generator gen = make_generator(3);
  for (int trial = 0; trial < 500; ++trial) {
    const auto [top, left, h, w, flip] = draw_crop_box(64, 64, 0.25, true, gen);
    EXPECT_GE(top, 0);
    EXPECT_GE(left, 0);
    EXPECT_LE(top + h, 64);
    EXPECT_LE(left + w, 64);
    // Rounded to pixels: the area fraction within [0.25, 1] and the aspect within [3/4, 4/3]
    // up to the rounding of each side (and the clamp to the image).
    const double area = static_cast<double>(h * w) / (64 * 64);
    EXPECT_GE(area, 0.25 * (1 - 2.0 / 30)) << h << "x" << w;
    EXPECT_LE(area, 1.0);
    const double aspect = static_cast<double>(w) / static_cast<double>(h);
    EXPECT_GE(aspect, 0.75 * (1 - 2.0 / 30) * (1 - 2.0 / 30));
    EXPECT_LE(aspect, 4.0 / 3 / (1 - 2.0 / 30) / (1 - 2.0 / 30));
    EXPECT_TRUE(flip == 0 || flip == 1);
  }
}

TEST(ResizedCrop, EachImageGetsItsOwnCropOfItsOwnPixels) {
  // Pixel (r, c) of image i holds 1000 i + c: a crop resized back holds columns of its box only.
  const int64_t n = 6, size = 16;
  at::Tensor columns = at::arange(size, at::kFloat).view({1, 1, 1, size}).expand({n, 1, size, size});
  at::Tensor images = columns + 1000 * at::arange(n, at::kFloat).view({n, 1, 1, 1});
  ResizedCropOptions o;
  o.min_scale = 0.2;
  o.flip = false;
  ResizedCropAugment crop(o);
  at::Generator gen = make_generator(4);
  at::Tensor out = crop(images, gen);
  ASSERT_EQ(out.sizes(), images.sizes());
  std::set<double> widths;
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor local = out[i] - 1000 * i;
    EXPECT_GE(local.min().item<double>(), -1e-4) << "pixels from another image";
    EXPECT_LE(local.max().item<double>(), size - 1 + 1e-4);
    widths.insert(local.max().item<double>() - local.min().item<double>());
  }
  EXPECT_GT(widths.size(), 1u) << "every image got the same box";
  // min_scale 1 without flips: the images as they were.
  o.min_scale = 1.0;
  EXPECT_TRUE(ResizedCropAugment(o)(images, gen).equal(images));
  o.min_scale = 0.0;
  EXPECT_EQ(testing::error_of([&] { ResizedCropAugment bad(o); }),
            "key 'augment.resized_crop.min_scale' must be in (0, 1], found 0");
}

}  // namespace
}  // namespace distill::train
