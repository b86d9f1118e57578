#pragma once
#include <ATen/core/Tensor.h>

#include <vector>

#include "src/config/options.h"
#include "src/train/trainer.h"

namespace distill::trajectories {

// AST-style smoothing of expert trajectories (Shen et al., "AST: ... Alignment with Smooth and
// High-Quality Expert Trajectories"): the experts' parameters should change slowly and evenly, so
// that a short student run can follow them. Two terms, both off by default:
//   loss scaling per epoch - the expert's loss is multiplied by loss_scale[e] in epoch e (the
//     public AST code damps early epochs with 0.5 ... 0.9); later epochs use 1,
//   gradient penalty - adds gradient_penalty * ||∇θ CE||², which penalizes steep regions
//     (needs a double backward, so each step costs about twice as much).
struct SmoothingOptions {
  std::vector<double> loss_scale;
  double gradient_penalty = 0.0;

  bool enabled() const { return !loss_scale.empty() || gradient_penalty > 0; }
  void visit(config::Visitor& v) {
    v.field("loss_scale", loss_scale,
            "AST: per-epoch multipliers of the expert loss (e.g. [0.5, 0.5, 0.55, 0.6]; later "
            "epochs 1; empty = off)");
    v.field("gradient_penalty", gradient_penalty,
            "AST: weight of ||grad_theta CE||^2 added to the expert loss (0 = off)");
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
  double penalty_sum_ = 0.0;
  int64_t steps_ = 0;
};

}  // namespace distill::trajectories
