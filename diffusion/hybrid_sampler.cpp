#include "diffusion/hybrid_sampler.h"

#include <ATen/ATen.h>

#include "diffusion/samplers.h"
#include "src/core/error.h"

namespace distill::diffusion {

at::Tensor sample_hybrid(const SamplerPart& first, const SamplerPart& second, at::Tensor x,
                         at::Generator& generator) {
  if (first.sigmas.empty() || second.sigmas.empty()) {
    throw Error("hybrid sampling: each part needs at least one noise level");
  }
  if (first.sigmas.back() != second.sigmas.front()) {
    throw Error(
        "hybrid sampling: the first part ends at sigma = " + std::to_string(first.sigmas.back()) +
        " but the second starts at " + std::to_string(second.sigmas.front()) + " (they must join)");
  }
  if (first.sigmas.size() < 2 && second.sigmas.size() < 2) {
    throw Error("hybrid sampling: neither part has a step");
  }
  if (first.sigmas.size() >= 2) {
    x = run_sampler(first.sampler, first.denoiser, x, first.sigmas, generator);
  }
  if (second.sigmas.size() >= 2) {
    x = run_sampler(second.sampler, second.denoiser, x, second.sigmas, generator);
  }
  return x;
}

}  // namespace distill::diffusion
