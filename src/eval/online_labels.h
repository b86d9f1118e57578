#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <map>
#include <string>

#include "src/train/trainer.h"

namespace distill::eval {

// Soft labels computed from each training batch as the student sees it (after augmentation and
// CutMix): the teacher-in-the-loop path of SRe2L-style post-evaluation, in place of stored labels.
// Images in (N,C,H,W), rows of probabilities out (N,K).
using LabelFn = std::function<at::Tensor(const at::Tensor& images)>;

// The student's loss against label_fn(batch): train::classification_loss with those rows as
// targets at `temperature` (KL times T^2), so a label_fn that returns the stored labels trains
// exactly the students the stored labels train.
class OnlineLabelObjective : public train::StepObjective {
 public:
  OnlineLabelObjective(LabelFn label_fn, double temperature);
  at::Tensor loss(const train::StepContext& step) override;
  std::map<std::string, double> take_epoch_metrics() override;

 private:
  LabelFn label_fn_;
  double temperature_;
  double agreement_sum_ = 0;  // how often the label's argmax is the batch's own target class
  int64_t seen_ = 0;
};

}  // namespace distill::eval
