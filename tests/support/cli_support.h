#pragma once
#include <string>

#include "tests/support/test_support.h"

namespace distill::testing {

// Runs the `distill` binary under test with `args` (shell syntax), capturing its output.
CommandResult distill_cli(const std::string& args);

bool contains(const std::string& text, const std::string& part);

// A tiny separable dataset of 1x8x8 images (60 train, 30 test, `classes` <= 4) as a `.pt` tensor
// file in `dir`; returns its path. Class k brightens `band_rows` rows from row 2k.
std::string write_tiny_dataset(const TempDir& dir, int64_t classes = 3, int64_t band_rows = 3);

// The settings that point a command at write_tiny_dataset's file, one thread, no progress bar.
std::string tiny_flags(const std::string& data);

}  // namespace distill::testing
