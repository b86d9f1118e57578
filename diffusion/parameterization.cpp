#include "diffusion/parameterization.h"

#include <ATen/ATen.h>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {

Prediction parse_prediction(const std::string& name, const std::string& key) {
  if (name == "eps") return Prediction::kEps;
  if (name == "x") return Prediction::kX;
  if (name == "v") return Prediction::kV;
  throw Error(key + ": unknown prediction '" + name + "' (expected eps, x or v)");
}

at::Tensor per_sample(const at::Tensor& values, const at::Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = like.size(0);
  return values.reshape(shape);
}

at::Tensor x_from_prediction(Prediction kind, const at::Tensor& p, const at::Tensor& z,
                             const at::Tensor& alpha, const at::Tensor& sigma) {
  switch (kind) {
    case Prediction::kEps:
      return (z - sigma * p) / alpha;
    case Prediction::kX:
      return p;
    case Prediction::kV:
      return (alpha * z - sigma * p) / (alpha * alpha + sigma * sigma);
  }
  throw Error("unreachable prediction kind");
}

at::Tensor eps_from_prediction(Prediction kind, const at::Tensor& p, const at::Tensor& z,
                               const at::Tensor& alpha, const at::Tensor& sigma) {
  switch (kind) {
    case Prediction::kEps:
      return p;
    case Prediction::kX:
      return (z - alpha * p) / sigma;
    case Prediction::kV:
      return (sigma * z + alpha * p) / (alpha * alpha + sigma * sigma);
  }
  throw Error("unreachable prediction kind");
}

at::Tensor prediction_from_x_eps(Prediction kind, const at::Tensor& x, const at::Tensor& eps,
                                 const at::Tensor& alpha, const at::Tensor& sigma) {
  switch (kind) {
    case Prediction::kEps:
      return eps;
    case Prediction::kX:
      return x;
    case Prediction::kV:
      return alpha * eps - sigma * x;
  }
  throw Error("unreachable prediction kind");
}

Preconditioning edm_preconditioning(const at::Tensor& sigma, double sigma_data) {
  const double sd2 = sigma_data * sigma_data;
  at::Tensor norm = (sigma * sigma + sd2).sqrt();
  return {sd2 / (sigma * sigma + sd2), sigma * sigma_data / norm, 1.0 / norm, sigma.log() / 4.0};
}

Preconditioning consistency_preconditioning(const at::Tensor& sigma, double sigma_data,
                                            double sigma_min) {
  const double sd2 = sigma_data * sigma_data;
  at::Tensor shifted = sigma - sigma_min;
  at::Tensor norm = (sigma * sigma + sd2).sqrt();
  return {sd2 / (shifted * shifted + sd2), sigma_data * shifted / norm, 1.0 / norm,
          sigma.log() / 4.0};
}

Denoiser precondition(Network network, const PreconditionOptions& o) {
  config::check(o, "diffusion.model.precondition");  // the declared ranges (PreconditionOptions)
  if (o.output == "edm" || o.output == "consistency") {
    const bool consistency = o.output == "consistency";
    return [network, o, consistency](const at::Tensor& x, const at::Tensor& sigma) {
      Preconditioning c = consistency
                              ? consistency_preconditioning(sigma, o.sigma_data, o.sigma_min)
                              : edm_preconditioning(sigma, o.sigma_data);
      at::Tensor f = network(per_sample(c.c_in, x) * x, c.c_noise);
      return per_sample(c.c_skip, x) * x + per_sample(c.c_out, x) * f;
    };
  }
  const Prediction kind = parse_prediction(o.output, "precondition.output");
  return [network, kind](const at::Tensor& x, const at::Tensor& sigma) {
    at::Tensor alpha = per_sample((1.0 + sigma * sigma).rsqrt(), x);
    at::Tensor s = per_sample(sigma, x) * alpha;
    at::Tensor z = alpha * x;
    return x_from_prediction(kind, network(z, sigma.log() / 4.0), z, alpha, s);
  };
}

}  // namespace distill::diffusion
