#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace distill::report {

// One scalar of metrics.jsonl against `step`; a null (non-finite when logged) is a NaN value.
struct MetricSeries {
  std::string name;
  std::vector<double> steps;
  std::vector<double> values;
};

struct Metrics {
  std::vector<MetricSeries> series;  // in order of first appearance, `time_s` last
  size_t records = 0;                // lines read as a JSON object with a numeric step
};

// Parses metrics.jsonl text. Lines that are not a JSON object with a numeric `step` (a line torn
// by a killed run, say) are skipped and reported in `warnings` as "<label>:<line>: ..."; the
// other lines are still used. Non-numeric values are reported once per key.
Metrics parse_metrics(std::string_view text, const std::string& label,
                      std::vector<std::string>& warnings);

struct ImageFile {
  std::string name;   // relative to the run folder, e.g. "grid.png" or "snapshots/grid_100.png"
  std::string bytes;  // the PNG file as is (embedded as a data: URI)
  int64_t width = 0;  // from the PNG header
  int64_t height = 0;
};

struct ResultsFile {
  std::string name;  // e.g. "results.json"
  nlohmann::json json;
};

// What a run folder holds, read without LibTorch: everything a report shows.
struct RunFolder {
  std::string path;
  std::string name;  // the folder's own name
  std::string kind;  // the command that wrote it (mtt, eval, train, ...) from config.toml; or ""
  std::optional<std::string> config;  // config.toml as written
  std::optional<Metrics> metrics;     // absent when there is no metrics.jsonl
  std::vector<ImageFile> images;      // *.png here and in sub-folders, names in natural order
  std::vector<ResultsFile> results;   // *.json here
  std::vector<std::string> warnings;  // missing or unreadable pieces; the report shows them
};

struct ReadOptions {
  size_t max_image_bytes = size_t{16} << 20;  // larger PNGs are listed, not embedded
  size_t max_images = 200;                    // per folder, in natural name order
};

// Reads a run folder. Only a missing folder is an error (distill::Error naming it); anything
// missing or broken inside becomes a warning so the report still renders.
RunFolder read_run_folder(const std::string& path, const ReadOptions& options = {});

// "grid_9.png" < "grid_10.png": digit runs compare as numbers (snapshots by iteration/steps).
bool natural_less(const std::string& a, const std::string& b);

}  // namespace distill::report
