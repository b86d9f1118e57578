#pragma once
// Initialisations of a synthetic set that ask the experts: DATM's (Guo et al., ICLR 2024) real
// images the experts already classify correctly, each with the soft label the experts that get it
// right agree on; and AST's (Shen et al.) representative real images.
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "src/data/dataset.h"
#include "src/models/model.h"
#include "trajectories/expert_buffer.h"

namespace distill::trajectories {

// Each expert's parameters at the label epoch: `label_epoch` > 0 is that epoch, -1 the expert's
// last one, 0 `window_end` (the end of the start-epoch window). Error when an expert is shorter.
std::vector<at::Tensor> label_parameters(const std::vector<Trajectory>& experts,
                                         int64_t label_epoch, int64_t window_end);

// Positions in `train` of `ipc` images per class (ordered by class) that an expert classifies
// correctly: each class's images are visited in a random order (from `generator`) and taken when
// expert 0 gets them right; when the class runs out, expert 1 is asked about the rest, and so on.
// Error naming the class when all experts together get fewer than `ipc` of its images right.
at::Tensor correctly_classified_index(const models::Model& model,
                                      const std::vector<at::Tensor>& experts,
                                      const data::Dataset& train, int64_t ipc,
                                      at::Generator& generator);

// AST's representative initialisation: per class, k-means (k = ipc, k-means++ seeding, then up to
// `iterations` Lloyd iterations) on the logits an expert (`expert` parameters) gives that class's
// images, and the image nearest each centroid. Positions in `train`, ordered by class. Error naming
// the class when it has fewer than `ipc` images.
at::Tensor representative_index(const models::Model& model, const at::Tensor& expert,
                                const data::Dataset& train, int64_t ipc, int64_t iterations,
                                at::Generator& generator);

// Per image, the mean logits of the experts that classify it as `classes` says (all experts
// when none does).
at::Tensor correct_experts_logits(const models::Model& model, const std::vector<at::Tensor>& experts,
                                  const at::Tensor& images, const at::Tensor& classes);

// An expert's logits on `images`, in batches of 256 (batch-norm experts use batch statistics:
// they keep no running ones).
at::Tensor expert_logits(const models::Model& model, const at::Tensor& params,
                         const at::Tensor& images);

}  // namespace distill::trajectories
