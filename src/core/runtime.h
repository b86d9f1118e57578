#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace distill {

// Resolves "auto", "cpu", "cuda" or "cuda:N". "auto" falls back to CPU and says so once on stderr;
// an explicit CUDA request without a GPU is an Error.
c10::Device resolve_device(const std::string& spec);

// LibTorch defaults to one thread on this kind of machine; 0 means "all cores".
void set_threads(int64_t threads);

// Keeps freed blocks inside the process (glibc thresholds for small ones, a caching allocator
// for large ones): on this VM page faults from fresh allocations
// cost more than the arithmetic (see shared/notes/cpu-performance.md).
void tune_allocator();

// Peak resident set size of this process in MiB (from /proc/self/status).
double peak_rss_mib();

// The machine's memory from /proc/meminfo (MemTotal, MemAvailable), in bytes; 0 when unknown.
struct MachineMemory {
  double total_bytes = 0;
  double available_bytes = 0;
};
MachineMemory machine_memory();

// A CPU generator seeded from (seed, stream, index) so that every random draw of a run can be
// recreated from its position alone: resume needs no saved RNG state.
at::Generator make_generator(uint64_t seed, uint64_t stream = 0, uint64_t index = 0);
uint64_t mix_seed(uint64_t seed, uint64_t stream, uint64_t index);

// 64-bit FNV-1a of `bytes`: a hash that is the same on every machine and build (file fingerprints,
// a name's stream index).
uint64_t fnv1a(const std::string& bytes);

// Ctrl-C handling: the first SIGINT sets a flag that long loops poll; the second one kills.
void install_interrupt_handler();
bool interrupt_requested();
void clear_interrupt_request();

}  // namespace distill
