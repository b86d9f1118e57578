#include "src/kd/scripted_model.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/serialization/import.h>

#include <sstream>

#include "src/core/error.h"

namespace distill::kd {
namespace {

class ScriptedModel : public models::Model {
 public:
  ScriptedModel(torch::jit::Module module, const std::string& path)
      : module_(std::move(module)), path_(path) {
    arch_ = "torchscript";
    module_.eval();
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const models::ForwardArgs& args) const override {
    if (args.train) {
      throw Error("TorchScript model '" + path_ + "' is a frozen teacher; it cannot be trained");
    }
    c10::IValue out = const_cast<torch::jit::Module&>(module_).forward({x});
    if (!out.isTensor()) {
      throw Error("TorchScript teacher '" + path_ +
                  "': forward must return one logits tensor, "
                  "it returned a " +
                  out.tagKind());
    }
    return out.toTensor();
  }

  std::vector<std::string> feature_names() const override { return {}; }

 private:
  torch::jit::Module module_;
  std::string path_;
};

}  // namespace

std::unique_ptr<models::Model> load_scripted_model(const std::string& path, int64_t channels,
                                                   int64_t image_size, int64_t num_classes) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error("TorchScript teacher '" + path + "' cannot be loaded (" +
                what.substr(0, what.find('\n')) +
                "); save it in Python with "
                "torch.jit.script(model).save(path)");
  }
  auto model = std::make_unique<ScriptedModel>(std::move(module), path);
  at::NoGradGuard no_grad;
  at::Tensor out;
  try {
    out = model->forward(at::zeros({2, channels, image_size, image_size}), at::empty({0}), {});
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw Error("TorchScript teacher '" + path + "' fails on a 2x" + std::to_string(channels) +
                "x" + std::to_string(image_size) + "x" + std::to_string(image_size) +
                " batch: " + what.substr(0, what.find('\n')));
  }
  if (out.dim() != 2 || out.size(0) != 2 || out.size(1) != num_classes) {
    std::ostringstream shape;
    shape << out.sizes();
    throw Error("TorchScript teacher '" + path + "' outputs " + shape.str() +
                " for a batch of 2; "
                "the data has " +
                std::to_string(num_classes) + " classes (expected [2, " +
                std::to_string(num_classes) + "])");
  }
  return model;
}

}  // namespace distill::kd
