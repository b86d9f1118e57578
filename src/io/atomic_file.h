#pragma once
#include <string>
#include <string_view>

namespace distill::io {

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a reader
// (or a crash) never sees a half-written file. Creates parent folders.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Reads a whole file; Error naming the path when it is missing or unreadable.
std::string read_file(const std::string& path);

// Creates a folder (and parents); Error naming it on failure.
void make_dirs(const std::string& path);

}  // namespace distill::io
