#include "src/models/model.h"

#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorCursor::TensorCursor(const at::Tensor& flat, const std::vector<TensorSpec>& specs)
    : flat_(flat), specs_(specs) {
  int64_t total = 0;
  for (const auto& spec : specs) total += spec.numel();
  const bool stacked = flat.defined() && flat.dim() == 2;
  if (!flat.defined() || (flat.dim() != 1 && !stacked) || flat.size(-1) != total) {
    const std::string found =
        !flat.defined() ? "no"
        : stacked       ? std::to_string(flat.size(0)) + " rows of " + std::to_string(flat.size(1))
        : flat.dim() == 1 ? std::to_string(flat.numel())
                          : "a " + std::to_string(flat.dim()) + "-D tensor of " +
                                std::to_string(flat.numel());
    throw Error("flat tensor has " + found + " elements, the model expects " +
                std::to_string(total));
  }
  if (stacked) students_ = flat.size(0);
  if (flat.requires_grad() && !specs.empty()) {
    std::vector<int64_t> sizes;
    for (const auto& spec : specs) sizes.push_back(spec.numel());
    pieces_ = flat.split_with_sizes(sizes, flat.dim() - 1);
  }
}

at::Tensor TensorCursor::next() {
  if (index_ >= specs_.size()) throw RuntimeFailure("model read more tensors than it registered");
  const size_t index = index_++;
  const TensorSpec& spec = specs_[index];
  const int64_t dim = flat_.dim() - 1;
  at::Tensor piece = pieces_.empty() ? flat_.narrow(dim, offset_, spec.numel()) : pieces_[index];
  offset_ += spec.numel();
  if (students_ == 0) return piece.view(spec.shape);
  std::vector<int64_t> shape = {students_};
  shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
  // A column block [K, n] of [K, P] has row stride P: reshape to [K, shape...] only splits its
  // last dimension, so it stays a view (in-place updates of running statistics reach the flat
  // tensor); the grouped convolution's flatten(0, 1) of a weight is where a copy is made.
  return piece.reshape(shape);
}

int64_t Model::num_params() const {
  int64_t n = 0;
  for (const auto& spec : params_) n += spec.numel();
  return n;
}

int64_t Model::num_buffers() const {
  int64_t n = 0;
  for (const auto& spec : buffers_) n += spec.numel();
  return n;
}

at::Tensor Model::init_params(at::Generator& generator) const {
  return init_flat(params_, generator);
}

at::Tensor Model::init_flat(const std::vector<TensorSpec>& specs, at::Generator& generator) {
  int64_t total = 0;
  for (const auto& spec : specs) total += spec.numel();
  at::Tensor flat = at::empty({total}, at::kFloat);
  if (total == 0) return flat;  // a loss with no parameters of its own
  TensorCursor cursor(flat, specs);
  for (const auto& spec : specs) {
    at::Tensor view = cursor.next();
    switch (spec.init) {
      case TensorSpec::Init::kFanInUniform: {
        double bound = 1.0 / std::sqrt(static_cast<double>(spec.fan_in));
        view.uniform_(-bound, bound, generator);
        break;
      }
      case TensorSpec::Init::kOnes: view.fill_(1.0); break;
      case TensorSpec::Init::kZeros: view.fill_(0.0); break;
    }
  }
  return flat;
}

at::Tensor Model::init_buffers() const {
  at::Tensor flat = at::empty({num_buffers()}, at::kFloat);
  if (flat.numel() == 0) return flat;
  TensorCursor cursor(flat, buffers_);
  for (const auto& spec : buffers_) {
    cursor.next().fill_(spec.init == TensorSpec::Init::kOnes ? 1.0 : 0.0);
  }
  return flat;
}

std::vector<at::Tensor> Model::unflatten(const at::Tensor& flat,
                                         const std::vector<TensorSpec>& specs) {
  TensorCursor cursor(flat, specs);
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < specs.size(); ++i) out.push_back(cursor.next());
  return out;
}

void Model::add_param(TensorSpec spec) { params_.push_back(std::move(spec)); }
void Model::add_buffer(TensorSpec spec) { buffers_.push_back(std::move(spec)); }

void Model::add_conv(const std::string& prefix, int64_t in, int64_t out, int64_t kernel,
                     bool bias) {
  int64_t fan_in = in * kernel * kernel;
  add_param({prefix + ".weight", {out, in, kernel, kernel}, TensorSpec::Init::kFanInUniform, fan_in});
  if (bias) add_param({prefix + ".bias", {out}, TensorSpec::Init::kFanInUniform, fan_in});
}

void Model::add_linear(const std::string& prefix, int64_t in, int64_t out) {
  add_param({prefix + ".weight", {out, in}, TensorSpec::Init::kFanInUniform, in});
  add_param({prefix + ".bias", {out}, TensorSpec::Init::kFanInUniform, in});
}

void Model::add_norm(const std::string& prefix, const std::string& kind, int64_t c, int64_t h,
                     int64_t w) {
  if (kind == "none") return;
  std::vector<int64_t> shape = kind == "layernorm" ? std::vector<int64_t>{c, h, w}
                                                   : std::vector<int64_t>{c};
  add_param({prefix + ".weight", shape, TensorSpec::Init::kOnes, 0});
  add_param({prefix + ".bias", shape, TensorSpec::Init::kZeros, 0});
  if (kind == "batchnorm") {
    add_buffer({prefix + ".running_mean", {c}, TensorSpec::Init::kZeros, 0});
    add_buffer({prefix + ".running_var", {c}, TensorSpec::Init::kOnes, 0});
  }
}

at::Tensor Model::conv(const at::Tensor& x, TensorCursor& p, bool bias, int64_t stride,
                       int64_t padding) {
  at::Tensor weight = p.next();
  at::Tensor b = bias ? p.next() : at::Tensor();
  const int64_t k = p.students();
  if (k == 0) return at::conv2d(x, weight, b, {stride, stride}, {padding, padding});
  // K students: one grouped convolution, student k's input channels to its output channels.
  return at::conv2d(x, weight.flatten(0, 1), b.defined() ? b.reshape(-1) : b, {stride, stride},
                    {padding, padding}, {1, 1}, k);
}

at::Tensor Model::linear(const at::Tensor& x, TensorCursor& p) {
  at::Tensor weight = p.next();
  at::Tensor bias = p.next();
  const int64_t k = p.students();
  if (k == 0) return at::linear(x, weight, bias);
  // x: N, K*in -> K, N, in; one batched product with the K weight matrices.
  const int64_t n = x.size(0);
  at::Tensor per_student = x.reshape({n, k, weight.size(2)}).transpose(0, 1);
  at::Tensor out = at::baddbmm(bias.unsqueeze(1), per_student, weight.transpose(1, 2));
  return out.transpose(0, 1).reshape({n, k * weight.size(1)});
}

at::Tensor Model::synchronised_batch_norm(
    const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor& running_mean,
    at::Tensor& running_var, const std::function<at::Tensor(const at::Tensor&)>& sum_over_replicas) {
  const int64_t channels = x.size(1);
  std::vector<int64_t> reduce_dims = {0};
  for (int64_t d = 2; d < x.dim(); ++d) reduce_dims.push_back(d);
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = channels;
  // One all-reduce per layer: per-channel sums and sums of squares plus this replica's count
  // (a replica with an empty part contributes zeros and still takes part in the collective).
  const double local_count = static_cast<double>(x.numel() / channels);
  // Sums accumulated and combined in double: var = E[x^2] - mean^2 cancels when |mean| >> std.
  at::Tensor local =
      at::cat({x.sum(reduce_dims, false, at::kDouble), (x * x).sum(reduce_dims, false, at::kDouble),
               at::full({1}, local_count, x.options().dtype(at::kDouble))});
  at::Tensor global = sum_over_replicas(local);
  at::Tensor count = global.narrow(0, 2 * channels, 1);
  at::Tensor mean_double = global.narrow(0, 0, channels) / count;
  // Biased variance normalises (as batch_norm in train mode); the running estimate is unbiased.
  at::Tensor var = (global.narrow(0, channels, channels) / count - mean_double * mean_double)
                       .clamp_min(0)
                       .to(x.scalar_type());
  at::Tensor mean = mean_double.to(x.scalar_type());
  {
    at::NoGradGuard no_grad;
    const double n = count.item<double>();
    running_mean.mul_(0.9).add_(mean.detach(), 0.1);
    running_var.mul_(0.9).add_(var.detach() * (n / std::max(n - 1.0, 1.0)), 0.1);
  }
  at::Tensor scale = at::rsqrt(var + 1e-5) * weight;
  return (x - mean.view(shape)) * scale.view(shape) + bias.view(shape);
}

at::Tensor Model::norm(const at::Tensor& input, const std::string& kind, TensorCursor& p,
                       TensorCursor* b, const ForwardArgs& args) {
  if (kind == "none") return input;
  at::Tensor weight = p.next();
  at::Tensor bias = p.next();
  // Under autocast (train.precision) the input arrives in bf16/fp16 while the weights stay fp32:
  // normalise in the weights' precision. CUDA autocast does so for group and layer norm; batch
  // norm too here, since LibTorch 1.13's CPU norm kernels refuse mixed dtypes (the price: the
  // activations after a batch norm stay fp32 until the next autocast op). Without autocast the
  // input already has the weights' dtype and passes unchanged.
  const at::Tensor x =
      input.scalar_type() == weight.scalar_type() ? input : input.to(weight.scalar_type());
  const int64_t channels = x.size(1);
  const int64_t k = p.students();
  if (k > 0) return stacked_norm(x, kind, weight, bias, k, b, args);
  if (kind == "instancenorm") return at::group_norm(x, channels, weight, bias, 1e-5);
  if (kind == "groupnorm") return at::group_norm(x, 4, weight, bias, 1e-5);
  if (kind == "layernorm") return at::layer_norm(x, weight.sizes(), weight, bias, 1e-5);
  if (kind == "batchnorm") {
    if (!b) throw Error("batchnorm model run without its running-statistics buffers");
    at::Tensor mean = b->next();
    at::Tensor var = b->next();
    // Before the update a training-mode pass makes: the statistics the input is compared with.
    if (args.norm_inputs) {
      args.norm_inputs->push_back({x, mean.detach().clone(), var.detach().clone()});
    }
    if (args.train && args.sum_over_replicas) {
      return synchronised_batch_norm(x, weight, bias, mean, var, args.sum_over_replicas);
    }
    return at::batch_norm(x, weight, bias, mean, var, args.train, 0.1, 1e-5, true);
  }
  throw Error("unknown norm '" + kind + "'");
}

// Norms of K stacked students: every kind normalises within one student's channels, so the
// per-channel kinds (instance, batch) run on the K*C channels as they are, group norm with K
// times the groups, and layer norm over each student's block of channels.
at::Tensor Model::stacked_norm(const at::Tensor& x, const std::string& kind,
                               const at::Tensor& weight, const at::Tensor& bias, int64_t k,
                               TensorCursor* b, const ForwardArgs& args) {
  const int64_t channels = x.size(1);
  if (kind == "instancenorm") {
    return at::group_norm(x, channels, weight.reshape(-1), bias.reshape(-1), 1e-5);
  }
  if (kind == "groupnorm") {
    return at::group_norm(x, 4 * k, weight.reshape(-1), bias.reshape(-1), 1e-5);
  }
  if (kind == "layernorm") {
    std::vector<int64_t> per_student = {x.size(0), k};
    for (int64_t d = 1; d < x.dim(); ++d) per_student.push_back(d == 1 ? channels / k : x.size(d));
    const int64_t normalized = x.numel() / (x.size(0) * k);
    at::Tensor h = at::layer_norm(x.reshape({x.size(0), k, normalized}), {normalized}, {}, {}, 1e-5)
                       .view(per_student);
    return (h * weight + bias).view(x.sizes());
  }
  if (kind == "batchnorm") {
    if (!b) throw Error("batchnorm model run without its running-statistics buffers");
    if (args.norm_inputs || args.sum_over_replicas) {
      throw Error("stacked students: batch-norm inputs and synchronised batch norm are for one "
                  "model at a time");
    }
    at::Tensor mean = b->next();  // K, C views of the stacked buffers
    at::Tensor var = b->next();
    // batch_norm updates contiguous running statistics in place; the rows of [K, B] buffers
    // are strided, so it updates copies that are written back.
    at::Tensor flat_mean = mean.reshape(-1).clone();
    at::Tensor flat_var = var.reshape(-1).clone();
    at::Tensor out = at::batch_norm(x, weight.reshape(-1), bias.reshape(-1), flat_mean, flat_var,
                                    args.train, 0.1, 1e-5, true);
    if (args.train) {
      at::NoGradGuard no_grad;
      mean.copy_(flat_mean.view(mean.sizes()));
      var.copy_(flat_var.view(var.sizes()));
    }
    return out;
  }
  throw Error("unknown norm '" + kind + "'");
}

at::Tensor Model::activation(const at::Tensor& x, const std::string& kind) {
  if (kind == "relu") return at::relu(x);
  if (kind == "sigmoid") return at::sigmoid(x);
  if (kind == "leakyrelu") return at::leaky_relu(x, 0.01);
  throw Error("unknown activation '" + kind + "'");
}

at::Tensor Model::pool(const at::Tensor& x, const std::string& kind) {
  if (kind == "avgpool") return at::avg_pool2d(x, {2, 2}, {2, 2});
  if (kind == "maxpool") return at::max_pool2d(x, {2, 2}, {2, 2});
  if (kind == "none") return x;
  throw Error("unknown pooling '" + kind + "'");
}

std::unique_ptr<TensorCursor> Model::buffer_cursor(const ForwardArgs& args) const {
  if (buffers_.empty()) return nullptr;
  if (!args.buffers.defined()) {
    throw Error("model '" + arch_ + "' has batch-norm buffers but none were passed to forward");
  }
  return std::make_unique<TensorCursor>(args.buffers, buffers_);
}

void Model::record(const ForwardArgs& args, const std::string& name, const at::Tensor& x) {
  if (args.features) args.features->emplace_back(name, x);
}

at::Tensor stack_student_inputs(const std::vector<at::Tensor>& inputs) {
  if (inputs.empty()) throw Error("stacked students: no inputs");
  return at::stack(inputs, 1).flatten(1, 2);
}

at::Tensor repeat_for_students(const at::Tensor& input, int64_t students) {
  std::vector<int64_t> repeats(input.dim(), 1);
  repeats[1] = students;
  return input.repeat(repeats);
}

at::Tensor unstack_student_logits(const at::Tensor& logits, int64_t students) {
  return logits.view({logits.size(0), students, logits.size(1) / students}).transpose(0, 1);
}

std::unique_ptr<Model> make_model(const ModelOptions& options, int64_t channels,
                                  int64_t image_size, int64_t num_classes) {
  if (channels <= 0 || image_size <= 0 || num_classes <= 1) {
    throw Error("model '" + options.arch + "': needs channels > 0, image size > 0 and at least 2 "
                "classes, found " + std::to_string(channels) + ", " + std::to_string(image_size) +
                ", " + std::to_string(num_classes));
  }
  const std::string& arch = options.arch;
  if (arch == "convnet" || arch == "convnetd4" || arch == "convnetd5") {
    ModelOptions o = options;
    if (arch == "convnetd4") o.depth = 4;
    if (arch == "convnetd5") o.depth = 5;
    return make_convnet(o, channels, image_size, num_classes);
  }
  if (arch == "mlp") return make_mlp(options, channels, image_size, num_classes);
  if (arch == "lenet") return make_lenet(options, channels, image_size, num_classes);
  if (arch == "alexnet") return make_alexnet(options, channels, image_size, num_classes);
  if (arch == "vgg11" || arch == "vgg11bn") {
    return make_vgg(options, channels, image_size, num_classes);
  }
  if (arch == "resnet18" || arch == "resnet18bn") {
    return make_resnet(options, channels, image_size, num_classes);
  }
  throw Error("model.arch: unknown architecture '" + arch + "'");
}

}  // namespace distill::models
