#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/mlp_denoiser.h"
#include "diffusion/parameterization.h"
#include "diffusion/unet_denoiser.h"
#include "src/config/options.h"
#include "src/io/tensor_file.h"
#include "src/models/model.h"

namespace distill::diffusion {

// Which network and how its output becomes a denoised image: everything besides the data's shape
// that rebuilds a denoiser. Stored in model files as TOML, so a file and a settings section read
// the same way.
struct DenoiserArchOptions {
  std::string arch = "unet";
  UnetDenoiserOptions unet;
  MlpDenoiserOptions mlp;
  PreconditionOptions precondition;

  // The data here is normalized per channel to unit standard deviation (data.normalize), not to
  // EDM's [-1, 1] with sigma_data 0.5; eps/x/v also assume unit scale (parameterization.h).
  DenoiserArchOptions() { precondition.sigma_data = 1.0; }

  void visit(config::Visitor& v) {
    v.choice("arch", arch,
             "denoiser network: unet (images) or mlp (flattened items; for 2-D toy data)",
             {"unet", "mlp"});
    v.section("unet", unet);
    v.section("mlp", mlp);
    v.section("precondition", precondition);
  }
};

// A trained (or training) denoiser as `distill diffusion train` writes it to model.pt and
// checkpoint.pt; `sample`, `distill` and `score` read it back with load_denoiser_model.
struct DenoiserModel {
  DenoiserArchOptions options;
  std::vector<int64_t> item_shape;  // one item: C, H, W (any shape for mlp)
  int64_t num_classes = 0;          // class-conditional when > 0 (label num_classes = null class)
  at::Tensor mean, std;             // per-channel normalization the data had (float C)
  std::string dataset;              // data.name it was trained on
  at::Tensor params;                // flat float parameters (the optimizer's)
  at::Tensor ema;                   // flat EMA of params (undefined when the run kept none)
  int64_t steps = 0;                // optimizer steps taken
};

// The network of `model` (UnetDenoiserNet or MlpDenoiserNet); Error naming the setting when the
// shape does not suit the architecture.
std::unique_ptr<models::Model> make_denoiser_net(const DenoiserArchOptions& options,
                                                 const std::vector<int64_t>& item_shape,
                                                 int64_t num_classes);

// The raw network of a net from make_denoiser_net with captured flat `params`; `labels` (int64 N,
// conditional U-Nets only; undefined = null class) are captured too. The mlp flattens each item.
Network denoiser_network(const models::Model& net, const at::Tensor& params,
                         const at::Tensor& labels = {});

// precondition(denoiser_network(...), options.precondition): a Denoiser for the samplers.
Denoiser make_denoiser(const DenoiserArchOptions& options, const models::Model& net,
                       const at::Tensor& params, const at::Tensor& labels = {});

// The dict save_denoiser_model writes, for callers that add keys (checkpoints add optimizer
// state). Keys: format ("distill-denoiser-1"), denoiser (the DenoiserArchOptions as TOML), arch,
// prediction (precondition.output), sigma_data, item_shape (int64), num_classes, mean, std,
// dataset, params, ema (when kept), steps. Python: torch.load(path)["ema"].
io::TensorDict denoiser_model_dict(const DenoiserModel& model);
void save_denoiser_model(const std::string& path, const DenoiserModel& model);

// Reads a file written by save_denoiser_model (model.pt or checkpoint.pt). Errors name the file
// and key: a missing file, a file of another kind, an unknown architecture or prediction, params
// of the wrong size for the recorded network.
DenoiserModel load_denoiser_model(const std::string& path);

// For methods that need a particular output of their teacher (e.g. x or v): Error naming the
// file, its prediction and `purpose` unless options.precondition.output is one of `allowed`.
void require_output(const DenoiserModel& model, const std::vector<std::string>& allowed,
                    const std::string& path, const std::string& purpose);

// `path` itself when it is a file, else path/model.pt (a run folder of `distill diffusion
// train`). Error naming `key` when neither exists.
std::string resolve_model_path(const std::string& path, const std::string& key);

// "1x28x28".
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace distill::diffusion
