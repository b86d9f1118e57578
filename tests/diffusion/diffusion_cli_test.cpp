// `distill diffusion sample` and `train` end to end on a tiny dataset: samples of the exact
// finite-set teacher are training images, the same seed gives the same file, a resumed training
// run equals a straight one bit for bit, a trained U-Net samples deterministically per seed, and
// bad settings or teacher files fail before any work with a message naming the file/key.
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
  // `sample` with flags that must fail: exit 2, the message, and no run folder left behind.
  struct Case {
    std::string flags, message;
  };
  void expect_bad_samples(const std::vector<Case>& cases) {
    for (size_t i = 0; i < cases.size(); ++i) {
      const std::string out = "bad" + std::to_string(i);
      CommandResult r = sample(cases[i].flags, out);
      EXPECT_EQ(r.exit_code, 2) << cases[i].flags << ": " << r.output;
      EXPECT_TRUE(contains(r.output, cases[i].message)) << r.output;
      EXPECT_FALSE(std::filesystem::exists(dir_.file(out))) << cases[i].flags;
    }
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
  DISTILL_REQUIRE_PYTHON();
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
  const std::vector<Case> cases = {
      {"--sampler euler", "diffusion.sampler.name"},
      {"--teacher unet", "diffusion.teacher"},
      {"--steps 0", "key 'diffusion.sampler.steps' must be >= 1, found 0"},
      {"--set diffusion.sampler.schedule.sigma_min=5 --set diffusion.sampler.schedule.sigma_max=1",
       "settings: schedule karras: sigma_min and sigma_max must be finite with sigma_min < "
       "sigma_max (an increasing range) and rho finite, found sigma_min = 5.000000, sigma_max = "
       "1.000000"},
      {"--set diffusion.sampler.schedule.sigma_min=0",
       "--set diffusion.sampler.schedule.sigma_min=0: key 'diffusion.sampler.schedule.sigma_min' "
       "must be > 0, found 0"},
      {"--set diffusion.sampler.schedule.name=vp_cosine "
       "--set diffusion.sampler.schedule.logsnr_min=3 --set "
       "diffusion.sampler.schedule.logsnr_max=1",
       "settings: schedule vp_cosine: logsnr_min and logsnr_max"},
  };
  expect_bad_samples(cases);
  CommandResult r = distill_cli("diffusion distil " + tiny_flags(data_));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "unknown diffusion step 'distil'")) << r.output;
}

// A U-Net small enough for seconds: 8 channels, 8x8 -> 4x4, attention at 4x4.
const std::string kTinyUnet =
    "--set diffusion.model.unet.channels=8 --set diffusion.model.unet.channel_mult=[1,2] "
    "--set diffusion.model.unet.groups=4 --set diffusion.model.unet.attention_max_size=4 "
    "--set diffusion.train.log_every=1 --batch 8 ";

class DiffusionTrainCli : public DiffusionCli {
 protected:
  CommandResult train(const std::string& flags, const std::string& out) {
    return distill_cli("diffusion train " + tiny_flags(data_) + kTinyUnet + flags + " --out " +
                       dir_.file(out));
  }
};

TEST_F(DiffusionTrainCli, ResumeEqualsStraightRunAndPythonReadsTheModel) {
  ASSERT_EQ(train("--train-steps 6 --seed 3", "straight").exit_code, 0);
  CommandResult first = train("--train-steps 3 --seed 3", "split");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  CommandResult resumed = train("--train-steps 6 --seed 3 --resume", "split");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  for (const std::string file : {"model.pt", "checkpoint.pt"}) {
    io::TensorDict a = io::load_dict(dir_.file("straight/" + file));
    io::TensorDict b = io::load_dict(dir_.file("split/" + file));
    EXPECT_EQ(a.at("steps").toInt(), 6);
    EXPECT_EQ(b.at("steps").toInt(), 6);
    for (const std::string key : {"params", "ema"}) {
      EXPECT_TRUE(at::equal(io::get_tensor(a, key, file), io::get_tensor(b, key, file)))
          << file << " " << key;
    }
  }
  // Adam's moments too: the resumed run continues the same optimisation.
  io::TensorDict a = io::load_dict(dir_.file("straight/checkpoint.pt"));
  io::TensorDict b = io::load_dict(dir_.file("split/checkpoint.pt"));
  int64_t compared = 0;
  for (const auto& entry : a) {
    const std::string key = entry.key().toStringRef();
    if (key.rfind("optimizer.", 0) != 0 || !entry.value().isTensor()) continue;
    EXPECT_TRUE(at::equal(entry.value().toTensor(), io::get_tensor(b, key, "split"))) << key;
    ++compared;
  }
  EXPECT_GT(compared, 0);
  // One metrics line per step, none duplicated by the resume; a different seed trains otherwise.
  std::ifstream metrics(dir_.file("split/metrics.jsonl"));
  std::vector<int64_t> steps;
  for (std::string line; std::getline(metrics, line);) {
    steps.push_back(nlohmann::json::parse(line)["step"].get<int64_t>());
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  ASSERT_EQ(train("--train-steps 6 --seed 4", "other").exit_code, 0);
  EXPECT_FALSE(at::equal(
      io::get_tensor(io::load_dict(dir_.file("other/model.pt")), "params", "other"),
      io::get_tensor(io::load_dict(dir_.file("straight/model.pt")), "params", "straight")));

  DISTILL_REQUIRE_PYTHON();
  CommandResult py = testing::run_command(
      testing::reference_python() + " -c \"import torch; d = torch.load('" +
      dir_.file("straight/model.pt") +
      "'); assert d['arch'] == 'unet' and d['prediction'] == 'edm' and d['item_shape'].tolist() "
      "== [1, 8, 8] and d['steps'] == 6 and d['ema'].shape == d['params'].shape, d.keys(); "
      "print('ok')\"");
  EXPECT_EQ(py.exit_code, 0) << py.output;
  EXPECT_TRUE(contains(py.output, "ok")) << py.output;
}

TEST_F(DiffusionTrainCli, SamplesFromTheTrainedTeacherPerSeed) {
  ASSERT_EQ(train("--train-steps 4", "unet").exit_code, 0);
  ASSERT_EQ(train("--train-steps 4 --set diffusion.train.class_conditional=true", "cond")
                .exit_code,
            0);
  const std::string flags = "--sampler ddpm --steps 4 --samples 6 --seed ";
  const std::string run_dir = " --teacher " + dir_.file("unet");
  ASSERT_EQ(sample(flags + "5" + run_dir, "a").exit_code, 0);
  // The model file itself works as well as its run folder.
  ASSERT_EQ(sample(flags + "5 --teacher " + dir_.file("unet/model.pt"), "b").exit_code, 0);
  ASSERT_EQ(sample(flags + "6" + run_dir, "c").exit_code, 0);
  ASSERT_EQ(sample(flags + "5 --weights params" + run_dir, "d").exit_code, 0);
  at::Tensor a = images_of("a");
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{6, 1, 8, 8}));
  EXPECT_TRUE(at::isfinite(a).all().item<bool>());
  EXPECT_TRUE(at::equal(a, images_of("b")));
  EXPECT_FALSE(at::equal(a, images_of("c")));
  EXPECT_FALSE(at::equal(a, images_of("d")));  // EMA and raw weights differ after 4 steps
  io::TensorDict dict = io::load_dict(dir_.file("a/samples.pt"));
  EXPECT_EQ(dict.at("teacher").toStringRef(), dir_.file("unet") + "/model.pt");
  EXPECT_EQ(dict.at("weights").toStringRef(), "ema");
  // Class-conditional: cycled labels and the null class give different images from one noise.
  CommandResult cycled = sample("--sampler heun --steps 3 --samples 6 --teacher " +
                                dir_.file("cond"), "cycle");
  ASSERT_EQ(cycled.exit_code, 0) << cycled.output;
  ASSERT_EQ(sample("--sampler heun --steps 3 --samples 6 --set diffusion.labels=null --teacher " +
                       dir_.file("cond"), "null")
                .exit_code,
            0);
  EXPECT_FALSE(at::equal(images_of("cycle"), images_of("null")));
}

// Hybrid sampling: the base model's DDIM steps then the teacher's on one grid. With the teacher
// as its own base the run is the plain one (DDIM is stepwise, so only a grid that does not join
// at the switch could change it); with another base it is neither model's own run.
TEST_F(DiffusionTrainCli, HybridSamplingSwitchesModelsOnOneGrid) {
  ASSERT_EQ(train("--train-steps 4 --seed 1", "a").exit_code, 0);
  ASSERT_EQ(train("--train-steps 4 --seed 2", "b").exit_code, 0);
  const std::string flags = "--sampler ddim --steps 3 --samples 5 --seed 4 --teacher ";
  ASSERT_EQ(sample(flags + dir_.file("a"), "plain_a").exit_code, 0);
  ASSERT_EQ(sample(flags + dir_.file("b"), "plain_b").exit_code, 0);
  const std::string base = " --set diffusion.hybrid.base=";
  ASSERT_EQ(sample(flags + dir_.file("b") + base + dir_.file("b"), "self").exit_code, 0);
  CommandResult r = sample(
      flags + dir_.file("b") + base + dir_.file("a") + " --set diffusion.hybrid.base_steps=2",
      "mixed");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(at::equal(images_of("self"), images_of("plain_b")));
  at::Tensor mixed = images_of("mixed");
  EXPECT_FALSE(at::allclose(mixed, images_of("plain_a")));
  EXPECT_FALSE(at::allclose(mixed, images_of("plain_b")));
  io::TensorDict dict = io::load_dict(dir_.file("mixed/samples.pt"));
  EXPECT_EQ(dict.at("hybrid_base").toStringRef(), dir_.file("a") + "/model.pt");
  EXPECT_EQ(dict.at("hybrid_base_steps").toInt(), 2);
  // Multistep consistency sampling: one step is DDIM's single step; a second level re-noises.
  const std::string cm = "--samples 5 --seed 4 --teacher " + dir_.file("a");
  ASSERT_EQ(sample(cm + " --sampler ddim --steps 1", "ddim1").exit_code, 0);
  ASSERT_EQ(sample(cm + " --sampler consistency --steps 1", "cm1").exit_code, 0);
  r = sample(cm + " --sampler consistency --steps 2 --set diffusion.sampler.sigmas=[80,0.5]",
             "cm2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(at::equal(images_of("ddim1"), images_of("cm1")));
  EXPECT_FALSE(at::allclose(images_of("cm1"), images_of("cm2")));

  const std::string b = "--samples 5 --teacher " + dir_.file("b");
  const std::vector<Case> cases = {
      {b + " --steps 3 --set diffusion.hybrid.base_steps=3" + base + dir_.file("a"),
       "diffusion.hybrid.base_steps must be in 1 .. diffusion.sampler.steps - 1 = 2 (the teacher "
       "takes the remaining steps), found 3"},
      {b + " --steps 3" + base + dir_.file("missing"),
       "diffusion.hybrid.base: no file or run folder '" + dir_.file("missing") + "'"},
      {"--teacher exact --steps 3" + base + dir_.file("a"),
       "diffusion.hybrid.base: hybrid sampling continues with a trained student"},
      {b + " --steps 3 --set diffusion.hybrid.base_sampler=consistency" + base + dir_.file("a"),
       "diffusion.hybrid.base_sampler"},
      {b + " --sampler consistency --steps 3 --set diffusion.sampler.sigmas=[80,0.5]",
       "diffusion.sampler.sigmas has 2 levels, one per step, but diffusion.sampler.steps is 3"},
  };
  expect_bad_samples(cases);
}

// Classifier-free guidance: one DDIM step to sigma = 0 returns D itself, so the guided sample is
// (1 + w) D(x | c) - w D(x | null), computable from two unguided runs on the same noise.
TEST_F(DiffusionTrainCli, GuidanceCombinesTheConditionalAndNullDenoisers) {
  ASSERT_EQ(train("--train-steps 4 --set diffusion.train.class_conditional=true", "cond").exit_code,
            0);
  ASSERT_EQ(train("--train-steps 2", "plain").exit_code, 0);
  const std::string flags =
      "--sampler ddim --steps 1 --samples 6 --seed 2 --teacher " + dir_.file("cond");
  ASSERT_EQ(sample(flags, "c").exit_code, 0);
  ASSERT_EQ(sample(flags + " --set diffusion.labels=null", "null").exit_code, 0);
  CommandResult r = sample(flags + " --set diffusion.guidance=2", "guided");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  at::Tensor expected = 3 * images_of("c") - 2 * images_of("null");
  EXPECT_TRUE(at::allclose(images_of("guided"), expected, 1e-4, 1e-4));
  EXPECT_FALSE(at::allclose(images_of("guided"), images_of("c"), 1e-3, 1e-3));
  const std::vector<Case> cases = {
      {"--samples 6 --set diffusion.guidance=2 --teacher " + dir_.file("plain"),
       "diffusion.guidance = 2.000000: the teacher '" + dir_.file("plain") +
           "/model.pt' is unconditional"},
      {flags + " --set diffusion.guidance=2 --set diffusion.labels=null",
       "guidance needs class labels (diffusion.labels = cycle), found diffusion.labels = null"},
  };
  expect_bad_samples(cases);
}

// A copy of `from` with one key replaced (a teacher file gone wrong).
void write_altered(const std::string& from, const std::string& to, const std::string& key,
                   const c10::IValue& value) {
  io::TensorDict dict = io::load_dict(from);
  dict.insert_or_assign(key, value);
  io::save_dict(to, dict);
}

TEST_F(DiffusionTrainCli, BadTeacherFilesNameTheFileAndKey) {
  ASSERT_EQ(train("--train-steps 2", "unet").exit_code, 0);
  const std::string model = dir_.file("unet/model.pt");
  // The same tiny data at 16x16 (a U-Net for 8x8 images cannot denoise it).
  io::TensorDict big = io::make_dict();
  big.insert("images", at::rand({20, 1, 16, 16}));
  big.insert("labels", at::arange(20, at::kLong).remainder(3));
  io::save_dict(dir_.file("big.pt"), big);
  std::string denoiser = io::load_dict(model).at("denoiser").toStringRef();
  const std::string edm = "output = 'edm'";
  denoiser.replace(denoiser.find(edm), edm.size(), "output = 'w'");
  write_altered(model, dir_.file("bad_prediction.pt"), "denoiser", denoiser);
  write_altered(model, dir_.file("bad_params.pt"), "params", at::zeros({10}));
  write_altered(model, dir_.file("other_norm.pt"), "mean", at::full({1}, 0.25));

  const std::vector<Case> cases = {
      {"--teacher " + dir_.file("missing.pt"),
       "diffusion.teacher: no file or run folder '" + dir_.file("missing.pt") + "'"},
      {"--teacher " + dir_.path(), "diffusion.teacher: run folder '" + dir_.path() +
                                       "' has no model.pt"},
      {"--teacher " + data_,
       "'" + data_ + "' is not a denoiser model file of `distill diffusion train`: missing key "
       "'format'"},
      {"--teacher " + model + " --set data.path=" + dir_.file("big.pt"),
       "diffusion.teacher: '" + model + "' holds a denoiser for 1x8x8 images, the data "
       "(data.path) has 1x16x16 images"},
      {"--teacher " + dir_.file("bad_prediction.pt"),
       dir_.file("bad_prediction.pt") + " [key 'denoiser']:8: key 'precondition.output' expects "
       "one of {eps, x, v, edm, consistency}, found \"w\""},
      {"--teacher " + dir_.file("bad_params.pt"),
       "'" + dir_.file("bad_params.pt") + "': key 'params' holds 10 values, its unet for 1x8x8 "
       "items has "},
      {"--teacher " + dir_.file("other_norm.pt"),
       "diffusion.teacher: '" + dir_.file("other_norm.pt") + "' was trained on data normalized "
       "with mean [0.25]"},
  };
  expect_bad_samples(cases);
  // Resuming with another network is refused rather than silently mixing runs.
  CommandResult r = train("--train-steps 3 --resume --set diffusion.model.unet.channels=16", "unet");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "other settings than this run's; resume with the settings the "
                                 "run was started with"))
      << r.output;
  // Settings errors of train fail before any work.
  r = train("--train-steps 0", "zero");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "key 'diffusion.train.steps' must be >= 1, found 0")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("zero")));
  r = train("--train-steps 2 --set diffusion.model.unet.channel_mult=[1,2,2,2,2]", "deep");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.output, "unet.channel_mult: 5 resolutions halve the image 4 times, so "
                                 "its side must be divisible by 16; found 8x8"))
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("deep")));
}

}  // namespace
}  // namespace distill::testing
