#include "src/core/build_info.h"

#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include <sstream>

#ifndef DISTILL_VERSION
#define DISTILL_VERSION "unknown"
#endif

namespace distill {
namespace {

// The loaded library's version: at::show_config() reports its own build settings, among them
// "TORCH_VERSION=x.y.z" (the header macro only says what this binary was compiled against).
std::string running_torch_version() {
  const std::string config = at::show_config();
  const std::string key = "TORCH_VERSION=";
  const size_t at = config.find(key);
  if (at == std::string::npos) return "unknown";
  const size_t begin = at + key.size();
  return config.substr(begin, config.find_first_of(", \n", begin) - begin);
}

}  // namespace

std::string cuda_version_string(long version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

std::string cudnn_version_string(long version) {
  // cuDNN 9 encodes major * 10000 + minor * 100 + patch; cuDNN 8 major * 1000 + minor * 100 + patch.
  if (version >= 90000) {
    return std::to_string(version / 10000) + "." + std::to_string(version % 10000 / 100) + "." +
           std::to_string(version % 100);
  }
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 100) + "." +
         std::to_string(version % 100);
}

BuildInfo build_info() {
  BuildInfo info;
  info.distill_version = DISTILL_VERSION;
  info.torch_built = TORCH_VERSION;
  info.torch_running = running_torch_version();
  const at::CUDAHooksInterface& cuda = at::detail::getCUDAHooks();
  // Without libtorch_cuda the hooks are the stub interface, whose version queries throw.
  try {
    info.cuda_version = cuda_version_string(cuda.versionCUDART());
    info.cuda_compiled = true;
  } catch (const std::exception&) {
    info.cuda_compiled = false;
  }
  if (info.cuda_compiled) {
    try {
      if (cuda.hasCuDNN()) info.cudnn_version = cudnn_version_string(cuda.versionCuDNN());
    } catch (const std::exception&) {
    }
    info.cuda_devices = cuda.getNumGPUs();
  }
  return info;
}

std::string describe(const BuildInfo& info) {
  std::ostringstream out;
  out << "distill " << info.distill_version << "\n";
  out << "LibTorch: built against " << info.torch_built << ", running " << info.torch_running
      << "\n";
  if (info.cuda_compiled) {
    out << "CUDA: compiled in (CUDA " << info.cuda_version << ", cuDNN "
        << (info.cudnn_version.empty() ? "none" : info.cudnn_version) << ")\n";
    out << "devices: cpu";
    for (int64_t i = 0; i < info.cuda_devices; ++i) out << ", cuda:" << i;
    if (info.cuda_devices == 0) out << " (no GPU visible)";
    out << "\n";
  } else {
    out << "CUDA: not compiled in (CPU-only LibTorch)\ndevices: cpu\n";
  }
  return out.str();
}

}  // namespace distill
