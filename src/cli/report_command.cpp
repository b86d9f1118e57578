// `distill report RUN_DIR [RUN_DIR ...]`: one self-contained HTML page per run folder(s): config,
// final metrics, curves (runs overlaid), results tables and image grids.
#include <filesystem>
#include <iostream>

#include "src/cli/command.h"
#include "src/core/error.h"
#include "src/report/run_report.h"

namespace distill::cli {
namespace {

// Only run.out (--out) applies: a report reads folders, it trains nothing (no device, threads or
// seed; setting them is an "unknown key" error rather than silently ignored).
struct ReportRunOptions {
  std::string out;
  void visit(config::Visitor& v) {
    v.field("out", out,
            "the HTML file to write; empty = RUN_DIR/report.html (one folder only); an existing "
            "folder = FOLDER/report.html");
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

void run_report(ReportCommandOptions& o, const Invocation& invocation) {
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
  return make_command<ReportCommandOptions>(
      "report", "HTML report of run folders: config, metrics, curves, results, image grids",
      "distill report runs/mtt runs/mtt_zca --out runs/compare.html", {}, run_report);
}

}  // namespace distill::cli
