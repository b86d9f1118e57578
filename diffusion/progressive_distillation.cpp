#include "diffusion/progressive_distillation.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "diffusion/parameterization.h"
#include "src/core/error.h"

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

void validate(const ProgressiveOptions& o) {
  if (o.student_steps < 1) {
    throw Error("progressive.student_steps: must be >= 1, found " + std::to_string(o.student_steps));
  }
  int64_t n = o.teacher_steps;
  while (n > o.student_steps && n % 2 == 0) n /= 2;
  if (n != o.student_steps || o.teacher_steps == o.student_steps) {
    throw Error("progressive: student_steps = " + std::to_string(o.student_steps) +
                " is not reachable by halving teacher_steps = " + std::to_string(o.teacher_steps) +
                " (teacher_steps must be student_steps * 2^k, k >= 1)");
  }
  if (o.iterations < 1 || o.batch < 1) {
    throw Error("progressive: iterations and batch must be >= 1, found " +
                std::to_string(o.iterations) + " and " + std::to_string(o.batch));
  }
  validate(o.schedule, "progressive.schedule");
  progressive_weight(o.weighting, at::ones({1}));
}

namespace {

// Draws a batch: clean points x0, levels (N) and the noisy x = x0 + s n; `target` is the x the
// student must output.
using TargetFn = std::function<at::Tensor(const at::Tensor& x0, const at::Tensor& x,
                                          const at::Tensor& index)>;

void train_student(const StudentFactory& student, at::Tensor& params, const DataSource& data,
                   const ProgressiveOptions& o, at::Generator& generator,
                   const ProgressiveCallback& callback, int64_t steps,
                   const std::function<at::Tensor(int64_t)>& draw_levels,
                   const std::function<at::Tensor(const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&)>& target_of) {
  auto optimizer = train::Optimizer::make(o.optimizer);
  params = params.detach().clone();
  for (int64_t it = 0; it < o.iterations; ++it) {
    at::Tensor x0 = data(o.batch, generator).to(params.scalar_type());
    at::Tensor s = draw_levels(o.batch);
    at::Tensor x = x0 + per_sample(s, x0) * at::randn(x0.sizes(), generator, x0.options());
    at::Tensor target;
    {
      at::NoGradGuard no_grad;
      target = target_of(x0, x, s);
    }
    at::Tensor leaf = params.detach().requires_grad_(true);
    at::Tensor prediction = student(leaf)(x, s);
    at::Tensor per_item = (prediction - target).pow(2).flatten(1).mean(1);
    at::Tensor loss = (progressive_weight(o.weighting, s) * per_item).mean();
    const double value = loss.item<double>();
    if (!std::isfinite(value)) {
      throw RuntimeFailure("progressive distillation: non-finite loss at stage " +
                           std::to_string(steps) + " steps, iteration " + std::to_string(it));
    }
    at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
    optimizer->step(params, grad,
                    o.optimizer.lr * train::lr_multiplier(o.lr_schedule, it, o.iterations));
    if (callback) callback(steps, it, value);
  }
}

}  // namespace

void progressive_stage(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                       int64_t steps, const DataSource& data, const ProgressiveOptions& o,
                       at::Generator& generator, const ProgressiveCallback& callback) {
  // Levels on the teacher's grid t_j = j / (2 steps): the student steps from t_2i to t_2(i-1).
  std::vector<double> levels(2 * steps + 1);
  for (int64_t j = 0; j <= 2 * steps; ++j) {
    levels[j] = schedule_sigma(o.schedule, static_cast<double>(j) / (2 * steps));
  }
  at::Tensor table = at::tensor(levels, at::kDouble).to(params.scalar_type());
  at::Tensor index;  // the step drawn for each item of the current batch
  auto draw = [&](int64_t n) {
    index = at::randint(1, steps + 1, {n}, generator, at::TensorOptions().dtype(at::kLong));
    return table.index({2 * index});
  };
  auto target = [&](const at::Tensor&, const at::Tensor& x, const at::Tensor& s) {
    return progressive_target(teacher, x, s, table.index({2 * index - 1}),
                              table.index({2 * index - 2}));
  };
  train_student(student, params, data, o, generator, callback, steps, draw, target);
}

void fit_denoiser(const Denoiser& teacher, const StudentFactory& student, at::Tensor& params,
                  const DataSource& data, const ProgressiveOptions& o, at::Generator& generator,
                  const ProgressiveCallback& callback) {
  validate(o.schedule, "progressive.schedule");
  auto draw = [&](int64_t n) {
    at::Tensor t = 1 - at::rand({n}, generator, at::TensorOptions().dtype(at::kDouble));  // (0, 1]
    std::vector<double> s(n);
    for (int64_t i = 0; i < n; ++i) s[i] = schedule_sigma(o.schedule, t[i].item<double>());
    return at::tensor(s, at::kDouble).to(params.scalar_type());
  };
  auto target = [&](const at::Tensor& x0, const at::Tensor& x, const at::Tensor& s) {
    return teacher ? teacher(x, s) : x0;
  };
  train_student(student, params, data, o, generator, callback, 0, draw, target);
}

at::Tensor progressive_distillation(const Denoiser& teacher, const StudentFactory& student,
                                    at::Tensor params, const DataSource& data,
                                    const ProgressiveOptions& o, at::Generator& generator,
                                    const ProgressiveCallback& callback) {
  validate(o);
  Denoiser current = teacher;
  for (int64_t steps = o.teacher_steps / 2; steps >= o.student_steps; steps /= 2) {
    progressive_stage(current, student, params, steps, data, o, generator, callback);
    current = student(params.detach().clone());  // the next stage's frozen teacher
  }
  return params;
}

}  // namespace distill::diffusion
