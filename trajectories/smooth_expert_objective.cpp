#include "trajectories/smooth_expert_objective.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::trajectories {

namespace {

// AST's input-gradient penalty on the step's un-augmented batch (see the header).
at::Tensor input_gradient_penalty(const train::StepContext& step) {
  if (!step.forward || !step.clean_images.defined()) {
    throw Error(
        "experts.smoothing.input_gradient_penalty needs the trainer's un-augmented batch "
        "and forward pass (StepContext::clean_images, forward)");
  }
  at::Tensor x = step.clean_images.detach().requires_grad_(true);
  at::Tensor logits = step.forward(x);
  // create_graph: the penalty's gradient in θ goes through this input gradient.
  at::Tensor g = torch::autograd::grad({logits.sum()}, {x}, {}, true, true)[0];
  return (g.norm(2, {1}) - 1).pow(2).mean();
}

}  // namespace

SmoothExpertObjective::SmoothExpertObjective(SmoothingOptions options)
    : options_(std::move(options)) {
  for (double scale : options_.loss_scale) {
    if (!(scale > 0)) {
      throw Error("experts.smoothing.loss_scale: every multiplier must be > 0, found " +
                  std::to_string(scale));
    }
  }
  config::check(options_, "experts.smoothing");  // the declared ranges (SmoothingOptions)
}

at::Tensor SmoothExpertObjective::loss(const train::StepContext& step) {
  at::Tensor ce = train::classification_loss(step.logits, step.targets);
  at::Tensor total = ce;
  ++steps_;  // the penalties' epoch means divide by it
  if (options_.gradient_penalty > 0) {
    // create_graph: the penalty's own gradient (a Hessian-vector product) reaches the update.
    at::Tensor grad = torch::autograd::grad({ce}, {step.params}, {}, true, true)[0];
    at::Tensor penalty = grad.pow(2).sum();
    penalty_sum_ += penalty.item<double>();
    total = total + options_.gradient_penalty * penalty;
  }
  const size_t epoch = static_cast<size_t>(step.epoch);
  if (epoch < options_.loss_scale.size()) total = total * options_.loss_scale[epoch];
  if (options_.input_gradient_penalty > 0) {
    at::Tensor penalty = input_gradient_penalty(step);
    input_penalty_sum_ += penalty.item<double>();
    total = total + options_.input_gradient_penalty * penalty;
  }
  return total;
}

std::map<std::string, double> SmoothExpertObjective::take_epoch_metrics() {
  std::map<std::string, double> out;
  if (steps_ > 0 && options_.gradient_penalty > 0) {
    out["gradient_norm_sq"] = penalty_sum_ / static_cast<double>(steps_);
  }
  if (steps_ > 0 && options_.input_gradient_penalty > 0) {
    out["input_gradient_penalty"] = input_penalty_sum_ / static_cast<double>(steps_);
  }
  penalty_sum_ = 0.0;
  input_penalty_sum_ = 0.0;
  steps_ = 0;
  return out;
}

}  // namespace distill::trajectories
