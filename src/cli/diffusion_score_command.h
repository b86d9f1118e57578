#pragma once
// `distill diffusion score`: its settings (the `diffusion.score` section of the diffusion
// command) and its body, kept apart from diffusion_commands.cpp so the two grow independently.
#include <cstdint>
#include <string>

#include "src/cli/command.h"
#include "src/config/options.h"
#include "src/data/dataset.h"
#include "src/models/model.h"

namespace distill::cli {

struct DiffusionScoreSettings {
  std::string samples;
  std::string classifier;
  models::ModelOptions model;
  std::string feature_layer = "embedding";
  std::string split = "test";
  int64_t reference_count = 10000;
  int64_t manifold_count = 0;
  int64_t k = 3;
  int64_t batch_size = 256;
  std::string cache_dir = "runs/reference_cache";

  void visit(config::Visitor& v) {
    v.field("samples", samples,
            "samples to score: a `distill diffusion sample` run folder or its samples.pt (any "
            ".pt dict with 'images' N,C,H,W; 'mean'/'std' say how they are normalized); also "
            "the first argument after `score`");
    v.field("classifier", classifier,
            "feature classifier: model.pt or checkpoint.pt of a `distill train` run on the same "
            "data (its features give FCD, not FID)");
    v.section("model", model);
    v.field("feature_layer", feature_layer,
            "classifier layer whose activations are the features (embedding = the input of the "
            "last linear layer)");
    v.choice("split", split, "real images the samples are compared with", {"test", "train"});
    v.field("reference_count", reference_count,
            "real images for the reference statistics (a fixed-seed random subset when fewer "
            "than the split has); 0 = all");
    v.rule(reference_count == 0 || reference_count >= 2,
           "diffusion.score.reference_count must be 0 (all) or >= 2, found " +
               std::to_string(reference_count));
    v.field("manifold_count", manifold_count,
            "real images (the first ones of the reference) for the k-NN metrics; 0 = as many as "
            "there are samples (balanced sets, as Naeem et al. recommend)",
            config::Range::at_least(0));
    v.field("k", k, "neighbours defining the k-NN manifolds (3: Kynkaanniemi et al. 2019)",
            config::Range::at_least(1));
    v.field("batch_size", batch_size, "images per classifier forward pass",
            config::Range::at_least(1));
    v.field("cache_dir", cache_dir,
            "folder caching the real side's statistics per (data, split, count, classifier "
            "bytes, layer); empty = no cache");
  }
};

// Scores samples against the real data; writes RUN/results.json, prints a table. Every input
// (settings, files, shapes, class count) is checked before the run folder is created.
void run_diffusion_score(const config::RunOptions& run_options, const data::DataOptions& data,
                         const DiffusionScoreSettings& settings,
                         const std::string& effective_config,
                         const Invocation& invocation);

}  // namespace distill::cli
