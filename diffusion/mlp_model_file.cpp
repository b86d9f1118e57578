#include "diffusion/mlp_model_file.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/io/tensor_file.h"

namespace distill::diffusion {
namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

void save_mlp_model(const std::string& path, const MlpModelFile& m) {
  io::TensorDict dict = io::make_dict();
  dict.insert("kind", std::string(kMlpModelKind));
  dict.insert("hidden", c10::List<int64_t>(m.mlp.hidden));
  dict.insert("frequencies", m.mlp.frequencies);
  dict.insert("item_shape", c10::List<int64_t>(m.item_shape));
  dict.insert("precondition.output", m.precondition.output);
  dict.insert("precondition.sigma_data", m.precondition.sigma_data);
  dict.insert("precondition.sigma_min", m.precondition.sigma_min);
  dict.insert("params", m.params.detach().cpu().contiguous());
  dict.insert("method", m.method);
  dict.insert("steps", m.steps);
  dict.insert("schedule", m.schedule);
  if (m.mean.defined()) dict.insert("mean", m.mean.cpu());
  if (m.std.defined()) dict.insert("std", m.std.cpu());
  io::save_dict(path, dict);
}

MlpModelFile load_mlp_model(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  const std::string kind =
      dict.contains("kind") && dict.at("kind").isString() ? dict.at("kind").toStringRef() : "";
  if (kind != kMlpModelKind) {
    throw Error("'" + path + "' is not a diffusion model file: expected kind '" + kMlpModelKind +
                "', found " + (kind.empty() ? std::string("no kind") : "'" + kind + "'") +
                (dict.contains("arch") ? " (arch '" + dict.at("arch").toStringRef() + "')" : ""));
  }
  auto need = [&](const std::string& key) -> c10::IValue {
    if (!dict.contains(key))
      throw Error("diffusion model file '" + path + "': missing '" + key + "'");
    return dict.at(key);
  };
  MlpModelFile m;
  m.mlp.hidden = need("hidden").toIntVector();
  m.mlp.frequencies = need("frequencies").toInt();
  m.item_shape = need("item_shape").toIntVector();
  m.precondition.output = need("precondition.output").toStringRef();
  m.precondition.sigma_data = need("precondition.sigma_data").toDouble();
  m.precondition.sigma_min = need("precondition.sigma_min").toDouble();
  m.params = io::get_tensor(dict, "params", path).clone();
  m.method = need("method").toStringRef();
  m.steps = need("steps").toInt();
  m.schedule = need("schedule").toStringRef();
  if (dict.contains("mean")) m.mean = io::get_tensor(dict, "mean", path).clone();
  if (dict.contains("std")) m.std = io::get_tensor(dict, "std", path).clone();
  MlpDenoiserNet net(product(m.item_shape), m.mlp);
  if (m.params.dim() != 1 || m.params.numel() != net.num_params()) {
    throw Error("diffusion model file '" + path + "': " + std::to_string(m.params.numel()) +
                " parameters, its architecture has " + std::to_string(net.num_params()));
  }
  return m;
}

Denoiser mlp_item_denoiser(std::shared_ptr<const MlpDenoiserNet> net, const at::Tensor& params,
                           const std::vector<int64_t>& item_shape,
                           const PreconditionOptions& options) {
  // The lambda owns the network: MlpDenoiserNet::network() itself only points at it.
  Network raw = [net, params](const at::Tensor& input, const at::Tensor& c_noise) {
    return net->network(params)(input, c_noise);
  };
  Denoiser flat = precondition(raw, options);
  return [flat](const at::Tensor& x, const at::Tensor& sigma) {
    return flat(x.reshape({x.size(0), -1}), sigma).reshape(x.sizes());
  };
}

}  // namespace distill::diffusion
