#include "src/eval/synthetic_set.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/io/image_grid.h"
#include "src/io/tensor_file.h"

namespace distill::eval {

int64_t SyntheticSet::images_per_class() const {
  // Soft labels: the set's budget (images / classes, rounded up), not where the argmax falls: a
  // relabeled set keeps its IPC, and its random-real baseline the same number of images.
  if (soft_labels() && num_classes > 0) return (labels.size(0) + num_classes - 1) / num_classes;
  at::Tensor counts = at::bincount(class_ids().cpu(), {}, num_classes);
  return counts.max().item<int64_t>();
}

at::Tensor SyntheticSet::class_ids() const {
  if (classes.defined() && classes.numel() > 0) return classes;
  return soft_labels() ? labels.argmax(1) : labels;
}

void save_synthetic_set(const std::string& path, const SyntheticSet& set) {
  io::TensorDict dict = io::make_dict();
  dict.insert("images", set.images.detach().cpu().contiguous());
  dict.insert("labels", set.labels.detach().cpu().contiguous());
  dict.insert("num_classes", set.num_classes);
  dict.insert("mean", set.mean.cpu());
  dict.insert("std", set.std.cpu());
  if (set.lr) dict.insert("lr", at::scalar_tensor(*set.lr, at::kFloat));
  if (set.label_temperature) {
    dict.insert("label_temperature", at::scalar_tensor(*set.label_temperature, at::kFloat));
  }
  if (set.zca_eps > 0) dict.insert("zca_eps", at::scalar_tensor(set.zca_eps, at::kFloat));
  dict.insert("dataset", set.dataset);
  dict.insert("method", set.method);
  if (set.has_views()) {
    dict.insert("view_boxes", set.view_boxes.cpu().contiguous());
    dict.insert("view_labels", set.view_labels.detach().cpu().contiguous());
  }
  if (set.classes.defined() && set.classes.numel() > 0) {
    dict.insert("classes", set.classes.cpu().to(at::kLong).contiguous());
  }
  if (set.labels_are_logits) dict.insert("label_form", std::string("logits"));
  io::save_dict(path, dict);
}

SyntheticSet load_synthetic_set(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  SyntheticSet set;
  const at::Tensor stored = io::get_tensor(dict, "images", path);
  // A set holds normalised float images; uint8 pixels (a raw image dump) would be trained on as
  // values 0..255, far outside the data the students are tested on.
  if (!at::isFloatingType(stored.scalar_type())) {
    throw Error("'" + path + "': 'images' should be floating point (normalised pixels, as " +
                "distill and the Python reference save them), found " +
                std::string(c10::toString(stored.scalar_type())) +
                "; convert raw pixels with x.float() / 255 and normalise with the dataset's "
                "mean and std, or import them with distill import");
  }
  set.images = stored.to(at::kFloat);
  if (!at::isfinite(set.images).all().item<bool>()) {
    const int64_t bad = set.images.numel() - at::isfinite(set.images).sum().item<int64_t>();
    throw Error("'" + path + "': 'images' holds " + std::to_string(bad) +
                " non-finite values (NaN or inf)");
  }
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
  if (dict.contains("label_temperature")) {
    const double t = io::get_tensor(dict, "label_temperature", path).item<double>();
    if (!(t > 0)) {
      throw Error("'" + path + "': label_temperature must be > 0, found " + std::to_string(t));
    }
    set.label_temperature = t;
  }
  if (dict.contains("zca_eps")) set.zca_eps = io::get_tensor(dict, "zca_eps", path).item<double>();
  if (dict.contains("dataset") && dict.at("dataset").isString()) set.dataset = dict.at("dataset").toStringRef();
  if (dict.contains("method") && dict.at("method").isString()) set.method = dict.at("method").toStringRef();
  if (dict.contains("label_form")) {
    const c10::IValue& form = dict.at("label_form");
    const std::string found = form.isString() ? form.toStringRef() : form.tagKind();
    if (found != "logits" && found != "probabilities") {
      throw Error("'" + path + "': label_form should be \"logits\" or \"probabilities\", found \"" +
                  found + "\"");
    }
    set.labels_are_logits = found == "logits";
    if (set.labels_are_logits && !set.soft_labels()) {
      throw Error("'" + path + "': label_form is \"logits\" but the labels are class ids, not N," +
                  std::to_string(set.num_classes) + " rows");
    }
  }
  if (dict.contains("classes")) {
    set.classes = io::get_tensor(dict, "classes", path).to(at::kLong);
    if (set.classes.dim() != 1 || set.classes.size(0) != set.images.size(0) ||
        (set.classes.numel() && (set.classes.min().item<int64_t>() < 0 ||
                                 set.classes.max().item<int64_t>() >= set.num_classes))) {
      throw Error("'" + path + "': 'classes' should hold one class in [0, " +
                  std::to_string(set.num_classes) + ") per image (" +
                  std::to_string(set.images.size(0)) + ")");
    }
  }
  if (dict.contains("view_boxes")) {
    set.view_boxes = io::get_tensor(dict, "view_boxes", path).to(at::kLong);
    set.view_labels = io::get_tensor(dict, "view_labels", path).to(at::kFloat);
    const auto& b = set.view_boxes;
    const auto& l = set.view_labels;
    if (b.dim() != 3 || b.size(0) != set.images.size(0) || b.size(2) != 5 || l.dim() != 3 ||
        l.size(0) != b.size(0) || l.size(1) != b.size(1) || l.size(2) != set.num_classes) {
      throw Error("'" + path + "': view_boxes should be N,V,5 and view_labels N,V," +
                  std::to_string(set.num_classes) + " for the " +
                  std::to_string(set.images.size(0)) + " images");
    }
    const int64_t h = set.images.size(2), w = set.images.size(3);
    at::Tensor top = b.select(2, 0), left = b.select(2, 1), ch = b.select(2, 2), cw = b.select(2, 3);
    if (!(top.ge(0).all().item<bool>() && left.ge(0).all().item<bool>() &&
          ch.ge(1).all().item<bool>() && cw.ge(1).all().item<bool>() &&
          (top + ch).le(h).all().item<bool>() && (left + cw).le(w).all().item<bool>())) {
      throw Error("'" + path + "': a view box lies outside the " + std::to_string(h) + "x" +
                  std::to_string(w) + " images");
    }
  }
  return set;
}

std::pair<at::Tensor, at::Tensor> replay_views(const SyntheticSet& set, const at::Tensor& index,
                                               int64_t epoch) {
  if (!set.has_views()) throw Error("replay_views: the set stores no views");
  const int64_t view = epoch % set.view_boxes.size(1);
  at::Tensor cpu_index = index.to(at::kCPU);
  at::Tensor boxes = set.view_boxes.index_select(0, cpu_index).select(1, view);
  at::Tensor images = set.images.index_select(0, index.to(set.images.device()));
  at::Tensor labels = set.view_labels.index_select(0, index.to(set.view_labels.device())).select(1, view);
  return {crop_resize_flip(images, boxes), labels};
}

void save_set_grid(const std::string& path, const SyntheticSet& set, const data::Zca* zca) {
  // One column per class, one row per image of that class (as MTT's figures); gaps stay white.
  // Images are un-whitened and denormalized a chunk at a time, so the float copies stay small
  // (a Tiny-ImageNet set at IPC 100 is 1 GB of floats; its grid is a quarter of that in bytes).
  at::Tensor ids = set.class_ids().to(at::kCPU, at::kLong).contiguous();
  const int64_t classes = std::max<int64_t>(1, set.num_classes);
  const int64_t rows =
      std::max<int64_t>(1, at::bincount(ids, {}, classes).max().item<int64_t>());
  const at::Tensor& images = set.images;
  io::ImageGrid grid(rows * classes, classes, images.size(1), images.size(2), images.size(3));
  std::vector<int64_t> filled(classes, 0);
  const auto* id = ids.data_ptr<int64_t>();
  constexpr int64_t kChunk = 256;
  for (int64_t begin = 0; begin < images.size(0); begin += kChunk) {
    const int64_t n = std::min(kChunk, images.size(0) - begin);
    at::Tensor chunk = images.narrow(0, begin, n).detach().to(at::kCPU, at::kFloat);
    if (set.zca_eps > 0 && zca && zca->fitted()) chunk = zca->inverse(chunk);
    chunk = io::denormalize(chunk, set.mean, set.std);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t c = id[begin + i];
      grid.place(filled[c]++ * classes + c, chunk[i]);
    }
  }
  grid.save(path);
}

}  // namespace distill::eval
