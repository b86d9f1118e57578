#include "src/eval/online_labels.h"

#include <ATen/ATen.h>

#include "src/core/error.h"

namespace distill::eval {

OnlineLabelObjective::OnlineLabelObjective(LabelFn label_fn, double temperature)
    : label_fn_(std::move(label_fn)), temperature_(temperature) {
  if (!label_fn_) throw Error("online labels: no label function");
  if (!(temperature_ > 0)) {
    throw Error("online labels: temperature must be > 0, found " + std::to_string(temperature_));
  }
}

at::Tensor OnlineLabelObjective::loss(const train::StepContext& step) {
  at::Tensor labels;
  {
    at::NoGradGuard no_grad;
    labels = label_fn_(step.images.detach()).to(step.logits.device(), at::kFloat);
  }
  if (labels.dim() != 2 || labels.size(0) != step.logits.size(0) ||
      labels.size(1) != step.logits.size(1)) {
    throw Error("online labels: the teacher returned labels of another shape than the student's " +
                std::to_string(step.logits.size(0)) + "x" + std::to_string(step.logits.size(1)) +
                " outputs");
  }
  at::Tensor own = step.targets.dim() == 2 ? step.targets.argmax(1) : step.targets;
  agreement_sum_ += labels.argmax(1).eq(own.to(labels.device())).sum().item<double>();
  seen_ += labels.size(0);
  return train::classification_loss(step.logits, labels, temperature_);
}

std::map<std::string, double> OnlineLabelObjective::take_epoch_metrics() {
  std::map<std::string, double> out;
  if (seen_ > 0) out["teacher_agreement"] = agreement_sum_ / static_cast<double>(seen_);
  agreement_sum_ = 0;
  seen_ = 0;
  return out;
}

}  // namespace distill::eval
