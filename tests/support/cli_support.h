#pragma once
#include <string>

#include "tests/support/test_support.h"

namespace distill::testing {

// Runs the `distill` binary under test with `args` (shell syntax), capturing its output.
CommandResult distill_cli(const std::string& args);

bool contains(const std::string& text, const std::string& part);

// A tiny separable 3-class dataset of 1x8x8 images (60 train, 30 test) as a `.pt` tensor file in
// `dir`; returns its path. Each class brightens its own band of rows.
std::string write_tiny_dataset(const TempDir& dir);

// The settings that point a command at write_tiny_dataset's file, one thread, no progress bar.
std::string tiny_flags(const std::string& data);

}  // namespace distill::testing
