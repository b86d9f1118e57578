#include "src/kd/self_distillation.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "src/core/error.h"

namespace distill::kd {

std::vector<LossSpec> weighted_ground_truth_losses(double ground_truth_weight) {
  if (!(ground_truth_weight >= 0 && ground_truth_weight <= 1)) {
    throw Error("the ground-truth weight must be in [0, 1], found " +
                std::to_string(ground_truth_weight));
  }
  LossSpec ce;
  ce.name = "ce";
  ce.weight = ground_truth_weight;
  LossSpec soft;
  soft.name = "hinton";
  soft.T = 1.0;
  soft.weight = 1.0 - ground_truth_weight;
  return {ce, soft};
}

GroundTruthWeight estimate_ground_truth_weight(const at::Tensor& distilled,
                                               const at::Tensor& fitted,
                                               const at::Tensor& targets) {
  if (distilled.sizes() != fitted.sizes() || distilled.sizes() != targets.sizes()) {
    throw Error("the ground-truth weight needs predictions and targets of one shape");
  }
  const at::Tensor f0 = distilled.to(at::kDouble), f1 = fitted.to(at::kDouble);
  const at::Tensor direction = f1 - f0;
  const double norm2 = direction.pow(2).sum().item<double>();
  if (!(norm2 > 1e-24)) {
    throw Error("the models trained with ground-truth weight 0 and 1 predict the same on the "
                "held-out split, so no weight can be derived; set kd.ground_truth_weight_rule = "
                "\"fixed\" and a kd.ground_truth_weight");
  }
  GroundTruthWeight w;
  w.unclipped = (direction * (targets.to(at::kDouble) - f0)).sum().item<double>() / norm2;
  w.weight = std::clamp(w.unclipped, 0.0, 1.0);
  return w;
}

}  // namespace distill::kd
