#pragma once
#include <ATen/core/Tensor.h>

#include <string>

#include "diffusion/denoiser.h"
#include "src/config/options.h"

namespace distill::diffusion {

// What a network predicts. In variance-preserving notation z = alpha x + sigma eps (any alpha,
// sigma > 0 here, not only alpha^2 + sigma^2 = 1), with v = alpha eps - sigma x (Progressive
// Distillation, Salimans & Ho 2022, sec. 4):
//   eps: x = (z - sigma eps) / alpha
//   x:   x itself
//   v:   x = (alpha z - sigma v) / (alpha^2 + sigma^2)
enum class Prediction { kEps, kX, kV };

// "eps" | "x" | "v"; anything else is an Error naming `key`.
Prediction parse_prediction(const std::string& name, const std::string& key);

// Shapes a per-sample tensor (N) to broadcast against `like` (N x ...): N x 1 x ... x 1.
at::Tensor per_sample(const at::Tensor& values, const at::Tensor& like);

// Conversions; alpha and sigma must broadcast against z (see per_sample).
at::Tensor x_from_prediction(Prediction kind, const at::Tensor& prediction, const at::Tensor& z,
                             const at::Tensor& alpha, const at::Tensor& sigma);
at::Tensor eps_from_prediction(Prediction kind, const at::Tensor& prediction, const at::Tensor& z,
                               const at::Tensor& alpha, const at::Tensor& sigma);
// The prediction target for a known clean x and noise eps.
at::Tensor prediction_from_x_eps(Prediction kind, const at::Tensor& x, const at::Tensor& eps,
                                 const at::Tensor& alpha, const at::Tensor& sigma);

// Scalings D(x, s) = c_skip x + c_out F(c_in x, c_noise) for EDM noise levels s (shape N).
struct Preconditioning {
  at::Tensor c_skip, c_out, c_in, c_noise;
};
// EDM Table 1: c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
// c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(s) / 4.
Preconditioning edm_preconditioning(const at::Tensor& sigma, double sigma_data);
// Consistency models (Song et al. 2023, sec. 3): c_skip = sd^2 / ((s - e)^2 + sd^2),
// c_out = sd (s - e) / sqrt(s^2 + sd^2), so f(x, e) = x exactly at e = sigma_min; c_in and
// c_noise as EDM.
Preconditioning consistency_preconditioning(const at::Tensor& sigma, double sigma_data,
                                            double sigma_min);

// How a network's output becomes a denoised x0, chosen by name in TOML.
struct PreconditionOptions {
  std::string output = "edm";
  double sigma_data = 0.5;
  double sigma_min = 0.002;

  void visit(config::Visitor& v) {
    v.choice("output", output,
             "what the network predicts: eps, x or v (its input is the VP point "
             "z = x / sqrt(1 + sigma^2)), edm (EDM preconditioning) or consistency (consistency "
             "model skip/out scalings, f(x, sigma_min) = x)",
             {"eps", "x", "v", "edm", "consistency"});
    v.field("sigma_data", sigma_data, "edm, consistency: standard deviation of the data",
            config::Range::above(0));
    v.field("sigma_min", sigma_min, "consistency: the noise level where f is the identity");
  }
};

// A Denoiser from a raw network. eps/x/v view an EDM point x at level s as the VP point
// z = alpha x with alpha = 1 / sqrt(1 + s^2), sigma = s alpha (unit data scale, as in PD); every
// output kind conditions the network on c_noise = ln(s) / 4 (= -logsnr / 8).
Denoiser precondition(Network network, const PreconditionOptions& options);

}  // namespace distill::diffusion
