#pragma once
#include <ATen/ATen.h>

namespace distill::diffusion {

// Standard normal noise shaped like `x`, with x's dtype and device. Drawn on the generator's own
// device (a run's CPU generator) and then moved: a CUDA run draws the same numbers as a CPU run,
// and a CPU generator is never handed a CUDA tensor to fill (which at::randn refuses).
// Every noise draw of the samplers and distillation loops goes through here, so one seed gives
// the same numbers on every call path and device.
inline at::Tensor gaussian(at::IntArrayRef shape, const at::TensorOptions& options,
                           at::Generator& generator) {
  return at::randn(shape, generator, options.device(generator.device())).to(options.device());
}

inline at::Tensor gaussian_like(const at::Tensor& x, at::Generator& generator) {
  return gaussian(x.sizes(), x.options(), generator);
}

}  // namespace distill::diffusion
