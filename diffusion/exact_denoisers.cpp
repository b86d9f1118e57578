#include "diffusion/exact_denoisers.h"

#include <ATen/ATen.h>

#include <cmath>

#include "src/core/error.h"

namespace distill::diffusion {
namespace {

void check_levels(const at::Tensor& x, const at::Tensor& sigma, const char* who) {
  if (sigma.dim() != 1 || sigma.size(0) != x.size(0)) {
    throw Error(std::string(who) + ": sigma must hold one noise level per sample (" +
                std::to_string(x.size(0)) + "), found shape " + c10::str(sigma.sizes()));
  }
}

}  // namespace

FiniteSetDenoiser::FiniteSetDenoiser(at::Tensor data) {
  if (data.dim() < 1 || data.size(0) < 1) {
    throw Error("finite-set denoiser: needs at least one training point");
  }
  item_shape_.assign(data.sizes().begin() + 1, data.sizes().end());
  data_ = data.reshape({data.size(0), -1}).contiguous();
  half_norm_ = data_.pow(2).sum(1) / 2;
}

at::Tensor FiniteSetDenoiser::weights(const at::Tensor& x, const at::Tensor& sigma) const {
  check_levels(x, sigma, "finite-set denoiser");
  at::Tensor flat = x.reshape({x.size(0), -1}).to(data_.scalar_type());
  // -|x - y|^2 / (2 s^2) up to a per-row constant (|x|^2), which the softmax ignores.
  at::Tensor logits = (at::matmul(flat, data_.t()) - half_norm_) /
                      sigma.to(data_.scalar_type()).pow(2).unsqueeze(1);
  return at::softmax(logits, 1);
}

at::Tensor FiniteSetDenoiser::operator()(const at::Tensor& x, const at::Tensor& sigma) const {
  return at::matmul(weights(x, sigma), data_).reshape(x.sizes()).to(x.scalar_type());
}

GaussianMixture::GaussianMixture(at::Tensor weights, at::Tensor means, at::Tensor covariances) {
  if (weights.dim() != 1 || means.dim() != 2 || covariances.dim() != 3 ||
      means.size(0) != weights.size(0) || covariances.size(0) != weights.size(0) ||
      covariances.size(1) != means.size(1) || covariances.size(2) != means.size(1)) {
    throw Error("gaussian mixture: expected weights K, means K x D, covariances K x D x D; found " +
                c10::str(weights.sizes()) + ", " + c10::str(means.sizes()) + ", " +
                c10::str(covariances.sizes()));
  }
  if ((weights < 0).any().item<bool>() || weights.sum().item<double>() <= 0) {
    throw Error("gaussian mixture: weights must be >= 0 with a positive sum");
  }
  weights_ = weights / weights.sum();
  means_ = means;
  covariances_ = covariances;
}

void GaussianMixture::solve(const at::Tensor& x, const at::Tensor& sigma, at::Tensor& log_density,
                            at::Tensor& solved) const {
  check_levels(x, sigma, "gaussian mixture");
  const int64_t d = means_.size(1);
  at::Tensor eye = at::eye(d, means_.options());
  at::Tensor s = sigma.to(means_.scalar_type());
  at::Tensor diff = x.to(means_.scalar_type()).unsqueeze(1) - means_.unsqueeze(0);  // N x K x D
  at::Tensor chol;
  if (s.numel() > 0 && (s == s[0]).all().item<bool>()) {
    // Samplers use one level for the whole batch: K factorizations instead of N x K.
    chol = at::linalg_cholesky(covariances_ + s[0].pow(2) * eye).unsqueeze(0);  // 1 x K x D x D
  } else {
    chol = at::linalg_cholesky(covariances_.unsqueeze(0) + s.pow(2).view({-1, 1, 1, 1}) * eye);
  }
  solved = at::cholesky_solve(diff.unsqueeze(-1), chol.expand({diff.size(0), -1, -1, -1}))
               .squeeze(-1);
  at::Tensor logdet = 2 * chol.diagonal(0, -2, -1).log().sum(-1);  // (1 or N) x K
  log_density = -0.5 * ((diff * solved).sum(-1) + logdet + d * std::log(2 * M_PI));
}

at::Tensor GaussianMixture::responsibilities(const at::Tensor& x, const at::Tensor& sigma) const {
  at::Tensor log_density, solved;
  solve(x, sigma, log_density, solved);
  return at::softmax(log_density + weights_.log().unsqueeze(0), 1);
}

at::Tensor GaussianMixture::operator()(const at::Tensor& x, const at::Tensor& sigma) const {
  at::Tensor log_density, solved;
  solve(x, sigma, log_density, solved);
  at::Tensor r = at::softmax(log_density + weights_.log().unsqueeze(0), 1);  // N x K
  // Per component: mu_k + Sigma_k (Sigma_k + s^2 I)^-1 (x - mu_k).
  at::Tensor posterior =
      means_.unsqueeze(0) + at::matmul(covariances_.unsqueeze(0), solved.unsqueeze(-1)).squeeze(-1);
  return (r.unsqueeze(-1) * posterior).sum(1).to(x.scalar_type());
}

at::Tensor GaussianMixture::sample(int64_t n, at::Generator& generator) const {
  // Drawn on the generator's device, then moved (diffusion/noise.h): a CUDA mixture draws what
  // a CPU one draws, and a CPU generator never fills a CUDA tensor.
  const c10::Device device = means_.device();
  at::Tensor k =
      at::multinomial(weights_.to(generator.device()), n, /*replacement=*/true, generator).to(device);
  at::Tensor chol = at::linalg_cholesky(covariances_);
  at::Tensor noise =
      at::randn({n, means_.size(1), 1}, generator, means_.options().device(generator.device()))
          .to(device);
  return means_.index_select(0, k) + at::matmul(chol.index_select(0, k), noise).squeeze(-1);
}

at::Tensor GaussianMixture::mean() const { return at::matmul(weights_, means_); }

at::Tensor GaussianMixture::covariance() const {
  at::Tensor m = mean();
  at::Tensor second = covariances_ + means_.unsqueeze(2) * means_.unsqueeze(1);
  return (weights_.view({-1, 1, 1}) * second).sum(0) - at::outer(m, m);
}

}  // namespace distill::diffusion
