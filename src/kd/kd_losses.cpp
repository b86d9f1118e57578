#include "src/kd/kd_losses.h"

#include <ATen/ATen.h>

#include <sstream>

#include "src/core/error.h"

namespace distill::kd {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

void check_logits(const char* loss, const at::Tensor& student, const at::Tensor& teacher,
                  double temperature) {
  if (!(temperature > 0)) {
    throw Error(std::string(loss) + ": temperature T must be > 0, found " +
                std::to_string(temperature));
  }
  if (student.dim() != 2 || !student.sizes().equals(teacher.sizes())) {
    throw Error(std::string(loss) +
                ": student and teacher logits must both be N,K with the same "
                "shape, found " +
                shape_of(student) + " and " + shape_of(teacher));
  }
}

// KL(p || q) summed over classes and averaged over rows, from log-probabilities; p log p uses
// xlogy semantics through exp so that p = 0 contributes 0.
at::Tensor kl_from_log(const at::Tensor& log_p, const at::Tensor& log_q) {
  at::Tensor p = log_p.exp();
  return (p * (log_p - log_q)).sum() / log_p.size(0);
}

at::Tensor flat_rows(const at::Tensor& x) { return x.dim() == 2 ? x : x.flatten(1); }

// Pairwise Euclidean distances with a zero diagonal whose gradient stays finite (sqrt is taken
// of 1 on the diagonal and then masked out).
at::Tensor pairwise_distances(const at::Tensor& e) {
  const int64_t n = e.size(0);
  at::Tensor eye = at::eye(n, e.options());
  at::Tensor squared = (e.unsqueeze(0) - e.unsqueeze(1)).pow(2).sum(2);
  return (squared + eye).sqrt() * (1 - eye);
}

at::Tensor normalized_distances(const at::Tensor& e) {
  const int64_t n = e.size(0);
  at::Tensor d = pairwise_distances(e);
  // RKD eq. 4: mu = mean distance over the pairs i != j.
  at::Tensor mu = d.sum() / static_cast<double>(n * (n - 1));
  return d / mu.clamp_min(1e-12);
}

at::Tensor triplet_cosines(const at::Tensor& e) {
  at::Tensor diff = e.unsqueeze(0) - e.unsqueeze(1);  // [j][i] = e_i - e_j
  at::Tensor unit = diff / diff.norm(2, {2}, true).clamp_min(1e-12);
  return at::bmm(unit, unit.transpose(1, 2));  // [j][i][k] = cos <e_i - e_j, e_k - e_j>
}

void check_relational(const char* loss, const at::Tensor& student, const at::Tensor& teacher) {
  if (student.dim() < 2 || teacher.dim() < 2 || student.size(0) != teacher.size(0) ||
      student.size(0) < 2) {
    throw Error(std::string(loss) +
                ": needs student and teacher features with the same batch "
                "size >= 2, found " +
                shape_of(student) + " and " + shape_of(teacher));
  }
}

}  // namespace

at::Tensor hinton_loss(const at::Tensor& student, const at::Tensor& teacher, double temperature) {
  check_logits("hinton", student, teacher, temperature);
  at::Tensor log_t = at::log_softmax(teacher.detach() / temperature, 1);
  at::Tensor log_s = at::log_softmax(student / temperature, 1);
  return kl_from_log(log_t, log_s) * (temperature * temperature);
}

at::Tensor reverse_kl_loss(const at::Tensor& student, const at::Tensor& teacher,
                           double temperature) {
  check_logits("reverse_kl", student, teacher, temperature);
  at::Tensor log_t = at::log_softmax(teacher.detach() / temperature, 1);
  at::Tensor log_s = at::log_softmax(student / temperature, 1);
  return kl_from_log(log_s, log_t) * (temperature * temperature);
}

at::Tensor dkd_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                    double alpha, double beta, double temperature) {
  check_logits("dkd", student, teacher, temperature);
  if (labels.scalar_type() != at::kLong || labels.dim() != 1 || labels.size(0) != student.size(0)) {
    throw Error("dkd: needs int64 class ids, one per example (hard labels), found " +
                std::string(labels.dtype().name()) + " " + shape_of(labels));
  }
  const int64_t n = student.size(0), k = student.size(1);
  at::Tensor target_mask = at::one_hot(labels, k).to(at::kBool);
  auto parts = [&](const at::Tensor& logits) {
    at::Tensor z = logits / temperature;
    at::Tensor all = at::logsumexp(z, {1});
    at::Tensor target = z.gather(1, labels.unsqueeze(1)).squeeze(1);
    at::Tensor others = z.masked_select(target_mask.logical_not()).view({n, k - 1});
    at::Tensor rest = at::logsumexp(others, {1});
    // log of the binary distribution [p_target, 1 - p_target], and the non-target log-softmax.
    at::Tensor binary = at::stack({target - all, rest - all}, 1);
    return std::make_pair(binary, at::log_softmax(others, 1));
  };
  auto [binary_t, others_t] = parts(teacher.detach());
  auto [binary_s, others_s] = parts(student);
  at::Tensor tckd = kl_from_log(binary_t, binary_s);
  at::Tensor nckd = kl_from_log(others_t, others_s);
  return (alpha * tckd + beta * nckd) * (temperature * temperature);
}

at::Tensor attention_map(const at::Tensor& feature, double p) {
  if (feature.dim() != 4) {
    throw Error("attention transfer: needs N,C,H,W feature maps, found " + shape_of(feature));
  }
  at::Tensor map = feature.abs().pow(p).mean(1).flatten(1);
  return map / map.norm(2, {1}, true).clamp_min(1e-12);
}

at::Tensor attention_transfer_loss(const at::Tensor& student, const at::Tensor& teacher, double p) {
  if (!(p > 0))
    throw Error("attention transfer: exponent p must be > 0, found " + std::to_string(p));
  if (student.dim() != 4 || teacher.dim() != 4 || student.size(0) != teacher.size(0) ||
      student.size(2) != teacher.size(2) || student.size(3) != teacher.size(3)) {
    throw Error(
        "attention transfer: student and teacher maps must be N,C,H,W with the same N, H "
        "and W, found " +
        shape_of(student) + " and " + shape_of(teacher));
  }
  return (attention_map(student, p) - attention_map(teacher.detach(), p)).pow(2).mean();
}

at::Tensor rkd_distance_loss(const at::Tensor& student, const at::Tensor& teacher) {
  check_relational("rkd_distance", student, teacher);
  at::Tensor t = normalized_distances(flat_rows(teacher.detach()));
  at::Tensor s = normalized_distances(flat_rows(student));
  return at::smooth_l1_loss(s, t, at::Reduction::Mean, 1.0);
}

at::Tensor rkd_angle_loss(const at::Tensor& student, const at::Tensor& teacher) {
  check_relational("rkd_angle", student, teacher);
  at::Tensor t = triplet_cosines(flat_rows(teacher.detach()));
  at::Tensor s = triplet_cosines(flat_rows(student));
  return at::smooth_l1_loss(s, t, at::Reduction::Mean, 1.0);
}

at::Tensor regress(const at::Tensor& student_feature, const at::Tensor& weight,
                   const at::Tensor& bias) {
  if (weight.dim() == 4) return at::conv2d(student_feature, weight, bias);
  return at::linear(flat_rows(student_feature), weight, bias);
}

at::Tensor hint_loss(const at::Tensor& regressed, const at::Tensor& teacher) {
  at::Tensor target = teacher.detach();
  if (regressed.dim() == 2 && target.dim() > 2) target = target.flatten(1);
  if (!regressed.sizes().equals(target.sizes())) {
    throw Error("fitnet: regressed student feature " + shape_of(regressed) +
                " does not match the teacher feature " + shape_of(target));
  }
  return at::mse_loss(regressed, target);
}

}  // namespace distill::kd
