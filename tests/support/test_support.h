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

// The `distill` binary under test (DISTILL_BIN from ctest), and the source tree.
std::string distill_binary();
std::string source_dir();

// The message of the exception `f` throws, or "no error" (bad-input tests compare messages).
std::string error_of(const std::function<void()>& f);

// Writes bytes to a file (fixtures).
void write_bytes(const std::string& path, const std::string& bytes);

}  // namespace distill::testing

// Skips the current test when the reference Python is missing.
#define DISTILL_REQUIRE_PYTHON()                                                          \
  do {                                                                                    \
    if (::distill::testing::reference_python().empty())                                   \
      GTEST_SKIP() << "no /usr/bin/python3 with torch (install python3-torch; tests/run.sh " \
                      "does)";                                                            \
  } while (0)
