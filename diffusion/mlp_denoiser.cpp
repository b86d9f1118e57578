#include "diffusion/mlp_denoiser.h"

#include <ATen/ATen.h>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {

MlpDenoiserNet::MlpDenoiserNet(int64_t dim, MlpDenoiserOptions options)
    : dim_(dim), options_(std::move(options)) {
  arch_ = "mlp_denoiser";
  if (dim < 1) throw Error("mlp denoiser: data dimension must be >= 1, found " + std::to_string(dim));
  config::check(options_, "diffusion.model.mlp");  // the declared ranges and rules
  int64_t in = dim + 1 + 2 * options_.frequencies;
  int64_t index = 0;
  for (int64_t width : options_.hidden) {
    add_linear("layers." + std::to_string(index++), in, width);
    in = width;
  }
  add_linear("layers." + std::to_string(index), in, dim);
}

at::Tensor MlpDenoiserNet::forward(const at::Tensor& x, const at::Tensor& params,
                                   const models::ForwardArgs& args) const {
  if (x.dim() != 2 || x.size(1) != dim_ + 1) {
    throw Error("mlp denoiser: expected input N x " + std::to_string(dim_ + 1) + ", found " +
                c10::str(x.sizes()));
  }
  models::TensorCursor p(params, param_specs());
  at::Tensor c = x.narrow(1, dim_, 1);
  std::vector<at::Tensor> parts = {x};
  if (options_.frequencies > 0) {
    at::Tensor scaled =
        c * at::pow(2.0, at::arange(options_.frequencies, x.options())).unsqueeze(0);
    parts.push_back(at::sin(scaled));
    parts.push_back(at::cos(scaled));
  }
  at::Tensor h = at::cat(parts, 1);
  for (size_t i = 0; i < options_.hidden.size(); ++i) h = at::silu(linear(h, p));
  return linear(h, p);
}

Network MlpDenoiserNet::network(const at::Tensor& params) const {
  return [this, params](const at::Tensor& input, const at::Tensor& c_noise) {
    return forward(at::cat({input, c_noise.unsqueeze(1).to(input.scalar_type())}, 1), params);
  };
}

}  // namespace distill::diffusion
