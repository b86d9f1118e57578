#pragma once
// OFA-KD: Hao, Guo, Chen, Han, Han, Wang & Xu, "One-for-All: Bridge the Gap Between Heterogeneous
// Architectures in Knowledge Distillation" (NeurIPS 2023), as its code (Hao840/OFAKD:
// distillers/ofa.py) computes it. Intermediate student features reach the logit space through
// small branches (dropped at inference), and every branch, like the student's own output, learns
// the teacher's predictions with the "adaptive target enhancement" loss
//   L = mean_n [ - sum_c w_nc log q_nc ],   w = (p + m)^eps - m,
// p = softmax(z_teacher / T), q = softmax(z / T), m = one-hot of the true class: the target class
// weighs (1 + p_y)^eps - 1, every other class p_c^eps. eps = 1 is cross-entropy against the
// teacher's soft labels; eps > 1 moves weight to the target class the more the teacher believes
// in it. Hard-label cross-entropy is the separate term "ce", as in the code.
//
// In distill it is the loss term "ofa": without student_layer (or with "logits") it scores the
// student's output; with an intermediate student_layer it scores a branch on that feature, the
// branch being the term's own parameters (like DHKD's head). OFA sizes its branches (stride-2
// separable convolutions or transformer blocks) for the 56..7-pixel stages of 224-pixel
// ImageNet models; for the small CIFAR/Fashion-MNIST networks here a branch is
//   flat feature:  linear(D) - ReLU - linear(classes)
//   N,C,H,W map:   1x1 conv(D) - ReLU - global average pool - linear(classes)
// with D = max(the feature's width, the teacher's last feature's width) as OFA's max(student,
// teacher) embedding size.
#include <ATen/core/Tensor.h>

#include <vector>

namespace distill::kd {

// student, teacher: N,K logits; targets: int64 class ids N, or N,K soft labels (their argmax is
// the true class, as OFA's code does under Mixup/CutMix).
at::Tensor ofa_loss(const at::Tensor& student, const at::Tensor& teacher,
                    const at::Tensor& targets, double eps, double temperature);

// The branch above on `feature` with its four tensors (hidden weight, hidden bias, output weight,
// output bias; the hidden weight is D,C,1,1 for a map, D,C for a flat feature): N,K logits.
at::Tensor ofa_branch(const at::Tensor& feature, const std::vector<at::Tensor>& weights);

}  // namespace distill::kd
