#include "src/kd/kd_objective.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/kd/nd_loss.h"

namespace distill::kd {

KdObjective::KdObjective(const std::vector<LossSpec>& losses, const std::string& key,
                         const models::Model& student, std::shared_ptr<const Teacher> teacher,
                         const at::Tensor& probe)
    : terms_(losses, key, student, teacher ? teacher->model.get() : nullptr),
      teacher_(std::move(teacher)) {
  if (!terms_.needs_teacher()) teacher_.reset();
  if (teacher_) {
    // A probe forward of a freshly initialised student: shapes are all that matter here.
    at::Generator generator = make_generator(0);
    at::Tensor params = student.init_params(generator).to(probe.device());
    models::Features student_features, teacher_features;
    models::ForwardArgs args;
    args.buffers = student.init_buffers().to(probe.device());
    args.features = &student_features;
    at::NoGradGuard no_grad;
    at::Tensor student_logits = student.forward(probe, params, args);
    at::Tensor teacher_logits = teacher_->forward(probe, &teacher_features);
    if (teacher_logits.size(1) != student_logits.size(1)) {
      throw Error(key + ": the teacher predicts " + std::to_string(teacher_logits.size(1)) +
                  " classes, the student " + std::to_string(student_logits.size(1)));
    }
    terms_.prepare({student_logits, &student_features}, {teacher_logits, &teacher_features});
  }
  sums_.assign(terms_.specs().size(), 0.0);
}

void KdObjective::compute_class_means(const at::Tensor& train_images,
                                      const at::Tensor& train_labels, int64_t num_classes) {
  for (const std::string& layer : terms_.class_mean_layers()) {
    if (!teacher_) throw Error("nd compares with a teacher, but none is configured");
    terms_.set_class_means(layer, class_mean_features(*teacher_, layer, train_images,
                                                      train_labels, num_classes));
  }
}

void KdObjective::cache_teacher_logits(const at::Tensor& train_images, int64_t batch_size) {
  if (!teacher_) return;
  if (terms_.needs_teacher_features()) {
    throw Error("teacher logits cannot be cached when a term reads intermediate teacher features");
  }
  cached_logits_ = teacher_->forward_in_batches(train_images, batch_size);
}

at::Tensor KdObjective::loss(const train::StepContext& step) {
  LossTerms::Side student{step.logits, step.features};
  models::Features teacher_features;
  LossTerms::Side teacher;
  if (teacher_) {
    if (cached_logits_.defined()) {
      teacher.logits = cached_logits_.index_select(0, step.indices);
    } else {
      teacher.logits =
          teacher_->forward(step.images,
                            terms_.needs_teacher_features() ? &teacher_features : nullptr);
      teacher.features = &teacher_features;
    }
  }
  std::vector<double> values;
  at::Tensor total =
      terms_.evaluate(student, teacher_ ? &teacher : nullptr, step.targets, step.aux, &values);
  for (size_t i = 0; i < values.size(); ++i) sums_[i] += values[i];
  ++batches_;
  return total;
}

std::map<std::string, double> KdObjective::take_epoch_metrics() {
  std::map<std::string, double> out;
  if (batches_ == 0) return out;
  for (size_t i = 0; i < sums_.size(); ++i) {
    out[terms_.metric_names()[i]] = sums_[i] / static_cast<double>(batches_);
    sums_[i] = 0.0;
  }
  batches_ = 0;
  return out;
}

MutualObjective::MutualObjective(const std::vector<LossSpec>& losses, const std::string& key,
                                 const Cohort& cohort, const at::Tensor& probe)
    : cohort_(cohort) {
  for (const auto& spec : losses) {
    const bool branch = spec.name == "ofa" && !spec.student_layer.empty() &&
                        spec.student_layer != "logits";
    if (spec.name == "fitnet" || spec.name == "dhkd" || spec.name == "nd" || branch ||
        spec.name == "tgeo") {
      throw Error(key + ": " + spec.name +
                  " trains parameters of its own per student pair (a regressor, an auxiliary "
                  "head, an ofa branch, tgeo's fusion network) or needs a fixed teacher's class "
                  "means, and is not supported in mutual learning; use hinton, reverse_kl, dkd, "
                  "pld, ofa on the output, at or rkd_* with ce");
    }
  }
  for (size_t i = 0; i < cohort.size(); ++i) {
    // Peers are checked as teachers of member i (member 1 stands for all of them when i = 0).
    const models::Model& peer = cohort.member(i == 0 ? 1 : 0);
    terms_.push_back(std::make_unique<LossTerms>(losses, key, cohort.member(i), &peer));
  }
  at::Generator generator = make_generator(0);
  at::Tensor params = cohort.init_params(generator).to(probe.device());
  models::Features features;
  models::ForwardArgs args;
  args.buffers = cohort.init_buffers().to(probe.device());
  args.features = &features;
  at::NoGradGuard no_grad;
  cohort.forward(probe, params, args);
  std::vector<models::Features> members;
  for (size_t i = 0; i < cohort.size(); ++i)
    members.push_back(Cohort::member_features(features, i));
  auto logits_of = [](const models::Features& f) {
    for (const auto& [name, tensor] : f) {
      if (name == "logits") return tensor;
    }
    throw RuntimeFailure("cohort member recorded no logits");
  };
  for (size_t i = 0; i < cohort.size(); ++i) {
    for (size_t j = 0; j < cohort.size(); ++j) {
      if (j == i) continue;
      terms_[i]->prepare({logits_of(members[i]), &members[i]},
                         {logits_of(members[j]), &members[j]});
    }
  }
  member_sums_.assign(cohort.size(), 0.0);
}

at::Tensor MutualObjective::loss(const train::StepContext& step) {
  const size_t m = cohort_.size();
  std::vector<models::Features> members;
  std::vector<LossTerms::Side> sides;
  members.reserve(m);
  for (size_t i = 0; i < m; ++i) members.push_back(Cohort::member_features(*step.features, i));
  for (size_t i = 0; i < m; ++i) {
    at::Tensor logits;
    for (const auto& [name, tensor] : members[i]) {
      if (name == "logits") logits = tensor;
    }
    sides.push_back({logits, &members[i]});
  }
  at::Tensor total;
  for (size_t i = 0; i < m; ++i) {
    at::Tensor member_loss;
    for (size_t j = 0; j < m; ++j) {
      if (j == i) continue;
      // Terms against peer j; ce terms are repeated identically for every j, so the average
      // over the m - 1 peers counts them once.
      at::Tensor pair = terms_[i]->evaluate(sides[i], &sides[j], step.targets, step.aux);
      member_loss = member_loss.defined() ? member_loss + pair : pair;
    }
    member_loss = member_loss / static_cast<double>(m - 1);
    member_sums_[i] += member_loss.item<double>();
    total = total.defined() ? total + member_loss : member_loss;
  }
  ++batches_;
  return total;
}

std::map<std::string, double> MutualObjective::take_epoch_metrics() {
  std::map<std::string, double> out;
  if (batches_ == 0) return out;
  for (size_t i = 0; i < member_sums_.size(); ++i) {
    out["loss_member" + std::to_string(i)] = member_sums_[i] / static_cast<double>(batches_);
    member_sums_[i] = 0.0;
  }
  batches_ = 0;
  return out;
}

}  // namespace distill::kd
