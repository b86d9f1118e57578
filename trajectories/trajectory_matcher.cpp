#include "trajectories/trajectory_matcher.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/core/random_streams.h"

namespace distill::trajectories {
namespace {


// Soft cross-entropy to softmax(label logits) (DATM), or plain cross-entropy for class ids.
at::Tensor student_loss(const at::Tensor& logits, const at::Tensor& labels) {
  if (!at::isFloatingType(labels.scalar_type())) return train::classification_loss(logits, labels);
  return -(at::softmax(labels, 1) * at::log_softmax(logits, 1)).sum() / logits.size(0);
}

}  // namespace

StartWindow start_epoch_window(const MatchingOptions& o, int64_t iteration, int64_t iterations) {
  StartWindow window{o.min_start_epoch, o.max_start_epoch};
  if (o.final_max_start_epoch > o.max_start_epoch) {
    const int64_t span = o.window_growth_iterations > 0 ? o.window_growth_iterations : iterations;
    // The last iteration of the span draws from the full window.
    const double progress =
        span > 1 ? std::min(1.0, double(iteration) / double(span - 1)) : 1.0;
    window.end += static_cast<int64_t>(progress * double(o.final_max_start_epoch - o.max_start_epoch));
  }
  return window;
}

int64_t final_window_end(const MatchingOptions& o) {
  return std::max(o.max_start_epoch, o.final_max_start_epoch);
}

double balanced_loss_scale(int64_t start_epoch, int64_t max_start_epoch) {
  const int64_t half = max_start_epoch / 2;
  auto log5 = [](double x) { return std::log(x) / std::log(5.0); };
  return start_epoch >= half ? log5(double(start_epoch - half + 8))
                             : 1.0 / log5(double(half - start_epoch + 8));
}

at::Tensor perturb_conv_kernels(const at::Tensor& params, const models::Model& model,
                                at::Generator& generator) {
  at::Tensor out = params.detach().clone();
  std::vector<at::Tensor> views = models::Model::unflatten(out, model.param_specs());
  for (at::Tensor& w : views) {
    if (w.dim() != 4) continue;
    // Drawn on the CPU generator in float (as AST's torch.randn), then moved to w's device.
    at::Tensor d =
        at::randn(w.sizes(), generator, at::TensorOptions().dtype(at::kFloat)).to(w.options());
    w.add_(d / d.norm() * w);
  }
  return out;
}

TrajectoryMatcher::TrajectoryMatcher(const models::Model& model, MatchingOptions options,
                                     train::AugmentFn augment)
    : model_(model), options_(std::move(options)), augment_(std::move(augment)) {
  config::check(options_, "mtt.matching");  // the declared ranges and rules (MatchingOptions)
  if (options_.weight_perturbation &&
      std::none_of(model_.param_specs().begin(), model_.param_specs().end(),
                   [](const models::TensorSpec& spec) { return spec.shape.size() == 4; })) {
    throw Error("mtt.matching.weight_perturbation perturbs convolution kernels, and the student '" +
                model_.arch() + "' has none");
  }
}

void TrajectoryMatcher::set_process_group(std::shared_ptr<const dist::ProcessGroup> group,
                                          std::string split) {
  if (split != "batch" && split != "class") {
    throw Error("mtt.dist_split must be batch or class, found '" + split + "'");
  }
  if (group && group->distributed()) {
    if (options_.meta_grad == "unroll") {
      throw Error(
          "mtt.matching.meta_grad = unroll runs on one process only (its graph would "
          "need collectives inside autograd); use adjoint (the same gradient) with " +
          std::to_string(group->world_size()) + " processes");
    }
    if (model_.num_buffers() > 0) {
      throw Error("mtt on " + std::to_string(group->world_size()) + " processes: the student '" +
                  model_.arch() + "' has batch norm, whose statistics would differ per part of " +
                  "the batch; use an instance-norm student or one process");
    }
  }
  group_ = std::move(group);
  split_ = std::move(split);
}

at::Tensor TrajectoryMatcher::part_rows(const at::Tensor& index, const at::Tensor& labels) const {
  const int64_t count = index.size(0);
  if (!parallel()) return at::arange(count, at::kLong);
  const int64_t rank = group_->rank(), world = group_->world_size();
  if (split_ == "batch") {
    const auto [first, end] = group_->share_of(count);
    return at::arange(first, end, at::kLong);
  }
  at::Tensor classes = at::isFloatingType(labels.scalar_type()) ? labels.argmax(1) : labels;
  at::Tensor batch_classes = classes.cpu().index_select(0, index.cpu());
  return at::nonzero(batch_classes.remainder(world).eq(rank)).reshape(-1);
}

std::vector<at::Tensor> TrajectoryMatcher::batches(int64_t count, uint64_t seed) const {
  const int64_t batch = options_.batch_syn == 0 ? count : std::min(options_.batch_syn, count);
  at::Generator generator = make_generator(seed, streams::kMatcherBatch);
  std::vector<at::Tensor> out;
  at::Tensor order;
  int64_t used = count;
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    if (used == count) {  // the permutation is used up: draw a new one
      order = at::randperm(count, generator, at::kLong);
      used = 0;
    }
    // As the reference code: a permutation's short last chunk is a step of its own, so every
    // image takes part when batch_syn does not divide the set.
    const int64_t size = std::min(batch, count - used);
    out.push_back(order.narrow(0, used, size));
    used += size;
  }
  return out;
}

std::vector<TrajectoryMatcher::Intermediate> TrajectoryMatcher::intermediate_points(
    size_t count) const {
  std::vector<Intermediate> points;
  if (options_.intermediate == "none") return points;
  const int64_t segments = static_cast<int64_t>(count) + 1;
  for (int64_t i = 1; i < segments; ++i) {
    const double weight = options_.intermediate == "adaptive" ? double(i) / double(segments) : 1.0;
    points.push_back({(options_.syn_steps / segments) * i, weight});
  }
  return points;
}

at::Tensor TrajectoryMatcher::step_loss(const at::Tensor& images, const at::Tensor& labels,
                                        const at::Tensor& params, const at::Tensor& index,
                                        const MatchingTask& task, int64_t step) const {
  at::Tensor x = images.index_select(0, index.to(images.device()));
  at::Tensor y = labels.index_select(0, index.to(labels.device()));
  if (augment_) {
    at::Generator draw = make_generator(task.seed, streams::kMatcherAugment, static_cast<uint64_t>(step));
    x = augment_(x, draw);
  }
  // Several processes: this rank's rows of the batch, augmented as part of the whole batch (the
  // single-process draws), with the loss weighted by the rows' share so that the ranks' losses
  // sum to the batch's mean loss.
  double share = 1.0;
  if (parallel()) {
    at::Tensor rows = part_rows(index, labels);
    if (rows.size(0) == 0) return (params * 0).sum();
    share = static_cast<double>(rows.size(0)) / static_cast<double>(index.size(0));
    x = x.index_select(0, rows.to(x.device()));
    y = y.index_select(0, rows.to(y.device()));
  }
  models::ForwardArgs args;
  args.train = true;
  // Batch-norm students use batch statistics; their running statistics are scratch here.
  if (model_.num_buffers() > 0) args.buffers = model_.init_buffers().to(params.options());
  at::Tensor loss = student_loss(model_.forward(x, params, args), y);
  const double scale = share * task.loss_scale;
  return scale == 1.0 ? loss : loss * scale;
}

MetaGradient TrajectoryMatcher::meta_gradient(const at::Tensor& images, const at::Tensor& labels,
                                              double lr, const MatchingTask& task) const {
  return options_.meta_grad == "unroll" ? unrolled(images, labels, lr, task)
                                        : adjoint(images, labels, lr, task,
                                                  options_.meta_grad == "adjoint");
}

// Autograd through all syn_steps (the reference's formulation): every step's graph is kept.
MetaGradient TrajectoryMatcher::unrolled(const at::Tensor& images, const at::Tensor& labels,
                                         double lr, const MatchingTask& task) const {
  at::Tensor x = images.detach().requires_grad_(true);
  const bool soft = at::isFloatingType(labels.scalar_type());
  at::Tensor y = soft ? labels.detach().requires_grad_(true) : labels;
  at::Tensor lr_t = at::scalar_tensor(lr, images.options()).requires_grad_(true);
  auto index = batches(images.size(0), task.seed);
  at::Tensor params = task.start.detach().requires_grad_(true);
  const std::vector<Intermediate> points = intermediate_points(task.intermediate_targets.size());
  // MTT eq. 2: distance to the target normalised by how far the expert itself moved.
  auto matching_term = [&](const at::Tensor& student, const at::Tensor& target) {
    return (student - target).pow(2).sum() / (task.start - target).pow(2).sum();
  };
  at::Tensor loss = at::zeros({}, task.start.options());
  at::Tensor velocity;  // student_momentum: b_i
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    for (size_t i = 0; i < points.size(); ++i) {
      if (points[i].step == step) {
        loss = loss + points[i].weight * matching_term(params, task.intermediate_targets[i]);
      }
    }
    at::Tensor step_value = step_loss(x, y, params, index[step], task, step);
    at::Tensor grad = torch::autograd::grad({step_value}, {params}, {}, true, true)[0];
    if (options_.student_momentum > 0) {
      velocity = velocity.defined() ? options_.student_momentum * velocity + grad : grad;
      grad = velocity;
    }
    params = params - lr_t * grad;
  }
  loss = loss + matching_term(params, task.target);
  std::vector<at::Tensor> inputs = {x, lr_t};
  if (soft) inputs.push_back(y);
  auto grads = torch::autograd::grad({loss}, inputs);
  return {loss.item<double>(), grads[0], grads[1].item<double>(),
          soft ? grads[2] : at::Tensor()};
}

// The same gradient by reverse-mode over the steps, recomputing each step from its stored
// parameters: with λ_N = dL/dθ_N and θ_{i+1} = θ_i - η g_i(θ_i, X),
//   dL/dη += -<λ_{i+1}, g_i>,  dL/dX += -η (∂g_i/∂X)ᵀ λ_{i+1},  λ_i = λ_{i+1} - η H_i λ_{i+1},
// where both products come from one double-backward of <g_i, λ_{i+1}>. Memory: one parameter
// snapshot per step plus one step's graph, independent of syn_steps. Without `exact` (tesla),
// λ is never multiplied by a Hessian (it stays λ_N, plus any intermediate term's gradient once
// the sweep passes that term's step): each batch's gradient as if the later steps' parameters
// did not depend on it.
// With heavy-ball momentum (θ_{i+1} = θ_i - η b_i, b_i = μ b_{i-1} + g_i) the velocities are
// stored too and B_i = dL/db_i = -η λ_{i+1} + μ B_{i+1} takes the place of -η λ_{i+1} above:
//   dL/dη += -<λ_{i+1}, b_i>,  dL/dX += (∂g_i/∂X)ᵀ B_i,  λ_i = λ_{i+1} + H_i B_i.
MetaGradient TrajectoryMatcher::adjoint(const at::Tensor& images, const at::Tensor& labels,
                                        double lr, const MatchingTask& task, bool exact) const {
  auto index = batches(images.size(0), task.seed);
  const at::Tensor data = images.detach();
  std::vector<at::Tensor> snapshots;
  snapshots.reserve(options_.syn_steps + 1);
  at::Tensor params = task.start.detach().clone();
  // Heavy-ball momentum: the velocities b_i are stored too (the lr's gradient needs them).
  const double momentum = options_.student_momentum;
  at::Tensor velocity;
  std::vector<at::Tensor> velocities;
  for (int64_t step = 0; step < options_.syn_steps; ++step) {
    snapshots.push_back(params);
    at::Tensor leaf = params.detach().requires_grad_(true);
    at::Tensor loss = step_loss(data, labels, leaf, index[step], task, step);
    at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
    if (parallel()) group_->all_reduce(grad, dist::Reduce::kSum);
    if (momentum > 0) {
      velocity = velocity.defined() ? (momentum * velocity + grad).detach() : grad;
      velocities.push_back(velocity);
      grad = velocity;
    }
    params = (params - lr * grad).detach();
  }
  at::Tensor expert_distance = (task.start - task.target).pow(2).sum();
  at::Tensor difference = params - task.target;
  double loss = (difference.pow(2).sum() / expert_distance).item<double>();
  at::Tensor lambda = 2.0 * difference / expert_distance;
  // Intermediate terms w_i ||θ_{n_i} - T_i||² / ||θ_0 - T_i||²: their value now, their gradient
  // joins λ when the backward sweep reaches θ_{n_i}.
  const std::vector<Intermediate> points = intermediate_points(task.intermediate_targets.size());
  std::vector<at::Tensor> intermediate_grads(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    const at::Tensor& target = task.intermediate_targets[i];
    at::Tensor distance = (task.start - target).pow(2).sum();
    at::Tensor offset = snapshots[points[i].step] - target;
    loss += points[i].weight * (offset.pow(2).sum() / distance).item<double>();
    intermediate_grads[i] = points[i].weight * 2.0 * offset / distance;
  }
  at::Tensor images_grad = at::zeros_like(data);
  const bool soft = at::isFloatingType(labels.scalar_type());
  at::Tensor labels_grad = soft ? at::zeros_like(labels) : at::Tensor();
  double lr_grad = 0.0;
  at::Tensor velocity_adjoint =  // momentum: B_{i+1} (B_N = 0)
      momentum > 0 ? at::zeros_like(lambda) : at::Tensor();
  for (int64_t step = options_.syn_steps - 1; step >= 0; --step) {
    at::Tensor leaf = snapshots[step].detach().requires_grad_(true);
    at::Tensor x = data.detach().requires_grad_(true);
    at::Tensor y = soft ? labels.detach().requires_grad_(true) : labels;
    at::Tensor step_value = step_loss(x, y, leaf, index[step], task, step);
    at::Tensor grad = torch::autograd::grad({step_value}, {leaf}, {}, true, true)[0];
    // g_i reaches the loss through dL/dg_i = coefficient * direction: -lr λ_{i+1} for plain SGD;
    // with momentum B_i = dL/db_i = -lr λ_{i+1} + μ B_{i+1} (b_i moves θ_{i+1} and b_{i+1}).
    at::Tensor direction = lambda;
    double coefficient = -lr;
    if (momentum > 0) {
      velocity_adjoint = -lr * lambda + momentum * velocity_adjoint;
      direction = velocity_adjoint;
      coefficient = 1.0;
    }
    at::Tensor projected = (grad * direction).sum();
    // Without momentum each rank holds its rows' share of <λ, g_i>, summed at the end; the
    // velocity is already whole on every rank, so one rank counts its term.
    if (momentum == 0) {
      lr_grad -= projected.item<double>();
    } else if (!parallel() || group_->is_main()) {
      lr_grad -= (lambda * velocities[step]).sum().item<double>();
    }
    // tesla never uses the Hessian-vector product in θ: do not ask autograd for it.
    std::vector<at::Tensor> inputs = {x};
    if (soft) inputs.push_back(y);
    if (exact) inputs.push_back(leaf);
    // (A rank whose part of this batch is empty has a constant projection: no gradients.)
    auto second = projected.requires_grad()
                      ? torch::autograd::grad({projected}, inputs, {}, false, false, true)
                      : std::vector<at::Tensor>(inputs.size());
    if (second[0].defined()) images_grad.add_(second[0], coefficient);
    if (soft && second[1].defined()) labels_grad.add_(second[1], coefficient);
    if (exact) {
      at::Tensor hvp = second.back().defined() ? second.back() : at::zeros_like(lambda);
      if (parallel()) group_->all_reduce(hvp, dist::Reduce::kSum);
      lambda = lambda + coefficient * hvp;
    }
    // λ is now dL/dθ_step (tesla: λ_N); an intermediate term matched at θ_step adds its gradient.
    for (size_t i = 0; i < points.size(); ++i) {
      if (points[i].step == step) lambda = lambda + intermediate_grads[i];
    }
    snapshots[step] = at::Tensor();  // free as we go
    if (momentum > 0) velocities[step] = at::Tensor();
  }
  if (parallel()) {
    // Each rank holds the gradient of its rows' terms: one all-reduce sums them.
    std::vector<at::Tensor> parts = {images_grad.reshape(-1)};
    if (soft) parts.push_back(labels_grad.reshape(-1));
    parts.push_back(at::full({1}, lr_grad, images_grad.options()));
    at::Tensor flat = at::cat(parts);
    group_->all_reduce(flat, dist::Reduce::kSum);
    int64_t offset = 0;
    images_grad = flat.narrow(0, offset, images_grad.numel()).view(images_grad.sizes());
    offset += images_grad.numel();
    if (soft) {
      labels_grad = flat.narrow(0, offset, labels_grad.numel()).view(labels_grad.sizes());
      offset += labels_grad.numel();
    }
    lr_grad = flat[offset].item<double>();
  }
  return {loss, images_grad, lr_grad, labels_grad};
}

}  // namespace distill::trajectories
