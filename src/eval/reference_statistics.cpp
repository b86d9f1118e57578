#include "src/eval/reference_statistics.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"

namespace distill::eval {
namespace {

// Bump when the file's contents change meaning, so old caches are recomputed, not misread.
constexpr const char* kCacheFormat = "reference-statistics v1";

}  // namespace

void check_feature_layer(const models::Model& model, const std::string& layer,
                         const std::string& setting) {
  const std::vector<std::string> names = model.feature_names();
  if (std::find(names.begin(), names.end(), layer) != names.end()) return;
  std::string choices;
  for (const auto& n : names) choices += (choices.empty() ? "" : ", ") + n;
  throw Error(setting + " = '" + layer + "' is not a feature of " + model.arch() + " (" + choices +
              ")");
}

ClassifierOutputs classifier_outputs(const models::Model& model, const at::Tensor& params,
                                     const at::Tensor& buffers, const at::Tensor& images,
                                     const std::string& feature_layer, int64_t batch_size) {
  check_feature_layer(model, feature_layer, "feature layer");
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> features, predicted;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    const int64_t rows = std::min(batch_size, images.size(0) - start);
    models::Features named;
    models::ForwardArgs args;
    args.train = false;
    args.buffers = buffers;
    args.features = &named;
    at::Tensor logits = model.forward(images.narrow(0, start, rows), params, args);
    for (const auto& [name, value] : named) {
      if (name == feature_layer) features.push_back(value.flatten(1).to(at::kFloat).contiguous());
    }
    predicted.push_back(logits.argmax(1));
  }
  return {at::cat(features), at::cat(predicted)};
}

std::string text_fingerprint(const std::string& bytes) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(fnv1a(bytes)));
  return text;
}

std::string file_fingerprint(const std::string& path) { return text_fingerprint(io::read_file(path)); }

ReferenceStatistics cached_reference_statistics(const std::string& cache_dir,
                                                const std::string& key,
                                                const std::function<ReferenceStatistics()>& compute,
                                                bool* hit) {
  if (hit) *hit = false;
  if (cache_dir.empty()) return compute();
  const std::string full_key = std::string(kCacheFormat) + "\n" + key;
  const std::string path = cache_dir + "/reference_" + text_fingerprint(full_key) + ".pt";
  if (std::filesystem::exists(path)) {
    io::TensorDict dict = io::load_dict(path);
    // A hash collision (or a hand-copied file) must not pass for another key's statistics.
    if (dict.contains("key") && dict.at("key").isString() &&
        dict.at("key").toStringRef() == full_key) {
      ReferenceStatistics s;
      s.moments.mean = io::get_tensor(dict, "mean", path);
      s.moments.covariance = io::get_tensor(dict, "covariance", path);
      s.moments.count = dict.at("count").toInt();
      s.features = io::get_tensor(dict, "features", path);
      s.labels = io::get_tensor(dict, "labels", path);
      if (hit) *hit = true;
      return s;
    }
    std::cerr << "reference statistics: " << path << " was written for another key; recomputing\n";
  }
  ReferenceStatistics s = compute();
  io::TensorDict dict = io::make_dict();
  dict.insert("key", full_key);
  dict.insert("mean", s.moments.mean);
  dict.insert("covariance", s.moments.covariance);
  dict.insert("count", s.moments.count);
  dict.insert("features", s.features);
  dict.insert("labels", s.labels);
  io::save_dict(path, dict);  // atomic: temporary file + rename
  return s;
}

}  // namespace distill::eval
