#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>

#include "src/eval/sample_quality.h"
#include "src/models/model.h"

namespace distill::eval {

// What a classifier says about a batch of images: one feature layer, flattened to N x D, and
// the predicted class of each image.
struct ClassifierOutputs {
  at::Tensor features;   // N x D, float
  at::Tensor predicted;  // N, int64 (argmax of the logits)
};

// Error unless `layer` is one of model.feature_names(); the message names `setting` and lists them.
void check_feature_layer(const models::Model& model, const std::string& layer,
                         const std::string& setting);

// Runs `model` in eval mode (no autograd) over `images` in batches and keeps `feature_layer`
// (checked with check_feature_layer).
ClassifierOutputs classifier_outputs(const models::Model& model, const at::Tensor& params,
                                     const at::Tensor& buffers, const at::Tensor& images,
                                     const std::string& feature_layer, int64_t batch_size = 256);

// The real side of every sample-quality comparison, computed once per (dataset, split, count,
// classifier, layer): moments for the Fréchet distance, the features themselves for the k-NN
// metrics, and the true labels for class coverage.
struct ReferenceStatistics {
  FeatureMoments moments;
  at::Tensor features;  // N x D, float
  at::Tensor labels;    // N, int64
};

// A stable fingerprint of a file's bytes (64-bit FNV-1a, hex): a classifier retrained in place
// gets a new one, so its cached statistics are not reused. Error naming the path when unreadable.
std::string file_fingerprint(const std::string& path);
// The same fingerprint of a text (cache keys made of settings).
std::string text_fingerprint(const std::string& bytes);

// Reads CACHE_DIR/reference_<hash of key>.pt when it exists and was written for exactly `key`;
// otherwise calls `compute` and writes that file atomically (a crash never leaves half a file, two
// concurrent runs at worst both compute). `key` must name everything the statistics depend on.
// `hit` (optional) tells which happened. An empty cache_dir disables caching.
ReferenceStatistics cached_reference_statistics(const std::string& cache_dir,
                                                const std::string& key,
                                                const std::function<ReferenceStatistics()>& compute,
                                                bool* hit = nullptr);

}  // namespace distill::eval
