#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "src/models/model.h"

namespace distill::synth {

// Per-channel statistics a layer's input should have: mean and (biased) variance.
struct ChannelStatistics {
  at::Tensor mean;  // C
  at::Tensor var;   // C
};

// Batch statistics of x per channel (dimension 1), over every other dimension: mean and biased
// variance, as BatchNorm computes them in training mode. x is N,C,H,W or N,C.
ChannelStatistics batch_statistics(const at::Tensor& x);

// SRe2L's statistics-matching term (Yin et al. 2023, eq. 4, after DeepInversion):
//   sum_l m_l (||mu_l(x) - mean_l||_2 + ||var_l(x) - var_l||_2)
// with m_0 = first_multiplier and m_l = 1 otherwise. `inputs[l]` is what layer l saw.
at::Tensor statistics_loss(const std::vector<at::Tensor>& inputs,
                           const std::vector<ChannelStatistics>& targets,
                           double first_multiplier = 1.0);

// The same over the batch-norm layers a forward pass reported (models::ForwardArgs::norm_inputs):
// each input against that layer's running statistics.
at::Tensor batch_norm_statistics_loss(const std::vector<models::NormInput>& layers,
                                      double first_multiplier = 1.0);

// Named feature statistics of real data, for committee members without batch norm: what the
// recovered images' features are matched to instead of running statistics.
using FeatureStatistics = std::vector<std::pair<std::string, ChannelStatistics>>;

// Mean and variance per channel of every feature `model` reports (Model::feature_names) over
// `images`, in batches of `batch_size` (eval mode, no autograd).
FeatureStatistics real_feature_statistics(const models::Model& model, const at::Tensor& params,
                                          const at::Tensor& buffers, const at::Tensor& images,
                                          int64_t batch_size = 500);

// statistics_loss of the features a forward pass reported against `targets` (matched by name;
// Error naming a target the pass did not report).
at::Tensor feature_statistics_loss(const models::Features& features,
                                   const FeatureStatistics& targets, double first_multiplier = 1.0);

// .pt files: "<name>.mean" / "<name>.var" per feature, plus "names" order (Python-readable).
void save_feature_statistics(const std::string& path, const FeatureStatistics& stats);
FeatureStatistics load_feature_statistics(const std::string& path);

}  // namespace distill::synth
