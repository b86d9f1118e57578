#pragma once
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "src/config/config_io.h"
#include "src/config/options.h"
#include "src/io/run_folder.h"

namespace distill::models {
class Model;
}
namespace distill::train {
struct TrainState;
}
namespace distill::dist {
class ProcessGroup;
}

namespace distill::cli {

// What the command line said, beyond the settings.
struct Invocation {
  config::ConfigSource source;
  bool resume = false;     // --resume: continue the run in --out
  bool overwrite = false;  // --overwrite: replace the run in --out
  std::vector<std::string> positional;  // arguments after the command (e.g. `bench train`)
  // Set by claim_run_folder: --resume was given but --out holds nothing to continue from (a run
  // stopped before its first checkpoint), so the run starts from the beginning.
  bool nothing_to_resume = false;
  std::string label;  // "train", "synth-recover": names the default run folder

  // Whether the run continues from what --out holds.
  bool resumes() const { return resume && !nothing_to_resume; }
};

// A run's environment after the common settings were applied.
struct RunContext {
  c10::Device device = c10::Device(c10::kCPU);
  std::string out;
  uint64_t seed = 0;
  bool resume = false;  // Invocation::resumes()
  bool progress = true;  // false on ranks other than 0
  std::shared_ptr<io::RunFolderLock> lock;  // rank 0: the run folder's, for the command's life
  // The job's ranks (src/dist): world size 1 unless launched by torchrun or with RANK/WORLD_SIZE.
  // Only rank 0 writes the run folder's shared files and prints the summary.
  std::shared_ptr<dist::ProcessGroup> group;
  int64_t rank = 0;
  int64_t world_size = 1;
};

// Applies run.device/threads, joins the job's process group (run.dist; launcher variables),
// creates the run folder and (rank 0) writes the effective config.toml.
RunContext start_run(const config::RunOptions& run, const std::string& effective_config,
                     const Invocation& invocation);

// Settles run.out before a command reads any data, touching nothing: an empty run.out becomes a
// fresh runs/<label>/<UTC time> (printed); a folder holding a run needs --resume or --overwrite
// (exit 2 naming both). start_run then locks the folder and, for --overwrite, removes the old
// run. --resume on a folder with nothing to continue from sets
// invocation.nothing_to_resume (start_run then starts the run from the beginning and says so).
void claim_run_folder(config::RunOptions& run, Invocation& invocation);

// Error for --resume on a command that keeps no checkpoint or record to continue from (a silently
// ignored --resume would look like a resumed run).
void refuse_resume(const Invocation& invocation, const std::string& command);

// Error for commands that do not yet split their work over several processes (run under
// torchrun/WORLD_SIZE > 1 they would all write the same files). Call before start_run: it reads
// the launcher's variables and joins nothing.
void require_single_process(const std::string& command);

// One subcommand: its options are a struct with visit(); everything else derives from it.
struct Command {
  std::string name;
  std::string summary;
  std::string example;
  std::vector<std::pair<std::string, std::string>> shorthands;  // --flag -> settings key
  // Commands with sub-commands or paths after the name (bench, committee, synth, diffusion,
  // report) check their positional arguments themselves; the others refuse any.
  bool takes_positional = false;
  // Steps a command may be given but also runs without (`kd search`); anything else positional
  // is refused like a stray argument.
  std::vector<std::string> optional_steps;
  std::function<std::string()> help;                                  // settings with defaults
  std::function<std::string(const config::ConfigSource&)> dump;       // effective TOML
  std::function<void(Invocation&)> run;  // may settle resume/out (claim_run_folder)
};

// Reads Options from the invocation (presets first, then the user's settings).
template <class Options>
Options load_options(const config::ConfigSource& source) {
  Options options;
  config::read(source, options);
  if constexpr (Options::kHasPresets) {
    options.apply_presets();
    config::read(source, options);  // the user's settings win over the preset
  }
  return options;
}

template <class Options>
Command make_command(std::string name, std::string summary, std::string example,
                     std::vector<std::pair<std::string, std::string>> shorthands,
                     std::function<void(Options&, const Invocation&)> body) {
  Command command;
  command.name = std::move(name);
  command.summary = std::move(summary);
  command.example = std::move(example);
  command.shorthands = std::move(shorthands);
  command.help = [] {
    Options defaults;
    return config::help(defaults);
  };
  command.dump = [](const config::ConfigSource& source) {
    Options options = load_options<Options>(source);
    return config::dump(options);
  };
  command.run = [body](Invocation& invocation) {
    Options options = load_options<Options>(invocation.source);
    // Commands whose run section is RunOptions write a run folder (report writes none).
    if constexpr (std::is_same_v<decltype(Options::run), config::RunOptions>) {
      claim_run_folder(options.run, invocation);
    }
    body(options, invocation);
  };
  return command;
}

// Writes model.pt: arch, flat params/buffers, every tensor under its state_dict name and, when
// given, the input shape C,H,W the model was trained on (`input_shape`, checked when the file is
// loaded as a teacher) (train_command.cpp; also used by `distill kd` and `committee train`).
void save_model_file(const std::string& path, const models::Model& model,
                     const train::TrainState& state, const std::vector<int64_t>& input_shape = {});

// Writes RUN_DIR/report.html (`distill report RUN_DIR`) at the end of a run and returns what to
// print; a failure is one warning line on stderr, never a failed run (report_command.cpp).
std::string refresh_run_report(const std::string& run_dir);

// The subcommands, one source file each.
Command train_command();
Command subset_command();
Command import_command();
Command eval_command();
Command bench_command();
Command experts_command();
Command mtt_command();
Command kd_command();
Command report_command();
Command committee_command();
Command synth_command();
Command diffusion_command();

}  // namespace distill::cli
