#include "diffusion/batch_share.h"

#include <ATen/ATen.h>

#include "src/core/error.h"

namespace distill::diffusion {

BatchShare BatchShare::of(std::shared_ptr<const dist::ProcessGroup> group, int64_t batch,
                          const std::string& key) {
  BatchShare share;
  if (!group || !group->distributed()) return share;
  if (batch < group->world_size()) {
    throw Error(key + " = " + std::to_string(batch) + ": every one of the " +
                std::to_string(group->world_size()) +
                " processes sharing a batch needs at least one item of it");
  }
  const auto [first, end] = group->share_of(batch);
  share.first = first;
  share.size = end - first;
  share.group = std::move(group);
  return share;
}

at::Tensor BatchShare::rows(const at::Tensor& batch) const {
  return shared() ? batch.narrow(0, first, size) : batch;
}

at::Tensor BatchShare::batch_mean(const at::Tensor& per_row, int64_t batch) const {
  return shared() ? per_row.sum() / static_cast<double>(batch) : per_row.mean();
}

double BatchShare::sum_loss_and_gradient(double loss, at::Tensor& grad) const {
  if (!shared()) return loss;
  group->all_reduce(grad, dist::Reduce::kSum);
  at::Tensor total = at::full({1}, loss, at::kDouble);
  group->all_reduce(total, dist::Reduce::kSum);
  return total.item<double>();
}

}  // namespace distill::diffusion
