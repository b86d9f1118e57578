#include "src/data/readers.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stb_image_write.h>
#include <zlib.h>

#include <filesystem>
#include <functional>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string be32(uint32_t v) {
  return std::string{char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// IDX bytes for n images of h x w with pixel (i, y, x) = i * 10 + y * w + x, labels i % 10.
std::string idx_images(uint32_t n, uint32_t h, uint32_t w) {
  std::string bytes = be32(0x803) + be32(n) + be32(h) + be32(w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t p = 0; p < h * w; ++p) bytes += char(i * 10 + p);
  return bytes;
}
std::string idx_labels(uint32_t n, uint32_t offset = 0) {
  std::string bytes = be32(0x801) + be32(n);
  for (uint32_t i = 0; i < n; ++i) bytes += char((i + offset) % 10);
  return bytes;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// The four files of an MNIST-family folder; `gz` picks compressed or raw.
void write_idx_folder(const std::string& folder, bool gz, const std::string& train_images,
                      const std::string& train_labels) {
  fs::create_directories(folder);
  auto put = [&](const std::string& name, const std::string& bytes) {
    if (gz) write_gz(folder + "/" + name + ".gz", bytes);
    else testing::write_bytes(folder + "/" + name, bytes);
  };
  put("train-images-idx3-ubyte", train_images);
  put("train-labels-idx1-ubyte", train_labels);
  put("t10k-images-idx3-ubyte", idx_images(2, 2, 3));
  put("t10k-labels-idx1-ubyte", idx_labels(2));
}

using testing::error_of;

#define EXPECT_MESSAGE(message, part) \
  EXPECT_NE((message).find(part), std::string::npos) << (message)

TEST(IdxReader, ReadsRawAndGzipFoldersIdentically) {
  TempDir dir;
  for (bool gz : {false, true}) {
    std::string folder = dir.file(gz ? "gz" : "raw");
    write_idx_folder(folder, gz, idx_images(4, 2, 3), idx_labels(4));
    TrainTestSplit split = read_idx_folder(folder);
    ASSERT_EQ(split.train.images.sizes(), (std::vector<int64_t>{4, 1, 2, 3}));
    EXPECT_EQ(split.train.num_classes, 10);
    EXPECT_NEAR(split.train.images[2][0][1][2].item<float>(), (2 * 10 + 1 * 3 + 2) / 255.0, 1e-7);
    EXPECT_EQ(split.train.labels[3].item<int64_t>(), 3);
    EXPECT_EQ(split.test.size(), 2);
  }
}

TEST(IdxReader, BadInputIsNamedWithWhatWasExpected) {
  TempDir dir;
  // Wrong magic: a labels file where images belong.
  write_idx_folder(dir.file("magic"), false, idx_labels(4), idx_labels(4));
  EXPECT_MESSAGE(error_of([&] { read_idx_folder(dir.file("magic")); }), "found magic 0x00000801");
  // Truncated data.
  std::string images = idx_images(4, 2, 3);
  write_idx_folder(dir.file("short"), true, images.substr(0, images.size() - 5), idx_labels(4));
  std::string message = error_of([&] { read_idx_folder(dir.file("short")); });
  EXPECT_MESSAGE(message, "train-images-idx3-ubyte.gz");
  EXPECT_MESSAGE(message, "truncated");
  // Image/label count mismatch.
  write_idx_folder(dir.file("count"), false, idx_images(4, 2, 3), idx_labels(3));
  EXPECT_MESSAGE(error_of([&] { read_idx_folder(dir.file("count")); }), "holds 4 images but");
  // Missing files and folders.
  fs::create_directories(dir.file("empty"));
  EXPECT_MESSAGE(error_of([&] { read_idx_folder(dir.file("empty")); }), "missing train-images-idx3-ubyte");
  EXPECT_MESSAGE(error_of([&] { read_idx_folder(dir.file("nope")); }), "no such folder");
  // A label outside [0, 10).
  std::string labels = idx_labels(4);
  labels[8 + 2] = char(12);
  write_idx_folder(dir.file("label"), false, idx_images(4, 2, 3), labels);
  EXPECT_MESSAGE(error_of([&] { read_idx_folder(dir.file("label")); }), "label 12 at index 2");
}

// CIFAR records: <label>[<fine>]<1024 R><1024 G><1024 B>; pixel value = (record + channel) % 256.
std::string cifar_records(int n, int label_bytes, int first_label) {
  std::string bytes;
  for (int i = 0; i < n; ++i) {
    for (int b = 0; b < label_bytes; ++b) bytes += char((first_label + i + b) % 10);
    for (int c = 0; c < 3; ++c) bytes += std::string(1024, char((i + c * 50) % 256));
  }
  return bytes;
}

TEST(CifarReader, ReadsCifar10BatchesAndCifar100FineLabels) {
  TempDir dir;
  std::string folder = dir.file("cifar-10-batches-bin");
  fs::create_directories(folder);
  for (int b = 1; b <= 5; ++b) {
    testing::write_bytes(folder + "/data_batch_" + std::to_string(b) + ".bin", cifar_records(2, 1, b));
  }
  testing::write_bytes(folder + "/test_batch.bin", cifar_records(3, 1, 0));
  TrainTestSplit ten = read_cifar10(dir.path());  // finds the archive's sub-folder
  ASSERT_EQ(ten.train.images.sizes(), (std::vector<int64_t>{10, 3, 32, 32}));
  EXPECT_EQ(ten.test.size(), 3);
  EXPECT_EQ(ten.train.num_classes, 10);
  EXPECT_EQ(ten.train.labels[2].item<int64_t>(), 2);  // batch 2, record 0
  EXPECT_NEAR(ten.train.images[1][2][5][7].item<float>(), ((1 + 100) % 256) / 255.0, 1e-7);  // B plane

  std::string hundred = dir.file("c100");
  fs::create_directories(hundred);
  testing::write_bytes(hundred + "/train.bin", cifar_records(4, 2, 3));
  testing::write_bytes(hundred + "/test.bin", cifar_records(2, 2, 0));
  TrainTestSplit c100 = read_cifar100(hundred);
  EXPECT_EQ(c100.train.num_classes, 100);
  EXPECT_EQ(c100.train.labels[0].item<int64_t>(), 4);  // the fine label is the second byte
}

TEST(CifarReader, WrongSizeAndMissingFilesAreErrors) {
  TempDir dir;
  testing::write_bytes(dir.file("train.bin"), cifar_records(2, 2, 0) + "xyz");
  testing::write_bytes(dir.file("test.bin"), cifar_records(1, 2, 0));
  std::string message = error_of([&] { read_cifar100(dir.path()); });
  EXPECT_MESSAGE(message, "train.bin");
  EXPECT_MESSAGE(message, "multiple of the 3074-byte");
  EXPECT_MESSAGE(error_of([&] { read_cifar10(dir.path()); }), "data_batch_1.bin");
}

void write_png(const std::string& path, int w, int h, int c, unsigned char value) {
  fs::create_directories(fs::path(path).parent_path());
  std::vector<unsigned char> pixels(w * h * c, value);
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, c, pixels.data(), w * c), 0);
}

TEST(ImageFolderReader, ReadsResizesAndConvertsChannels) {
  TempDir dir;
  write_png(dir.file("train/cat/a.png"), 8, 8, 3, 200);
  write_png(dir.file("train/cat/b.png"), 4, 6, 1, 100);  // grey and another size
  write_png(dir.file("train/dog/c.png"), 8, 8, 3, 50);
  write_png(dir.file("test/cat/d.png"), 8, 8, 3, 10);
  write_png(dir.file("test/dog/e.png"), 8, 8, 3, 20);
  TrainTestSplit split = read_image_folder(dir.path(), 16, 3);
  ASSERT_EQ(split.train.images.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_EQ(split.train.class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(split.train.labels[2].item<int64_t>(), 1);
  EXPECT_NEAR(split.train.images[1].mean().item<float>(), 100 / 255.0, 1e-3);  // grey to RGB
  EXPECT_EQ(split.test.size(), 2);
  TrainTestSplit grey = read_image_folder(dir.path(), 8, 1);
  EXPECT_EQ(grey.train.channels(), 1);
}

TEST(ImageFolderReader, BadFoldersAndFilesAreNamed) {
  TempDir dir;
  write_png(dir.file("train/cat/a.png"), 8, 8, 3, 1);
  fs::create_directories(dir.file("train/dog"));
  EXPECT_MESSAGE(error_of([&] { read_image_folder(dir.path(), 8, 3); }), "empty class folder");
  testing::write_bytes(dir.file("train/dog/broken.png"), "not an image");
  std::string message = error_of([&] { read_image_folder(dir.path(), 8, 3); });
  EXPECT_MESSAGE(message, "broken.png");
  EXPECT_MESSAGE(message, "cannot decode image");
  TempDir empty;
  fs::create_directories(empty.file("train"));
  EXPECT_MESSAGE(error_of([&] { read_image_folder(empty.path(), 8, 3); }), "one sub-folder per class");
  EXPECT_MESSAGE(error_of([&] { read_image_folder(dir.path(), 8, 2); }), "1 (grey) or 3 (RGB)");
}

TEST(TensorFileReader, ReadsPythonUint8ImagesWithoutChannelDimension) {
  DISTILL_REQUIRE_PYTHON();
  TempDir dir;
  testing::run_python_script("make_tensor_dataset.py", {dir.file("d.pt")});
  TrainTestSplit split = read_tensor_file(dir.file("d.pt"));
  ASSERT_EQ(split.train.images.sizes(), (std::vector<int64_t>{6, 1, 4, 5}));
  EXPECT_NEAR(split.train.images[5][0][3][4].item<float>(), 255 / 255.0, 1e-7);
  EXPECT_EQ(split.train.num_classes, 3);
  EXPECT_EQ(split.test.size(), 6);
}

TEST(TensorFileReader, WrongShapesAndCountsAreErrors) {
  TempDir dir;
  io::TensorDict d = io::make_dict();
  d.insert("images", at::zeros({4, 2, 5, 5}));
  d.insert("labels", at::zeros({4}, at::kLong));
  io::save_dict(dir.file("c2.pt"), d);
  EXPECT_MESSAGE(error_of([&] { read_tensor_file(dir.file("c2.pt")); }), "C = 1 or 3");
  d.insert_or_assign("images", at::zeros({4, 1, 5, 5}));
  d.insert_or_assign("labels", at::zeros({3}, at::kLong));
  io::save_dict(dir.file("n.pt"), d);
  std::string message = error_of([&] {
    DataOptions o;
    o.format = "tensor";
    o.path = dir.file("n.pt");
    load_dataset(o);
  });
  EXPECT_MESSAGE(message, "n.pt");
  EXPECT_MESSAGE(message, "holds 4 images but 'labels' holds 3 labels");
}

TEST(Dataset, NormalizationPresetsExplicitAndComputed) {
  Dataset d;
  d.images = at::tensor({0.0f, 1.0f, 0.0f, 1.0f}).view({4, 1, 1, 1});
  d.labels = at::zeros({4}, at::kLong);
  d.num_classes = 2;
  DataOptions o;  // fashion-mnist preset
  Normalization n = normalization_for(o, d);
  EXPECT_NEAR(n.mean.item<float>(), 0.2861, 1e-6);
  EXPECT_NEAR(n.std.item<float>(), 0.3530, 1e-6);
  o.name = "unknown";
  n = normalization_for(o, d);
  EXPECT_NEAR(n.mean.item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(n.std.item<float>(), std::sqrt(1.0 / 3.0), 1e-6);  // unbiased std of 0,1,0,1
  Dataset normalized = normalize(d, n);
  EXPECT_NEAR(normalized.images[1].item<float>(), 0.5 / std::sqrt(1.0 / 3.0), 1e-5);
  o.mean = {0.1, 0.2};
  o.std = {1.0, 1.0};
  EXPECT_MESSAGE(error_of([&] { normalization_for(o, d); }), "one per channel, found 2");
}

// data.zca: the normalized splits are whitened by a ZCA fitted on the normalized training split,
// so the training covariance becomes U diag(s / (s + eps)) U^T (close to I for large s).
TEST(Dataset, ZcaWhitensBothSplitsWithTheTrainingFit) {
  TempDir dir;
  at::Generator gen = make_generator(4);
  io::TensorDict d = io::make_dict();
  at::Tensor mixing = at::randn({16, 16}, gen);
  auto correlated = [&](int64_t n) {
    return (at::randn({n, 16}, gen).matmul(mixing) * 0.03 + 0.5).clamp(0, 1).view({n, 1, 4, 4});
  };
  d.insert("images", correlated(400));
  d.insert("labels", at::arange(400, at::kLong).remainder(2));
  d.insert("test_images", correlated(50));
  d.insert("test_labels", at::arange(50, at::kLong).remainder(2));
  io::save_dict(dir.file("d.pt"), d);
  DataOptions o;
  o.format = "tensor";
  o.path = dir.file("d.pt");
  o.name = "custom";
  PreparedData plain = load_normalized(o);
  EXPECT_EQ(plain.norm.zca, nullptr);
  o.zca = true;
  o.zca_eps = 1e-3;
  PreparedData white = load_normalized(o);
  ASSERT_NE(white.norm.zca, nullptr);
  Zca independent = Zca::fit(plain.train.images, 1e-3);
  EXPECT_TRUE(at::allclose(white.train.images, independent.apply(plain.train.images), 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(white.test.images, independent.apply(plain.test.images), 1e-5, 1e-5));
  auto covariance = [](const at::Tensor& images) {
    at::Tensor z = images.view({400, 16}).to(at::kDouble);
    at::Tensor centered = z - z.mean(0);
    return centered.t().matmul(centered) / 399.0;
  };
  auto [s, u] = at::linalg_eigh(covariance(plain.train.images));
  at::Tensor expected = u.matmul(at::diag(s / (s + 1e-3))).matmul(u.t());
  at::Tensor whitened = covariance(white.train.images);
  EXPECT_LT((whitened - expected).abs().max().item<double>(), 1e-3);
  EXPECT_GT((covariance(plain.train.images) - expected).abs().max().item<double>(), 0.1);
}

TEST(Dataset, SamplePerClassIsBalancedAndSeeded) {
  at::Tensor labels = at::arange(60, at::kLong).remainder(3);
  at::Generator a = make_generator(1), b = make_generator(1), c = make_generator(2);
  at::Tensor ia = sample_per_class(labels, 3, 5, a), ib = sample_per_class(labels, 3, 5, b);
  at::Tensor ic = sample_per_class(labels, 3, 5, c);
  EXPECT_TRUE(at::equal(ia, ib));
  EXPECT_FALSE(at::equal(ia, ic));
  EXPECT_TRUE(at::equal(labels.index_select(0, ia), at::arange(3, at::kLong).repeat_interleave(5)));
  EXPECT_EQ(std::get<0>(at::_unique(ia)).numel(), 15);
  EXPECT_MESSAGE(error_of([&] { sample_per_class(labels, 3, 21, a); }),
                 "class 0 has 20 images, fewer than the 21 per class");
}

TEST(Dataset, ReadsTheRealFashionMnist) {
  const std::string folder = "/usr/share/datasets/fashion-mnist";
  DISTILL_REQUIRE_TOOL(fs::exists(folder), folder << " (Debian package dataset-fashion-mnist)");
  DataOptions o;
  TrainTestSplit split = load_dataset(o);
  EXPECT_EQ(split.train.images.sizes(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(split.test.size(), 10000);
  EXPECT_TRUE(at::equal(at::bincount(split.train.labels), at::full({10}, 6000, at::kLong)));
  EXPECT_EQ(split.train.class_names.at(9), "Ankle boot");
  EXPECT_NEAR(split.train.images.mean().item<double>(), 0.2860, 1e-3);  // the preset's mean
}

}  // namespace
}  // namespace distill::data
