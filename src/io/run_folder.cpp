#include "src/io/run_folder.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::io {
namespace fs = std::filesystem;

namespace {

// What every run writes first (config.toml) or last (results), and what continues it.
const char* const kRunFiles[] = {"config.toml", "checkpoint.pt", "results.json", "metrics.jsonl",
                                 "students.jsonl"};

// Entries that are not progress: what a run writes before its first checkpoint, and debris.
bool is_bookkeeping(const std::string& name) {
  return name == "config.toml" || name == "metrics.jsonl" || name == RunFolderLock::kFileName ||
         name == "report.html" || name.find(".tmp.") != std::string::npos;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

}  // namespace

std::vector<std::string> run_files_in(const std::string& folder) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const char* name : kRunFiles) {
    if (fs::exists(fs::path(folder) / name, ec)) found.emplace_back(name);
  }
  return found;
}

bool holds_progress(const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return false;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    if (!is_bookkeeping(entry.path().filename().string())) return true;
  }
  return false;
}

int remove_stale_temporaries(const std::string& folder) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || !entry.is_regular_file(ec)) continue;
    const std::string pid_text = name.substr(at + 5);
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    // kill(pid, 0) fails with ESRCH only when no such process exists.
    if (::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(entry.path());
  }
  for (const auto& path : stale) fs::remove(path, ec);
  return static_cast<int>(stale.size());
}

std::string unique_run_folder(const std::string& root, const std::string& label,
                              std::chrono::system_clock::time_point now) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  // No ':' in the name: it is a path separator for some tools (scp, rsync) and on Windows shares.
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H-%M-%SZ", &utc);
  const std::string base = root + "/" + label + "/" + stamp;
  std::string candidate = base;
  std::error_code ec;
  for (int n = 2; fs::exists(candidate, ec); ++n) candidate = base + "-" + std::to_string(n);
  return candidate;
}

RunFolderLock::RunFolderLock(const std::string& folder) {
  make_dirs(folder);
  const std::string path = folder + "/" + kFileName;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw Error("run folder '" + folder + "': cannot create the lock file " + path + ": " +
                std::strerror(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::ifstream in(path);
    std::string holder;
    std::getline(in, holder);
    ::close(fd_);
    fd_ = -1;
    if (error == EWOULDBLOCK) {
      throw Error("run folder '" + folder + "' is in use by another distill process (" +
                  (holder.empty() ? std::string("holder unknown") : holder) + ", lock file " +
                  path + "); wait for it to finish or stop it, or choose another --out");
    }
    throw Error("run folder '" + folder + "': cannot lock " + path + ": " + std::strerror(error));
  }
  // The holder's identity, for the message another process gets; the lock itself is the flock.
  const std::string holder = "pid " + std::to_string(::getpid()) + " on " + host_name() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] ssize_t written = ::pwrite(fd_, holder.data(), holder.size(), 0);
  }
}

RunFolderLock::~RunFolderLock() {
  // The file stays: deleting it would let a process that opened it just before lock a file no one
  // else can see, while a third creates a new one.
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace distill::io
