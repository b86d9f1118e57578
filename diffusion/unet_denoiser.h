#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "diffusion/denoiser.h"
#include "src/config/options.h"
#include "src/models/model.h"

namespace distill::diffusion {

// A small U-Net denoiser in the DDPM / ADM line (Ho et al. 2020; Dhariwal & Nichol 2021), sized
// for 28x28 and 32x32 images: residual blocks (GroupNorm, SiLU, 3x3 convolutions) that each add a
// projection of the noise embedding, strided-convolution down- and nearest+conv up-sampling with
// skip connections, single-head self-attention at low resolution, and optional class
// conditioning (a label embedding added to the noise embedding, with one extra "null" class for
// unconditional use, as classifier-free guidance trains it).
struct UnetDenoiserOptions {
  int64_t channels = 32;                          // base width
  std::vector<int64_t> channel_mult = {1, 2, 2};  // one entry per resolution: 28 -> 14 -> 7
  int64_t res_blocks = 1;                         // residual blocks per resolution on the way down
  int64_t attention_max_size = 8;                 // attention where the map side is <= this
  int64_t groups = 8;                             // GroupNorm groups
  int64_t heads = 1;                              // attention heads (must divide the width)

  void visit(config::Visitor& v) {
    v.field("channels", channels, "unet: base number of channels", config::Range::at_least(1));
    // The noise embedding is sin/cos pairs of `channels` entries.
    v.rule(channels % 2 == 0,
           "unet.channels must be even (sin/cos pairs of the noise embedding), found " +
               std::to_string(channels));
    v.field("channel_mult", channel_mult,
            "unet: channel multiplier per resolution; the image side must be divisible by "
            "2^(entries - 1), e.g. [1, 2, 2] gives 28 -> 14 -> 7 and 32 -> 16 -> 8");
    v.rule(!channel_mult.empty(), "unet.channel_mult must not be empty (one entry per resolution)");
    v.field("res_blocks", res_blocks, "unet: residual blocks per resolution (down path)",
            config::Range::at_least(1));
    v.field("attention_max_size", attention_max_size,
            "unet: self-attention in blocks whose feature map side is <= this (0 = none)");
    v.field("groups", groups, "unet: GroupNorm groups (must divide every block's channels)",
            config::Range::at_least(1));
    const size_t bad = first_bad_width();
    const std::string found =
        bad < channel_mult.size() ? ", found " + std::to_string(channels * channel_mult[bad]) : "";
    v.rule(bad == channel_mult.size(),
           "unet: every width channels * channel_mult must be >= 1 and divisible by groups = " +
               std::to_string(groups) + found);
    v.field("heads", heads, "unet: attention heads (must divide every attended width)",
            config::Range::at_least(1));
  }

  // The first multiplier whose width channels * m is < 1 or not divisible by groups
  // (channel_mult.size() when there is none), so the rule names the offending width.
  size_t first_bad_width() const {
    for (size_t i = 0; i < channel_mult.size(); ++i) {
      if (channel_mult[i] < 1 || groups < 1 || (channels * channel_mult[i]) % groups != 0) return i;
    }
    return channel_mult.size();
  }
};

// F(input, c_noise[, labels]) for images C x H x W. Functional like src/models: one flat
// parameter tensor in the registration order of an equivalent torch.nn module
// (tests/python/unet_reference.py; PyTorch's default initialization), so a run, a distillation
// student or Python can all use the same vector.
class UnetDenoiserNet : public models::Model {
 public:
  // num_classes = 0: unconditional (no label embedding).
  UnetDenoiserNet(int64_t channels, int64_t height, int64_t width, int64_t num_classes,
                  UnetDenoiserOptions options);

  // x: N x C x H x W, c_noise: N, labels: int64 N in [0, num_classes] (num_classes = the null
  // class) or undefined (= all null). Returns N x C x H x W.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& c_noise, const at::Tensor& params,
                     const at::Tensor& labels) const;

  // models::Model's form: x is N x (C + 1) x H x W with c_noise as a constant last channel
  // (as MlpDenoiserNet takes it as a last column); unconditional (null class).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& params,
                     const models::ForwardArgs& args = {}) const override;
  std::vector<std::string> feature_names() const override { return {}; }

  // The raw network for precondition(): params (may require grad) and labels are captured.
  Network network(const at::Tensor& params, const at::Tensor& labels = {}) const;

  int64_t num_classes() const { return num_classes_; }
  int64_t null_class() const { return num_classes_; }

 private:
  // The blocks in order; each consumes its parameters from the cursor in registration order.
  // Every down-path block's output (and the input convolution's) is a skip connection; every
  // up-path residual block concatenates the most recent one to its input.
  struct Block {
    enum class Kind { kRes, kDown, kUp };
    Kind kind;
    int64_t in = 0, out = 0;
    bool attention = false;
  };
  void add_block(const std::string& prefix, const Block& block);
  at::Tensor res_block(const Block& block, const at::Tensor& x, const at::Tensor& emb,
                       models::TensorCursor& p) const;
  at::Tensor attention(const at::Tensor& x, models::TensorCursor& p) const;

  int64_t channels_in_, height_, width_;
  UnetDenoiserOptions options_;
  int64_t embed_dim_ = 0;
  std::vector<Block> down_, mid_, up_;
};

}  // namespace distill::diffusion
