#include "synth/kmeans_selection.h"

#include <ATen/ATen.h>

#include <string>

#include "src/core/error.h"

namespace distill::synth {

int64_t feature_member(const std::vector<Member>& committee) {
  if (committee.empty()) throw Error("k-means initialisation: committee of size 0");
  int64_t best = 0;
  for (size_t k = 1; k < committee.size(); ++k) {
    if (committee[k].options.val_accuracy > committee[best].options.val_accuracy) {
      best = static_cast<int64_t>(k);
    }
  }
  return best;
}

at::Tensor penultimate_features(const Member& member, const at::Tensor& images,
                                int64_t batch_size) {
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += batch_size) {
    at::Tensor x = images.narrow(0, start, std::min(batch_size, images.size(0) - start));
    models::Features features;
    member.teacher.forward(x, &features);
    if (features.empty()) {
      throw Error("k-means initialisation: member '" + member.options.model.arch +
                  "' reports no features to cluster in");
    }
    at::Tensor chosen = features.back().second;
    for (const auto& [name, value] : features) {
      if (name == "embedding") chosen = value;
    }
    parts.push_back(chosen.reshape({chosen.size(0), -1}).to(at::kCPU, at::kFloat));
  }
  return at::cat(parts, 0);
}

}  // namespace distill::synth
