#include "src/kd/cohort.h"

#include <ATen/ATen.h>

#include "src/core/error.h"

namespace distill::kd {

Cohort::Cohort(std::vector<std::unique_ptr<models::Model>> members) : members_(std::move(members)) {
  if (members_.size() < 2) {
    throw Error("a mutual-learning cohort needs at least 2 students, found " +
                std::to_string(members_.size()));
  }
  arch_ = "cohort";
  for (size_t i = 0; i < members_.size(); ++i) {
    const std::string prefix = "member" + std::to_string(i) + ".";
    arch_ += (i ? "," : ":") + members_[i]->arch();
    for (auto spec : members_[i]->param_specs()) {
      spec.name = prefix + spec.name;
      add_param(spec);
    }
    for (auto spec : members_[i]->buffer_specs()) {
      spec.name = prefix + spec.name;
      add_buffer(spec);
    }
    param_sizes_.push_back(members_[i]->num_params());
    buffer_sizes_.push_back(members_[i]->num_buffers());
  }
}

at::Tensor Cohort::member_params(const at::Tensor& params, size_t i) const {
  int64_t offset = 0;
  for (size_t j = 0; j < i; ++j) offset += param_sizes_[j];
  return params.narrow(0, offset, param_sizes_[i]);
}

at::Tensor Cohort::member_buffers(const at::Tensor& buffers, size_t i) const {
  if (!buffers.defined() || buffer_sizes_[i] == 0) return at::empty({0}, at::kFloat);
  int64_t offset = 0;
  for (size_t j = 0; j < i; ++j) offset += buffer_sizes_[j];
  return buffers.narrow(0, offset, buffer_sizes_[i]);
}

at::Tensor Cohort::forward(const at::Tensor& x, const at::Tensor& params,
                           const models::ForwardArgs& args) const {
  // One split (not per-member narrow views) keeps the backward a single concatenation.
  std::vector<at::Tensor> pieces = params.split_with_sizes(param_sizes_);
  at::Tensor first;
  for (size_t i = 0; i < members_.size(); ++i) {
    models::ForwardArgs member_args = args;
    member_args.buffers = member_buffers(args.buffers, i);  // a view: updates land in place
    models::Features features;
    member_args.features = args.features ? &features : nullptr;
    at::Tensor logits = members_[i]->forward(x, pieces[i], member_args);
    if (i == 0) first = logits;
    if (args.features) {
      const std::string prefix = "member" + std::to_string(i) + ".";
      args.features->emplace_back(prefix + "logits", logits);
      for (auto& [name, tensor] : features) args.features->emplace_back(prefix + name, tensor);
    }
  }
  return first;
}

std::vector<std::string> Cohort::feature_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < members_.size(); ++i) {
    const std::string prefix = "member" + std::to_string(i) + ".";
    names.push_back(prefix + "logits");
    for (const auto& name : members_[i]->feature_names()) names.push_back(prefix + name);
  }
  return names;
}

models::Features Cohort::member_features(const models::Features& all, size_t i) {
  const std::string prefix = "member" + std::to_string(i) + ".";
  models::Features out;
  for (const auto& [name, tensor] : all) {
    if (name.rfind(prefix, 0) == 0) out.emplace_back(name.substr(prefix.size()), tensor);
  }
  return out;
}

}  // namespace distill::kd
