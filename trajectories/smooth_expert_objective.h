#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

#include "src/config/options.h"
#include "src/train/trainer.h"

namespace distill::trajectories {

// AST-style smoothing of expert trajectories (Shen et al., "AST: ... Alignment with Smooth and
// High-Quality Expert Trajectories"): the experts' parameters should change slowly and evenly, so
// that a short student run can follow them. Three terms, all off by default:
//   loss scaling per epoch - the expert's classification loss is multiplied by loss_scale[e] in
//     epoch e; later epochs use 1. AST's code (its "clipping loss") uses 0.5, 0.55, ..., 0.95 in
//     epochs 0-9;
//   input-gradient penalty (AST's code) - adds input_gradient_penalty * mean over the pixels of
//     (||d(sum of logits)/dx||_2 - 1)^2 on the batch before augmentation, the norm taken over the
//     channels of each pixel (WGAN-GP style; AST uses weight 2). It is not loss-scaled;
//   parameter-gradient penalty (distill's) - adds gradient_penalty * ||∇θ CE||², which penalizes
//     steep regions of the loss, loss-scaled with it.
// Both penalties need a double backward, so a step costs about twice as much (the input one also
// runs a second forward pass).
struct SmoothingOptions {
  std::vector<double> loss_scale;
  double input_gradient_penalty = 0.0;
  double gradient_penalty = 0.0;

  bool enabled() const {
    return !loss_scale.empty() || input_gradient_penalty > 0 || gradient_penalty > 0;
  }
  void visit(config::Visitor& v) {
    v.field("loss_scale", loss_scale,
            "AST: per-epoch multipliers of the expert loss (AST's code: [0.5, 0.55, ..., 0.95]; "
            "later epochs 1; empty = off)");
    v.field("input_gradient_penalty", input_gradient_penalty,
            "AST: weight of the mean over pixels of (||d sum(logits) / d x|| - 1)^2 on the "
            "un-augmented batch (AST's code: 2; 0 = off)",
            config::Range::at_least(0));
    v.field("gradient_penalty", gradient_penalty,
            "weight of ||grad_theta CE||^2 added to the expert loss (0 = off; not AST's penalty, "
            "see input_gradient_penalty)",
            config::Range::at_least(0));
  }
};

// The expert loss with the smoothing terms, as a trainer objective.
class SmoothExpertObjective : public train::StepObjective {
 public:
  explicit SmoothExpertObjective(SmoothingOptions options);
  at::Tensor loss(const train::StepContext& step) override;
  std::map<std::string, double> take_epoch_metrics() override;

 private:
  SmoothingOptions options_;
  double penalty_sum_ = 0.0, input_penalty_sum_ = 0.0;
  int64_t steps_ = 0;
};

}  // namespace distill::trajectories
