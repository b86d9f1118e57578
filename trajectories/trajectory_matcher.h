#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/models/model.h"
#include "src/train/trainer.h"

namespace distill::trajectories {

// Matching Training Trajectories (Cazenavette et al. 2022), knobs named as in the paper/code.
struct MatchingOptions {
  int64_t syn_steps = 20;       // student SGD steps on the synthetic set per iteration (N)
  int64_t expert_epochs = 2;    // expert epochs the student must cover (M)
  int64_t max_start_epoch = 20; // start epoch t drawn from [0, max_start_epoch)
  double lr_img = 1000;         // SGD (momentum .5) step on the images
  double lr_lr = 1e-5;          // SGD (momentum .5) step on the learnable student lr
  double lr_teacher = 0.01;     // initial student lr
  bool learn_lr = true;
  int64_t batch_syn = 0;        // synthetic images per student step (0 = all)
  std::string meta_grad = "adjoint";

  void visit(config::Visitor& v) {
    v.field("syn_steps", syn_steps, "student steps on the synthetic set per iteration (N)");
    v.field("expert_epochs", expert_epochs, "expert epochs to match (M)");
    v.field("max_start_epoch", max_start_epoch, "start epoch drawn from [0, max_start_epoch)");
    v.field("lr_img", lr_img, "learning rate of the synthetic images (SGD, momentum .5)");
    v.field("lr_lr", lr_lr, "learning rate of the learnable student lr (SGD, momentum .5)");
    v.field("lr_teacher", lr_teacher, "initial student learning rate");
    v.field("learn_lr", learn_lr, "learn the student learning rate");
    v.field("batch_syn", batch_syn, "synthetic images per student step (0 = all of them)");
    v.choice("meta_grad", meta_grad,
             "adjoint: exact gradient by recomputing each step backwards (memory of one step); "
             "unroll: autograd through the whole unrolled run (memory grows with syn_steps)",
             {"adjoint", "unroll"});
  }
};

// What one matching iteration needs besides the synthetic set.
struct MatchingTask {
  at::Tensor start;   // expert parameters at epoch t (flat)
  at::Tensor target;  // expert parameters at epoch t + M (flat)
  uint64_t seed = 0;  // the iteration's draws: mini-batches and augmentation per student step
};

struct MetaGradient {
  double loss = 0.0;       // ||θ_N - θ*_{t+M}||² / ||θ*_t - θ*_{t+M}||²
  at::Tensor images_grad;  // d loss / d images
  double lr_grad = 0.0;    // d loss / d lr
};

// Computes the MTT loss and its exact gradient w.r.t. the synthetic images and the student lr.
// The student takes syn_steps SGD steps θ_{i+1} = θ_i - lr ∇ℓ(aug_i(X_{B_i}); θ_i) from `start`.
class TrajectoryMatcher {
 public:
  TrajectoryMatcher(const models::Model& model, MatchingOptions options, train::AugmentFn augment);

  MetaGradient meta_gradient(const at::Tensor& images, const at::Tensor& labels, double lr,
                             const MatchingTask& task) const;

  const MatchingOptions& options() const { return options_; }

 private:
  // Mini-batch indices of every student step (chunks of random permutations, as the reference).
  std::vector<at::Tensor> batches(int64_t count, uint64_t seed) const;
  // ∇_θ ℓ at one student step, recomputable: same indices, same augmentation draw.
  at::Tensor step_loss(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& params,
                       const at::Tensor& index, uint64_t seed, int64_t step) const;
  MetaGradient unrolled(const at::Tensor& images, const at::Tensor& labels, double lr,
                        const MatchingTask& task) const;
  MetaGradient adjoint(const at::Tensor& images, const at::Tensor& labels, double lr,
                       const MatchingTask& task) const;

  const models::Model& model_;
  MatchingOptions options_;
  train::AugmentFn augment_;
};

}  // namespace distill::trajectories
