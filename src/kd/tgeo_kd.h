#pragma once
// TGeo-KD: Hu et al., "Less or More From Teacher: Exploiting Trilateral Geometry
// For Knowledge Distillation" (ICLR 2024; code Chengming0501/TGeo-KD). Each example gets its own
// ratio r_i between soft and hard supervision,
//   L = mean_i [ r_i T^2 KL(p_t^T || p_s^T)_i + (1 - r_i) CE(z_s, y)_i ],
// predicted by a small fusion network from the geometry of the student's prediction S, the
// teacher's T, the ground truth G and the teacher's average prediction for the true class T-bar:
// its input is [S, T, G, T-bar, (T-bar - S)^2, (G - S)^2, (T - S)^2, (T - G)^2, (T-bar - G)^2]
// (softmax at temperature 1, 9K values; the code's final form), its layers
// 9K - 32 - 16 - 1 with LeakyReLU and a sigmoid. The student trains with r detached; the network
// learns by bilevel optimisation: minimise the held-out cross-entropy of the student after one
// virtual SGD step on the r-weighted loss, differentiated through that step (the one-step
// unrolled hypergradient of DARTS / Meta-Weight-Net; the paper leaves the approximation open and
// its code never reaches a true hypergradient, see the notes in README).
//
// In distill it is the loss term "tgeo", alone in kd.losses: the fusion network is the term's
// auxiliary parameters (stepped by the trainer's second optimizer: the student's optimizer at
// fusion_lr_scale x its learning rate), the held-out split is kd.validation_fraction of the student's training images, and
// the virtual step's learning rate is the student's at that step (after its schedule).
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/kd/teacher.h"
#include "src/models/model.h"
#include "src/train/trainer.h"

namespace distill::kd {

// The fusion network's input, N x 9K (softmax at temperature 1 of both logits; labels int64).
at::Tensor tgeo_inputs(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                       const at::Tensor& labels, const at::Tensor& class_average);

// Layout of the fusion network (weights and biases of 9K-32, 32-16, 16-1) for K classes.
std::vector<models::TensorSpec> fusion_specs(int64_t classes);
// sigmoid(linear(leaky_relu(linear(leaky_relu(linear(x)))))), N ratios in (0, 1).
at::Tensor fusion_ratio(const at::Tensor& inputs, const std::vector<at::Tensor>& weights);

// The r-weighted loss above (r: N ratios; labels int64).
at::Tensor tgeo_student_loss(const at::Tensor& student_logits, const at::Tensor& teacher_logits,
                             const at::Tensor& labels, const at::Tensor& ratio, double temperature);

// The bilevel objective of the fusion network, differentiable in `fusion` (flat): the held-out
// cross-entropy of params - inner_lr x grad_params(r-weighted loss on the training batch), both
// passes in train mode on a copy of `buffers` (fresh ones when undefined, as the objective passes:
// normalisation then uses the batch's statistics either way). Models with dropout would draw from
// the global generator here: the caller refuses them.
at::Tensor tgeo_validation_loss(const models::Model& model, const at::Tensor& params,
                                const at::Tensor& buffers, const at::Tensor& images,
                                const at::Tensor& teacher_logits, const at::Tensor& labels,
                                const at::Tensor& class_average, const at::Tensor& fusion,
                                double temperature, double inner_lr,
                                const at::Tensor& validation_images,
                                const at::Tensor& validation_labels);

class TgeoObjective : public train::StepObjective {
 public:
  // `train_images`/`train_labels`: what the student trains on (the teacher's class averages come
  // from them); `validation_*`: the held-out split. `cache_teacher`: the student sees the training
  // images unaugmented, so the teacher's logits are computed once; otherwise per batch.
  TgeoObjective(const models::Model& student, std::shared_ptr<const Teacher> teacher,
                double temperature, double weight, double fusion_lr_scale,
                const at::Tensor& train_images,
                const at::Tensor& train_labels, int64_t num_classes,
                const at::Tensor& validation_images, const at::Tensor& validation_labels,
                int64_t validation_batch, uint64_t seed, bool cache_teacher);

  at::Tensor init_aux(at::Generator& generator) const override;
  double aux_lr_scale() const override { return fusion_lr_scale_; }
  at::Tensor loss(const train::StepContext& step) override;
  std::map<std::string, double> take_epoch_metrics() override;

  const at::Tensor& class_average() const { return class_average_; }

 private:
  const models::Model& student_;
  std::shared_ptr<const Teacher> teacher_;
  double temperature_, weight_, fusion_lr_scale_;
  at::Tensor teacher_logits_;  // the training set's, computed once (eval mode, no augmentation)
  at::Tensor class_average_;   // K x K: mean teacher softmax per true class
  at::Tensor validation_images_, validation_labels_;
  int64_t validation_batch_;
  uint64_t seed_;
  int64_t classes_;
  double student_sum_ = 0, validation_sum_ = 0, ratio_sum_ = 0;
  int64_t batches_ = 0;
};

}  // namespace distill::kd
