#pragma once
// What this binary is built from and runs on: distill's version, the LibTorch it was compiled
// against and the one it loaded, CUDA support and the devices it sees (`distill --version`).
#include <cstdint>
#include <string>

namespace distill {

struct BuildInfo {
  std::string distill_version;
  std::string torch_built;    // the LibTorch headers' version (TORCH_VERSION)
  std::string torch_running;  // the loaded LibTorch's own report of its version
  bool cuda_compiled = false;  // the loaded LibTorch has its CUDA library (libtorch_cuda)
  std::string cuda_version;    // CUDA runtime the LibTorch was built with, e.g. "13.2"
  std::string cudnn_version;   // e.g. "9.26.0", empty without cuDNN
  int64_t cuda_devices = 0;    // GPUs visible now
};

BuildInfo build_info();
// Several lines for people, one fact per line.
std::string describe(const BuildInfo& info);

// 13020 (CUDART_VERSION) -> "13.2"; 92600 (CUDNN_VERSION, cuDNN 9's layout) -> "9.26.0".
std::string cuda_version_string(long version);
std::string cudnn_version_string(long version);

}  // namespace distill
