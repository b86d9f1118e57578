#include "diffusion/model_file.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {
namespace {

constexpr const char* kFormat = "distill-denoiser-1";

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? "x" : "") + std::to_string(shape[i]);
  return text;
}

std::unique_ptr<models::Model> make_denoiser_net(const DenoiserArchOptions& options,
                                                 const std::vector<int64_t>& item_shape,
                                                 int64_t num_classes) {
  if (options.arch == "unet") {
    if (item_shape.size() != 3) {
      throw Error("denoiser arch unet: needs images C x H x W, found items of shape " +
                  shape_string(item_shape));
    }
    return std::make_unique<UnetDenoiserNet>(item_shape[0], item_shape[1], item_shape[2],
                                             num_classes, options.unet);
  }
  if (options.arch == "mlp") {
    if (num_classes > 0) {
      throw Error("denoiser arch mlp: has no class conditioning, found num_classes = " +
                  std::to_string(num_classes) + " (use arch unet or train unconditionally)");
    }
    return std::make_unique<MlpDenoiserNet>(product(item_shape), options.mlp);
  }
  throw Error("denoiser arch: unknown '" + options.arch + "' (expected unet or mlp)");
}

Network denoiser_network(const models::Model& net, const at::Tensor& params,
                         const at::Tensor& labels) {
  if (const auto* unet = dynamic_cast<const UnetDenoiserNet*>(&net)) {
    return unet->network(params, labels);
  }
  if (const auto* mlp = dynamic_cast<const MlpDenoiserNet*>(&net)) {
    if (labels.defined()) throw Error("denoiser arch mlp: has no class conditioning");
    Network flat = mlp->network(params);
    return [flat](const at::Tensor& input, const at::Tensor& c_noise) {
      return flat(input.flatten(1), c_noise).view(input.sizes());
    };
  }
  throw Error("denoiser_network: '" + net.arch() + "' is not a denoiser network");
}

Denoiser make_denoiser(const DenoiserArchOptions& options, const models::Model& net,
                       const at::Tensor& params, const at::Tensor& labels) {
  return precondition(denoiser_network(net, params, labels), options.precondition);
}

io::TensorDict denoiser_model_dict(const DenoiserModel& m) {
  io::TensorDict dict = io::make_dict();
  DenoiserArchOptions options = m.options;
  dict.insert("format", std::string(kFormat));
  dict.insert("denoiser", config::dump(options));
  // Plain copies of the main settings, for Python readers of the file.
  dict.insert("arch", m.options.arch);
  dict.insert("prediction", m.options.precondition.output);
  dict.insert("sigma_data", m.options.precondition.sigma_data);
  dict.insert("item_shape", at::tensor(m.item_shape, at::kLong));
  dict.insert("num_classes", m.num_classes);
  dict.insert("mean", m.mean.defined() ? m.mean.cpu() : at::zeros({0}));
  dict.insert("std", m.std.defined() ? m.std.cpu() : at::zeros({0}));
  dict.insert("dataset", m.dataset);
  dict.insert("params", m.params.detach().cpu());
  if (m.ema.defined()) dict.insert("ema", m.ema.detach().cpu());
  dict.insert("steps", m.steps);
  return dict;
}

void save_denoiser_model(const std::string& path, const DenoiserModel& model) {
  io::save_dict(path, denoiser_model_dict(model));
}

DenoiserModel load_denoiser_model(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error("denoiser model file '" + path + "' does not exist");
  }
  io::TensorDict dict = io::load_dict(path);
  auto require = [&](const std::string& key) -> c10::IValue {
    if (!io::has_key(dict, key)) {
      throw Error("'" + path + "' is not a denoiser model file of `distill diffusion train`: " +
                  "missing key '" + key + "'");
    }
    return dict.at(key);
  };
  const c10::IValue format = require("format");
  if (!format.isString() || format.toStringRef() != kFormat) {
    throw Error("'" + path + "': key 'format' is '" +
                (format.isString() ? format.toStringRef() : std::string("?")) + "', expected '" +
                kFormat + "'");
  }
  DenoiserModel m;
  // The same reader as the settings: an unknown arch or prediction is an error naming the key.
  config::read(config::ConfigSource::from_string(require("denoiser").toStringRef(),
                                                 path + " [key 'denoiser']"),
               m.options);
  at::Tensor shape = io::get_tensor(dict, "item_shape", path).to(at::kLong).contiguous();
  m.item_shape.assign(shape.data_ptr<int64_t>(), shape.data_ptr<int64_t>() + shape.numel());
  m.num_classes = require("num_classes").toInt();
  m.mean = io::get_tensor(dict, "mean", path).to(at::kFloat);
  m.std = io::get_tensor(dict, "std", path).to(at::kFloat);
  m.dataset = require("dataset").toStringRef();
  m.params = io::get_tensor(dict, "params", path).to(at::kFloat);
  if (io::has_key(dict, "ema")) m.ema = io::get_tensor(dict, "ema", path).to(at::kFloat);
  m.steps = require("steps").toInt();
  std::unique_ptr<models::Model> net;
  try {
    net = make_denoiser_net(m.options, m.item_shape, m.num_classes);
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  }
  for (const char* key : {"params", "ema"}) {
    const at::Tensor& t = std::string(key) == "params" ? m.params : m.ema;
    if (t.defined() && (t.dim() != 1 || t.numel() != net->num_params())) {
      throw Error("'" + path + "': key '" + key + "' holds " + std::to_string(t.numel()) +
                  " values, its " + m.options.arch + " for " + shape_string(m.item_shape) +
                  " items has " + std::to_string(net->num_params()) + " parameters");
    }
  }
  return m;
}

void require_output(const DenoiserModel& model, const std::vector<std::string>& allowed,
                    const std::string& path, const std::string& purpose) {
  const std::string& output = model.options.precondition.output;
  std::string names;
  for (const auto& name : allowed) {
    if (name == output) return;
    names += (names.empty() ? "" : ", ") + name;
  }
  throw Error("'" + path + "': the denoiser predicts '" + output + "' (precondition.output), " +
              purpose + " needs one of {" + names + "}");
}

std::string resolve_model_path(const std::string& path, const std::string& key) {
  if (std::filesystem::is_regular_file(path)) return path;
  if (std::filesystem::is_directory(path)) {
    const std::string inside = path + "/model.pt";
    if (std::filesystem::is_regular_file(inside)) return inside;
    throw Error(key + ": run folder '" + path + "' has no model.pt (has `distill diffusion " +
                "train` finished there?)");
  }
  throw Error(key + ": no file or run folder '" + path +
              "' (expected a model.pt of `distill diffusion train` or its run folder)");
}

}  // namespace distill::diffusion
