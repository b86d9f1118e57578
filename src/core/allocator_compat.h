#pragma once
// The c10::Allocator interface as both LibTorch lines declare it. LibTorch 2.3 made
// `allocate` non-const (it changes the allocator's state) and added the pure virtual
// `copy_data`; 1.13 has `allocate(size_t) const` and no `copy_data`. A distill allocator derives
// from AllocatorCompat and implements `allocate_bytes` once.
#include <c10/core/Allocator.h>
#include <torch/version.h>

#include <cstddef>
#include <type_traits>

#define DISTILL_ALLOCATOR_API_2_3 \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3))

namespace distill {

class AllocatorCompat : public c10::Allocator {
 public:
#if DISTILL_ALLOCATOR_API_2_3
  c10::DataPtr allocate(size_t bytes) override { return allocate_bytes(bytes); }
  // Plain memory: the default byte copy is right.
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t bytes) const override { return allocate_bytes(bytes); }
#endif

 protected:
  virtual c10::DataPtr allocate_bytes(size_t bytes) const = 0;
};

// The version test above is a guess about history; this makes a wrong guess a compile error
// naming the cause instead of an "abstract class" error far away.
#if DISTILL_ALLOCATOR_API_2_3
static_assert(std::is_same_v<decltype(&c10::Allocator::allocate), c10::DataPtr (c10::Allocator::*)(size_t)>,
              "this LibTorch's c10::Allocator::allocate is const: lower DISTILL_ALLOCATOR_API_2_3");
#else
static_assert(
    std::is_same_v<decltype(&c10::Allocator::allocate), c10::DataPtr (c10::Allocator::*)(size_t) const>,
    "this LibTorch's c10::Allocator::allocate is non-const: raise DISTILL_ALLOCATOR_API_2_3");
#endif

}  // namespace distill
