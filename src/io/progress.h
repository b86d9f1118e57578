#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace distill::io {

// A progress bar with rate and ETA when stderr is a terminal; plain lines every
// `plain_interval_s` seconds otherwise (logs, CI). Silent when `enabled` is false (non-zero ranks).
class Progress {
 public:
  Progress(std::string label, int64_t total, int64_t start = 0, bool enabled = true,
           double plain_interval_s = 10.0);
  ~Progress();

  void update(int64_t done, const std::string& status = "");
  void finish(const std::string& status = "");

  // "1h02m", "3m05s", "12s".
  static std::string format_duration(double seconds);

 private:
  void draw(const std::string& status, bool final_line);

  std::string label_;
  int64_t total_, start_, done_;
  bool enabled_, tty_, finished_ = false;
  double plain_interval_s_;
  std::chrono::steady_clock::time_point begin_, last_draw_;
};

}  // namespace distill::io
