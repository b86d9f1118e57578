#pragma once
// `distill diffusion distill` (diffusion_distill_command.cpp): its settings, and loading a
// diffusion model file for `distill diffusion sample`.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "diffusion/distillation_run.h"
#include "diffusion/mlp_denoiser.h"
#include "src/config/options.h"
#include "src/data/dataset.h"

namespace distill::cli {

struct DiffusionDistillSettings {
  std::string method = "progressive";
  std::string teacher_file;  // empty: the exact teacher (diffusion.train_images)
  std::string data = "dataset";
  int64_t trajectory_steps = 16;
  int64_t fit_iterations = 2000;
  diffusion::MlpDenoiserOptions mlp;
  std::string prediction = "v";
  double sigma_data = 0.5;
  diffusion::DistillationRunOptions run;

  void visit(config::Visitor& v) {
    v.choice("method", method,
             "progressive (halve the steps, PD) or consistency (consistency distillation, CD)",
             {"progressive", "consistency"});
    v.field("teacher_file", teacher_file,
            "diffusion model file of the teacher (from an earlier distill run); empty: the exact "
            "teacher of the first diffusion.train_images training images");
    v.choice("data", data,
             "dataset: noised training images; none: data-free, points of the teacher's own "
             "sampling trajectories from noise (TBCM), no image is read for training",
             {"dataset", "none"});
    v.field("trajectory_steps", trajectory_steps,
            "data = none: Heun steps from noise to each training point's level");
    v.field("fit_iterations", fit_iterations,
            "exact teacher: steps fitting the student to the teacher's denoiser first (PD: its "
            "fit stage, CD: before CD); a file teacher's student starts as its copy instead");
    v.section("mlp", mlp);
    v.choice("prediction", prediction,
             "PD student's output (CD students are consistency "
             "functions)",
             {"eps", "x", "v", "edm"});
    v.field("sigma_data", sigma_data, "edm/consistency scalings: standard deviation of the data");
    v.field("checkpoint_every", run.checkpoint_every, "optimizer steps between checkpoints");
    v.field("log_every", run.log_every, "optimizer steps per metrics.jsonl line");
    v.field("stop_after", run.stop_after,
            "> 0: checkpoint and stop after this many steps in all (continue with --resume)");
    v.section("progressive", run.progressive);
    v.section("consistency", run.consistency);
  }
};

// Runs `distill diffusion distill` (the caller has read the settings).
void run_diffusion_distill(const config::RunOptions& run_options, const data::DataOptions& data,
                           int64_t train_images, DiffusionDistillSettings& settings,
                           const std::string& effective_config, bool resume);

// A model file's denoiser of N x item_shape tensors, its item shape and the data's
// normalization (for display). Error naming the file when it is not a diffusion model file.
struct LoadedDiffusionModel {
  diffusion::Denoiser denoiser;
  std::vector<int64_t> item_shape;
  at::Tensor mean, std;
  std::string method;
  int64_t steps = 0;
};
LoadedDiffusionModel load_diffusion_model(const std::string& path);

}  // namespace distill::cli
