#include "src/report/run_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <optional>
#include <sstream>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "src/report/base64.h"
#include "src/report/html_escape.h"
#include "src/report/svg_plot.h"

namespace distill::report {
namespace {

constexpr const char* kStyle = R"(
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; }
.meta { color: #666; font-size: 0.9em; }
.warnings { background: #fff4d6; border: 1px solid #e0b040; padding: 0.5em 1em; }
.warnings li { font-family: monospace; white-space: pre-wrap; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots, .images { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; font-family: monospace; }
img.grid { image-rendering: pixelated; max-width: 100%; height: auto; border: 1px solid #ddd; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 1em; }
)";

std::string fixed2(double v) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  return buffer;
}

// Counts as Python prints them (write_table.py): 123456, not 1.23e5.
std::string count_cell(double v) {
  if (v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  return format_number(v);
}

std::string run_label(const RunFolder& run, const std::vector<RunFolder>& runs) {
  // Two folders with one name (runs/a/mtt, runs/b/mtt) are told apart by their paths.
  size_t same = std::count_if(runs.begin(), runs.end(),
                              [&](const RunFolder& other) { return other.name == run.name; });
  return same > 1 ? run.path : run.name;
}

bool numeric_cell(const std::string& cell) {
  if (cell.empty()) return false;
  char* end = nullptr;
  std::strtod(cell.c_str(), &end);
  return end && (*end == '\0' || std::string(end).rfind(" ±", 0) == 0);
}

std::string utc_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buffer;
}

// A flat JSON object of scalars (train's results.json) as key | value rows.
bool is_flat_object(const nlohmann::json& json) {
  if (!json.is_object() || json.empty()) return false;
  for (const auto& [key, value] : json.items()) {
    if (value.is_object()) return false;
    if (value.is_array() && !std::all_of(value.begin(), value.end(), [](const nlohmann::json& v) {
          return v.is_primitive();
        })) {
      return false;
    }
  }
  return true;
}

std::string json_cell(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) return format_number(value.get<double>());
  if (value.is_null()) return "null (non-finite)";
  // error_handler replace: a file with invalid UTF-8 still renders.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A row's text field as a table shows it: a string as is, anything else as JSON, "?" if absent.
std::string text_field(const nlohmann::json& row, const char* key) {
  auto it = row.find(key);
  if (it == row.end()) return "?";
  return it->is_string() ? it->get<std::string>()
                         : it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Table final_metrics_table(const std::vector<RunFolder>& runs) {
  Table table;
  const bool several = runs.size() > 1;
  if (several) table.header.push_back("run");
  for (const char* h : {"metric", "last", "at step", "min", "max", "points", "non-finite"}) {
    table.header.push_back(h);
  }
  for (const RunFolder& run : runs) {
    if (!run.metrics) continue;
    for (const MetricSeries& s : run.metrics->series) {
      double last = NAN, last_step = NAN, lo = INFINITY, hi = -INFINITY;
      size_t non_finite = 0;
      for (size_t i = 0; i < s.values.size(); ++i) {
        if (!std::isfinite(s.values[i])) {
          ++non_finite;
          continue;
        }
        last = s.values[i];
        last_step = s.steps[i];
        lo = std::min(lo, last);
        hi = std::max(hi, last);
      }
      std::vector<std::string> row;
      if (several) row.push_back(run_label(run, runs));
      bool any = std::isfinite(last);
      row.insert(row.end(),
                 {s.name, any ? format_number(last) : "-", any ? format_number(last_step) : "-",
                  any ? format_number(lo) : "-", any ? format_number(hi) : "-",
                  std::to_string(s.values.size()), std::to_string(non_finite)});
      table.rows.push_back(std::move(row));
    }
  }
  return table;
}

// Fields that record what a step did rather than how the run goes (which expert MTT drew, the
// start epoch, DATM's window, skip counters, the epoch counter): a curve of them is noise, so
// they appear only in the final-metrics table (last, min, max, points).
bool is_bookkeeping(const std::string& metric) {
  static const std::vector<std::string> kFields = {
      "expert", "start_epoch", "window_end", "epoch", "skipped_non_finite",
      "skipped_above_max_loss"};
  return std::find(kFields.begin(), kFields.end(), metric) != kFields.end();
}

bool wants_log(const ReportOptions& options, const std::string& metric) {
  return std::any_of(options.log_y.begin(), options.log_y.end(),
                     [&](const std::string& name) { return name == "*" || name == metric; });
}

// Per (set, model) row of an eval's results: each student's test accuracy over epochs and the
// students' summed confusion matrix with per-class accuracy (written by `distill eval`).
void render_student_details(std::ostringstream& html, const nlohmann::json& json,
                            std::vector<std::string>& warnings, const std::string& label) {
  html << "<div class=\"plots\">\n";
  for (const nlohmann::json& row : json["results"]) {
    const std::string name = text_field(row, "set") + " / " + text_field(row, "model");
    auto curves = row.find("curves");
    if (curves != row.end() && curves->is_array()) {
      std::vector<Series> series;
      for (size_t run = 0; run < curves->size(); ++run) {
        Series line{"run " + std::to_string(run + 1), {}, {}};
        for (const nlohmann::json& point : (*curves)[run]) {
          if (!point.is_array() || point.size() != 2 || !point[0].is_number()) continue;
          line.x.push_back(point[0].get<double>());
          line.y.push_back(point[1].is_number() ? 100 * point[1].get<double>() : NAN);
        }
        if (!line.x.empty()) series.push_back(std::move(line));
      }
      if (!series.empty()) {
        PlotOptions plot;
        plot.title = "test accuracy % per student: " + name;
        plot.x_label = "epoch";
        html << "<figure class=\"curve\">" << render_svg_plot(series, plot) << "</figure>\n";
      }
    }
    auto confusion = row.find("confusion");
    if (confusion == row.end()) continue;
    try {
      const auto counts = confusion->get<std::vector<std::vector<int64_t>>>();
      const int64_t runs = row.value("confusion_runs", int64_t{0});
      html << "<figure class=\"curve\">";
      // Beyond 200 classes a heat map is 40 000 cells of no legible use: per-class accuracy only.
      if (counts.size() <= 200) {
        html << render_svg_confusion(counts, "confusion, " + std::to_string(runs) +
                                                 " students: " + name);
      }
      if (auto per_class = row.find("per_class_accuracy");
          per_class != row.end() && per_class->is_array()) {
        std::string cells;
        for (size_t c = 0; c < per_class->size(); ++c) {
          const nlohmann::json& v = (*per_class)[c];
          cells += (cells.empty() ? "" : ", ") + std::to_string(c) + ": " +
                   (v.is_number() ? fixed2(100 * v.get<double>()) : std::string("-"));
        }
        html << "<figcaption>per-class accuracy %: " << html_escape(cells) << "</figcaption>";
      }
      html << "</figure>\n";
    } catch (const std::exception& e) {  // a hand-edited or foreign file: say so, draw the rest
      warnings.push_back(label + ": " + name + ": confusion matrix not drawn (" + e.what() + ")");
    }
  }
  html << "</div>\n";
}

void render_results(std::ostringstream& html, const RunFolder& run, const std::string& label,
                    std::vector<std::string>& warnings) {
  for (const ResultsFile& file : run.results) {
    html << "<h3>" << html_escape(label) << " / " << html_escape(file.name) << "</h3>\n";
    if (is_eval_results(file.json)) {
      std::vector<std::string> table_warnings;
      Table table = eval_table(file.json, file.name, table_warnings);
      add_wall_time_column(table, file.json);
      html << html_table(table);
      Table ranking = ddranking_table(file.json);
      if (!ranking.rows.empty()) {
        html << "<p class=\"meta\">DD-Ranking: HLR = full data − set (hard labels), IOR = set − "
                "random real (the set's labels), in accuracy points; LRS and ARS in [0, 1].</p>\n"
             << html_table(ranking);
      }
      for (const std::string& w : table_warnings) warnings.push_back(label + ": " + w);
      render_student_details(html, file.json, warnings, label);
    } else if (is_flat_object(file.json)) {
      Table table{{"key", "value"}, {}};
      for (const auto& [key, value] : file.json.items())
        table.rows.push_back({key, json_cell(value)});
      html << html_table(table);
    } else {
      html << "<pre>"
           << html_escape(file.json.dump(2, ' ', false, nlohmann::json::error_handler_t::replace))
           << "</pre>\n";
    }
  }
}

}  // namespace

bool is_eval_results(const nlohmann::json& json) {
  if (!json.is_object()) return false;
  auto results = json.find("results");
  if (results == json.end() || !results->is_array() || results->empty()) return false;
  return std::all_of(results->begin(), results->end(), [](const nlohmann::json& row) {
    return row.is_object() && row.contains("set") && row.contains("model");
  });
}

// Mirrors experiments/write_table.py, so a README table and a report show the same cells.
Table eval_table(const nlohmann::json& json, const std::string& label,
                 std::vector<std::string>& warnings) {
  Table table{{"set", "model", "IPC", "runs", "protocol", "last-epoch acc %", "best acc %"}, {}};
  if (!is_eval_results(json)) {
    warnings.push_back(label +
                       ": not a `distill eval` results file (expected 'results': [{set, "
                       "model, ...}])");
    return table;
  }
  const std::string protocol = json.value("protocol", std::string("?"));
  const nlohmann::json eval_every = json.value("eval_every", nlohmann::json(0));
  const auto& results = json["results"];
  for (size_t i = 0; i < results.size(); ++i) {
    const nlohmann::json& r = results[i];
    const std::string where = label + ": results[" + std::to_string(i) + "]";
    auto number = [&](const char* key) -> std::optional<double> {
      auto it = r.find(key);
      if (it != r.end() && it->is_number()) return it->get<double>();
      warnings.push_back(where + "." + key + ": expected a number, found " +
                         (it == r.end() ? std::string("nothing") : it->dump()));
      return std::nullopt;
    };
    std::string set = text_field(r, "set");
    if (set.size() > 3 && set.compare(set.size() - 3, 3, ".pt") == 0) {
      // The run folder names the set (mtt_ipc10/syn.pt), as experiments/write_table.py prints it.
      std::filesystem::path path(set);
      std::string folder = path.parent_path().filename().string();
      set = folder.empty() ? path.filename().string() : folder + "/" + path.filename().string();
    }
    auto ipc = number("ipc");
    auto runs = number("runs");
    auto last_mean = number("last_mean");
    auto last_std = number("last_std");
    std::string best = "n/a (end only)";  // students scored only at the end
    if (eval_every.is_number() && eval_every.get<double>() > 0) {
      auto best_mean = number("best_mean");
      best = best_mean ? fixed2(100 * *best_mean) : "?";
    }
    table.rows.push_back(
        {set, text_field(r, "model"), ipc ? (*ipc > 0 ? count_cell(*ipc) : std::string("all")) : "?",
         runs ? count_cell(*runs) : "?", protocol,
         last_mean && last_std ? fixed2(100 * *last_mean) + " ± " + fixed2(100 * *last_std) : "?",
         best});
  }
  return table;
}

Table ddranking_table(const nlohmann::json& json) {
  Table table{{"set", "model", "random real labelled by", "HLR", "IOR", "LRS", "ARS"}, {}};
  auto rows = json.find("ddranking");
  if (rows == json.end() || !rows->is_array()) return table;
  auto points = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("?");
    const double x = 100 * v.get<double>();
    return (x >= 0 ? "+" : "") + fixed2(x);
  };
  auto score = [](const nlohmann::json& v) {
    if (!v.is_number()) return std::string("?");
    char cell[16];
    std::snprintf(cell, sizeof cell, "%.3f", v.get<double>());
    return std::string(cell);
  };
  for (const nlohmann::json& r : *rows) {
    std::string set = r.value("set", std::string("?"));
    std::filesystem::path path(set);
    const std::string folder = path.parent_path().filename().string();
    if (!folder.empty()) set = folder + "/" + path.filename().string();
    table.rows.push_back({set, r.value("model", std::string("?")),
                          r.value("label_source", std::string("?")), points(r.value("hlr", nlohmann::json())),
                          points(r.value("ior", nlohmann::json())), score(r.value("lrs", nlohmann::json())),
                          score(r.value("ars", nlohmann::json()))});
  }
  return table;
}

void add_wall_time_column(Table& table, const nlohmann::json& json) {
  if (!is_eval_results(json)) return;
  const auto& results = json["results"];
  auto timed = [](const nlohmann::json& row) {
    auto it = row.find("seconds");
    return it != row.end() && it->is_array() && !it->empty() &&
           std::all_of(it->begin(), it->end(),
                       [](const nlohmann::json& s) { return s.is_number(); });
  };
  if (std::none_of(results.begin(), results.end(), timed) || table.rows.size() != results.size())
    return;
  table.header.push_back("min per student");
  for (size_t i = 0; i < results.size(); ++i) {
    if (!timed(results[i])) {
      table.rows[i].push_back("n/a");
      continue;
    }
    double total = 0;
    for (const auto& s : results[i]["seconds"]) total += s.get<double>();
    char cell[32];
    std::snprintf(cell, sizeof cell, "%.1f", total / results[i]["seconds"].size() / 60);
    table.rows[i].push_back(cell);
  }
}

std::string markdown_table(const Table& table) {
  auto cell = [](const std::string& text) {
    std::string out;
    for (char c : text) {
      if (c == '|')
        out += "\\|";
      else if (c == '\n')
        out += ' ';
      else
        out += c;
    }
    return out;
  };
  std::ostringstream md;
  md << "|";
  for (const auto& h : table.header) md << " " << cell(h) << " |";
  md << "\n|";
  for (size_t i = 0; i < table.header.size(); ++i) md << "---|";
  md << "\n";
  for (const auto& row : table.rows) {
    md << "|";
    for (const auto& c : row) md << " " << cell(c) << " |";
    md << "\n";
  }
  return md.str();
}

std::string html_table(const Table& table) {
  std::ostringstream html;
  html << "<table>\n<tr>";
  for (const auto& h : table.header) html << "<th>" << html_escape(h) << "</th>";
  html << "</tr>\n";
  for (const auto& row : table.rows) {
    html << "<tr>";
    for (const auto& c : row) {
      html << (numeric_cell(c) ? "<td class=\"num\">" : "<td>") << html_escape(c) << "</td>";
    }
    html << "</tr>\n";
  }
  html << "</table>\n";
  return html.str();
}

std::string render_report(const std::vector<RunFolder>& runs, const ReportOptions& options,
                          std::vector<std::string>* shown_warnings) {
  std::vector<std::string> labels;
  for (const RunFolder& run : runs) labels.push_back(run_label(run, runs));
  std::string names;
  for (const std::string& label : labels) names += (names.empty() ? "" : ", ") + label;
  const std::string title = options.title.empty() ? "distill report: " + names : options.title;
  std::vector<std::string> warnings;
  for (size_t r = 0; r < runs.size(); ++r) {
    for (const std::string& w : runs[r].warnings) warnings.push_back(labels[r] + ": " + w);
  }

  // Body sections first: rendering tables can add warnings, which go on top of the page.
  std::ostringstream body;
  body << "<h2 id=\"summary\">Final metrics</h2>\n";
  Table finals = final_metrics_table(runs);
  if (finals.rows.empty()) {
    body << "<p class=\"meta\">No metrics were logged.</p>\n";
  } else {
    body << html_table(finals);
  }

  bool any_results = std::any_of(runs.begin(), runs.end(),
                                 [](const RunFolder& run) { return !run.results.empty(); });
  if (any_results) {
    body << "<h2 id=\"results\">Results</h2>\n";
    for (size_t r = 0; r < runs.size(); ++r) render_results(body, runs[r], labels[r], warnings);
  }

  // One plot per metric, every run that logged it overlaid (a legend names them).
  std::vector<std::string> metric_names, bookkeeping;
  for (const RunFolder& run : runs) {
    if (!run.metrics) continue;
    for (const MetricSeries& s : run.metrics->series) {
      std::vector<std::string>& names = is_bookkeeping(s.name) ? bookkeeping : metric_names;
      if (std::find(names.begin(), names.end(), s.name) == names.end()) names.push_back(s.name);
    }
  }
  body << "<h2 id=\"curves\">Curves</h2>\n";
  if (metric_names.empty()) body << "<p class=\"meta\">No curves: no metrics were logged.</p>\n";
  if (!bookkeeping.empty()) {
    std::string names;
    for (const std::string& name : bookkeeping) names += (names.empty() ? "" : ", ") + name;
    body << "<p class=\"meta\">Bookkeeping fields, in the final-metrics table and not plotted: "
         << html_escape(names) << ".</p>\n";
  }
  body << "<div class=\"plots\">\n";
  for (const std::string& metric : metric_names) {
    std::vector<Series> series;
    for (size_t r = 0; r < runs.size(); ++r) {
      if (!runs[r].metrics) continue;
      for (const MetricSeries& s : runs[r].metrics->series) {
        if (s.name == metric) series.push_back(Series{labels[r], s.steps, s.values});
      }
    }
    PlotOptions plot;
    plot.title = metric;
    plot.log_y = wants_log(options, metric);
    plot.max_points = static_cast<size_t>(std::max<int64_t>(options.max_points, 2));
    body << "<figure class=\"curve\">" << render_svg_plot(series, plot) << "</figure>\n";
  }
  body << "</div>\n";

  body << "<h2 id=\"images\">Images</h2>\n";
  for (size_t r = 0; r < runs.size(); ++r) {
    if (runs.size() > 1) body << "<h3>" << html_escape(labels[r]) << "</h3>\n";
    if (runs[r].images.empty()) {
      body << "<p class=\"meta\">No images in this run folder.</p>\n";
      continue;
    }
    body << "<div class=\"images\">\n";
    for (const ImageFile& image : runs[r].images) {
      // Small grids are scaled up by a whole factor (crisp pixels) to about 960 px wide: a
      // one-row grid of ten 28x28 images shows each at 84 px.
      int64_t scale = std::clamp<int64_t>(960 / std::max<int64_t>(image.width, 1), 1, 8);
      body << "<figure><img class=\"grid\" alt=\"" << html_escape(image.name) << "\" width=\""
           << image.width * scale << "\" height=\"" << image.height * scale
           << "\" src=\"data:image/png;base64," << base64_encode(image.bytes) << "\"><figcaption>"
           << html_escape(image.name) << " (" << image.width << "x" << image.height
           << ")</figcaption></figure>\n";
    }
    body << "</div>\n";
  }

  body << "<h2 id=\"config\">Configuration</h2>\n";
  for (size_t r = 0; r < runs.size(); ++r) {
    body << "<details" << (runs.size() == 1 ? " open" : "") << "><summary>"
         << html_escape(labels[r]) << "/config.toml</summary>\n";
    if (runs[r].config) {
      body << "<pre>" << html_escape(*runs[r].config) << "</pre>\n";
    } else {
      body << "<p class=\"meta\">No config.toml.</p>\n";
    }
    body << "</details>\n";
  }

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
       // No scripts, no network: only inline styles and embedded data: images may load.
       << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "img-src data:; style-src 'unsafe-inline'\">\n"
       << "<title>" << html_escape(title) << "</title>\n<style>" << kStyle << "</style>\n"
       << "</head>\n<body>\n<h1>" << html_escape(title) << "</h1>\n";
  html << "<p class=\"meta\">Written by <code>distill report</code> at " << utc_now() << " from ";
  for (size_t r = 0; r < runs.size(); ++r) {
    html << (r ? ", " : "") << "<code>" << html_escape(runs[r].path) << "</code>"
         << (runs[r].kind.empty() ? "" : " (" + html_escape(runs[r].kind) + ")");
  }
  html << ".</p>\n<nav><a href=\"#summary\">final metrics</a>"
       << (any_results ? "<a href=\"#results\">results</a>" : "")
       << "<a href=\"#curves\">curves</a><a href=\"#images\">images</a>"
       << "<a href=\"#config\">configuration</a></nav>\n";
  if (!warnings.empty()) {
    html << "<section class=\"warnings\" id=\"warnings\"><h2>Warnings (" << warnings.size()
         << ")</h2>\n<ul>\n";
    for (const std::string& w : warnings) html << "<li>" << html_escape(w) << "</li>\n";
    html << "</ul></section>\n";
  }
  html << body.str() << "</body>\n</html>\n";
  if (shown_warnings) *shown_warnings = warnings;
  return html.str();
}

std::vector<std::string> write_report(const std::vector<std::string>& run_dirs,
                                      const std::string& out, const ReportOptions& options) {
  if (run_dirs.empty()) throw Error("report: no run folder given");
  if (options.max_points < 2) {
    throw Error("report.max_points: expected at least 2 points per curve, found " +
                std::to_string(options.max_points));
  }
  if (options.max_image_mib <= 0) {
    throw Error("report.max_image_mib: expected a positive number of MiB, found " +
                std::to_string(options.max_image_mib));
  }
  ReadOptions read;
  read.max_image_bytes = static_cast<size_t>(options.max_image_mib) << 20;
  std::vector<RunFolder> runs;
  for (const std::string& dir : run_dirs) runs.push_back(read_run_folder(dir, read));
  std::vector<std::string> warnings;
  io::write_file_atomic(out, render_report(runs, options, &warnings));
  return warnings;
}

std::string run_report_path(const std::string& run_dir) { return run_dir + "/report.html"; }

}  // namespace distill::report
