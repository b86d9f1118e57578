#include "src/train/resized_crop.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::train {

std::array<int64_t, 5> draw_crop_box(int64_t h, int64_t w, double min_scale, bool flip,
                                     at::Generator& generator) {
  at::Tensor u = at::rand({5}, generator, at::kDouble);
  const double* r = u.data_ptr<double>();
  std::array<int64_t, 5> box = {0, 0, h, w, flip && r[4] < 0.5 ? 1 : 0};
  if (min_scale < 1.0) {
    const double area = (min_scale + (1.0 - min_scale) * r[0]) * static_cast<double>(h * w);
    const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
    const double ratio = std::exp(log_lo + (log_hi - log_lo) * r[1]);
    box[3] = std::clamp<int64_t>(std::llround(std::sqrt(area * ratio)), 1, w);
    box[2] = std::clamp<int64_t>(std::llround(std::sqrt(area / ratio)), 1, h);
    box[0] = std::min<int64_t>(h - box[2], static_cast<int64_t>(r[2] * (h - box[2] + 1)));
    box[1] = std::min<int64_t>(w - box[3], static_cast<int64_t>(r[3] * (w - box[3] + 1)));
  }
  return box;
}

at::Tensor crop_resize_flip(const at::Tensor& x, const at::Tensor& boxes) {
  const int64_t h = x.size(2), w = x.size(3);
  at::Tensor cpu_boxes = boxes.to(at::kCPU, at::kLong).contiguous();
  const int64_t* b = cpu_boxes.data_ptr<int64_t>();
  std::vector<at::Tensor> out;
  for (int64_t i = 0; i < x.size(0); ++i, b += 5) {
    at::Tensor crop = x.narrow(0, i, 1).narrow(2, b[0], b[2]).narrow(3, b[1], b[3]);
    if (b[2] != h || b[3] != w) crop = at::upsample_bilinear2d(crop, {h, w}, false);
    if (b[4]) crop = at::flip(crop, {3});
    out.push_back(crop);
  }
  return at::cat(out, 0);
}

ResizedCropAugment::ResizedCropAugment(ResizedCropOptions options) : options_(options) {
  config::check(options_, "augment.resized_crop");  // the declared ranges (ResizedCropOptions)
}

at::Tensor ResizedCropAugment::operator()(const at::Tensor& images, at::Generator& gen) const {
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  at::Tensor boxes = at::empty({n, 5}, at::kLong);
  int64_t* b = boxes.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const std::array<int64_t, 5> box = draw_crop_box(h, w, options_.min_scale, options_.flip, gen);
    std::copy(box.begin(), box.end(), b + 5 * i);
  }
  return crop_resize_flip(images, boxes);
}

}  // namespace distill::train
