#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "src/config/options.h"
#include "src/models/model.h"

namespace distill::diffusion {

// A small fully connected denoiser network for low-dimensional toy data (2-D mixtures).
struct MlpDenoiserOptions {
  std::vector<int64_t> hidden = {128, 128, 128};
  int64_t frequencies = 8;  // Fourier features of c_noise: sin/cos at 2^0 .. 2^(frequencies-1)

  void visit(config::Visitor& v) {
    v.field("hidden", hidden, "mlp denoiser: hidden layer sizes (SiLU)");
    const auto empty_layer =
        std::find_if(hidden.begin(), hidden.end(), [](int64_t width) { return width < 1; });
    const bool layers_ok = empty_layer == hidden.end();
    v.rule(layers_ok, "mlp.hidden: every layer size must be >= 1" +
                          (layers_ok ? "" : ", found " + std::to_string(*empty_layer)));
    v.field("frequencies", frequencies, "mlp denoiser: sin/cos pairs embedding the noise level",
            config::Range::at_least(0));
  }
};

// F(input, c_noise): input N x dim and [c_noise, sin(2^j c_noise), cos(2^j c_noise)] concatenated,
// through SiLU hidden layers, out N x dim. A functional model like src/models: one flat parameter
// tensor (PyTorch's default init), so distillation can train or copy it as one vector.
class MlpDenoiserNet : public models::Model {
 public:
  MlpDenoiserNet(int64_t dim, MlpDenoiserOptions options);

  // x: N x (dim + 1), the input point with c_noise as its last column.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const models::ForwardArgs& args = {}) const override;
  std::vector<std::string> feature_names() const override { return {}; }

  // The raw network for precondition(): params are captured (they may require grad).
  Network network(const at::Tensor& params) const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
  MlpDenoiserOptions options_;
};

}  // namespace distill::diffusion
