#include "src/train/precision.h"

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/train/autocast_compat.h"

namespace distill::train {

c10::ScalarType compute_dtype(const std::string& precision, const c10::Device& device,
                              const std::string& key) {
  if (precision == "fp32") return c10::ScalarType::Float;
  if (precision == "bf16") return c10::ScalarType::BFloat16;
  if (precision == "fp16") {
    if (device.is_cpu() && !DISTILL_CPU_AUTOCAST_HAS_FP16) {
      throw Error(key + " = \"fp16\" on the CPU needs LibTorch >= 2.4 (this is " +
                  std::string(TORCH_VERSION) +
                  ", whose CPU autocast has bf16 only); use bf16, or a CUDA device");
    }
    return c10::ScalarType::Half;
  }
  throw Error(key + ": expected fp32, bf16 or fp16, found '" + precision + "'");
}

bool all_finite(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> flags;
  for (const auto& t : tensors) {
    if (t.defined() && t.numel() > 0) flags.push_back(at::isfinite(t).all().reshape({1}));
  }
  if (flags.empty()) return true;
  return at::cat(flags).all().item<bool>();
}

LossScaler::LossScaler(const LossScaleOptions& options)
    : scale_(options.initial), growth_interval_(options.growth_interval) {
  config::check(options, "train.loss_scale");  // the declared ranges and rules
}

bool LossScaler::update(bool finite) {
  if (finite) {
    if (++good_steps_ >= growth_interval_) {
      scale_ *= 2.0;
      good_steps_ = 0;
    }
    return true;
  }
  scale_ *= 0.5;
  good_steps_ = 0;
  if (scale_ < std::ldexp(1.0, -24)) {
    throw RuntimeFailure(
        "fp16 training: the gradients are not finite even at loss scale " +
        std::to_string(scale_) + " (the run diverged, it is not an fp16 overflow)");
  }
  return false;
}

void LossScaler::restore(double scale, int64_t good_steps) {
  scale_ = scale;
  good_steps_ = good_steps;
}

}  // namespace distill::train
