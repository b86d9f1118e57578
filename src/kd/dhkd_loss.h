#pragma once
// DHKD: Yang, Zong, Huang, Feng & An, "Dual-Head Knowledge Distillation: Enhancing Logits
// Utilization with an Auxiliary Head" (arXiv 2411.08937), as its code (penghui-yang/DHKD:
// helper/loops.py, distiller_zoo/BinaryKLNorm.py) trains it: the student keeps its classifier
// (trained by the other terms, e.g. ce) and gets a second, auxiliary linear head on a feature
// (its penultimate one) trained only against the teacher's logits with BinaryKL-Norm; the backbone
// receives both heads' gradients, each head only its own loss; the auxiliary head is dropped at
// inference. In distill it is the loss term "dhkd": the head is the term's own trainable
// parameters (like FitNets' regressor), so the student's model stays as it is.
#include <ATen/core/Tensor.h>

namespace distill::kd {

// BinaryKL-Norm: with d = (z_aux - z_teacher) / T and p = sigmoid(d) clamped to [1e-8, 1 - 1e-8],
//   T^2 / N * sum_{n,c} [ 0.5 log(0.5 / p) + 0.5 log(0.5 / (1 - p)) ],
// the KL of Bernoulli(0.5) from Bernoulli(p) per logit: 0 exactly when the logits are equal (not
// shift-invariant: the auxiliary head learns the teacher's logits themselves).
at::Tensor binary_kl_norm_loss(const at::Tensor& auxiliary, const at::Tensor& teacher,
                               double temperature);

}  // namespace distill::kd
