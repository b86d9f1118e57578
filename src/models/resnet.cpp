#include <ATen/ATen.h>

#include "src/core/error.h"
#include "src/models/families.h"

namespace distill::models {
namespace {

// ResNet-18 (He et al., 2016) with BasicBlocks [2, 2, 2, 2] of 64, 128, 256, 512 channels.
// norm is instance norm (GroupNorm(C, C), the DC code's ResNet18) for `resnet18` and batch norm
// for `resnet18bn`. stem "cifar" is the DC/CIFAR stem (conv3x3 stride 1, no max-pool); "imagenet"
// is torchvision's (conv7x7 stride 2, max-pool 3x3 stride 2). Global average pool, then `fc`.
// Parameter names follow torchvision, so a torchvision resnet18 state_dict maps 1:1 in order
// (the DC code's `shortcut`/`classifier` hold the same tensors in the same order).
class ResNet18 : public Model {
 public:
  ResNet18(const ModelOptions& o, int64_t channels, int64_t image_size, int64_t num_classes) {
    arch_ = o.arch;
    channels_ = channels;
    image_size_ = image_size;
    num_classes_ = num_classes;
    norm_ = o.arch == "resnet18bn" ? "batchnorm" : "instancenorm";
    if (o.stem != "cifar" && o.stem != "imagenet") {
      throw Error("model.stem: expected \"cifar\" or \"imagenet\", found \"" + o.stem + "\"");
    }
    imagenet_stem_ = o.stem == "imagenet";
    // Every stride-2 layer maps a size s >= 1 to ceil(s / 2) >= 1, so no input is too small.
    add_conv("conv1", channels, 64, imagenet_stem_ ? 7 : 3, false);
    add_norm("bn1", norm_, 64, 0, 0);
    int64_t in = 64;
    const int64_t widths[] = {64, 128, 256, 512};
    for (int64_t layer = 0; layer < 4; ++layer) {
      for (int64_t block = 0; block < 2; ++block) {
        const int64_t out = widths[layer];
        const int64_t stride = (layer > 0 && block == 0) ? 2 : 1;
        const std::string prefix =
            "layer" + std::to_string(layer + 1) + "." + std::to_string(block) + ".";
        add_conv(prefix + "conv1", in, out, 3, false);
        add_norm(prefix + "bn1", norm_, out, 0, 0);
        add_conv(prefix + "conv2", out, out, 3, false);
        add_norm(prefix + "bn2", norm_, out, 0, 0);
        const bool downsample = stride != 1 || in != out;
        if (downsample) {
          add_conv(prefix + "downsample.0", in, out, 1, false);
          add_norm(prefix + "downsample.1", norm_, out, 0, 0);
        }
        blocks_.push_back({stride, downsample});
        in = out;
      }
    }
    add_linear("fc", in, num_classes);
  }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const ForwardArgs& args) const override {
    TensorCursor p(params, param_specs());
    auto b = buffer_cursor(args);
    at::Tensor h;
    if (imagenet_stem_) {
      h = at::relu(norm(conv(x, p, false, 2, 3), norm_, p, b.get(), args));
      h = at::max_pool2d(h, {3, 3}, {2, 2}, {1, 1});
    } else {
      h = at::relu(norm(conv(x, p, false, 1, 1), norm_, p, b.get(), args));
    }
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const Block& block = blocks_[i];
      // The cursors hand out tensors in registration order: main path, then the shortcut.
      at::Tensor out =
          at::relu(norm(conv(h, p, false, block.stride, 1), norm_, p, b.get(), args));
      out = norm(conv(out, p, false, 1, 1), norm_, p, b.get(), args);
      at::Tensor shortcut =
          block.downsample ? norm(conv(h, p, false, block.stride, 0), norm_, p, b.get(), args)
                           : h;
      h = at::relu(out + shortcut);
      if (i % 2 == 1) record(args, "layer" + std::to_string(i / 2 + 1), h);
    }
    h = h.mean({2, 3});
    record(args, "embedding", h);
    return linear(h, p);
  }

  std::vector<std::string> feature_names() const override {
    return {"layer1", "layer2", "layer3", "layer4", "embedding"};
  }

 private:
  struct Block {
    int64_t stride;
    bool downsample;
  };
  std::string norm_;
  bool imagenet_stem_ = false;
  std::vector<Block> blocks_;
};

}  // namespace

std::unique_ptr<Model> make_resnet(const ModelOptions& o, int64_t channels, int64_t image_size,
                                   int64_t num_classes) {
  return std::make_unique<ResNet18>(o, channels, image_size, num_classes);
}

}  // namespace distill::models
