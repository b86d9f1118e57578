// Image-folder reader: folder/{train,test}/<class>/<image>, decoded with stb_image.
#include <ATen/ATen.h>
#include <stb_image.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/data/readers.h"

namespace distill::data {
namespace {

namespace fs = std::filesystem;

bool hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

// Names of the class sub-folders of `split`, sorted so class indices do not depend on the file
// system's listing order.
std::vector<std::string> class_folders(const fs::path& split) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(split)) {
    if (entry.is_directory() && !hidden(entry.path())) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) {
    throw Error("'" + split.string() + "': expected one sub-folder per class, found none");
  }
  return names;
}

std::vector<fs::path> image_files(const fs::path& class_folder) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(class_folder)) {
    if (entry.is_regular_file() && !hidden(entry.path())) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw Error("'" + class_folder.string() + "': empty class folder, expected at least one image");
  }
  return files;
}

// Shrinks by averaging each output pixel's area (torch's interpolate mode="area"), then enlarges
// bilinearly (align_corners=False); either step is skipped when not needed. x: 1,C,H,W.
at::Tensor resize(at::Tensor x, int64_t size) {
  const int64_t height = x.size(2), width = x.size(3);
  if (height > size || width > size) {
    x = at::adaptive_avg_pool2d(x, at::IntArrayRef{std::min(height, size), std::min(width, size)});
  }
  if (x.size(2) != size || x.size(3) != size) {
    x = at::upsample_bilinear2d(x, at::IntArrayRef{size, size}, /*align_corners=*/false);
  }
  return x;
}

// One image as 1,C,size,size floats in [0,1]. stb converts grey <-> RGB (and drops alpha) when
// asked for `channels`.
at::Tensor load_image(const fs::path& path, int64_t size, int64_t channels) {
  int width = 0, height = 0, file_channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &file_channels, static_cast<int>(channels)),
      stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw Error("'" + path.string() + "': cannot decode image, expected PNG, JPEG, BMP, GIF, TGA, " +
                "PSD, HDR, PIC or PNM (stb_image: " + (reason ? reason : "unknown reason") + ")");
  }
  at::Tensor image = at::from_blob(pixels.get(), {height, width, channels}, at::kByte)
                         .permute({2, 0, 1})
                         .unsqueeze(0)
                         .to(at::kFloat)  // copies out of stb's buffer
                         .div_(255.0);
  return resize(image, size).clamp_(0.0, 1.0);
}

Dataset read_split(const fs::path& split, const std::vector<std::string>& classes, int64_t size,
                   int64_t channels) {
  std::vector<at::Tensor> images;
  std::vector<int64_t> labels;
  for (size_t label = 0; label < classes.size(); ++label) {
    for (const fs::path& file : image_files(split / classes[label])) {
      images.push_back(load_image(file, size, channels));
      labels.push_back(static_cast<int64_t>(label));
    }
  }
  Dataset dataset;
  dataset.images = at::cat(images);
  dataset.labels = at::tensor(labels, at::kLong);
  dataset.num_classes = static_cast<int64_t>(classes.size());
  dataset.class_names = classes;
  return dataset;
}

}  // namespace

Dataset read_class_folders(const std::string& folder, int64_t size, int64_t channels) {
  if (!fs::is_directory(folder)) {
    throw Error("cannot open folder '" + folder + "': " +
                (fs::exists(folder) ? std::string("not a folder") : std::string("no such folder")));
  }
  return read_split(folder, class_folders(folder), size, channels);
}

TrainTestSplit read_image_folder(const std::string& folder, int64_t size, int64_t channels) {
  if (size <= 0) throw Error("image-folder: expected an image size > 0, found " + std::to_string(size));
  if (channels != 1 && channels != 3) {
    throw Error("image-folder: expected 1 (grey) or 3 (RGB) channels, found " +
                std::to_string(channels));
  }
  if (!fs::is_directory(folder)) {
    throw Error("cannot open folder '" + folder + "': " +
                (fs::exists(folder) ? std::string("not a folder") : std::string("no such folder")));
  }
  const fs::path train_folder = fs::path(folder) / "train";
  if (!fs::is_directory(train_folder)) {
    throw Error("'" + folder + "': expected a train/ sub-folder (and optionally test/) holding " +
                "one folder of images per class, found no train/");
  }
  const std::vector<std::string> classes = class_folders(train_folder);
  TrainTestSplit split;
  split.train = read_split(train_folder, classes, size, channels);
  const fs::path test_folder = fs::path(folder) / "test";
  if (!fs::is_directory(test_folder)) {
    split.test.images = at::empty({0, channels, size, size}, at::kFloat);
    split.test.labels = at::empty({0}, at::kLong);
    split.test.num_classes = split.train.num_classes;
    split.test.class_names = classes;
    return split;
  }
  const std::vector<std::string> test_classes = class_folders(test_folder);
  if (test_classes != classes) {
    throw Error("'" + test_folder.string() + "': expected the class folders of train/ (" +
                join(classes) + "), found " + join(test_classes));
  }
  split.test = read_split(test_folder, classes, size, channels);
  return split;
}

}  // namespace distill::data
