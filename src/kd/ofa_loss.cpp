#include "src/kd/ofa_loss.h"

#include <ATen/ATen.h>

#include <string>

#include "src/core/error.h"

namespace distill::kd {

at::Tensor ofa_loss(const at::Tensor& student, const at::Tensor& teacher,
                    const at::Tensor& targets, double eps, double temperature) {
  if (!(temperature > 0)) {
    throw Error("ofa: temperature must be > 0, found " + std::to_string(temperature));
  }
  if (!(eps > 0)) throw Error("ofa: eps must be > 0, found " + std::to_string(eps));
  if (student.dim() != 2 || student.sizes() != teacher.sizes()) {
    throw Error("ofa: student and teacher logits must both be N,K of the same shape");
  }
  at::Tensor labels;
  if (targets.dim() == 2 && targets.sizes() == student.sizes()) {
    labels = targets.argmax(1);
  } else if (targets.scalar_type() == at::kLong && targets.dim() == 1 &&
             targets.size(0) == student.size(0)) {
    labels = targets;
  } else {
    throw Error("ofa needs int64 class ids (N) or soft labels (N,K) for its target class, found " +
                std::string(c10::toString(targets.scalar_type())) + " targets of " +
                std::to_string(targets.dim()) + " dimensions");
  }
  const at::Tensor p = at::softmax(teacher.detach().to(student.scalar_type()) / temperature, 1);
  const at::Tensor mask = at::one_hot(labels, student.size(1)).to(student.scalar_type());
  const at::Tensor weight = at::pow(p + mask, eps) - mask;
  return -(weight * at::log_softmax(student / temperature, 1)).sum(1).mean();
}

at::Tensor ofa_branch(const at::Tensor& feature, const std::vector<at::Tensor>& weights) {
  if (weights.size() != 4) throw RuntimeFailure("ofa_branch takes 4 tensors");
  at::Tensor h;
  if (feature.dim() == 4) {
    h = at::relu(at::conv2d(feature, weights[0], weights[1])).mean({2, 3});
  } else {
    h = at::relu(at::linear(feature.flatten(1), weights[0], weights[1]));
  }
  return at::linear(h, weights[2], weights[3]);
}

}  // namespace distill::kd
