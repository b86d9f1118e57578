#include "src/core/caching_allocator.h"

#include <c10/core/impl/alloc_cpu.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace distill {
namespace {

constexpr size_t kPage = 4096;
// A cached block serves a request when it is at most this much larger (1/8): reuse without
// letting small requests pin big blocks.
constexpr size_t kSlackDivisor = 8;

size_t round_to_pages(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }

// The one installed instance; the static deleters reach it through this.
const CachingCpuAllocator* g_instance = nullptr;

void* map_pages(size_t size) {
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return data == MAP_FAILED ? nullptr : data;
}

}  // namespace

CachingCpuAllocator::CachingCpuAllocator(size_t min_bytes, size_t idle_floor, size_t fixed_limit)
    : min_bytes_(min_bytes), idle_floor_(idle_floor), fixed_limit_(fixed_limit) {}

size_t CachingCpuAllocator::idle_limit_locked() const {
  if (fixed_limit_ > 0) return fixed_limit_;
  return std::max(idle_floor_, 2 * stats_.peak_in_use_bytes);
}

CachingCpuAllocator::~CachingCpuAllocator() { release_idle(); }

c10::DataPtr CachingCpuAllocator::allocate_bytes(size_t bytes) const {
  if (bytes < min_bytes_) {
    void* data = c10::alloc_cpu(bytes);
    return {data, data, &c10::free_cpu, c10::Device(c10::kCPU)};
  }
  const size_t size = round_to_pages(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* data = nullptr;
  size_t got = size;
  auto fit = idle_.lower_bound(size);
  if (fit != idle_.end() && fit->first <= size + size / kSlackDivisor) {
    data = fit->second.data;
    got = fit->first;
    idle_.erase(fit);
    stats_.idle_bytes -= got;
    ++stats_.hits;
  } else {
    // A miss: make room first, so the mapped total stays within in-use + the idle limit.
    const size_t limit = idle_limit_locked();
    trim_locked(limit > size ? limit - size : 0);
    data = map_pages(size);
    if (!data) {
      trim_locked(0);
      data = map_pages(size);
      if (!data) {
        throw std::runtime_error("CPU allocator: out of memory allocating " +
                                 std::to_string(bytes) + " bytes");
      }
    }
    ++stats_.misses;
  }
  in_use_.emplace(data, got);
  stats_.in_use_bytes += got;
  stats_.peak_in_use_bytes = std::max(stats_.peak_in_use_bytes, stats_.in_use_bytes);
  size_t mapped = stats_.in_use_bytes + stats_.idle_bytes;
  if (mapped > stats_.peak_mapped_bytes) stats_.peak_mapped_bytes = mapped;
  return {data, data, &CachingCpuAllocator::free_large, c10::Device(c10::kCPU)};
}

void CachingCpuAllocator::free_large(void* data) { g_instance->give_back(data); }

void CachingCpuAllocator::free_any(void* data) {
  if (!g_instance->give_back(data)) c10::free_cpu(data);
}

bool CachingCpuAllocator::give_back(void* data) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = in_use_.find(data);
  if (it == in_use_.end()) return false;
  const size_t size = it->second;
  in_use_.erase(it);
  stats_.in_use_bytes -= size;
  stats_.idle_bytes += size;
  idle_.emplace(size, IdleBlock{data, ++clock_});
  trim_locked(idle_limit_locked());
  return true;
}

void CachingCpuAllocator::trim_locked(size_t limit) const {
  while (stats_.idle_bytes > limit && !idle_.empty()) {
    auto oldest = idle_.begin();
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    ::munmap(oldest->second.data, oldest->first);
    stats_.idle_bytes -= oldest->first;
    idle_.erase(oldest);
  }
}

CachingCpuAllocator::Stats CachingCpuAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingCpuAllocator::reset_peak() const {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use_bytes = stats_.in_use_bytes;
}

void CachingCpuAllocator::release_idle() const {
  std::lock_guard<std::mutex> lock(mutex_);
  trim_locked(0);
}

CachingCpuAllocator& install_caching_cpu_allocator(int64_t fixed_limit_mib) {
  if (fixed_limit_mib <= 0) {
    const char* env = std::getenv("DISTILL_CPU_CACHE_MIB");
    fixed_limit_mib = env ? std::max<int64_t>(0, std::atoll(env)) : 0;
  }
  // Never destroyed: tensors may still be freed during static destruction.
  static auto* allocator = new CachingCpuAllocator(
      size_t(1) << 20, size_t(256) << 20, static_cast<size_t>(fixed_limit_mib) << 20);
  static bool installed = [] {
    g_instance = allocator;
    c10::SetAllocator(c10::kCPU, allocator, /*priority=*/1);
    return true;
  }();
  (void)installed;
  return *allocator;
}

const CachingCpuAllocator* installed_caching_cpu_allocator() { return g_instance; }

}  // namespace distill
