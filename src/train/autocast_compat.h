#pragma once
// Autocast (mixed precision) switched on for one scope, as torch.autocast does in Python. The
// C++ API differs between the LibTorch lines: up to 2.3 one function pair per device kind
// (set_cpu_enabled, set_autocast_cpu_dtype; set_enabled, set_autocast_gpu_dtype for CUDA);
// from 2.4 one pair taking the device type (the old names are deprecated there).
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>
#include <torch/version.h>

#define DISTILL_AUTOCAST_API_2_4 \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

// fp16 autocast on the CPU: 1.13's CPU autocast has bf16 only. Claimed from 2.4 on, the line
// whose CPU fp16 kernels the suite has run (2.15); earlier 2.x may have it too, untested.
#define DISTILL_CPU_AUTOCAST_HAS_FP16 DISTILL_AUTOCAST_API_2_4

namespace distill::train {

class AutocastGuard {
 public:
  // `dtype` = Float: no autocast (the guard does nothing).
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype) : device_(device) {
    active_ = dtype != c10::ScalarType::Float;
    if (!active_) return;
    was_enabled_ = enabled();
    was_dtype_ = get_dtype();
    set(true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastGuard() {
    if (!active_) return;
    // Casts are cached inside a region; the outermost region's end frees them, as Python's
    // torch.autocast does.
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    set(was_enabled_, was_dtype_);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
#if DISTILL_AUTOCAST_API_2_4
  bool enabled() const { return at::autocast::is_autocast_enabled(device_); }
  c10::ScalarType get_dtype() const { return at::autocast::get_autocast_dtype(device_); }
  void set(bool on, c10::ScalarType dtype) const {
    at::autocast::set_autocast_dtype(device_, dtype);
    at::autocast::set_autocast_enabled(device_, on);
  }
#else
  bool cuda() const { return device_ == c10::DeviceType::CUDA; }
  bool enabled() const {
    return cuda() ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  }
  c10::ScalarType get_dtype() const {
    return cuda() ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
  }
  void set(bool on, c10::ScalarType dtype) const {
    if (cuda()) {
      at::autocast::set_autocast_gpu_dtype(dtype);
      at::autocast::set_enabled(on);
    } else {
      at::autocast::set_autocast_cpu_dtype(dtype);
      at::autocast::set_cpu_enabled(on);
    }
  }
#endif

  c10::DeviceType device_;
  bool active_ = false;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace distill::train
