// Image-folder export of a set: read back by the project's own image-folder reader, the same
// images within 8-bit quantisation and the same labels (the image's own class for soft labels).
#include "src/eval/set_export.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/readers.h"
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

}  // namespace
}  // namespace distill::eval
