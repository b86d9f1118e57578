#include "trajectories/trajectory_matcher.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/core/error.h"
#include "src/core/runtime.h"

namespace distill::trajectories {
namespace {

constexpr uint64_t kBatchStream = 31;
constexpr uint64_t kAugmentStream = 32;

}  // namespace

TrajectoryMatcher::TrajectoryMatcher(const models::Model& model, MatchingOptions options,
                                     train::AugmentFn augment)
    : model_(model), options_(std::move(options)), augment_(std::move(augment)) {
  if (options_.syn_steps < 1) {
    throw Error("mtt.syn_steps must be >= 1, found " + std::to_string(options_.syn_steps));
  }
  if (options_.batch_syn < 0) {
    throw Error("mtt.batch_syn must be >= 0, found " + std::to_string(options_.batch_syn));
  }
}

std::vector<at::Tensor> TrajectoryMatcher::batches(int64_t count, uint64_t seed) const {
  const int64_t batch = options_.batch_syn == 0 ? count : std::min(options_.batch_syn, count);
  at::Generator generator = make_generator(seed, kBatchStream);
  std::vector<at::Tensor> out;
  at::Tensor order;
  int64_t used = count;
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    if (used + batch > count) {  // the permutation is used up: draw a new one
      order = at::randperm(count, generator, at::kLong);
      used = 0;
    }
    out.push_back(order.narrow(0, used, batch));
    used += batch;
  }
  return out;
}

at::Tensor TrajectoryMatcher::step_loss(const at::Tensor& images, const at::Tensor& labels,
                                        const at::Tensor& params, const at::Tensor& index,
                                        uint64_t seed, int64_t step) const {
  at::Tensor x = images.index_select(0, index.to(images.device()));
  at::Tensor y = labels.index_select(0, index.to(labels.device()));
  if (augment_) {
    at::Generator draw = make_generator(seed, kAugmentStream, static_cast<uint64_t>(step));
    x = augment_(x, draw);
  }
  models::ForwardArgs args;
  args.train = true;
  // Batch-norm students use batch statistics; their running statistics are scratch here.
  if (model_.num_buffers() > 0) args.buffers = model_.init_buffers().to(params.options());
  return train::classification_loss(model_.forward(x, params, args), y);
}

MetaGradient TrajectoryMatcher::meta_gradient(const at::Tensor& images, const at::Tensor& labels,
                                              double lr, const MatchingTask& task) const {
  return options_.meta_grad == "unroll" ? unrolled(images, labels, lr, task)
                                        : adjoint(images, labels, lr, task);
}

// Autograd through all syn_steps (the reference's formulation): every step's graph is kept.
MetaGradient TrajectoryMatcher::unrolled(const at::Tensor& images, const at::Tensor& labels,
                                         double lr, const MatchingTask& task) const {
  at::Tensor x = images.detach().requires_grad_(true);
  at::Tensor lr_t = at::scalar_tensor(lr, images.options()).requires_grad_(true);
  auto index = batches(images.size(0), task.seed);
  at::Tensor params = task.start.detach().requires_grad_(true);
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    at::Tensor loss = step_loss(x, labels, params, index[step], task.seed, step);
    at::Tensor grad = torch::autograd::grad({loss}, {params}, {}, true, true)[0];
    params = params - lr_t * grad;
  }
  // MTT eq. 2: distance to the target normalised by how far the expert itself moved.
  at::Tensor distance = (params - task.target).pow(2).sum();
  at::Tensor expert_distance = (task.start - task.target).pow(2).sum();
  at::Tensor loss = distance / expert_distance;
  auto grads = torch::autograd::grad({loss}, {x, lr_t});
  return {loss.item<double>(), grads[0], grads[1].item<double>()};
}

// The same gradient by reverse-mode over the steps, recomputing each step from its stored
// parameters: with λ_N = dL/dθ_N and θ_{i+1} = θ_i - η g_i(θ_i, X),
//   dL/dη += -<λ_{i+1}, g_i>,  dL/dX += -η (∂g_i/∂X)ᵀ λ_{i+1},  λ_i = λ_{i+1} - η H_i λ_{i+1},
// where both products come from one double-backward of <g_i, λ_{i+1}>. Memory: one parameter
// snapshot per step plus one step's graph, independent of syn_steps.
MetaGradient TrajectoryMatcher::adjoint(const at::Tensor& images, const at::Tensor& labels,
                                        double lr, const MatchingTask& task) const {
  auto index = batches(images.size(0), task.seed);
  const at::Tensor data = images.detach();
  std::vector<at::Tensor> snapshots;
  snapshots.reserve(options_.syn_steps + 1);
  at::Tensor params = task.start.detach().clone();
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    snapshots.push_back(params);
    at::Tensor leaf = params.detach().requires_grad_(true);
    at::Tensor loss = step_loss(data, labels, leaf, index[step], task.seed, step);
    at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
    params = (params - lr * grad).detach();
  }
  at::Tensor expert_distance = (task.start - task.target).pow(2).sum();
  at::Tensor difference = params - task.target;
  double loss = (difference.pow(2).sum() / expert_distance).item<double>();
  at::Tensor lambda = 2.0 * difference / expert_distance;
  at::Tensor images_grad = at::zeros_like(data);
  double lr_grad = 0.0;
  for (int64_t step = options_.syn_steps - 1; step >= 0; --step) {
    at::Tensor leaf = snapshots[step].detach().requires_grad_(true);
    at::Tensor x = data.detach().requires_grad_(true);
    at::Tensor step_value = step_loss(x, labels, leaf, index[step], task.seed, step);
    at::Tensor grad = torch::autograd::grad({step_value}, {leaf}, {}, true, true)[0];
    at::Tensor projected = (grad * lambda).sum();
    lr_grad -= projected.item<double>();
    auto second = torch::autograd::grad({projected}, {leaf, x}, {}, false, false, true);
    if (second[1].defined()) images_grad.sub_(second[1], lr);
    if (second[0].defined()) lambda = lambda - lr * second[0];
    snapshots[step] = at::Tensor();  // free as we go
  }
  return {loss, images_grad, lr_grad};
}

}  // namespace distill::trajectories
