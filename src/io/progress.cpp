#include "src/io/progress.h"

#include <unistd.h>

#include <cstdio>

namespace distill::io {

Progress::Progress(std::string label, int64_t total, int64_t start, bool enabled,
                   double plain_interval_s)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      start_(start),
      done_(start),
      enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0),
      plain_interval_s_(plain_interval_s),
      begin_(std::chrono::steady_clock::now()),
      last_draw_(begin_) {}

Progress::~Progress() {
  if (enabled_ && tty_ && !finished_) std::fputc('\n', stderr);
}

std::string Progress::format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", (long long)s);
  }
  return buf;
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (tty_ ? since < 0.2 : since < plain_interval_s_) return;
  last_draw_ = now;
  draw(status, false);
}

void Progress::finish(const std::string& status) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(status, true);
}

void Progress::draw(const std::string& status, bool final_line) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_ - start_) / elapsed : 0.0;
  double eta = rate > 0 ? static_cast<double>(total_ - done_) / rate : -1.0;
  double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  if (tty_) {
    const int width = 24;
    int filled = static_cast<int>(fraction * width);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld %.2f/s elapsed %s eta %s %s", label_.c_str(),
                 bar.c_str(), (long long)done_, (long long)total_, rate,
                 format_duration(elapsed).c_str(), format_duration(eta).c_str(), status.c_str());
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "%s %lld/%lld (%.0f%%) %.2f/s elapsed %s eta %s %s\n", label_.c_str(),
                 (long long)done_, (long long)total_, fraction * 100.0, rate,
                 format_duration(elapsed).c_str(), format_duration(eta).c_str(), status.c_str());
  }
  std::fflush(stderr);
}

}  // namespace distill::io
