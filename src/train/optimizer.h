#pragma once
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "src/config/options.h"
#include "src/io/tensor_file.h"

namespace distill::train {

// Update rule over one flat parameter tensor (models keep all parameters in one vector, so an
// optimizer is a few vector operations). Semantics follow torch.optim exactly (tested).
struct OptimizerOptions {
  std::string name = "sgd";
  double lr = 0.01;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double clip_grad_norm = 0.0;

  void visit(config::Visitor& v) {
    v.choice("name", name, "update rule (torch.optim semantics)", {"sgd", "adam", "adamw"});
    // The ranges torch.optim itself enforces.
    v.field("lr", lr, "base learning rate (a schedule scales it)", config::Range::at_least(0));
    v.field("momentum", momentum, "sgd: momentum (0 = plain SGD)", config::Range::at_least(0));
    v.field("nesterov", nesterov, "sgd: Nesterov momentum");
    v.field("weight_decay", weight_decay, "L2 penalty (sgd, adam) or decoupled decay (adamw)",
            config::Range::at_least(0));
    v.field("beta1", beta1, "adam/adamw: first-moment decay", config::Range::from_below(0, 1));
    v.field("beta2", beta2, "adam/adamw: second-moment decay", config::Range::from_below(0, 1));
    v.field("eps", eps, "adam/adamw: denominator epsilon", config::Range::at_least(0));
    v.field("clip_grad_norm", clip_grad_norm, "clip the gradient's global L2 norm (0 = off)",
            config::Range::at_least(0));
    v.rule(!nesterov || momentum > 0, "optimizer.nesterov = true needs optimizer.momentum > 0 "
           "(torch.optim.SGD refuses it too), found momentum " + std::to_string(momentum));
  }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  static std::unique_ptr<Optimizer> make(const OptimizerOptions& options);

  // Updates `params` in place (no autograd) from `grad`, with this step's learning rate.
  void step(at::Tensor& params, at::Tensor grad, double lr);

  // State for checkpoints; load_state() restores it exactly.
  virtual void save_state(io::TensorDict& dict, const std::string& prefix) const = 0;
  virtual void load_state(const io::TensorDict& dict, const std::string& prefix) = 0;

 protected:
  explicit Optimizer(OptimizerOptions options) : options_(std::move(options)) {}
  virtual void update(at::Tensor& params, const at::Tensor& grad, double lr) = 0;
  OptimizerOptions options_;
};

// Learning-rate schedule as a function of progress; milestones are fractions of the run
// (the DC/DSA/MTT protocol decays x0.1 at half: milestones = [0.5]).
struct ScheduleOptions {
  std::string name = "multistep";
  std::vector<double> milestones = {0.5};
  double gamma = 0.1;
  int64_t step_size = 30;  // step: epochs between decays
  double warmup = 0.0;  // fraction of the run with linear warm-up from 0
  double min_lr_ratio = 0.0;

  void visit(config::Visitor& v) {
    v.choice("name", name,
             "constant, step (x gamma every step_size epochs), multistep (x gamma at each "
             "milestone) or cosine",
             {"constant", "step", "multistep", "cosine"});
    v.field("milestones", milestones, "multistep: fractions of the run where lr *= gamma");
    v.field("gamma", gamma, "step/multistep: decay factor");
    v.field("step_size", step_size, "step: epochs between decays");
    v.field("warmup", warmup, "fraction of the run spent in linear warm-up");
    v.field("min_lr_ratio", min_lr_ratio, "cosine: final lr as a fraction of the base lr");
  }
};

// Learning-rate multiplier at `epoch` (0-based, fractional within an epoch) of `total_epochs`.
// Milestones act on whole epochs, as the reference code changes lr between epochs.
double lr_multiplier(const ScheduleOptions& options, double epoch, int64_t total_epochs);

// Exponential moving average of the flat parameters (for diffusion teachers and KD).
void ema_update(at::Tensor& ema, const at::Tensor& params, double decay);

}  // namespace distill::train
