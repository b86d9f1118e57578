#include "src/io/atomic_file.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "src/core/error.h"

namespace distill::io {

namespace fs = std::filesystem;

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error("cannot create folder '" + path + "': " + ec.message());
}

namespace {

// Fault injection for experiments/reliability/kill_resume.sh: DISTILL_FAULT_WRITE_DELAY_MS=N holds
// every atomic write for N ms halfway through its temporary, so that kills land inside writes
// (a write of a small file otherwise lasts too short for a random kill to find it).
int64_t write_delay_ms() {
  static const int64_t delay = [] {
    const char* value = std::getenv("DISTILL_FAULT_WRITE_DELAY_MS");
    return value ? std::max<int64_t>(0, std::atoll(value)) : 0;
  }();
  return delay;
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view bytes) {
  fs::path target(path);
  if (target.has_parent_path()) make_dirs(target.parent_path().string());
  std::string temp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw RuntimeFailure("cannot write '" + path + "' (its temporary '" + temp +
                           "'): " + std::strerror(errno));
    }
    errno = 0;
    const size_t half = write_delay_ms() > 0 ? bytes.size() / 2 : bytes.size();
    out.write(bytes.data(), static_cast<std::streamsize>(half));
    if (half < bytes.size()) {
      out.flush();  // a torn temporary on disk while the write is held
      std::this_thread::sleep_for(std::chrono::milliseconds(write_delay_ms()));
      out.write(bytes.data() + half, static_cast<std::streamsize>(bytes.size() - half));
    }
    out.flush();
    if (!out) {
      // errno is the failed write's (ENOSPC on a full disk, EDQUOT over a quota, EIO).
      const std::string why = errno != 0 ? std::strerror(errno) : "the write failed";
      out.close();
      std::remove(temp.c_str());
      throw RuntimeFailure("cannot write '" + path + "': " + why +
                           " (disk full?); the earlier file, if any, is unchanged");
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    std::remove(temp.c_str());
    throw RuntimeFailure("cannot rename '" + temp + "' to '" + path + "': " + why);
  }
}

std::string read_file(const std::string& path) {
  // A folder opens as an empty stream on Linux and would read as an empty file.
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error("'" + path + "' is a folder, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error("cannot open '" + path + "': " +
                (fs::exists(path) ? std::string("not readable") : std::string("no such file")));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace distill::io
