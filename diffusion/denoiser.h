#pragma once
#include <ATen/core/Tensor.h>

#include <functional>

namespace distill::diffusion {

// The one interface samplers and distillation methods call: D(x, sigma) estimates the clean
// x0 = E[x0 | x] from a noisy x = x0 + sigma * n (EDM's denoiser). x is N x ..., sigma holds one
// noise level per sample (shape N). Exact teachers (finite set, Gaussian mixture), an MLP and a
// U-Net all plug in as this callable.
using Denoiser = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& sigma)>;

// A raw network: input N x ... and a noise conditioning c_noise (shape N) -> output N x ...
// precondition() (parameterization.h) turns it into a Denoiser for a prediction target.
using Network = std::function<at::Tensor(const at::Tensor& input, const at::Tensor& c_noise)>;

}  // namespace distill::diffusion
