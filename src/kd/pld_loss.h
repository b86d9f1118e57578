#pragma once
// PLD: Bassam, Zhu & Bian, "PLD: A Choice-Theoretic List-Wise Knowledge Distillation" (arXiv
// 2506.12542, NeurIPS 2025), sec. 4 and appendix A/C. The teacher's preferred ranking pi puts the
// true label first, then the other classes by descending teacher logit; the student's logits
// score that ranking under a Plackett-Luce model, each choice weighted by the teacher's
// probability of the class chosen there:
//   L = sum_k alpha_k [ -s_{pi_k} + log sum_{l >= k} exp(s_{pi_l}) ],
//   alpha_k = softmax(t / T)[pi_k]  (not renormalised; the last position's term is 0),
// averaged over the batch. One loss in place of CE + KD (alpha = one-hot on the true label gives
// cross-entropy); the student's logits are not tempered.
#include <ATen/core/Tensor.h>

namespace distill::kd {

// student, teacher: N,K logits (the teacher detached); labels: int64 N. Ties in the teacher's
// logits rank the lower class id first.
at::Tensor pld_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                    double temperature);

}  // namespace distill::kd
