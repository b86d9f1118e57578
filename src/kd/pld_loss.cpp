#include "src/kd/pld_loss.h"

#include <ATen/ATen.h>

#include <limits>

#include "src/core/error.h"

namespace distill::kd {

at::Tensor pld_loss(const at::Tensor& student, const at::Tensor& teacher, const at::Tensor& labels,
                    double temperature) {
  if (!(temperature > 0)) {
    throw Error("pld: temperature must be > 0, found " + std::to_string(temperature));
  }
  if (student.sizes() != teacher.sizes() || student.dim() != 2) {
    throw Error("pld: student and teacher logits must both be N,K");
  }
  if (labels.scalar_type() != at::kLong || labels.dim() != 1 || labels.size(0) != student.size(0)) {
    throw Error("pld needs int64 class ids, one per example (the ranking puts the true class "
                "first), found " + std::string(c10::toString(labels.scalar_type())) + " labels");
  }
  const at::Tensor t = teacher.detach().to(student.scalar_type());
  // The ranking: the true label first (an infinite key), then by descending teacher logit; a
  // stable sort keeps tied classes in id order.
  at::Tensor key = t.clone();
  key.scatter_(1, labels.view({-1, 1}), std::numeric_limits<double>::infinity());
  const at::Tensor order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/1, /*descending=*/true));
  const at::Tensor ranked = student.gather(1, order);
  const at::Tensor alpha = at::softmax(t / temperature, 1).gather(1, order);
  // log sum_{l >= k} exp(s_l): a cumulative logsumexp from the end of the ranking.
  const at::Tensor suffix = at::logcumsumexp(ranked.flip({1}), 1).flip({1});
  return (alpha * (suffix - ranked)).sum(1).mean();
}

}  // namespace distill::kd
