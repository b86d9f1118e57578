#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace distill::diffusion {

// Exact teachers: the optimal denoisers E[x0 | x0 + sigma n = x] of known distributions, so
// samplers and distillation can be checked against closed forms without training anything.
// Both satisfy the Denoiser signature (denoiser.h) and work in the dtype of their data.

// The empirical distribution of `data` (M x ...): E[x0 | x] = sum_i w_i y_i with
// w = softmax_i(-|x - y_i|^2 / (2 sigma^2)) (the ideal denoiser of Karras et al. 2022). Sampling with it
// reproduces training points; it is the ideal a network trained on `data` approaches.
class FiniteSetDenoiser {
 public:
  explicit FiniteSetDenoiser(at::Tensor data);
  at::Tensor operator()(const at::Tensor& x, const at::Tensor& sigma) const;
  // The posterior weights N x M of the training points.
  at::Tensor weights(const at::Tensor& x, const at::Tensor& sigma) const;
  const at::Tensor& data() const { return data_; }

 private:
  at::Tensor data_;       // M x P (flattened)
  at::Tensor half_norm_;  // |y_i|^2 / 2
  std::vector<int64_t> item_shape_;
};

// A Gaussian mixture sum_k w_k N(mu_k, Sigma_k) in D dimensions. Its noisy marginal is
// sum_k w_k N(mu_k, Sigma_k + sigma^2 I) and the posterior mean given component k is
// mu_k + Sigma_k (Sigma_k + sigma^2 I)^-1 (x - mu_k); the denoiser weighs these by the
// components' posterior probabilities.
class GaussianMixture {
 public:
  // weights K (normalised here), means K x D, covariances K x D x D (symmetric positive definite).
  GaussianMixture(at::Tensor weights, at::Tensor means, at::Tensor covariances);

  at::Tensor operator()(const at::Tensor& x, const at::Tensor& sigma) const;  // x: N x D
  // Posterior component probabilities N x K of noisy points at levels sigma.
  at::Tensor responsibilities(const at::Tensor& x, const at::Tensor& sigma) const;
  // n exact samples N x D.
  at::Tensor sample(int64_t n, at::Generator& generator) const;
  at::Tensor mean() const;        // D
  at::Tensor covariance() const;  // D x D

  const at::Tensor& weights() const { return weights_; }
  const at::Tensor& means() const { return means_; }
  const at::Tensor& covariances() const { return covariances_; }

 private:
  // Per sample and component: log N(x; mu_k, Sigma_k + s^2 I) and (Sigma_k + s^2 I)^-1 (x - mu_k).
  void solve(const at::Tensor& x, const at::Tensor& sigma, at::Tensor& log_density,
             at::Tensor& solved) const;
  at::Tensor weights_, means_, covariances_;
};

}  // namespace distill::diffusion
