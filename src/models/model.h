#pragma once
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/config/options.h"

namespace distill::models {

// A named tensor of a model, in PyTorch's `module.parameters()` / `state_dict()` order, so a
// flat vector here concatenates exactly what Python's `cat([p.reshape(-1) for p in ...])` gives.
struct TensorSpec {
  enum class Init { kFanInUniform, kOnes, kZeros };
  std::string name;
  std::vector<int64_t> shape;
  Init init = Init::kZeros;
  int64_t fan_in = 0;  // for kFanInUniform: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default
  int64_t numel() const;
};

// Hands out views of a flat tensor in spec order, as the forward pass consumes its layers.
// A flat tensor that requires grad is cut with one split_with_sizes, whose backward is a single
// concatenation: per-tensor narrow() views would each scatter a full-size zero tensor in
// backward (for ResNet-18, 62 x 11.7M floats: ~20 s instead of ~0.2 s per backward).
// A stacked flat tensor [K, P] (K students' parameters, one row each) hands out [K, shape...]
// views of it.
class TensorCursor {
 public:
  TensorCursor(const at::Tensor& flat, const std::vector<TensorSpec>& specs);
  at::Tensor next();
  bool done() const { return index_ == specs_.size(); }
  // K of a stacked cursor; 0 for one model's flat vector.
  int64_t students() const { return students_; }

 private:
  int64_t students_ = 0;
  at::Tensor flat_;
  const std::vector<TensorSpec>& specs_;
  size_t index_ = 0;
  int64_t offset_ = 0;
  std::vector<at::Tensor> pieces_;  // the split, when flat requires grad
};

// Named intermediate activations, filled on request (KD feature and relation losses).
using Features = std::vector<std::pair<std::string, at::Tensor>>;

// One batch-norm layer as a forward pass met it: its input and its running statistics (the
// flat buffers' views). SRe2L-style recovery matches the input's batch statistics to them.
struct NormInput {
  at::Tensor input;         // N,C,H,W (or N,C): what the layer normalized
  at::Tensor running_mean;  // C
  at::Tensor running_var;   // C
};

// How to run one forward pass.
struct ForwardArgs {
  bool train = false;
  at::Tensor buffers;                  // flat running statistics; updated in place when train
  at::Generator* generator = nullptr;  // dropout draws (train only)
  Features* features = nullptr;        // when set, receives the named features
  std::vector<NormInput>* norm_inputs = nullptr;  // when set, receives every batch-norm layer
  // Data-parallel training with synchronised batch norm (PyTorch's SyncBatchNorm): sums a tensor
  // over all replicas, differentiably (its backward sums the gradients likewise). When set,
  // batch-norm layers in train mode normalise with the statistics of the whole global batch,
  // so W processes compute what one process computes on the global batch.
  std::function<at::Tensor(const at::Tensor&)> sum_over_replicas;
};

// A model is a description (layer shapes) plus a pure forward(x, params): params are one flat
// tensor, which may be a leaf trained by an optimizer or a function of other tensors (trajectory
// matching differentiates through it). One definition serves both uses.
class Model {
 public:
  virtual ~Model() = default;

  const std::vector<TensorSpec>& param_specs() const { return params_; }
  const std::vector<TensorSpec>& buffer_specs() const { return buffers_; }
  int64_t num_params() const;
  int64_t num_buffers() const;
  const std::string& arch() const { return arch_; }

  // PyTorch's default initialization (kaiming-uniform a=sqrt(5) weights, fan-in-uniform biases,
  // norm weight 1 / bias 0), drawn from `generator`.
  at::Tensor init_params(at::Generator& generator) const;
  // Running means 0 and variances 1 (an empty tensor when the model has no buffers).
  at::Tensor init_buffers() const;

  // x: N,C,H,W. Returns logits N,num_classes.
  // Stacked students (params [K, P], buffers [K, B]): x is N,K*C,H,W, student k's images in
  // channels k*C..(k+1)*C-1 (stack_student_inputs), and the logits N,K*num_classes
  // (unstack_student_logits). Convolutions become grouped convolutions (groups = K), linear
  // layers batched matrix products, and norms act per student's channels: K models in one pass,
  // each computing what it computes alone. Not with dropout, features or norm_inputs.
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                             const ForwardArgs& args = {}) const = 0;

  // Names of the features `forward` can report (for config validation).
  virtual std::vector<std::string> feature_names() const = 0;

  // Views of `flat` shaped per spec (params or buffers), in order.
  static std::vector<at::Tensor> unflatten(const at::Tensor& flat,
                                           const std::vector<TensorSpec>& specs);
  // One flat float tensor initialised per spec as init_params does (also for a loss's own
  // parameters: regressors, heads, branches, fusion networks).
  static at::Tensor init_flat(const std::vector<TensorSpec>& specs, at::Generator& generator);

 protected:
  // Registration, in PyTorch's parameter order; forward reads them back with a TensorCursor.
  void add_param(TensorSpec spec);
  void add_buffer(TensorSpec spec);
  void add_conv(const std::string& prefix, int64_t in, int64_t out, int64_t kernel, bool bias);
  void add_linear(const std::string& prefix, int64_t in, int64_t out);
  // kind: instancenorm | batchnorm | groupnorm | layernorm | none; c,h,w = feature shape.
  void add_norm(const std::string& prefix, const std::string& kind, int64_t c, int64_t h,
                int64_t w);

  // Layer math over cursors (params `p`, buffers `b`).
  static at::Tensor conv(const at::Tensor& x, TensorCursor& p, bool bias, int64_t stride,
                         int64_t padding);
  static at::Tensor linear(const at::Tensor& x, TensorCursor& p);
  static at::Tensor norm(const at::Tensor& x, const std::string& kind, TensorCursor& p,
                         TensorCursor* b, const ForwardArgs& args);
  static at::Tensor stacked_norm(const at::Tensor& x, const std::string& kind,
                                 const at::Tensor& weight, const at::Tensor& bias, int64_t k,
                                 TensorCursor* b, const ForwardArgs& args);
  // Batch norm in train mode over the global batch of all replicas (ForwardArgs::sum_over_replicas):
  // the same output, gradients and running-statistics update as at::batch_norm on the
  // concatenated batch (momentum .1, eps 1e-5).
  static at::Tensor synchronised_batch_norm(
      const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
      at::Tensor& running_mean, at::Tensor& running_var,
      const std::function<at::Tensor(const at::Tensor&)>& sum_over_replicas);
  static at::Tensor activation(const at::Tensor& x, const std::string& kind);
  static at::Tensor pool(const at::Tensor& x, const std::string& kind);
  // Buffers cursor for `args` (nullptr when the model has none).
  std::unique_ptr<TensorCursor> buffer_cursor(const ForwardArgs& args) const;
  static void record(const ForwardArgs& args, const std::string& name, const at::Tensor& x);

  std::string arch_;
  int64_t channels_ = 1, image_size_ = 28, num_classes_ = 10;

 private:
  std::vector<TensorSpec> params_;
  std::vector<TensorSpec> buffers_;
};

// Which architecture and its shape knobs. `arch` picks the family:
// convnet (DC/DSA/MTT ConvNet; convnetd4/d5 = depth 4/5), mlp, lenet, alexnet, vgg11,
// resnet18 (instance norm, as the DC code's ResNet18) and resnet18bn (batch norm).
struct ModelOptions {
  std::string arch = "convnet";
  int64_t width = 128;
  int64_t depth = 3;
  std::string norm = "instancenorm";
  std::string act = "relu";
  std::string pool = "avgpool";
  std::vector<int64_t> hidden = {128, 128};
  double dropout = 0.0;
  double input_dropout = 0.0;
  std::string stem = "cifar";

  void visit(config::Visitor& v) {
    v.choice("arch", arch, "model family",
             {"convnet", "convnetd4", "convnetd5", "mlp", "lenet", "alexnet", "vgg11", "vgg11bn",
              "resnet18", "resnet18bn"});
    v.field("width", width, "convnet: channels of every conv layer");
    v.field("depth", depth, "convnet: number of conv blocks (convnetd4/d5 force 4/5)");
    v.choice("norm", norm, "convnet normalization (instancenorm = GroupNorm(C, C) as in DC/MTT)",
             {"instancenorm", "batchnorm", "groupnorm", "layernorm", "none"});
    v.choice("act", act, "convnet activation", {"relu", "sigmoid", "leakyrelu"});
    v.choice("pool", pool, "convnet pooling", {"avgpool", "maxpool", "none"});
    v.field("hidden", hidden, "mlp: hidden layer sizes");
    v.field("dropout", dropout, "mlp: dropout after each hidden layer (training only)");
    v.field("input_dropout", input_dropout, "mlp: dropout on the input (training only)");
    v.choice("stem", stem, "resnet18: cifar (3x3 conv, no max-pool) or imagenet (torchvision)",
             {"cifar", "imagenet"});
  }
};

// K students' batches (each N,C,H,W, or N,D) as one stacked input N,K*C,H,W (N,K*D).
at::Tensor stack_student_inputs(const std::vector<at::Tensor>& inputs);
// One batch (N,C,H,W) seen by all K students at once (test-set evaluation).
at::Tensor repeat_for_students(const at::Tensor& input, int64_t students);
// Stacked logits N,K*classes as K,N,classes.
at::Tensor unstack_student_logits(const at::Tensor& logits, int64_t students);

// Builds the model for images of `channels` x `image_size` x `image_size` and `num_classes`.
std::unique_ptr<Model> make_model(const ModelOptions& options, int64_t channels,
                                  int64_t image_size, int64_t num_classes);

}  // namespace distill::models
