#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/progressive_distillation.h"

namespace distill::diffusion {

// Data-free training points (the TBCM idea: Trajectory-Backward Consistency Models, Tang et al.
// 2025): instead of noising real images, a point at level s is where the teacher's own
// probability-flow ODE, started from pure noise x_T ~ N(0, sigma_max^2 I), arrives at s. Each
// point is integrated with `steps` Heun steps (EDM Algorithm 1) on its own Karras grid (rho 7)
// from max(sigma_max, s) down to s; a level at or above sigma_max gets the noise itself at that
// level. The first draw from the generator is x_T (count x item_shape, in `dtype`) scaled to its
// start level, so a caller can re-create the trajectory's start. No dataset is read.
// Choose sigma_max where the noisy marginal is already noise for the data's scale (EDM's 80):
// starting at a VP schedule's top level (e^10 for log-SNR -20) spends a Karras grid's few steps
// far above the data and lands off the modes (measured: 8-step points at sigma
// .002 of the test mixture, 1 % near its modes from e^10, 80 % from 80, 93 % with 64 steps).
PointSource teacher_trajectory_points(Denoiser teacher, std::vector<int64_t> item_shape,
                                      at::ScalarType dtype, double sigma_max, int64_t steps);

}  // namespace distill::diffusion
