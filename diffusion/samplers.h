#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/noise_schedule.h"
#include "src/config/options.h"

namespace distill::diffusion {

// Samplers of the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (EDM's ODE with
// sigma(t) = t) and of its stochastic counterpart. Each runs from x at sigmas.front() down the
// decreasing grid `sigmas` (which ends with 0, see sampling_sigmas) and returns the final state.
// `steps` = sigmas.size() - 1.

// DDIM (Song et al. 2021, eta = 0): x' = D + (s' / s)(x - D). One evaluation per step; in this
// form it is exactly Euler's method on the ODE in sigma.
at::Tensor sample_ddim(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas);

// DDPM ancestral sampling (Ho et al. 2020): x' drawn from q(x' | x, x0 = D), i.e.
// mean = D (s^2 - s'^2) / s^2 + x s'^2 / s^2, variance s'^2 (s^2 - s'^2) / s^2.
at::Tensor sample_ddpm(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas,
                       at::Generator& generator);

// EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1 without churn): Euler
// predictor, trapezoidal corrector except for the final step to sigma = 0. 2 steps - 1
// evaluations.
at::Tensor sample_heun(const Denoiser& denoiser, at::Tensor x, const std::vector<double>& sigmas);

// DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in lambda = -log sigma: the first step and the
// step to sigma = 0 are first order, the others extrapolate D linearly from the previous step.
at::Tensor sample_dpmpp_2m(const Denoiser& denoiser, at::Tensor x,
                           const std::vector<double>& sigmas);

// Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a denoiser that is a
// consistency function f (its output at any level is the end of the ODE): x = f(x_T, sigmas[0]);
// then for each later level s: x = f(x + sqrt(s^2 - sigma_min^2) z, s) with fresh z ~ N(0, I).
// x_T is noise at sigmas[0]; the levels (no final 0) decrease and stay above sigma_min.
at::Tensor consistency_sample(const Denoiser& f, at::Tensor x, const std::vector<double>& sigmas,
                              double sigma_min, at::Generator& generator);

// Which sampler, how many steps, on which noise levels.
struct SamplerOptions {
  std::string name = "heun";
  int64_t steps = 18;
  ScheduleOptions schedule;
  std::vector<double> sigmas;  // explicit levels (the grid without its final 0); empty = schedule

  void visit(config::Visitor& v) {
    v.choice("name", name,
             "ddim (deterministic), ddpm (ancestral), heun (EDM), dpmpp_2m (DPM-Solver++ 2M) or "
             "consistency (multistep consistency sampling, for consistency-distilled students)",
             {"ddim", "ddpm", "heun", "dpmpp_2m", "consistency"});
    v.field("steps", steps, "sampling steps; heun evaluates the denoiser 2 steps - 1 times",
            config::Range::at_least(1));
    v.section("schedule", schedule);
    v.field("sigmas", sigmas,
            "explicit noise levels, decreasing and > 0, in place of the schedule's (a final 0 is "
            "appended; their count must equal steps), e.g. [80, 0.8] for 2-step consistency "
            "sampling; empty = the schedule's grid");
    v.rule(sigmas.empty() || static_cast<int64_t>(sigmas.size()) == steps,
           "diffusion.sampler.sigmas has " + std::to_string(sigmas.size()) +
               " levels, one per step, but diffusion.sampler.steps is " + std::to_string(steps) +
               "; set both");
    const size_t bad = first_bad_level();
    const std::string entry =
        bad < sigmas.size() ? "[" + std::to_string(bad) + "] = " + std::to_string(sigmas[bad]) : "";
    v.rule(bad == sigmas.size(),
           "diffusion.sampler.sigmas" + entry + ": the levels must be finite, > 0 and decreasing");
  }

  // The first explicit level that is not finite, > 0 and below the one before it (sigmas.size()
  // when there is none), so the rule names the offending entry.
  size_t first_bad_level() const {
    for (size_t i = 0; i < sigmas.size(); ++i) {
      const double s = sigmas[i];
      if (!(s > 0) || !std::isfinite(s) || (i > 0 && !(s < sigmas[i - 1]))) return i;
    }
    return sigmas.size();
  }
};

// The grid `options` samples on (ending with 0): options.sigmas + {0}, or the schedule's. Checks
// the declared ranges and rules first; `key` names the section in their messages
// ("diffusion.sampler").
std::vector<double> sampler_sigmas(const SamplerOptions& options, const std::string& key);

// Runs the named sampler on `x` (whose noise level is sigmas.front()); `generator` feeds ddpm and
// consistency. `consistency` is consistency_sample on the grid's levels without its final 0 (which
// it needs) and sigma_min = 0: a grid does not carry the model's sigma_min, whose square (4e-6 by
// default) is negligible next to any level worth re-noising to.
at::Tensor run_sampler(const std::string& name, const Denoiser& denoiser, at::Tensor x,
                       const std::vector<double>& sigmas, at::Generator& generator);

// Draws `count` items of `item_shape` from the sampler's starting distribution N(0, s_max^2 I)
// and samples them; the denoiser sees `dtype` tensors.
at::Tensor generate(const SamplerOptions& options, const Denoiser& denoiser,
                    const std::vector<int64_t>& item_shape, int64_t count,
                    at::Generator& generator, at::ScalarType dtype);

}  // namespace distill::diffusion
