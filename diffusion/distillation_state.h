#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "diffusion/batch_share.h"
#include "src/io/checkpoint.h"
#include "src/io/tensor_file.h"
#include "src/train/optimizer.h"

namespace distill::diffusion {

// Where a distillation loop (progressive or consistency) stands between two optimizer steps:
// everything a resumed run needs to continue exactly as an uninterrupted one (bit-identical on
// CPU). Long runs save it to checkpoint.pt and resume from it (io::save_checkpoint and
// io::load_checkpoint, through checkpoint_fields).
struct DistillationState {
  int64_t stage = 0;      // PD: index of the current stage (a fit stage counts); CD: 0
  int64_t iteration = 0;  // completed optimizer steps of the current stage
  at::Tensor params;      // the student (flat); set it to the starting point for a fresh run
  // CD: the EMA target network. PD: the frozen teacher of the current halving stage when that is
  // the previous stage's student (undefined while the first teacher is the given one).
  at::Tensor target;
  io::TensorDict optimizer = io::make_dict();  // train::Optimizer::save_state, no prefix
  // Every random draw of step i of stage k comes from make_generator(seed, stream + k, i), so a
  // resumed run draws what a straight one would without saving a generator's state (the
  // convention of src/core/runtime.h).
  uint64_t seed = 0;

  // A copy that shares no tensor with this one (the loop keeps updating its own in place).
  DistillationState clone() const;
};

// What a checkpoint holds of the state: stage, iteration, seed, params, target and optimizer.*.
void checkpoint_fields(io::Checkpoint& checkpoint, DistillationState& state);

// Called after every optimizer step: (student steps of the stage (0 for a fit or CD), iteration
// within the stage, loss).
using StepCallback = std::function<void(int64_t steps, int64_t iteration, double loss)>;

// How a caller observes and interrupts a loop.
struct LoopControl {
  StepCallback on_step;
  // Receives the state every checkpoint_every iterations of a stage (0: never), at the end of
  // every stage and before an interruption. Its tensors are the loop's own: copy (clone(),
  // io::save_checkpoint) what must outlive the call.
  int64_t checkpoint_every = 0;
  std::function<void(const DistillationState&)> on_checkpoint;
  // Polled after every step; when it returns true the loop hands its state to on_checkpoint and
  // throws Interrupted (e.g. interrupt_requested for Ctrl-C).
  std::function<bool()> stop_requested;

  // Several processes: the rows of every batch this rank fits (the whole batch on one process).
  BatchShare batch;
};

// For the loops: fills state.optimizer (a copy) from `optimizer` (nullptr: a stage that has not
// started, empty state), then applies `control` — checkpoint when due or `stage_end`,
// Interrupted when a stop was requested.
void step_done(DistillationState& state, const train::Optimizer* optimizer,
               const LoopControl& control, bool stage_end);

// For the one-stage loops with an EMA network in state.target (CD, sCM): the end of iteration
// state.iteration from this rank's batch loss on `leaf` (the params as an autograd leaf, mean over
// `rows` of the `batch` points): the loss as its share of the batch mean, the gradient summed over
// ranks, RuntimeFailure naming `what` on a non-finite loss, the optimizer step at `lr`, the EMA
// update, then the iteration count, control.on_step and step_done (the stage ends at `iterations`).
void ema_loop_step(DistillationState& state, train::Optimizer& optimizer, at::Tensor loss,
                   const at::Tensor& leaf, int64_t rows, int64_t batch, double lr, double ema_decay,
                   int64_t iterations, const LoopControl& control, const std::string& what);

// For the loops: the generator of the current step (state.stage, state.iteration).
at::Generator step_generator(const DistillationState& state, uint64_t stream);

// A seed drawn from `generator`, for the entry points that take a generator instead of a state.
uint64_t draw_seed(at::Generator& generator);

}  // namespace distill::diffusion
