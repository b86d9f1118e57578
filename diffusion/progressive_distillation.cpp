#include "diffusion/progressive_distillation.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "diffusion/noise.h"
#include "diffusion/parameterization.h"
#include "src/config/config_io.h"
#include "src/core/error.h"
#include "src/core/random_streams.h"

namespace distill::diffusion {

at::Tensor progressive_target(const Denoiser& teacher, const at::Tensor& x, const at::Tensor& s,
                              const at::Tensor& s_mid, const at::Tensor& s_end) {
  at::Tensor r1 = per_sample(s_mid / s, x), r2 = per_sample(s_end / s_mid, x);
  at::Tensor d0 = teacher(x, s);
  at::Tensor x1 = d0 + r1 * (x - d0);
  at::Tensor d1 = teacher(x1, s_mid);
  at::Tensor x2 = d1 + r2 * (x1 - d1);
  at::Tensor ratio = per_sample(s_end / s, x);
  return (x2 - ratio * x) / (1 - ratio);
}

at::Tensor progressive_weight(const std::string& weighting, const at::Tensor& s) {
  at::Tensor snr = s.pow(-2);
  if (weighting == "truncated_snr") return at::clamp_min(snr, 1.0);
  if (weighting == "snr_plus_one") return snr + 1;
  if (weighting == "constant") return at::ones_like(s);
  throw Error("progressive.weighting: unknown weighting '" + weighting +
              "' (expected truncated_snr, snr_plus_one or constant)");
}

namespace {

// The optimizer steps of one stage, from state.iteration to o.iterations. Each step draws a
// batch (clean data, levels, noise, in that order; or levels then data-free points) and fits the
// student's D(x, s) to target_of(x0, x, s) under the weighting.

void train_student(const StudentFactory& student, DistillationState& state,
                   const TrainingData& data, const ProgressiveOptions& o,
                   const LoopControl& control, int64_t steps,
                   const std::function<at::Tensor(int64_t, at::Generator&)>& draw_levels,
                   const std::function<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&)>& target_of,
                   bool needs_clean) {
  if (!data.clean && !data.points) throw Error("progressive distillation: no training data");
  if (needs_clean && !data.clean) {
    throw Error("progressive distillation: fitting without a teacher needs clean data");
  }
  auto optimizer = train::Optimizer::make(o.optimizer);
  optimizer->load_state(state.optimizer, "");
  at::Tensor& params = state.params;
  params = params.detach().clone();
  const at::ScalarType dtype = params.scalar_type();
  for (int64_t it = state.iteration; it < o.iterations; ++it) {
    at::Generator generator = step_generator(state, streams::kProgressiveStep);
    at::Tensor x0, s, x;
    if (data.clean) {
      x0 = data.clean(o.batch, generator).to(dtype);
      s = draw_levels(o.batch, generator);
      x = x0 + per_sample(s, x0) * gaussian_like(x0, generator);
    } else {
      s = draw_levels(o.batch, generator);
      x = data.points(s, generator).to(dtype);
    }
    // This rank's rows (all of them on one process).
    if (x0.defined()) x0 = control.batch.rows(x0);
    x = control.batch.rows(x);
    s = control.batch.rows(s);
    at::Tensor target;
    {
      at::NoGradGuard no_grad;
      target = target_of(x0, x, s);
    }
    at::Tensor leaf = params.detach().requires_grad_(true);
    at::Tensor prediction = student(leaf)(x, s);
    at::Tensor per_item = (prediction - target).pow(2).flatten(1).mean(1);
    at::Tensor loss =
        control.batch.batch_mean(progressive_weight(o.weighting, s) * per_item, o.batch);
    at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
    const double value = control.batch.sum_loss_and_gradient(loss.item<double>(), grad);
    if (!std::isfinite(value)) {
      throw RuntimeFailure("progressive distillation: non-finite loss at stage " +
                           std::to_string(steps) + " steps, iteration " + std::to_string(it));
    }
    optimizer->step(params, grad,
                    o.optimizer.lr * train::lr_multiplier(o.lr_schedule, it, o.iterations));
    state.iteration = it + 1;
    if (control.on_step) control.on_step(steps, it, value);
    // The stage's last step is reported by the caller, after it moved on to the next stage.
    if (it + 1 < o.iterations) step_done(state, optimizer.get(), control, false);
  }
}

void run_stage(const Denoiser& teacher, const StudentFactory& student, DistillationState& state,
               int64_t steps, const TrainingData& data, const ProgressiveOptions& o,
               const LoopControl& control) {
  // Levels on the teacher's grid t_j = j / (2 steps): the student steps from t_2i to t_2(i-1).
  std::vector<double> levels(2 * steps + 1);
  for (int64_t j = 0; j <= 2 * steps; ++j) {
    levels[j] = schedule_sigma(o.schedule, static_cast<double>(j) / (2 * steps));
  }
  at::Tensor table = at::tensor(levels, at::kDouble).to(state.params.scalar_type());
  at::Tensor index;  // the step drawn for each item of the current batch
  auto draw = [&](int64_t n, at::Generator& generator) {
    index = at::randint(1, steps + 1, {n}, generator, at::TensorOptions().dtype(at::kLong));
    return table.index({2 * index});
  };
  auto target = [&](const at::Tensor&, const at::Tensor& x, const at::Tensor& s) {
    const at::Tensor mine = control.batch.rows(index);  // x and s are this rank's rows already
    return progressive_target(teacher, x, s, table.index({2 * mine - 1}),
                              table.index({2 * mine - 2}));
  };
  train_student(student, state, data, o, control, steps, draw, target, false);
}

void run_fit(const Denoiser& teacher, const StudentFactory& student, DistillationState& state,
             const TrainingData& data, const ProgressiveOptions& o, const LoopControl& control) {
  config::check(o.schedule, "distill.progressive.schedule");
  auto draw = [&](int64_t n, at::Generator& generator) {
    at::Tensor t = 1 - at::rand({n}, generator, at::TensorOptions().dtype(at::kDouble));  // (0, 1]
    return schedule_sigma(o.schedule, t).to(state.params.scalar_type());
  };
  auto target = [&](const at::Tensor& x0, const at::Tensor& x, const at::Tensor& s) {
    return teacher ? teacher(x, s) : x0;
  };
  train_student(student, state, data, o, control, 0, draw, target, !teacher);
}

DistillationState fresh_state(const at::Tensor& params, at::Generator& generator) {
  DistillationState state;
  state.params = params;
  state.seed = draw_seed(generator);
  return state;
}

LoopControl reporting(const ProgressiveCallback& callback) {
  LoopControl control;
  control.on_step = callback;
  return control;
}

}  // namespace

void progressive_stage(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                       int64_t steps, const TrainingData& data, const ProgressiveOptions& o,
                       at::Generator& generator, const ProgressiveCallback& callback) {
  DistillationState state = fresh_state(params, generator);
  run_stage(teacher, student, state, steps, data, o, reporting(callback));
  params = state.params;
}

void fit_denoiser(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                  const TrainingData& data, const ProgressiveOptions& o, at::Generator& generator,
                  const ProgressiveCallback& callback) {
  DistillationState state = fresh_state(params, generator);
  run_fit(teacher, student, state, data, o, reporting(callback));
  params = state.params;
}

void fit_denoiser(const Denoiser& teacher, const StudentFactory& student,
                  DistillationState& state, const TrainingData& data,
                  const ProgressiveOptions& o, const LoopControl& control) {
  run_fit(teacher, student, state, data, o, control);
  step_done(state, nullptr, control, true);
}

at::Tensor progressive_distillation(const Denoiser& teacher, const StudentFactory& student,
                                    at::Tensor params, const TrainingData& data,
                                    const ProgressiveOptions& o, at::Generator& generator,
                                    const ProgressiveCallback& callback) {
  DistillationState state = fresh_state(params, generator);
  progressive_distillation(teacher, student, state, data, o, reporting(callback));
  return state.params;
}

int64_t stage_count(const ProgressiveOptions& o) {
  int64_t halvings = 0;
  for (int64_t n = o.teacher_steps; n > o.student_steps; n /= 2) ++halvings;
  return halvings + (o.fit_iterations > 0 ? 1 : 0);
}

int64_t stage_steps(const ProgressiveOptions& o, int64_t stage) {
  const int64_t halving = stage - (o.fit_iterations > 0 ? 1 : 0);
  return halving < 0 ? 0 : o.teacher_steps >> (halving + 1);
}

int64_t total_iterations(const ProgressiveOptions& o) {
  return o.fit_iterations + (stage_count(o) - (o.fit_iterations > 0 ? 1 : 0)) * o.iterations;
}

int64_t completed_iterations(const ProgressiveOptions& o, const DistillationState& state) {
  int64_t done = state.iteration;
  for (int64_t stage = 0; stage < state.stage; ++stage) {
    done += stage_steps(o, stage) == 0 ? o.fit_iterations : o.iterations;
  }
  return done;
}

void progressive_distillation(const Denoiser& teacher, const StudentFactory& student,
                              DistillationState& state, const TrainingData& data,
                              const ProgressiveOptions& o, const LoopControl& control) {
  config::check(o, "distill.progressive");  // the declared ranges and rules (ProgressiveOptions)
  const int64_t stages = stage_count(o);
  if (state.stage < 0 || state.stage > stages) {
    throw Error("progressive distillation: state at stage " + std::to_string(state.stage) +
                ", the settings have " + std::to_string(stages) + " stages");
  }
  while (state.stage < stages) {
    const int64_t steps = stage_steps(o, state.stage);
    if (steps == 0) {
      ProgressiveOptions fit = o;
      fit.iterations = o.fit_iterations;
      run_fit(teacher, student, state, data, fit, control);
    } else {
      // The first halving distills `teacher`; each later one the previous stage's student,
      // frozen in state.target.
      Denoiser current = state.target.defined() ? student(state.target) : teacher;
      run_stage(current, student, state, steps, data, o, control);
      state.target = state.params.detach().clone();
    }
    ++state.stage;
    state.iteration = 0;
    state.optimizer = io::make_dict();  // each stage starts a fresh optimizer
    step_done(state, nullptr, control, true);
  }
}

}  // namespace distill::diffusion
