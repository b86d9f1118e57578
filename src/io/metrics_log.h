#pragma once
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <string>

namespace distill::io {

// metrics.jsonl: one JSON object per logged step with `step`, `time_s` and named scalars.
// Lines are flushed as written so a killed run keeps everything logged so far.
class MetricsLog {
 public:
  // Opens `path` for appending. With `keep_until_step`, lines of a previous run whose step is
  // beyond it (logged after the checkpoint a resume starts from) are dropped first. A log that
  // does not `write` touches no file and ignores log(): the ranks of a multi-process job other
  // than rank 0, which writes the run folder, run the same code.
  explicit MetricsLog(const std::string& path,
                      std::optional<int64_t> keep_until_step = std::nullopt, bool write = true);

  void log(int64_t step, const std::map<std::string, double>& scalars);
  const std::string& path() const { return path_; }
  bool writes() const { return writes_; }

 private:
  std::string path_;
  bool writes_;
  std::ofstream out_;
  std::chrono::steady_clock::time_point start_;
  double time_offset_s_ = 0.0;
};

}  // namespace distill::io
