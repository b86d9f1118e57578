#pragma once
#include <functional>
#include <memory>
#include <string>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/eval/evaluator.h"
#include "src/eval/synthetic_set.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "trajectories/expert_buffer.h"
#include "trajectories/trajectory_matcher.h"

namespace distill::trajectories {

// A whole `distill mtt` run: initialise a synthetic set, then `iterations` matching steps.
struct MttOptions {
  int64_t ipc = 10;
  int64_t iterations = 1000;
  std::string init = "real";
  int64_t kmeans_iterations = 300;  // init = kmeans: Lloyd iterations at most (sklearn's default)
  std::string buffer = "runs/experts";
  int64_t checkpoint_every = 20;
  int64_t snapshot_every = -1;  // write syn.pt + grid.png every N iterations (-1 = auto)
  int64_t max_failures = 10;   // consecutive non-finite iterations before giving up
  double ema_decay = 0.0;      // FTD: the saved set is an EMA of the images (0 = off)
  int64_t eval_every = 0;      // evaluate the current set every N iterations (0 = off)
  int64_t eval_runs = 1;       // students per snapshot evaluation (DC protocol)
  int64_t eval_epochs = 300;
  std::string dist_split = "batch";  // several processes: how a student step's batch is split
  MatchingOptions matching;
  models::ModelOptions model;
  train::AugmentOptions augment;

  void visit(config::Visitor& v) {
    v.field("ipc", ipc, "synthetic images per class",
            config::Range::at_least(1));
    v.field("iterations", iterations,
            "matching iterations (image updates; 0 = write the initial set)",
            config::Range::at_least(0));
    v.choice("init", init,
             "initial images: real (class-balanced real), real_correct (real images the experts "
             "classify correctly at matching.label_epoch, DATM), kmeans (AST's representative "
             "images: per class, the real image nearest each of ipc k-means centroids of expert "
             "0's logits at matching.label_epoch; AST: label_epoch = -1) or noise",
             {"real", "real_correct", "kmeans", "noise"});
    v.field("kmeans_iterations", kmeans_iterations,
            "init = kmeans: Lloyd iterations at most (after k-means++ seeding)",
            config::Range::at_least(0));
    v.field("buffer", buffer, "expert trajectories: a folder from `distill experts` or one .pt file");
    v.field("checkpoint_every", checkpoint_every, "iterations between checkpoints",
            config::Range::at_least(0));
    v.field("snapshot_every", snapshot_every,
            "iterations between grid/set snapshots (snapshots/grid_<iteration>.png: the report "
            "shows the images' evolution); -1 = every iterations / 10 (at least 1), 0 = end only",
            config::Range::at_least(-1));
    v.field("max_failures", max_failures, "consecutive non-finite iterations tolerated",
            config::Range::at_least(1));
    v.field("ema_decay", ema_decay,
            "FTD: save an exponential moving average of the images with this decay (0 = off)",
            config::Range::from_below(0, 1));
    v.field("eval_every", eval_every,
            "train students on the current set every N iterations and log their test accuracy "
            "(eval_accuracy in metrics.jsonl; 0 = off)",
            config::Range::at_least(0));
    v.field("eval_runs", eval_runs, "students per snapshot evaluation (DC protocol, mtt.model)",
            config::Range::at_least(1));
    v.field("eval_epochs", eval_epochs, "epochs of each snapshot student",
            config::Range::at_least(1));
    v.choice("dist_split", dist_split,
             "WORLD_SIZE > 1: split every student step's batch over the ranks in contiguous "
             "parts (batch) or by class (class mod W = rank)",
             {"batch", "class"});
    v.section("matching", matching);
    v.section("model", model);
    v.section("augment", augment);
  }
};

// Runs trajectory matching; writes checkpoint.pt, metrics.jsonl, syn.pt and grid.png into
// `out`, and returns the final set. With `resume`, continues from out/checkpoint.pt.
// `on_checkpoint` (optional) runs after every regular checkpoint (e.g. to refresh a report).
// With a multi-process `group`, the ranks compute each meta-gradient together (see
// TrajectoryMatcher::set_process_group) and apply the same update; only rank 0 writes files and
// shows progress.
eval::SyntheticSet run_trajectory_matching(
    const MttOptions& options, const data::Dataset& train, const data::Dataset& test,
    const data::Normalization& norm, const std::string& dataset_name, uint64_t seed,
    const std::string& out, bool resume, bool progress,
    const std::function<void()>& on_checkpoint = {},
    std::shared_ptr<const dist::ProcessGroup> group = nullptr);

}  // namespace distill::trajectories
