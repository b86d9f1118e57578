#include "src/report/run_folder.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "src/core/error.h"
#include "src/io/atomic_file.h"

namespace distill::report {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxLineWarnings = 20;
constexpr int kMaxImageDepth = 2;  // the folder and two levels below (snapshots/, samples/steps4/)

std::string excerpt(std::string_view line) {
  constexpr size_t kShown = 60;
  std::string shown(line.substr(0, kShown));
  return "'" + shown + (line.size() > kShown ? "...'" : "'");
}

const char* json_type(const nlohmann::ordered_json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::object:
      return "an object";
    default:
      return "not a number";
  }
}

// Which command wrote the folder, from the sections of its effective config.
std::string kind_of(const toml::table& config) {
  for (const char* kind : {"mtt", "kd", "eval", "experts", "subset", "train", "bench"}) {
    if (config.contains(kind)) return kind;
  }
  return "";
}

// The PNG signature and IHDR chunk: width and height, or false when it is not a PNG.
bool png_size(const std::string& bytes, int64_t& width, int64_t& height) {
  static const std::string kSignature = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 24 || bytes.compare(0, 8, kSignature) != 0 ||
      bytes.compare(12, 4, "IHDR") != 0) {
    return false;
  }
  auto be32 = [&](size_t at) {
    int64_t v = 0;
    for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  width = be32(16);
  height = be32(20);
  return width > 0 && height > 0;
}

void read_images(RunFolder& run, const ReadOptions& options) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::recursive_directory_iterator it(run.path, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it.depth() >= kMaxImageDepth) it.disable_recursion_pending();
    const fs::path& p = it->path();
    if (p.extension() != ".png" || p.filename().string().find(".tmp.") != std::string::npos) {
      continue;
    }
    names.push_back(fs::relative(p, run.path, ec).generic_string());
  }
  std::sort(names.begin(), names.end(), natural_less);
  if (names.size() > options.max_images) {
    run.warnings.push_back(std::to_string(names.size()) + " PNG files: only the first " +
                           std::to_string(options.max_images) + " (in name order) are shown");
    names.resize(options.max_images);
  }
  for (const std::string& name : names) {
    const std::string file = run.path + "/" + name;
    std::error_code size_ec;
    if (!fs::is_regular_file(file, size_ec)) {
      run.warnings.push_back(
          name + ": image missing (" +
          (fs::is_symlink(file) ? "a link to a file that does not exist" : "not a regular file") +
          "), not shown");
      continue;
    }
    const uintmax_t size = fs::file_size(file, size_ec);
    if (size_ec || size == 0) {
      run.warnings.push_back(name + ": image is empty (a write that did not finish?), not shown");
      continue;
    }
    if (size > options.max_image_bytes) {
      run.warnings.push_back(
          name + ": image is " + std::to_string(size) + " bytes, over the embedding limit of " +
          std::to_string(options.max_image_bytes) + " bytes (report.max_image_mib), not shown");
      continue;
    }
    ImageFile image;
    image.name = name;
    try {
      image.bytes = io::read_file(file);
    } catch (const std::exception& e) {
      run.warnings.push_back(name + ": " + e.what() + ", not shown");
      continue;
    }
    if (!png_size(image.bytes, image.width, image.height)) {
      run.warnings.push_back(name + ": not a PNG file (no PNG signature and header), not shown");
      continue;
    }
    run.images.push_back(std::move(image));
  }
}

void read_results(RunFolder& run) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(run.path, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() == ".json" && p.filename().string().find(".tmp.") == std::string::npos) {
      names.push_back(p.filename().string());
    }
  }
  std::sort(names.begin(), names.end(), natural_less);
  for (const std::string& name : names) {
    try {
      ResultsFile results{name, nlohmann::json::parse(io::read_file(run.path + "/" + name))};
      run.results.push_back(std::move(results));
    } catch (const nlohmann::json::parse_error& e) {
      run.warnings.push_back(name + ": not valid JSON (" + e.what() + "), not shown");
    } catch (const std::exception& e) {
      run.warnings.push_back(name + ": " + e.what() + ", not shown");
    }
  }
}

}  // namespace

bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      size_t i_first = a.find_first_not_of('0', i), j_first = b.find_first_not_of('0', j);
      i_first = std::min(i_first, i_end);
      j_first = std::min(j_first, j_end);
      // Fewer significant digits is smaller; equal lengths compare digit by digit.
      if (i_end - i_first != j_end - j_first) return i_end - i_first < j_end - j_first;
      int c = a.compare(i_first, i_end - i_first, b, j_first, j_end - j_first);
      if (c != 0) return c < 0;
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;  // e.g. "01" vs "1": any fixed order
}

Metrics parse_metrics(std::string_view text, const std::string& label,
                      std::vector<std::string>& warnings) {
  Metrics metrics;
  std::map<std::string, size_t> index;
  std::set<std::string> reported_keys;
  size_t bad_lines = 0;
  auto bad_line = [&](size_t number, const std::string& what) {
    if (++bad_lines <= kMaxLineWarnings) {
      warnings.push_back(label + ":" + std::to_string(number) + ": " + what);
    }
  };
  size_t number = 0, begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    // ordered_json: series appear in the order the run logged them, not alphabetically.
    nlohmann::ordered_json record =
        nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) {
      bad_line(number, "not valid JSON (a line cut short?), skipped: " + excerpt(line));
      continue;
    }
    if (!record.is_object()) {
      bad_line(number, "expected a JSON object, found " + excerpt(line) + ", skipped");
      continue;
    }
    auto step = record.find("step");
    if (step == record.end() || !step->is_number()) {
      bad_line(number, "no numeric 'step', skipped: " + excerpt(line));
      continue;
    }
    ++metrics.records;
    for (const auto& [key, value] : record.items()) {
      if (key == "step") continue;
      double v;
      if (value.is_number()) {
        v = value.get<double>();
      } else if (value.is_null()) {
        v = std::numeric_limits<double>::quiet_NaN();  // metrics.jsonl's spelling of NaN/inf
      } else {
        if (reported_keys.insert(key).second) {
          warnings.push_back(label + ":" + std::to_string(number) + ": '" + key + "' is " +
                             json_type(value) + "; only numbers are plotted");
        }
        continue;
      }
      auto [it, inserted] = index.emplace(key, metrics.series.size());
      if (inserted) metrics.series.push_back(MetricSeries{key, {}, {}});
      metrics.series[it->second].steps.push_back(step->get<double>());
      metrics.series[it->second].values.push_back(v);
    }
  }
  if (bad_lines > kMaxLineWarnings) {
    warnings.push_back(label + ": " + std::to_string(bad_lines - kMaxLineWarnings) +
                       " more invalid line(s) skipped");
  }
  // Wall time is bookkeeping: after the quantities a run is about.
  std::stable_partition(metrics.series.begin(), metrics.series.end(),
                        [](const MetricSeries& s) { return s.name != "time_s"; });
  return metrics;
}

RunFolder read_run_folder(const std::string& path, const ReadOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    throw Error("report: run folder '" + path + "' " +
                (fs::exists(path, ec) ? "is not a folder" : "does not exist"));
  }
  RunFolder run;
  run.path = path;
  fs::path absolute = fs::absolute(path, ec).lexically_normal();
  if (!absolute.has_filename()) absolute = absolute.parent_path();
  run.name = absolute.filename().string();
  if (run.name.empty()) run.name = path;

  const std::string config_path = path + "/config.toml";
  if (fs::exists(config_path, ec)) {
    try {
      run.config = io::read_file(config_path);
      run.kind = kind_of(toml::parse(*run.config, config_path));
    } catch (const toml::parse_error& e) {
      run.warnings.push_back("config.toml:" + std::to_string(e.source().begin.line) +
                             ": not valid TOML (" + std::string(e.description()) + ")");
    } catch (const std::exception& e) {
      run.warnings.push_back(std::string("config.toml: ") + e.what());
    }
  } else {
    run.warnings.push_back("config.toml missing: the run's settings are unknown");
  }

  const std::string metrics_path = path + "/metrics.jsonl";
  if (fs::exists(metrics_path, ec)) {
    try {
      run.metrics = parse_metrics(io::read_file(metrics_path), "metrics.jsonl", run.warnings);
      if (run.metrics->records == 0) {
        run.warnings.push_back("metrics.jsonl: no metrics logged yet (no valid line)");
      }
    } catch (const std::exception& e) {
      run.warnings.push_back(std::string("metrics.jsonl: ") + e.what());
    }
  } else if (run.kind != "eval" && run.kind != "subset" &&  // those never log curves, nor does
             !fs::exists(path + "/samples.pt", ec)) {       // `distill diffusion sample`
    run.warnings.push_back("metrics.jsonl missing: no curves to plot");
  }

  read_images(run, options);
  // A set file always comes with its grid (`subset`, `mtt`): say so when the grid is gone.
  const bool has_grid =
      std::any_of(run.images.begin(), run.images.end(),
                  [](const ImageFile& image) { return image.name == "grid.png"; });
  const bool grid_expected =
      fs::exists(path + "/syn.pt", ec) || run.kind == "mtt" || run.kind == "subset";
  // (A grid.png that is there but unreadable already has its own warning.)
  if (grid_expected && !has_grid && !fs::exists(fs::symlink_status(path + "/grid.png", ec))) {
    run.warnings.push_back("grid.png missing: this " +
                           (run.kind.empty() ? std::string("run") : run.kind + " run") +
                           " writes its synthetic set's image grid there");
  }
  read_results(run);
  // An eval writes results.json once every student is scored; until then, say how far it got.
  const std::string students_path = path + "/students.jsonl";
  if (run.kind == "eval" && !fs::exists(path + "/results.json", ec) &&
      fs::exists(students_path, ec)) {
    try {
      const std::string students = io::read_file(students_path);
      const int64_t recorded =
          std::max<int64_t>(0, std::count(students.begin(), students.end(), '\n') - 1);
      run.warnings.push_back("results.json missing: the eval is running or was stopped; " +
                             std::to_string(recorded) +
                             (recorded == 1 ? " student is" : " students are") +
                             " recorded in students.jsonl (`distill eval --resume` continues)");
    } catch (const std::exception& e) {
      run.warnings.push_back(std::string("students.jsonl: ") + e.what());
    }
  }
  return run;
}

}  // namespace distill::report
