#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/report/run_folder.h"

namespace distill::report {

// Settings of `distill report` (the [report] section).
struct ReportOptions {
  std::string title;               // default: "distill report: " + the run names
  std::vector<std::string> log_y;  // metrics drawn on a log y axis; "*" = all
  int64_t max_points = 2000;       // per curve; longer curves keep each bucket's min and max
  int64_t max_image_mib = 16;      // larger PNGs are listed with a warning, not embedded

  void visit(config::Visitor& v) {
    v.field("title", title, "page title (default: 'distill report: ' + the run folder names)");
    v.field("log_y", log_y,
            "metrics plotted on a log y axis, e.g. [\"matching_loss\"]; \"*\" = all "
            "(refused with a note for metrics with values <= 0)");
    v.field("max_points", max_points, "points drawn per curve (longer curves are thinned)");
    v.field("max_image_mib", max_image_mib, "largest PNG embedded, MiB");
  }
};

// A table as text cells, rendered to HTML (report) or Markdown (README tables) by the same code.
struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

// The evaluation table of a `distill eval` results.json ({protocol, eval_every, results: [...]}):
// set | model | IPC | runs | protocol | last-epoch acc % (mean ± std) | best acc %. Missing or
// mistyped fields show as "?" and are named in `warnings` ("<label>: results[2].last_mean ...").
bool is_eval_results(const nlohmann::json& json);
Table eval_table(const nlohmann::json& json, const std::string& label,
                 std::vector<std::string>& warnings);

// The DD-Ranking terms of an eval results.json that has them (eval.scores = ["ddranking"]): set |
// model | random real labelled by | HLR | IOR (accuracy points) | LRS | ARS. No rows without them.
Table ddranking_table(const nlohmann::json& json);

// Appends a "min per student" column (the mean of each row's `seconds`, "n/a" for a row without)
// when any row of the eval results records wall times; the HTML report shows it, the Markdown
// tables of the README leave it out (wall times depend on the machine and its load).
void add_wall_time_column(Table& table, const nlohmann::json& json);

// Markdown (pipes in cells escaped) and HTML (every cell escaped) renderings of a table.
std::string markdown_table(const Table& table);
std::string html_table(const Table& table);

// The whole report: one self-contained HTML page (inline SVG, images as data: URIs, no scripts,
// a Content-Security-Policy that forbids network access). Every string taken from the folders
// (names, config, JSON keys and values, warnings) is HTML-escaped. The warnings shown at the top
// (the folders' and the results tables', prefixed with the run name) go to `shown_warnings`.
std::string render_report(const std::vector<RunFolder>& runs, const ReportOptions& options,
                          std::vector<std::string>* shown_warnings = nullptr);

// Reads the folders and writes the report atomically to `out`; returns the warnings it shows
// (each prefixed with its run's name).
std::vector<std::string> write_report(const std::vector<std::string>& run_dirs,
                                      const std::string& out, const ReportOptions& options = {});

// RUN_DIR/report.html: the file long commands refresh at the end of a run.
std::string run_report_path(const std::string& run_dir);

}  // namespace distill::report
