#pragma once
// Self-distillation with weighted ground-truth targets: Borup & Andersen, "Even your Teacher Needs
// Guidance: Ground-Truth Targets Dampen Regularization Imposed by Self-Distillation" (NeurIPS
// 2021; code Kennethborup/self_distillation). Round 0 fits the labels; round t >= 1 trains a fresh
// model of the same architecture on the targets
//   z_t = alpha y + (1 - alpha) f_{t-1}(x)
// (one-hot y, the previous round's predicted probabilities at T = 1). The paper's code scores
// probabilities with a squared error; distill uses cross-entropy, which is linear in its target,
// so the mixed target is exactly alpha ce + (1 - alpha) x (KL to f_{t-1} at T = 1, which differs
// from the soft cross-entropy by a constant): the terms of weighted_ground_truth_losses.
//
// The weight. With f_{t-1} fixed, a model linear in its targets (the paper's kernel ridge
// regression) predicts f_alpha = f_0 + alpha (f_1 - f_0), f_0 the round-t model trained with
// alpha = 0 and f_1 the one trained with alpha = 1 (the round-0 model: the labels alone), so the
// alpha whose predictions are closest to the truth on held-out data is the least-squares
//   alpha* = <f_1 - f_0, y - f_0> / |f_1 - f_0|^2.
// distill estimates it so for networks on a held-out split (probabilities against one-hot labels),
// clipped to [0, 1]; a network is only roughly linear in its targets, so this is an estimate.
#include <ATen/core/Tensor.h>

#include <vector>

#include "src/kd/loss_terms.h"

namespace distill::kd {

// [ce weight alpha, hinton T 1 weight 1 - alpha]: cross-entropy against the mixed target, up to a
// constant. Error unless 0 <= alpha <= 1.
std::vector<LossSpec> weighted_ground_truth_losses(double ground_truth_weight);

struct GroundTruthWeight {
  double weight = 1.0;     // clipped to [0, 1]: what the round trains with
  double unclipped = 1.0;  // the least-squares value itself
};

// alpha* above from the predictions of the alpha = 0 model (`distilled`) and of the alpha = 1
// model (`fitted`) on the same examples, against `targets` (all N,K, or any equal shapes). Error
// when the two predict the same (every alpha is then as good: no weight to derive).
GroundTruthWeight estimate_ground_truth_weight(const at::Tensor& distilled,
                                               const at::Tensor& fitted,
                                               const at::Tensor& targets);

}  // namespace distill::kd
