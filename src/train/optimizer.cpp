#include "src/train/optimizer.h"

#include <ATen/ATen.h>

#include <cmath>

#include "src/core/error.h"

namespace distill::train {
namespace {

at::Tensor get_or_empty(const io::TensorDict& dict, const std::string& key) {
  // A copy: the optimizer updates its state in place and must not alias the caller's dict.
  return dict.contains(key) ? dict.at(key).toTensor().clone() : at::Tensor();
}

class Sgd : public Optimizer {
 public:
  using Optimizer::Optimizer;
  void update(at::Tensor& params, const at::Tensor& grad, double lr) override {
    at::Tensor d = options_.weight_decay != 0 ? grad + options_.weight_decay * params : grad;
    if (options_.momentum != 0) {
      if (!buffer_.defined()) {
        buffer_ = d.clone();  // torch.optim.SGD: the first step copies the gradient
      } else {
        buffer_.mul_(options_.momentum).add_(d);
      }
      d = options_.nesterov ? d + options_.momentum * buffer_ : buffer_;
    }
    params.sub_(d, lr);
  }
  void save_state(io::TensorDict& dict, const std::string& prefix) const override {
    if (buffer_.defined()) dict.insert(prefix + "momentum_buffer", buffer_);
  }
  void load_state(const io::TensorDict& dict, const std::string& prefix) override {
    buffer_ = get_or_empty(dict, prefix + "momentum_buffer");
  }

 private:
  at::Tensor buffer_;
};

class Adam : public Optimizer {
 public:
  Adam(OptimizerOptions options, bool decoupled) : Optimizer(std::move(options)), decoupled_(decoupled) {}
  void update(at::Tensor& params, const at::Tensor& grad, double lr) override {
    at::Tensor g = grad;
    if (options_.weight_decay != 0) {
      if (decoupled_) {
        params.mul_(1.0 - lr * options_.weight_decay);
      } else {
        g = grad + options_.weight_decay * params;
      }
    }
    if (!exp_avg_.defined()) {
      exp_avg_ = at::zeros_like(params);
      exp_avg_sq_ = at::zeros_like(params);
    }
    ++steps_;
    exp_avg_.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    exp_avg_sq_.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
    double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
    at::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bias2)).add_(options_.eps);
    params.addcdiv_(exp_avg_, denom, -lr / bias1);
  }
  void save_state(io::TensorDict& dict, const std::string& prefix) const override {
    if (!exp_avg_.defined()) return;
    dict.insert(prefix + "exp_avg", exp_avg_);
    dict.insert(prefix + "exp_avg_sq", exp_avg_sq_);
    dict.insert(prefix + "steps", at::scalar_tensor(steps_, at::kLong));
  }
  void load_state(const io::TensorDict& dict, const std::string& prefix) override {
    exp_avg_ = get_or_empty(dict, prefix + "exp_avg");
    exp_avg_sq_ = get_or_empty(dict, prefix + "exp_avg_sq");
    at::Tensor steps = get_or_empty(dict, prefix + "steps");
    steps_ = steps.defined() ? steps.item<int64_t>() : 0;
  }

 private:
  bool decoupled_;
  at::Tensor exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace

std::unique_ptr<Optimizer> Optimizer::make(const OptimizerOptions& options) {
  if (!(options.lr >= 0)) throw Error("optimizer.lr must be >= 0, found " + std::to_string(options.lr));
  if (options.name == "sgd") return std::unique_ptr<Optimizer>(new Sgd(options));
  if (options.name == "adam") return std::make_unique<Adam>(options, false);
  if (options.name == "adamw") return std::make_unique<Adam>(options, true);
  throw Error("optimizer.name: unknown optimizer '" + options.name + "' (sgd, adam, adamw)");
}

void Optimizer::step(at::Tensor& params, at::Tensor grad, double lr) {
  if (options_.clip_grad_norm > 0) {
    // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when above the limit.
    double norm = grad.norm().item<double>();
    double scale = options_.clip_grad_norm / (norm + 1e-6);
    if (scale < 1.0) grad = grad * scale;
  }
  update(params, grad, lr);
}

double lr_multiplier(const ScheduleOptions& options, double epoch, int64_t total_epochs) {
  const double total = static_cast<double>(std::max<int64_t>(total_epochs, 1));
  double warm = options.warmup * total;
  double base = 1.0;
  if (options.name == "multistep") {
    for (double milestone : options.milestones) {
      // Whole epochs, as the reference switches lr between epochs: epoch >= floor(m * total).
      if (std::floor(epoch) >= std::floor(milestone * total)) base *= options.gamma;
    }
  } else if (options.name == "step") {
    if (options.step_size < 1) {
      throw Error("schedule.step_size must be >= 1, found " + std::to_string(options.step_size));
    }
    base = std::pow(options.gamma, std::floor(std::floor(epoch) / static_cast<double>(options.step_size)));
  } else if (options.name == "cosine") {
    double progress = std::clamp((epoch - warm) / std::max(total - warm, 1e-12), 0.0, 1.0);
    base = options.min_lr_ratio +
           (1.0 - options.min_lr_ratio) * 0.5 * (1.0 + std::cos(M_PI * progress));
  } else if (options.name != "constant") {
    throw Error("schedule.name: unknown schedule '" + options.name + "'");
  }
  if (warm > 0 && epoch < warm) base *= epoch / warm;
  return base;
}

void ema_update(at::Tensor& ema, const at::Tensor& params, double decay) {
  ema.mul_(decay).add_(params.detach(), 1.0 - decay);
}

}  // namespace distill::train
