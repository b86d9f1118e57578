// The run-folder rules (src/io/run_folder.h): what counts as a run and as progress, default
// folder names, and the lock between processes, including a holder killed by SIGKILL.
#include "src/io/run_folder.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "tests/support/test_support.h"

namespace distill::io {
namespace {

using testing::TempDir;
using testing::error_of;

TEST(RunFolder, RunFilesAreTheOnesARunWrites) {
  TempDir dir;
  EXPECT_TRUE(run_files_in(dir.path()).empty());
  EXPECT_TRUE(run_files_in(dir.file("missing")).empty());
  write_file_atomic(dir.file("notes.txt"), "mine");
  write_file_atomic(dir.file("syn.pt"), "x");
  EXPECT_TRUE(run_files_in(dir.path()).empty());
  write_file_atomic(dir.file("results.json"), "{}");
  write_file_atomic(dir.file("config.toml"), "");
  EXPECT_EQ(run_files_in(dir.path()), (std::vector<std::string>{"config.toml", "results.json"}));
}

// What a run writes before its first checkpoint is not progress: a --resume of it starts over.
TEST(RunFolder, ProgressIsAnythingBeyondConfigMetricsLockAndDebris) {
  TempDir dir;
  EXPECT_FALSE(holds_progress(dir.file("missing")));
  EXPECT_FALSE(holds_progress(dir.path()));
  for (const char* name : {"config.toml", "metrics.jsonl", ".distill.lock", "report.html",
                           "checkpoint.pt.tmp.1234"}) {
    write_file_atomic(dir.file(name), "x");
  }
  EXPECT_FALSE(holds_progress(dir.path()));
  make_dirs(dir.file("member_0"));  // a committee member started
  EXPECT_TRUE(holds_progress(dir.path()));
  std::filesystem::remove(dir.file("member_0"));
  write_file_atomic(dir.file("checkpoint.pt"), "x");
  EXPECT_TRUE(holds_progress(dir.path()));
}

TEST(RunFolder, DefaultFolderIsCommandAndUtcTimeAndNeverReused) {
  TempDir dir;
  // 2026-12-07 12:30:05 UTC.
  const auto when = std::chrono::system_clock::from_time_t(1796646605);
  const std::string first = unique_run_folder(dir.path(), "train", when);
  EXPECT_EQ(first, dir.path() + "/train/2026-12-07T12-30-05Z");
  make_dirs(first);
  const std::string second = unique_run_folder(dir.path(), "train", when);
  EXPECT_EQ(second, first + "-2");
  make_dirs(second);
  EXPECT_EQ(unique_run_folder(dir.path(), "train", when), first + "-3");
  EXPECT_EQ(unique_run_folder(dir.path(), "synth-recover", when),
            dir.path() + "/synth-recover/2026-12-07T12-30-05Z");
}

// A SIGKILL during an atomic write leaves NAME.tmp.PID; it is removed once PID is gone, never
// while its writer lives.
TEST(RunFolder, TemporariesOfDeadWritersAreRemoved) {
  TempDir dir;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const std::string dead = dir.file("checkpoint.pt.tmp." + std::to_string(child));
  const std::string alive = dir.file("metrics.jsonl.tmp." + std::to_string(::getpid()));
  write_file_atomic(dir.file("checkpoint.pt"), "good");
  for (const auto& path : {dead, alive}) {
    std::ofstream(path) << "half";
  }
  make_dirs(dir.file("member_0"));
  std::ofstream(dir.file("member_0/checkpoint.pt.tmp." + std::to_string(child))) << "half";
  EXPECT_EQ(remove_stale_temporaries(dir.path()), 1);
  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(alive));
  EXPECT_EQ(read_file(dir.file("checkpoint.pt")), "good");
  EXPECT_EQ(remove_stale_temporaries(dir.path()), 0);
}

TEST(RunFolder, ASecondLockIsRefusedNamingTheHolder) {
  TempDir dir;
  auto held = std::make_unique<RunFolderLock>(dir.file("run"));
  const std::string message = error_of([&] { RunFolderLock again(dir.file("run")); });
  EXPECT_NE(message.find("run folder '" + dir.file("run") + "' is in use by another distill "
                         "process (pid " + std::to_string(::getpid())),
            std::string::npos)
      << message;
  held.reset();
  EXPECT_EQ(error_of([&] { RunFolderLock after(dir.file("run")); }), "no error");
}

// A holder killed by SIGKILL leaves its lock file behind; the next run takes it over.
TEST(RunFolder, ALockLeftByAKilledProcessIsTakenOver) {
  TempDir dir;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    RunFolderLock lock(dir.file("run"));
    char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(ready[1], &byte, 1);
    for (;;) ::pause();
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  const std::string refused = error_of([&] { RunFolderLock lock(dir.file("run")); });
  EXPECT_NE(refused.find("(pid " + std::to_string(child) + " on "), std::string::npos) << refused;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_TRUE(std::filesystem::exists(dir.file("run/.distill.lock")));
  EXPECT_EQ(error_of([&] { RunFolderLock lock(dir.file("run")); }), "no error");
}

}  // namespace
}  // namespace distill::io
