#include "src/io/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/core/error.h"

namespace distill::io {

namespace fs = std::filesystem;

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error("cannot create folder '" + path + "': " + ec.message());
}

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
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
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
