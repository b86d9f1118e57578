// `distill report RUN_DIR [RUN_DIR ...]`: one self-contained HTML page per run folder(s): config,
// final metrics, curves (runs overlaid), results tables and image grids.
// `distill report --format markdown RESULTS [...]`: the evaluation table of those results as
// Markdown, the text experiments/write_table.py puts into README.md (one code path for both).
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "src/report/run_report.h"

namespace distill::cli {
namespace {

// Only run.out (--out) applies: a report reads folders, it trains nothing (no device, threads or
// seed; setting them is an "unknown key" error rather than silently ignored).
struct ReportRunOptions {
  std::string out;
  std::string format = "html";
  void visit(config::Visitor& v) {
    v.field("out", out,
            "the HTML file to write; empty = RUN_DIR/report.html (one folder only); an existing "
            "folder = FOLDER/report.html; with format = \"markdown\": the file (empty = stdout)");
    v.field("format", format,
            "html (the report) | markdown (only the evaluation table of the given results.json "
            "files or run folders holding one, as in README.md)");
  }
};

struct ReportCommandOptions {
  static constexpr bool kHasPresets = false;
  ReportRunOptions run;
  report::ReportOptions report;

  void visit(config::Visitor& v) {
    v.section("run", run);
    v.section("report", report);
  }
};

// A results.json path, or a run folder holding one.
std::string results_file(const std::string& path) {
  return std::filesystem::is_directory(path) ? path + "/results.json" : path;
}

nlohmann::json read_json(const std::string& file) {
  nlohmann::json json = nlohmann::json::parse(io::read_file(file), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded()) throw Error("report: '" + file + "' is not valid JSON");
  return json;
}

// The README path: any cell the files cannot fill is an error here, not a "?" in a README table.
void print_markdown(const ReportRunOptions& run, const std::vector<std::string>& paths) {
  if (paths.empty()) {
    throw Error("report: no results given; usage: distill report --format markdown "
                "RESULTS.json|RUN_DIR [...]");
  }
  report::Table all, ranking;
  std::vector<std::string> warnings;
  for (const std::string& path : paths) {
    const std::string file = results_file(path);
    const nlohmann::json json = read_json(file);
    report::Table table = report::eval_table(json, file, warnings);
    all.header = table.header;
    all.rows.insert(all.rows.end(), table.rows.begin(), table.rows.end());
    report::Table terms = report::ddranking_table(json);
    ranking.header = terms.header;
    ranking.rows.insert(ranking.rows.end(), terms.rows.begin(), terms.rows.end());
  }
  if (!warnings.empty()) {
    std::string message = "report: the evaluation table is incomplete:";
    for (const std::string& w : warnings) message += "\n  " + w;
    throw Error(message);
  }
  // DD-Ranking's terms (eval.scores = ["ddranking"]) follow as a second table.
  const std::string markdown =
      report::markdown_table(all) +
      (ranking.rows.empty() ? "" : "\n" + report::markdown_table(ranking));
  if (run.out.empty()) {
    std::cout << markdown;
  } else {
    io::write_file_atomic(run.out, markdown);
    std::cerr << "report: " << run.out << "\n";
  }
}

void run_report(ReportCommandOptions& o, const Invocation& invocation) {
  refuse_resume(invocation, "report");
  if (o.run.format == "markdown") return print_markdown(o.run, invocation.positional);
  if (o.run.format != "html") {
    throw Error("report: run.format = '" + o.run.format + "': expected \"html\" or \"markdown\"");
  }
  const std::vector<std::string>& dirs = invocation.positional;
  if (dirs.empty()) {
    throw Error(
        "report: no run folder given; usage: distill report RUN_DIR [RUN_DIR ...] "
        "[--out report.html]");
  }
  std::string out = o.run.out;
  if (out.empty()) {
    if (dirs.size() > 1) {
      throw Error("report: " + std::to_string(dirs.size()) +
                  " run folders given: name the report file with --out FILE.html");
    }
    out = report::run_report_path(dirs[0]);
  } else if (std::filesystem::is_directory(out)) {
    out += "/report.html";
  }
  std::vector<std::string> warnings = report::write_report(dirs, out, o.report);
  for (const std::string& w : warnings) std::cerr << "distill report: warning: " << w << "\n";
  std::cout << "report: " << out << "\n";
}

}  // namespace

std::string refresh_run_report(const std::string& run_dir) {
  const std::string out = report::run_report_path(run_dir);
  try {
    std::vector<std::string> warnings = report::write_report({run_dir}, out);
    return out + (warnings.empty()
                      ? ""
                      : " (" + std::to_string(warnings.size()) + " warning(s), listed at its top)");
  } catch (const std::exception& e) {
    // The run itself succeeded; a report that cannot be written must not turn that into a failure.
    std::cerr << "distill: warning: could not write the run report " << out << ": " << e.what()
              << "\n";
    return out + " (not written)";
  }
}

Command report_command() {
  Command command = make_command<ReportCommandOptions>(
      "report", "HTML report of run folders: config, metrics, curves, results, image grids",
      "distill report runs/mtt runs/mtt_zca --out runs/compare.html",
      {{"format", "run.format"}}, run_report);
  command.takes_positional = true;
  return command;
}

}  // namespace distill::cli
