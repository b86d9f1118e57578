// `distill diffusion sample` end to end on a tiny dataset: samples of the exact finite-set teacher
// are training images, the same seed gives the same file, and bad settings fail before any work.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "src/io/tensor_file.h"
#include "tests/support/cli_support.h"

namespace distill::testing {
namespace {

class DiffusionCli : public ::testing::Test {
 protected:
  void SetUp() override { data_ = write_tiny_dataset(dir_, 3, 2); }

  CommandResult sample(const std::string& flags, const std::string& out) {
    return distill_cli("diffusion sample " + tiny_flags(data_) + flags + " --out " +
                       dir_.file(out));
  }
  at::Tensor images_of(const std::string& out) {
    return io::get_tensor(io::load_dict(dir_.file(out + "/samples.pt")), "images", out);
  }

  TempDir dir_;
  std::string data_;
};

// The probability-flow ODE of a finite set's optimal denoiser ends on one of its points, so with
// a deterministic sampler at enough steps every sample is (numerically) a training image — one
// of the first train_images, not any of the other training images in the file.
TEST_F(DiffusionCli, DeterministicSamplersEndOnTheFirstTrainingImages) {
  const int64_t kUsed = 20;
  io::TensorDict data = io::load_dict(data_);
  at::Tensor raw = io::get_tensor(data, "images", data_).to(at::kDouble);  // all 60, in [0, 1]
  for (const std::string sampler : {"ddim", "heun"}) {
    const std::string out = "exact_" + sampler;
    CommandResult r = sample(
        "--sampler " + sampler + " --steps 32 --samples 12 --train-images " + std::to_string(kUsed),
        out);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    io::TensorDict dict = io::load_dict(dir_.file(out + "/samples.pt"));
    at::Tensor samples = io::get_tensor(dict, "images", out).to(at::kDouble);
    ASSERT_EQ(samples.sizes(), (std::vector<int64_t>{12, 1, 8, 8}));
    // Back to pixels with the run's own per-channel mean/std (an affine map cannot move a point
    // onto a training image that it is not).
    at::Tensor mean = io::get_tensor(dict, "mean", out).to(at::kDouble).view({1, -1, 1, 1});
    at::Tensor std = io::get_tensor(dict, "std", out).to(at::kDouble).view({1, -1, 1, 1});
    at::Tensor pixels = (samples * std + mean).reshape({12, -1});
    at::Tensor distances = at::cdist(pixels, raw.reshape({raw.size(0), -1}));  // 12 x 60
    auto [nearest, index] = distances.min(1);
    EXPECT_LT(nearest.max().item<double>(), 1e-3) << sampler;
    EXPECT_LT(index.max().item<int64_t>(), kUsed) << sampler;
    // Not one collapsed point: the 12 draws land on several training images.
    EXPECT_GE(std::get<0>(at::_unique(index)).numel(), 3) << sampler;
    EXPECT_EQ(dict.at("sampler").toStringRef(), sampler);
    EXPECT_EQ(dict.at("steps").toInt(), 32);

    std::ifstream in(dir_.file(out + "/results.json"));
    nlohmann::json results = nlohmann::json::parse(in);
    EXPECT_EQ(results["sampler"], sampler);
    EXPECT_EQ(results["samples"], 12);
    EXPECT_EQ(results["train_images"], kUsed);
    EXPECT_GT(results["images_per_second"].get<double>(), 0.0);
    EXPECT_TRUE(std::filesystem::exists(dir_.file(out + "/grid.png")));
    EXPECT_TRUE(std::filesystem::exists(dir_.file(out + "/config.toml")));
  }
  // Python reads the samples file with plain torch.load.
  if (testing::reference_python().empty()) GTEST_SKIP() << "no python3 with torch";
  CommandResult py = testing::run_command(
      testing::reference_python() + " -c \"import torch; d = torch.load('" +
      dir_.file("exact_heun/samples.pt") +
      "'); assert d['images'].shape == (12, 1, 8, 8) and d['sampler'] == 'heun', d; print('ok')\"");
  EXPECT_EQ(py.exit_code, 0) << py.output;
  EXPECT_TRUE(contains(py.output, "ok")) << py.output;
}

// ddpm draws fresh noise at every step: the seed alone must fix all of it.
TEST_F(DiffusionCli, SameSeedSameSamples) {
  const std::string flags = "--sampler ddpm --steps 8 --samples 6 --train-images 30 --seed ";
  ASSERT_EQ(sample(flags + "5", "a").exit_code, 0);
  ASSERT_EQ(sample(flags + "5", "b").exit_code, 0);
  ASSERT_EQ(sample(flags + "6", "c").exit_code, 0);
  EXPECT_TRUE(at::equal(images_of("a"), images_of("b")));
  EXPECT_FALSE(at::equal(images_of("a"), images_of("c")));
}

TEST_F(DiffusionCli, BadSettingsNameTheKeyAndDoNoWork) {
  struct Case {
    std::string flags, message;
  };
  const std::vector<Case> cases = {
      {"--sampler euler", "diffusion.sampler.name"},
      {"--teacher unet", "diffusion.teacher"},
      {"--steps 0", "diffusion.sampler.steps must be >= 1, found 0"},
      {"--set diffusion.sampler.schedule.sigma_min=5 --set diffusion.sampler.schedule.sigma_max=1",
       "diffusion.sampler.schedule: sigma_min and sigma_max must be finite with 0 < sigma_min < "
       "sigma_max"},
      {"--set diffusion.sampler.schedule.name=vp_cosine "
       "--set diffusion.sampler.schedule.logsnr_min=3 --set "
       "diffusion.sampler.schedule.logsnr_max=1",
       "diffusion.sampler.schedule: logsnr_min and logsnr_max"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string out = "bad" + std::to_string(i);
    CommandResult r = sample(cases[i].flags, out);
    EXPECT_EQ(r.exit_code, 2) << cases[i].flags << ": " << r.output;
    EXPECT_TRUE(contains(r.output, cases[i].message)) << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file(out))) << cases[i].flags;
  }
  CommandResult r = distill_cli("diffusion train " + tiny_flags(data_));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "unknown diffusion step 'train'")) << r.output;
}

}  // namespace
}  // namespace distill::testing
