// `distill bench train|mtt|eval`: throughput and memory of the core, of trajectory matching and
// of student evaluation against Python PyTorch on the same workload in the same invocation
// (ratios: the machine is shared and noisy).
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
#include "src/train/stacked_trainer.h"
#include "src/train/trainer.h"
#include "src/eval/evaluator.h"
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
  int64_t ipc = 10;
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
    v.field("ipc", ipc, "mtt, eval: synthetic images per class", config::Range::at_least(1));
    v.field("python", python, "Python with torch for the reference run (empty = skip)");
    v.field("python_script", python_script, "the reference workload script");
  }
};

// One MTT iteration (student run + meta-gradient + image step) on random data shaped like the
// reference workload: ConvNet-3 w128 instancenorm, 1x28x28, 10 classes, DSA.
struct MttBenchOptions {
  int64_t syn_steps = 10;
  int64_t batch_syn = 100;
  int64_t iters = 3;
  int64_t warmup = 1;
  std::string meta_grad = "adjoint";
  std::string python_script = "experiments/bench/mtt_step.py";
  void visit(config::Visitor& v) {
    v.field("syn_steps", syn_steps, "student steps per iteration");
    v.field("batch_syn", batch_syn, "synthetic images per student step");
    v.field("iters", iters, "timed iterations");
    v.field("warmup", warmup, "untimed iterations first");
    v.choice("meta_grad", meta_grad, "meta-gradient of the C++ run", {"adjoint", "unroll"});
    v.field("python_script", python_script, "the reference workload script (bench.python runs it)");
  }
};

// K students of the evaluation protocol (ConvNet-3, SGD .01 momentum .9 wd 5e-4, DSA, batch
// 256) on bench.ipc images per class: one at a time, stacked (eval.batch_students), one model on
// a K-times larger batch (the ceiling), and Python's reference protocol.
struct EvalBenchOptions {
  int64_t students = 5;
  int64_t steps = 30;
  int64_t warmup = 3;
  int64_t rounds = 2;
  std::string python_script = "experiments/bench/eval_step.py";
  void visit(config::Visitor& v) {
    v.field("students", students, "K: students trained per side", config::Range::at_least(1));
    v.field("steps", steps, "timed training steps per student (whole epochs)",
            config::Range::at_least(1));
    v.field("warmup", warmup, "untimed steps per student first", config::Range::at_least(0));
    v.field("rounds", rounds, "rounds of the three C++ sides, in alternating order; the best "
            "round of each side is reported", config::Range::at_least(1));
    v.field("python_script", python_script, "the reference protocol (bench.python runs it)");
  }
};

struct BenchCommandOptions {
  static constexpr bool kHasPresets = false;
  config::RunOptions run;
  BenchOptions bench;
  MttBenchOptions mtt;
  EvalBenchOptions eval;
  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("bench", bench);
    v.section("mtt", mtt);
    v.section("eval", eval);
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
// The workload flags every reference script takes: the ConvNet's shape, the images, threads and
// device (each benchmark adds its own).
std::string reference_flags(const BenchOptions& b, int64_t threads, const c10::Device& device) {
  return " --width " + std::to_string(b.model.width) + " --depth " +
         std::to_string(b.model.depth) + " --channels " + std::to_string(b.channels) +
         " --image-size " + std::to_string(b.image_size) + " --classes " +
         std::to_string(b.classes) + " --threads " + std::to_string(threads) + " --device " +
         device.str();
}

nlohmann::json bench_python(const BenchOptions& b, int64_t threads, const std::string& environment,
                            const c10::Device& device) {
  if (b.python.empty()) return nullptr;
  std::string command =
      environment + " " + b.python + " " + b.python_script + " --arch " + b.model.arch +
      " --stem " + b.model.stem + " --batch " + std::to_string(b.batch) + " --steps " +
      std::to_string(b.steps) + " --warmup " + std::to_string(b.warmup) +
      reference_flags(b, threads, device);
  return run_python_json(command);
}

nlohmann::json bench_mtt_cpp(const BenchOptions& b, const MttBenchOptions& m, c10::Device device) {
  auto model = models::make_model(b.model, b.channels, b.image_size, b.classes);
  at::Generator gen = make_generator(0);
  at::Tensor images =
      at::randn({b.ipc * b.classes, b.channels, b.image_size, b.image_size}, gen).to(device);
  at::Tensor labels = at::arange(b.classes, at::kLong).repeat_interleave(b.ipc).to(device);
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
        b.python + " " + m.python_script + " --ipc " + std::to_string(b.ipc) + " --syn-steps " +
        std::to_string(m.syn_steps) + " --batch-syn " + std::to_string(m.batch_syn) +
        " --iters " + std::to_string(m.iters) + " --warmup " + std::to_string(m.warmup) +
        reference_flags(b, threads, run.device));
  }
  nlohmann::json cpp = bench_mtt_cpp(b, m, run.device);
  nlohmann::json result = {{"benchmark", "mtt"},       {"arch", b.model.arch},
                           {"width", b.model.width},   {"ipc", b.ipc},
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

// Multiply-adds x 2 of one ConvNet training step per image (forward, then backward's two
// products per layer: x3), counting convolutions and the classifier only: the GFLOP/s a side
// achieves on the model's arithmetic. 0 for other architectures.
double convnet_train_flops(const models::ModelOptions& o, int64_t channels, int64_t size,
                           int64_t classes) {
  if (o.arch != "convnet") return 0;
  double forward = 0;
  int64_t in = channels;
  for (int64_t d = 0; d < o.depth; ++d) {
    const int64_t padding = (channels == 1 && d == 0) ? 3 : 1;
    size = size + 2 * padding - 2;
    forward += 2.0 * static_cast<double>(in * o.width * 9 * size * size);
    in = o.width;
    if (o.pool != "none") size /= 2;
  }
  forward += 2.0 * static_cast<double>(in * size * size * classes);
  return 3 * forward;
}

nlohmann::json bench_eval_cpp(const BenchOptions& b, const EvalBenchOptions& e,
                              c10::Device device) {
  auto model = models::make_model(b.model, b.channels, b.image_size, b.classes);
  at::Generator gen = make_generator(0);
  const int64_t n = b.ipc * b.classes;
  const at::Tensor images =
      at::randn({n, b.channels, b.image_size, b.image_size}, gen).to(device);
  const at::Tensor labels = at::arange(b.classes, at::kLong).repeat_interleave(b.ipc).to(device);
  eval::EvalOptions protocol;
  eval::apply_protocol("dc", protocol);
  train::TrainOptions options = protocol.train;
  options.eval_every = 0;
  const int64_t batch = std::min(options.batch_size, n);
  const int64_t batches = (n + batch - 1) / batch;
  const int64_t k = e.students;
  const auto augment = train::make_augment(protocol.augment, b.image_size);
  // Whole epochs: the learning-rate schedule and the draws are the protocol's.
  auto with_epochs = [&](int64_t steps) {
    train::TrainOptions o = options;
    o.epochs = std::max<int64_t>(1, (steps + batches - 1) / batches);
    return o;
  };
  // One model trained by a lone Trainer, as an evaluation student is.
  auto train_alone = [&](const train::TrainOptions& o, uint64_t seed, const at::Tensor& x,
                         const at::Tensor& y) {
    train::Trainer trainer(*model, o, seed);
    trainer.set_augment(augment);
    trainer.set_progress("", false);
    train::TrainState state = trainer.init_state();
    state.params = state.params.to(device);
    state.buffers = state.buffers.to(device);
    trainer.fit(state, x, y);
  };
  auto sequential = [&](const train::TrainOptions& o) {
    for (int64_t s = 0; s < k; ++s) train_alone(o, static_cast<uint64_t>(s), images, labels);
  };
  auto stacked = [&](const train::TrainOptions& o) {
    std::vector<train::StackedTrainer::Student> students;
    for (int64_t s = 0; s < k; ++s) students.push_back({static_cast<uint64_t>(s), images, labels});
    train::StackedTrainer trainer(*model, o, students);
    trainer.set_augment(augment);
    trainer.set_progress("", false);
    trainer.fit();
  };
  // One model, one set of weights, on K copies of the set in K-times larger batches.
  const at::Tensor big_images = images.repeat({k, 1, 1, 1});
  const at::Tensor big_labels = labels.repeat({k});
  auto ceiling = [&](const train::TrainOptions& o) {
    train::TrainOptions big = o;
    big.batch_size = batch * k;
    train_alone(big, 0, big_images, big_labels);
  };
  struct Side {
    std::string name;
    std::function<void(const train::TrainOptions&)> run;
    double best = 0;
    std::vector<double> rounds;
  };
  std::vector<Side> sides = {{"sequential", sequential}, {"batched", stacked},
                             {"ceiling", ceiling}};
  const train::TrainOptions timed = with_epochs(e.steps);
  const double student_steps = static_cast<double>(k * timed.epochs * batches);
  if (e.warmup > 0) {
    for (Side& side : sides) side.run(with_epochs(e.warmup));
  }
  for (int64_t round = 0; round < e.rounds; ++round) {
    for (size_t i = 0; i < sides.size(); ++i) {
      // Alternating order: a side is not always the one after the same other side.
      Side& side = sides[round % 2 == 0 ? i : sides.size() - 1 - i];
      const auto start = std::chrono::steady_clock::now();
      side.run(timed);
      if (device.is_cuda()) at::zeros({1}, at::TensorOptions().device(device)).item<float>();
      const double rate = student_steps / seconds_since(start);
      side.rounds.push_back(rate);
      side.best = std::max(side.best, rate);
    }
  }
  const double flops = convnet_train_flops(b.model, b.channels, b.image_size, b.classes);
  nlohmann::json out = {{"students", k},
                        {"ipc", b.ipc},
                        {"batch", batch},
                        {"steps_per_student", timed.epochs * batches},
                        {"train_flops_per_image", flops},
                        {"peak_rss_mib", peak_rss_mib()}};
  for (const Side& side : sides) {
    out[side.name + "_steps_per_s"] = side.best;
    out[side.name + "_rounds"] = side.rounds;
    if (flops > 0) {
      out[side.name + "_gflops_per_s"] = side.best * static_cast<double>(batch) * flops / 1e9;
    }
  }
  add_allocator_stats(out);
  return out;
}

void run_bench_eval(const BenchCommandOptions& o, const RunContext& run) {
  const BenchOptions& b = o.bench;
  const EvalBenchOptions& e = o.eval;
  if (b.model.arch != "convnet" && !b.python.empty()) {
    throw Error("bench.model.arch: the Python reference protocol implements only convnet, "
                "found '" + b.model.arch + "' (set bench.python=\"\" to skip it)");
  }
  const int64_t threads = at::get_num_threads();
  nlohmann::json python = nullptr;
  if (!b.python.empty()) {
    python = python_or_failure(
        b.python + " " + e.python_script + " --ipc " + std::to_string(b.ipc) + " --steps " +
        std::to_string(e.steps) + " --warmup " + std::to_string(e.warmup) +
        reference_flags(b, threads, run.device));
  }
  nlohmann::json cpp = bench_eval_cpp(b, e, run.device);
  nlohmann::json result = {{"benchmark", "eval"},
                           {"arch", b.model.arch},
                           {"width", b.model.width},
                           {"ipc", b.ipc},
                           {"students", e.students},
                           {"threads", threads},
                           {"device", run.device.str()},
                           {"sequential_steps_per_s", cpp["sequential_steps_per_s"]},
                           {"batched_steps_per_s", cpp["batched_steps_per_s"]},
                           {"ceiling_steps_per_s", cpp["ceiling_steps_per_s"]},
                           {"python_steps_per_s", nullptr},
                           {"cpp", cpp},
                           {"python", python}};
  const double batched = cpp["batched_steps_per_s"].get<double>();
  result["batched_vs_sequential"] = batched / cpp["sequential_steps_per_s"].get<double>();
  result["batched_vs_ceiling"] = batched / cpp["ceiling_steps_per_s"].get<double>();
  if (!python.is_null() && python.contains("steps_per_s")) {
    result["python_steps_per_s"] = python["steps_per_s"];
    result["batched_vs_python"] = batched / python["steps_per_s"].get<double>();
  }
  std::cout << result.dump() << std::endl;
}

void run_bench(BenchCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "bench");
  const std::string usage =
      "usage: distill bench train|mtt|eval [--set bench.batch=256 ...] [--ipc 10 --syn-steps 10 "
      "--batch-syn 100 --iters 3 --meta-grad adjoint|unroll] [--students 5 --steps 30]";
  if (invocation.positional.size() != 1) {
    throw Error(usage + " (known benchmarks: train, mtt, eval)");
  }
  const std::string& which = invocation.positional[0];
  if (which != "train" && which != "mtt" && which != "eval") {
    throw Error("unknown benchmark '" + which + "'; " + usage);
  }
  require_single_process("bench");
  RunContext run = start_run(o.run, config::dump(o), invocation);
  if (which == "mtt") {
    run_bench_mtt(o, run);
    return;
  }
  if (which == "eval") {
    run_bench_eval(o, run);
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
      "bench",
      "benchmarks printing JSON (train: core vs Python; mtt: matching iteration vs Python; eval: "
      "K students one at a time, stacked, the big-batch ceiling and Python's protocol)",
      "distill bench eval --ipc 10 --students 5 --steps 30",
      {{"ipc", "bench.ipc"},
       {"students", "eval.students"},
       {"steps", "eval.steps"},
       {"syn-steps", "mtt.syn_steps"},
       {"batch-syn", "mtt.batch_syn"},
       {"iters", "mtt.iters"},
       {"meta-grad", "mtt.meta_grad"}},
      run_bench);
  command.takes_positional = true;
  return command;
}

}  // namespace distill::cli
