#pragma once
// INFER: Zhang et al., "Breaking Class Barriers: Efficient Dataset Distillation via Inter-Class
// Feature Compensator" (ICLR 2025, arXiv 2408.06927), as its released code (zhangxin-xd/UFC,
// ufc_generation/ufc_cifar.py and ufc_validation/val_static.py) runs it on CIFAR:
//   - k class-balanced batches X_b of real images (one image per class each) stay as they are;
//   - each batch gets one Universal Feature Compensator u_{b,m} per committee member m: a single
//     image-shaped perturbation added to every image of the batch, optimised (Adam, cosine lr)
//     so that member m classifies roll(X_b + u) as each image's class and the batch's statistics
//     match the member's (SRe2L's statistics term): the compensator carries features across
//     classes instead of inside one;
//   - the budget counts what is stored, k*C real images plus k*M compensators <= ipc*C, so
//     k = floor(ipc * C / (C + M)); the student trains on the (M + 1) * k * C images they make;
//   - labels are the committee's mean logits of each image, stored once; under Mixup/CutMix the
//     student's target is the same blend of the two images' logits ("linear interpolation"),
//     softened at the stored temperature, instead of a teacher relabelling every batch.
#include <ATen/core/Tensor.h>

#include <array>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/eval/synthetic_set.h"
#include "synth/committee.h"

namespace distill::synth {

struct InferOptions {
  int64_t ipc = 10;
  int64_t real_per_class = 0;
  int64_t iterations = 1000;
  double lr = 0.25;
  double beta1 = 0.5;
  double beta2 = 0.9;
  double statistics_weight = 1.0;
  double first_multiplier = 10.0;
  int64_t jitter = 4;
  std::string labels = "logits";
  double T = 30.0;
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;

  void visit(config::Visitor& v) {
    v.field("ipc", ipc,
            "storage budget in images per class: the real images and the compensators stored "
            "(each compensator counts as one image)",
            config::Range::at_least(1));
    v.field("real_per_class", real_per_class,
            "real batches k (one image per class each; 0 = the most the budget allows, "
            "floor(ipc * classes / (classes + members)), as the INFER code)",
            config::Range::at_least(0));
    v.field("iterations", iterations, "Adam steps per compensator (INFER CIFAR: 1000)",
            config::Range::at_least(1));
    v.field("lr", lr, "Adam learning rate of the compensators, cosine-decayed to 0 (INFER: 0.25)",
            config::Range::above(0));
    v.field("beta1", beta1, "Adam first-moment decay (INFER: 0.5)",
            config::Range::from_below(0, 1));
    v.field("beta2", beta2, "Adam second-moment decay (INFER: 0.9)",
            config::Range::from_below(0, 1));
    v.field("statistics_weight", statistics_weight,
            "weight of the statistics term (INFER CIFAR script: 1)", config::Range::at_least(0));
    v.field("first_multiplier", first_multiplier, "extra weight of the first layer's statistics",
            config::Range::at_least(0));
    v.field("jitter", jitter,
            "each step rolls the compensated batch by up to this many pixels along each axis "
            "(INFER CIFAR: 4; 0 = off)",
            config::Range::at_least(0));
    v.choice("labels", labels,
             "labels stored with the set: logits (the committee's mean logits, INFER's "
             "interpolated labels) or hard (class ids)",
             {"logits", "hard"});
    v.field("T", T,
            "labels = logits: temperature the students soften the blended logits at (INFER "
            "code: 30), recorded in the set",
            config::Range::above(0));
    v.field("checkpoint_every", checkpoint_every,
            "steps between checkpoints (0 = only after each compensator)",
            config::Range::at_least(0));
    v.field("log_every", log_every, "steps between metrics.jsonl lines",
            config::Range::at_least(1));
  }
};

// k, the real batches an `ipc` budget holds with `members` compensators per batch:
// floor(ipc * classes / (classes + members)).
int64_t infer_real_per_class(int64_t ipc, int64_t classes, int64_t members);
// The real batches a run uses: options.real_per_class, or (0) the most the budget holds.
int64_t infer_real_batches(const InferOptions& options, int64_t classes, int64_t members);

// X rolled by (dy, dx) pixels (torch.roll over H and W, wrapping around).
at::Tensor jitter_roll(const at::Tensor& x, int64_t dy, int64_t dx);

// One compensator's objective: member's cross-entropy of roll(X + u) to `labels` plus
// statistics_weight times its statistics term; `u` is 1,C,H,W (broadcast over the batch X).
at::Tensor compensator_loss(const Member& member, const at::Tensor& real, const at::Tensor& u,
                            const at::Tensor& labels, std::array<int64_t, 2> shift,
                            const InferOptions& options);

// The members' plain mean of logits (eval mode), in batches: INFER's stored labels.
at::Tensor committee_mean_logits(const std::vector<Member>& committee, const at::Tensor& images,
                                 int64_t batch_size = 256);

// Checks the settings against the committee and the data before any work (Error naming the key).
void check_infer_options(const InferOptions& options, int64_t members, const data::Dataset& train);

// Runs INFER; writes out/syn.pt (every compensated image and its label), out/compensators.pt
// (the stored form: real images, compensators, which batch and member each belongs to),
// grid.png, metrics.jsonl, results.json and checkpoint.pt; with `resume`, continues from the
// checkpoint. One process.
eval::SyntheticSet infer_compensate(const InferOptions& options,
                                    const std::vector<Member>& committee,
                                    const data::Dataset& train, const data::Normalization& norm,
                                    const std::string& dataset_name, uint64_t seed,
                                    const std::string& out, bool resume, bool progress,
                                    c10::Device device);

}  // namespace distill::synth
