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
  if (dict.contains("dataset") && dict.at("dataset").isString()) set.dataset = dict.at("dataset").toStringRef();
  if (dict.contains("method") && dict.at("method").isString()) set.method = dict.at("method").toStringRef();
  return set;
}

void save_set_grid(const std::string& path, const SyntheticSet& set) {
  at::Tensor order = at::argsort(set.class_ids().cpu() * set.images.size(0) +
                                 at::arange(set.images.size(0)));
  at::Tensor images = io::denormalize(set.images.detach().cpu().index_select(0, order), set.mean,
                                      set.std);
  io::save_image_grid(path, images, std::max<int64_t>(1, set.images_per_class()));
}

}  // namespace distill::eval
