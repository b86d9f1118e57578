#pragma once
// The small trajectory-matching problem the matcher's tests share (CPU, and CPU against CUDA):
// 6 images of 1x8x8 in 3 classes, a one-block ConvNet of width 4, in double, and a target 0.05
// away from the start.
#include <ATen/ATen.h>

#include <memory>

#include "src/core/runtime.h"
#include "src/models/model.h"
#include "trajectories/trajectory_matcher.h"

namespace distill::trajectories::fixture {

struct MatchingCase {
  std::unique_ptr<models::Model> model;
  at::Tensor images, labels;
  MatchingTask task;
};

inline MatchingCase small_matching_case() {
  MatchingCase c;
  models::ModelOptions o;
  o.width = 4;
  o.depth = 1;
  c.model = models::make_model(o, 1, 8, 3);
  at::Generator gen = make_generator(3);
  c.images = at::randn({6, 1, 8, 8}, gen).to(at::kDouble);
  c.labels = at::tensor({0, 0, 1, 1, 2, 2}, at::kLong);
  at::Tensor start = c.model->init_params(gen).to(at::kDouble);
  c.task.start = start;
  c.task.target = start + 0.05 * at::randn(start.sizes(), gen).to(at::kDouble);
  c.task.seed = 17;
  return c;
}

}  // namespace distill::trajectories::fixture
