#include "src/core/runtime.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <malloc.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "src/core/build_info.h"
#include "src/core/caching_allocator.h"
#include "src/core/error.h"

namespace distill {

c10::Device resolve_device(const std::string& spec) {
  if (spec == "auto") {
    // No message on the CPU fallback: commands name their device in their first line, and a
    // warning on every run of a CPU-only build is noise.
    if (at::hasCUDA()) return c10::Device(c10::kCUDA, 0);
    return c10::Device(c10::kCPU);
  }
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(spec);
  } catch (const std::exception&) {
    throw Error("--device: expected auto, cpu, cuda or cuda:N, found '" + spec + "'");
  }
  if (!device.is_cpu() && !device.is_cuda()) {
    throw Error("--device: only cpu and cuda are supported, found '" + spec + "'");
  }
  if (device.is_cuda()) {
    const BuildInfo info = build_info();
    if (!info.cuda_compiled) {
      throw Error("--device " + spec + ": this distill's LibTorch (" + info.torch_running +
                  ") is CPU-only; build against a CUDA LibTorch (README: Running on a GPU) or use "
                  "--device cpu");
    }
    if (info.cuda_devices == 0) {
      throw Error("--device " + spec + ": CUDA " + info.cuda_version +
                  " is compiled in, but no GPU is visible (driver, CUDA_VISIBLE_DEVICES); use "
                  "--device cpu or auto");
    }
    if (device.has_index() && device.index() >= info.cuda_devices) {
      throw Error("--device " + spec + ": only " + std::to_string(info.cuda_devices) +
                  " GPU(s) visible (cuda:0 .. cuda:" + std::to_string(info.cuda_devices - 1) +
                  ")");
    }
  }
  return device;
}

void set_threads(int64_t threads) {
  if (threads < 0) throw Error("--threads: expected 0 (all cores) or a positive count, found " +
                               std::to_string(threads));
  const int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  // More threads than cores only adds contention (--threads 100000 started ~25 000 threads).
  if (threads > cores) {
    std::cerr << "distill: warning: run.threads = " << threads << " is more than this machine's "
              << cores << " cores; using " << cores << "\n";
  }
  const int64_t n = threads == 0 ? cores : std::min(threads, cores);
  at::set_num_threads(static_cast<int>(n));
}

void tune_allocator() {
  // Both thresholds at 1 TB: glibc then neither mmaps nor trims large blocks.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
  // Large tensors: a caching allocator that reuses blocks without glibc's fragmentation
  // (DISTILL_CACHING_ALLOCATOR=0 keeps glibc alone, for comparisons).
  const char* caching = std::getenv("DISTILL_CACHING_ALLOCATOR");
  if (!caching || std::string(caching) != "0") install_caching_cpu_allocator();
}

double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

MachineMemory machine_memory() {
  MachineMemory memory;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {  // "MemTotal:       24589456 kB"
    if (line.rfind("MemTotal:", 0) == 0) memory.total_bytes = std::stod(line.substr(9)) * 1024;
    if (line.rfind("MemAvailable:", 0) == 0) {
      memory.available_bytes = std::stod(line.substr(13)) * 1024;
    }
  }
  return memory;
}

uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64-bit offset basis and prime
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t mix_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  // splitmix64 over the three words: nearby inputs give unrelated seeds.
  auto mix = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(mix(seed) ^ stream) ^ index);
}

at::Generator make_generator(uint64_t seed, uint64_t stream, uint64_t index) {
  return at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, stream, index));
}

namespace {
std::atomic<bool> g_interrupt{false};
extern "C" void on_sigint(int) {
  if (g_interrupt.exchange(true)) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}
}  // namespace

void install_interrupt_handler() { std::signal(SIGINT, on_sigint); }
bool interrupt_requested() { return g_interrupt.load(); }
void clear_interrupt_request() { g_interrupt.store(false); }

}  // namespace distill
