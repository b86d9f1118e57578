// `distill report` end to end: usage errors, the report a tiny real run refreshes at its end, and
// that report opened in headless Chromium (screenshot + DOM); skipped when Chromium is absent.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stb_image.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "src/core/runtime.h"
#include "src/io/atomic_file.h"
#include "src/io/tensor_file.h"
#include "tests/src/report/run_fixture.h"
#include "tests/support/cli_support.h"
#include "tests/support/test_support.h"

namespace distill {
namespace {

using testing::CommandResult;
using testing::TempDir;
using testing::contains;
using testing::distill_cli;
using testing::tiny_flags;
using testing::write_tiny_dataset;

constexpr const char* kChromium = "/usr/bin/chromium";

std::string quoted(const std::string& path) { return "'" + path + "'"; }

TEST(ReportCommand, UsageErrorsExit2WithOneLine) {
  TempDir dir;
  CommandResult none = distill_cli("report");
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_TRUE(contains(none.output,
                       "distill: error: report: no run folder given; usage: distill "
                       "report RUN_DIR [RUN_DIR ...] [--out report.html]"))
      << none.output;
  CommandResult missing = distill_cli("report " + dir.file("nope"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(contains(missing.output, "distill: error: report: run folder '" + dir.file("nope") +
                                           "' does not exist"))
      << missing.output;
  std::filesystem::create_directories(dir.file("a"));
  std::filesystem::create_directories(dir.file("b"));
  CommandResult two = distill_cli("report " + dir.file("a") + " " + dir.file("b"));
  EXPECT_EQ(two.exit_code, 2);
  EXPECT_TRUE(
      contains(two.output, "2 run folders given: name the report file with --out FILE.html"))
      << two.output;
  CommandResult help = distill_cli("report --help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_TRUE(contains(help.output, "report.log_y")) << help.output;
}

TEST(ReportCommand, EmptyFolderStillGetsAReportWithWarnings) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("empty"));
  CommandResult r = distill_cli("report " + dir.file("empty"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "report: " + dir.file("empty") + "/report.html")) << r.output;
  EXPECT_TRUE(contains(r.output, "distill report: warning: empty: metrics.jsonl missing"))
      << r.output;
  std::string html = io::read_file(dir.file("empty/report.html"));
  EXPECT_TRUE(contains(html, "<h2>Warnings (2)</h2>")) << html.substr(0, 2000);
}

// README tables and reports share one code path: `--format markdown` prints the evaluation table
// the report draws, and experiments/write_table.py puts exactly that text under its caption.
TEST(ReportCommand, MarkdownTableIsWhatWriteTableWritesIntoTheReadme) {
  TempDir dir;
  std::filesystem::create_directories(dir.file("run"));
  report::fixture::write(dir.file("run/results.json"), report::fixture::kEvalResults);
  const std::string expected =
      "| set | model | IPC | runs | protocol | last-epoch acc % | best acc % |\n"
      "|---|---|---|---|---|---|---|\n"
      "| mtt/syn.pt | convnet | 10 | 5 | dc | 73.87 ± 1.96 | 74.50 |\n"
      "| random-real | convnet | all | 2 | dc | 50.43 ± 5.58 | 51.00 |\n";
  CommandResult folder = distill_cli("report --format markdown " + dir.file("run"));
  ASSERT_EQ(folder.exit_code, 0) << folder.output;
  EXPECT_TRUE(contains(folder.output, expected)) << folder.output;

  // Two files: one table, rows in order; --out writes the file instead of printing.
  CommandResult two = distill_cli("report --format markdown " + dir.file("run/results.json") +
                                  " " + dir.file("run") + " --out " + dir.file("table.md"));
  ASSERT_EQ(two.exit_code, 0) << two.output;
  const std::string rows = expected.substr(expected.find("| mtt/"));
  EXPECT_EQ(io::read_file(dir.file("table.md")), expected + rows);

  DISTILL_REQUIRE_TOOL(access("/usr/bin/python3", X_OK) == 0, "/usr/bin/python3");
  std::filesystem::create_directories(dir.file("experiments"));
  for (const char* script : {"write_table.py", "readme_tables.py"}) {
    std::filesystem::copy_file(testing::source_dir() + "/experiments/" + script,
                               dir.file(std::string("experiments/") + script));
  }
  report::fixture::write(dir.file("README.md"), "a\n<!-- table:t -->\n<!-- /table:t -->\nb\n");
  CommandResult r = testing::run_command("DISTILL=" + testing::distill_binary() +
                                         " /usr/bin/python3 " +
                                         dir.file("experiments/write_table.py") +
                                         " t 'the caption' " + dir.file("run/results.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(io::read_file(dir.file("README.md")),
            "a\n<!-- table:t -->\nthe caption\n\n" + expected + "<!-- /table:t -->\nb\n");
}

TEST(ReportCommand, MarkdownTableRefusesIncompleteResults) {
  TempDir dir;
  report::fixture::write(dir.file("results.json"),
                         R"({"protocol": "dc", "results": [{"set": "s", "model": "m", "ipc": 1}]})");
  CommandResult r = distill_cli("report --format markdown " + dir.file("results.json"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "the evaluation table is incomplete")) << r.output;
  EXPECT_TRUE(contains(r.output, "results.json: results[0].runs: expected a number, found nothing"))
      << r.output;
  report::fixture::write(dir.file("bad.json"), "{\"results\": [");
  CommandResult bad = distill_cli("report --format markdown " + dir.file("bad.json"));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_TRUE(contains(bad.output, "bad.json' is not valid JSON")) << bad.output;
  CommandResult format = distill_cli("report --format pdf " + dir.file("results.json"));
  EXPECT_EQ(format.exit_code, 2);
  EXPECT_TRUE(contains(format.output, "run.format = 'pdf': expected \"html\" or \"markdown\""))
      << format.output;
}

// Counts pixels near an RGB colour (the plots' first series colour, say).
size_t pixels_near(const unsigned char* rgb, size_t n, int r, int g, int b, int tolerance) {
  size_t count = 0;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* p = rgb + 3 * i;
    if (std::abs(p[0] - r) <= tolerance && std::abs(p[1] - g) <= tolerance &&
        std::abs(p[2] - b) <= tolerance) {
      ++count;
    }
  }
  return count;
}

TEST(ReportCommand, TinyRunReportRendersInHeadlessChromium) {
  TempDir dir;
  std::string data = write_tiny_dataset(dir);
  // The run is named `<script>`: the page must show it as text.
  const std::string run = dir.file("<script>");
  CommandResult train = distill_cli("train --epochs 3 " + tiny_flags(data) +
                                    "--set model.width=8 --set model.depth=1 --out " + quoted(run));
  ASSERT_EQ(train.exit_code, 0) << train.output;
  // Long commands refresh RUN_DIR/report.html at their end and print its path.
  EXPECT_TRUE(contains(train.output, "report: " + run + "/report.html")) << train.output;
  EXPECT_TRUE(std::filesystem::exists(run + "/report.html"));
  CommandResult subset =
      distill_cli("subset --ipc 2 " + tiny_flags(data) + "--out " + dir.file("subset"));
  ASSERT_EQ(subset.exit_code, 0) << subset.output;

  // An eval of the subset: its report shows the set's images, each student's test curve and
  // the students' confusion matrix.
  CommandResult eval = distill_cli("eval --syn " + dir.file("subset/syn.pt") +
                                   " --runs 2 --epochs 2 " + tiny_flags(data) +
                                   "--set eval.model.width=8 --set eval.train.eval_every=1 --out " +
                                   dir.file("eval"));
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  const nlohmann::json results =
      nlohmann::json::parse(io::read_file(dir.file("eval/results.json")));
  const nlohmann::json& set_row = results["results"][0];
  ASSERT_TRUE(set_row.contains("confusion")) << set_row.dump();
  int64_t total = 0, diagonal = 0;
  const auto confusion = set_row["confusion"].get<std::vector<std::vector<int64_t>>>();
  for (size_t i = 0; i < confusion.size(); ++i) {
    for (size_t j = 0; j < confusion[i].size(); ++j) {
      total += confusion[i][j];
      if (i == j) diagonal += confusion[i][j];
    }
  }
  EXPECT_EQ(set_row["confusion_runs"], 2);
  // Both students score the same test images: the summed matrix's accuracy is their mean.
  EXPECT_NEAR(static_cast<double>(diagonal) / static_cast<double>(total),
              set_row["last_mean"].get<double>(), 1e-12);
  EXPECT_EQ(set_row["per_class_accuracy"].size(), confusion.size());
  ASSERT_EQ(set_row["curves"].size(), 2u);
  EXPECT_EQ(set_row["curves"][0].size(), 2u);  // epochs 1 and 2
  EXPECT_EQ(set_row["curves"][1][1][1], set_row["last_accuracy"][1]);

  const std::string out = dir.file("compare.html");
  CommandResult report =
      distill_cli("report " + quoted(run) + " " + dir.file("subset") + " " + dir.file("eval") +
                  " --set 'report.log_y=[\"train_loss\"]' --out " + out);
  ASSERT_EQ(report.exit_code, 0) << report.output;
  EXPECT_TRUE(contains(report.output, "report: " + out)) << report.output;
  std::string html = io::read_file(out);
  EXPECT_TRUE(contains(html, "<title>distill report: &lt;script&gt;, subset, eval</title>"));
  EXPECT_TRUE(contains(html, "data:image/png;base64,"));  // subset's grid.png
  EXPECT_TRUE(contains(html, "alt=\"set_grid.png\""));    // the evaluated set's images
  EXPECT_TRUE(contains(html, "<svg "));

  DISTILL_REQUIRE_TOOL(std::filesystem::exists(kChromium),
                       kChromium << " to open the report in a real browser (Debian's chromium; "
                                    "tests/run.sh installs it)");
  // As root Chromium needs --no-sandbox; its own profile keeps the test from touching $HOME.
  const std::string chromium = std::string("timeout 120 ") + kChromium +
                               " --headless --no-sandbox --disable-gpu --hide-scrollbars "
                               "--user-data-dir=" +
                               dir.file("profile") + " ";
  const std::string url = "file://" + out;
  CommandResult shot = testing::run_command(chromium + "--window-size=1200,2400 --screenshot=" +
                                            dir.file("shot.png") + " " + url + " 2>&1");
  ASSERT_EQ(shot.exit_code, 0) << shot.output;
  int width = 0, height = 0, channels = 0;
  unsigned char* rgb = stbi_load(dir.file("shot.png").c_str(), &width, &height, &channels, 3);
  ASSERT_NE(rgb, nullptr) << "screenshot is not a readable PNG: " << shot.output;
  EXPECT_EQ(width, 1200);
  EXPECT_EQ(height, 2400);
  const size_t n = static_cast<size_t>(width) * height;
  const size_t white = pixels_near(rgb, n, 255, 255, 255, 0);
  const size_t line_blue = pixels_near(rgb, n, 0x1f, 0x77, 0xb4, 40);  // first series colour
  const size_t warning_yellow = pixels_near(rgb, n, 0xff, 0xf4, 0xd6, 4);
  stbi_image_free(rgb);
  // Not blank: text, tables and curves cover a few percent of the page...
  EXPECT_GT(n - white, n / 50) << "only " << n - white << " non-white pixels of " << n;
  // ...the SVG curves were drawn (runs overlaid: blue is the first run's line)...
  EXPECT_GT(line_blue, 200u);
  // ...and the page has no warning box for these two complete runs.
  EXPECT_EQ(warning_yellow, 0u);

  CommandResult dom = testing::run_command(chromium + "--dump-dom " + url + " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  EXPECT_TRUE(contains(dom.output, "<title>distill report: &lt;script&gt;, subset, eval</title>"))
      << dom.output.substr(0, 2000);
  EXPECT_TRUE(contains(dom.output, "<h1>distill report: &lt;script&gt;, subset, eval</h1>"));
  EXPECT_TRUE(contains(dom.output, "train_loss (log scale)"));
  // The eval's set images, per-student curves and confusion matrix, as the browser parsed them.
  EXPECT_TRUE(contains(dom.output, "alt=\"set_grid.png\""));
  EXPECT_TRUE(contains(dom.output, "test accuracy % per student: "));
  EXPECT_TRUE(contains(dom.output, "class=\"confusion\""));
  EXPECT_TRUE(contains(dom.output, "per-class accuracy %: 0: "));
  EXPECT_FALSE(contains(dom.output, "<script>"));  // the run name never became an element
}

}  // namespace
}  // namespace distill
