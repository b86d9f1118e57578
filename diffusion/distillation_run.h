#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "diffusion/consistency_distillation.h"
#include "diffusion/distillation_state.h"
#include "diffusion/progressive_distillation.h"
#include "diffusion/scm_distillation.h"
#include "src/config/options.h"
#include "src/dist/process_group.h"

namespace distill::diffusion {

// A distillation run as the project's long runs go: checkpoint.pt (atomic, every
// checkpoint_every steps, at stage ends and on Ctrl-C), metrics.jsonl (loss, stage, student
// steps, lr-free: one line per log_every steps), a progress bar with ETA, and `resume` that
// continues from checkpoint.pt to the same result as a straight run.
struct DistillationRunOptions {
  std::string method = "progressive";  // progressive | consistency | scm
  ProgressiveOptions progressive;
  ConsistencyOptions consistency;
  ScmOptions scm;
  // consistency, scm: steps fitting the student to the teacher's denoiser before CD (the papers
  // start the student from the teacher; for an exact teacher this makes that copy). 0: start as
  // given.
  ProgressiveOptions consistency_fit = consistency_fit_defaults();
  int64_t checkpoint_every = 100;
  int64_t log_every = 10;
  // > 0: stop like Ctrl-C (checkpoint, Interrupted) once the run has done this many steps in
  // all; for time-boxed sessions and resume tests.
  int64_t stop_after = 0;

  static ProgressiveOptions consistency_fit_defaults() {
    ProgressiveOptions o;
    o.schedule.name = "karras";
    o.iterations = 0;
    return o;
  }
  // The settings a command reads into its distill section; the command sets method and
  // consistency_fit itself.
  void visit(config::Visitor& v) {
    v.field("checkpoint_every", checkpoint_every, "optimizer steps between checkpoints",
            config::Range::at_least(0));
    v.field("log_every", log_every, "optimizer steps per metrics.jsonl line",
            config::Range::at_least(1));
    v.field("stop_after", stop_after,
            "> 0: checkpoint and stop after this many steps in all (continue with --resume)");
    v.section("progressive", progressive);
    v.section("consistency", consistency);
    v.section("scm", scm);
  }
};

// The run's total optimizer steps (all stages, fit included).
int64_t run_iterations(const DistillationRunOptions& options);

// Runs (or, with `resume`, continues) the distillation of `teacher` into `student` from `init`
// (ignored when resuming) and returns the final state: PD's last student in params, CD's EMA
// network in target, sCM's sampling EMA in target (the one to sample from). Writes out/checkpoint.pt and out/metrics.jsonl.
// Error when resuming without a checkpoint or from one of another method.
// With a distributed `group`, the ranks share every batch (LoopControl::share) and take the
// single-process steps (up to float summation order); rank 0 writes the files.
DistillationState run_distillation(const Denoiser& teacher, const StudentFactory& student,
                                   const at::Tensor& init, const TrainingData& data,
                                   const DistillationRunOptions& options, uint64_t seed,
                                   const std::string& out, bool resume, bool progress,
                                   std::shared_ptr<const dist::ProcessGroup> group = nullptr);

}  // namespace distill::diffusion
