#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {
namespace {

// The ConvNet of the DC/DSA/MTT papers: depth x [conv3x3(width) - norm - act - pool], then one
// linear classifier. One-channel inputs pad the first conv by 3 (28x28 maps become 32x32).
class ConvNet : public Model {
 public:
  ConvNet(const ModelOptions& o, int64_t channels, int64_t image_size, int64_t num_classes)
      : options_(o) {
    arch_ = "convnet";
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    if (o.depth < 1 || o.width < 1) {
      throw Error("model: convnet needs depth >= 1 and width >= 1, found depth " +
                  std::to_string(o.depth) + ", width " + std::to_string(o.width));
    }
    int64_t in = channels, size = image_size;
    for (int64_t d = 0; d < o.depth; ++d) {
      int64_t padding = (channels == 1 && d == 0) ? 3 : 1;
      paddings_.push_back(padding);
      size = size + 2 * padding - 2;
      add_conv("features." + std::to_string(layer_index(d, 0)), in, o.width, 3, true);
      add_norm("features." + std::to_string(layer_index(d, 1)), o.norm, o.width, size, size);
      in = o.width;
      if (o.pool != "none") size /= 2;
      if (size < 1) {
        throw Error("model: convnet depth " + std::to_string(o.depth) + " pools " +
                    std::to_string(image_size) + "x" + std::to_string(image_size) +
                    " images below 1x1; use a smaller depth or pool = \"none\"");
      }
    }
    add_linear("classifier", o.width * size * size, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    auto b = buffer_cursor(args);
    at::Tensor h = x;
    for (int64_t d = 0; d < options_.depth; ++d) {
      h = conv(h, p, true, 1, paddings_[d]);
      h = norm(h, options_.norm, p, b.get(), args);
      h = activation(h, options_.act);
      h = pool(h, options_.pool);
      record(args, "block" + std::to_string(d), h);
    }
    h = h.flatten(1);
    record(args, "embedding", h);
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override {
    std::vector<std::string> names;
    for (int64_t d = 0; d < options_.depth; ++d) names.push_back("block" + std::to_string(d));
    names.push_back("embedding");
    return names;
  }

 private:
  // Index of a layer inside the Python nn.Sequential, so parameter names match state_dict keys.
  int64_t layer_index(int64_t block, int64_t offset) const {
    int64_t per_block = 2 + (options_.norm != "none") + (options_.pool != "none");
    return block * per_block + offset;
  }

  ModelOptions options_;
  std::vector<int64_t> paddings_;
};

}  // namespace

std::unique_ptr<Model> make_convnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                    int64_t num_classes) {
  return std::make_unique<ConvNet>(o, channels, image_size, num_classes);
}

}  // namespace distill::models
