// Run folders are safe (issue 24): a finished run is never replaced without --resume or
// --overwrite, two processes never write one folder, stray arguments are errors, and a run
// without --out gets a fresh folder of its own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "src/io/atomic_file.h"
#include "tests/support/cli_support.h"
#include "tests/support/test_support.h"

namespace distill {
namespace {

namespace fs = std::filesystem;
using testing::CommandResult;
using testing::TempDir;
using testing::contains;
using testing::distill_cli;
using testing::tiny_flags;
using testing::write_tiny_dataset;

// Every file under `folder` with its bytes.
std::map<std::string, std::string> snapshot(const std::string& folder) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(folder)) {
    if (entry.is_regular_file()) files[entry.path().string()] = io::read_file(entry.path().string());
  }
  return files;
}

std::string tiny_train(const std::string& data) {
  return "train " + tiny_flags(data) + "--set model.width=8 --set model.depth=1 ";
}

// A small tmpfs of the test's own, for the disk-full and read-only cases (mounting needs root,
// which this project's CI machines have).
class SmallFileSystem {
 public:
  SmallFileSystem(const std::string& path, const std::string& size) : path_(path) {
    fs::create_directories(path);
    mounted_ = testing::run_command("mount -t tmpfs -o size=" + size + " tmpfs " + path +
                                    " 2>&1").exit_code == 0;
  }
  ~SmallFileSystem() {
    if (mounted_) testing::run_command("umount -l " + path_ + " 2>&1");
  }
  bool mounted() const { return mounted_; }
  bool remount_read_only() const {
    return testing::run_command("mount -o remount,ro " + path_ + " 2>&1").exit_code == 0;
  }
  // Takes every free byte (large writes, then page by page, then byte by byte).
  void fill(const std::string& file) const {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    for (size_t chunk : {size_t(1) << 16, size_t(4096), size_t(1)}) {
      const std::string bytes(chunk, 'x');
      while (::write(fd, bytes.data(), chunk) == static_cast<ssize_t>(chunk)) {
      }
    }
    ::close(fd);
  }

 private:
  std::string path_;
  bool mounted_ = false;
};

// Disk full or a read-only file system mid-way: a clear error naming the file and the cause, no
// temporary left behind, the earlier run's files byte for byte as they were (issue 24).
TEST(RunFolderCli, DiskFullOrReadOnlyLeavesTheEarlierRunIntact) {
  TempDir dir;
  SmallFileSystem small(dir.file("small"), "4m");
  // Not a tool tests/run.sh can install: a machine that forbids mounts skips this case.
  if (!small.mounted()) GTEST_SKIP() << "no permission to mount a tmpfs (needs root)";
  const std::string data = write_tiny_dataset(dir);
  const std::string out = dir.file("small/run");
  ASSERT_EQ(distill_cli(tiny_train(data) + "--epochs 1 --out " + out).exit_code, 0);
  // The lock file names its holder (pid, host): every other byte must stay.
  auto run_files = [&] {
    auto files = snapshot(out);
    files.erase(out + "/.distill.lock");
    return files;
  };
  const auto before = run_files();
  small.fill(dir.file("small/filler"));
  CommandResult full = distill_cli(tiny_train(data) + "--epochs 2 --resume --out " + out);
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_TRUE(contains(full.output, "cannot write '" + out + "/")) << full.output;
  EXPECT_TRUE(contains(full.output, "No space left on device (disk full?); the earlier file, if "
                                    "any, is unchanged"))
      << full.output;
  EXPECT_TRUE(run_files() == before) << "a full disk changed the run";

  fs::remove(dir.file("small/filler"));
  ASSERT_TRUE(small.remount_read_only());
  CommandResult read_only = distill_cli(tiny_train(data) + "--epochs 2 --resume --out " + out);
  EXPECT_NE(read_only.exit_code, 0) << read_only.output;
  EXPECT_TRUE(contains(read_only.output, "Read-only file system")) << read_only.output;
  EXPECT_TRUE(contains(read_only.output, out)) << read_only.output;
  EXPECT_TRUE(run_files() == before) << "a read-only file system changed the run";
}

TEST(RunFolderCli, AFinishedRunIsReplacedOnlyWithOverwrite) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string out = dir.file("run");
  ASSERT_EQ(distill_cli(tiny_train(data) + "--epochs 1 --out " + out).exit_code, 0);
  const auto before = snapshot(out);
  ASSERT_GE(before.size(), 5u);
  for (const std::string& command :
       {tiny_train(data) + "--epochs 1", "subset --ipc 1 " + tiny_flags(data),
        "experts --set experts.num_experts=1 " + tiny_flags(data),
        "eval --set eval.runs=1 " + tiny_flags(data)}) {
    CommandResult r = distill_cli(command + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "--out " + out + " already holds a run (config.toml, "
                                   "checkpoint.pt, results.json, metrics.jsonl): continue it "
                                   "with --resume, or replace it with --overwrite"))
        << r.output;
    EXPECT_EQ(snapshot(out), before) << command << " touched the run";
  }
  CommandResult both = distill_cli(tiny_train(data) + "--resume --overwrite --out " + out);
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_TRUE(contains(both.output, "--resume and --overwrite contradict each other")) << both.output;
  EXPECT_EQ(snapshot(out), before);

  // --overwrite replaces the run: a subset leaves no train checkpoint behind to be resumed.
  CommandResult replaced = distill_cli("subset --ipc 1 " + tiny_flags(data) + "--overwrite --out " + out);
  ASSERT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_TRUE(contains(replaced.output, "--overwrite: removed the earlier run in " + out))
      << replaced.output;
  EXPECT_FALSE(fs::exists(out + "/checkpoint.pt"));
  EXPECT_FALSE(fs::exists(out + "/model.pt"));
  EXPECT_TRUE(fs::exists(out + "/syn.pt"));
}

// A second process is refused while the first writes the folder; once the first is killed
// (SIGKILL: its lock file stays behind) the folder is free again.
TEST(RunFolderCli, TwoWritersOfOneFolderOneIsRefused) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string out = dir.file("run");
  CommandResult started = testing::run_command(
      testing::distill_binary() + " " + tiny_train(data) + "--epochs 1000000 --out " + out +
      " > " + dir.file("first.log") + " 2>&1 & echo $!");
  const int pid = std::stoi(started.output);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(out + "/checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(fs::exists(out + "/checkpoint.pt")) << io::read_file(dir.file("first.log"));
  CommandResult second = distill_cli(tiny_train(data) + "--epochs 1 --resume --out " + out);
  EXPECT_EQ(second.exit_code, 2) << second.output;
  EXPECT_TRUE(contains(second.output, "run folder '" + out + "' is in use by another distill "
                                      "process (pid " + std::to_string(pid) + " on "))
      << second.output;
  ::kill(pid, SIGKILL);
  testing::run_command("while kill -0 " + std::to_string(pid) + " 2>/dev/null; do sleep 0.05; done");
  ASSERT_TRUE(fs::exists(out + "/.distill.lock"));
  CommandResult after = distill_cli(tiny_train(data) + "--epochs 1 --overwrite --out " + out);
  EXPECT_EQ(after.exit_code, 0) << after.output;
}

TEST(RunFolderCli, StrayArgumentsAndSwallowedValuesAreErrors) {
  TempDir dir;
  CommandResult syn = distill_cli("eval runs/x/syn.pt");
  EXPECT_EQ(syn.exit_code, 2);
  EXPECT_TRUE(contains(syn.output, "distill eval takes no positional arguments, found "
                                   "'runs/x/syn.pt' (did you mean --syn runs/x/syn.pt?)"))
      << syn.output;
  CommandResult toml = distill_cli("mtt settings.toml");
  EXPECT_EQ(toml.exit_code, 2);
  EXPECT_TRUE(contains(toml.output, "(did you mean --config settings.toml?)")) << toml.output;
  CommandResult teacher = distill_cli("kd runs/t/model.pt");
  EXPECT_TRUE(contains(teacher.output, "(did you mean --teacher runs/t/model.pt?)"))
      << teacher.output;

  // `--out --threads 1`: no folder named "--threads", no run on every core.
  CommandResult swallowed = testing::run_command("cd " + dir.path() + " && " +
                                                 testing::distill_binary() +
                                                 " subset --out --threads 1");
  EXPECT_EQ(swallowed.exit_code, 2);
  EXPECT_TRUE(contains(swallowed.output, "--out needs a value, found the option '--threads' after it"))
      << swallowed.output;
  EXPECT_TRUE(fs::is_empty(dir.path()));

  CommandResult folder = distill_cli("subset --config " + dir.path());
  EXPECT_EQ(folder.exit_code, 2);
  EXPECT_TRUE(contains(folder.output, "config file '" + dir.path() +
                                          "' is a folder; --config expects a TOML file"))
      << folder.output;

  // --syn names the set of the step it is given to.
  CommandResult dump = distill_cli("config --dump synth export --syn x.pt");
  ASSERT_EQ(dump.exit_code, 0) << dump.output;
  EXPECT_TRUE(contains(dump.output, "[synth.export]\n    syn = 'x.pt'\n")) << dump.output;
  EXPECT_TRUE(contains(dump.output, "[synth.relabel]\n    T = 4.0\n    form = 'probabilities'\n    syn = ''\n"))
      << dump.output;
  // --ipc names the IPC of the step it is given to, too.
  CommandResult infer_dump = distill_cli("config --dump synth infer --ipc 7");
  ASSERT_EQ(infer_dump.exit_code, 0) << infer_dump.output;
  EXPECT_TRUE(contains(infer_dump.output, "[synth.infer]\n    T = 30.0")) << infer_dump.output;
  EXPECT_TRUE(contains(infer_dump.output, "    ipc = 7\n")) << infer_dump.output;
  CommandResult recover = distill_cli("synth recover --syn x.pt");
  EXPECT_EQ(recover.exit_code, 2);
  EXPECT_TRUE(contains(recover.output, "synth.recover.syn")) << recover.output;
}

TEST(RunFolderCli, WithoutOutEachRunGetsAFreshFolder) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  const std::string subset = "cd " + dir.path() + " && " + testing::distill_binary() +
                             " subset --ipc 1 " + tiny_flags(data);
  CommandResult first = testing::run_command(subset);
  CommandResult second = testing::run_command(subset);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_TRUE(contains(first.output, "distill: run folder runs/subset/")) << first.output;
  std::vector<std::string> runs;
  for (const auto& entry : fs::directory_iterator(dir.file("runs/subset"))) {
    EXPECT_TRUE(fs::exists(entry.path() / "syn.pt")) << entry.path();
    runs.push_back(entry.path().string());
  }
  EXPECT_EQ(runs.size(), 2u);
  CommandResult resume = distill_cli("train --resume");
  EXPECT_EQ(resume.exit_code, 2);
  EXPECT_TRUE(contains(resume.output, "--resume needs --out: the run folder to continue"))
      << resume.output;
}

// A job preempted before its first checkpoint is restarted with its own command line.
TEST(RunFolderCli, ResumeWithNothingToContinueStartsOver) {
  TempDir dir;
  const std::string data = write_tiny_dataset(dir);
  CommandResult fresh = distill_cli(tiny_train(data) + "--epochs 1 --resume --out " + dir.file("new"));
  ASSERT_EQ(fresh.exit_code, 0) << fresh.output;
  EXPECT_TRUE(contains(fresh.output, "--resume: " + dir.file("new") +
                                         " holds nothing to continue from (the run stopped "
                                         "before its first checkpoint); starting it from the "
                                         "beginning"))
      << fresh.output;
  ASSERT_EQ(distill_cli(tiny_train(data) + "--epochs 1 --out " + dir.file("straight")).exit_code, 0);
  EXPECT_EQ(io::read_file(dir.file("new/model.pt")), io::read_file(dir.file("straight/model.pt")));
  // eval keeps students, not checkpoints: one stopped before its first student starts over too.
  CommandResult eval = distill_cli("eval --set eval.runs=1 --epochs 2 --ipc 2 " + tiny_flags(data) +
                                   "--resume --out " + dir.file("eval"));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_TRUE(contains(eval.output, "starting it from the beginning")) << eval.output;
  EXPECT_TRUE(fs::exists(dir.file("eval/results.json")));
}

}  // namespace
}  // namespace distill

namespace distill {
namespace {

// Every command checks its settings before it reads data: with the data path pointing nowhere, a
// bad value is what the error names (a command that loaded first would name the path instead).
// The run folder is not created.
TEST(RunFolderCli, BadSettingsAreRefusedBeforeAnyDataIsRead) {
  TempDir dir;
  const std::string nowhere = " --set data.path=" + dir.file("no-data") + " --out " + dir.file("o");
  // The cases live in one file, shared with experiments/reliability/parse_time.sh.
  const std::string list = testing::source_dir() + "/tests/src/cli/data/bad_settings.tsv";
  std::ifstream file(list);
  ASSERT_TRUE(file) << list;
  std::vector<std::pair<std::string, std::string>> cases;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    cases.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  ASSERT_GE(cases.size(), 32u);
  for (const auto& [args, message] : cases) {
    CommandResult r = distill_cli(args + nowhere);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, message)) << args << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir.file("o"))) << args;
  }
}

}  // namespace
}  // namespace distill
