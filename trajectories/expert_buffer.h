#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "src/models/model.h"

namespace distill::trajectories {

// One expert's training run: flat parameters after each epoch; entry 0 is the initialization.
using Trajectory = std::vector<at::Tensor>;

// Writes trajectories in the MTT reference layout, so Python code reads them with torch.load:
// list[expert] of list[epoch] of list[parameter tensor in module.parameters() order].
void save_trajectories(const std::string& path, const std::vector<Trajectory>& experts,
                       const models::Model& model);

// Reads that layout (from this project or from the reference's replay_buffer_N.pt) and flattens
// each epoch as the reference does (cat of reshape(-1)). Error naming the file when the
// parameter shapes do not match `model`.
std::vector<Trajectory> load_trajectories(const std::string& path, const models::Model& model);

}  // namespace distill::trajectories
