// `distill diffusion sample`: draws images with one of diffusion/'s samplers from a teacher
// denoiser. The only teacher so far is the exact one of a finite training set (no network to
// train), so this command measures samplers, not models.
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>

#include "diffusion/exact_denoisers.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/samplers.h"
#include "src/cli/command.h"
#include "src/cli/diffusion_distill_command.h"
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
  std::string model;  // teacher = file
  int64_t train_images = 2000;
  int64_t samples = 64;
  diffusion::SamplerOptions sampler;

  void visit(config::Visitor& v) {
    v.choice("teacher", teacher,
             "exact: the optimal denoiser of the first train_images training images (a softmax-"
             "weighted mean of them); its probability-flow ODE ends on training images; file: "
             "the diffusion model file `model` (e.g. a student of `distill diffusion distill`)",
             {"exact", "file"});
    v.field("model", model, "teacher = file: path of the diffusion model file");
    v.field("train_images", train_images,
            "exact teacher: how many training images (the first ones) form its finite set");
    v.field("samples", samples, "how many images to draw");
    v.section("sampler", sampler);
  }
};

struct DiffusionCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  DiffusionSampleSettings diffusion;
  DiffusionDistillSettings distill;  // `distill diffusion distill`
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("diffusion", diffusion);
    v.section("distill", distill);
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
  if ((s.teacher == "file") != !s.model.empty()) {
    throw Error("diffusion.model: set it exactly when diffusion.teacher = \"file\" (teacher '" +
                s.teacher + "', model '" + s.model + "')");
  }
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
  // A model file carries its item shape and the data's normalization: no dataset is read.
  std::optional<LoadedDiffusionModel> model;
  if (s.teacher == "file") model = load_diffusion_model(s.model);
  data::PreparedData prepared;
  if (!model) prepared = data::load_normalized(o.data);
  data::Normalization& norm = prepared.norm;
  at::Tensor train_images;
  RunContext run = start_run(o.run, config::dump(o));

  int64_t used = 0;
  std::shared_ptr<diffusion::FiniteSetDenoiser> exact;
  diffusion::Denoiser teacher;
  std::vector<int64_t> item_shape;
  if (model) {
    teacher = model->denoiser;
    item_shape = model->item_shape;
    norm.mean = model->mean.defined() ? model->mean : at::zeros({item_shape[0]});
    norm.std = model->std.defined() ? model->std : at::ones({item_shape[0]});
  } else {
    used = std::min(s.train_images, prepared.train.size());
    train_images = prepared.train.images.slice(0, 0, used).to(at::kFloat).contiguous();
    exact = std::make_shared<diffusion::FiniteSetDenoiser>(train_images.to(run.device));
    teacher = [exact](const at::Tensor& x, const at::Tensor& sigma) { return (*exact)(x, sigma); };
    item_shape.assign(train_images.sizes().begin() + 1, train_images.sizes().end());
  }
  std::cerr << "distill diffusion sample: " << s.samples << " images, " << s.sampler.name
            << " with " << s.sampler.steps << " steps (" << s.sampler.schedule.name
            << " schedule), "
            << (model ? "model " + s.model
                      : "exact teacher of " + std::to_string(used) + " training images")
            << "\n";

  at::Generator generator = make_generator(run.seed, 0xd1ff);  // "diff": the starting noise
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
      "distill --method progressive|consistency [--data dataset|none] [--resume] [...]";
  if (invocation.positional.size() != 1) throw Error(usage);
  const std::string& which = invocation.positional[0];
  if (which == "sample") return run_sample(o);
  if (which == "distill") {
    return run_diffusion_distill(o.run, o.data, o.diffusion.train_images, o.distill,
                                 config::dump(o), invocation.resume);
  }
  throw Error("unknown diffusion step '" + which + "' (expected sample or distill); " + usage);
}

}  // namespace

Command diffusion_command() {
  return make_command<DiffusionCommandOptions>(
      "diffusion", "diffusion sampling: draw images from a teacher denoiser (exact finite set)",
      "distill diffusion sample --sampler heun --steps 18 --samples 64 --out runs/diff",
      {{"teacher", "diffusion.teacher"},
       {"sampler", "diffusion.sampler.name"},
       {"steps", "diffusion.sampler.steps"},
       {"samples", "diffusion.samples"},
       {"train-images", "diffusion.train_images"},
       {"model", "diffusion.model"},
       {"method", "distill.method"},
       {"data", "distill.data"},
       {"teacher-file", "distill.teacher_file"}},
      run_diffusion);
}

}  // namespace distill::cli
