// `distill diffusion sample`: draws images with one of diffusion/'s samplers from a teacher
// denoiser. The only teacher so far is the exact one of a finite training set (no network to
// train), so this command measures samplers, not models.
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "diffusion/exact_denoisers.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/samplers.h"
#include "src/cli/command.h"
#include "src/cli/diffusion_score_command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/data/zca.h"
#include "src/io/atomic_file.h"
#include "src/io/image_grid.h"
#include "src/io/tensor_file.h"

namespace distill::cli {
namespace {

struct DiffusionSampleSettings {
  std::string teacher = "exact";
  int64_t train_images = 2000;
  int64_t samples = 64;
  diffusion::SamplerOptions sampler;
  DiffusionScoreSettings score;  // `distill diffusion score` (diffusion_score_command.cpp)

  void visit(config::Visitor& v) {
    v.choice("teacher", teacher,
             "exact: the optimal denoiser of the first train_images training images (a softmax-"
             "weighted mean of them); its probability-flow ODE ends on training images",
             {"exact"});
    v.field("train_images", train_images,
            "exact teacher: how many training images (the first ones) form its finite set");
    v.field("samples", samples, "how many images to draw");
    v.section("sampler", sampler);
    v.section("score", score);
  }
};

struct DiffusionCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  DiffusionSampleSettings diffusion;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("diffusion", diffusion);
  }
};

// Everything the settings alone can get wrong, so a bad value fails before data is read.
void check_sample_settings(const DiffusionSampleSettings& s) {
  if (s.sampler.steps < 1) {
    throw Error("diffusion.sampler.steps must be >= 1, found " + std::to_string(s.sampler.steps));
  }
  if (s.samples < 1) {
    throw Error("diffusion.samples must be >= 1, found " + std::to_string(s.samples));
  }
  if (s.train_images < 1) {
    throw Error("diffusion.train_images must be >= 1, found " + std::to_string(s.train_images));
  }
  diffusion::validate(s.sampler.schedule, "diffusion.sampler.schedule");
}

// Samples back in pixel space: undo ZCA (if the data was whitened), then mean/std.
at::Tensor for_display(const at::Tensor& images, const data::Normalization& norm) {
  at::Tensor shown = images.detach().cpu();
  if (norm.zca && norm.zca->fitted()) shown = norm.zca->inverse(shown);
  return io::denormalize(shown, norm.mean, norm.std);
}

void run_sample(DiffusionCommandOptions& o) {
  const DiffusionSampleSettings& s = o.diffusion;
  check_sample_settings(s);
  require_single_process("diffusion sample");
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  RunContext run = start_run(o.run, config::dump(o));

  const int64_t used = std::min(s.train_images, train_set.size());
  at::Tensor train_images = train_set.images.slice(0, 0, used).to(at::kFloat).contiguous();
  diffusion::FiniteSetDenoiser exact(train_images.to(run.device));
  diffusion::Denoiser teacher = [&exact](const at::Tensor& x, const at::Tensor& sigma) {
    return exact(x, sigma);
  };
  std::cerr << "distill diffusion sample: " << s.samples << " images, " << s.sampler.name
            << " with " << s.sampler.steps << " steps (" << s.sampler.schedule.name
            << " schedule), exact teacher of " << used << " training images\n";

  at::Generator generator = make_generator(run.seed, 0xd1ff);  // "diff": the starting noise
  const std::vector<int64_t> item_shape(train_images.sizes().begin() + 1,
                                        train_images.sizes().end());
  const auto start = std::chrono::steady_clock::now();
  at::Tensor images =
      diffusion::generate(s.sampler, teacher, item_shape, s.samples, generator, at::kFloat).cpu();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  io::TensorDict dict = io::make_dict();
  dict.insert("images", images);  // normalized like the data (data.* settings)
  dict.insert("mean", norm.mean);
  dict.insert("std", norm.std);
  dict.insert("teacher", s.teacher);
  dict.insert("train_images", used);
  dict.insert("sampler", s.sampler.name);
  dict.insert("steps", s.sampler.steps);
  dict.insert("schedule", s.sampler.schedule.name);
  dict.insert("seed", static_cast<int64_t>(run.seed));
  io::save_dict(run.out + "/samples.pt", dict);

  const int64_t columns =
      static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(s.samples))));
  io::save_image_grid(run.out + "/grid.png", for_display(images, norm), columns);

  nlohmann::json results;
  results["teacher"] = s.teacher;
  results["train_images"] = used;
  results["sampler"] = s.sampler.name;
  results["steps"] = s.sampler.steps;
  results["schedule"] = s.sampler.schedule.name;
  results["samples"] = s.samples;
  results["seconds"] = seconds;
  results["images_per_second"] = seconds > 0 ? s.samples / seconds : 0.0;
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "samples: " << run.out << "/samples.pt (" << s.samples << " images, "
            << results["images_per_second"].get<double>() << " images/s), grid: " << run.out
            << "/grid.png\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

void run_diffusion(DiffusionCommandOptions& o, const Invocation& invocation) {
  const std::string usage =
      "usage: distill diffusion sample [--sampler NAME] [--steps N] [...] | distill diffusion "
      "score RUN_DIR|samples.pt --classifier MODEL.pt [...]";
  if (invocation.positional.empty()) throw Error(usage);
  const std::string& which = invocation.positional[0];
  if (which == "score" && invocation.positional.size() <= 2) {
    if (invocation.positional.size() == 2) o.diffusion.score.samples = invocation.positional[1];
    return run_diffusion_score(o.run, o.data, o.diffusion.score, config::dump(o));
  }
  if (invocation.positional.size() != 1) throw Error(usage);
  if (which == "sample") return run_sample(o);
  throw Error("unknown diffusion step '" + which + "' (sample and score exist so far); " + usage);
}

}  // namespace

Command diffusion_command() {
  return make_command<DiffusionCommandOptions>(
      "diffusion",
      "diffusion sampling: draw images from a teacher denoiser (exact finite set); score them "
      "(FCD, precision/recall, coverage)",
      "distill diffusion sample --sampler heun --steps 18 --samples 64 --out runs/diff",
      {{"teacher", "diffusion.teacher"},
       {"sampler", "diffusion.sampler.name"},
       {"steps", "diffusion.sampler.steps"},
       {"samples", "diffusion.samples"},
       {"train-images", "diffusion.train_images"},
       {"classifier", "diffusion.score.classifier"},
       {"k", "diffusion.score.k"}},
      run_diffusion);
}

}  // namespace distill::cli
