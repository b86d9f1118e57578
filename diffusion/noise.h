#pragma once
#include <ATen/ATen.h>

namespace distill::diffusion {

// Standard normal noise shaped like `x`, with x's dtype and device. Drawn on the generator's own
// device (a run's CPU generator) and then moved: a CUDA run draws the same numbers as a CPU run,
// and a CPU generator is never handed a CUDA tensor to fill (which at::randn refuses).
inline at::Tensor gaussian_like(const at::Tensor& x, at::Generator& generator) {
  return at::randn(x.sizes(), generator, x.options().device(generator.device())).to(x.device());
}

}  // namespace distill::diffusion
