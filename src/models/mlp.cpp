#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {
namespace {

// Fully connected net on the flattened image: hidden layers with ReLU and optional dropout
// (Hinton et al.'s KD MLPs; the DC code's MLP is hidden = [128, 128]).
class Mlp : public Model {
 public:
  Mlp(const ModelOptions& o, int64_t channels, int64_t image_size, int64_t num_classes)
      : options_(o) {
    arch_ = "mlp";
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    if (o.dropout < 0 || o.dropout >= 1 || o.input_dropout < 0 || o.input_dropout >= 1) {
      throw Error("model: mlp dropout and input_dropout must be in [0, 1), found " +
                  std::to_string(o.dropout) + " and " + std::to_string(o.input_dropout));
    }
    int64_t in = channels * image_size * image_size;
    int64_t index = 0;
    for (int64_t width : o.hidden) {
      if (width < 1) throw Error("model: mlp hidden sizes must be >= 1, found " + std::to_string(width));
      add_linear("layers." + std::to_string(index++), in, width);
      in = width;
    }
    add_linear("layers." + std::to_string(index), in, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    if (p.students() > 0 && args.train && (options_.dropout > 0 || options_.input_dropout > 0)) {
      throw Error("stacked students: an mlp with dropout trains one student at a time (its masks "
                  "are drawn per student)");
    }
    at::Tensor h = dropout(x.flatten(1), options_.input_dropout, args);
    for (size_t i = 0; i < options_.hidden.size(); ++i) {
      h = at::relu(linear(h, p));
      record(args, "hidden" + std::to_string(i), h);
      h = dropout(h, options_.dropout, args);
    }
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override {
    std::vector<std::string> names;
    for (size_t i = 0; i < options_.hidden.size(); ++i) names.push_back("hidden" + std::to_string(i));
    return names;
  }

 private:
  // Inverted dropout with the caller's generator, so runs are reproducible from the seed. The
  // mask is drawn on the generator's device and moved (a run's generators are CPU generators;
  // one cannot fill a CUDA tensor), so a GPU run drops what a CPU run drops.
  static at::Tensor dropout(const at::Tensor& h, double rate, const ForwardArgs& args) {
    if (!args.train || rate <= 0) return h;
    at::Tensor keep;
    if (args.generator) {
      keep = at::empty(h.sizes(), h.options().device(args.generator->device()))
                 .bernoulli_(1.0 - rate, *args.generator)
                 .to(h.device());
    } else {
      keep = at::empty_like(h).bernoulli_(1.0 - rate);
    }
    return h * keep / (1.0 - rate);
  }

  ModelOptions options_;
};

// LeNet-5 as in the DC code: conv5(6) relu maxpool, conv5(16) relu maxpool, fc 120, 84, classes.
// One-channel inputs pad the first conv by 2 (28x28 behaves like 32x32).
class LeNet : public Model {
 public:
  LeNet(int64_t channels, int64_t image_size, int64_t num_classes) {
    arch_ = "lenet";
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    padding_ = channels == 1 ? 2 : 0;
    int64_t size = ((image_size + 2 * padding_ - 4) / 2 - 4) / 2;
    if (size < 1) throw Error("model: lenet needs images of at least 16x16, found " +
                              std::to_string(image_size));
    add_conv("features.0", channels, 6, 5, true);
    add_conv("features.3", 6, 16, 5, true);
    add_linear("fc_1", 16 * size * size, 120);
    add_linear("fc_2", 120, 84);
    add_linear("fc_3", 84, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    at::Tensor h = at::max_pool2d(at::relu(conv(x, p, true, 1, padding_)), {2, 2}, {2, 2});
    h = at::max_pool2d(at::relu(conv(h, p, true, 1, 0)), {2, 2}, {2, 2});
    record(args, "features", h);
    h = at::relu(linear(h.flatten(1), p));
    h = at::relu(linear(h, p));
    record(args, "embedding", h);
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override { return {"features", "embedding"}; }

 private:
  int64_t padding_ = 0;
};

}  // namespace

std::unique_ptr<Model> make_mlp(const ModelOptions& o, int64_t channels, int64_t image_size,
                                int64_t num_classes) {
  return std::make_unique<Mlp>(o, channels, image_size, num_classes);
}

std::unique_ptr<Model> make_lenet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                  int64_t num_classes) {
  return std::make_unique<LeNet>(channels, image_size, num_classes);
}

}  // namespace distill::models
