// distill: one binary, one subcommand per pipeline stage. This file only parses and dispatches.
#include <boost/program_options.hpp>

#include <algorithm>
#include <iostream>

#include "src/cli/command.h"
#include "src/cli/config_rollback.h"
#include "src/core/build_info.h"
#include "src/core/error.h"
#include "src/core/runtime.h"

namespace po = boost::program_options;
using distill::cli::Command;

namespace {

std::vector<Command> commands() {
  return {distill::cli::train_command(),   distill::cli::subset_command(),
          distill::cli::import_command(),  distill::cli::eval_command(),
          distill::cli::experts_command(), distill::cli::mtt_command(),
          distill::cli::bench_command(),   distill::cli::kd_command(),
          distill::cli::report_command(),  distill::cli::committee_command(),
          distill::cli::synth_command(),   distill::cli::diffusion_command()};
}

void print_usage(std::ostream& out, const std::vector<Command>& all) {
  out << "usage: distill <command> [--config file.toml] [--set key.path=value ...]\n"
         "                         [--device auto|cpu|cuda[:N]] [--threads N] [--seed N] [--out DIR]\n"
         "       distill config --dump <command> [same options]\n"
         "       distill <command> --help\n"
         "       distill --version [--device D]   build, LibTorch, CUDA and devices\n\ncommands:\n";
  for (const auto& c : all) out << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << "\n";
  out << "  config    print the effective settings of a command as TOML (--dump)\n\nexamples:\n";
  for (const auto& c : all) out << "  " << c.example << "\n";
}

// A shorthand's key may name the sub-command: "synth.{0}.syn" is synth.relabel.syn for
// `synth relabel --syn X` and synth.export.syn for `synth export --syn X`.
std::string with_step(std::string key, const std::string& step) {
  if (const size_t at = key.find("{0}"); at != std::string::npos) key.replace(at, 3, step);
  return key;
}

po::options_description common_options(const Command& command) {
  po::options_description options("options");
  // clang-format off
  options.add_options()
      ("help,h", "list this command's settings with their defaults")
      ("config,c", po::value<std::string>(), "TOML settings file")
      ("set,s", po::value<std::vector<std::string>>()->composing(), "override: key.path=value (repeatable)")
      ("device", po::value<std::string>(), "auto | cpu | cuda | cuda:N  (run.device)")
      ("threads", po::value<std::string>(), "CPU threads, 0 = all cores  (run.threads)")
      ("seed", po::value<std::string>(), "random seed  (run.seed)")
      ("out,o", po::value<std::string>(), "run folder  (run.out)")
      ("no-progress", "no progress bar  (run.progress = false)")
      ("resume", "continue the run in --out (from its checkpoint; eval: after its recorded students)")
      ("overwrite", "replace the run in --out (its files are removed first)")
      ("dist-backend", po::value<std::string>(), "multi-process backend: auto | gloo | nccl  (run.dist.backend)");
  // clang-format on
  for (const auto& [flag, key] : command.shorthands) {
    options.add_options()(flag.c_str(), po::value<std::string>(),
                          ("shorthand for --set " + with_step(key, "<step>") + "=...").c_str());
  }
  return options;
}

// `--out --threads 1` would otherwise make a folder named "--threads" and run on every core.
void refuse_flags_as_values(const po::variables_map& vm) {
  for (const auto& [name, value] : vm) {
    if (name == "positional") continue;
    std::vector<std::string> texts;
    if (const auto* one = boost::any_cast<std::string>(&value.value())) texts.push_back(*one);
    if (const auto* many = boost::any_cast<std::vector<std::string>>(&value.value())) texts = *many;
    for (const auto& text : texts) {
      if (text.rfind("--", 0) == 0) {
        throw distill::Error("--" + name + " needs a value, found the option '" + text +
                             "' after it");
      }
    }
  }
}

bool is_word(const std::string& text) {
  return !text.empty() && std::all_of(text.begin(), text.end(),
                                      [](char c) { return (c >= 'a' && c <= 'z') || c == '-'; });
}

// A command that takes no positional arguments got one: say so, and which option it most likely
// meant (`distill eval runs/x/syn.pt` scored random real images only, before this check).
std::string stray_argument_message(const Command& command, const std::string& argument) {
  std::string takes = "takes no positional arguments";
  for (const auto& step : command.optional_steps) {
    takes += (takes.back() == 's' ? " but " : ", ") + std::string("'") + step + "'";
  }
  std::string message = "distill " + command.name + " " + takes + ", found '" + argument + "'";
  const auto ends_with = [&](const char* suffix) {
    const std::string s = suffix;
    return argument.size() >= s.size() && argument.compare(argument.size() - s.size(), s.size(), s) == 0;
  };
  std::string flag;
  if (ends_with(".toml")) {
    flag = "config";
  } else {
    // The command's shorthands that take a file or folder, most specific first.
    for (const char* candidate : {"syn", "teacher", "buffer", "images", "committee"}) {
      for (const auto& shorthand : command.shorthands) {
        if (flag.empty() && shorthand.first == candidate) flag = candidate;
      }
    }
  }
  if (!flag.empty()) message += " (did you mean --" + flag + " " + argument + "?)";
  return message + "; settings are options: see distill " + command.name + " --help";
}

distill::cli::Invocation parse(const Command& command, const std::vector<std::string>& args,
                               bool* wants_help) {
  po::options_description options = common_options(command);
  po::options_description hidden;
  hidden.add_options()("positional", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("positional", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
  po::notify(vm);
  refuse_flags_as_values(vm);

  distill::cli::Invocation invocation;
  *wants_help = vm.count("help") > 0;
  if (vm.count("config")) {
    invocation.source = distill::config::ConfigSource::from_file(vm["config"].as<std::string>());
  }
  std::vector<std::string> positional_args;
  if (vm.count("positional")) positional_args = vm["positional"].as<std::vector<std::string>>();
  auto shorthand = [&](const std::string& flag, const std::string& key) {
    if (!vm.count(flag)) return;
    if (key.find("{0}") != std::string::npos && positional_args.empty()) {
      throw distill::Error("--" + flag + " belongs to a step of distill " + command.name +
                           ": name the step first (distill " + command.name + " <step> --" + flag +
                           " ...)");
    }
    const std::string step = positional_args.empty() ? "" : positional_args.front();
    invocation.source.set(with_step(key, step) + "=" + vm[flag].as<std::string>());
  };
  shorthand("device", "run.device");
  shorthand("threads", "run.threads");
  shorthand("seed", "run.seed");
  shorthand("out", "run.out");
  shorthand("dist-backend", "run.dist.backend");
  if (vm.count("no-progress")) invocation.source.set("run.progress=false");
  for (const auto& [flag, key] : command.shorthands) shorthand(flag, key);
  if (vm.count("set")) {
    for (const auto& assignment : vm["set"].as<std::vector<std::string>>()) invocation.source.set(assignment);
  }
  invocation.resume = vm.count("resume") > 0;
  invocation.overwrite = vm.count("overwrite") > 0;
  invocation.positional = positional_args;
  // A command with optional steps (`kd` and `kd search`) runs without one, and takes nothing
  // else: anything other than a step is a stray argument.
  const bool known_step =
      !invocation.positional.empty() &&
      std::find(command.optional_steps.begin(), command.optional_steps.end(),
                invocation.positional.front()) != command.optional_steps.end();
  if ((!command.takes_positional || !command.optional_steps.empty()) &&
      !invocation.positional.empty() && !known_step) {
    throw distill::Error(stray_argument_message(command, invocation.positional.front()));
  }
  invocation.label = command.name;
  // Sub-commands name their own default folder: runs/synth-recover/..., runs/diffusion-train/...
  if (command.takes_positional && !invocation.positional.empty() &&
      is_word(invocation.positional.front())) {
    invocation.label += "-" + invocation.positional.front();
  }
  return invocation;
}

const Command* find_command(const std::vector<Command>& all, const std::string& name) {
  for (const auto& c : all) {
    if (c.name == name) return &c;
  }
  std::vector<std::string> names;
  for (const auto& c : all) names.push_back(c.name);
  names.push_back("config");
  std::string hint = distill::config::closest_match(name, names);
  throw distill::Error("unknown command '" + name + "'" +
                       (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                       "; run `distill --help` for the list");
}

// `distill --version`, optionally with `--device D`: the build and what it can run on; the device
// is checked as a command would check it (`distill --device cuda` without a GPU: exit 2).
int run_version(const std::vector<std::string>& args) {
  std::string device;
  bool version = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--version") {
      version = true;
    } else if (args[i] == "--device" && i + 1 < args.size()) {
      device = args[++i];
    } else {
      throw distill::Error("unexpected '" + args[i] +
                           "' before a command: expected distill --version [--device D] or "
                           "distill <command> [options]");
    }
  }
  if (!device.empty()) {
    c10::Device resolved = distill::resolve_device(device);
    if (!version) {
      throw distill::Error("--device " + device + " (" + resolved.str() +
                           " is available) needs a command: distill <command> --device " + device);
    }
  }
  std::cout << distill::describe(distill::build_info());
  return 0;
}

int run_main(int argc, char** argv) {
  const std::vector<Command> all = commands();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(args.empty() ? std::cerr : std::cout, all);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version" || args[0] == "--device") return run_version(args);
  std::string name = args[0];
  args.erase(args.begin());
  bool dump = false;
  if (name == "config") {
    if (args.empty() || args[0] != "--dump" || args.size() < 2) {
      throw distill::Error("usage: distill config --dump <command> [--config f.toml] [--set k=v]");
    }
    dump = true;
    name = args[1];
    args.erase(args.begin(), args.begin() + 2);
  }
  const Command& command = *find_command(all, name);
  bool wants_help = false;
  distill::cli::Invocation invocation = parse(command, args, &wants_help);
  if (wants_help) {
    std::cout << "distill " << command.name << ": " << command.summary << "\n\n"
              << common_options(command) << "\nsettings (TOML keys; --set key=value):\n"
              << command.help() << "\nexample:\n  " << command.example << "\n";
    return 0;
  }
  if (dump) {
    std::cout << command.dump(invocation.source);
    return 0;
  }
  command.run(invocation);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  distill::tune_allocator();
  distill::install_interrupt_handler();
  try {
    return run_main(argc, argv);
  } catch (const distill::Error& e) {
    distill::cli::restore_replaced_config();
    std::cerr << "distill: error: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "distill: error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const distill::Interrupted& e) {
    std::cerr << "distill: " << e.what() << "\n";
    return 130;
  } catch (const std::exception& e) {
    std::string what = e.what();
    std::cerr << "distill: failed: " << what.substr(0, what.find('\n')) << "\n";
    return 1;
  }
}
