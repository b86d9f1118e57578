#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "synth/committee.h"

namespace distill::synth {

// The committee member whose features the k-means runs in: the best held-out accuracy (the first
// such member on ties).
int64_t feature_member(const std::vector<Member>& committee);

// That member's penultimate features of `images` (its "embedding" when it reports one, else its
// last named feature), flattened to N,D, computed in batches without autograd.
at::Tensor penultimate_features(const Member& member, const at::Tensor& images,
                                int64_t batch_size = 512);

}  // namespace distill::synth
