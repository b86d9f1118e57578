#include "src/kd/nd_loss.h"

#include <ATen/ATen.h>

#include "src/core/error.h"

namespace distill::kd {

at::Tensor nd_loss(const at::Tensor& student, const at::Tensor& teacher,
                   const at::Tensor& class_means, const at::Tensor& labels) {
  if (labels.scalar_type() != at::kLong) {
    throw Error("nd needs int64 class ids (the class mean each feature is pulled toward)");
  }
  const at::Tensor s = student.flatten(1);
  const at::Tensor t = teacher.detach().flatten(1).to(s.scalar_type());
  if (s.size(1) != t.size(1) || class_means.size(1) != s.size(1)) {
    throw Error("nd: student, teacher and class-mean features must have the same size, found " +
                std::to_string(s.size(1)) + ", " + std::to_string(t.size(1)) + " and " +
                std::to_string(class_means.size(1)));
  }
  const at::Tensor means = class_means.detach().to(s.scalar_type());
  const at::Tensor direction = means.index_select(0, labels) /
                               means.index_select(0, labels).norm(2, {1}, true);
  const at::Tensor scale = at::maximum(s.norm(2, {1}), t.norm(2, {1}));
  return (1 - (s * direction).sum(1) / scale).mean();
}

at::Tensor class_mean_features(const Teacher& teacher, const std::string& layer,
                               const at::Tensor& images, const at::Tensor& labels,
                               int64_t num_classes, int64_t batch_size) {
  at::Tensor sums, counts = at::zeros({num_classes}, at::kDouble);
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    const int64_t n = std::min(batch_size, images.size(0) - start);
    models::Features features;
    at::Tensor logits = teacher.forward(images.narrow(0, start, n), &features);
    at::Tensor feature;
    if (layer == "logits") {
      feature = logits;
    } else {
      for (const auto& [name, value] : features) {
        if (name == layer) feature = value;
      }
      if (!feature.defined()) throw Error("nd: the teacher reports no feature '" + layer + "'");
    }
    feature = feature.flatten(1).to(at::kDouble).cpu();
    const at::Tensor y = labels.narrow(0, start, n).cpu();
    if (!sums.defined()) sums = at::zeros({num_classes, feature.size(1)}, at::kDouble);
    sums.index_add_(0, y, feature);
    counts.index_add_(0, y, at::ones({n}, at::kDouble));
  }
  for (int64_t c = 0; c < num_classes; ++c) {
    if (counts[c].item<double>() == 0) {
      throw Error("nd: class " + std::to_string(c) +
                  " has no training image to take the teacher's class mean from");
    }
  }
  return (sums / counts.unsqueeze(1)).to(at::kFloat).to(images.device());
}

}  // namespace distill::kd
