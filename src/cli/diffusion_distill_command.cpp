// `distill diffusion distill --method progressive|consistency`: distills a teacher denoiser into
// a few-step student and writes it as a diffusion model file (student.pt).
//
// INTERIM (branch pdcd): the teacher is the exact finite-set denoiser of the first
// diffusion.train_images training images or a model file written by this command; the student is
// the MLP denoiser on flattened images, saved with the minimal model file of
// diffusion/mlp_model_file.h. U-Net teachers/students arrive with branch unet's model file.
#include "src/cli/diffusion_distill_command.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "diffusion/exact_denoisers.h"
#include "diffusion/mlp_model_file.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/trajectory_points.h"
#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"

namespace distill::cli {
namespace {

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Everything the settings alone can get wrong, before any file is read.
void check_settings(const DiffusionDistillSettings& s) {
  if (s.method == "progressive") {
    diffusion::validate(s.run.progressive);
  } else {
    diffusion::validate(s.run.consistency);
  }
  if (s.teacher_file.empty() && s.fit_iterations < 1) {
    throw Error(
        "distill.fit_iterations: an exact teacher needs a fit of the student first "
        "(>= 1), found " +
        std::to_string(s.fit_iterations));
  }
  if (s.trajectory_steps < 1) {
    throw Error("distill.trajectory_steps must be >= 1, found " +
                std::to_string(s.trajectory_steps));
  }
}

}  // namespace

LoadedDiffusionModel load_diffusion_model(const std::string& path) {
  diffusion::MlpModelFile file = diffusion::load_mlp_model(path);
  auto net = std::make_shared<const diffusion::MlpDenoiserNet>(product(file.item_shape), file.mlp);
  LoadedDiffusionModel m;
  m.denoiser = diffusion::mlp_item_denoiser(net, file.params, file.item_shape, file.precondition);
  m.item_shape = file.item_shape;
  m.mean = file.mean;
  m.std = file.std;
  m.method = file.method;
  m.steps = file.steps;
  return m;
}

void run_diffusion_distill(const config::RunOptions& run_options, const data::DataOptions& data,
                           int64_t train_images, DiffusionDistillSettings& s,
                           const std::string& effective_config, bool resume) {
  check_settings(s);
  require_single_process("diffusion distill");
  const bool pd = s.method == "progressive";
  const bool data_free = s.data == "none";

  // The teacher: a model file (no dataset needed when data-free) or the exact finite set.
  diffusion::Denoiser teacher;
  std::vector<int64_t> item_shape;
  at::Tensor mean, std, clean;
  at::Tensor init;
  diffusion::MlpModelFile teacher_file;
  if (!s.teacher_file.empty()) {
    teacher_file = diffusion::load_mlp_model(s.teacher_file);
    if (teacher_file.mlp.hidden != s.mlp.hidden ||
        teacher_file.mlp.frequencies != s.mlp.frequencies) {
      throw Error("distill.teacher_file '" + s.teacher_file +
                  "': its MLP (hidden sizes, frequencies) differs from distill.mlp; the student "
                  "starts as a copy of the teacher, so they must match");
    }
    LoadedDiffusionModel loaded = load_diffusion_model(s.teacher_file);
    teacher = loaded.denoiser;
    item_shape = loaded.item_shape;
    mean = loaded.mean;
    std = loaded.std;
  }
  RunContext run = start_run(run_options, effective_config);
  if (s.teacher_file.empty() || !data_free) {
    auto [train_set, test_set, norm] = data::load_normalized(data);
    const int64_t used = std::min(train_images, train_set.size());
    at::Tensor images = train_set.images.slice(0, 0, used).to(at::kFloat).contiguous();
    std::vector<int64_t> shape(images.sizes().begin() + 1, images.sizes().end());
    if (!item_shape.empty() && shape != item_shape) {
      throw Error("distill.teacher_file '" + s.teacher_file + "' holds a model of items " +
                  c10::str(at::IntArrayRef(item_shape)) + ", the data has " +
                  c10::str(at::IntArrayRef(shape)));
    }
    item_shape = shape;
    mean = norm.mean;
    std = norm.std;
    clean = images;
    if (s.teacher_file.empty()) {
      auto exact = std::make_shared<diffusion::FiniteSetDenoiser>(images);
      teacher = [exact](const at::Tensor& x, const at::Tensor& sigma) {
        return (*exact)(x, sigma);
      };
      std::cerr << "distill diffusion distill: exact teacher of " << used << " training images\n";
    }
  }

  // The student: an MLP on flattened items, PD with the chosen prediction, CD a consistency
  // function.
  auto net = std::make_shared<const diffusion::MlpDenoiserNet>(product(item_shape), s.mlp);
  diffusion::PreconditionOptions pre;
  pre.output = pd ? s.prediction : "consistency";
  pre.sigma_data = s.sigma_data;
  pre.sigma_min = s.run.consistency.sigma_min;
  diffusion::StudentFactory student = [net, item_shape, pre](const at::Tensor& params) {
    return diffusion::mlp_item_denoiser(net, params, item_shape, pre);
  };
  diffusion::DistillationRunOptions options = s.run;
  options.method = s.method;
  if (!s.teacher_file.empty()) {
    init = teacher_file.params.to(at::kFloat);
    options.progressive.fit_iterations = 0;
    options.consistency_fit.iterations = 0;
  } else {
    at::Generator init_gen = make_generator(run.seed, 0x1417);  // "init"
    init = net->init_params(init_gen);
    options.progressive.fit_iterations = s.fit_iterations;
    options.consistency_fit.iterations = s.fit_iterations;
    options.consistency_fit.batch = s.run.consistency.batch;
    options.consistency_fit.optimizer = s.run.consistency.optimizer;
    options.consistency_fit.schedule.sigma_min = s.run.consistency.sigma_min;
    options.consistency_fit.schedule.sigma_max = s.run.consistency.sigma_max;
  }

  diffusion::TrainingData training;
  double sigma_max = 0;
  if (data_free) {
    // Trajectories start at EDM's sigma_max 80 at most: higher levels are noise anyway (see
    // trajectory_points.h).
    sigma_max = std::min(80.0, pd ? diffusion::schedule_sigma(options.progressive.schedule, 1.0)
                                  : options.consistency.sigma_max);
    training = diffusion::TrainingData::from_points(diffusion::teacher_trajectory_points(
        teacher, item_shape, at::kFloat, sigma_max, s.trajectory_steps));
  } else {
    training = diffusion::DataSource([clean](int64_t n, at::Generator& g) {
      return clean.index({at::randint(clean.size(0), {n}, g, at::kLong)});
    });
  }
  std::cerr << "distill diffusion distill: " << s.method << ", "
            << (data_free ? "data-free (teacher trajectories)" : "training images") << ", "
            << diffusion::run_iterations(options) << " steps, student of " << net->num_params()
            << " parameters\n";
  diffusion::DistillationState state = diffusion::run_distillation(
      teacher, student, init, training, options, run.seed, run.out, resume, run.progress);

  diffusion::MlpModelFile out;
  out.mlp = s.mlp;
  out.item_shape = item_shape;
  out.precondition = pre;
  out.params = pd ? state.params : state.target;  // CD samples with the EMA network
  out.method = s.method;
  out.steps = pd ? options.progressive.student_steps : 1;
  out.schedule = pd ? options.progressive.schedule.name : "karras";
  out.mean = mean;
  out.std = std;
  diffusion::save_mlp_model(run.out + "/student.pt", out);
  nlohmann::json results;
  results["method"] = s.method;
  results["data"] = s.data;
  results["teacher"] = s.teacher_file.empty() ? "exact" : s.teacher_file;
  results["student_steps"] = out.steps;
  results["iterations"] = diffusion::run_iterations(options);
  results["student"] = run.out + "/student.pt";
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "student: " << run.out << "/student.pt (" << s.method << ", " << out.steps << " step"
            << (out.steps == 1 ? "" : "s") << ")\n";
}

}  // namespace distill::cli
