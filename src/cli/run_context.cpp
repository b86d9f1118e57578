#include <ATen/Parallel.h>

#include <chrono>
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
  std::optional<std::string> text;  // none: the run wrote the folder's first config.toml
};
std::optional<ReplacedConfig> replaced_config;  // set by start_run on rank 0

}  // namespace

void restore_replaced_config() {
  if (!replaced_config) return;
  try {
    if (replaced_config->text) {
      io::write_file_atomic(replaced_config->path, *replaced_config->text);
    } else if (!io::holds_progress(std::filesystem::path(replaced_config->path).parent_path())) {
      // Refused before it did anything: no run is left behind to be refused or resumed later.
      std::filesystem::remove(replaced_config->path);
      std::filesystem::remove(std::filesystem::path(replaced_config->path).parent_path() /
                              "metrics.jsonl");
    }
  } catch (const std::exception& e) {
    std::cerr << "distill: warning: could not restore " << replaced_config->path << ": " << e.what()
              << "\n";
  }
  replaced_config.reset();
}

namespace {

std::string joined(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// --overwrite: the old run goes, so nothing of it (a checkpoint, finished experts or students)
// can be continued by a later --resume of the new run. Only a folder a run wrote (config.toml
// first) is emptied; elsewhere only the run files themselves are removed.
void remove_old_run(const std::string& folder) {
  namespace fs = std::filesystem;
  const std::vector<std::string> run_files = io::run_files_in(folder);
  if (run_files.empty()) return;
  std::vector<fs::path> doomed;
  if (fs::exists(fs::path(folder) / "config.toml")) {
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.path().filename() != io::RunFolderLock::kFileName) doomed.push_back(entry.path());
    }
  } else {
    for (const auto& name : run_files) doomed.push_back(fs::path(folder) / name);
  }
  for (const auto& path : doomed) fs::remove_all(path);
  std::cerr << "distill: --overwrite: removed the earlier run in " << folder << " ("
            << doomed.size() << " entries)\n";
}

}  // namespace

void claim_run_folder(config::RunOptions& run, Invocation& invocation) {
  if (invocation.resume && invocation.overwrite) {
    throw Error("--resume and --overwrite contradict each other: --resume continues the run in "
                "--out, --overwrite replaces it");
  }
  const dist::LaunchEnv launch = dist::read_launch_env();
  if (run.out.empty()) {
    if (invocation.resume) throw Error("--resume needs --out: the run folder to continue");
    if (launch.world_size > 1) {
      throw Error("a multi-process run needs --out (run.out): its ranks must share one folder, "
                  "and each would pick its own default");
    }
    run.out = io::unique_run_folder("runs", invocation.label, std::chrono::system_clock::now());
    std::cerr << "distill: run folder " << run.out << "\n";
  }
  if (invocation.resume && !io::holds_progress(run.out)) invocation.nothing_to_resume = true;
  // Rank 0 checks for the whole job: the others would find the config.toml rank 0 just wrote.
  if (launch.rank != 0) return;
  const std::vector<std::string> found = io::run_files_in(run.out);
  if (!found.empty() && !invocation.resume && !invocation.overwrite) {
    throw Error("--out " + run.out + " already holds a run (" + joined(found) +
                "): continue it with --resume, or replace it with --overwrite; nothing was "
                "changed");
  }
}

RunContext start_run(const config::RunOptions& run, const std::string& effective_config,
                     const Invocation& invocation) {
  RunContext context;
  context.resume = invocation.resumes();
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
    // Held until the command ends; a second process writing this folder is refused here (the
    // folder check in claim_run_folder cannot see a run that has not written its config yet).
    context.lock = std::make_shared<io::RunFolderLock>(context.out);
    if (invocation.overwrite) remove_old_run(context.out);
    if (const int stale = io::remove_stale_temporaries(context.out); stale > 0) {
      std::cerr << "distill: removed " << stale << " unfinished temporary file(s) of a killed run "
                << "from " << context.out << "\n";
    }
    if (invocation.resume && invocation.nothing_to_resume) {
      std::cerr << "distill: --resume: " << context.out
                << " holds nothing to continue from (the run stopped before its first "
                   "checkpoint); starting it from the beginning\n";
    }
    const std::string config_path = context.out + "/config.toml";
    replaced_config = ReplacedConfig{config_path, std::nullopt};
    if (std::filesystem::exists(config_path)) replaced_config->text = io::read_file(config_path);
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
