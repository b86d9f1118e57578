#include "src/train/standard_augment.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/train/dsa_augment.h"

namespace distill::train {

StandardAugment::StandardAugment(StandardAugmentOptions options) : options_(options) {
  if (options_.pad < 0) {
    throw Error("augment.pad: expected a padding >= 0, found " + std::to_string(options_.pad));
  }
}

at::Tensor StandardAugment::operator()(const at::Tensor& images, at::Generator& gen) const {
  if (!images.defined() || images.dim() != 4) {
    throw Error("standard augment: expected images N,C,H,W, found " +
                (images.defined() ? "shape " + c10::str(images.sizes())
                                  : std::string("an undefined tensor")));
  }
  const std::vector<int64_t> n = {images.size(0)};
  at::Tensor out = images;
  if (options_.pad > 0) {
    // Cropping the padded image at offset o (0..2 pad) shows the content shifted by pad - o.
    const int64_t p = options_.pad;
    at::Tensor shift_y = at::randint(-p, p + 1, n, gen);
    at::Tensor shift_x = at::randint(-p, p + 1, n, gen);
    out = dsa::translate(out, shift_y, shift_x);
  }
  if (options_.flip) out = dsa::flip(out, at::rand(n, gen) < 0.5);
  return out;
}

}  // namespace distill::train
