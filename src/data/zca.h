#pragma once
#include <ATen/core/Tensor.h>

#include <string>

#include "src/io/tensor_file.h"

namespace distill::data {

// ZCA whitening as the MTT reference applies it to CIFAR (kornia's ZCAWhitening with eps = 0.1):
// with mu the mean image and C = (X - mu)^T (X - mu) / (N - 1) the unbiased covariance of the
// flattened training images, and C = U diag(s) U^T,
//   W     = U diag(1 / sqrt(s + eps)) U^T   (whitening),
//   W^-1  = U diag(sqrt(s + eps)) U^T       (its inverse, for display),
//   apply(x) = (x - mu) W,  inverse(z) = z W^-1 + mu   (per flattened image).
// The statistics and the eigendecomposition are computed in double precision; the stored mean and
// matrices, and every output, are float.
class Zca {
 public:
  Zca() = default;

  // images: N,... (N >= 2), flattened per image. Error when there are too few images or eps < 0.
  static Zca fit(const at::Tensor& images, double eps = 0.1);

  // images: M,... with the fitted per-image shape; returns float tensors of the same shape, on
  // the images' device.
  at::Tensor apply(const at::Tensor& images) const;
  at::Tensor inverse(const at::Tensor& images) const;

  bool fitted() const { return mean_.defined(); }
  double eps() const { return eps_; }
  const at::Tensor& mean() const { return mean_; }                 // per-image shape, float
  const at::Tensor& transform() const { return transform_; }       // D,D float
  const at::Tensor& inverse_transform() const { return inverse_; }  // D,D float

  // Keys "zca_mean", "zca_transform", "zca_inverse", "zca_eps", so they can share a dict with
  // other tensors of a run. from_dict's errors name `file` and the missing or mismatched key.
  void to_dict(io::TensorDict& dict) const;
  static Zca from_dict(const io::TensorDict& dict, const std::string& file);
  void save(const std::string& path) const;
  static Zca load(const std::string& path);

 private:
  at::Tensor flatten_checked(const at::Tensor& images, const char* what) const;

  double eps_ = 0.0;
  at::Tensor mean_, transform_, inverse_;
};

}  // namespace distill::data
