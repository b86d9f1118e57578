#pragma once
// Mixed-precision training (train.precision): the forward pass under autocast in bf16 or fp16,
// master weights, optimizer state and loss in fp32. fp16's narrow range needs dynamic loss
// scaling (as torch.cuda.amp.GradScaler): the loss is multiplied by a scale before the backward
// pass and the gradients divided by it; a step whose gradients overflow is skipped and the scale
// halved, and after `growth_interval` good steps in a row the scale doubles.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "src/config/options.h"

namespace distill::train {

// train.loss_scale: fp16's dynamic loss scaling.
struct LossScaleOptions {
  double initial = 65536.0;       // GradScaler's default, 2^16
  int64_t growth_interval = 2000;  // GradScaler's default

  void visit(config::Visitor& v) {
    v.field("initial", initial, "fp16: the loss scale to start from", config::Range::above(0));
    // An infinite scale would never come down to a finite one: every step would be skipped.
    v.rule(std::isfinite(initial),
           "loss_scale.initial must be finite, found " + std::to_string(initial));
    v.field("growth_interval", growth_interval,
            "fp16: good steps in a row after which the loss scale doubles",
            config::Range::at_least(1));
  }
};

// The choices of train.precision, for the options that declare it.
inline const std::vector<std::string>& precision_choices() {
  static const std::vector<std::string> choices = {"fp32", "bf16", "fp16"};
  return choices;
}

// Float, BFloat16 or Half for "fp32", "bf16", "fp16"; Error naming `key` otherwise. fp16 on the
// CPU needs LibTorch >= 2.x (1.13's CPU autocast has only bf16): Error naming the key on 1.13.
c10::ScalarType compute_dtype(const std::string& precision, const c10::Device& device,
                              const std::string& key);

// True when every element of every defined tensor is finite (one reduction, one host read).
bool all_finite(const std::vector<at::Tensor>& tensors);

class LossScaler {
 public:
  explicit LossScaler(const LossScaleOptions& options);

  double scale() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  // After a step's gradients were checked: `finite` = apply the step. Returns `finite`. A
  // non-finite step halves the scale and restarts the count; `growth_interval` finite steps in a
  // row double it. RuntimeFailure when the scale falls below 2^-24: the gradients are not finite
  // at any scale (a diverged run, not an overflow).
  bool update(bool finite);
  // Checkpoint state.
  void restore(double scale, int64_t good_steps);

 private:
  double scale_;
  int64_t growth_interval_;
  int64_t good_steps_ = 0;
};

}  // namespace distill::train
