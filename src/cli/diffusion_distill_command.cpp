// `distill diffusion distill --method progressive|consistency|scm`: distills a teacher denoiser (a
// model file of `distill diffusion train`, or the exact denoiser of the first train_images
// training images) into a few-step student, written as a model file (model.pt) that `distill
// diffusion sample --teacher RUN_DIR` reads.
#include "src/cli/diffusion_distill_command.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "diffusion/exact_denoisers.h"
#include "diffusion/noise_schedule.h"
#include "diffusion/trajectory_points.h"
#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/core/random_streams.h"

namespace distill::cli {
namespace {

// What the declared ranges and rules cannot say (it depends on diffusion.teacher), before any
// file is read.
void check_settings(const DiffusionDistillSettings& s, bool exact_teacher) {
  if (exact_teacher && s.fit_iterations < 1) {
    throw Error(
        "distill.fit_iterations: an exact teacher needs a fit of the student first "
        "(>= 1), found " +
        std::to_string(s.fit_iterations));
  }
  if (s.method == "scm" && s.data == "none" && s.run.scm.objective == "training") {
    throw Error("distill.scm.objective = training (sCT) needs training images for its velocity "
                "cos t z - sin t x0, but distill.data = none; use objective = distillation "
                "(TBCM on the teacher's trajectories) or data = dataset");
  }
}

}  // namespace

void run_diffusion_distill(const config::RunOptions& run_options, const data::DataOptions& data,
                           const std::string& teacher_setting, const std::string& weights,
                           int64_t train_images, const diffusion::DenoiserArchOptions& student_arch,
                           DiffusionDistillSettings& s, const std::string& effective_config,
                           const Invocation& invocation) {
  const bool exact_teacher = teacher_setting == "exact";
  check_settings(s, exact_teacher);
  const bool pd = s.method == "progressive";
  const bool data_free = s.data == "none";

  // The teacher: a trained model file, or the exact finite set of training images.
  diffusion::DenoiserModel student_model;  // what model.pt will hold
  std::unique_ptr<models::Model> teacher_net;
  diffusion::Denoiser teacher;
  at::Tensor init;
  std::string teacher_path;
  if (!exact_teacher) {
    teacher_path = diffusion::resolve_model_path(teacher_setting, "diffusion.teacher");
    diffusion::DenoiserModel t = diffusion::load_denoiser_model(teacher_path);
    // A consistency model's output is the end of the ODE, not the denoised mean that the PD
    // target's DDIM steps and CD's Heun step integrate with.
    if (t.options.precondition.output == "consistency") {
      throw Error("diffusion.teacher: '" + teacher_path +
                  "' is a consistency model (precondition.output = consistency); " + s.method +
                  " distillation needs a denoiser teacher (eps, x, v or edm output)");
    }
    if (weights == "ema" && !t.ema.defined()) {
      throw Error("diffusion.weights = ema: '" + teacher_path + "' has no EMA weights; use params");
    }
    const at::Tensor w = weights == "ema" ? t.ema : t.params;
    teacher_net = diffusion::make_denoiser_net(t.options, t.item_shape, t.num_classes);
    // Unconditional (null-class) teacher for a conditional network.
    teacher = diffusion::make_denoiser(t.options, *teacher_net, w);
    student_model = t;
    student_model.params = at::Tensor();
    student_model.ema = at::Tensor();
    init = w.clone();  // the student starts as the teacher (PD and CD papers)
  } else {
    student_model.options = student_arch;
  }
  data::PreparedData prepared;
  at::Tensor clean;
  if (exact_teacher || !data_free) {
    prepared = data::load_normalized(data);
    const int64_t used =
        exact_teacher ? std::min(train_images, prepared.train.size()) : prepared.train.size();
    clean = prepared.train.images.slice(0, 0, used).to(at::kFloat).contiguous();
    std::vector<int64_t> shape(clean.sizes().begin() + 1, clean.sizes().end());
    if (!exact_teacher && shape != student_model.item_shape) {
      throw Error("diffusion.teacher: '" + teacher_path + "' holds a denoiser for " +
                  diffusion::shape_string(student_model.item_shape) +
                  " images, the data (data.path) has " + diffusion::shape_string(shape));
    }
    if (exact_teacher) {
      student_model.item_shape = shape;
      student_model.mean = prepared.norm.mean.to(at::kFloat);
      student_model.std = prepared.norm.std.to(at::kFloat);
      student_model.dataset = data.name;
      auto finite = std::make_shared<diffusion::FiniteSetDenoiser>(clean);
      teacher = [finite](const at::Tensor& x, const at::Tensor& sigma) {
        return (*finite)(x, sigma);
      };
      std::cerr << "distill diffusion distill: exact teacher of " << used << " training images\n";
    }
  }
  RunContext run = start_run(run_options, effective_config, invocation);

  // The student: the teacher's network (or diffusion.model) as a denoiser; CD's and sCM's is a
  // consistency function (skip/out scalings with f(x, sigma_min) = x; sCM's TrigFlow form is that
  // function at sigma = sigma_d tan t, diffusion/scm_distillation.h).
  const bool scm = s.method == "scm";
  if (!pd) {
    student_model.options.precondition.output = "consistency";
    student_model.options.precondition.sigma_min = s.run.consistency.sigma_min;
  }
  auto net = diffusion::make_denoiser_net(student_model.options, student_model.item_shape,
                                          student_model.num_classes);
  if (!init.defined()) {
    at::Generator init_gen = make_generator(run.seed, streams::kStudentInit);
    init = net->init_params(init_gen);
  }
  const diffusion::DenoiserArchOptions arch = student_model.options;
  const models::Model* student_net = net.get();
  diffusion::StudentFactory student = [arch, student_net](const at::Tensor& params) {
    return diffusion::make_denoiser(arch, *student_net, params);
  };
  diffusion::DistillationRunOptions options = s.run;
  options.method = s.method;
  options.progressive.fit_iterations = exact_teacher ? s.fit_iterations : 0;
  options.consistency_fit.iterations = exact_teacher ? s.fit_iterations : 0;
  options.consistency_fit.batch = scm ? s.run.scm.batch : s.run.consistency.batch;
  options.consistency_fit.optimizer = scm ? s.run.scm.optimizer : s.run.consistency.optimizer;
  options.consistency_fit.schedule.sigma_min = s.run.consistency.sigma_min;
  options.consistency_fit.schedule.sigma_max = s.run.consistency.sigma_max;

  diffusion::TrainingData training;
  if (data_free) {
    // Trajectories start at EDM's sigma 80 at most: higher levels are noise at this data scale
    // (trajectory_points.h).
    const double sigma_max =
        std::min(80.0, pd    ? diffusion::schedule_sigma(options.progressive.schedule, 1.0)
                       : scm ? options.scm.sigma_max
                             : options.consistency.sigma_max);
    training = diffusion::TrainingData::from_points(diffusion::teacher_trajectory_points(
        teacher, student_model.item_shape, at::kFloat, sigma_max, s.trajectory_steps));
  } else {
    training = diffusion::DataSource([clean](int64_t n, at::Generator& g) {
      return clean.index({at::randint(clean.size(0), {n}, g, at::kLong)});
    });
  }
  if (run.rank == 0) {
    std::cerr << "distill diffusion distill: " << s.method << " from "
              << (exact_teacher ? std::string("the exact teacher") : teacher_path) << ", "
              << (data_free ? "data-free (teacher trajectories)" : "training images") << ", "
              << diffusion::run_iterations(options) << " steps, " << student_model.options.arch
              << " student of " << net->num_params() << " parameters\n";
  }
  diffusion::DistillationState state =
      diffusion::run_distillation(teacher, student, init, training, options, run.seed, run.out,
                                  run.resume, run.progress, run.group);
  if (run.rank != 0) return;  // rank 0 writes the run folder

  // PD has no EMA: its student is stored as both params and ema, so sample's default weights
  // (ema) are the student; CD's ema is its EMA target network, the one the paper samples from.
  student_model.params = state.params.detach().clone();
  student_model.ema = pd ? state.params.detach().clone() : state.target.detach().clone();
  student_model.steps = diffusion::run_iterations(options);
  diffusion::save_denoiser_model(run.out + "/model.pt", student_model);
  const int64_t steps = pd ? options.progressive.student_steps : 1;
  nlohmann::json results;
  results["method"] = s.method;
  results["data"] = s.data;
  results["teacher"] = exact_teacher ? "exact" : teacher_path;
  results["student_steps"] = steps;
  results["schedule"] = pd ? options.progressive.schedule.name : scm ? "trigflow" : "karras";
  if (scm) results["objective"] = options.scm.objective;
  results["iterations"] = diffusion::run_iterations(options);
  results["model"] = run.out + "/model.pt";
  io::write_file_atomic(run.out + "/results.json", results.dump(2) + "\n");
  std::cout << "student: " << run.out << "/model.pt (" << s.method << ", sample it with " << steps
            << " step" << (steps == 1 ? "" : "s")
            << (pd ? " of ddim on the " + options.progressive.schedule.name + " schedule"
                   : " (consistency)")
            << ": distill diffusion sample --teacher " << run.out << ")\n";
}

}  // namespace distill::cli
