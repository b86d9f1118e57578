// `distill bench train|mtt`: throughput and memory of the core and of trajectory matching against
// Python PyTorch on the same workload in the same invocation (ratios: the machine is shared and
// noisy).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/caching_allocator.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/models/model.h"
#include "src/train/optimizer.h"
#include "src/train/augment.h"
#include "src/train/trainer.h"
#include "trajectories/trajectory_matcher.h"

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

// One MTT iteration (student run + meta-gradient + image step) on random data shaped like the
// reference workload: ConvNet-3 w128 instancenorm, 1x28x28, 10 classes, DSA.
struct MttBenchOptions {
  int64_t ipc = 10;
  int64_t syn_steps = 10;
  int64_t batch_syn = 100;
  int64_t iters = 3;
  int64_t warmup = 1;
  std::string meta_grad = "adjoint";
  std::string python_script = "experiments/bench/mtt_step.py";
  void visit(config::Visitor& v) {
    v.field("ipc", ipc, "synthetic images per class");
    v.field("syn_steps", syn_steps, "student steps per iteration");
    v.field("batch_syn", batch_syn, "synthetic images per student step");
    v.field("iters", iters, "timed iterations");
    v.field("warmup", warmup, "untimed iterations first");
    v.choice("meta_grad", meta_grad, "meta-gradient of the C++ run", {"adjoint", "unroll"});
    v.field("python_script", python_script, "the reference workload script (bench.python runs it)");
  }
};

struct BenchCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  BenchOptions bench;
  MttBenchOptions mtt;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("bench", bench);
    v.section("mtt", mtt);
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// How often the caching CPU allocator served large tensors from its cache.
void add_allocator_stats(nlohmann::json& out) {
  if (const auto* cache = installed_caching_cpu_allocator()) {
    auto stats = cache->stats();
    out["allocator_hits"] = stats.hits;
    out["allocator_misses"] = stats.misses;
    out["allocator_peak_in_use_mib"] = double(stats.peak_in_use_bytes) / (1 << 20);
    out["allocator_peak_mapped_mib"] = double(stats.peak_mapped_bytes) / (1 << 20);
  }
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
  // Reading a value waits for the device (a GPU runs the steps asynchronously).
  auto wait_for_device = [&] { params.sum().item<double>(); };
  for (int64_t i = 0; i < b.warmup; ++i) train_step();
  wait_for_device();
  auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < b.steps; ++i) train_step();
  wait_for_device();
  double train_s = seconds_since(start);
  models::ForwardArgs eval_args;
  eval_args.buffers = buffers;
  {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < b.warmup; ++i) model->forward(x, params, eval_args);
    wait_for_device();
  }
  start = std::chrono::steady_clock::now();
  {
    at::NoGradGuard no_grad;
    for (int64_t i = 0; i < b.steps; ++i) model->forward(x, params, eval_args).sum().item<float>();
  }
  double eval_s = seconds_since(start);
  double images = static_cast<double>(b.batch * b.steps);
  nlohmann::json out = {{"train_images_per_s", images / train_s},
                        {"eval_images_per_s", images / eval_s},
                        {"peak_rss_mib", peak_rss_mib()}};
  add_allocator_stats(out);
  return out;
}

// Runs a Python reference script and parses the JSON object on its last output line.
nlohmann::json run_python_json(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw RuntimeFailure("cannot start the Python reference: " + command);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  int status = ::pclose(pipe);
  size_t brace = output.rfind('{');
  if (status != 0 || brace == std::string::npos) {
    throw RuntimeFailure("the Python reference failed (exit " + std::to_string(status) + "): " +
                         command + "\n" + output);
  }
  return nlohmann::json::parse(output.substr(brace));
}

// The reference's result, or {"failed": why} when it failed (e.g. killed for memory at a size
// the C++ side handles): the C++ result is printed either way.
nlohmann::json python_or_failure(const std::string& command) {
  try {
    return run_python_json(command);
  } catch (const RuntimeFailure& e) {
    const std::string why = std::string(e.what()).substr(0, std::string(e.what()).find('\n'));
    std::cerr << "bench: " << why << "; the C++ result is reported without the comparison\n";
    return {{"failed", why}};
  }
}

// `environment` prefixes the command (e.g. glibc malloc tunables for a fairer reference).
nlohmann::json bench_python(const BenchOptions& b, int64_t threads, const std::string& environment,
                            const c10::Device& device) {
  if (b.python.empty()) return nullptr;
  std::string command =
      environment + " " + b.python + " " + b.python_script + " --arch " + b.model.arch +
      " --stem " + b.model.stem + " --width " + std::to_string(b.model.width) + " --depth " +
      std::to_string(b.model.depth) + " --batch " + std::to_string(b.batch) + " --steps " +
      std::to_string(b.steps) + " --warmup " + std::to_string(b.warmup) + " --channels " +
      std::to_string(b.channels) + " --image-size " + std::to_string(b.image_size) + " --classes " +
      std::to_string(b.classes) + " --threads " + std::to_string(threads) + " --device " +
      device.str();
  return run_python_json(command);
}

nlohmann::json bench_mtt_cpp(const BenchOptions& b, const MttBenchOptions& m, c10::Device device) {
  auto model = models::make_model(b.model, b.channels, b.image_size, b.classes);
  at::Generator gen = make_generator(0);
  at::Tensor images =
      at::randn({m.ipc * b.classes, b.channels, b.image_size, b.image_size}, gen).to(device);
  at::Tensor labels = at::arange(b.classes, at::kLong).repeat_interleave(m.ipc).to(device);
  at::Tensor start = model->init_params(gen).to(device);
  // The target only sets the loss value; the work per iteration does not depend on it.
  at::Tensor target = start + 0.01 * at::randn(start.sizes(), gen).to(device);
  trajectories::MatchingOptions options;
  options.syn_steps = m.syn_steps;
  options.batch_syn = m.batch_syn;
  options.meta_grad = m.meta_grad;
  train::AugmentOptions augment;  // DSA, the reference's strategy
  trajectories::TrajectoryMatcher matcher(*model, options, train::make_augment(augment, b.image_size));
  train::OptimizerOptions sgd;
  sgd.momentum = 0.5;
  auto image_optimizer = train::Optimizer::make(sgd);
  double lr = 0.01, loss = 0.0;
  auto iteration = [&](int64_t i) {
    trajectories::MatchingTask task{start, target, static_cast<uint64_t>(i)};
    trajectories::MetaGradient g = matcher.meta_gradient(images, labels, lr, task);
    image_optimizer->step(images, g.images_grad, 100.0);
    lr -= 1e-5 * g.lr_grad;
    loss = g.loss;
  };
  for (int64_t i = 0; i < m.warmup; ++i) iteration(i);
  auto begin = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < m.iters; ++i) iteration(m.warmup + i);
  double seconds = seconds_since(begin);
  nlohmann::json out = {{"s_per_iter", seconds / static_cast<double>(m.iters)},
                        {"peak_rss_mib", peak_rss_mib()},
                        {"meta_grad", m.meta_grad},
                        {"last_loss", loss}};
  add_allocator_stats(out);
  return out;
}

void run_bench_mtt(const BenchCommandOptions& o, const RunContext& run) {
  const BenchOptions& b = o.bench;
  const MttBenchOptions& m = o.mtt;
  if (b.model.arch != "convnet" && !b.python.empty()) {
    throw Error("bench.model.arch: the Python reference implements only convnet, found '" +
                b.model.arch + "' (set bench.python=\"\" to skip it)");
  }
  int64_t threads = at::get_num_threads();
  nlohmann::json python = nullptr;
  if (!b.python.empty()) {  // first: its peak RSS is its own process's
    python = python_or_failure(
        b.python + " " + m.python_script + " --width " + std::to_string(b.model.width) +
        " --depth " + std::to_string(b.model.depth) + " --ipc " + std::to_string(m.ipc) +
        " --syn-steps " + std::to_string(m.syn_steps) + " --batch-syn " +
        std::to_string(m.batch_syn) + " --iters " + std::to_string(m.iters) + " --warmup " +
        std::to_string(m.warmup) + " --channels " + std::to_string(b.channels) + " --image-size " +
        std::to_string(b.image_size) + " --classes " + std::to_string(b.classes) + " --threads " +
        std::to_string(threads) + " --device " + run.device.str());
  }
  nlohmann::json cpp = bench_mtt_cpp(b, m, run.device);
  nlohmann::json result = {{"benchmark", "mtt"},       {"arch", b.model.arch},
                           {"width", b.model.width},   {"ipc", m.ipc},
                           {"syn_steps", m.syn_steps}, {"batch_syn", m.batch_syn},
                           {"iters", m.iters},         {"threads", threads},
                           {"meta_grad", m.meta_grad}, {"s_per_iter", cpp["s_per_iter"]},
                           {"peak_rss_mib", cpp["peak_rss_mib"]}, {"cpp", cpp},
                           {"python", python}};
  if (!python.is_null() && python.contains("s_per_iter")) {
    result["time_ratio_vs_python"] =
        cpp["s_per_iter"].get<double>() / python["s_per_iter"].get<double>();
    result["peak_rss_ratio_vs_python"] =
        cpp["peak_rss_mib"].get<double>() / python["peak_rss_mib"].get<double>();
  }
  std::cout << result.dump() << std::endl;
}

void run_bench(BenchCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "bench");
  const std::string usage =
      "usage: distill bench train|mtt [--set bench.batch=256 ...] [--ipc 10 --syn-steps 10 "
      "--batch-syn 100 --iters 3 --meta-grad adjoint|unroll]";
  if (invocation.positional.size() != 1) throw Error(usage + " (known benchmarks: train, mtt)");
  const std::string& which = invocation.positional[0];
  if (which != "train" && which != "mtt") {
    throw Error("unknown benchmark '" + which + "'; " + usage);
  }
  require_single_process("bench");
  RunContext run = start_run(o.run, config::dump(o), invocation);
  if (which == "mtt") {
    run_bench_mtt(o, run);
    return;
  }
  const std::string& arch = o.bench.model.arch;
  if (arch != "convnet" && arch != "resnet18" && arch != "resnet18bn" && !o.bench.python.empty()) {
    throw Error(
        "bench.model.arch: the Python reference implements convnet, resnet18 and "
        "resnet18bn, found '" +
        arch + "' (set bench.python=\"\" to skip it)");
  }
  int64_t threads = at::get_num_threads();
  // Python first: its peak RSS is its own process's, ours is measured after.
  nlohmann::json python = bench_python(o.bench, threads, "", run.device);
  // The same Python with glibc's mmap/trim thresholds raised, as distill does for itself (see
  // shared/notes/cpu-performance.md): the ratio against it isolates everything but the allocator.
  nlohmann::json python_tuned = bench_python(
      o.bench, threads, "MALLOC_MMAP_THRESHOLD_=1000000000000 MALLOC_TRIM_THRESHOLD_=1000000000000",
      run.device);
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
  Command command = make_command<BenchCommandOptions>(
      "bench", "benchmarks printing JSON (train: core vs Python; mtt: matching iteration vs Python)",
      "distill bench mtt --ipc 10 --syn-steps 10 --batch-syn 100 --iters 3 --meta-grad adjoint",
      {{"ipc", "mtt.ipc"},
       {"syn-steps", "mtt.syn_steps"},
       {"batch-syn", "mtt.batch_syn"},
       {"iters", "mtt.iters"},
       {"meta-grad", "mtt.meta_grad"}},
      run_bench);
  command.takes_positional = true;
  return command;
}

}  // namespace distill::cli
