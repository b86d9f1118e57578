#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "src/config/options.h"

namespace distill::train {

// The usual augmentation for training teachers and evaluation networks on real data: a random
// crop of the zero-padded image (pad 4 for 32x32, as in the ResNet/CIFAR recipes) and a random
// horizontal flip. Flipping is optional because it is wrong for digits.
struct StandardAugmentOptions {
  int64_t pad = 4;
  bool flip = true;

  void visit(config::Visitor& v) {
    v.field("pad", pad, "zero padding before the random crop (0 = no crop)");
    v.field("flip", flip, "random horizontal flip with probability 0.5 (off for digits)");
  }
};

class StandardAugment {
 public:
  // Error when pad is negative.
  explicit StandardAugment(StandardAugmentOptions options = {});

  // images: N,C,H,W on any device. Per image: a crop at a uniformly drawn offset of the image
  // padded by `pad` zeros on every side (equivalently a shift by -pad..pad pixels per axis with
  // zero fill), then a flip with probability 0.5 when enabled. Draws come from `gen` (CPU).
  at::Tensor operator()(const at::Tensor& images, at::Generator& gen) const;

  const StandardAugmentOptions& options() const { return options_; }

 private:
  StandardAugmentOptions options_;
};

}  // namespace distill::train
