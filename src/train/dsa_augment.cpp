#include "src/train/dsa_augment.h"

#include <ATen/ATen.h>

#include <cmath>
#include <sstream>

#include "src/core/error.h"

namespace distill::train {
namespace {

constexpr double kPi = 3.14159265358979323846;

const std::vector<std::pair<const char*, DsaGroup>>& group_names() {
  static const std::vector<std::pair<const char*, DsaGroup>> names = {
      {"color", DsaGroup::kColor}, {"crop", DsaGroup::kCrop}, {"cutout", DsaGroup::kCutout},
      {"flip", DsaGroup::kFlip},   {"scale", DsaGroup::kScale}, {"rotate", DsaGroup::kRotate}};
  return names;
}

void check_images(const at::Tensor& x, const char* op) {
  if (!x.defined() || x.dim() != 4) {
    throw Error(std::string("dsa ") + op + ": expected images N,C,H,W, found " +
                (x.defined() ? std::to_string(x.dim()) + " dimensions" : "an undefined tensor"));
  }
}

// The first N entries of a per-image parameter vector, on x's device, in `dtype`.
at::Tensor per_image(const at::Tensor& p, const at::Tensor& x, const char* op,
                     at::ScalarType dtype) {
  int64_t n = x.size(0);
  if (!p.defined() || p.dim() != 1 || p.size(0) < n) {
    throw Error(std::string("dsa ") + op + ": expected a parameter vector with at least " +
                std::to_string(n) + " entries (one per image), found " +
                (p.defined() ? "shape " + c10::str(p.sizes()) : std::string("none")));
  }
  return p.narrow(0, 0, n).to(x.device(), dtype);
}

at::Tensor per_image(const at::Tensor& p, const at::Tensor& x, const char* op) {
  return per_image(p, x, op, x.scalar_type());
}

// Bilinear resampling through an N,2,3 affine matrix, as F.affine_grid + F.grid_sample with
// align_corners=True and zero padding.
at::Tensor resample(const at::Tensor& x, const at::Tensor& theta) {
  at::Tensor grid = at::affine_grid_generator(theta, x.sizes(), /*align_corners=*/true);
  return at::grid_sampler(x, grid, /*interpolation_mode=bilinear*/ 0,
                          /*padding_mode=zeros*/ 0, /*align_corners=*/true);
}

int64_t round_ratio(int64_t size, double ratio) {
  // The reference's int(size * ratio + 0.5).
  return static_cast<int64_t>(static_cast<double>(size) * ratio + 0.5);
}

}  // namespace

const char* dsa_group_name(DsaGroup group) {
  for (const auto& [name, g] : group_names())
    if (g == group) return name;
  return "?";
}

namespace dsa {

at::Tensor brightness(const at::Tensor& x, const at::Tensor& shift) {
  check_images(x, "brightness");
  return x + per_image(shift, x, "brightness").view({-1, 1, 1, 1});
}

at::Tensor saturation(const at::Tensor& x, const at::Tensor& factor) {
  check_images(x, "saturation");
  at::Tensor mean = x.mean(1, /*keepdim=*/true);
  return (x - mean) * per_image(factor, x, "saturation").view({-1, 1, 1, 1}) + mean;
}

at::Tensor contrast(const at::Tensor& x, const at::Tensor& factor) {
  check_images(x, "contrast");
  at::Tensor mean = x.mean({1, 2, 3}, /*keepdim=*/true);
  return (x - mean) * per_image(factor, x, "contrast").view({-1, 1, 1, 1}) + mean;
}

at::Tensor translate(const at::Tensor& x, const at::Tensor& shift_y, const at::Tensor& shift_x) {
  check_images(x, "crop");
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor dy = per_image(shift_y, x, "crop", at::kLong);
  at::Tensor dx = per_image(shift_x, x, "crop", at::kLong);
  // Gather from a copy with a one-pixel zero border: source indices that fall outside the image
  // are clamped onto that border, which gives the zero fill and keeps the op a plain gather
  // (differentiable, backward = scatter-add).
  at::Tensor padded = at::constant_pad_nd(x, {1, 1, 1, 1}, 0);
  auto index_options = at::TensorOptions().dtype(at::kLong).device(x.device());
  at::Tensor rows = (at::arange(h, index_options).unsqueeze(0) - dy.unsqueeze(1) + 1)
                        .clamp(0, h + 1);  // N,H
  at::Tensor cols = (at::arange(w, index_options).unsqueeze(0) - dx.unsqueeze(1) + 1)
                        .clamp(0, w + 1);  // N,W
  at::Tensor out = padded.gather(2, rows.view({n, 1, h, 1}).expand({n, c, h, w + 2}));
  return out.gather(3, cols.view({n, 1, 1, w}).expand({n, c, h, w}));
}

at::Tensor cutout(const at::Tensor& x, const at::Tensor& top, const at::Tensor& left,
                  int64_t height, int64_t width) {
  check_images(x, "cutout");
  const int64_t h = x.size(2), w = x.size(3);
  at::Tensor t = per_image(top, x, "cutout", at::kLong).unsqueeze(1);
  at::Tensor l = per_image(left, x, "cutout", at::kLong).unsqueeze(1);
  auto index_options = at::TensorOptions().dtype(at::kLong).device(x.device());
  at::Tensor rows = at::arange(h, index_options).unsqueeze(0);
  at::Tensor cols = at::arange(w, index_options).unsqueeze(0);
  at::Tensor in_rows = (rows >= t).logical_and(rows < t + height);  // N,H
  at::Tensor in_cols = (cols >= l).logical_and(cols < l + width);   // N,W
  at::Tensor hole = in_rows.unsqueeze(2).logical_and(in_cols.unsqueeze(1));
  return x * hole.logical_not().unsqueeze(1).to(x.scalar_type());
}

at::Tensor flip(const at::Tensor& x, const at::Tensor& mask) {
  check_images(x, "flip");
  at::Tensor m = per_image(mask, x, "flip", at::kBool).view({-1, 1, 1, 1});
  return at::where(m, x.flip({3}), x);
}

at::Tensor scale(const at::Tensor& x, const at::Tensor& scale_x, const at::Tensor& scale_y) {
  check_images(x, "scale");
  at::Tensor sx = per_image(scale_x, x, "scale"), sy = per_image(scale_y, x, "scale");
  at::Tensor zero = at::zeros_like(sx);
  at::Tensor theta = at::stack({at::stack({sx, zero, zero}, 1), at::stack({zero, sy, zero}, 1)}, 1);
  return resample(x, theta);
}

at::Tensor rotate(const at::Tensor& x, const at::Tensor& angle) {
  check_images(x, "rotate");
  at::Tensor a = per_image(angle, x, "rotate");
  at::Tensor cos = a.cos(), sin = a.sin(), zero = at::zeros_like(a);
  at::Tensor theta =
      at::stack({at::stack({cos, -sin, zero}, 1), at::stack({sin, cos, zero}, 1)}, 1);
  return resample(x, theta);
}

}  // namespace dsa

DsaAugment::DsaAugment(DsaOptions options) : options_(std::move(options)) {
  if (options_.mode != "single" && options_.mode != "multiple") {
    throw Error("dsa.mode: expected \"single\" or \"multiple\", found \"" + options_.mode + "\"");
  }
  const std::string& s = options_.strategy;
  if (s.empty() || s == "none") return;
  std::stringstream parts(s);
  std::string part;
  while (std::getline(parts, part, '_')) {
    bool known = false;
    for (const auto& [name, group] : group_names()) {
      if (part == name) {
        groups_.push_back(group);
        known = true;
      }
    }
    if (!known) {
      throw Error("dsa.strategy \"" + s + "\": unknown group \"" + part +
                  "\"; expected groups joined by '_' from color, crop, cutout, flip, scale, "
                  "rotate (or \"none\")");
    }
  }
}

DsaDraw DsaAugment::draw(int64_t batch, int64_t height, int64_t width, at::Generator& gen) const {
  if (batch < 0 || height < 1 || width < 1) {
    throw Error("dsa: cannot draw for a batch of " + std::to_string(batch) + " images of " +
                std::to_string(height) + "x" + std::to_string(width));
  }
  DsaDraw d;
  d.batch = batch;
  d.height = height;
  d.width = width;
  if (groups_.empty()) return d;
  if (options_.mode == "single") {
    int64_t pick = at::randint(static_cast<int64_t>(groups_.size()), {1}, gen).item<int64_t>();
    d.groups = {groups_[pick]};
  } else {
    d.groups = groups_;
  }
  const std::vector<int64_t> n = {batch};
  auto uniform = [&] { return at::rand(n, gen, at::kFloat); };
  for (DsaGroup group : d.groups) {
    switch (group) {
      case DsaGroup::kColor:
        d.brightness = (uniform() - 0.5) * options_.brightness;
        d.saturation = uniform() * options_.saturation;
        d.contrast = uniform() + options_.contrast;
        break;
      case DsaGroup::kCrop: {
        int64_t sy = round_ratio(height, options_.crop_ratio);
        int64_t sx = round_ratio(width, options_.crop_ratio);
        d.shift_y = at::randint(-sy, sy + 1, n, gen);
        d.shift_x = at::randint(-sx, sx + 1, n, gen);
        break;
      }
      case DsaGroup::kCutout: {
        d.cutout_height = round_ratio(height, options_.cutout_ratio);
        d.cutout_width = round_ratio(width, options_.cutout_ratio);
        // The centre ranges over [0, size] for even squares and [0, size - 1] for odd ones, so
        // the square may stick out of the image (as in the reference code).
        at::Tensor cy = at::randint(0, height + 1 - d.cutout_height % 2, n, gen);
        at::Tensor cx = at::randint(0, width + 1 - d.cutout_width % 2, n, gen);
        d.cutout_top = cy - d.cutout_height / 2;
        d.cutout_left = cx - d.cutout_width / 2;
        break;
      }
      case DsaGroup::kFlip:
        d.flip = uniform() < options_.flip_prob;
        break;
      case DsaGroup::kScale: {
        double r = options_.scale_ratio;
        d.scale_x = uniform() * (r - 1.0 / r) + 1.0 / r;
        d.scale_y = uniform() * (r - 1.0 / r) + 1.0 / r;
        break;
      }
      case DsaGroup::kRotate:
        d.angle = (uniform() - 0.5) * (2.0 * options_.rotate_degrees / 180.0 * kPi);
        break;
    }
  }
  return d;
}

at::Tensor DsaAugment::apply(const at::Tensor& x, const DsaDraw& d) const {
  check_images(x, "apply");
  if (x.size(2) != d.height || x.size(3) != d.width || x.size(0) > d.batch) {
    throw Error("dsa: a draw for " + std::to_string(d.batch) + " images of " +
                std::to_string(d.height) + "x" + std::to_string(d.width) +
                " cannot be applied to images of shape " + c10::str(x.sizes()) +
                " (expected the same height and width and at most as many images)");
  }
  at::Tensor y = x;
  for (DsaGroup group : d.groups) {
    switch (group) {
      case DsaGroup::kColor:
        y = dsa::brightness(y, d.brightness);
        y = dsa::saturation(y, d.saturation);
        y = dsa::contrast(y, d.contrast);
        break;
      case DsaGroup::kCrop:
        y = dsa::translate(y, d.shift_y, d.shift_x);
        break;
      case DsaGroup::kCutout:
        y = dsa::cutout(y, d.cutout_top, d.cutout_left, d.cutout_height, d.cutout_width);
        break;
      case DsaGroup::kFlip:
        y = dsa::flip(y, d.flip);
        break;
      case DsaGroup::kScale:
        y = dsa::scale(y, d.scale_x, d.scale_y);
        break;
      case DsaGroup::kRotate:
        y = dsa::rotate(y, d.angle);
        break;
    }
  }
  return y;
}

at::Tensor DsaAugment::operator()(const at::Tensor& x, at::Generator& gen) const {
  check_images(x, "apply");
  return apply(x, draw(x.size(0), x.size(2), x.size(3), gen));
}

}  // namespace distill::train
