#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "src/config/options.h"

namespace distill::train {

// Differentiable Siamese Augmentation (Zhao & Bilen, ICML 2021) as the DC/DSA/MTT reference code
// applies it: every transformation is differentiable w.r.t. the images, because synthetic images
// are optimized through it, and its random parameters are drawn separately from their application
// so that two batches (real and synthetic) can receive the same transformation.
struct DsaOptions {
  std::string strategy = "color_crop_cutout_flip_scale_rotate";
  std::string mode = "single";
  double flip_prob = 0.5;
  double scale_ratio = 1.2;
  double rotate_degrees = 15.0;
  double crop_ratio = 0.125;
  double cutout_ratio = 0.5;
  double brightness = 1.0;
  double saturation = 2.0;
  double contrast = 0.5;

  void visit(config::Visitor& v) {
    v.field("strategy", strategy,
            "groups joined by '_', applied in this order: color, crop, cutout, flip, scale, "
            "rotate (color = brightness, saturation, contrast); \"none\" disables DSA");
    v.choice("mode", mode, "single: one group drawn per call (DSA default); multiple: all groups",
             {"single", "multiple"});
    v.field("flip_prob", flip_prob, "probability of a horizontal flip per image");
    v.field("scale_ratio", scale_ratio, "scale factors per axis drawn from U(1/ratio, ratio)");
    v.field("rotate_degrees", rotate_degrees, "rotation angle drawn from U(-deg, deg)");
    v.field("crop_ratio", crop_ratio,
            "translation by up to int(size * ratio + 0.5) pixels per axis, zero fill");
    v.field("cutout_ratio", cutout_ratio, "zeroed square side: int(size * ratio + 0.5) pixels");
    v.field("brightness", brightness, "adds (u - 0.5) * brightness, u ~ U(0, 1) per image");
    v.field("saturation", saturation, "blends with the channel mean by factor u * saturation");
    v.field("contrast", contrast, "blends with the image mean by factor u + contrast");
  }
};

// The groups of a strategy; kColor stands for brightness, saturation and contrast together.
enum class DsaGroup { kColor, kCrop, kCutout, kFlip, kScale, kRotate };

// "color", "crop", ... (the strategy's spelling).
const char* dsa_group_name(DsaGroup group);

// Every random parameter of one augmentation call, per image (vectors of length `batch`, on the
// CPU). Tensors of groups that were not drawn stay undefined. Fields are public so that a draw can
// be built by hand (tests, replays) or saved.
struct DsaDraw {
  int64_t batch = 0, height = 0, width = 0;
  std::vector<DsaGroup> groups;  // applied in this order

  at::Tensor brightness;  // float: additive shift (u - 0.5) * brightness
  at::Tensor saturation;  // float: factor u * saturation
  at::Tensor contrast;    // float: factor u + contrast
  at::Tensor shift_y;     // int64: content moves down by shift_y rows (zero fill)
  at::Tensor shift_x;     // int64: content moves right by shift_x columns
  at::Tensor cutout_top;   // int64: first zeroed row (the square may stick out of the image)
  at::Tensor cutout_left;  // int64: first zeroed column
  int64_t cutout_height = 0, cutout_width = 0;
  at::Tensor flip;     // bool: mirror horizontally
  at::Tensor scale_x;  // float: sampling-grid scale per axis (> 1 shrinks the content)
  at::Tensor scale_y;
  at::Tensor angle;  // float: rotation in radians
};

// The single transformations, each differentiable w.r.t. `x` (N,C,H,W, any floating dtype and
// device). Parameter vectors hold one entry per image (at least N; the first N are used) and are
// moved to x's device and dtype.
namespace dsa {
at::Tensor brightness(const at::Tensor& x, const at::Tensor& shift);
at::Tensor saturation(const at::Tensor& x, const at::Tensor& factor);
at::Tensor contrast(const at::Tensor& x, const at::Tensor& factor);
// out[n, c, h, w] = x[n, c, h - shift_y[n], w - shift_x[n]], zero where that lies outside.
at::Tensor translate(const at::Tensor& x, const at::Tensor& shift_y, const at::Tensor& shift_x);
// Zeroes rows [top, top + height) x columns [left, left + width) of each image.
at::Tensor cutout(const at::Tensor& x, const at::Tensor& top, const at::Tensor& left,
                  int64_t height, int64_t width);
at::Tensor flip(const at::Tensor& x, const at::Tensor& mask);
// Affine resampling with theta = [[scale_x, 0, 0], [0, scale_y, 0]] (affine_grid + bilinear
// grid_sample, zero padding, align_corners true).
at::Tensor scale(const at::Tensor& x, const at::Tensor& scale_x, const at::Tensor& scale_y);
// theta = [[cos a, -sin a, 0], [sin a, cos a, 0]]: a = pi/2 on a square image equals
// at::rot90(x, 1, {2, 3}).
at::Tensor rotate(const at::Tensor& x, const at::Tensor& angle);
}  // namespace dsa

class DsaAugment {
 public:
  // Error naming the strategy when it contains an unknown group.
  explicit DsaAugment(DsaOptions options = {});

  // Samples every random parameter for a batch of `batch` images of height x width from `gen`
  // (a CPU generator): in "single" mode one group of the strategy, in "multiple" mode all.
  DsaDraw draw(int64_t batch, int64_t height, int64_t width, at::Generator& gen) const;

  // Applies a draw to x (N,C,H,W with H, W those of the draw and N <= draw.batch: a smaller batch
  // receives the first N images' parameters, as re-seeding does in the reference code).
  // Applying one draw to two batches gives both the same transformation (the Siamese property).
  at::Tensor apply(const at::Tensor& x, const DsaDraw& draw) const;

  // apply(x, draw(N, H, W, gen)).
  at::Tensor operator()(const at::Tensor& x, at::Generator& gen) const;

  const std::vector<DsaGroup>& groups() const { return groups_; }
  const DsaOptions& options() const { return options_; }
  bool enabled() const { return !groups_.empty(); }

 private:
  DsaOptions options_;
  std::vector<DsaGroup> groups_;
};

}  // namespace distill::train
