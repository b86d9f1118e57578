#include "src/kd/dhkd_loss.h"

#include <ATen/ATen.h>

#include <cmath>

#include "src/core/error.h"

namespace distill::kd {

at::Tensor binary_kl_norm_loss(const at::Tensor& auxiliary, const at::Tensor& teacher,
                               double temperature) {
  if (!(temperature > 0)) {
    throw Error("dhkd: temperature must be > 0, found " + std::to_string(temperature));
  }
  if (auxiliary.sizes() != teacher.sizes()) {
    throw Error("dhkd: the auxiliary head's logits and the teacher's differ in shape");
  }
  const at::Tensor d = (auxiliary - teacher.detach().to(auxiliary.scalar_type())) / temperature;
  const at::Tensor p = at::clamp(at::sigmoid(d), 1e-8, 1 - 1e-8);
  const at::Tensor kl = 0.5 * (at::log(0.5 / p) + at::log(0.5 / (1 - p)));
  return kl.sum() / auxiliary.size(0) * (temperature * temperature);
}

}  // namespace distill::kd
