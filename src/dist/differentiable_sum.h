#pragma once
#include <ATen/core/Tensor.h>

#include "src/dist/process_group.h"

namespace distill::dist {

// Sum of `tensor` over every rank of `group`, as an autograd operation: its backward is again a
// sum over ranks, because d(sum_r x_r)/dx_r = 1 and each rank's loss contributes its own
// gradient of the sum. Every rank must call it (forward and backward) in the same order, as
// with any collective. A single-process group returns the tensor itself.
at::Tensor differentiable_sum(const ProcessGroup& group, const at::Tensor& tensor);

}  // namespace distill::dist
