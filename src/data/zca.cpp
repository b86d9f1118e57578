#include "src/data/zca.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "src/core/error.h"

namespace distill::data {
namespace {

// Rows converted to double at a time: a whole CIFAR-10 training set in double would take 1.2 GB.
constexpr int64_t kChunkRows = 2048;

}  // namespace

Zca Zca::fit(const at::Tensor& images, double eps) {
  if (!images.defined() || images.dim() < 2 || images.size(0) < 2) {
    throw Error("zca: fitting needs at least 2 images (N,...), found " +
                (images.defined() ? "shape " + c10::str(images.sizes())
                                  : std::string("an undefined tensor")));
  }
  if (!(eps >= 0.0)) throw Error("zca: eps must be >= 0, found " + std::to_string(eps));
  const int64_t n = images.size(0);
  at::Tensor flat = images.reshape({n, -1});
  const int64_t d = flat.size(1);
  auto double_options = at::TensorOptions().dtype(at::kDouble).device(images.device());

  at::Tensor mean = at::zeros({d}, double_options);
  for (int64_t start = 0; start < n; start += kChunkRows) {
    int64_t rows = std::min(kChunkRows, n - start);
    mean += flat.narrow(0, start, rows).to(at::kDouble).sum(0);
  }
  mean /= static_cast<double>(n);

  // Unbiased covariance of the centred images, accumulated chunk by chunk.
  at::Tensor cov = at::zeros({d, d}, double_options);
  for (int64_t start = 0; start < n; start += kChunkRows) {
    int64_t rows = std::min(kChunkRows, n - start);
    at::Tensor centred = flat.narrow(0, start, rows).to(at::kDouble) - mean;
    cov.addmm_(centred.t(), centred);
  }
  cov /= static_cast<double>(n - 1);

  // C is symmetric positive semi-definite, so its eigendecomposition is its SVD (kornia uses
  // the SVD). Tiny negative eigenvalues from rounding are clamped to 0 before adding eps.
  auto [s, u] = at::linalg_eigh(cov);
  at::Tensor s_eps = s.clamp_min(0.0) + eps;
  at::Tensor w = at::mm(u * s_eps.rsqrt().unsqueeze(0), u.t());
  at::Tensor w_inv = at::mm(u * s_eps.sqrt().unsqueeze(0), u.t());

  Zca zca;
  zca.eps_ = eps;
  zca.mean_ = mean.to(at::kFloat).view(images.sizes().slice(1));
  zca.transform_ = w.to(at::kFloat);
  zca.inverse_ = w_inv.to(at::kFloat);
  return zca;
}

at::Tensor Zca::flatten_checked(const at::Tensor& images, const char* what) const {
  if (!fitted()) throw Error(std::string("zca: ") + what + " before fit or load");
  if (!images.defined() || images.dim() != mean_.dim() + 1 ||
      images.sizes().slice(1) != mean_.sizes()) {
    throw Error(std::string("zca: ") + what + " expects images of shape N," +
                c10::str(mean_.sizes()) + " (as fitted), found " +
                (images.defined() ? c10::str(images.sizes()) : std::string("undefined")));
  }
  return images.reshape({images.size(0), -1}).to(at::kFloat);
}

at::Tensor Zca::apply(const at::Tensor& images) const {
  at::Tensor flat = flatten_checked(images, "apply");
  auto device = images.device();
  at::Tensor out = at::mm(flat - mean_.reshape({1, -1}).to(device), transform_.to(device));
  return out.view(images.sizes());
}

at::Tensor Zca::inverse(const at::Tensor& images) const {
  at::Tensor flat = flatten_checked(images, "inverse");
  auto device = images.device();
  at::Tensor out = at::addmm(mean_.reshape({1, -1}).to(device), flat, inverse_.to(device));
  return out.view(images.sizes());
}

void Zca::to_dict(io::TensorDict& dict) const {
  if (!fitted()) throw Error("zca: nothing to save before fit or load");
  dict.insert_or_assign("zca_mean", mean_);
  dict.insert_or_assign("zca_transform", transform_);
  dict.insert_or_assign("zca_inverse", inverse_);
  dict.insert_or_assign("zca_eps", at::scalar_tensor(eps_, at::kDouble));
}

Zca Zca::from_dict(const io::TensorDict& dict, const std::string& file) {
  Zca zca;
  zca.mean_ = io::get_tensor(dict, "zca_mean", file).to(at::kFloat);
  zca.transform_ = io::get_tensor(dict, "zca_transform", file).to(at::kFloat);
  zca.inverse_ = io::get_tensor(dict, "zca_inverse", file).to(at::kFloat);
  zca.eps_ = io::get_tensor(dict, "zca_eps", file).item<double>();
  const int64_t d = zca.mean_.numel();
  for (const auto& [key, matrix] : {std::pair<const char*, const at::Tensor&>{"zca_transform",
                                                                            zca.transform_},
                                    {"zca_inverse", zca.inverse_}}) {
    if (matrix.dim() != 2 || matrix.size(0) != d || matrix.size(1) != d) {
      throw Error("'" + file + "': key '" + key + "' should be a " + std::to_string(d) + "x" +
                  std::to_string(d) + " matrix (zca_mean has " + std::to_string(d) +
                  " entries), found shape " + c10::str(matrix.sizes()));
    }
  }
  return zca;
}

void Zca::save(const std::string& path) const {
  io::TensorDict dict = io::make_dict();
  to_dict(dict);
  io::save_dict(path, dict);
}

Zca Zca::load(const std::string& path) { return from_dict(io::load_dict(path), path); }

}  // namespace distill::data
