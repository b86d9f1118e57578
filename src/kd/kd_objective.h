#pragma once
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "src/kd/cohort.h"
#include "src/kd/loss_terms.h"
#include "src/kd/teacher.h"
#include "src/train/trainer.h"

namespace distill::kd {

// Offline KD: a frozen teacher sees the same (augmented) batch as the student; the configured
// terms compare the two. Plugs into train::Trainer as its objective, so training, checkpoints,
// --resume and metrics are the ordinary ones; FitNets regressors are the trainer's aux params.
class KdObjective : public train::StepObjective {
 public:
  // `teacher` may be null when no term needs one (the hard-label baseline through the same
  // code path). `probe` is a small batch of training images used to size regressors and check
  // feature shapes before training (Error naming the term on a mismatch).
  KdObjective(const std::vector<LossSpec>& losses, const std::string& key,
              const models::Model& student, std::shared_ptr<const Teacher> teacher,
              const at::Tensor& probe);

  // Computes the teacher's logits for the whole training set once, to be looked up by batch
  // index. Only valid when the student sees un-augmented images and no term reads features.
  void cache_teacher_logits(const at::Tensor& train_images, int64_t batch_size = 500);

  // nd terms: the teacher's class-mean features of the training set (images and class ids),
  // computed once before training. Nothing to do without nd terms.
  void compute_class_means(const at::Tensor& train_images, const at::Tensor& train_labels,
                           int64_t num_classes);

  bool wants_features() const override { return terms_.needs_features(); }
  at::Tensor init_aux(at::Generator& generator) const override {
    return terms_.init_aux(generator);
  }
  at::Tensor loss(const train::StepContext& step) override;
  std::map<std::string, double> take_epoch_metrics() override;

  const LossTerms& terms() const { return terms_; }

 private:
  LossTerms terms_;
  std::shared_ptr<const Teacher> teacher_;
  at::Tensor cached_logits_;
  std::vector<double> sums_;
  int64_t batches_ = 0;
};

// Deep mutual learning (Zhang et al. 2018, eq. 1-2 and 10): each cohort member i minimises its
// terms against every other member j as the (detached) teacher, averaged over j != i; hard-label
// terms (ce) count once per member. The members' losses are summed: member i's parameters only
// receive member i's loss gradient, since its peers enter detached. All members update from the
// same batch at the same time (the paper alternates; the simultaneous form is the common one).
class MutualObjective : public train::StepObjective {
 public:
  MutualObjective(const std::vector<LossSpec>& losses, const std::string& key, const Cohort& cohort,
                  const at::Tensor& probe);

  bool wants_features() const override { return true; }  // the members' logits are features
  at::Tensor loss(const train::StepContext& step) override;
  std::map<std::string, double> take_epoch_metrics() override;

 private:
  const Cohort& cohort_;
  std::vector<std::unique_ptr<LossTerms>> terms_;  // one per member (its own layer names)
  std::vector<double> member_sums_;
  int64_t batches_ = 0;
};

}  // namespace distill::kd
