#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {
namespace {

constexpr int64_t kMaxPool = 0;  // a max-pool entry of the layer configuration
// VGG-11 (configuration "A" of Simonyan & Zisserman, 2015).
const std::vector<int64_t> kVgg11 = {64,  kMaxPool, 128,      kMaxPool, 256, 256,     kMaxPool,
                                     512, 512,      kMaxPool, 512,      512, kMaxPool};

// VGG-11 as in the DC/DSA code: conv3x3 - norm - relu per entry, 2x2 max-pools, then one linear
// layer on the flattened maps. norm is instance norm (GroupNorm(C, C)) for `vgg11` and batch norm
// for `vgg11bn`. One-channel inputs pad the first conv by 3 (28x28 behaves like 32x32).
class Vgg : public Model {
 public:
  Vgg(const std::string& arch, int64_t channels, int64_t image_size, int64_t num_classes) {
    arch_ = arch;
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    norm_ = arch == "vgg11bn" ? "batchnorm" : "instancenorm";
    first_padding_ = channels == 1 ? 3 : 1;
    int64_t size = image_size + 2 * first_padding_ - 2;
    for (int64_t entry : kVgg11) size = entry == kMaxPool ? size / 2 : size;
    if (size < 1) {
      // Five halvings need 32x32 maps after the first conv.
      int64_t minimum = 32 - 2 * first_padding_ + 2;
      throw Error("model: " + arch + " needs " + std::to_string(channels) +
                  "-channel images of at least " + std::to_string(minimum) + "x" +
                  std::to_string(minimum) + ", found " + std::to_string(image_size) + "x" +
                  std::to_string(image_size));
    }
    // Names follow the reference nn.Sequential: conv, norm, relu per entry; one slot per pool.
    int64_t index = 0, in = channels;
    for (int64_t entry : kVgg11) {
      if (entry == kMaxPool) {
        ++index;
        continue;
      }
      add_conv("features." + std::to_string(index), in, entry, 3, true);
      add_norm("features." + std::to_string(index + 1), norm_, entry, 0, 0);
      index += 3;
      in = entry;
    }
    add_linear("classifier", in * size * size, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    auto b = buffer_cursor(args);
    at::Tensor h = x;
    bool first = true;
    int64_t block = 0;
    for (int64_t entry : kVgg11) {
      if (entry == kMaxPool) {
        h = at::max_pool2d(h, {2, 2}, {2, 2});
        record(args, "block" + std::to_string(block++), h);
        continue;
      }
      h = conv(h, p, true, 1, first ? first_padding_ : 1);
      h = at::relu(norm(h, norm_, p, b.get(), args));
      first = false;
    }
    h = h.flatten(1);
    record(args, "embedding", h);
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override {
    return {"block0", "block1", "block2", "block3", "block4", "embedding"};
  }

 private:
  std::string norm_;
  int64_t first_padding_ = 1;
};

}  // namespace

std::unique_ptr<Model> make_vgg(const ModelOptions& o, int64_t channels, int64_t image_size,
                                int64_t num_classes) {
  return std::make_unique<Vgg>(o.arch, channels, image_size, num_classes);
}

}  // namespace distill::models
