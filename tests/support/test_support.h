#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace distill::testing {

// A fresh folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The Python with torch used as a test-only reference (Debian python3-torch in /usr/bin).
// Empty when none is found; tests then GTEST_SKIP with a message.
std::string reference_python();

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing its output.
CommandResult run_command(const std::string& command);

// Runs tests/python/<script> with the reference Python; fails the test on a non-zero exit.
CommandResult run_python_script(const std::string& script, const std::vector<std::string>& args);

// The `distill` binary under test, the source tree and the torchrun launcher of this build's
// LibTorch (compiled in by tests/CMakeLists.txt; DISTILL_BIN, DISTILL_SOURCE_DIR and
// DISTILL_TORCHRUN override them).
std::string distill_binary();
std::string source_dir();
std::string torchrun();

// The message of the exception `f` throws, or "no error" (bad-input tests compare messages).
std::string error_of(const std::function<void()>& f);

// Writes bytes to a file (fixtures).
void write_bytes(const std::string& path, const std::string& bytes);

// True under DISTILL_TESTS_NEED_TOOLS=1 (tests/run.sh sets it: it installs every tool the suite
// compares against), where a missing tool fails a test instead of skipping it.
bool tools_required();

}  // namespace distill::testing

// Skips the current test when a tool it needs (`what`: the tool and how to get it) is missing;
// fails it instead when tools_required(), so a run that installed everything cannot pass hollow.
#define DISTILL_REQUIRE_TOOL(available, what)                                          \
  do {                                                                                 \
    if (!(available)) {                                                                \
      if (::distill::testing::tools_required())                                        \
        FAIL() << "missing " << what << " (DISTILL_TESTS_NEED_TOOLS=1: it must be here)"; \
      GTEST_SKIP() << "missing " << what;                                              \
    }                                                                                  \
  } while (0)

// Skips (or, under DISTILL_TESTS_NEED_TOOLS=1, fails) the current test without the reference Python.
#define DISTILL_REQUIRE_PYTHON()                                         \
  DISTILL_REQUIRE_TOOL(!::distill::testing::reference_python().empty(), \
                       "/usr/bin/python3 with torch (Debian python3-torch; tests/run.sh installs it)")
