#pragma once
// `distill diffusion distill` (diffusion_distill_command.cpp): its settings and entry point.
#include <string>

#include "diffusion/distillation_run.h"
#include "diffusion/model_file.h"
#include "src/cli/command.h"
#include "src/config/options.h"
#include "src/data/dataset.h"

namespace distill::cli {

// The teacher (diffusion.teacher, diffusion.weights) and, for an exact teacher, the student's
// network (diffusion.model) are the settings `train`/`sample` use; these are the rest.
struct DiffusionDistillSettings {
  std::string method = "progressive";
  std::string data = "dataset";
  int64_t trajectory_steps = 16;
  int64_t fit_iterations = 2000;
  diffusion::DistillationRunOptions run;

  void visit(config::Visitor& v) {
    v.choice("method", method,
             "progressive (halve the sampling steps, PD), consistency (discrete-time consistency "
             "distillation, CD) or scm (continuous-time consistency in TrigFlow, sCM: sCD or sCT "
             "by distill.scm.objective; with --data none it is TBCM)",
             {"progressive", "consistency", "scm"});
    v.choice("data", data,
             "dataset: noised training images; none: data-free, points of the teacher's own "
             "sampling trajectories from noise (TBCM); with a trained teacher no dataset is read",
             {"dataset", "none"});
    v.field("trajectory_steps", trajectory_steps,
            "data = none: Heun steps from noise (sigma <= 80) to each training point's level",
            config::Range::at_least(1));
    v.field("fit_iterations", fit_iterations,
            "exact teacher: steps fitting the student (network diffusion.model) to the teacher's "
            "denoiser first (PD: its fit stage, CD and sCM: before them); a trained teacher's student "
            "starts as its copy instead");
    run.visit(v);  // checkpoint_every, log_every, stop_after, progressive, consistency, scm
  }
};

// Runs `distill diffusion distill`: teacher = "exact" or a model file / run folder of
// `distill diffusion train` (or of this command), `weights` = ema | params of it.
void run_diffusion_distill(const config::RunOptions& run_options, const data::DataOptions& data,
                           const std::string& teacher, const std::string& weights,
                           int64_t train_images, const diffusion::DenoiserArchOptions& student_arch,
                           DiffusionDistillSettings& settings, const std::string& effective_config,
                           const Invocation& invocation);

}  // namespace distill::cli
