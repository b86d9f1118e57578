#include "src/train/cutmix.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::train {
namespace {

at::Tensor as_rows(const at::Tensor& targets, int64_t num_classes) {
  if (targets.dim() == 2) return targets.to(at::kFloat);
  return at::one_hot(targets.to(at::kLong), num_classes).to(at::kFloat);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> cutmix_box(const at::Tensor& images, const at::Tensor& targets,
                                             int64_t num_classes, const std::array<int64_t, 4>& box,
                                             const at::Tensor& partner) {
  const int64_t h = images.size(2), w = images.size(3);
  const auto [top, left, bh, bw] = box;
  if (top < 0 || left < 0 || bh < 0 || bw < 0 || top + bh > h || left + bw > w) {
    throw Error("cutmix: box (" + std::to_string(top) + ", " + std::to_string(left) + ", " +
                std::to_string(bh) + ", " + std::to_string(bw) + ") lies outside the " +
                std::to_string(h) + "x" + std::to_string(w) + " images");
  }
  at::Tensor index = partner.to(images.device(), at::kLong);
  at::Tensor mixed = images.clone();
  if (bh > 0 && bw > 0) {
    mixed.narrow(2, top, bh)
        .narrow(3, left, bw)
        .copy_(images.index_select(0, index).narrow(2, top, bh).narrow(3, left, bw));
  }
  const double area = static_cast<double>(bh * bw) / static_cast<double>(h * w);
  at::Tensor rows = as_rows(targets, num_classes);
  at::Tensor mixed_targets =
      rows * (1.0 - area) + rows.index_select(0, index.to(rows.device())) * area;
  return {mixed, mixed_targets};
}

std::pair<at::Tensor, at::Tensor> cutmix(const at::Tensor& images, const at::Tensor& targets,
                                         int64_t num_classes, const CutMixOptions& options,
                                         at::Generator& generator) {
  config::check(options, "eval.cutmix");  // the declared ranges (the eval.cutmix section)
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  // Every batch draws the same numbers, mixed or not: later draws do not depend on the coin.
  at::Tensor u = at::rand({3}, generator, at::kDouble);
  at::Tensor gamma = at::_standard_gamma(at::full({2}, options.beta, at::kDouble), generator);
  at::Tensor partner = at::randperm(n, generator, at::kLong);
  const double* r = u.data_ptr<double>();
  if (r[0] >= options.prob || n < 2) return {images, as_rows(targets, num_classes)};
  const double g0 = gamma[0].item<double>(), g1 = gamma[1].item<double>();
  const double lambda = g0 + g1 > 0 ? g0 / (g0 + g1) : 0.5;  // Beta(beta, beta)
  const double cut = std::sqrt(1.0 - lambda);
  const int64_t cut_h = static_cast<int64_t>(static_cast<double>(h) * cut);
  const int64_t cut_w = static_cast<int64_t>(static_cast<double>(w) * cut);
  const int64_t cy = std::min<int64_t>(h - 1, static_cast<int64_t>(r[1] * static_cast<double>(h)));
  const int64_t cx = std::min<int64_t>(w - 1, static_cast<int64_t>(r[2] * static_cast<double>(w)));
  const int64_t y0 = std::clamp<int64_t>(cy - cut_h / 2, 0, h),
                y1 = std::clamp<int64_t>(cy + cut_h / 2, 0, h);
  const int64_t x0 = std::clamp<int64_t>(cx - cut_w / 2, 0, w),
                x1 = std::clamp<int64_t>(cx + cut_w / 2, 0, w);
  return cutmix_box(images, targets, num_classes, {y0, x0, y1 - y0, x1 - x0}, partner);
}

std::pair<at::Tensor, at::Tensor> mixup_with(const at::Tensor& images, const at::Tensor& targets,
                                             int64_t num_classes, double lambda,
                                             const at::Tensor& partner) {
  if (!(lambda >= 0 && lambda <= 1)) {
    throw Error("mixup: weight " + std::to_string(lambda) + " outside [0, 1]");
  }
  at::Tensor index = partner.to(images.device(), at::kLong);
  at::Tensor rows = as_rows(targets, num_classes);
  return {images * lambda + images.index_select(0, index) * (1.0 - lambda),
          rows * lambda + rows.index_select(0, index.to(rows.device())) * (1.0 - lambda)};
}

std::pair<at::Tensor, at::Tensor> mixup(const at::Tensor& images, const at::Tensor& targets,
                                        int64_t num_classes, const MixupOptions& options,
                                        at::Generator& generator) {
  config::check(options, "eval.mixup");  // the declared ranges (the eval.mixup section)
  const int64_t n = images.size(0);
  at::Tensor coin = at::rand({1}, generator, at::kDouble);
  at::Tensor gamma = at::_standard_gamma(at::full({2}, options.alpha, at::kDouble), generator);
  at::Tensor partner = at::randperm(n, generator, at::kLong);
  if (coin.item<double>() >= options.prob || n < 2) return {images, as_rows(targets, num_classes)};
  const double g0 = gamma[0].item<double>(), g1 = gamma[1].item<double>();
  const double lambda = g0 + g1 > 0 ? g0 / (g0 + g1) : 0.5;  // Beta(alpha, alpha)
  return mixup_with(images, targets, num_classes, lambda, partner);
}

}  // namespace distill::train
