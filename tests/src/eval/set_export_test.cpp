// Image-folder export of a set: read back by the project's own image-folder reader, the same
// images within 8-bit quantisation and the same labels (the image's own class for soft labels).
#include "src/eval/set_export.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stb_image.h>

#include <filesystem>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/readers.h"
#include "src/data/zca.h"
#include "src/io/image_grid.h"
#include "tests/support/test_support.h"

namespace distill::eval {
namespace {

// A set of `classes` x `ipc` images (C,6,6) in a normalized space, labels in a shuffled order.
SyntheticSet make_set(int64_t classes, int64_t ipc, int64_t channels, at::Generator& gen) {
  SyntheticSet set;
  set.num_classes = classes;
  set.mean = at::linspace(0.3, 0.5, channels);
  set.std = at::linspace(0.2, 0.3, channels);
  at::Tensor pixels = at::rand({classes * ipc, channels, 6, 6}, gen);
  set.images = (pixels - set.mean.view({1, -1, 1, 1})) / set.std.view({1, -1, 1, 1});
  set.labels = at::arange(classes * ipc, at::kLong)
                   .remainder(classes)
                   .index_select(0, at::randperm(classes * ipc, gen, at::kLong));
  return set;
}

// What the reader should give back: images in [0, 1], class-major, in set order within a class.
std::pair<at::Tensor, at::Tensor> expected_order(const SyntheticSet& set) {
  at::Tensor ids = set.class_ids();
  std::vector<at::Tensor> index;
  for (int64_t c = 0; c < set.num_classes; ++c) index.push_back(ids.eq(c).nonzero().squeeze(1));
  at::Tensor order = at::cat(index);
  at::Tensor pixels = io::denormalize(set.images, set.mean, set.std).clamp(0, 1);
  return {pixels.index_select(0, order), ids.index_select(0, order)};
}

TEST(SetExport, ImageFolderReadsBackTheSameImagesWithin8BitsAndTheSameLabels) {
  at::Generator gen = make_generator(31);
  // 12 classes: folder names must sort as numbers ("00".."11"), not as text ("10" < "2").
  for (int64_t channels : {1, 3}) {
    SyntheticSet set = make_set(12, 3, channels, gen);
    testing::TempDir dir;
    std::vector<std::string> names = export_image_folder(set, dir.path());
    ASSERT_EQ(names.size(), 12u);
    EXPECT_EQ(names[2], "02");
    data::TrainTestSplit back = data::read_image_folder(dir.path(), 6, channels);
    auto [pixels, labels] = expected_order(set);
    ASSERT_EQ(back.train.images.sizes(), pixels.sizes());
    EXPECT_TRUE(at::equal(back.train.labels, labels));
    EXPECT_EQ(back.train.num_classes, 12);
    // Rounding to the nearest of 256 levels: at most half a level off.
    EXPECT_LE((back.train.images - pixels).abs().max().item<double>(), 0.5 / 255.0 + 1e-6);
    EXPECT_EQ(back.test.images.size(0), 0);
  }
}

TEST(SetExport, SoftLabelledSetsGoToTheImagesOwnClassNotTheArgmax) {
  at::Generator gen = make_generator(32);
  SyntheticSet set = make_set(3, 2, 1, gen);
  const at::Tensor own = set.labels.clone();
  // Soft labels whose argmax is always the next class: the folder must still be the own class.
  set.labels = at::one_hot((own + 1).remainder(3), 3).to(at::kFloat) * 0.8 + 0.2 / 3;
  set.classes = own;
  EXPECT_TRUE(at::equal(set.class_ids(), own));
  testing::TempDir dir;
  export_image_folder(set, dir.path());
  data::TrainTestSplit back = data::read_image_folder(dir.path(), 6, 1);
  auto [pixels, labels] = expected_order(set);
  EXPECT_TRUE(at::equal(back.train.labels, labels));
  EXPECT_LE((back.train.images - pixels).abs().max().item<double>(), 0.5 / 255.0 + 1e-6);
  // The set file keeps `classes` (and checks them).
  save_synthetic_set(dir.file("soft.pt"), set);
  EXPECT_TRUE(at::equal(load_synthetic_set(dir.file("soft.pt")).class_ids(), own));
  set.classes = at::full({6}, 3, at::kLong);
  save_synthetic_set(dir.file("bad.pt"), set);
  EXPECT_EQ(
      testing::error_of([&] { load_synthetic_set(dir.file("bad.pt")); }),
      "'" + dir.file("bad.pt") + "': 'classes' should hold one class in [0, 3) per image (6)");
}

TEST(SetExport, ZcaSetWithoutItsWhiteningIsAnError) {
  at::Generator gen = make_generator(33);
  SyntheticSet set = make_set(2, 1, 1, gen);
  set.zca_eps = 0.1;
  testing::TempDir dir;
  EXPECT_EQ(testing::error_of([&] { export_image_folder(set, dir.path()); }),
            "image-folder export to '" + dir.path() +
                "': the set is ZCA-whitened (zca_eps 0.100000); export it with the data settings "
                "it was made with (data.zca = true)");
}

// grid.png: column c holds class c's images in set order, un-whitened and denormalized to 8 bits;
// a class with fewer images leaves white tiles. 600 images span several of the chunks it converts
// at a time.
TEST(SetGrid, EachClassFillsItsColumnInSetOrder) {
  at::Generator gen = make_generator(32);
  const int64_t n = 600, side = 4, padding = 2;
  SyntheticSet set;
  set.num_classes = 3;
  set.mean = at::full({1}, 0.4);
  set.std = at::full({1}, 0.2);
  // Classes 0 and 2 only, 200 and 400 images, shuffled: class 1's column stays white.
  set.labels = at::arange(n, at::kLong).remainder(3).clamp_max(1).mul(2);
  set.labels = set.labels.index_select(0, at::randperm(n, gen, at::kLong));
  at::Tensor pixels = at::rand({n, 1, side, side}, gen);
  at::Tensor normalized = (pixels - 0.4) / 0.2;
  data::Zca zca = data::Zca::fit(at::randn({50, 1, side, side}, gen), 0.1);
  set.images = zca.apply(normalized);
  set.zca_eps = zca.eps();
  testing::TempDir dir;
  save_set_grid(dir.file("grid.png"), set, &zca);

  int w = 0, h = 0, c = 0;
  unsigned char* png = stbi_load(dir.file("grid.png").c_str(), &w, &h, &c, 0);
  ASSERT_NE(png, nullptr);
  const int64_t rows = 400;  // class 2's count
  ASSERT_EQ(w, 3 * (side + padding) + padding);
  ASSERT_EQ(h, rows * (side + padding) + padding);
  ASSERT_EQ(c, 1);
  auto tile = [&](int64_t row, int64_t column) {
    at::Tensor t = at::empty({side, side}, at::kByte);
    for (int64_t y = 0; y < side; ++y)
      for (int64_t x = 0; x < side; ++x)
        t[y][x] = png[(padding + row * (side + padding) + y) * w + padding +
                      column * (side + padding) + x];
    return t.to(at::kFloat) / 255.0;
  };
  std::vector<int64_t> row_of(3, 0);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = set.labels[i].item<int64_t>();
    at::Tensor shown = tile(row_of[label]++, label);
    worst = std::max(worst, (shown - pixels[i][0]).abs().max().item<double>());
  }
  // Half an 8-bit level, plus float error of the whitening round trip.
  EXPECT_LE(worst, 0.5 / 255.0 + 1e-4);
  EXPECT_TRUE(tile(0, 1).eq(1.0).all().item<bool>());         // class 1: no images
  EXPECT_TRUE(tile(rows / 2, 0).eq(1.0).all().item<bool>());  // class 0 ends at row 200
  EXPECT_FALSE(tile(rows / 2 - 1, 0).eq(1.0).all().item<bool>());
  stbi_image_free(png);
}

}  // namespace
}  // namespace distill::eval
