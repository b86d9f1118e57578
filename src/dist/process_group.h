#pragma once
// Multi-process runs on PyTorch's own distributed engine (c10d). This header keeps the c10d and
// Gloo headers out of every other translation unit: only process_group.cpp includes them.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "src/config/options.h"

namespace distill::dist {

// Where this process sits in a job, as torchrun, Slurm wrappers and mpirun-style scripts describe
// it in the environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. torchrun's
// agent hosts the TCPStore itself (TORCHELASTIC_USE_AGENT_STORE=True): then every rank is a
// client under the prefix of TORCHELASTIC_RESTART_COUNT, as torch.distributed does.
struct LaunchEnv {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  bool agent_store = false;
  int64_t restart_count = 0;
};

// Reads the launcher's variables through `getenv` (std::getenv by default). WORLD_SIZE unset or 1
// is a single process. Error naming the variable and its value for anything malformed
// (non-numbers, RANK outside [0, WORLD_SIZE), a port outside 1..65535, WORLD_SIZE > 1 without
// RANK).
using GetEnv = std::function<const char*(const char*)>;
LaunchEnv read_launch_env(const GetEnv& getenv = nullptr);

enum class Reduce { kSum, kMean };

// The ranks of one job and the collectives the library needs. World size 1 (no launcher
// variables) creates no c10d objects at all and every collective is the identity, so
// single-process code paths need no `if`. Collectives run on CPU tensors with Gloo (the default,
// run.dist.backend = "auto" or "gloo") and on this rank's GPU (cuda:LOCAL_RANK) with NCCL (a CUDA
// LibTorch, run.dist.backend = "nccl"); tensors elsewhere are copied there and back. A collective that fails (a peer died, or did not
// arrive within run.dist.timeout_s) throws RuntimeFailure naming the rank and the operation.
class ProcessGroup {
 public:
  // A single process (world size 1).
  ProcessGroup();
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // Joins the job `env` describes (blocks until every rank arrived or the timeout passed).
  static std::shared_ptr<ProcessGroup> create(const config::DistOptions& options,
                                              const LaunchEnv& env);
  // From the environment (read_launch_env): what the CLI calls.
  static std::shared_ptr<ProcessGroup> from_environment(const config::DistOptions& options);

  int64_t rank() const { return rank_; }
  int64_t world_size() const { return world_size_; }
  int64_t local_rank() const { return local_rank_; }
  bool is_main() const { return rank_ == 0; }
  bool distributed() const { return world_size_ > 1; }
  std::string backend() const;
  double timeout_s() const { return timeout_s_; }

  // In place over every rank (float or double tensors of the same shape everywhere).
  void all_reduce(at::Tensor& tensor, Reduce op = Reduce::kSum) const;
  // Every rank ends with root's values (same shape and dtype everywhere).
  void broadcast(at::Tensor& tensor, int64_t root = 0) const;
  // Each rank's tensor (same shape and dtype everywhere), in rank order.
  std::vector<at::Tensor> all_gather(const at::Tensor& tensor) const;
  // Small results: each rank's vector (lengths may differ), in rank order.
  std::vector<std::vector<double>> all_gather(const std::vector<double>& values) const;
  void barrier() const;
  // True on every rank when `flag` is true on any of them (one tiny all-reduce), e.g. an interrupt
  // that reached some ranks: they stop together instead of one waiting alone in a collective.
  // One process: `flag`.
  bool any(bool flag) const;
  // This rank's contiguous share [first, end) of `count` items split as evenly as possible (rank r:
  // count r / W .. count (r + 1) / W); one process: [0, count).
  std::pair<int64_t, int64_t> share_of(int64_t count) const;
  // A barrier after sharded work of uneven length (committee members, experts, recovery batches,
  // students): waits as long as it takes while every peer is alive. Each rank's background
  // heartbeat (a store counter, every 5 s at most) is its sign of life; a peer whose heartbeat
  // stops for min(run.dist.timeout_s, 60 s) (it died, or its whole process hangs) fails the wait
  // with an error naming it and what was awaited. A plain barrier would instead fail any rank
  // whose peers work longer than run.dist.timeout_s.
  void wait_for_peers(const std::string& what) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t rank_ = 0;
  int64_t world_size_ = 1;
  int64_t local_rank_ = 0;
  double timeout_s_ = 0;
};

// Which of `count` work items (experts, student runs) rank r does: r, r + W, r + 2W, ...
inline bool owns_item(const ProcessGroup& group, int64_t item) {
  return item % group.world_size() == group.rank();
}

}  // namespace distill::dist
