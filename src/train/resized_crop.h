#pragma once
// torchvision's RandomResizedCrop (+ horizontal flip): the augmentation of the SRe2L/CV-DD
// recipes, as per-image boxes that can be stored (FKD-style views) and replayed.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>

#include "src/config/options.h"

namespace distill::train {

// One crop box (top, left, height, width, flip): area fraction uniform in [min_scale, 1], aspect
// ratio log-uniform in [3/4, 4/3] (torchvision's draw, one try, clamped to the image); flip with
// probability 1/2 when `flip`. min_scale 1: the whole image.
std::array<int64_t, 5> draw_crop_box(int64_t height, int64_t width, double min_scale, bool flip,
                                     at::Generator& generator);

// Crops x (N,C,H,W) to boxes (N,5 int64: top, left, height, width, flip), resizes each crop back
// to H,W (bilinear, align_corners=false, as torchvision's RandomResizedCrop) and flips when asked.
at::Tensor crop_resize_flip(const at::Tensor& x, const at::Tensor& boxes);

struct ResizedCropOptions {
  double min_scale = 0.08;
  bool flip = true;

  void visit(config::Visitor& v) {
    v.field("min_scale", min_scale, "smallest crop area fraction (torchvision's scale[0])",
            config::Range::above_up_to(0, 1));
    v.field("flip", flip, "random horizontal flip with probability 0.5");
  }
};

// Every image of a batch gets its own box (draw_crop_box, images in order from the generator).
class ResizedCropAugment {
 public:
  // Error when min_scale is not in (0, 1].
  explicit ResizedCropAugment(ResizedCropOptions options = {});
  at::Tensor operator()(const at::Tensor& images, at::Generator& gen) const;

 private:
  ResizedCropOptions options_;
};

}  // namespace distill::train
