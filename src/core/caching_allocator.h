#pragma once
#include "src/core/allocator_compat.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>

namespace distill {

// A CPU allocator that keeps freed large blocks for reuse, as PyTorch's CUDA caching allocator
// does for device memory. Why: on this VM every fresh page costs a fault that dwarfs the
// arithmetic (shared/notes/cpu-performance.md), and training/matching loops request the same
// sizes every step. Unlike raising glibc's mmap threshold (no page returned, heap fragmentation
// adds to the peak), blocks here are reused only for requests of nearly their size, and idle
// blocks go back to the OS (least recently used first) beyond a limit: the larger of
// `idle_floor` and twice the most bytes ever in use at once. Why twice: a loop keeps one block
// per size at that size's own peak count, and those peaks fall at different times, so the
// blocks a step needs add up to more than its peak in use (training ConvNet-3 at batch 256:
// 640 MiB of blocks for a 514 MiB peak); a limit of one peak missed on every step.
class CachingCpuAllocator final : public AllocatorCompat {
 public:
  struct Stats {
    int64_t hits = 0;           // large requests served from the cache
    int64_t misses = 0;         // large requests that mapped new memory
    size_t idle_bytes = 0;      // cached, not in use
    size_t in_use_bytes = 0;    // large blocks handed out
    size_t peak_in_use_bytes = 0;
    size_t peak_mapped_bytes = 0;
  };

  // Requests below `min_bytes` go to c10::alloc_cpu, as in LibTorch's default CPU allocator.
  // `fixed_limit` (> 0) replaces the adaptive limit by a constant one.
  CachingCpuAllocator(size_t min_bytes, size_t idle_floor, size_t fixed_limit = 0);
  ~CachingCpuAllocator() override;

  c10::DataPtr allocate_bytes(size_t bytes) const override;
  // LibTorch's raw_allocate/raw_deallocate need one deleter that takes the data pointer.
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::free_any; }
  Stats stats() const;
  void release_idle() const;  // return every idle block to the OS
  // Starts a new peak from what is in use now (to measure one computation's peak).
  void reset_peak() const;

 private:
  struct IdleBlock {
    void* data;
    uint64_t last_used;
  };
  static void free_large(void* data);
  static void free_any(void* data);
  bool give_back(void* data) const;      // false when `data` is not a large block of ours
  void trim_locked(size_t limit) const;  // idle bytes down to `limit`, oldest first
  size_t idle_limit_locked() const;

  size_t min_bytes_;
  size_t idle_floor_;
  size_t fixed_limit_;
  mutable std::mutex mutex_;
  mutable std::multimap<size_t, IdleBlock> idle_;     // by size, for best fit
  mutable std::unordered_map<void*, size_t> in_use_;  // large blocks handed out, with their size
  mutable Stats stats_;
  mutable uint64_t clock_ = 0;
};

// Installs one process-wide CachingCpuAllocator as LibTorch's CPU allocator (idempotent) and
// returns it. `fixed_limit_mib` > 0 fixes the idle limit (tests); otherwise it adapts, or is
// DISTILL_CPU_CACHE_MIB when that is set.
CachingCpuAllocator& install_caching_cpu_allocator(int64_t fixed_limit_mib = 0);

// The installed allocator, or nullptr when install_caching_cpu_allocator was not called.
const CachingCpuAllocator* installed_caching_cpu_allocator();

}  // namespace distill
