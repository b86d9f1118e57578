#include <ATen/Parallel.h>

#include <filesystem>
#include <iostream>
#include <optional>

#include "src/cli/command.h"
#include "src/cli/config_rollback.h"
#include "src/core/error.h"
#include "src/core/runtime.h"
#include "src/dist/process_group.h"
#include "src/io/atomic_file.h"

namespace distill::cli {
namespace {

struct ReplacedConfig {
  std::string path;
  std::string text;
};
std::optional<ReplacedConfig> replaced_config;  // set by start_run on rank 0

}  // namespace

void restore_replaced_config() {
  if (!replaced_config) return;
  try {
    io::write_file_atomic(replaced_config->path, replaced_config->text);
  } catch (const std::exception& e) {
    std::cerr << "distill: warning: could not restore " << replaced_config->path << ": " << e.what()
              << "\n";
  }
  replaced_config.reset();
}

RunContext start_run(const config::RunOptions& run, const std::string& effective_config) {
  RunContext context;
  context.group = dist::ProcessGroup::from_environment(run.dist);
  context.rank = context.group->rank();
  context.world_size = context.group->world_size();
  context.device = resolve_device(run.device);
  // One GPU per rank on a multi-GPU node: "cuda" means the rank's own, cuda:LOCAL_RANK.
  if (context.device.is_cuda() && !context.device.has_index() && context.group->distributed()) {
    context.device =
        c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(context.group->local_rank()));
  }
  set_threads(run.threads);
  context.out = run.out;
  context.seed = static_cast<uint64_t>(run.seed);
  context.progress = run.progress && context.group->is_main();
  io::make_dirs(context.out);
  if (context.group->is_main()) {
    const std::string config_path = context.out + "/config.toml";
    if (std::filesystem::exists(config_path)) {
      replaced_config = ReplacedConfig{config_path, io::read_file(config_path)};
    }
    io::write_file_atomic(config_path, effective_config);
    if (context.group->distributed()) {
      std::cerr << "distill: " << context.world_size << " processes (" << context.group->backend()
                << "), this is rank 0\n";
    }
  }
  return context;
}

void refuse_resume(const Invocation& invocation, const std::string& command) {
  if (!invocation.resume) return;
  throw Error("--resume: `distill " + command +
              "` keeps no checkpoint, so there is nothing to resume; run it without --resume");
}

void require_single_process(const std::string& command) {
  const int64_t world_size = dist::read_launch_env().world_size;
  if (world_size > 1) {
    throw Error(
        "distill " + command + " runs as one process (WORLD_SIZE is " + std::to_string(world_size) +
        "): multi-process runs exist for train, kd, experts, eval, mtt, committee train, synth "
        "recover and diffusion sample; launch this one without torchrun");
  }
}

}  // namespace distill::cli
