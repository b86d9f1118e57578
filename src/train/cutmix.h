#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <utility>

#include "src/config/options.h"

namespace distill::train {

// CutMix (Yun et al. 2019) as the SRe2L/CV-DD post-evaluation applies it to a whole batch: one
// box, each image pasted with the box cut from a partner image (a random permutation of the batch).
struct CutMixOptions {
  double prob = 0.0;  // 0 = off
  double beta = 1.0;

  void visit(config::Visitor& v) {
    v.field("prob", prob, "probability that a training batch is CutMixed (0 = off)",
            config::Range::between(0, 1));
    v.field("beta", beta, "the kept area fraction is drawn from Beta(beta, beta)",
            config::Range::above(0));
  }
};

// Deterministic core: pastes `box` (top, left, height, width) of image partner[i] into image i, and
// mixes the targets by the box's area (CutMix eq. 1 with the area-adjusted lambda):
// target_i = (1 - a) t_i + a t_partner[i], a = box area / image area. Class ids become one-hot
// rows over `num_classes` first; soft labels (rows of probabilities) are mixed as they are.
std::pair<at::Tensor, at::Tensor> cutmix_box(const at::Tensor& images, const at::Tensor& targets,
                                             int64_t num_classes, const std::array<int64_t, 4>& box,
                                             const at::Tensor& partner);

// A random CutMix of the batch: with probability `prob`, lambda ~ Beta(beta, beta), a box of side
// sqrt(1 - lambda) times the image's centred at a uniform pixel and clipped to the image (as the
// reference code), a random partner permutation; then cutmix_box. Otherwise the batch unchanged
// (targets still as float rows, so a run's target type does not change from batch to batch).
std::pair<at::Tensor, at::Tensor> cutmix(const at::Tensor& images, const at::Tensor& targets,
                                         int64_t num_classes, const CutMixOptions& options,
                                         at::Generator& generator);

// Mixup (Zhang et al. 2018), as SRe2L's CIFAR post-evaluation applies it to a whole batch: each
// image blended with a partner image (a random permutation of the batch).
struct MixupOptions {
  double prob = 0.0;  // 0 = off
  double alpha = 0.8;

  void visit(config::Visitor& v) {
    v.field("prob", prob, "probability that a training batch is mixed up (0 = off)",
            config::Range::between(0, 1));
    v.field("alpha", alpha, "the blend weight is drawn from Beta(alpha, alpha)",
            config::Range::above(0));
  }
};

// Deterministic core: image_i = lambda x_i + (1 - lambda) x_partner[i], and the targets (class ids
// as one-hot rows, soft labels as they are) blended with the same weights.
std::pair<at::Tensor, at::Tensor> mixup_with(const at::Tensor& images, const at::Tensor& targets,
                                             int64_t num_classes, double lambda,
                                             const at::Tensor& partner);

// A random Mixup of the batch: with probability `prob`, lambda ~ Beta(alpha, alpha) and a random
// partner permutation; otherwise the batch unchanged (targets as float rows). Every call draws the
// same numbers, mixed or not.
std::pair<at::Tensor, at::Tensor> mixup(const at::Tensor& images, const at::Tensor& targets,
                                        int64_t num_classes, const MixupOptions& options,
                                        at::Generator& generator);

}  // namespace distill::train
