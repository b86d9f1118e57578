#pragma once
#include <memory>
#include <string>
#include <vector>

#include "src/models/model.h"

namespace distill::kd {

// Deep mutual learning trains several students at once. A cohort is one functional model whose
// flat parameters are the members' parameters one after the other ("member0.<name>", ...), so
// the ordinary Trainer steps all of them; SGD/Adam act element-wise, so this equals one optimizer
// per member (only global-norm clipping would couple them). forward() returns member 0's logits
// and records "member<i>.logits" and "member<i>.<feature>" for every member.
class Cohort : public models::Model {
 public:
  explicit Cohort(std::vector<std::unique_ptr<models::Model>> members);

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const models::ForwardArgs& args = {}) const override;
  std::vector<std::string> feature_names() const override;

  size_t size() const { return members_.size(); }
  const models::Model& member(size_t i) const { return *members_[i]; }
  // Member i's slice of the cohort's flat parameters or buffers.
  at::Tensor member_params(const at::Tensor& params, size_t i) const;
  at::Tensor member_buffers(const at::Tensor& buffers, size_t i) const;

  // Member i's logits and features from a cohort feature list, under their own names
  // (the logits as "logits").
  static models::Features member_features(const models::Features& all, size_t i);

 private:
  std::vector<std::unique_ptr<models::Model>> members_;
  std::vector<int64_t> param_sizes_, buffer_sizes_;
};

}  // namespace distill::kd
