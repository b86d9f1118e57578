#pragma once
// The c10d class that collectives are called on, in both LibTorch lines. In 1.13 the Gloo and
// NCCL process groups derive from c10d::ProcessGroup; 2.0 split that into a ProcessGroup that
// dispatches to per-device backends and c10d::Backend, which ProcessGroupGloo and
// ProcessGroupNCCL now derive from. Both bases declare the same virtual collectives (allreduce,
// broadcast, allgather, barrier). Included only by process_group.cpp (it pulls in c10d).
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

namespace distill::dist {

#if TORCH_VERSION_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

}  // namespace distill::dist
