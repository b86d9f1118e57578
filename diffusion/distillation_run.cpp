#include "diffusion/distillation_run.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/checkpoint.h"
#include "src/io/metrics_log.h"
#include "src/io/progress.h"
#include "src/io/tensor_file.h"

namespace distill::diffusion {
namespace {

// CD runs in two phases (fit, then CD); PD's fit is a stage of its own loop.
enum Phase : int64_t { kFitPhase = 0, kMainPhase = 1 };

// What checkpoint.pt holds: the loop's state, and the method and phase it belongs to.
struct RunCheckpoint {
  std::string method;
  int64_t phase;
  DistillationState& state;
};

void checkpoint_fields(io::Checkpoint& c, RunCheckpoint& r) {
  c.expect("method", r.method);
  c.integer("phase", r.phase);
  checkpoint_fields(c, r.state);
}

int64_t cd_fit_iterations(const DistillationRunOptions& o) { return o.consistency_fit.iterations; }

}  // namespace

int64_t run_iterations(const DistillationRunOptions& o) {
  if (o.method == "progressive") return total_iterations(o.progressive);
  if (o.method == "scm") return cd_fit_iterations(o) + o.scm.iterations;
  return cd_fit_iterations(o) + o.consistency.iterations;
}

DistillationState run_distillation(const Denoiser& teacher, const StudentFactory& student,
                                   const at::Tensor& init, const TrainingData& data,
                                   const DistillationRunOptions& o, uint64_t seed,
                                   const std::string& out, bool resume, bool progress,
                                   std::shared_ptr<const dist::ProcessGroup> group) {
  if (o.method != "progressive" && o.method != "consistency" && o.method != "scm") {
    throw Error("distill.method: unknown method '" + o.method +
                "' (expected progressive, consistency or scm)");
  }
  config::check(o, "distill");  // the declared ranges and rules (DistillationRunOptions)
  const bool pd = o.method == "progressive";
  if (!pd && cd_fit_iterations(o) > 0) {
    config::check(o.consistency_fit.schedule, "distill.consistency_fit.schedule");
  }
  const std::string checkpoint = out + "/checkpoint.pt";
  DistillationState state;
  int64_t phase = pd || cd_fit_iterations(o) == 0 ? kMainPhase : kFitPhase;
  if (resume) {
    if (!std::filesystem::exists(checkpoint)) {
      throw Error("--resume: no checkpoint '" + checkpoint + "' to continue from");
    }
    state.params = init.detach().clone();  // the student the settings build: its size expected
    RunCheckpoint saved{o.method, phase, state};
    io::load_checkpoint(checkpoint, saved);
    phase = saved.phase;
  } else {
    state.params = init.detach().clone();
    state.seed = seed;
  }
  // Steps completed before the current phase/stage, for the global step count.
  auto completed = [&](const DistillationState& s, int64_t in_phase) {
    if (pd) return completed_iterations(o.progressive, s);
    return in_phase == kFitPhase ? s.iteration : cd_fit_iterations(o) + s.iteration;
  };
  const bool writer = !group || group->is_main();
  const int64_t total = run_iterations(o);
  const int64_t start = completed(state, phase);
  io::MetricsLog metrics(out + "/metrics.jsonl",
                         resume ? std::optional<int64_t>(start) : std::nullopt, writer);
  io::Progress bar("distill " + o.method, total, start, progress && writer);
  double loss_sum = 0;
  int64_t loss_count = 0;
  LoopControl control;
  control.checkpoint_every = o.checkpoint_every;
  control.stop_requested = [&] {
    // Polled after every step on every rank: the ranks stop together.
    const bool stop = group ? group->any(interrupt_requested()) : interrupt_requested();
    return stop || (o.stop_after > 0 && completed(state, phase) >= o.stop_after);
  };
  // Each rank's rows of every batch; the batches of PD (and its fit) and CD (and its fit).
  const bool scm = o.method == "scm";
  const int64_t batch = pd ? o.progressive.batch : scm ? o.scm.batch : o.consistency.batch;
  control.batch = BatchShare::of(group, batch,
                                 pd    ? "distill.progressive.batch"
                                 : scm ? "distill.scm.batch"
                                       : "distill.consistency.batch");
  const int64_t fit_batch = pd ? o.progressive.batch : o.consistency_fit.batch;
  if (control.batch.shared() && fit_batch != batch && cd_fit_iterations(o) > 0) {
    throw Error("distill: the fit's batch (" + std::to_string(fit_batch) +
                ") differs from the distillation's (" + std::to_string(batch) +
                "): several processes share one batch size");
  }
  control.on_step = [&](int64_t steps, int64_t, double loss) {
    loss_sum += loss;
    ++loss_count;
    const int64_t done = completed(state, phase);  // state.iteration already counts this step
    if (done % o.log_every == 0 || done == total) {
      metrics.log(done, {{"loss", loss_sum / static_cast<double>(loss_count)},
                         {"stage", static_cast<double>(state.stage)},
                         {"student_steps", static_cast<double>(steps)},
                         {"phase", static_cast<double>(phase)}});
      loss_sum = 0;
      loss_count = 0;
    }
    bar.update(done, "loss " + std::to_string(loss));
  };
  control.on_checkpoint = [&](const DistillationState& s) {
    if (!writer) return;
    io::save_checkpoint(checkpoint, RunCheckpoint{o.method, phase, const_cast<DistillationState&>(s)});
  };
  if (pd) {
    progressive_distillation(teacher, student, state, data, o.progressive, control);
  } else {
    if (phase == kFitPhase) {
      fit_denoiser(teacher, student, state, data, o.consistency_fit, control);
      // The fitted denoiser starts CD (and its EMA target); the fit's optimizer ends here.
      DistillationState next;
      next.params = state.params;
      next.seed = state.seed;
      state = next;
      phase = kMainPhase;
      control.on_checkpoint(state);
    }
    if (scm) {
      scm_distillation(teacher, student, state, data, o.scm, control);
    } else {
      consistency_distillation(teacher, student, state, data, o.consistency, control);
    }
  }
  bar.finish();
  return state;
}

}  // namespace distill::diffusion
