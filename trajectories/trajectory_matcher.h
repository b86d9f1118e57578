#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/dist/process_group.h"
#include "src/models/model.h"
#include "src/train/trainer.h"

namespace distill::trajectories {

// Matching Training Trajectories (Cazenavette et al. 2022), knobs named as in the paper/code.
struct MatchingOptions {
  int64_t syn_steps = 20;       // student SGD steps on the synthetic set per iteration (N)
  int64_t expert_epochs = 2;    // expert epochs the student must cover (M)
  int64_t max_start_epoch = 20; // start epoch t drawn from [min_start_epoch, max_start_epoch)
  int64_t min_start_epoch = 0;
  // DATM's difficulty-aligned window: the upper bound grows linearly from max_start_epoch to
  // final_max_start_epoch over window_growth_iterations (0 = the whole run); 0 = fixed window.
  int64_t final_max_start_epoch = 0;
  int64_t window_growth_iterations = 0;
  double lr_img = 1000;         // SGD (momentum .5) step on the images
  double lr_lr = 1e-5;          // SGD (momentum .5) step on the learnable student lr
  double lr_teacher = 0.01;     // initial student lr
  bool learn_lr = true;
  int64_t batch_syn = 0;        // synthetic images per student step (0 = all)
  std::string meta_grad = "adjoint";
  // DATM/TESLA learnable soft labels: per-image logits, initialised from an expert's logits,
  // the student trained on softmax(logits) with soft cross-entropy.
  std::string soft_labels = "none";
  double lr_label = 2.0;        // SGD step on the label logits
  double label_momentum = 0.9;
  int64_t label_epoch = 0;  // experts' epoch for labels and init (0 = the window's end)
  double max_loss = 0.0;    // DATM's threshold: no update above this matching loss (0 = off)
  std::string expert_order = "uniform";  // which expert each iteration matches
  // AST (Shen et al.): the matching-side parts of its public code, all off by default.
  bool balanced_inner_loss = false;   // student loss scaled by balanced_loss_scale(start epoch)
  bool weight_perturbation = false;   // the start's conv kernels perturbed (perturb_conv_kernels)
  std::string intermediate = "none";  // intermediate matching loss: none | sum | adaptive
  double student_momentum = 0.0;      // heavy-ball momentum of the student's steps (AST: 0.9)

  void visit(config::Visitor& v) {
    v.field("syn_steps", syn_steps, "student steps on the synthetic set per iteration (N)",
            config::Range::at_least(1));
    v.field("expert_epochs", expert_epochs, "expert epochs to match (M)",
            config::Range::at_least(1));
    v.field("max_start_epoch", max_start_epoch,
            "start epoch drawn from [min_start_epoch, max_start_epoch) (the window's initial "
            "upper bound when final_max_start_epoch is set)",
            config::Range::at_least(1));
    v.field("min_start_epoch", min_start_epoch, "lowest start epoch",
            config::Range::at_least(0));
    v.field("final_max_start_epoch", final_max_start_epoch,
            "DATM: the window's upper bound grows to this (0 = fixed window)",
            config::Range::at_least(0));
    v.field("window_growth_iterations", window_growth_iterations,
            "DATM: iterations over which the upper bound grows (0 = the whole run, so a resumed run "
            "with another mtt.iterations changes the schedule)",
            config::Range::at_least(0));
    v.field("lr_img", lr_img, "learning rate of the synthetic images (SGD, momentum .5)",
            config::Range::at_least(0));
    v.field("lr_lr", lr_lr, "learning rate of the learnable student lr (SGD, momentum .5)",
            config::Range::at_least(0));
    v.field("lr_teacher", lr_teacher, "initial student learning rate",
            config::Range::at_least(0));
    v.field("learn_lr", learn_lr, "learn the student learning rate");
    v.field("batch_syn", batch_syn, "synthetic images per student step (0 = all of them)",
            config::Range::at_least(0));
    v.choice("meta_grad", meta_grad,
             "adjoint: exact gradient by recomputing each step backwards (memory of one step); "
             "unroll: autograd through the whole unrolled run (memory grows with syn_steps); "
             "tesla: like adjoint but each step's parameters are treated as constants of the "
             "earlier batches (TESLA's per-batch gradients: no Hessian-vector products in θ)",
             {"adjoint", "unroll", "tesla"});
    v.choice("soft_labels", soft_labels,
             "none: class ids; expert: learnable logits initialised from expert 0's; "
             "experts_correct: from the mean logits of the experts that classify the image "
             "correctly (DATM)",
             {"none", "expert", "experts_correct"});
    v.field("lr_label", lr_label, "learning rate of the soft-label logits (SGD)",
            config::Range::at_least(0));
    v.field("label_momentum", label_momentum, "momentum of the soft-label SGD",
            config::Range::from_below(0, 1));
    v.field("label_epoch", label_epoch,
            "the experts' epoch whose logits initialise soft labels and judge mtt.init = "
            "real_correct: 0 = the end of the start-epoch window, -1 = the last epoch (DATM), "
            "k = epoch k");
    v.choice("expert_order", expert_order,
             "uniform: each iteration draws an expert at random (MTT); shuffled: the experts in a "
             "fresh random order per pass, each once per pass (DATM)",
             {"uniform", "shuffled"});
    v.field("max_loss", max_loss,
            "DATM's threshold: an iteration whose matching loss exceeds it updates nothing "
            "(0 = off; with intermediate matching the loss includes the intermediate terms)",
            config::Range::at_least(0));
    v.field("balanced_inner_loss", balanced_inner_loss,
            "AST: scale the student's loss by a factor of the start epoch s (h = max_start_epoch "
            "/ 2: log5(s - h + 8) from h on, else 1 / log5(h - s + 8)), so early segments take "
            "smaller student steps and late ones larger (h stays at the initial max_start_epoch "
            "when DATM's window grows)");
    v.field("weight_perturbation", weight_perturbation,
            "AST: each iteration perturbs the start's convolution kernels, W + d * W with d "
            "Gaussian of unit Frobenius norm per kernel (the loss normalisers use the perturbed "
            "start, as AST)");
    v.choice("intermediate", intermediate,
             "AST's intermediate matching loss: with E = expert_epochs, the student's parameters "
             "after (syn_steps / E) * i steps are also matched to the expert's epoch start + i, "
             "i = 1..E-1, each normalised by its distance from the start; sum: weight 1 each "
             "(AST's agg_middle_loss), adaptive: weight i / E; none: off",
             {"none", "sum", "adaptive"});
    v.field(
        "student_momentum", student_momentum,
        "heavy-ball momentum mu of the student's steps on the synthetic set: b_i = mu b_(i-1) + "
        "g_i, theta_(i+1) = theta_i - lr b_i (AST's code: 0.9; MTT: 0 = plain SGD)",
        config::Range::from_below(0, 1));
    v.rule(min_start_epoch < max_start_epoch,
           "mtt.matching: start epochs are drawn from [min_start_epoch, max_start_epoch), found "
           "min_start_epoch " + std::to_string(min_start_epoch) + " and max_start_epoch " +
               std::to_string(max_start_epoch));
    v.rule(intermediate == "none" || expert_epochs >= 2,
           "mtt.matching.intermediate = " + intermediate +
               " needs expert_epochs >= 2 (an expert epoch between the start and the target), "
               "found expert_epochs " + std::to_string(expert_epochs));
    v.rule(intermediate == "none" || syn_steps >= expert_epochs,
           "mtt.matching.intermediate = " + intermediate +
               " needs syn_steps >= expert_epochs (a student step per expert epoch), found "
               "syn_steps " + std::to_string(syn_steps) + " and expert_epochs " +
               std::to_string(expert_epochs));
  }
};

// AST's balanced inner loss factor for a segment starting at `start_epoch` (see
// MatchingOptions::balanced_inner_loss): h = max_start_epoch / 2 (integer division).
double balanced_loss_scale(int64_t start_epoch, int64_t max_start_epoch);

// AST's weight perturbation: every 4-D parameter (a convolution kernel) W of `model` in the flat
// `params` becomes W + (d / ||d||_F) * W, d drawn from N(0, I) per kernel in parameter order;
// the other parameters are copied unchanged.
at::Tensor perturb_conv_kernels(const at::Tensor& params, const models::Model& model,
                                at::Generator& generator);

// What one matching iteration needs besides the synthetic set.
struct MatchingTask {
  at::Tensor start;   // expert parameters at epoch t (flat)
  at::Tensor target;  // expert parameters at epoch t + M (flat)
  uint64_t seed = 0;  // the iteration's draws: mini-batches and augmentation per student step
  double loss_scale = 1.0;  // multiplies every student step's loss (AST's balanced inner loss)
  // AST's intermediate matching: the expert at epochs t + 1 .. t + M - 1 (empty = off).
  std::vector<at::Tensor> intermediate_targets;
};

struct MetaGradient {
  // ||θ_N - θ*_{t+M}||² / ||θ*_t - θ*_{t+M}||², plus the weighted intermediate terms
  // ||θ_{n_i} - θ*_{t+i}||² / ||θ*_t - θ*_{t+i}||² when the task has intermediate targets.
  double loss = 0.0;
  at::Tensor images_grad;  // d loss / d images
  double lr_grad = 0.0;    // d loss / d lr
  at::Tensor labels_grad;  // d loss / d label logits (soft labels only)
};

// The start epochs an iteration may draw from: [begin, end).
struct StartWindow {
  int64_t begin = 0;
  int64_t end = 0;
};
StartWindow start_epoch_window(const MatchingOptions& options, int64_t iteration,
                               int64_t iterations);
// The largest end a run reaches (experts must hold end - 1 + expert_epochs epochs).
int64_t final_window_end(const MatchingOptions& options);

// Computes the MTT loss and its exact gradient w.r.t. the synthetic images and the student lr.
// The student takes syn_steps SGD steps θ_{i+1} = θ_i - lr ∇ℓ(aug_i(X_{B_i}); θ_i) from `start`
// (with student_momentum μ: θ_{i+1} = θ_i - lr b_i, b_i = μ b_{i-1} + ∇ℓ, b_{-1} = 0).
// `labels` are class ids (int64 N) or label logits (float N,K): then ℓ is the soft cross-entropy
// to softmax(logits) and the gradient w.r.t. the logits is returned too.
class TrajectoryMatcher {
 public:
  TrajectoryMatcher(const models::Model& model, MatchingOptions options, train::AugmentFn augment);

  MetaGradient meta_gradient(const at::Tensor& images, const at::Tensor& labels, double lr,
                             const MatchingTask& task) const;

  const MatchingOptions& options() const { return options_; }

  // Several processes compute one meta-gradient together (issue 8): every student step's batch is
  // split over the ranks, which all-reduce the step's parameter gradient (forward sweep) and
  // Hessian-vector product (adjoint sweep), then the image, label and lr gradients once at the
  // end, so every rank holds the single-process meta-gradient (up to float summation order).
  // split "batch": rank r takes the r-th contiguous part of each batch (balanced); "class": the
  // images whose class c has c mod W = r (parts follow each batch's class counts). Needs
  // meta_grad adjoint or tesla (unroll would need collectives inside autograd's graph) and a
  // student without batch norm (each part would be normalised on its own).
  void set_process_group(std::shared_ptr<const dist::ProcessGroup> group, std::string split);

  // Mini-batch indices of every student step: chunks of batch_syn (0 = all) of random
  // permutations of the `count` images, a short last chunk included, as the reference code.
  std::vector<at::Tensor> batches(int64_t count, uint64_t seed) const;

  // Intermediate matching: the student step n_i (after n_i steps) at which the i-th intermediate
  // target is matched, and its weight, for a task with `count` intermediate targets:
  // n_i = (syn_steps / (count + 1)) * i, as AST's code.
  struct Intermediate {
    int64_t step;
    double weight;
  };
  std::vector<Intermediate> intermediate_points(size_t count) const;

 private:
  // ∇_θ ℓ at one student step, recomputable: same indices, same augmentation draw.
  at::Tensor step_loss(const at::Tensor& images, const at::Tensor& labels, const at::Tensor& params,
                       const at::Tensor& index, const MatchingTask& task, int64_t step) const;
  MetaGradient unrolled(const at::Tensor& images, const at::Tensor& labels, double lr,
                        const MatchingTask& task) const;
  MetaGradient adjoint(const at::Tensor& images, const at::Tensor& labels, double lr,
                       const MatchingTask& task, bool exact) const;

  // This rank's rows of a step's batch (positions in `index`); all rows on one process.
  at::Tensor part_rows(const at::Tensor& index, const at::Tensor& labels) const;
  bool parallel() const { return group_ && group_->distributed(); }

  const models::Model& model_;
  MatchingOptions options_;
  train::AugmentFn augment_;
  std::shared_ptr<const dist::ProcessGroup> group_;
  std::string split_ = "batch";
};

}  // namespace distill::trajectories
