#include "diffusion/unet_denoiser.h"

#include <ATen/ATen.h>

#include <cmath>

#include "src/config/config_io.h"
#include "src/core/error.h"

namespace distill::diffusion {
namespace {

using models::TensorCursor;
using models::TensorSpec;

std::string str(int64_t value) { return std::to_string(value); }

// Sinusoidal embedding of the noise level (Transformer positional encoding as DDPM uses it for
// its timestep): [cos(c f_i), sin(c f_i)] with f_i = 10000^(-i / half). EDM's c_noise = ln(s)/4
// spans about [-1.6, 1.1], so it is scaled by 1000 first to occupy the frequencies the way
// DDPM's integer timesteps 0..999 do.
at::Tensor noise_embedding(const at::Tensor& c_noise, int64_t dim) {
  const int64_t half = dim / 2;
  at::Tensor freqs = at::exp(at::arange(half, c_noise.options()) *
                             (-std::log(10000.0) / static_cast<double>(half)));
  at::Tensor angles = (1000.0 * c_noise).unsqueeze(1) * freqs.unsqueeze(0);
  return at::cat({at::cos(angles), at::sin(angles)}, 1);
}

at::Tensor group_norm(const at::Tensor& x, int64_t groups, TensorCursor& p) {
  at::Tensor weight = p.next();
  at::Tensor bias = p.next();
  return at::group_norm(x, groups, weight, bias, 1e-5);
}

}  // namespace

UnetDenoiserNet::UnetDenoiserNet(int64_t channels, int64_t height, int64_t width,
                                 int64_t num_classes, UnetDenoiserOptions options)
    : channels_in_(channels), height_(height), width_(width), options_(std::move(options)) {
  arch_ = "unet";
  channels_ = channels;
  image_size_ = height;
  num_classes_ = num_classes;
  const UnetDenoiserOptions& o = options_;
  if (channels < 1 || height < 1 || width < 1) {
    throw Error("unet: image shape must be positive, found " + str(channels) + "x" + str(height) +
                "x" + str(width));
  }
  if (num_classes < 0) throw Error("unet: num_classes must be >= 0, found " + str(num_classes));
  config::check(o, "diffusion.model.unet");  // the declared ranges and rules (UnetDenoiserOptions)
  const int64_t levels = static_cast<int64_t>(o.channel_mult.size());
  const int64_t factor = int64_t{1} << (levels - 1);
  if (height % factor != 0 || width % factor != 0) {
    throw Error("unet.channel_mult: " + str(levels) + " resolutions halve the image " +
                str(levels - 1) + " times, so its side must be divisible by " + str(factor) +
                "; found " + str(height) + "x" + str(width) + " (28x28 and 32x32 allow up to 3)");
  }
  embed_dim_ = 4 * o.channels;

  // Registration order = the parameter order of tests/python/unet_reference.py's module.
  add_linear("embed.0", o.channels, embed_dim_);
  add_linear("embed.2", embed_dim_, embed_dim_);
  if (num_classes > 0) {
    // nn.Embedding draws N(0, 1); here U(-1, 1) (fan-in 1): only the scale of the start differs.
    add_param(
        {"label_embed.weight", {num_classes + 1, embed_dim_}, TensorSpec::Init::kFanInUniform, 1});
  }
  add_conv("input", channels, o.channels, 3, true);

  auto attend = [&](int64_t side_h, int64_t side_w) {
    return std::max(side_h, side_w) <= o.attention_max_size;
  };
  std::vector<int64_t> skip_channels = {o.channels};
  int64_t c = o.channels, h = height, w = width;
  for (int64_t level = 0; level < levels; ++level) {
    const int64_t out = o.channels * o.channel_mult[level];
    for (int64_t r = 0; r < o.res_blocks; ++r) {
      down_.push_back({Block::Kind::kRes, c, out, attend(h, w)});
      c = out;
      skip_channels.push_back(c);
    }
    if (level + 1 < levels) {
      down_.push_back({Block::Kind::kDown, c, c, false});
      skip_channels.push_back(c);
      h /= 2;
      w /= 2;
    }
  }
  mid_.push_back({Block::Kind::kRes, c, c, true});
  mid_.push_back({Block::Kind::kRes, c, c, false});
  for (int64_t level = levels - 1; level >= 0; --level) {
    const int64_t out = o.channels * o.channel_mult[level];
    for (int64_t r = 0; r <= o.res_blocks; ++r) {
      const int64_t skip = skip_channels.back();
      skip_channels.pop_back();
      up_.push_back({Block::Kind::kRes, c + skip, out, attend(h, w)});
      c = out;
    }
    if (level > 0) {
      up_.push_back({Block::Kind::kUp, c, c, false});
      h *= 2;
      w *= 2;
    }
  }
  for (size_t i = 0; i < down_.size(); ++i) add_block("down." + std::to_string(i), down_[i]);
  for (size_t i = 0; i < mid_.size(); ++i) add_block("mid." + std::to_string(i), mid_[i]);
  for (size_t i = 0; i < up_.size(); ++i) add_block("up." + std::to_string(i), up_[i]);
  add_norm("out_norm", "groupnorm", c, 0, 0);
  add_conv("out_conv", c, channels, 3, true);
}

void UnetDenoiserNet::add_block(const std::string& prefix, const Block& b) {
  if (b.kind == Block::Kind::kDown) return add_conv(prefix + ".op", b.in, b.out, 3, true);
  if (b.kind == Block::Kind::kUp) return add_conv(prefix + ".conv", b.in, b.out, 3, true);
  add_norm(prefix + ".norm1", "groupnorm", b.in, 0, 0);
  add_conv(prefix + ".conv1", b.in, b.out, 3, true);
  add_linear(prefix + ".emb", embed_dim_, b.out);
  add_norm(prefix + ".norm2", "groupnorm", b.out, 0, 0);
  add_conv(prefix + ".conv2", b.out, b.out, 3, true);
  if (b.in != b.out) add_conv(prefix + ".skip", b.in, b.out, 1, true);
  if (b.attention) {
    if (b.out % options_.heads != 0) {
      throw Error("unet.heads: " + str(options_.heads) +
                  " heads do not divide an attended width of " + str(b.out) + " channels");
    }
    add_norm(prefix + ".attn.norm", "groupnorm", b.out, 0, 0);
    add_conv(prefix + ".attn.qkv", b.out, 3 * b.out, 1, true);
    add_conv(prefix + ".attn.proj", b.out, b.out, 1, true);
  }
}

// Residual block (DDPM's ResnetBlock without dropout): h = conv1(silu(gn1(x))) + W silu(emb),
// h = conv2(silu(gn2(h))), out = skip(x) + h, then optional self-attention.
at::Tensor UnetDenoiserNet::res_block(const Block& b, const at::Tensor& x, const at::Tensor& emb,
                                      TensorCursor& p) const {
  const int64_t groups = options_.groups;
  at::Tensor h = conv(at::silu(group_norm(x, groups, p)), p, true, 1, 1);
  h = h + linear(at::silu(emb), p).unsqueeze(-1).unsqueeze(-1);
  h = conv(at::silu(group_norm(h, groups, p)), p, true, 1, 1);
  at::Tensor out = (b.in != b.out ? conv(x, p, true, 1, 0) : x) + h;
  return b.attention ? attention(out, p) : out;
}

// Self-attention over the H*W positions (Vaswani et al. 2017; as in DDPM's AttnBlock with
// heads): x + proj(softmax(q^T k / sqrt(d)) v) on group-normalised input.
at::Tensor UnetDenoiserNet::attention(const at::Tensor& x, TensorCursor& p) const {
  const int64_t n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  const int64_t heads = options_.heads, d = c / heads;
  at::Tensor qkv =
      conv(group_norm(x, options_.groups, p), p, true, 1, 0).reshape({n, 3, heads, d, hw});
  at::Tensor q = qkv.select(1, 0), k = qkv.select(1, 1), v = qkv.select(1, 2);  // n, heads, d, hw
  at::Tensor weights =
      at::softmax(at::matmul(q.transpose(-1, -2), k) / std::sqrt(static_cast<double>(d)), -1);
  at::Tensor mixed = at::matmul(v, weights.transpose(-1, -2));  // n, heads, d, hw
  return x + conv(mixed.reshape(x.sizes()), p, true, 1, 0);
}

at::Tensor UnetDenoiserNet::forward(const at::Tensor& x, const at::Tensor& c_noise,
                                    const at::Tensor& params, const at::Tensor& labels) const {
  if (x.dim() != 4 || x.size(1) != channels_in_ || x.size(2) != height_ || x.size(3) != width_) {
    throw Error("unet: expected input N x " + str(channels_in_) + " x " + str(height_) + " x " +
                str(width_) + ", found " + c10::str(x.sizes()));
  }
  if (c_noise.dim() != 1 || c_noise.size(0) != x.size(0)) {
    throw Error("unet: expected one noise level per image (" + str(x.size(0)) + "), found " +
                c10::str(c_noise.sizes()));
  }
  TensorCursor p(params, param_specs());
  at::Tensor emb = linear(noise_embedding(c_noise.to(x.scalar_type()), options_.channels), p);
  emb = linear(at::silu(emb), p);
  if (num_classes_ > 0) {
    at::Tensor table = p.next();
    at::Tensor index = labels.defined()
                           ? labels.to(at::kLong)
                           : at::full({x.size(0)}, null_class(), x.options().dtype(at::kLong));
    if (index.dim() != 1 || index.size(0) != x.size(0) ||
        (index.numel() > 0 &&
         (index.min().item<int64_t>() < 0 || index.max().item<int64_t>() > num_classes_))) {
      throw Error("unet: labels must be one class id per image in [0, " + str(num_classes_) +
                  "] (" + str(num_classes_) + " = unconditional)");
    }
    emb = emb + table.index_select(0, index);
  } else if (labels.defined()) {
    throw Error("unet: labels given to an unconditional network (num_classes = 0)");
  }

  at::Tensor h = conv(x, p, true, 1, 1);
  std::vector<at::Tensor> skips = {h};
  for (const Block& b : down_) {
    h = b.kind == Block::Kind::kDown ? conv(h, p, true, 2, 1) : res_block(b, h, emb, p);
    skips.push_back(h);
  }
  for (const Block& b : mid_) h = res_block(b, h, emb, p);
  for (const Block& b : up_) {
    if (b.kind == Block::Kind::kUp) {
      h = conv(at::upsample_nearest2d(h, {h.size(2) * 2, h.size(3) * 2}), p, true, 1, 1);
      continue;
    }
    h = res_block(b, at::cat({h, skips.back()}, 1), emb, p);
    skips.pop_back();
  }
  h = at::silu(group_norm(h, options_.groups, p));
  return conv(h, p, true, 1, 1);
}

at::Tensor UnetDenoiserNet::forward(const at::Tensor& x, const at::Tensor& params,
                                    const models::ForwardArgs& args) const {
  if (x.dim() != 4 || x.size(1) != channels_in_ + 1) {
    throw Error("unet: expected input N x " + str(channels_in_ + 1) +
                " x H x W (c_noise as the last channel), found " + c10::str(x.sizes()));
  }
  at::Tensor c_noise = x.select(1, channels_in_).select(1, 0).select(1, 0);
  return forward(x.narrow(1, 0, channels_in_), c_noise, params, at::Tensor());
}

Network UnetDenoiserNet::network(const at::Tensor& params, const at::Tensor& labels) const {
  return [this, params, labels](const at::Tensor& input, const at::Tensor& c_noise) {
    return forward(input, c_noise, params, labels);
  };
}

}  // namespace distill::diffusion
