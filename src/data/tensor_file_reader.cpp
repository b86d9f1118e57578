// Tensor-file reader: a torch.save dict of images and labels (the easiest way to bring any
// dataset in from Python).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "src/core/error.h"
#include "src/data/readers.h"
#include "src/io/tensor_file.h"

namespace distill::data {
namespace {

std::string shape_of(at::IntArrayRef sizes) {
  std::string out = "[";
  for (size_t d = 0; d < sizes.size(); ++d) out += (d ? ", " : "") + std::to_string(sizes[d]);
  return out + "]";
}

// N,C,H,W float32 in [0,1] from uint8 (0..255) or floating images in [0,1], N,H,W or N,C,H,W.
at::Tensor convert_images(at::Tensor images, const std::string& path, const std::string& key) {
  const std::string where = "'" + path + "': key '" + key + "'";
  if (images.dim() == 3) images = images.unsqueeze(1);
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3)) {
    throw Error(where + ": expected images N,C,H,W with C = 1 or 3 (or N,H,W), found shape " +
                shape_of(images.sizes()) + (images.dim() == 4 && (images.size(3) == 1 || images.size(3) == 3)
                                        ? " (channels last? permute(0, 3, 1, 2) before saving)"
                                        : ""));
  }
  images = images.cpu();
  if (images.scalar_type() == at::kByte) return images.to(at::kFloat).div_(255.0);
  if (!at::isFloatingType(images.scalar_type())) {
    throw Error(where + ": expected uint8 or floating-point images, found " +
                std::string(c10::toString(images.scalar_type())));
  }
  images = images.to(at::kFloat).contiguous();
  if (images.numel() > 0) {
    // Normalized or 0..255 floats would be silently mis-scaled later, so they are refused.
    const double low = images.min().item<double>(), high = images.max().item<double>();
    if (!(low >= 0.0 && high <= 1.0)) {
      throw Error(where + ": expected floating-point images in [0, 1] (raw, not normalized), " +
                  "found values in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
    }
  }
  return images;
}

at::Tensor convert_labels(const at::Tensor& labels, const std::string& path,
                          const std::string& key) {
  const std::string where = "'" + path + "': key '" + key + "'";
  if (labels.dim() != 1) {
    throw Error(where + ": expected labels of shape [N], found shape " + shape_of(labels.sizes()));
  }
  if (!at::isIntegralType(labels.scalar_type(), /*includeBool=*/false)) {
    throw Error(where + ": expected integer labels, found " +
                std::string(c10::toString(labels.scalar_type())));
  }
  at::Tensor out = labels.cpu().to(at::kLong).contiguous();
  at::Tensor bad = (out < 0).nonzero();
  if (bad.size(0) > 0) {
    int64_t index = bad[0][0].item<int64_t>();
    throw Error(where + ": label " + std::to_string(out[index].item<int64_t>()) + " at index " +
                std::to_string(index) + " is negative, expected labels >= 0");
  }
  return out;
}

Dataset read_split(const io::TensorDict& dict, const std::string& path,
                   const std::string& images_key, const std::string& labels_key) {
  Dataset dataset;
  dataset.images = convert_images(io::get_tensor(dict, images_key, path), path, images_key);
  dataset.labels = convert_labels(io::get_tensor(dict, labels_key, path), path, labels_key);
  if (dataset.images.size(0) != dataset.labels.size(0)) {
    throw Error("'" + path + "': '" + images_key + "' holds " +
                std::to_string(dataset.images.size(0)) + " images but '" + labels_key +
                "' holds " + std::to_string(dataset.labels.size(0)) +
                " labels; expected one label per image");
  }
  return dataset;
}

int64_t read_num_classes(const io::TensorDict& dict, const std::string& path) {
  c10::IValue value = dict.at("num_classes");
  int64_t count = -1;
  if (value.isInt()) {
    count = value.toInt();
  } else if (value.isTensor() && value.toTensor().numel() == 1 &&
             at::isIntegralType(value.toTensor().scalar_type(), false)) {
    count = value.toTensor().item<int64_t>();
  } else {
    throw Error("'" + path + "': key 'num_classes' should hold an integer, found " +
                value.tagKind());
  }
  if (count <= 0) {
    throw Error("'" + path + "': key 'num_classes' should be > 0, found " + std::to_string(count));
  }
  return count;
}

std::vector<std::string> read_class_names(const io::TensorDict& dict, const std::string& path,
                                          int64_t num_classes) {
  c10::IValue value = dict.at("class_names");
  std::vector<std::string> names;
  if (value.isList()) {
    for (const c10::IValue& item : value.toListRef()) {
      if (!item.isString()) break;
      names.push_back(item.toStringRef());
    }
  }
  if (static_cast<int64_t>(names.size()) != num_classes ||
      (value.isList() && value.toListRef().size() != names.size())) {
    throw Error("'" + path + "': key 'class_names' should hold a list of " +
                std::to_string(num_classes) + " strings, found " +
                (value.isList() ? "a list of " + std::to_string(value.toListRef().size()) + " items"
                                : std::string(value.tagKind())));
  }
  return names;
}

}  // namespace

TrainTestSplit read_tensor_file(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  TrainTestSplit split;
  split.train = read_split(dict, path, "images", "labels");
  if (split.train.size() == 0) throw Error("'" + path + "': key 'images' holds no images");
  const bool has_test_images = io::has_key(dict, "test_images");
  const bool has_test_labels = io::has_key(dict, "test_labels");
  if (has_test_images != has_test_labels) {
    throw Error("'" + path + "': expected both 'test_images' and 'test_labels' or neither, found " +
                (has_test_images ? "only 'test_images'" : "only 'test_labels'"));
  }
  if (has_test_images) {
    split.test = read_split(dict, path, "test_images", "test_labels");
    const auto& a = split.train.images;
    const auto& b = split.test.images;
    if (a.sizes().slice(1) != b.sizes().slice(1)) {
      throw Error("'" + path + "': expected 'test_images' shaped like 'images' (C,H,W " +
                  shape_of(a.sizes().slice(1)) + "), found " + shape_of(b.sizes().slice(1)));
    }
  } else {
    split.test.images = at::empty({0, split.train.channels(), split.train.height(),
                                   split.train.width()},
                                  at::kFloat);
    split.test.labels = at::empty({0}, at::kLong);
  }
  int64_t num_classes = 0;
  if (io::has_key(dict, "num_classes")) {
    num_classes = read_num_classes(dict, path);
  } else {
    for (const at::Tensor& labels : {split.train.labels, split.test.labels}) {
      if (labels.numel() > 0) num_classes = std::max(num_classes, labels.max().item<int64_t>() + 1);
    }
  }
  std::vector<std::string> names = io::has_key(dict, "class_names")
                                       ? read_class_names(dict, path, num_classes)
                                       : numbered_class_names(num_classes);
  for (Dataset* dataset : {&split.train, &split.test}) {
    dataset->num_classes = num_classes;
    dataset->class_names = names;
  }
  // Labels beyond an explicit num_classes are reported with index and value.
  validate(split.train, "'" + path + "' (images/labels)");
  validate(split.test, "'" + path + "' (test_images/test_labels)");
  return split;
}

}  // namespace distill::data
