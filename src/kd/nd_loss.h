#pragma once
// ND: Wang, Cheng, Duan, Wang, Feng & Kong, "Improving Knowledge Distillation via Regularizing
// Feature Norm and Direction" (arXiv 2305.17007; ECCV 2024 as "... Feature Direction and Norm"),
// as its code (WangYZ1608/Knowledge-Distillation-via-ND: CIFAR/utils.py DirectNormLoss,
// CIFAR/emb_fea_distribution.py) computes it: the student's penultimate feature s_i is pulled
// toward the direction of the teacher's class mean c_y (computed once from the teacher on the
// training set) and, while shorter than the teacher's feature t_i, pushed to a larger norm:
//   L = mean_i [ 1 - <s_i, c_{y_i} / |c_{y_i}|> / max(|s_i|, |t_i|) ].
// Combined with ce and hinton (the paper's KD + ND). Where the student's and teacher's features
// differ in size the code maps the student's through BN + dropout + linear; distill uses a linear
// map (the term's own parameters, like FitNets' regressor).
#include <ATen/core/Tensor.h>

#include <string>

#include "src/kd/teacher.h"

namespace distill::kd {

// student: N,D (after any projection), teacher: N,D (detached), class_means: K,D, labels: int64 N.
at::Tensor nd_loss(const at::Tensor& student, const at::Tensor& teacher,
                   const at::Tensor& class_means, const at::Tensor& labels);

// The teacher's mean feature `layer` (flattened; "logits" for its output) per class over
// `images` (eval mode, in batches): K,D. Error naming the class when one has no image.
at::Tensor class_mean_features(const Teacher& teacher, const std::string& layer,
                               const at::Tensor& images, const at::Tensor& labels,
                               int64_t num_classes, int64_t batch_size = 500);

}  // namespace distill::kd
