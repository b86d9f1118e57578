#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace distill::io {

// The files that mark a folder as holding a run: a command writing there without --resume or
// --overwrite would replace them (issue 24: a forgotten --resume must not destroy a run).
std::vector<std::string> run_files_in(const std::string& folder);

// True when `folder` holds something a resumed run continues from: any entry besides the
// effective config, the metrics log, the lock, the report and temporary files. A run killed
// before its first checkpoint (or folder) holds none, so `--resume` starts it from the beginning.
bool holds_progress(const std::string& folder);

// A fresh run folder `root/label/<UTC time>` (e.g. runs/train/2026-12-07T12-30-05Z), with -2, -3
// ... appended when two runs start within one second.
std::string unique_run_folder(const std::string& root, const std::string& label,
                              std::chrono::system_clock::time_point now);

// Removes the temporary files (`NAME.tmp.PID`, io::write_file_atomic) that a process killed in
// the middle of a write left in `folder` (not in sub-folders), when process PID is gone; returns
// how many. The files they were to replace are intact: the rename never happened.
int remove_stale_temporaries(const std::string& folder);

// Holds `folder/.distill.lock` with an exclusive flock for the object's life, so two processes
// cannot write one run folder. The kernel drops the lock when its holder dies (even by SIGKILL),
// so a lock left by a killed run is taken over without any clean-up. The file records the
// holder's pid and host for the error message of the refused process.
class RunFolderLock {
 public:
  explicit RunFolderLock(const std::string& folder);  // Error naming the holder when held
  ~RunFolderLock();
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

  static constexpr const char* kFileName = ".distill.lock";

 private:
  int fd_ = -1;
};

}  // namespace distill::io
