#include "synth/statistics_loss.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/io/tensor_file.h"

namespace distill::synth {
namespace {

std::vector<int64_t> reduce_dims(const at::Tensor& x) {
  if (x.dim() < 2) throw Error("batch statistics need N,C[,...] inputs, found " +
                               std::to_string(x.dim()) + " dimensions");
  std::vector<int64_t> dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

}  // namespace

ChannelStatistics batch_statistics(const at::Tensor& x) {
  const std::vector<int64_t> dims = reduce_dims(x);
  at::Tensor mean = x.mean(dims);
  // Biased variance, as BatchNorm normalizes with (and SRe2L's hook computes).
  at::Tensor var = at::var(x, dims, /*unbiased=*/false);
  return {mean, var};
}

at::Tensor statistics_loss(const std::vector<at::Tensor>& inputs,
                           const std::vector<ChannelStatistics>& targets, double first_multiplier) {
  if (inputs.size() != targets.size()) {
    throw Error("statistics loss: " + std::to_string(inputs.size()) + " layers but " +
                std::to_string(targets.size()) + " target statistics");
  }
  if (inputs.empty()) return at::zeros({});
  at::Tensor total;
  for (size_t l = 0; l < inputs.size(); ++l) {
    ChannelStatistics batch = batch_statistics(inputs[l]);
    const ChannelStatistics& target = targets[l];
    if (batch.mean.sizes() != target.mean.sizes() || batch.var.sizes() != target.var.sizes()) {
      throw Error("statistics loss: layer " + std::to_string(l) + " has " +
                  std::to_string(batch.mean.numel()) + " channels, its target statistics " +
                  std::to_string(target.mean.numel()));
    }
    at::Tensor term = at::norm(batch.mean - target.mean.to(batch.mean.device()), 2) +
                      at::norm(batch.var - target.var.to(batch.var.device()), 2);
    if (l == 0) term = term * first_multiplier;
    total = total.defined() ? total + term : term;
  }
  return total;
}

at::Tensor batch_norm_statistics_loss(const std::vector<models::NormInput>& layers,
                                      double first_multiplier) {
  std::vector<at::Tensor> inputs;
  std::vector<ChannelStatistics> targets;
  for (const auto& layer : layers) {
    inputs.push_back(layer.input);
    targets.push_back({layer.running_mean, layer.running_var});
  }
  return statistics_loss(inputs, targets, first_multiplier);
}

FeatureStatistics real_feature_statistics(const models::Model& model, const at::Tensor& params,
                                          const at::Tensor& buffers, const at::Tensor& images,
                                          int64_t batch_size) {
  at::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  if (n < 2) throw Error("feature statistics need at least 2 images, found " + std::to_string(n));
  // Sums in double over all batches: mean = S1 / m, biased var = S2 / m - mean^2.
  std::vector<std::string> names;
  std::vector<at::Tensor> sum, sum_sq;
  std::vector<int64_t> count;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t size = std::min(batch_size, n - start);
    models::Features features;
    models::ForwardArgs args;
    args.buffers = buffers;
    args.features = &features;
    model.forward(images.narrow(0, start, size), params, args);
    if (names.empty()) {
      for (const auto& [name, value] : features) {
        names.push_back(name);
        sum.push_back(at::zeros({value.size(1)}, at::kDouble));
        sum_sq.push_back(at::zeros({value.size(1)}, at::kDouble));
        count.push_back(0);
      }
    }
    for (size_t f = 0; f < features.size(); ++f) {
      at::Tensor v = features[f].second.to(at::kDouble).cpu();
      const std::vector<int64_t> dims = reduce_dims(v);
      sum[f] += v.sum(dims);
      sum_sq[f] += (v * v).sum(dims);
      count[f] += v.numel() / v.size(1);
    }
  }
  FeatureStatistics stats;
  for (size_t f = 0; f < names.size(); ++f) {
    at::Tensor mean = sum[f] / static_cast<double>(count[f]);
    at::Tensor var = (sum_sq[f] / static_cast<double>(count[f]) - mean * mean).clamp_min(0);
    stats.push_back({names[f], {mean.to(at::kFloat), var.to(at::kFloat)}});
  }
  return stats;
}

at::Tensor feature_statistics_loss(const models::Features& features,
                                   const FeatureStatistics& targets, double first_multiplier) {
  std::vector<at::Tensor> inputs;
  std::vector<ChannelStatistics> wanted;
  for (const auto& [name, target] : targets) {
    const at::Tensor* found = nullptr;
    for (const auto& [feature_name, value] : features) {
      if (feature_name == name) found = &value;
    }
    if (!found) throw Error("feature statistics name '" + name + "', which the model does not report");
    inputs.push_back(*found);
    wanted.push_back(target);
  }
  return statistics_loss(inputs, wanted, first_multiplier);
}

void save_feature_statistics(const std::string& path, const FeatureStatistics& stats) {
  io::TensorDict dict = io::make_dict();
  std::string names;
  for (const auto& [name, s] : stats) {
    dict.insert(name + ".mean", s.mean.cpu());
    dict.insert(name + ".var", s.var.cpu());
    names += (names.empty() ? "" : ",") + name;
  }
  dict.insert("names", names);
  io::save_dict(path, dict);
}

FeatureStatistics load_feature_statistics(const std::string& path) {
  io::TensorDict dict = io::load_dict(path);
  if (!dict.contains("names") || !dict.at("names").isString()) {
    throw Error("'" + path + "': no 'names' entry; not a feature-statistics file");
  }
  FeatureStatistics stats;
  const std::string names = dict.at("names").toStringRef();
  size_t start = 0;
  while (start < names.size()) {
    size_t end = names.find(',', start);
    if (end == std::string::npos) end = names.size();
    const std::string name = names.substr(start, end - start);
    stats.push_back({name,
                     {io::get_tensor(dict, name + ".mean", path).to(at::kFloat),
                      io::get_tensor(dict, name + ".var", path).to(at::kFloat)}});
    start = end + 1;
  }
  return stats;
}

}  // namespace distill::synth
