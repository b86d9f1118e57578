#include <ATen/Parallel.h>

#include <iostream>

#include "src/cli/command.h"
#include "src/core/runtime.h"
#include "src/io/atomic_file.h"

namespace distill::cli {

RunContext start_run(const config::RunOptions& run, const std::string& effective_config) {
  RunContext context;
  context.device = resolve_device(run.device);
  set_threads(run.threads);
  context.out = run.out;
  context.seed = static_cast<uint64_t>(run.seed);
  context.progress = run.progress;
  io::make_dirs(context.out);
  io::write_file_atomic(context.out + "/config.toml", effective_config);
  return context;
}

}  // namespace distill::cli
