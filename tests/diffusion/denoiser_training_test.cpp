// Denoiser training and model files: the loss weights against the networks' own targets, a model
// file round trip that rebuilds the same denoiser, and an MLP that learns a 2-D mixture's
// denoiser beyond what any linear denoiser can do (checked against the exact one).
#include "diffusion/denoiser_training.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "diffusion/model_file.h"
#include "diffusion/parameterization.h"
#include "src/core/runtime.h"
#include "tests/diffusion/mixture_fixture.h"
#include "tests/support/test_support.h"

namespace distill::diffusion {
namespace {

// weighting = auto makes w(s) ||D - x0||^2 the plain squared error of the network's own target:
// eps (VP eq.: z = alpha x0 + sigma eps), v = alpha eps - sigma x0 (PD sec. 4), EDM's
// F_target = (x0 - c_skip x) / c_out (EDM eq. 7-8), and x0 itself.
TEST(DenoiserTraining, AutoWeightIsTheMseOfTheNetworkOutput) {
  at::Generator gen = make_generator(11);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x0 = at::randn({5, 3}, gen, f64);
  at::Tensor n = at::randn({5, 3}, gen, f64);
  at::Tensor s = at::tensor({0.01, 0.3, 1.0, 4.0, 60.0}, f64);
  at::Tensor x = x0 + per_sample(s, x0) * n;
  at::Tensor f = at::randn({5, 3}, gen, f64);  // whatever the network outputs
  Network fixed = [&](const at::Tensor&, const at::Tensor&) { return f; };
  at::Tensor alpha = per_sample((1 + s * s).rsqrt(), x0), sigma = per_sample(s, x0) * alpha;
  for (const std::string output : {"eps", "v", "x", "edm"}) {
    PreconditionOptions o;
    o.output = output;
    o.sigma_data = 0.7;
    at::Tensor target;
    if (output == "edm") {
      Preconditioning c = edm_preconditioning(s, o.sigma_data);
      target = (x0 - per_sample(c.c_skip, x0) * x) / per_sample(c.c_out, x0);
    } else {
      target = prediction_from_x_eps(parse_prediction(output, "test"), x0, n, alpha, sigma);
    }
    at::Tensor weighted = denoiser_loss_weight("auto", output, s, o.sigma_data) *
                          (precondition(fixed, o)(x, s) - x0).pow(2).sum(1);
    at::Tensor direct = (f - target).pow(2).sum(1);
    EXPECT_TRUE(at::allclose(weighted, direct, 1e-9, 1e-9)) << output << "\n" << weighted << direct;
  }
  EXPECT_EQ(testing::error_of([&] { denoiser_loss_weight("cubic", "edm", s, 1.0); }),
            "weighting: unknown 'cubic' (expected auto, edm, snr, truncated_snr, snr_plus_one or "
            "constant)");
}

TEST(DenoiserTraining, ModelFileRebuildsTheSameDenoiser) {
  testing::TempDir dir;
  DenoiserModel m;
  m.options.unet.channels = 8;
  m.options.unet.channel_mult = {1, 2};
  m.options.unet.groups = 4;
  m.options.precondition.output = "v";
  m.item_shape = {1, 8, 8};
  m.num_classes = 3;
  m.mean = at::tensor({0.25f});
  m.std = at::tensor({0.5f});
  m.dataset = "tiny";
  auto net = make_denoiser_net(m.options, m.item_shape, m.num_classes);
  at::Generator gen = make_generator(2);
  m.params = net->init_params(gen);
  m.ema = net->init_params(gen);
  m.steps = 17;
  save_denoiser_model(dir.file("model.pt"), m);
  DenoiserModel loaded = load_denoiser_model(dir.file("model.pt"));
  EXPECT_EQ(loaded.options.precondition.output, "v");
  EXPECT_EQ(loaded.options.unet.channel_mult, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(loaded.item_shape, m.item_shape);
  EXPECT_EQ(loaded.num_classes, 3);
  EXPECT_EQ(loaded.dataset, "tiny");
  EXPECT_EQ(loaded.steps, 17);
  EXPECT_TRUE(at::equal(loaded.params, m.params));
  EXPECT_TRUE(at::equal(loaded.ema, m.ema));
  EXPECT_TRUE(at::equal(loaded.mean, m.mean));
  auto rebuilt = make_denoiser_net(loaded.options, loaded.item_shape, loaded.num_classes);
  at::Tensor x = at::randn({2, 1, 8, 8}, gen), s = at::tensor({0.3f, 2.0f});
  at::Tensor labels = at::tensor({int64_t{0}, int64_t{3}});
  EXPECT_TRUE(at::equal(make_denoiser(m.options, *net, m.ema, labels)(x, s),
                        make_denoiser(loaded.options, *rebuilt, loaded.ema, labels)(x, s)));
  EXPECT_EQ(resolve_model_path(dir.path(), "k"), dir.file("model.pt"));
  EXPECT_EQ(testing::error_of([&] { require_output(loaded, {"v", "x"}, "m.pt", "ok"); }),
            "no error");
  EXPECT_EQ(testing::error_of([&] {
              require_output(loaded, {"eps", "edm"}, "m.pt", "progressive distillation");
            }),
            "'m.pt': the denoiser predicts 'v' (precondition.output), progressive distillation "
            "needs one of {eps, edm}");
  EXPECT_EQ(testing::error_of([&] { load_denoiser_model(dir.file("none.pt")); }),
            "denoiser model file '" + dir.file("none.pt") + "' does not exist");
  EXPECT_EQ(testing::error_of([&] {
              make_denoiser_net(DenoiserArchOptions{[] {
                                  DenoiserArchOptions o;
                                  o.arch = "mlp";
                                  return o;
                                }()},
                                {2}, 3);
            }),
            "denoiser arch mlp: has no class conditioning, found num_classes = 3 (use arch unet "
            "or train unconditionally)");
}

// The best linear denoiser of any distribution with mean mu and covariance C is
// mu + C (C + s^2 I)^-1 (x - mu); a trained MLP must beat it clearly on a 3-component mixture,
// measured against the mixture's exact denoiser.
TEST(DenoiserTraining, MlpLearnsTheMixtureDenoiserBeyondLinear) {
  testing::TempDir dir;
  GaussianMixture mixture = fixture::three_component_mixture();
  at::Generator gen = make_generator(5);
  at::Tensor data = mixture.sample(4096, gen).to(at::kFloat);
  DenoiserModel m;
  m.options.arch = "mlp";
  m.options.mlp.hidden = {64, 64};
  m.options.precondition.sigma_data = 0.8;
  m.item_shape = {2};
  DenoiserTrainOptions o;
  o.steps = 1500;
  o.batch = 256;
  o.optimizer.lr = 3e-3;
  o.lr_schedule.name = "cosine";
  o.ema_decay = 0.0;
  o.log_every = 500;
  o.checkpoint_every = 0;
  m = train_denoiser(m, o, data, at::zeros({4096}, at::kLong), 9, dir.path(), false, false);
  EXPECT_FALSE(m.ema.defined());
  auto net = make_denoiser_net(m.options, m.item_shape, 0);
  Denoiser learned = make_denoiser(m.options, *net, m.params);
  at::Tensor mu = mixture.mean(), cov = mixture.covariance();
  for (double level : {0.1, 0.3, 1.0}) {
    at::Generator g = make_generator(6, static_cast<uint64_t>(level * 10));
    at::Tensor clean = mixture.sample(2000, g);
    at::Tensor x = clean + level * at::randn(clean.sizes(), g, clean.options());
    at::Tensor s = at::full({2000}, level, at::kDouble);
    at::Tensor exact = mixture(x, s);
    at::Tensor gain = at::matmul(cov, at::inverse(cov + level * level * at::eye(2, at::kDouble)));
    at::Tensor linear = mu + at::matmul(x - mu, gain.t());
    at::NoGradGuard no_grad;
    at::Tensor ours = learned(x.to(at::kFloat), s.to(at::kFloat)).to(at::kDouble);
    const double ours_error = (ours - exact).pow(2).sum(1).mean().item<double>();
    const double linear_error = (linear - exact).pow(2).sum(1).mean().item<double>();
    std::cout << "[ sigma " << level << " ] mean |D - D_exact|^2: mlp " << ours_error
              << ", best linear " << linear_error << "\n";
    EXPECT_LT(ours_error, 0.25 * linear_error) << "sigma " << level;
  }
}

}  // namespace
}  // namespace distill::diffusion
