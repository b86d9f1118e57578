#include "diffusion/distillation_state.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <limits>

#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/checkpoint.h"

namespace distill::diffusion {
namespace {

const std::string kOptimizerPrefix = "optimizer.";

at::Tensor copy(const at::Tensor& t) { return t.defined() ? t.detach().clone() : t; }

io::TensorDict copy(const io::TensorDict& dict) {
  io::TensorDict out = io::make_dict();
  for (const auto& entry : dict) {
    const c10::IValue& v = entry.value();
    out.insert(entry.key(), v.isTensor() ? c10::IValue(copy(v.toTensor())) : v);
  }
  return out;
}

}  // namespace

DistillationState DistillationState::clone() const {
  DistillationState c;
  c.stage = stage;
  c.iteration = iteration;
  c.params = copy(params);
  c.target = copy(target);
  c.optimizer = copy(optimizer);
  c.seed = seed;
  return c;
}

void checkpoint_fields(io::Checkpoint& c, DistillationState& s) {
  c.integer("stage", s.stage);
  c.integer("iteration", s.iteration);
  c.tensor("params", s.params, /*required=*/true);
  c.tensor("target", s.target);
  int64_t seed = static_cast<int64_t>(s.seed);  // torch.save has no unsigned integers
  c.integer("seed", seed);
  if (!c.saving()) s.seed = static_cast<uint64_t>(seed);
  c.entries(kOptimizerPrefix, s.optimizer);
}

void step_done(DistillationState& state, const train::Optimizer* optimizer,
               const LoopControl& control, bool stage_end) {
  const bool stop = control.stop_requested && control.stop_requested();
  const bool due = stage_end || (control.checkpoint_every > 0 &&
                                 state.iteration % control.checkpoint_every == 0);
  if ((due || stop) && control.on_checkpoint) {
    io::TensorDict dict = io::make_dict();
    if (optimizer) optimizer->save_state(dict, "");
    state.optimizer = copy(dict);  // save_state hands out the optimizer's live tensors
    control.on_checkpoint(state);
  }
  if (stop) {
    throw Interrupted("distillation interrupted at stage " + std::to_string(state.stage) +
                      ", iteration " + std::to_string(state.iteration));
  }
}

void ema_loop_step(DistillationState& state, train::Optimizer& optimizer, at::Tensor loss,
                   const at::Tensor& leaf, int64_t rows, int64_t batch, double lr, double ema_decay,
                   int64_t iterations, const LoopControl& control, const std::string& what) {
  const int64_t it = state.iteration;
  // The loss is the mean over this rank's rows; as a share of the batch mean it weighs
  // rows / batch (one process: 1).
  if (control.batch.shared()) loss = loss * (static_cast<double>(rows) / batch);
  at::Tensor grad = torch::autograd::grad({loss}, {leaf})[0];
  const double value = control.batch.sum_loss_and_gradient(loss.item<double>(), grad);
  if (!std::isfinite(value)) {
    throw RuntimeFailure(what + ": non-finite loss at iteration " + std::to_string(it));
  }
  optimizer.step(state.params, grad, lr);
  train::ema_update(state.target, state.params, ema_decay);
  state.iteration = it + 1;
  if (control.on_step) control.on_step(0, it, value);
  step_done(state, &optimizer, control, it + 1 == iterations);
}

at::Generator step_generator(const DistillationState& state, uint64_t stream) {
  return make_generator(state.seed, stream + static_cast<uint64_t>(state.stage),
                        static_cast<uint64_t>(state.iteration));
}

uint64_t draw_seed(at::Generator& generator) {
  return static_cast<uint64_t>(
      at::randint(std::numeric_limits<int64_t>::max(), {1}, generator, at::kLong).item<int64_t>());
}

}  // namespace distill::diffusion
