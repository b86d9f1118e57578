// CIFAR-10 / CIFAR-100 "binary version" reader (https://www.cs.toronto.edu/~kriz/cifar.html):
// fixed-size records of label byte(s) followed by 32x32 R, G and B planes.
#include <ATen/ATen.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/data/readers.h"
#include "src/io/atomic_file.h"

namespace distill::data {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kPixelBytes = 3 * 32 * 32;

struct CifarFormat {
  std::string dataset;    // for messages: "CIFAR-10"
  std::string subfolder;  // the archive's folder name
  std::vector<std::string> train_files;
  std::string test_file;
  int64_t label_bytes;   // 1 (label) or 2 (coarse, fine)
  int64_t coarse_classes;  // 0 when the record has no coarse label
  int64_t num_classes;
  std::string names_file;  // class names shipped with the archive, one per line
  std::vector<std::string> names;  // used when names_file is absent
  int64_t record_bytes() const { return label_bytes + kPixelBytes; }
};

const CifarFormat& cifar10_format() {
  static const CifarFormat format{
      "CIFAR-10",
      "cifar-10-batches-bin",
      {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
       "data_batch_5.bin"},
      "test_batch.bin",
      1,
      0,
      10,
      "batches.meta.txt",
      {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}};
  return format;
}

const CifarFormat& cifar100_format() {
  static const CifarFormat format{
      "CIFAR-100",
      "cifar-100-binary",
      {"train.bin"},
      "test.bin",
      2,
      20,
      100,
      "fine_label_names.txt",
      {"apple",        "aquarium_fish", "baby",       "bear",       "beaver",      "bed",
       "bee",          "beetle",        "bicycle",    "bottle",     "bowl",        "boy",
       "bridge",       "bus",           "butterfly",  "camel",      "can",         "castle",
       "caterpillar",  "cattle",        "chair",      "chimpanzee", "clock",       "cloud",
       "cockroach",    "couch",         "crab",       "crocodile",  "cup",         "dinosaur",
       "dolphin",      "elephant",      "flatfish",   "forest",     "fox",         "girl",
       "hamster",      "house",         "kangaroo",   "keyboard",   "lamp",        "lawn_mower",
       "leopard",      "lion",          "lizard",     "lobster",    "man",         "maple_tree",
       "motorcycle",   "mountain",      "mouse",      "mushroom",   "oak_tree",    "orange",
       "orchid",       "otter",         "palm_tree",  "pear",       "pickup_truck", "pine_tree",
       "plain",        "plate",         "poppy",      "porcupine",  "possum",      "rabbit",
       "raccoon",      "ray",           "road",       "rocket",     "rose",        "sea",
       "seal",         "shark",         "shrew",      "skunk",      "skyscraper",  "snail",
       "snake",        "spider",        "squirrel",   "streetcar",  "sunflower",   "sweet_pepper",
       "table",        "tank",          "telephone",  "television", "tiger",       "tractor",
       "train",        "trout",         "tulip",      "turtle",     "wardrobe",    "whale",
       "willow_tree",  "wolf",          "woman",      "worm"}};
  return format;
}

// The folder holding the .bin files: `folder` itself or the archive's sub-folder inside it.
fs::path resolve_folder(const std::string& folder, const CifarFormat& format) {
  if (!fs::is_directory(folder)) {
    throw Error("cannot open folder '" + folder + "': " +
                (fs::exists(folder) ? std::string("not a folder") : std::string("no such folder")));
  }
  const std::string& first = format.train_files.front();
  for (const fs::path& candidate : {fs::path(folder), fs::path(folder) / format.subfolder}) {
    if (fs::exists(candidate / first)) return candidate;
  }
  std::string hint;
  if (fs::exists(fs::path(folder) / "cifar-10-batches-py") ||
      fs::exists(fs::path(folder) / "cifar-100-python") || fs::exists(fs::path(folder) / "meta") ||
      fs::exists(fs::path(folder) / "data_batch_1")) {
    hint = " (this looks like the python version; download the binary version)";
  }
  std::string files;
  for (const auto& name : format.train_files) files += name + ", ";
  throw Error("'" + folder + "': expected the " + format.dataset + " binary version (" + files +
              format.test_file + ") directly or in a " + format.subfolder +
              " sub-folder, found no " + first + hint);
}

Dataset read_records(const fs::path& path, const CifarFormat& format) {
  const std::string file = path.string();
  std::string bytes = io::read_file(file);
  const int64_t size = static_cast<int64_t>(bytes.size());
  const int64_t record = format.record_bytes();
  if (size == 0 || size % record != 0) {
    throw Error("'" + file + "': expected a size that is a non-zero multiple of the " +
                std::to_string(record) + "-byte " + format.dataset + " record, found " +
                std::to_string(size) + " bytes (" + std::to_string(size / record) +
                " records and " + std::to_string(size % record) + " bytes left over)");
  }
  const int64_t count = size / record;
  at::Tensor records = at::from_blob(bytes.data(), {count, record}, at::kByte);
  // CIFAR-100 records start with <coarse><fine>; the fine label is the class.
  at::Tensor labels = records.select(1, format.label_bytes - 1).to(at::kLong);
  auto check_range = [&](const at::Tensor& values, int64_t limit, const char* what) {
    at::Tensor bad = (values >= limit).nonzero();
    if (bad.size(0) == 0) return;
    int64_t index = bad[0][0].item<int64_t>();
    throw Error("'" + file + "': record " + std::to_string(index) + " has " + what + " " +
                std::to_string(values[index].item<int64_t>()) + ", expected [0, " +
                std::to_string(limit) + ")");
  };
  if (format.coarse_classes > 0) {
    check_range(records.select(1, 0).to(at::kLong), format.coarse_classes, "coarse label");
  }
  check_range(labels, format.num_classes, "label");
  Dataset dataset;
  // reshape copies out of `bytes` (the narrow is not contiguous) before it goes away.
  dataset.images = records.narrow(1, format.label_bytes, kPixelBytes)
                       .reshape({count, 3, 32, 32})
                       .to(at::kFloat)
                       .div_(255.0);
  dataset.labels = labels;
  dataset.num_classes = format.num_classes;
  return dataset;
}

std::vector<std::string> class_names(const fs::path& folder, const CifarFormat& format) {
  fs::path path = folder / format.names_file;
  if (!fs::exists(path)) return format.names;
  std::istringstream in(io::read_file(path.string()));
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (static_cast<int64_t>(names.size()) != format.num_classes) {
    throw Error("'" + path.string() + "': expected " + std::to_string(format.num_classes) +
                " class names (one per line), found " + std::to_string(names.size()));
  }
  return names;
}

TrainTestSplit read_cifar(const std::string& folder, const CifarFormat& format) {
  fs::path root = resolve_folder(folder, format);
  std::vector<std::string> names = class_names(root, format);
  std::vector<at::Tensor> images, labels;
  for (const auto& name : format.train_files) {
    Dataset part = read_records(root / name, format);
    images.push_back(part.images);
    labels.push_back(part.labels);
  }
  TrainTestSplit split;
  split.train.images = images.size() == 1 ? images[0] : at::cat(images);
  split.train.labels = labels.size() == 1 ? labels[0] : at::cat(labels);
  split.train.num_classes = format.num_classes;
  split.train.class_names = names;
  split.test = read_records(root / format.test_file, format);
  split.test.class_names = names;
  return split;
}

}  // namespace

TrainTestSplit read_cifar10(const std::string& folder) {
  return read_cifar(folder, cifar10_format());
}

TrainTestSplit read_cifar100(const std::string& folder) {
  return read_cifar(folder, cifar100_format());
}

}  // namespace distill::data
