// `distill diffusion train`: trains a denoiser (U-Net, or an MLP on flattened items) on a src/
// dataset and writes model.pt (diffusion/model_file.h).
// `distill diffusion sample`: draws images with one of diffusion/'s samplers from a teacher
// denoiser: a trained one (model.pt or its run folder) or the exact one of a finite training set
// (no network; it measures samplers, not models).
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "diffusion/denoiser_training.h"
#include "diffusion/exact_denoisers.h"
#include "diffusion/hybrid_sampler.h"
#include "diffusion/model_file.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/samplers.h"
#include "src/cli/command.h"
#include "src/cli/diffusion_distill_command.h"
#include "src/cli/diffusion_score_command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/data/dataset.h"
#include "src/data/zca.h"
#include "src/dist/process_group.h"
#include "src/io/atomic_file.h"
#include "src/io/image_grid.h"
#include "src/io/tensor_file.h"
#include "src/core/random_streams.h"

namespace distill::cli {
namespace {

// Hybrid sampling (diffusion/hybrid_sampler.h): a base model takes the first steps.
struct HybridSettings {
  std::string base;
  int64_t base_steps = 1;
  std::string base_sampler = "ddim";
  void visit(config::Visitor& v) {
    v.field("base", base,
            "sample: a model.pt (or run folder) that takes the first base_steps steps of the grid "
            "before the teacher (the distilled student) takes the rest, the \"distilling "
            "diversity\" recipe; empty = off");
    v.field("base_steps", base_steps,
            "sample, hybrid: steps the base model takes (1 .. steps - 1)");
    v.choice("base_sampler", base_sampler,
             "sample, hybrid: the base model's sampler (deterministic: it must end on a noisy "
             "state the student continues from)",
             {"ddim", "heun", "dpmpp_2m"});
  }
};

struct DiffusionSampleSettings {
  std::string teacher = "exact";
  std::string weights = "ema";
  std::string labels = "cycle";
  double guidance = 0;
  int64_t train_images = 2000;
  int64_t samples = 64;
  diffusion::SamplerOptions sampler;
  HybridSettings hybrid;
  // `distill diffusion train`
  diffusion::DenoiserArchOptions model;
  diffusion::DenoiserTrainOptions train;
  DiffusionScoreSettings score;  // `distill diffusion score` (diffusion_score_command.cpp)

  void visit(config::Visitor& v) {
    v.field("teacher", teacher,
            "sample: a model.pt of `distill diffusion train` or its run folder, or exact: the "
            "optimal denoiser of the first train_images training images (a softmax-weighted mean "
            "of them), whose probability-flow ODE ends on training images");
    v.choice("weights", weights, "sample, trained teacher: its ema or its raw params",
             {"ema", "params"});
    v.choice("labels", labels,
             "sample, class-conditional teacher: cycle (image i gets class i mod classes, so grid "
             "columns are classes when the column count is a multiple) or null (unconditional)",
             {"cycle", "null"});
    v.field("guidance", guidance,
            "sample, class-conditional teacher: classifier-free guidance weight w, D = D(x | c) + "
            "w (D(x | c) - D(x | null)) (Ho & Salimans 2022; 0 = off, doubles the evaluations)");
    v.rule(std::isfinite(guidance),
           "diffusion.guidance must be finite, found " + std::to_string(guidance));
    v.rule(guidance == 0 || labels != "null",
           "diffusion.guidance = " + std::to_string(guidance) +
               ": guidance needs class labels (diffusion.labels = cycle), found diffusion.labels = "
               "null");
    v.field("train_images", train_images,
            "exact teacher: how many training images (the first ones) form its finite set",
            config::Range::at_least(1));
    v.field("samples", samples, "how many images to draw", config::Range::at_least(1));
    v.section("sampler", sampler);
    v.section("hybrid", hybrid);
    v.rule(hybrid.base.empty() || (hybrid.base_steps >= 1 && hybrid.base_steps < sampler.steps),
           "diffusion.hybrid.base_steps must be in 1 .. diffusion.sampler.steps - 1 = " +
               std::to_string(sampler.steps - 1) +
               " (the teacher takes the remaining steps), found " +
               std::to_string(hybrid.base_steps));
    v.rule(hybrid.base.empty() || teacher != "exact",
           "diffusion.hybrid.base: hybrid sampling continues with a trained student "
           "(diffusion.teacher), found diffusion.teacher = exact");
    v.section("model", model);
    v.section("train", train);
    v.section("score", score);
  }
};

struct DiffusionCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  data::DataOptions data;
  DiffusionSampleSettings diffusion;
  DiffusionDistillSettings distill;  // `distill diffusion distill` (diffusion_distill_command.h)
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("data", data);
    v.section("diffusion", diffusion);
    v.section("distill", distill);
  }
};

// Samples back in pixel space: undo ZCA (if the data was whitened), then mean/std.
at::Tensor for_display(const at::Tensor& images, const data::Normalization& norm) {
  at::Tensor shown = images.detach().cpu();
  if (norm.zca && norm.zca->fitted()) shown = norm.zca->inverse(shown);
  return io::denormalize(shown, norm.mean, norm.std);
}

std::vector<int64_t> item_shape_of(const data::Dataset& set) {
  return {set.channels(), set.height(), set.width()};
}

void run_train(DiffusionCommandOptions& o, const Invocation& invocation) {
  const DiffusionSampleSettings& s = o.diffusion;
  diffusion::validate(s.train, "diffusion.train");
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  diffusion::DenoiserModel model;
  model.options = s.model;
  model.item_shape = item_shape_of(train_set);
  model.num_classes = s.train.class_conditional ? train_set.num_classes : 0;
  model.mean = norm.mean;
  model.std = norm.std;
  model.dataset = o.data.name;
  if (norm.zca) {
    throw Error("data.zca: diffusion train models the normalized images themselves; turn ZCA "
                "off (found data.zca = true)");
  }
  // Builds the network before the run folder exists, so a shape error leaves nothing behind.
  auto net = diffusion::make_denoiser_net(model.options, model.item_shape, model.num_classes);
  RunContext run = start_run(o.run, config::dump(o), invocation);
  if (run.rank == 0) {
    std::cerr << "distill diffusion train: " << model.options.arch << " (" << net->num_params()
              << " parameters, " << model.options.precondition.output << " output) on "
              << train_set.size() << " " << diffusion::shape_string(model.item_shape) << " images, "
              << s.train.steps << " steps of " << s.train.batch
              << (model.num_classes > 0 ? ", class-conditional" : "") << ", device "
              << run.device.str() << "\n";
  }
  const auto start = std::chrono::steady_clock::now();
  model = diffusion::train_denoiser(model, s.train, train_set.images.to(run.device),
                                    train_set.labels.to(run.device), run.seed, run.out,
                                    run.resume, run.progress, run.group);
  if (run.rank != 0) return;  // rank 0 writes the run folder
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json results;
  results["arch"] = model.options.arch;
  results["parameters"] = net->num_params();
  results["steps"] = model.steps;
  results["batch"] = s.train.batch;
  results["seconds_this_invocation"] = seconds;
  results["resumed"] = run.resume;
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "denoiser: " << run.out << "/model.pt (" << model.steps << " steps)\n";
  std::cout << "report: " << refresh_run_report(run.out) << "\n";
}

// "[0.2861, 0.5]" (per-channel statistics in messages).
std::string values_of(const at::Tensor& t) {
  at::Tensor v = t.to(at::kDouble).contiguous().cpu();
  std::string text = "[";
  for (int64_t i = 0; i < v.numel(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.4g", i ? ", " : "", v.data_ptr<double>()[i]);
    text += buf;
  }
  return text + "]";
}

// A trained denoiser named by setting `key` (diffusion.teacher, diffusion.hybrid.base), checked
// against the data's image shape.
struct TrainedTeacher {
  diffusion::DenoiserModel model;
  std::unique_ptr<models::Model> net;
  std::string path;
  at::Tensor weights;  // on the run's device, set by prepare_for_sampling
  at::Tensor labels;   // class-conditional models: one per sample row
  double guidance = 0;

  // The denoiser of sample rows [lo, hi) (class-conditional models see those rows' labels, and
  // with guidance also the null class).
  diffusion::Denoiser rows(int64_t lo, int64_t hi) const {
    if (!labels.defined()) return diffusion::make_denoiser(model.options, *net, weights);
    at::Tensor mine = labels.slice(0, lo, hi);
    diffusion::Denoiser conditional = diffusion::make_denoiser(model.options, *net, weights, mine);
    if (guidance == 0) return conditional;
    diffusion::Denoiser unconditional = diffusion::make_denoiser(
        model.options, *net, weights, at::full_like(mine, model.num_classes));
    const double w = guidance;
    return [conditional, unconditional, w](const at::Tensor& x, const at::Tensor& sigma) {
      at::Tensor c = conditional(x, sigma);
      return c + w * (c - unconditional(x, sigma));
    };
  }
};
TrainedTeacher load_teacher(const DiffusionSampleSettings& s, const std::string& value,
                            const std::string& key, const data::Dataset& train_set,
                            const data::Normalization& norm) {
  TrainedTeacher t;
  t.path = diffusion::resolve_model_path(value, key);
  t.model = diffusion::load_denoiser_model(t.path);
  if (t.model.item_shape != item_shape_of(train_set)) {
    throw Error(key + ": '" + t.path + "' holds a denoiser for " +
                diffusion::shape_string(t.model.item_shape) + " images, the data (data.path) has " +
                diffusion::shape_string(item_shape_of(train_set)) + " images");
  }
  // Samples live in the teacher's normalized space; shown with other statistics they would be
  // silently wrong.
  if (!t.model.mean.sizes().equals(norm.mean.sizes()) ||
      !at::allclose(t.model.mean, norm.mean.to(at::kFloat)) ||
      !at::allclose(t.model.std, norm.std.to(at::kFloat))) {
    throw Error(key + ": '" + t.path + "' was trained on data normalized with mean " +
                values_of(t.model.mean) + " and std " + values_of(t.model.std) +
                ", the data here (data.mean/data.std, data.name) uses mean " +
                values_of(norm.mean) + " and std " + values_of(norm.std));
  }
  if (s.weights == "ema" && !t.model.ema.defined()) {
    throw Error("diffusion.weights = ema: '" + t.path +
                "' has no EMA weights (trained with ema_decay = 0); use params");
  }
  t.net = diffusion::make_denoiser_net(t.model.options, t.model.item_shape, t.model.num_classes);
  return t;
}

// Puts the chosen weights on `device` and gives class-conditional models the rows' labels.
void prepare_for_sampling(TrainedTeacher& t, const DiffusionSampleSettings& s,
                          const at::Device& device) {
  t.weights = (s.weights == "ema" ? t.model.ema : t.model.params).to(device);
  if (t.model.num_classes > 0) {
    at::Tensor labels = s.labels == "cycle"
                            ? at::arange(s.samples, at::kLong).remainder(t.model.num_classes)
                            : at::full({s.samples}, t.model.num_classes, at::kLong);
    t.labels = labels.to(device);
    t.guidance = s.guidance;
  }
}

// The base of hybrid sampling integrates the ODE with its denoiser, and steers each row toward the
// same class as the student.
void check_hybrid_base(const TrainedTeacher& base, const TrainedTeacher& student) {
  if (base.model.options.precondition.output == "consistency") {
    throw Error("diffusion.hybrid.base: '" + base.path +
                "' is a consistency model (precondition.output = consistency); the base takes "
                "ODE steps and needs a denoiser (eps, x, v or edm output)");
  }
  if (base.model.num_classes > 0 && student.model.num_classes > 0 &&
      base.model.num_classes != student.model.num_classes) {
    throw Error("diffusion.hybrid.base: '" + base.path + "' is conditioned on " +
                std::to_string(base.model.num_classes) + " classes, the teacher '" + student.path +
                "' on " + std::to_string(student.model.num_classes));
  }
}

// Consistency sampling re-noises to every level after the first and evaluates f there: at or
// below the model's sigma_min (f is the identity there) that step only adds noise.
void check_consistency_levels(const std::vector<double>& sigmas, const TrainedTeacher& t) {
  if (t.model.options.precondition.output != "consistency") return;
  const double sigma_min = t.model.options.precondition.sigma_min;
  for (size_t i = 1; i + 1 < sigmas.size(); ++i) {
    if (!(sigmas[i] > sigma_min)) {
      throw Error("diffusion.sampler: consistency sampling re-noises to level " +
                  std::to_string(i) + " = " + std::to_string(sigmas[i]) +
                  ", not above the model's sigma_min = " + std::to_string(sigma_min) +
                  " (a schedule's grid ends there); give the levels in diffusion.sampler.sigmas");
    }
  }
}

void run_sample(DiffusionCommandOptions& o, const Invocation& invocation) {
  const DiffusionSampleSettings& s = o.diffusion;
  // The reader checked the declared ranges and rules; this is the grid they allow.
  const std::vector<double> sigmas = diffusion::sampler_sigmas(s.sampler, "diffusion.sampler");
  const int64_t world_size = dist::read_launch_env().world_size;
  if (world_size > 1 && (s.sampler.name == "ddpm" || s.sampler.name == "consistency")) {
    throw Error("diffusion.sampler.name = \"" + s.sampler.name +
                "\" runs as one process (WORLD_SIZE is " + std::to_string(world_size) +
                "): its per-step noise is drawn for the whole batch; the deterministic samplers "
                "(ddim, heun, dpmpp_2m) spread over processes");
  }
  auto [train_set, test_set, norm] = data::load_normalized(o.data);
  const bool exact_teacher = s.teacher == "exact";
  const bool hybrid = !s.hybrid.base.empty();
  TrainedTeacher trained, base;
  if (!exact_teacher) trained = load_teacher(s, s.teacher, "diffusion.teacher", train_set, norm);
  if (hybrid) base = load_teacher(s, s.hybrid.base, "diffusion.hybrid.base", train_set, norm);
  if (hybrid) check_hybrid_base(base, trained);
  if (s.sampler.name == "consistency" && !exact_teacher) {
    check_consistency_levels(sigmas, trained);
  }
  if (s.guidance != 0 && (exact_teacher || trained.model.num_classes == 0)) {
    throw Error("diffusion.guidance = " + std::to_string(s.guidance) + ": the teacher '" +
                (exact_teacher ? s.teacher : trained.path) +
                "' is unconditional (guidance needs one trained with "
                "diffusion.train.class_conditional = true)");
  }
  RunContext run = start_run(o.run, config::dump(o), invocation);

  const int64_t used = exact_teacher ? std::min(s.train_images, train_set.size()) : 0;
  std::unique_ptr<diffusion::FiniteSetDenoiser> exact;
  diffusion::Denoiser teacher;
  if (exact_teacher) {
    at::Tensor train_images = train_set.images.slice(0, 0, used).to(at::kFloat).contiguous();
    exact = std::make_unique<diffusion::FiniteSetDenoiser>(train_images.to(run.device));
    teacher = [&exact](const at::Tensor& x, const at::Tensor& sigma) { return (*exact)(x, sigma); };
    if (run.rank == 0)
      std::cerr << "distill diffusion sample: " << s.samples << " images, " << s.sampler.name
                << " with " << s.sampler.steps << " steps (" << s.sampler.schedule.name
                << " schedule), exact teacher of " << used << " training images\n";
  }
  if (hybrid) prepare_for_sampling(base, s, run.device);
  if (!exact_teacher) {
    prepare_for_sampling(trained, s, run.device);
    if (run.rank == 0)
      std::cerr << "distill diffusion sample: " << s.samples << " images, " << s.sampler.name
                << " with " << s.sampler.steps << " steps (" << s.sampler.schedule.name
                << " schedule), " << trained.model.options.arch << " teacher " << trained.path
                << " (" << s.weights << " weights, " << trained.model.steps << " steps)"
                << (hybrid ? ", its first " + std::to_string(s.hybrid.base_steps) + " step(s) by " +
                                 base.path + " (" + s.hybrid.base_sampler + ")"
                           : std::string())
                << "\n";
  }
  // Samples rows [lo, hi) of the run from their starting noise x.
  auto sample_rows = [&](at::Tensor x, int64_t lo, int64_t hi, at::Generator& gen) {
    diffusion::Denoiser denoiser = exact_teacher ? teacher : trained.rows(lo, hi);
    if (!hybrid) return diffusion::run_sampler(s.sampler.name, denoiser, x, sigmas, gen);
    return diffusion::sample_hybrid(base.rows(lo, hi), s.hybrid.base_sampler, denoiser,
                                    s.sampler.name, sigmas, s.hybrid.base_steps, x, gen);
  };

  at::Generator generator = make_generator(run.seed, streams::kSamplerNoise);
  const std::vector<int64_t> item_shape = item_shape_of(train_set);
  const auto start = std::chrono::steady_clock::now();
  at::Tensor images;
  {
    at::NoGradGuard no_grad;
    // The starting noise as diffusion::generate draws it.
    std::vector<int64_t> shape = {s.samples};
    shape.insert(shape.end(), item_shape.begin(), item_shape.end());
    at::Tensor start_noise = sigmas.front() * at::randn(shape, generator, at::kFloat);
    if (!run.group->distributed()) {
      images = sample_rows(start_noise.to(run.device), 0, s.samples, generator).cpu();
    } else {
      // Every rank draws the whole starting noise (the single-process draw) and integrates its
      // contiguous rows; the deterministic samplers treat rows independently, so the gathered
      // images are the single-process ones (up to float summation order in batched layers).
      const int64_t per_rank = (s.samples + run.world_size - 1) / run.world_size;
      const int64_t lo = std::min(s.samples, run.rank * per_rank);
      const int64_t hi = std::min(s.samples, lo + per_rank);
      shape[0] = per_rank;
      at::Tensor mine = at::zeros(shape, at::kFloat);
      if (hi > lo) {
        mine.narrow(0, 0, hi - lo)
            .copy_(
                sample_rows(start_noise.slice(0, lo, hi).to(run.device), lo, hi, generator).cpu());
      }
      images = at::cat(run.group->all_gather(mine), 0).narrow(0, 0, s.samples).contiguous();
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (run.rank != 0) return;

  io::TensorDict dict = io::make_dict();
  dict.insert("images", images);  // normalized like the data (data.* settings)
  dict.insert("mean", norm.mean);
  dict.insert("std", norm.std);
  dict.insert("teacher", exact_teacher ? s.teacher : trained.path);
  if (exact_teacher) dict.insert("train_images", used);
  if (!exact_teacher) dict.insert("weights", s.weights);
  if (s.guidance != 0) dict.insert("guidance", s.guidance);
  dict.insert("sampler", s.sampler.name);
  dict.insert("steps", s.sampler.steps);
  dict.insert("schedule", s.sampler.schedule.name);
  dict.insert("sigmas", at::tensor(sigmas, at::kDouble));
  if (hybrid) {
    dict.insert("hybrid_base", base.path);
    dict.insert("hybrid_base_steps", s.hybrid.base_steps);
    dict.insert("hybrid_base_sampler", s.hybrid.base_sampler);
  }
  dict.insert("seed", static_cast<int64_t>(run.seed));
  io::save_dict(run.out + "/samples.pt", dict);

  const int64_t columns =
      static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(s.samples))));
  io::save_image_grid(run.out + "/grid.png", for_display(images, norm), columns);

  nlohmann::json results;
  results["teacher"] = exact_teacher ? s.teacher : trained.path;
  if (exact_teacher) results["train_images"] = used;
  if (!exact_teacher) results["weights"] = s.weights;
  if (s.guidance != 0) results["guidance"] = s.guidance;
  results["sampler"] = s.sampler.name;
  results["steps"] = s.sampler.steps;
  results["schedule"] = s.sampler.schedule.name;
  results["sigmas"] = sigmas;
  if (hybrid) {
    results["hybrid_base"] = base.path;
    results["hybrid_base_steps"] = s.hybrid.base_steps;
    results["hybrid_base_sampler"] = s.hybrid.base_sampler;
  }
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
      "usage: distill diffusion train|sample|distill [--arch unet|mlp] [--train-steps N] "
      "[--teacher RUN_DIR|model.pt|exact] [--sampler NAME] [--steps N] [--method "
      "progressive|consistency|scm] [--data dataset|none] [...] | distill diffusion score "
      "RUN_DIR|samples.pt --classifier MODEL.pt [...]";
  if (invocation.positional.empty()) throw Error(usage);
  const std::string& which = invocation.positional[0];
  if (which == "score" || which == "sample") refuse_resume(invocation, "diffusion " + which);
  if (which == "score" && invocation.positional.size() <= 2) {
    if (invocation.positional.size() == 2) o.diffusion.score.samples = invocation.positional[1];
    return run_diffusion_score(o.run, o.data, o.diffusion.score, config::dump(o), invocation);
  }
  if (invocation.positional.size() != 1) throw Error(usage);
  if (which == "train") return run_train(o, invocation);
  if (which == "sample") return run_sample(o, invocation);
  if (which == "distill") {
    return run_diffusion_distill(o.run, o.data, o.diffusion.teacher, o.diffusion.weights,
                                 o.diffusion.train_images, o.diffusion.model, o.distill,
                                 config::dump(o), invocation);
  }
  throw Error("unknown diffusion step '" + which + "' (expected train, sample, distill or score); " +
              usage);
}

}  // namespace

Command diffusion_command() {
  Command command = make_command<DiffusionCommandOptions>(
      "diffusion",
      "diffusion models: train a denoiser (U-Net/MLP), draw images from it or from the exact "
      "denoiser of a finite set, score samples (FCD, precision/recall, coverage)",
      "distill diffusion train --train-steps 2000 --out runs/unet && distill diffusion sample "
      "--teacher runs/unet --sampler heun --steps 18 --samples 64 --out runs/unet_samples",
      {{"teacher", "diffusion.teacher"},
       {"arch", "diffusion.model.arch"},
       {"train-steps", "diffusion.train.steps"},
       {"batch", "diffusion.train.batch"},
       {"weights", "diffusion.weights"},
       {"sampler", "diffusion.sampler.name"},
       {"steps", "diffusion.sampler.steps"},
       {"samples", "diffusion.samples"},
       {"train-images", "diffusion.train_images"},
       {"classifier", "diffusion.score.classifier"},
       {"k", "diffusion.score.k"},
       {"method", "distill.method"},
       {"data", "distill.data"}},
      run_diffusion);
  command.takes_positional = true;
  return command;
}

}  // namespace distill::cli
