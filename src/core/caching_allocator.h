#pragma once
#include <c10/core/Allocator.h>

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
// blocks beyond `idle_limit` bytes go back to the OS (least recently used first).
class CachingCpuAllocator final : public c10::Allocator {
 public:
  struct Stats {
    int64_t hits = 0;           // large requests served from the cache
    int64_t misses = 0;         // large requests that mapped new memory
    size_t idle_bytes = 0;      // cached, not in use
    size_t in_use_bytes = 0;    // large blocks handed out
    size_t peak_mapped_bytes = 0;
  };

  // Requests below `min_bytes` go to c10::alloc_cpu, as in LibTorch's default CPU allocator.
  CachingCpuAllocator(size_t min_bytes, size_t idle_limit);
  ~CachingCpuAllocator() override;

  c10::DataPtr allocate(size_t bytes) const override;
  // LibTorch's raw_allocate/raw_deallocate need one deleter that takes the data pointer.
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::free_any; }
  Stats stats() const;
  void release_idle() const;  // return every idle block to the OS

 private:
  struct IdleBlock {
    void* data;
    uint64_t last_used;
  };
  static void free_large(void* data);
  static void free_any(void* data);
  bool give_back(void* data) const;      // false when `data` is not a large block of ours
  void trim_locked(size_t limit) const;  // idle bytes down to `limit`, oldest first

  size_t min_bytes_;
  size_t idle_limit_;
  mutable std::mutex mutex_;
  mutable std::multimap<size_t, IdleBlock> idle_;     // by size, for best fit
  mutable std::unordered_map<void*, size_t> in_use_;  // large blocks handed out, with their size
  mutable Stats stats_;
  mutable uint64_t clock_ = 0;
};

// Installs one process-wide CachingCpuAllocator as LibTorch's CPU allocator (idempotent) and
// returns it. `idle_limit_mib` < 0 reads DISTILL_CPU_CACHE_MIB (default 1024).
CachingCpuAllocator& install_caching_cpu_allocator(int64_t idle_limit_mib = -1);

// The installed allocator, or nullptr when install_caching_cpu_allocator was not called.
const CachingCpuAllocator* installed_caching_cpu_allocator();

}  // namespace distill
