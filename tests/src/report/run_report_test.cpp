// The HTML report: every string escaped, self-contained, warnings visible, runs overlaid, and
// the evaluation table cell for cell as README tables show it (report --format markdown).
#include "src/report/run_report.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "src/core/error.h"
#include "src/io/atomic_file.h"
#include "src/report/base64.h"
#include "tests/src/report/run_fixture.h"
#include "tests/support/test_support.h"

namespace distill::report {
namespace {

using testing::TempDir;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::string render(const std::vector<std::string>& dirs, const ReportOptions& options = {}) {
  std::vector<RunFolder> runs;
  for (const auto& dir : dirs) runs.push_back(read_run_folder(dir));
  return render_report(runs, options);
}

// Every element the report itself writes; anything else came from the data unescaped.
void expect_only_report_tags(const std::string& html) {
  static const std::set<std::string> kAllowed = {
      "!DOCTYPE", "html", "head", "meta", "title",  "style",      "body",     "h1",      "h2",
      "h3",       "p",    "code", "nav",  "a",      "section",    "ul",       "li",      "table",
      "tr",       "th",   "td",   "div",  "figure", "figcaption", "img",      "details", "summary",
      "pre",      "svg",  "rect", "text", "line",   "g",          "polyline", "circle"};
  std::regex tag("</?([!A-Za-z][A-Za-z0-9]*)");
  for (std::sregex_iterator it(html.begin(), html.end(), tag), end; it != end; ++it) {
    EXPECT_TRUE(kAllowed.count((*it)[1]))
        << "unexpected element <" << (*it)[1] << "> at offset " << it->position() << ": "
        << html.substr(it->position(), 60);
  }
}

TEST(RunReport, EveryStringFromTheFolderIsEscaped) {
  TempDir dir;
  const std::string run = dir.file("<script>");
  fixture::write(run + "/config.toml", "[mtt]\nbuffer = \"<img src=x onerror=alert(1)>\"\n");
  fixture::write(run + "/metrics.jsonl",
                 "{\"step\":1,\"<i>loss</i>\":1.0,\"<b>phase</b>\":\"<u>warm</u>\"}\n"
                 "{\"step\":2,\"<i>loss</i>\":0.5}\n"
                 "{\"step\":3,\"<script>alert(2)</script>\n");
  fixture::write(run + "/<svg onload=alert(3)>.png", fixture::tiny_png(4, 4));
  fixture::write(run + "/grid.png", fixture::tiny_png(6, 6));
  fixture::write(run + "/results.json",
                 R"({"protocol": "<em>dc</em>", "eval_every": 0, "results": [
                    {"set": "<object>", "model": "<q>m</q>", "ipc": 1, "runs": 1,
                     "last_mean": 0.5, "last_std": 0.0}]})");
  fixture::write(run + "/train.json", R"({"<sup>k</sup>": "<sub>v</sub>", "n": 0.25})");
  fixture::write(run + "/nested.json", R"({"a": {"<tt>": [1, {"b": "</pre><iframe>"}]}})");
  fixture::write(run + "/<form>.json", "{");
  ReportOptions options;
  std::string html = render({run}, options);
  expect_only_report_tags(html);
  EXPECT_TRUE(contains(html, "<title>distill report: &lt;script&gt;</title>"));
  EXPECT_TRUE(contains(html, "<h1>distill report: &lt;script&gt;</h1>"));
  for (const char* escaped :
       {"&lt;img src=x onerror=alert(1)&gt;",              // config.toml
        "&lt;i&gt;loss&lt;/i&gt;",                         // metric name (table and plot title)
        "&#39;&lt;b&gt;phase&lt;/b&gt;&#39; is a string",  // warning about a metric
        "&lt;script&gt;alert(2)&lt;/script&gt;",           // excerpt of the torn line
        "&lt;svg onload=alert(3)&gt;.png",                 // image file name
        "&lt;em&gt;dc&lt;/em&gt;", "&lt;object&gt;", "&lt;q&gt;m&lt;/q&gt;",  // eval table
        "&lt;sup&gt;k&lt;/sup&gt;", "&lt;sub&gt;v&lt;/sub&gt;",               // flat results
        "&lt;tt&gt;", "&lt;/pre&gt;&lt;iframe&gt;",                           // nested JSON
        "&lt;form&gt;.json: not valid JSON"}) {                               // bad file name
    EXPECT_TRUE(contains(html, escaped)) << escaped;
  }
  EXPECT_EQ(count(html, "<svg "), 1u);  // the loss plot, nothing from the file name
}

TEST(RunReport, ATitleOptionIsEscapedToo) {
  TempDir dir;
  fixture::write(dir.file("r/metrics.jsonl"), "{\"step\":1,\"loss\":1}\n");
  ReportOptions options;
  options.title = "A & B <compare>";
  std::string html = render({dir.file("r")}, options);
  EXPECT_TRUE(contains(html, "<title>A &amp; B &lt;compare&gt;</title>"));
  expect_only_report_tags(html);
}

TEST(RunReport, SelfContainedWithoutScriptsOrNetwork) {
  TempDir dir;
  const std::string run = dir.file("run");
  fixture::write(run + "/config.toml", "[subset]\nipc = 1\n");
  fixture::write(run + "/grid.png", fixture::tiny_png(30, 20));
  std::string html = render({run});
  EXPECT_TRUE(contains(html,
                       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src "
                       "'none'; img-src data:; style-src 'unsafe-inline'\">"));
  EXPECT_FALSE(contains(html, "<script"));
  EXPECT_FALSE(contains(html, "<link"));
  // The only URL is the SVG namespace (an identifier, never fetched).
  std::regex url("https?://[^\"' ]*");
  for (std::sregex_iterator it(html.begin(), html.end(), url), end; it != end; ++it) {
    EXPECT_EQ(it->str(), "http://www.w3.org/2000/svg");
  }
  // The grid is embedded byte for byte, scaled by a whole factor (960 / 30 -> 32, capped at 8).
  EXPECT_TRUE(contains(html, "width=\"240\" height=\"160\" src=\"data:image/png;base64," +
                                 base64_encode(fixture::tiny_png(30, 20)) + "\""));
  EXPECT_TRUE(contains(html, "grid.png (30x20)"));
  EXPECT_FALSE(contains(html, "class=\"warnings\""));  // subset runs log no metrics: no warning
}

TEST(RunReport, BadInputRendersWithVisibleWarnings) {
  TempDir dir;
  // No metrics, a set without its grid.
  fixture::write(dir.file("nometrics/config.toml"), "[mtt]\nipc = 1\n");
  fixture::write(dir.file("nometrics/syn.pt"), "x");
  std::string html = render({dir.file("nometrics")});
  EXPECT_TRUE(contains(html, "<section class=\"warnings\" id=\"warnings\"><h2>Warnings (2)</h2>"));
  EXPECT_TRUE(contains(html, "<li>nometrics: metrics.jsonl missing: no curves to plot</li>"));
  EXPECT_TRUE(contains(html, "<li>nometrics: grid.png missing: this mtt run writes"));
  EXPECT_TRUE(contains(html, "No curves: no metrics were logged."));
  EXPECT_TRUE(contains(html, "No images in this run folder."));

  // A torn line in the middle: named by its number, the lines around it still plotted.
  fixture::write(dir.file("torn/config.toml"), "[train]\n");
  fixture::write(dir.file("torn/metrics.jsonl"),
                 "{\"step\":1,\"loss\":3}\n{\"step\":2,\"lo\n{\"step\":3,\"loss\":1}\n");
  html = render({dir.file("torn")});
  EXPECT_TRUE(contains(html,
                       "<li>torn: metrics.jsonl:2: not valid JSON (a line cut short?), "
                       "skipped: &#39;{&quot;step&quot;:2,&quot;lo&#39;</li>"));
  EXPECT_EQ(count(html, "<polyline"), 1u);
  EXPECT_TRUE(contains(html, "<td>loss</td><td class=\"num\">1</td><td class=\"num\">3</td>"));
}

TEST(RunReport, EvalTableWithMissingFieldsShowsQuestionMarksAndWarns) {
  nlohmann::json json = nlohmann::json::parse(fixture::kEvalResults);
  json["results"][0].erase("last_mean");
  json["results"][1]["ipc"] = "ten";
  json["results"][1]["runs"] = 123456;
  std::vector<std::string> warnings;
  Table table = eval_table(json, "results.json", warnings);
  ASSERT_EQ(table.rows.size(), 2u);
  EXPECT_EQ(table.rows[0][5], "?");
  EXPECT_EQ(table.rows[1][2], "?");
  EXPECT_EQ(table.rows[1][3], "123456");
  EXPECT_EQ(warnings, (std::vector<std::string>{
                          "results.json: results[0].last_mean: expected a number, found nothing",
                          "results.json: results[1].ipc: expected a number, found \"ten\""}));
}

TEST(RunReport, EvalTableHasTheCellsOfTheReadmeTableWriter) {
  nlohmann::json json = nlohmann::json::parse(fixture::kEvalResults);
  std::vector<std::string> warnings;
  std::string markdown = markdown_table(eval_table(json, "results.json", warnings));
  EXPECT_TRUE(warnings.empty());
  const std::string rows =
      "| mtt/syn.pt | convnet | 10 | 5 | dc | 73.87 ± 1.96 | 74.50 |\n"
      "| random-real | convnet | all | 2 | dc | 50.43 ± 5.58 | 51.00 |\n";
  EXPECT_EQ(markdown,
            "| set | model | IPC | runs | protocol | last-epoch acc % | best acc % |\n"
            "|---|---|---|---|---|---|---|\n" +
                rows);

}

TEST(RunReport, WallTimeColumnIsTheMeanOfEachRowsSecondsInMinutes) {
  nlohmann::json json = nlohmann::json::parse(fixture::kEvalResults);
  std::vector<std::string> warnings;
  Table untimed = eval_table(json, "results.json", warnings);
  const size_t columns = untimed.header.size();
  add_wall_time_column(untimed, json);
  EXPECT_EQ(untimed.header.size(), columns) << "no row records seconds: no column";

  json["results"][0]["seconds"] = {60.0, 120.0, 93.0};  // mean 91 s
  Table timed = eval_table(json, "results.json", warnings);
  add_wall_time_column(timed, json);
  ASSERT_EQ(timed.header.size(), columns + 1);
  EXPECT_EQ(timed.header.back(), "min per student");
  EXPECT_EQ(timed.rows[0].back(), "1.5");
  EXPECT_EQ(timed.rows[1].back(), "n/a");
}

TEST(RunReport, MarkdownCellsEscapePipes) {
  Table table{{"a|b"}, {{"x|y"}}};
  EXPECT_EQ(markdown_table(table), "| a\\|b |\n|---|\n| x\\|y |\n");
}

TEST(RunReport, SeveralRunsAreOverlaidWithALegend) {
  TempDir dir;
  fixture::write(dir.file("a/metrics.jsonl"), "{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":1}\n");
  fixture::write(dir.file("b/metrics.jsonl"),
                 "{\"step\":1,\"loss\":3,\"acc\":0.5}\n{\"step\":2,\"loss\":2,\"acc\":0.6}\n");
  std::string html = render({dir.file("a"), dir.file("b")});
  EXPECT_EQ(count(html, "<svg "), 2u);             // loss (both runs) and acc (b only)
  EXPECT_EQ(count(html, "<polyline"), 3u);         // a/loss, b/loss, b/acc
  EXPECT_EQ(count(html, "class=\"legend\""), 2u);  // only the overlaid plot has a legend
  EXPECT_TRUE(contains(html, "<title>distill report: a, b</title>"));
  EXPECT_TRUE(contains(html, "<th>run</th><th>metric</th>"));
  EXPECT_TRUE(contains(html, "<td>b</td><td>acc</td>"));
  // Both have a config-less warning each, prefixed with their run.
  EXPECT_TRUE(contains(html, "<li>a: config.toml missing"));
  EXPECT_TRUE(contains(html, "<li>b: config.toml missing"));

  // Folders with one name are told apart by their paths.
  fixture::write(dir.file("x/run/metrics.jsonl"), "{\"step\":1,\"loss\":2}\n");
  fixture::write(dir.file("y/run/metrics.jsonl"), "{\"step\":1,\"loss\":2}\n");
  html = render({dir.file("x/run"), dir.file("y/run")});
  EXPECT_TRUE(contains(html, ">" + dir.file("x/run") + "</text>"));
  EXPECT_TRUE(contains(html, ">" + dir.file("y/run") + "</text>"));
}

// MTT's bookkeeping (the expert drawn, its start epoch, DATM's window) goes to the final-metrics
// table, not to curves; the matching loss is plotted.
TEST(RunReport, BookkeepingFieldsAreTabledNotPlotted) {
  TempDir dir;
  fixture::write(dir.file("m/metrics.jsonl"),
                 "{\"step\":1,\"matching_loss\":0.9,\"expert\":3,\"start_epoch\":1,"
                 "\"window_end\":2}\n{\"step\":2,\"matching_loss\":0.8,\"expert\":0,"
                 "\"start_epoch\":0,\"window_end\":2}\n");
  const std::string html = render({dir.file("m")});
  EXPECT_EQ(count(html, "<svg "), 1u);
  EXPECT_TRUE(contains(html, ">matching_loss</text>"));
  EXPECT_FALSE(contains(html, ">expert</text>"));
  EXPECT_TRUE(contains(html, "<td>expert</td><td class=\"num\">0</td>"));  // last value
  EXPECT_TRUE(contains(html, "not plotted: expert, start_epoch, window_end."));
}

TEST(RunReport, LogScaleByMetricName) {
  TempDir dir;
  fixture::write(dir.file("r/metrics.jsonl"),
                 "{\"step\":1,\"loss\":10,\"delta\":-1}\n{\"step\":2,\"loss\":0.1,\"delta\":1}\n");
  ReportOptions options;
  options.log_y = {"loss"};
  std::string html = render({dir.file("r")}, options);
  EXPECT_TRUE(contains(html, ">loss (log scale)</text>"));
  EXPECT_TRUE(contains(html, ">delta</text>"));
  options.log_y = {"*"};
  html = render({dir.file("r")}, options);
  EXPECT_TRUE(contains(html, ">loss (log scale)</text>"));
  EXPECT_TRUE(contains(html, "log scale not used: 1 value(s) &lt;= 0"));
}

TEST(RunReport, WriteReportWritesTheFileAndReturnsItsWarnings) {
  TempDir dir;
  fixture::write(dir.file("r/config.toml"), "[train]\n");
  std::vector<std::string> warnings = write_report({dir.file("r")}, dir.file("out/report.html"));
  EXPECT_EQ(warnings, (std::vector<std::string>{"r: metrics.jsonl missing: no curves to plot"}));
  std::string html = io::read_file(dir.file("out/report.html"));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.substr(html.size() - 8), "</html>\n");
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("out"))) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "report.html");  // no temporary left behind
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(run_report_path("runs/x"), "runs/x/report.html");
  try {
    write_report({}, dir.file("o.html"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "report: no run folder given");
  }
  ReportOptions few;
  few.max_points = 1;
  try {
    write_report({dir.file("r")}, dir.file("o.html"), few);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "report.max_points: expected at least 2 points per curve, found 1");
  }
  ReportOptions bad;
  bad.max_image_mib = 0;
  try {
    write_report({dir.file("r")}, dir.file("o.html"), bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "report.max_image_mib: expected a positive number of MiB, found 0");
  }
}

}  // namespace
}  // namespace distill::report
