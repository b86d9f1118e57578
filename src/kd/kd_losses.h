#pragma once
#include <ATen/core/Tensor.h>

// Knowledge-distillation losses as pure functions of student and teacher outputs. The teacher
// side is a target: every function detaches it, so gradients reach the student only (in deep
// mutual learning the "teacher" is a peer that must not be moved by this student's loss).
// Batch-mean reductions throughout, so a loss does not grow with the batch size.
namespace distill::kd {

// Hinton et al. 2015, "Distilling the knowledge in a neural network", sec. 2:
// T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch. The T^2 keeps the gradient's
// size independent of T (sec. 2.1). student, teacher: N,K logits.
at::Tensor hinton_loss(const at::Tensor& student, const at::Tensor& teacher, double temperature);

// The reverse direction, T^2 * KL(softmax(s/T) || softmax(t/T)) (mode-seeking; used e.g. by
// MiniLLM-style distillation): the student is not pushed to cover every teacher mode.
at::Tensor reverse_kl_loss(const at::Tensor& student, const at::Tensor& teacher,
                           double temperature);

// Decoupled KD (Zhao et al. 2022, eq. 7): alpha * TCKD + beta * NCKD, both scaled by T^2.
// TCKD = KL(b_t || b_s) with b = [p_target, 1 - p_target] (binary target vs. rest);
// NCKD = KL(p^_t || p^_s) with p^ = softmax over the non-target classes only.
// labels: int64 N class ids.
at::Tensor dkd_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                    double alpha, double beta, double temperature);

// Attention map of Zagoruyko & Komodakis 2017 ("Paying more attention to attention", eq. 2 and
// their reference code): mean over channels of |A|^p, flattened, L2-normalised per example.
// feature: N,C,H,W. Returns N,H*W.
at::Tensor attention_map(const at::Tensor& feature, double p);

// Attention transfer: mean squared difference of the normalised attention maps (the reference
// code's form of the paper's eq. 2 penalty). Feature maps must share H,W (channels may differ).
at::Tensor attention_transfer_loss(const at::Tensor& student, const at::Tensor& teacher, double p);

// Relational KD (Park et al. 2019), distance-wise potential (eq. 3-5): pairwise Euclidean
// distances of the N embeddings, each divided by its mean over the pairs i != j, compared with
// the Huber (smooth-L1, delta 1) loss, averaged over all N^2 entries (the diagonal is 0 on both
// sides). student: N,Ds; teacher: N,Dt (flattened when they have more dimensions).
at::Tensor rkd_distance_loss(const at::Tensor& student, const at::Tensor& teacher);

// RKD angle-wise potential (eq. 6-8): cosines of the angles <e_i - e_j, e_k - e_j> for all
// triplets, compared with the Huber loss, averaged over all N^3 entries (degenerate triplets
// give a zero vector and a cosine of 0 on both sides, as in the reference implementation).
at::Tensor rkd_angle_loss(const at::Tensor& student, const at::Tensor& teacher);

// FitNets (Romero et al. 2015) hint regressor: a 1x1 convolution for N,C,H,W features
// (weight Ct,Cs,1,1) or a linear map for N,D features (weight Dt,Ds), plus a bias.
at::Tensor regress(const at::Tensor& student_feature, const at::Tensor& weight,
                   const at::Tensor& bias);

// FitNets hint loss: mean squared error between the regressed student feature and the teacher's
// feature (the paper's eq. 3 halves a sum; the mean keeps weights comparable across layers).
at::Tensor hint_loss(const at::Tensor& regressed, const at::Tensor& teacher);

}  // namespace distill::kd
