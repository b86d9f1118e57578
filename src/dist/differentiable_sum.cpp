#include "src/dist/differentiable_sum.h"

#include <torch/csrc/autograd/custom_function.h>

namespace distill::dist {
namespace {

struct SumOverRanks : torch::autograd::Function<SumOverRanks> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& tensor,
                            const ProcessGroup* group) {
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    at::Tensor sum = tensor.clone();
    group->all_reduce(sum, Reduce::kSum);
    return sum;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto* group = reinterpret_cast<const ProcessGroup*>(ctx->saved_data["group"].toInt());
    at::Tensor sum = grads[0].contiguous().clone();
    group->all_reduce(sum, Reduce::kSum);
    return {sum, at::Tensor()};
  }
};

}  // namespace

at::Tensor differentiable_sum(const ProcessGroup& group, const at::Tensor& tensor) {
  if (!group.distributed()) return tensor;
  return SumOverRanks::apply(tensor, &group);
}

}  // namespace distill::dist
