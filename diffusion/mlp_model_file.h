#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"

namespace distill::diffusion {

// MINIMAL MODEL FILE (branch pdcd, interim): an MLP denoiser on flattened items, enough for
// `distill diffusion distill` to write students and `distill diffusion sample` / a later distill
// run to read them. It is meant to be replaced by the diffusion model file of branch `unet`
// (U-Net + arch/parameterization/schedule/image shape); until then this is the only one.
// Keys: kind = "diffusion_mlp_denoiser", hidden, frequencies, item_shape, precondition.*,
// params, method, steps, schedule, mean, std (the data's normalization, for display).
struct MlpModelFile {
  MlpDenoiserOptions mlp;
  std::vector<int64_t> item_shape;
  PreconditionOptions precondition;
  at::Tensor params;
  std::string method;    // how it was made: progressive, consistency
  int64_t steps = 0;     // the sampling steps it was distilled for
  std::string schedule;  // the noise schedule those steps follow
  at::Tensor mean, std;  // per-channel normalization of the data (may be undefined)
};

inline constexpr const char* kMlpModelKind = "diffusion_mlp_denoiser";

void save_mlp_model(const std::string& path, const MlpModelFile& model);
// Error naming the file when it is not such a model (another kind of file, missing keys, or a
// parameter count that does not match the architecture).
MlpModelFile load_mlp_model(const std::string& path);

// The MLP as a denoiser of N x item_shape tensors (flattened for the network): D(x, s) =
// precondition(net(params)). Keeps the network alive inside the returned function.
Denoiser mlp_item_denoiser(std::shared_ptr<const MlpDenoiserNet> net, const at::Tensor& params,
                           const std::vector<int64_t>& item_shape,
                           const PreconditionOptions& precondition);

}  // namespace distill::diffusion
