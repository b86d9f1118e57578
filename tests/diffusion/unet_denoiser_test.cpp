// The U-Net denoiser: parity with an independent torch.nn module (tests/python/unet_reference.py)
// on the same flat parameters, gradients against central finite differences in double precision,
// and shape errors that name the setting.
#include "diffusion/unet_denoiser.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "diffusion/parameterization.h"
#include "src/core/runtime.h"
#include "src/io/tensor_file.h"
#include "tests/support/test_support.h"

namespace distill::diffusion {
namespace {

struct UnetCase {
  std::string name;
  int64_t channels, size, num_classes;
  UnetDenoiserOptions options;
};

UnetDenoiserOptions options_of(int64_t channels, std::vector<int64_t> mult, int64_t res_blocks,
                               int64_t attention, int64_t groups, int64_t heads) {
  UnetDenoiserOptions o;
  o.channels = channels;
  o.channel_mult = std::move(mult);
  o.res_blocks = res_blocks;
  o.attention_max_size = attention;
  o.groups = groups;
  o.heads = heads;
  return o;
}

// 28x28 grey (28 -> 14 -> 7, attention at 7x7) unconditional, and 32x32 RGB class-conditional
// with two residual blocks per level and two heads (attention at 8x8), labels including the null
// class.
std::vector<UnetCase> parity_cases() {
  return {{"fashion_28", 1, 28, 0, options_of(16, {1, 2, 2}, 1, 7, 4, 1)},
          {"cifar_32_conditional", 3, 32, 10, options_of(8, {1, 2, 2}, 2, 8, 4, 2)}};
}

TEST(UnetDenoiser, MatchesPythonReference) {
  DISTILL_REQUIRE_PYTHON();
  testing::TempDir dir;
  nlohmann::json manifest = nlohmann::json::array();
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> ours;  // double and float outputs
  uint64_t index = 0;
  for (const UnetCase& c : parity_cases()) {
    UnetDenoiserNet net(c.channels, c.size, c.size, c.num_classes, c.options);
    at::Generator gen = make_generator(7, 77, index++);
    at::Tensor params = net.init_params(gen);
    // Non-default norm affines and biases: a swapped weight/bias would otherwise go unseen.
    params = params + 0.05 * at::randn(params.sizes(), gen);
    at::Tensor x = at::randn({3, c.channels, c.size, c.size}, gen);
    at::Tensor c_noise = at::tensor({-1.5, 0.1, 1.0});
    at::Tensor labels;
    if (c.num_classes > 0) labels = at::tensor({int64_t{0}, int64_t{7}, c.num_classes});
    io::TensorDict dict = io::make_dict();
    dict.insert("x", x);
    dict.insert("c_noise", c_noise);
    dict.insert("params", params);
    if (labels.defined()) dict.insert("labels", labels);
    io::save_dict(dir.file(c.name + ".pt"), dict);
    nlohmann::json specs = nlohmann::json::array();
    for (const auto& spec : net.param_specs()) specs.push_back({spec.name, spec.shape});
    const UnetDenoiserOptions& o = c.options;
    manifest.push_back({{"name", c.name},
                        {"channels", c.channels},
                        {"size", c.size},
                        {"num_classes", c.num_classes},
                        {"params", specs},
                        {"options",
                         {{"channels", o.channels},
                          {"channel_mult", o.channel_mult},
                          {"res_blocks", o.res_blocks},
                          {"attention_max_size", o.attention_max_size},
                          {"groups", o.groups},
                          {"heads", o.heads}}}});
    at::Tensor out64 =
        net.forward(x.to(at::kDouble), c_noise.to(at::kDouble), params.to(at::kDouble), labels);
    at::Tensor out32 = net.forward(x, c_noise, params, labels);
    ours[c.name] = {out64, out32};
  }
  std::ofstream(dir.file("cases.json")) << manifest.dump();
  testing::CommandResult r = testing::run_python_script("unet_reference.py", {dir.path()});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const UnetCase& c : parity_cases()) {
    at::Tensor theirs = io::get_tensor(io::load_dict(dir.file(c.name + "_ref.pt")), "out", c.name);
    const auto& [out64, out32] = ours.at(c.name);
    ASSERT_EQ(theirs.sizes(), out64.sizes()) << c.name;
    const double scale = theirs.abs().max().item<double>();
    EXPECT_GT(scale, 0.1) << c.name;  // a real output, not zeros
    EXPECT_LT((out64 - theirs).abs().max().item<double>(), 1e-10 * std::max(1.0, scale)) << c.name;
    EXPECT_LT((out32.to(at::kDouble) - theirs).abs().max().item<double>(),
              1e-5 * std::max(1.0, scale))
        << c.name;
  }
}

// d/dtheta and d/dx of <w, F(x, c, theta)> against central differences, in double precision, on
// a tiny conditional configuration that still has every kind of block (skip convolutions,
// attention with two heads, down- and up-sampling, label embedding).
TEST(UnetDenoiser, GradientsMatchFiniteDifferences) {
  UnetDenoiserNet net(2, 8, 8, 3, options_of(4, {1, 2}, 1, 4, 2, 2));
  at::Generator gen = make_generator(3, 5);
  at::Tensor params =
      (net.init_params(gen) + 0.05 * at::randn({net.num_params()}, gen)).to(at::kDouble);
  at::Tensor x = at::randn({2, 2, 8, 8}, gen).to(at::kDouble);
  at::Tensor c_noise = at::tensor({-0.7, 0.4}, at::kDouble);
  at::Tensor labels = at::tensor({int64_t{1}, int64_t{3}});
  at::Tensor w = at::randn({2, 2, 8, 8}, gen).to(at::kDouble);
  auto objective = [&](const at::Tensor& xx, const at::Tensor& p) {
    return (net.forward(xx, c_noise, p, labels) * w).sum();
  };
  at::Tensor p_leaf = params.clone().requires_grad_(true);
  at::Tensor x_leaf = x.clone().requires_grad_(true);
  auto grads = torch::autograd::grad({objective(x_leaf, p_leaf)}, {p_leaf, x_leaf});
  const double h = 1e-6;
  // Every 7th parameter (covers every tensor of this small net) and every 5th input pixel.
  int64_t checked = 0;
  for (int64_t i = 0; i < params.numel(); i += 7, ++checked) {
    at::Tensor plus = params.clone(), minus = params.clone();
    plus[i] += h;
    minus[i] -= h;
    const double fd =
        (objective(x, plus).item<double>() - objective(x, minus).item<double>()) / (2 * h);
    ASSERT_NEAR(grads[0][i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd)))
        << "parameter " << i;
  }
  at::Tensor flat_x = x.reshape({-1});
  for (int64_t i = 0; i < flat_x.numel(); i += 5) {
    at::Tensor plus = flat_x.clone(), minus = flat_x.clone();
    plus[i] += h;
    minus[i] -= h;
    const double fd = (objective(plus.view(x.sizes()), params).item<double>() -
                       objective(minus.view(x.sizes()), params).item<double>()) /
                      (2 * h);
    ASSERT_NEAR(grads[1].reshape({-1})[i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd)))
        << "pixel " << i;
  }
  EXPECT_GT(checked, 100);
}

// The models::Model form (c_noise as the last channel, null class) equals the direct one, and
// the network plugs into precondition() as a Denoiser of the image's shape.
TEST(UnetDenoiser, ModelFormAndPreconditionedDenoiser) {
  UnetDenoiserNet net(1, 28, 28, 10, options_of(8, {1, 2, 2}, 1, 7, 4, 1));
  at::Generator gen = make_generator(1);
  at::Tensor params = net.init_params(gen);
  at::Tensor x = at::randn({2, 1, 28, 28}, gen);
  at::Tensor c_noise = at::tensor({0.3f, -0.2f});
  at::Tensor packed = at::cat({x, c_noise.view({2, 1, 1, 1}).expand({2, 1, 28, 28})}, 1);
  EXPECT_TRUE(at::allclose(net.forward(packed, params),
                           net.forward(x, c_noise, params, at::full({2}, 10, at::kLong))));
  PreconditionOptions edm;
  Denoiser d = precondition(net.network(params, at::tensor({int64_t{2}, int64_t{10}})), edm);
  at::Tensor out = d(x, at::tensor({0.5f, 3.0f}));
  EXPECT_EQ(out.sizes(), x.sizes());
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST(UnetDenoiser, BadShapesNameTheSetting) {
  EXPECT_EQ(testing::error_of([] {
              UnetDenoiserNet(1, 28, 28, 0, options_of(8, {1, 2, 2, 2}, 1, 7, 4, 1));
            }),
            "unet.channel_mult: 4 resolutions halve the image 3 times, so its side must be "
            "divisible by 8; found 28x28 (28x28 and 32x32 allow up to 3)");
  EXPECT_EQ(testing::error_of([] {
              UnetDenoiserNet(1, 28, 28, 0, options_of(6, {1, 2}, 1, 7, 4, 1));
            }),
            "settings: unet: every width channels * channel_mult must be >= 1 and divisible by "
            "groups = 4, found 6");
  EXPECT_EQ(testing::error_of([] {
              UnetDenoiserNet(1, 28, 28, 0, options_of(8, {1, 2}, 1, 14, 4, 3));
            }),
            "unet.heads: 3 heads do not divide an attended width of 16 channels");
  UnetDenoiserNet net(1, 28, 28, 0, options_of(8, {1, 2}, 1, 14, 4, 1));
  at::Generator gen = make_generator(1);
  at::Tensor params = net.init_params(gen);
  EXPECT_EQ(testing::error_of([&] {
              net.forward(at::zeros({1, 1, 32, 32}), at::zeros({1}), params, at::Tensor());
            }),
            "unet: expected input N x 1 x 28 x 28, found [1, 1, 32, 32]");
}

}  // namespace
}  // namespace distill::diffusion
