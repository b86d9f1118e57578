#pragma once
#include <stdexcept>
#include <string>

namespace distill {

// Bad input or usage: the CLI maps it to exit code 2. The message names the file/key/value,
// what was expected and what was found.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A failure while running (non-finite loss, I/O failure mid-run): exit code 1.
class RuntimeFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The user pressed Ctrl-C; the run saved a checkpoint before this was thrown.
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace distill
