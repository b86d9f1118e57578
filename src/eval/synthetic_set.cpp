#include "src/eval/synthetic_set.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/io/image_grid.h"
#include "src/io/tensor_file.h"

namespace distill::eval {

int64_t SyntheticSet::images_per_class() const {
  at::Tensor counts = at::bincount(class_ids().cpu(), {}, num_classes);
  return counts.max().item<int64_t>();
}

at::Tensor SyntheticSet::class_ids() const { return soft_labels() ? labels.argmax(1) : labels; }

void save_synthetic_set(const std::string& path, const SyntheticSet& set) {
  io::TensorDict dict = io::make_dict();
  dict.insert("images", set.images.detach().cpu().contiguous());
  dict.insert("labels", set.labels.detach().cpu().contiguous());
  dict.insert("num_classes", set.num_classes);
  dict.insert("mean", set.mean.cpu());
  dict.insert("std", set.std.cpu());
  if (set.lr) dict.insert("lr", at::scalar_tensor(*set.lr, at::kFloat));
  if (set.zca_eps > 0) dict.insert("zca_eps", at::scalar_tensor(set.zca_eps, at::kFloat));
  dict.insert("dataset", set.dataset);
  dict.insert("method", set.method);
  io::save_dict(path, dict);
}

SyntheticSet load_synthetic_set(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  SyntheticSet set;
  set.images = io::get_tensor(dict, "images", path).to(at::kFloat);
  at::Tensor labels = io::get_tensor(dict, "labels", path);
  set.labels = at::isFloatingType(labels.scalar_type()) && labels.dim() == 2 ? labels.to(at::kFloat)
                                                                              : labels.to(at::kLong);
  if (set.images.dim() != 4) {
    throw Error("'" + path + "': 'images' should be N,C,H,W, found " +
                std::to_string(set.images.dim()) + " dimensions");
  }
  if (set.labels.size(0) != set.images.size(0)) {
    throw Error("'" + path + "': " + std::to_string(set.images.size(0)) + " images but " +
                std::to_string(set.labels.size(0)) + " labels");
  }
  if (dict.contains("num_classes") && dict.at("num_classes").isInt()) {
    set.num_classes = dict.at("num_classes").toInt();
  } else if (set.soft_labels()) {
    set.num_classes = set.labels.size(1);
  } else {
    set.num_classes = set.labels.numel() ? set.labels.max().item<int64_t>() + 1 : 0;
  }
  if (set.soft_labels() && set.labels.size(1) != set.num_classes) {
    throw Error("'" + path + "': soft labels have " + std::to_string(set.labels.size(1)) +
                " columns but num_classes is " + std::to_string(set.num_classes));
  }
  if (!set.soft_labels() && set.labels.numel() &&
      (set.labels.min().item<int64_t>() < 0 || set.labels.max().item<int64_t>() >= set.num_classes)) {
    throw Error("'" + path + "': labels must lie in [0, " + std::to_string(set.num_classes) +
                "), found " + std::to_string(set.labels.min().item<int64_t>()) + ".." +
                std::to_string(set.labels.max().item<int64_t>()));
  }
  const int64_t channels = set.images.size(1);
  set.mean = dict.contains("mean") ? io::get_tensor(dict, "mean", path).to(at::kFloat)
                                   : at::zeros({channels});
  set.std = dict.contains("std") ? io::get_tensor(dict, "std", path).to(at::kFloat)
                                 : at::ones({channels});
  if (dict.contains("lr")) set.lr = io::get_tensor(dict, "lr", path).item<double>();
  if (dict.contains("zca_eps")) set.zca_eps = io::get_tensor(dict, "zca_eps", path).item<double>();
  if (dict.contains("dataset") && dict.at("dataset").isString()) set.dataset = dict.at("dataset").toStringRef();
  if (dict.contains("method") && dict.at("method").isString()) set.method = dict.at("method").toStringRef();
  return set;
}

void save_set_grid(const std::string& path, const SyntheticSet& set, const data::Zca* zca) {
  // One column per class, one row per image of that class (as MTT's figures); gaps stay white.
  at::Tensor ids = set.class_ids().cpu();
  at::Tensor images = set.images.detach().cpu();
  if (set.zca_eps > 0 && zca && zca->fitted()) images = zca->inverse(images);
  images = io::denormalize(images, set.mean, set.std);
  const int64_t classes = std::max<int64_t>(1, set.num_classes);
  const int64_t rows = std::max<int64_t>(1, set.images_per_class());
  at::Tensor grid = at::ones({rows * classes, images.size(1), images.size(2), images.size(3)});
  std::vector<int64_t> filled(classes, 0);
  for (int64_t i = 0; i < images.size(0); ++i) {
    int64_t c = ids[i].item<int64_t>();
    grid[filled[c]++ * classes + c].copy_(images[i]);
  }
  io::save_image_grid(path, grid, classes);
}

}  // namespace distill::eval
