#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <type_traits>

#include "diffusion/denoiser.h"
#include "diffusion/distillation_state.h"
#include "diffusion/noise_schedule.h"
#include "src/config/options.h"
#include "src/train/optimizer.h"

namespace distill::diffusion {

// Progressive distillation (Salimans & Ho 2022, Algorithm 2), in EDM form (noise levels s; a VP
// point z = alpha x is the same point scaled, see noise_schedule.h).
//
// Two DDIM steps of the teacher from x at level s through s_mid to s_end, and the x-target of a
// student that must cover both in one DDIM step: from x2 = xt + (s_end / s)(x - xt),
//   xt = (x2 - (s_end / s) x) / (1 - s_end / s)      (PD Algorithm 2 with alpha = 1).
// x, s, s_mid, s_end: N x ... and N; s > s_mid > s_end >= 0.
at::Tensor progressive_target(const Denoiser& teacher, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& s_mid, const at::Tensor& s_end);

// PD's loss weights as a function of the level (log-SNR = -2 log s for unit-scale data):
//   truncated_snr: max(snr, 1) (PD sec. 4, "truncated SNR"), snr_plus_one: snr + 1 (the v loss),
//   constant: 1 (plain x loss).
at::Tensor progressive_weight(const std::string& weighting, const at::Tensor& s);

struct ProgressiveOptions {
  int64_t teacher_steps = 8;  // steps of the first teacher; each stage halves them
  int64_t student_steps = 1;  // where halving stops
  int64_t iterations = 2000;  // optimizer steps per stage
  int64_t fit_iterations = 0;  // > 0: a first stage fitting the student to the teacher
  int64_t batch = 256;
  std::string weighting = "truncated_snr";
  ScheduleOptions schedule = vp_cosine_schedule();
  train::OptimizerOptions optimizer = default_optimizer();
  train::ScheduleOptions lr_schedule = cosine_decay();

  static ScheduleOptions vp_cosine_schedule() {
    ScheduleOptions s;
    s.name = "vp_cosine";
    return s;
  }
  static train::OptimizerOptions default_optimizer() {
    train::OptimizerOptions o;
    o.name = "adam";
    o.lr = 1e-3;
    o.weight_decay = 0;
    return o;
  }
  static train::ScheduleOptions cosine_decay() {
    train::ScheduleOptions s;
    s.name = "cosine";
    return s;
  }
  void visit(config::Visitor& v) {
    v.field("teacher_steps", teacher_steps, "sampling steps of the first teacher (halved per stage)");
    v.field("student_steps", student_steps, "steps of the final student (teacher_steps / 2^k)",
            config::Range::at_least(1));
    v.rule(reachable_by_halving(),
           "distill.progressive: student_steps = " + std::to_string(student_steps) +
               " is not reachable by halving teacher_steps = " + std::to_string(teacher_steps) +
               " (teacher_steps must be student_steps * 2^k, k >= 1)");
    v.field("iterations", iterations, "optimizer steps per halving stage",
            config::Range::at_least(1));
    v.field("fit_iterations", fit_iterations,
            "> 0: first fit the student to the teacher's denoiser for this many steps (for "
            "teachers that are not a network of the student's shape, e.g. exact ones)",
            config::Range::at_least(0));
    v.field("batch", batch, "training points per step", config::Range::at_least(1));
    v.choice("weighting", weighting, "loss weight: max(snr, 1), snr + 1 or 1",
             {"truncated_snr", "snr_plus_one", "constant"});
    v.section("schedule", schedule);
    v.section("optimizer", optimizer);
    v.section("lr_schedule", lr_schedule);  // over the iterations of each stage
  }

  // teacher_steps = student_steps * 2^k with k >= 1: each stage halves the steps.
  bool reachable_by_halving() const {
    int64_t n = teacher_steps;
    while (n > student_steps && n >= 2 && n % 2 == 0) n /= 2;
    return n == student_steps && teacher_steps != student_steps;
  }
};

// The student as a function of its flat parameters (e.g. precondition(net.network(params), ...)).
using StudentFactory = std::function<Denoiser(const at::Tensor& params)>;
// n clean training points.
using DataSource = std::function<at::Tensor(int64_t n, at::Generator& generator)>;
// Noisy training points at the given levels sigma (N): one point per level, N x ...
using PointSource = std::function<at::Tensor(const at::Tensor& sigma, at::Generator& generator)>;
using ProgressiveCallback = StepCallback;

// Where the loops' training points come from: clean data noised by the loop (x0 + sigma n), or,
// data-free, a PointSource such as the teacher's own sampling trajectories
// (trajectory_points.h).
struct TrainingData {
  DataSource clean;
  PointSource points;

  TrainingData() = default;
  template <class F, class = std::enable_if_t<std::is_constructible_v<DataSource, F> &&
                                              !std::is_same_v<std::decay_t<F>, TrainingData>>>
  TrainingData(F clean_source) : clean(std::move(clean_source)) {}  // NOLINT: implicit on purpose
  static TrainingData from_points(PointSource points) {
    TrainingData d;
    d.points = std::move(points);
    return d;
  }
};

// One stage: trains `params` (in place; a leaf tensor, no grad needed) so that the student with
// `steps` steps matches the teacher with 2 * steps steps on the schedule's grid
// t_i = i / steps. Times, noise and batches come from generators seeded from `generator`.
void progressive_stage(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                       int64_t steps, const TrainingData& data, const ProgressiveOptions& options,
                       at::Generator& generator, const ProgressiveCallback& callback = {});

// Stage 0 of PD when the teacher is not a network of the student's shape: regress the student
// onto the teacher's denoiser itself, D_student(x, s) ~ D_teacher(x, s) at t ~ U(0, 1] on the
// schedule (same weighting and optimizer), so that the first halving stage starts from a copy
// of the teacher as PD requires. With an empty `teacher` the target is the clean x0, i.e. plain
// denoising training of a diffusion model.
void fit_denoiser(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                  const TrainingData& data, const ProgressiveOptions& options,
                  at::Generator& generator, const ProgressiveCallback& callback = {});

// The resumable form of fit_denoiser (options.iterations steps from state.iteration).
void fit_denoiser(const Denoiser& teacher, const StudentFactory& student,
                  DistillationState& state, const TrainingData& data,
                  const ProgressiveOptions& options, const LoopControl& control);

// All stages: teacher_steps -> teacher_steps / 2 -> ... -> student_steps. The first stage
// distills `teacher`; each later one distills the previous stage's student (a frozen copy). The
// student starts from `params` (the teacher's own parameters when it is a network) and returns
// the final student's parameters.
at::Tensor progressive_distillation(const Denoiser& teacher, const StudentFactory& student,
                                    at::Tensor params, const TrainingData& data,
                                    const ProgressiveOptions& options, at::Generator& generator,
                                    const ProgressiveCallback& callback = {});

// The resumable form of the whole run (a fit stage when fit_iterations > 0, then the halvings):
// continues from `state` (a fresh one: stage 0, iteration 0, params = the starting student) and
// leaves the final student in state.params. A run resumed from any state handed to
// control.on_checkpoint ends bit-identical to an uninterrupted one: every step's draws come
// from (state.seed, stage, iteration). The entry points above draw that seed from `generator`.
void progressive_distillation(const Denoiser& teacher, const StudentFactory& student,
                              DistillationState& state, const TrainingData& data,
                              const ProgressiveOptions& options, const LoopControl& control);

// Stages of the run (fit included) and optimizer steps in all of them / before `state`.
int64_t stage_count(const ProgressiveOptions& options);
int64_t total_iterations(const ProgressiveOptions& options);
int64_t completed_iterations(const ProgressiveOptions& options, const DistillationState& state);
// Sampling steps of the student that stage `stage` trains (0 for the fit stage).
int64_t stage_steps(const ProgressiveOptions& options, int64_t stage);

}  // namespace distill::diffusion
