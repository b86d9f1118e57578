#include "src/kd/tgeo_kd.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>


#include "src/core/error.h"
#include "src/core/random_streams.h"
#include "src/core/runtime.h"

namespace distill::kd {
namespace {

constexpr int64_t kHidden1 = 32, kHidden2 = 16;

void check_labels(const at::Tensor& labels, const at::Tensor& logits) {
  if (labels.scalar_type() != at::kLong || labels.dim() != 1 || labels.size(0) != logits.size(0)) {
    throw Error("tgeo needs int64 class ids, one per example (its geometry uses the ground truth "
                "as a corner), found " + std::string(c10::toString(labels.scalar_type())) +
                " targets of " + std::to_string(labels.dim()) + " dimensions (CutMix/Mixup "
                "soft targets are not supported)");
  }
}

}  // namespace

at::Tensor tgeo_inputs(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                       const at::Tensor& labels, const at::Tensor& class_average) {
  check_labels(labels, student_logits);
  const int64_t k = student_logits.size(1);
  const at::Tensor s = at::softmax(student_logits, 1);
  const at::Tensor t = at::softmax(teacher_logits.to(s.scalar_type()), 1);
  const at::Tensor g = at::one_hot(labels, k).to(s.scalar_type());
  const at::Tensor tbar = class_average.to(s.scalar_type()).index_select(0, labels);
  return at::cat({s, t, g, tbar, (tbar - s).pow(2), (g - s).pow(2), (t - s).pow(2),
                  (t - g).pow(2), (tbar - g).pow(2)},
                 1);
}

std::vector<models::TensorSpec> fusion_specs(int64_t classes) {
  using Init = models::TensorSpec::Init;
  const int64_t in = 9 * classes;
  return {{"fusion.0.weight", {kHidden1, in}, Init::kFanInUniform, in},
          {"fusion.0.bias", {kHidden1}, Init::kFanInUniform, in},
          {"fusion.1.weight", {kHidden2, kHidden1}, Init::kFanInUniform, kHidden1},
          {"fusion.1.bias", {kHidden2}, Init::kFanInUniform, kHidden1},
          {"fusion.2.weight", {1, kHidden2}, Init::kFanInUniform, kHidden2},
          {"fusion.2.bias", {1}, Init::kFanInUniform, kHidden2}};
}

at::Tensor fusion_ratio(const at::Tensor& inputs, const std::vector<at::Tensor>& w) {
  if (w.size() != 6) throw RuntimeFailure("fusion_ratio takes 6 tensors");
  at::Tensor h = at::leaky_relu(at::linear(inputs, w[0], w[1]), 0.01);
  h = at::leaky_relu(at::linear(h, w[2], w[3]), 0.01);
  return at::sigmoid(at::linear(h, w[4], w[5])).squeeze(1);
}

at::Tensor tgeo_student_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                             const at::Tensor& labels, const at::Tensor& ratio,
                             double temperature) {
  if (!(temperature > 0)) {
    throw Error("tgeo: temperature must be > 0, found " + std::to_string(temperature));
  }
  check_labels(labels, student_logits);
  const at::Tensor log_q = at::log_softmax(student_logits / temperature, 1);
  const at::Tensor log_p =
      at::log_softmax(teacher_logits.detach().to(student_logits.scalar_type()) / temperature, 1);
  const at::Tensor kl = (log_p.exp() * (log_p - log_q)).sum(1) * (temperature * temperature);
  const at::Tensor ce =
      -at::log_softmax(student_logits, 1).gather(1, labels.view({-1, 1})).squeeze(1);
  return (ratio * kl + (1 - ratio) * ce).mean();
}

at::Tensor tgeo_validation_loss(const models::Model& model, const at::Tensor& params,
                                const at::Tensor& buffers, const at::Tensor& images,
                                const at::Tensor& teacher_logits, const at::Tensor& labels,
                                const at::Tensor& class_average, const at::Tensor& fusion,
                                double temperature, double inner_lr,
                                const at::Tensor& validation_images,
                                const at::Tensor& validation_labels) {
  // A leaf of its own: the virtual step's second-order terms reach the fusion network only.
  const at::Tensor theta = params.detach().clone().requires_grad_(true);
  // Train mode, as the student's own step: normalisation layers use the batch's statistics
  // (the running ones updated here are a copy, thrown away).
  models::ForwardArgs args;
  args.train = true;
  args.buffers = (buffers.defined() ? buffers : model.init_buffers()).clone().to(params.device());
  const at::Tensor logits = model.forward(images, theta, args);
  const std::vector<at::Tensor> weights =
      models::Model::unflatten(fusion, fusion_specs(logits.size(1)));
  const at::Tensor ratio = fusion_ratio(
      tgeo_inputs(logits.detach(), teacher_logits, labels, class_average), weights);
  const at::Tensor inner = tgeo_student_loss(logits, teacher_logits, labels, ratio, temperature);
  const at::Tensor gradient =
      torch::autograd::grad({inner}, {theta}, {}, /*retain_graph=*/true, /*create_graph=*/true)[0];
  const at::Tensor stepped = theta - inner_lr * gradient;
  const at::Tensor validation_logits = model.forward(validation_images, stepped, args);
  return at::cross_entropy_loss(validation_logits, validation_labels);
}

TgeoObjective::TgeoObjective(const models::Model& student, std::shared_ptr<const Teacher> teacher,
                             double temperature, double weight, double fusion_lr_scale,
                             const at::Tensor& train_images, const at::Tensor& train_labels,
                             int64_t num_classes, const at::Tensor& validation_images,
                             const at::Tensor& validation_labels, int64_t validation_batch,
                             uint64_t seed, bool cache_teacher)
    : student_(student),
      teacher_(std::move(teacher)),
      temperature_(temperature),
      weight_(weight),
      fusion_lr_scale_(fusion_lr_scale),
      validation_images_(validation_images),
      validation_labels_(validation_labels),
      validation_batch_(std::min<int64_t>(validation_batch, validation_images.size(0))),
      seed_(seed),
      classes_(num_classes) {
  if (!teacher_) throw Error("tgeo compares with a teacher, but none is configured");
  if (validation_images.size(0) < 1) throw Error("tgeo needs a held-out split (none was given)");
  // The teacher's logits of the training set; its class averages from them.
  const at::Tensor logits = teacher_->forward_in_batches(train_images);
  const at::Tensor probabilities = at::softmax(logits, 1).to(at::kDouble).cpu();
  at::Tensor sums = at::zeros({num_classes, logits.size(1)}, at::kDouble);
  at::Tensor counts = at::zeros({num_classes}, at::kDouble);
  const at::Tensor y = train_labels.cpu();
  sums.index_add_(0, y, probabilities);
  counts.index_add_(0, y, at::ones({y.size(0)}, at::kDouble));
  for (int64_t c = 0; c < num_classes; ++c) {
    if (counts[c].item<double>() == 0) {
      throw Error("tgeo: class " + std::to_string(c) +
                  " has no training image to average the teacher's prediction over");
    }
  }
  class_average_ = (sums / counts.unsqueeze(1)).to(at::kFloat).to(train_images.device());
  if (cache_teacher) teacher_logits_ = logits;
}

at::Tensor TgeoObjective::init_aux(at::Generator& generator) const {
  return models::Model::init_flat(fusion_specs(classes_), generator);  // nn.Linear's default
}

at::Tensor TgeoObjective::loss(const train::StepContext& step) {
  const at::Tensor teacher_logits = teacher_logits_.defined()
                                        ? teacher_logits_.index_select(0, step.indices)
                                        : teacher_->forward(step.images);
  const std::vector<at::Tensor> weights =
      models::Model::unflatten(step.aux, fusion_specs(classes_));
  at::Tensor ratio;
  {
    at::NoGradGuard no_grad;  // the student trains with the ratios fixed
    ratio = fusion_ratio(
        tgeo_inputs(step.logits.detach(), teacher_logits, step.targets, class_average_), weights);
  }
  const at::Tensor student =
      tgeo_student_loss(step.logits, teacher_logits, step.targets, ratio, temperature_);
  // The fusion network's step: a held-out batch drawn from the step number (so a resumed run
  // draws what a straight one does).
  at::Generator generator = make_generator(seed_, streams::kKdTgeoValidation,
                                           static_cast<uint64_t>(step.step));
  const at::Tensor pick = at::randperm(validation_images_.size(0), generator)
                              .narrow(0, 0, validation_batch_)
                              .to(validation_images_.device());
  const at::Tensor validation = tgeo_validation_loss(
      student_, step.params, at::Tensor(), step.images, teacher_logits, step.targets,
      class_average_, step.aux, temperature_, step.lr,
      validation_images_.index_select(0, pick), validation_labels_.index_select(0, pick));
  student_sum_ += student.item<double>();
  validation_sum_ += validation.item<double>();
  ratio_sum_ += ratio.mean().item<double>();
  ++batches_;
  // The value reported is the student's loss; the held-out loss only adds its gradient (to the
  // fusion network: it does not depend on the student's parameters here).
  return weight_ * student + (validation - validation.detach());
}

std::map<std::string, double> TgeoObjective::take_epoch_metrics() {
  std::map<std::string, double> out;
  if (batches_ == 0) return out;
  const double n = static_cast<double>(batches_);
  out["loss_tgeo"] = student_sum_ / n;
  out["tgeo_validation_loss"] = validation_sum_ / n;
  out["tgeo_mean_ratio"] = ratio_sum_ / n;
  student_sum_ = validation_sum_ = ratio_sum_ = 0;
  batches_ = 0;
  return out;
}

}  // namespace distill::kd
