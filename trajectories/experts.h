#pragma once
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/models/model.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"
#include "trajectories/expert_buffer.h"
#include "trajectories/smooth_expert_objective.h"

namespace distill::dist {
class ProcessGroup;
}

namespace distill::trajectories {

// Expert training as in the MTT reference's buffer.py: plain SGD (lr .01, no momentum, no weight
// decay), batch 256, DSA on real images, parameters saved after every epoch.
struct ExpertOptions {
  int64_t num_experts = 10;
  std::string range;  // "begin:end" of expert indices this process trains ("" = all)
  int64_t save_interval = 10;  // experts per replay_buffer_N.pt, as the reference
  models::ModelOptions model;
  train::TrainOptions train;
  train::AugmentOptions augment;
  SmoothingOptions smoothing;

  ExpertOptions() {
    train.epochs = 50;
    train.batch_size = 256;
    train.optimizer.name = "sgd";
    train.optimizer.lr = 0.01;
    train.optimizer.momentum = 0.0;
    train.optimizer.weight_decay = 0.0;
    train.schedule.name = "constant";
    train.checkpoint_every = 0;
  }
  void visit(config::Visitor& v) {
    v.field("num_experts", num_experts, "experts in the whole buffer", config::Range::at_least(1));
    v.field("range", range, "\"begin:end\": train only these expert indices (sharding; \"\" = all)");
    v.field("save_interval", save_interval, "experts per replay_buffer_N.pt file (reference layout)",
            config::Range::at_least(1));
    v.section("model", model);
    v.section("train", train);
    v.section("augment", augment);
    v.section("smoothing", smoothing);
  }
};

// Parses "begin:end" (end exclusive) within [0, total); "" = everything.
std::pair<int64_t, int64_t> parse_range(const std::string& range, int64_t total);

// Trains experts [begin, end) into `folder`/expert_NNNNN.pt (one trajectory each); experts whose
// file exists are skipped, so an interrupted run continues at the first unfinished expert and
// shards can run anywhere. Expert k's randomness depends only on (seed, k): sharded runs equal a
// single run. Then packs every complete group of save_interval experts into replay_buffer_N.pt.
// With a `group` of W > 1 processes, rank r trains experts begin + r, begin + r + W, ... of the
// range (the same files as one process); rank 0 alone appends to metrics.jsonl (the others'
// lines are gathered once every rank finished) and packs the replay buffers.
void train_experts(const ExpertOptions& options, const data::Dataset& train,
                   const data::Dataset& test, uint64_t seed, const std::string& folder,
                   bool progress, const dist::ProcessGroup* group = nullptr);

// All trajectories of a folder (replay_buffer_*.pt files, else expert_*.pt files) or one file.
std::vector<Trajectory> load_expert_folder(const std::string& path, const models::Model& model);

}  // namespace distill::trajectories
