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

at::Tensor sample_hybrid(const Denoiser& base, const std::string& base_sampler,
                         const Denoiser& student, const std::string& sampler,
                         const std::vector<double>& sigmas, int64_t base_steps, at::Tensor x,
                         at::Generator& generator) {
  const int64_t steps = static_cast<int64_t>(sigmas.size()) - 1;
  if (base_steps < 1 || base_steps >= steps) {
    throw Error("hybrid sampling: the base model's steps must be in 1 .. " +
                std::to_string(steps - 1) + " of the grid's " + std::to_string(steps) + ", found " +
                std::to_string(base_steps));
  }
  const auto split = sigmas.begin() + base_steps;
  return sample_hybrid({base, base_sampler, std::vector<double>(sigmas.begin(), split + 1)},
                       {student, sampler, std::vector<double>(split, sigmas.end())}, std::move(x),
                       generator);
}

}  // namespace distill::diffusion
