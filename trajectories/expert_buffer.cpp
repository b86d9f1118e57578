#include "trajectories/expert_buffer.h"

#include <ATen/ATen.h>
#include <ATen/core/List.h>

#include <algorithm>

#include "src/core/error.h"
#include "src/io/tensor_file.h"
#include "src/io/atomic_file.h"

#include <torch/csrc/jit/serialization/pickle.h>

namespace distill::trajectories {

void save_trajectories(const std::string& path, const std::vector<Trajectory>& experts,
                       const models::Model& model) {
  c10::impl::GenericList outer(c10::AnyType::get());
  for (const Trajectory& trajectory : experts) {
    c10::impl::GenericList epochs(c10::AnyType::get());
    for (const at::Tensor& flat : trajectory) {
      c10::List<at::Tensor> params;
      for (const at::Tensor& p : models::Model::unflatten(flat.detach().cpu(), model.param_specs())) {
        params.push_back(p.clone());  // own storage per tensor, like module.parameters()
      }
      epochs.push_back(params);
    }
    outer.push_back(epochs);
  }
  std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(outer));
  io::write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

std::vector<Trajectory> load_trajectories(const std::string& path, const models::Model& model) {
  c10::IValue value = io::load_ivalue(path);
  auto fail = [&](const std::string& what) {
    throw Error("'" + path + "': expected list[expert][epoch][parameter tensor] for a " +
                model.arch() + " with " + std::to_string(model.param_specs().size()) +
                " parameter tensors, " + what);
  };
  if (!value.isList()) fail("found " + std::string(value.tagKind()) + " at the top level");
  std::vector<Trajectory> experts;
  const auto& specs = model.param_specs();
  for (const c10::IValue& expert : value.toListRef()) {
    if (!expert.isList()) fail("found an expert that is a " + std::string(expert.tagKind()));
    Trajectory trajectory;
    for (const c10::IValue& epoch : expert.toListRef()) {
      if (!epoch.isList() && !epoch.isTensorList()) {
        fail("found an epoch entry that is a " + std::string(epoch.tagKind()));
      }
      std::vector<at::Tensor> pieces;
      for (const c10::IValue& p : epoch.toListRef()) {
        if (!p.isTensor()) fail("found a parameter entry that is a " + std::string(p.tagKind()));
        pieces.push_back(p.toTensor());
      }
      if (pieces.size() != specs.size()) {
        fail("found " + std::to_string(pieces.size()) + " tensors in epoch " +
             std::to_string(trajectory.size()) + " of expert " + std::to_string(experts.size()));
      }
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (pieces[i].sizes() != at::IntArrayRef(specs[i].shape)) {
          fail("parameter " + std::to_string(i) + " (" + specs[i].name + ") has shape " +
               c10::str(pieces[i].sizes()) + ", expected " + c10::str(at::IntArrayRef(specs[i].shape)));
        }
        pieces[i] = pieces[i].reshape(-1).to(at::kFloat);
      }
      trajectory.push_back(at::cat(pieces));
    }
    // What the reference buffer.py writes when run on a CPU: `p.detach().cpu()` aliases the live
    // parameters there, so every saved epoch is the final one. Matching such a trajectory
    // divides 0 by 0 at every iteration.
    const bool all_identical =
        trajectory.size() > 1 &&
        std::all_of(trajectory.begin() + 1, trajectory.end(),
                    [&](const at::Tensor& epoch) { return at::equal(epoch, trajectory.front()); });
    if (all_identical) {
      throw Error("'" + path + "': the " + std::to_string(trajectory.size()) +
                  " saved epochs of expert " + std::to_string(experts.size()) +
                  " are all identical, so there is no trajectory to match (a buffer saved on a "
                  "CPU by code that stores p.detach().cpu() without .clone() holds the final "
                  "weights in every epoch); save copies of the parameters, or train the experts "
                  "with distill experts");
    }
    experts.push_back(std::move(trajectory));
  }
  return experts;
}

}  // namespace distill::trajectories
