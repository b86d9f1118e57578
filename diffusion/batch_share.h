#pragma once
// Several processes fitting one batch together: every rank draws the whole batch (the
// single-process draws), fits its contiguous rows, and the ranks' gradients and losses are
// summed, so each takes the single-process step (up to float summation order). Denoiser training
// and the distillation loops share it.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

#include "src/dist/process_group.h"

namespace distill::diffusion {

struct BatchShare {
  int64_t first = 0;
  int64_t size = -1;  // -1: the whole batch (one process)
  std::shared_ptr<const dist::ProcessGroup> group;

  // This rank's share of `batch`-row batches; the whole batch without a distributed group.
  // Error naming `key` when the batch has fewer rows than there are processes.
  static BatchShare of(std::shared_ptr<const dist::ProcessGroup> group, int64_t batch,
                       const std::string& key);

  bool shared() const { return size >= 0; }
  // This rank's rows of a whole-batch tensor.
  at::Tensor rows(const at::Tensor& batch) const;
  // The batch mean of `per_row` (this rank's rows of a `batch`-row batch): the rows' sum / batch
  // when the batch is shared, so that the ranks' losses add up to the single-process mean.
  at::Tensor batch_mean(const at::Tensor& per_row, int64_t batch) const;
  // The loss value and gradient summed over the ranks (unchanged on one process).
  double sum_loss_and_gradient(double loss, at::Tensor& grad) const;
};

}  // namespace distill::diffusion
