#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {
namespace {

// Spatial size after the AlexNet feature stack for `image_size` inputs (< 1: too small).
int64_t alexnet_feature_size(int64_t image_size, int64_t first_padding) {
  int64_t size = image_size + 2 * first_padding - 4;  // conv5x5, stride 1
  if (size < 1) return 0;
  size /= 2;  // maxpool2; the 5x5 conv pad 2 and the 3x3 convs pad 1 keep the size
  size /= 2;
  return size / 2;
}

// The AlexNet of the DC/DSA benchmarks (a 5-conv CIFAR variant, not torchvision's):
// conv5x5(128) relu maxpool, conv5x5(192) relu maxpool, conv3x3(256) relu, conv3x3(192) relu,
// conv3x3(192) relu maxpool, linear. One-channel inputs pad the first conv by 4 so 28x28 images
// give the 4x4 maps of 32x32 ones.
class AlexNet : public Model {
 public:
  AlexNet(int64_t channels, int64_t image_size, int64_t num_classes) {
    arch_ = "alexnet";
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    first_padding_ = channels == 1 ? 4 : 2;
    int64_t size = alexnet_feature_size(image_size, first_padding_);
    if (size < 1) {
      int64_t minimum = 1;
      while (alexnet_feature_size(minimum, first_padding_) < 1) ++minimum;
      throw Error("model: alexnet needs " + std::to_string(channels) +
                  "-channel images of at least " + std::to_string(minimum) + "x" +
                  std::to_string(minimum) + ", found " + std::to_string(image_size) + "x" +
                  std::to_string(image_size));
    }
    // Indices inside the reference nn.Sequential (conv, relu[, maxpool]) keep state_dict names.
    add_conv("features.0", channels, 128, 5, true);
    add_conv("features.3", 128, 192, 5, true);
    add_conv("features.6", 192, 256, 3, true);
    add_conv("features.8", 256, 192, 3, true);
    add_conv("features.10", 192, 192, 3, true);
    add_linear("fc", 192 * size * size, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    at::Tensor h = max_pool(at::relu(conv(x, p, true, 1, first_padding_)));
    record(args, "block0", h);
    h = max_pool(at::relu(conv(h, p, true, 1, 2)));
    record(args, "block1", h);
    h = at::relu(conv(h, p, true, 1, 1));
    record(args, "block2", h);
    h = at::relu(conv(h, p, true, 1, 1));
    record(args, "block3", h);
    h = max_pool(at::relu(conv(h, p, true, 1, 1)));
    record(args, "block4", h);
    h = h.flatten(1);
    record(args, "embedding", h);
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override {
    return {"block0", "block1", "block2", "block3", "block4", "embedding"};
  }

 private:
  static at::Tensor max_pool(const at::Tensor& x) { return at::max_pool2d(x, {2, 2}, {2, 2}); }

  int64_t first_padding_ = 2;
};

}  // namespace

std::unique_ptr<Model> make_alexnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                    int64_t num_classes) {
  return std::make_unique<AlexNet>(channels, image_size, num_classes);
}

}  // namespace distill::models
