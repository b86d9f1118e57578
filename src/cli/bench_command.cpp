// `distill bench train`: training/evaluation throughput of the core against Python PyTorch on the
// same workload in the same invocation (ratios, since the machine is shared and noisy).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/models/model.h"
#include "src/train/optimizer.h"
#include "src/train/trainer.h"

namespace distill::cli {
namespace {

struct BenchOptions {
  models::ModelOptions model;
  int64_t batch = 256;
  int64_t steps = 20;
  int64_t warmup = 3;
  int64_t channels = 1;
  int64_t image_size = 28;
  int64_t classes = 10;
  std::string python = "/usr/bin/python3";
  std::string python_script = "experiments/bench/train_step.py";
  void visit(config::Visitor& v) {
    v.section("model", model);
    v.field("batch", batch, "images per training step");
    v.field("steps", steps, "timed steps");
    v.field("warmup", warmup, "untimed steps first");
    v.field("channels", channels, "image channels");
    v.field("image_size", image_size, "image side");
    v.field("classes", classes, "number of classes");
    v.field("python", python, "Python with torch for the reference run (empty = skip)");
    v.field("python_script", python_script, "the reference workload script");
  }
};

struct BenchCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  BenchOptions bench;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("bench", bench);
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

nlohmann::json bench_cpp(const BenchOptions& b, c10::Device device) {
  auto model = models::make_model(b.model, b.channels, b.image_size, b.classes);
  at::Generator gen = make_generator(0);
  at::Tensor params = model->init_params(gen).to(device);
  at::Tensor buffers = model->init_buffers().to(device);
  at::Tensor x = at::randn({b.batch, b.channels, b.image_size, b.image_size}, gen).to(device);
  at::Tensor y = at::randint(b.classes, {b.batch}, gen).to(device);
  train::OptimizerOptions sgd;
  auto optimizer = train::Optimizer::make(sgd);
  auto train_step = [&] {
    at::Tensor p = params.detach().requires_grad_(true);
    models::ForwardArgs args;
    args.train = true;
    args.buffers = buffers;
    at::Tensor loss = train::classification_loss(model->forward(x, p, args), y);
    at::Tensor grad = torch::autograd::grad({loss}, {p})[0];
    at::NoGradGuard no_grad;
    optimizer->step(params, grad, 0.01);
  };
  for (int64_t i = 0; i < b.warmup; ++i) train_step();
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < b.steps; ++i) train_step();
  double train_s = seconds_since(start);
  models::ForwardArgs eval_args;
  eval_args.buffers = buffers;
  {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < b.warmup; ++i) model->forward(x, params, eval_args);
  }
  start = std::chrono::steady_clock::now();
  {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < b.steps; ++i) model->forward(x, params, eval_args).sum().item<float>();
  }
  double eval_s = seconds_since(start);
  double images = static_cast<double>(b.batch * b.steps);
  return {{"train_images_per_s", images / train_s},
          {"eval_images_per_s", images / eval_s},
          {"peak_rss_mib", peak_rss_mib()}};
}

// `environment` prefixes the command (e.g. glibc malloc tunables for a fairer reference).
nlohmann::json bench_python(const BenchOptions& b, int64_t threads, const std::string& environment) {
  if (b.python.empty()) return nullptr;
  std::string command = environment + " " + b.python + " " + b.python_script + " --arch " + b.model.arch +
                        " --width " + std::to_string(b.model.width) + " --depth " +
                        std::to_string(b.model.depth) + " --batch " + std::to_string(b.batch) +
                        " --steps " + std::to_string(b.steps) + " --warmup " +
                        std::to_string(b.warmup) + " --channels " + std::to_string(b.channels) +
                        " --image-size " + std::to_string(b.image_size) + " --classes " +
                        std::to_string(b.classes) + " --threads " + std::to_string(threads);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw RuntimeFailure("cannot start the Python reference: " + command);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  int status = ::pclose(pipe);
  if (status != 0) {
    throw RuntimeFailure("the Python reference failed (exit " + std::to_string(status) + "): " +
                         command + "\n" + output);
  }
  auto last_line = output.substr(output.rfind('{'));
  return nlohmann::json::parse(last_line);
}

void run_bench(BenchCommandOptions& o, const Invocation& invocation) {
  if (invocation.positional.size() != 1 || invocation.positional[0] != "train") {
    throw Error("usage: distill bench train [--set bench.batch=256 ...] (known benchmarks: train)");
  }
  RunContext run = start_run(o.run, config::dump(o));
  if (o.bench.model.arch != "convnet" && !o.bench.python.empty()) {
    throw Error("bench.model.arch: the Python reference implements only convnet, found '" +
                o.bench.model.arch + "' (set bench.python=\"\" to skip it)");
  }
  int64_t threads = at::get_num_threads();
  // Python first: its peak RSS is its own process's, ours is measured after.
  nlohmann::json python = bench_python(o.bench, threads, "");
  // The same Python with glibc's mmap/trim thresholds raised, as distill does for itself (see
  // shared/notes/cpu-performance.md): the ratio against it isolates everything but the allocator.
  nlohmann::json python_tuned = bench_python(
      o.bench, threads, "MALLOC_MMAP_THRESHOLD_=1000000000000 MALLOC_TRIM_THRESHOLD_=1000000000000");
  nlohmann::json cpp = bench_cpp(o.bench, run.device);
  nlohmann::json result = {{"benchmark", "train"},
                           {"arch", o.bench.model.arch},
                           {"batch", o.bench.batch},
                           {"steps", o.bench.steps},
                           {"threads", threads},
                           {"cpp", cpp},
                           {"python", python},
                           {"python_tuned_malloc", python_tuned}};
  if (!python.is_null()) {
    result["train_speedup_vs_python"] =
        cpp["train_images_per_s"].get<double>() / python["train_images_per_s"].get<double>();
    result["eval_speedup_vs_python"] =
        cpp["eval_images_per_s"].get<double>() / python["eval_images_per_s"].get<double>();
    result["peak_rss_ratio_vs_python"] =
        cpp["peak_rss_mib"].get<double>() / python["peak_rss_mib"].get<double>();
    result["train_speedup_vs_python_tuned_malloc"] =
        cpp["train_images_per_s"].get<double>() / python_tuned["train_images_per_s"].get<double>();
    result["eval_speedup_vs_python_tuned_malloc"] =
        cpp["eval_images_per_s"].get<double>() / python_tuned["eval_images_per_s"].get<double>();
  }
  std::cout << result.dump() << std::endl;
}

}  // namespace

Command bench_command() {
  return make_command<BenchCommandOptions>(
      "bench", "benchmarks printing JSON (bench train: core vs Python PyTorch)",
      "distill bench train --set bench.batch=256 --set bench.steps=20", {}, run_bench);
}

}  // namespace distill::cli
