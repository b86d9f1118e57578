#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <memory>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/dist/process_group.h"
#include "src/eval/synthetic_set.h"
#include "src/train/resized_crop.h"
#include "synth/committee.h"
#include "synth/infer.h"

namespace distill::synth {

// Recovery (SRe2L's "recover" with CV-DD's committee): optimise synthetic images so that the
// members drawn at each step classify them as their class and their statistics match.
struct RecoverOptions {
  int64_t ipc = 10;
  int64_t iterations = 1000;
  int64_t batch_ipc = 0;  // images per class optimised together (0 = all)
  std::string init = "noise";
  int64_t kmeans_iterations = 100;
  double lr = 0.1;
  double beta1 = 0.5;  // SRe2L's Adam betas
  double beta2 = 0.9;
  double statistics_weight = 0.01;
  double first_multiplier = 10.0;
  double crop_min_scale = 0.5;
  int64_t crops = 1;
  bool flip = true;
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;

  void visit(config::Visitor& v) {
    v.field("ipc", ipc, "synthetic images per class",
            config::Range::at_least(1));
    v.field("iterations", iterations, "optimisation steps per batch of images",
            config::Range::at_least(1));
    v.field("batch_ipc", batch_ipc,
            "images per class optimised together (a class-balanced batch; 0 = all at once)",
            config::Range::at_least(0));
    v.choice("init", init,
             "initial images: noise (N(0,1) in normalized space), real "
             "(class-balanced random real images) or kmeans (per class, the real images nearest "
             "to k-means centroids in the best committee member's penultimate features)",
             {"noise", "real", "kmeans"});
    v.field("kmeans_iterations", kmeans_iterations,
            "init kmeans: at most this many Lloyd iterations (after k-means++ seeding)",
            config::Range::at_least(0));
    v.field("lr", lr, "Adam learning rate on the (normalized) pixels, cosine-decayed to 0",
            config::Range::at_least(0));
    v.field("beta1", beta1, "Adam first-moment decay (SRe2L: 0.5)",
            config::Range::from_below(0, 1));
    v.field("beta2", beta2, "Adam second-moment decay (SRe2L: 0.9)",
            config::Range::from_below(0, 1));
    v.field("statistics_weight", statistics_weight,
            "weight of the statistics term (BN running statistics, or real feature statistics)",
            config::Range::at_least(0));
    v.field("first_multiplier", first_multiplier, "extra weight of the first layer's statistics",
            config::Range::at_least(0));
    v.field("crop_min_scale", crop_min_scale,
            "random-resized-crop: smallest area fraction (1 = no crop)",
            config::Range::above_up_to(0, 1));
    v.field("crops", crops,
            "multi-crop: random-resized crops (+ flips) of the batch per step, each scored by the "
            "drawn members, losses averaged (1 = one crop per step)",
            config::Range::at_least(1));
    v.field("flip", flip, "random horizontal flip between steps");
    v.field("checkpoint_every", checkpoint_every, "steps between checkpoints (0 = only per batch)",
            config::Range::at_least(0));
    v.field("log_every", log_every, "steps between metrics.jsonl lines",
            config::Range::at_least(1));
  }
};

struct RelabelOptions {
  std::string syn;
  std::string form = "probabilities";
  double T = 4.0;
  int64_t views = 0;
  double view_min_scale = 0.5;
  bool view_flip = true;

  void visit(config::Visitor& v) {
    v.field("syn", syn, "set to relabel (.pt from synth recover, mtt or subset)");
    v.choice("form", form,
             "probabilities (the committee's weighted vote at T) or logits (the members' mean "
             "logits, INFER's labels: students blend them under CutMix/Mixup and soften at T)",
             {"probabilities", "logits"});
    v.field("T", T, "temperature of the members' softened outputs; evaluate with "
            "eval.train.label_temperature set to the same value",
            config::Range::above(0));
    v.field("views", views,
            "FKD-style: also store this many random-resized-crop + flip views per image with the "
            "committee's soft label of each; `distill eval` then trains epoch e on view e % views "
            "(instead of eval.augment). 0 = off",
            config::Range::at_least(0));
    v.field("view_min_scale", view_min_scale, "views: smallest crop area fraction",
            config::Range::above_up_to(0, 1));
    v.field("view_flip", view_flip, "views: random horizontal flips");
    v.rule(!(form == "logits" && views > 0),
           "synth.relabel.views stores probability labels per view: use form = \"probabilities\" "
           "with views");
  }
};

struct ExportOptions {
  std::string syn;

  void visit(config::Visitor& v) {
    v.field("syn", syn,
            "`distill synth export`: set to write as an image folder OUT/train/<class>/<i>.png "
            "(.pt from synth recover/relabel, mtt or subset) plus OUT/grid.png");
  }
};

// Everything `distill synth recover|infer|relabel|export` reads besides run/data.
struct SynthOptions {
  std::string committee = "runs/committee/committee.toml";
  int64_t draw = 2;
  double temperature = 0.05;
  RecoverOptions recover;
  InferOptions infer;
  RelabelOptions relabel;
  ExportOptions export_set;

  void visit(config::Visitor& v) {
    v.field("committee", committee, "committee manifest written by `distill committee train`");
    v.field("draw", draw, "recover: members drawn at random per step",
            config::Range::at_least(1));
    v.field("temperature", temperature,
            "voting weights softmax(val_accuracy / temperature), accuracies as fractions",
            config::Range::above(0));
    v.section("recover", recover);
    v.section("infer", infer);
    v.section("relabel", relabel);
    v.section("export", export_set);
  }
};

// One member's recovery objective on a batch (the member frozen, in eval mode): cross-entropy to
// `labels` and the statistics term (its batch-norm running statistics, or the real feature
// statistics of a member without batch norm), plus its accuracy on the batch.
struct MemberLoss {
  at::Tensor ce, statistics;
  double accuracy = 0;
};
MemberLoss member_loss(const Member& member, const at::Tensor& images, const at::Tensor& labels,
                       double first_multiplier);

// What recovery and INFER share when they optimise pixels:
// Adam on the pixels (no weight decay; SRe2L's betas are the callers' defaults) ...
train::OptimizerOptions pixel_adam(double lr, double beta1, double beta2);
// ... with SRe2L's cosine decay from lr to 0 over `iterations` steps (the lr of step `it`) ...
double cosine_lr(double lr, int64_t it, int64_t iterations);
// ... and the range of [0, 1] pixels in the normalized space (undefined bounds under ZCA, where
// nothing is clipped), per channel, shaped 1,C,1,1 on `device`.
struct PixelRange {
  at::Tensor lo, hi;
  PixelRange(const data::Normalization& norm, c10::Device device);
  at::Tensor clamp(const at::Tensor& x) const;  // x itself under ZCA
};
// How each member classifies `images` as `classes` (un-augmented): results.json's "members".
nlohmann::json member_accuracies(const std::vector<Member>& committee, const at::Tensor& images,
                                 const at::Tensor& classes);

// Same batch-wide random-resized crop (area in [min_scale, 1], aspect in [3/4, 4/3], resized back
// bilinearly) and, with `flip`, a horizontal flip with probability 1/2; differentiable in x.
at::Tensor random_resized_crop_flip(const at::Tensor& x, double min_scale, bool flip,
                                    at::Generator& generator);

// One recovery step's objective on the images `x` (SRe2L recover with a multi-crop option): `crops`
// views of the batch, each drawn by random_resized_crop_flip from `generator` in turn and scored by
// `loss_of_view`, averaged. With one crop it is loss_of_view(random_resized_crop_flip(x, ...)).
at::Tensor multi_crop_loss(const at::Tensor& x, int64_t crops, double min_scale, bool flip,
                           at::Generator& generator,
                           const std::function<at::Tensor(const at::Tensor& view)>& loss_of_view);

// One crop box (top, left, height, width, flip) drawn like random_resized_crop_flip's
// (src/train/resized_crop.h).
using train::draw_crop_box;

// FKD-style stored views: `views` boxes per image (image i draws from its own generator) and the
// committee's soft labels of each view, into set.view_boxes / set.view_labels.
void add_replay_views(eval::SyntheticSet& set, const std::vector<Member>& committee,
                      const RelabelOptions& options, double weight_temperature, uint64_t seed,
                      c10::Device device);

// Checks the recover settings against the committee and data (before any work).
void check_recover_options(const SynthOptions& options, int64_t committee_size,
                           const data::Dataset& train);

// Runs recovery; writes out/checkpoint.pt, metrics.jsonl, syn.pt (hard labels), grid.png and
// results.json. With `resume`, continues from out/checkpoint.pt.
//
// Several processes (`group` with W > 1): the batches (synth.recover.batch_ipc images per class
// each) are independent optimisations with their own Adam state and seeded draws, so rank r
// recovers batches r, r + W, ... exactly as one process would, and one all-reduce assembles the
// set at the end; rank 0 writes the files. Each finished batch is saved as
// out/batches/batch_<b>.pt, which is what a multi-process --resume continues from (under any
// world size > 1; a batch interrupted midway restarts).
eval::SyntheticSet recover_images(const SynthOptions& options, const std::vector<Member>& committee,
                                  const data::Dataset& train, const data::Normalization& norm,
                                  const std::string& dataset_name, uint64_t seed,
                                  const std::string& out, bool resume, bool progress,
                                  c10::Device device,
                                  std::shared_ptr<const dist::ProcessGroup> group = nullptr);

// The committee's weighted soft labels for `images` (all members, weights softmax(acc/temp)), in
// batches of `batch_size`. With `batch_statistics` (CV-DD's batch-specific soft labels), members'
// batch-norm layers normalise with the statistics of the batch itself instead of their running
// statistics (train mode; the running statistics are left as they are; a batch of one image keeps
// the running statistics); Error for a member with dropout, which train mode would switch on.
at::Tensor committee_soft_labels(const std::vector<Member>& committee, const at::Tensor& images,
                                 double weight_temperature, double T, int64_t batch_size = 256,
                                 bool batch_statistics = false);

}  // namespace distill::synth
