#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "diffusion/denoiser.h"

namespace distill::diffusion {

// Hybrid sampling (the "distilling diversity" recipe, Gandikota & Bau 2025): the first step(s)
// with the teacher (or base model), which decides the sample's layout and keeps its diversity,
// the rest with the distilled student. One part of a run of samplers (samplers.h):
struct SamplerPart {
  Denoiser denoiser;
  std::string sampler = "ddim";  // ddim, ddpm, heun or dpmpp_2m
  std::vector<double> sigmas;    // decreasing; a single level means no steps
};

// Runs `first` from x (at first.sigmas.front()) to first.sigmas.back(), then `second` from there
// (second.sigmas.front() must equal it) down to second.sigmas.back(). With no steps in `second`
// this is exactly first's sampler, with none in `first` exactly second's. Error when the levels
// do not join or neither part has a step.
at::Tensor sample_hybrid(const SamplerPart& first, const SamplerPart& second, at::Tensor x,
                         at::Generator& generator);

// One grid (decreasing, ending with 0) split after its first `base_steps` steps: `base` takes
// those with `base_sampler`, `student` the rest with `sampler`. Error unless
// 1 <= base_steps < sigmas.size() - 1.
at::Tensor sample_hybrid(const Denoiser& base, const std::string& base_sampler,
                         const Denoiser& student, const std::string& sampler,
                         const std::vector<double>& sigmas, int64_t base_steps, at::Tensor x,
                         at::Generator& generator);

}  // namespace distill::diffusion
