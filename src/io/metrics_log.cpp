#include "src/io/metrics_log.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::io {

MetricsLog::MetricsLog(const std::string& path, std::optional<int64_t> keep_until_step, bool write)
    : path_(path), writes_(write), start_(std::chrono::steady_clock::now()) {
  if (!writes_) return;
  std::filesystem::path p(path);
  if (p.has_parent_path()) make_dirs(p.parent_path().string());
  if (keep_until_step && std::filesystem::exists(path)) {
    std::istringstream lines(read_file(path));
    std::string kept, line;
    while (std::getline(lines, line)) {
      auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (record.is_discarded() || !record.contains("step")) continue;  // torn last line
      if (record["step"].get<int64_t>() > *keep_until_step) continue;
      if (record.contains("time_s")) time_offset_s_ = record["time_s"].get<double>();
      kept += line + "\n";
    }
    write_file_atomic(path, kept);
  } else if (!keep_until_step) {
    write_file_atomic(path, "");
  }
  out_.open(path, std::ios::app);
  if (!out_) throw RuntimeFailure("cannot open metrics log '" + path + "' for writing");
}

void MetricsLog::log(int64_t step, const std::map<std::string, double>& scalars) {
  if (!writes_) return;
  nlohmann::json record;
  record["step"] = step;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  record["time_s"] = time_offset_s_ + elapsed;
  for (const auto& [name, value] : scalars) {
    // JSON has no NaN/Inf: write null so readers see the point was not finite.
    if (std::isfinite(value)) record[name] = value; else record[name] = nullptr;
  }
  out_ << record.dump() << "\n";
  out_.flush();
}

}  // namespace distill::io
