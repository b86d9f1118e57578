// Reading run folders: metrics.jsonl (bad lines named by number, the rest kept), images
// (natural order, missing/broken ones warned about), results and config.
#include "src/report/run_folder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "src/core/error.h"
#include "tests/src/report/run_fixture.h"
#include "tests/support/test_support.h"

namespace distill::report {
namespace {

using testing::TempDir;

bool has_warning(const std::vector<std::string>& warnings, const std::string& text) {
  for (const auto& w : warnings) {
    if (w == text) return true;
  }
  return false;
}

std::string joined(const std::vector<std::string>& warnings) {
  std::string out;
  for (const auto& w : warnings) out += w + "\n";
  return out;
}

TEST(RunFolder, MetricsAreSeriesAgainstStepWithNullAsNaN) {
  std::vector<std::string> warnings;
  Metrics m = parse_metrics(
      "{\"step\":1,\"time_s\":0.5,\"loss\":2.5,\"acc\":0.1}\n"
      "{\"step\":2,\"time_s\":1.0,\"loss\":null}\n"
      "{\"step\":3,\"time_s\":1.5,\"loss\":1.5,\"acc\":0.3}\n",
      "metrics.jsonl", warnings);
  EXPECT_TRUE(warnings.empty()) << joined(warnings);
  EXPECT_EQ(m.records, 3u);
  ASSERT_EQ(m.series.size(), 3u);
  EXPECT_EQ(m.series[0].name, "loss");  // first appearance, time_s last
  EXPECT_EQ(m.series[1].name, "acc");
  EXPECT_EQ(m.series[2].name, "time_s");
  EXPECT_EQ(m.series[0].steps, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(m.series[0].values[0], 2.5);
  EXPECT_TRUE(std::isnan(m.series[0].values[1]));
  EXPECT_EQ(m.series[1].steps, (std::vector<double>{1, 3}));
}

TEST(RunFolder, TruncatedAndInvalidLinesAreNamedByNumberAndTheRestIsKept) {
  std::vector<std::string> warnings;
  Metrics m = parse_metrics(
      "{\"step\":1,\"loss\":3}\n"
      "\n"
      "{\"step\":2,\"loss\":2}\n"
      "{\"step\":3,\"lo\n"             // torn by a killed run
      "[1, 2]\n"                       // not an object
      "{\"loss\":1}\n"                 // no step
      "{\"step\":\"7\",\"loss\":1}\n"  // step is a string
      "{\"step\":8,\"loss\":1,\"phase\":\"warm\"}\n"
      "{\"step\":9,\"loss\":0.5,\"phase\":\"cold\"}\n"
      "{\"step\":10,\"loss\":0.25",  // last line cut short, no newline
      "runs/x/metrics.jsonl", warnings);
  EXPECT_EQ(m.records, 4u);
  ASSERT_EQ(m.series.size(), 1u);
  EXPECT_EQ(m.series[0].steps, (std::vector<double>{1, 2, 8, 9}));
  EXPECT_EQ(m.series[0].values, (std::vector<double>{3, 2, 1, 0.5}));
  EXPECT_TRUE(has_warning(warnings,
                          "runs/x/metrics.jsonl:4: not valid JSON (a line cut short?), skipped: "
                          "'{\"step\":3,\"lo'"))
      << joined(warnings);
  EXPECT_TRUE(has_warning(
      warnings, "runs/x/metrics.jsonl:5: expected a JSON object, found '[1, 2]', skipped"))
      << joined(warnings);
  EXPECT_TRUE(
      has_warning(warnings, "runs/x/metrics.jsonl:6: no numeric 'step', skipped: '{\"loss\":1}'"))
      << joined(warnings);
  EXPECT_TRUE(has_warning(warnings,
                          "runs/x/metrics.jsonl:7: no numeric 'step', skipped: "
                          "'{\"step\":\"7\",\"loss\":1}'"))
      << joined(warnings);
  EXPECT_TRUE(has_warning(warnings,
                          "runs/x/metrics.jsonl:8: 'phase' is a string; only numbers are plotted"))
      << joined(warnings);  // once per key, not again on line 9
  EXPECT_TRUE(has_warning(warnings,
                          "runs/x/metrics.jsonl:10: not valid JSON (a line cut short?), skipped: "
                          "'{\"step\":10,\"loss\":0.25'"))
      << joined(warnings);
  EXPECT_EQ(warnings.size(), 6u) << joined(warnings);
}

TEST(RunFolder, ManyBadLinesAreSummarised) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "garbage\n";
  std::vector<std::string> warnings;
  parse_metrics(text, "m.jsonl", warnings);
  ASSERT_EQ(warnings.size(), 21u);
  EXPECT_EQ(warnings.back(), "m.jsonl: 10 more invalid line(s) skipped");
}

TEST(RunFolder, NaturalOrderComparesNumbersAsNumbers) {
  std::vector<std::string> names{"grid_10.png",         "grid.png",
                                 "grid_2.png",          "grid_1.png",
                                 "samples/steps16.png", "samples/steps4.png"};
  std::sort(names.begin(), names.end(), natural_less);
  EXPECT_EQ(names, (std::vector<std::string>{"grid.png", "grid_1.png", "grid_2.png", "grid_10.png",
                                             "samples/steps4.png", "samples/steps16.png"}));
  EXPECT_FALSE(natural_less("a2", "a2"));
  EXPECT_TRUE(natural_less("a02", "a3"));
}

TEST(RunFolder, ReadsConfigMetricsImagesAndResults) {
  TempDir dir;
  const std::string run = dir.file("mtt_ipc1");
  fixture::write(run + "/config.toml", "[run]\nseed = 0\n\n[mtt]\nipc = 1\n");
  fixture::write(run + "/metrics.jsonl", "{\"step\":1,\"matching_loss\":0.5}\n");
  fixture::write(run + "/syn.pt", "not read");
  fixture::write(run + "/grid.png", fixture::tiny_png(12, 7));
  fixture::write(run + "/snapshots/grid_10.png", fixture::tiny_png(4, 4));
  fixture::write(run + "/snapshots/grid_2.png", fixture::tiny_png(4, 4));
  fixture::write(run + "/results.json", fixture::kEvalResults);
  fixture::write(run + "/results.json.tmp.123", "{");  // an atomic write in progress: ignored
  RunFolder folder = read_run_folder(run + "/");
  EXPECT_TRUE(folder.warnings.empty()) << joined(folder.warnings);
  EXPECT_EQ(folder.name, "mtt_ipc1");
  EXPECT_EQ(folder.kind, "mtt");
  ASSERT_TRUE(folder.config);
  EXPECT_EQ(*folder.config, "[run]\nseed = 0\n\n[mtt]\nipc = 1\n");
  ASSERT_TRUE(folder.metrics);
  EXPECT_EQ(folder.metrics->series.size(), 1u);
  ASSERT_EQ(folder.images.size(), 3u);
  EXPECT_EQ(folder.images[0].name, "grid.png");
  EXPECT_EQ(folder.images[0].width, 12);
  EXPECT_EQ(folder.images[0].height, 7);
  EXPECT_EQ(folder.images[0].bytes, fixture::tiny_png(12, 7));
  EXPECT_EQ(folder.images[1].name, "snapshots/grid_2.png");
  EXPECT_EQ(folder.images[2].name, "snapshots/grid_10.png");
  ASSERT_EQ(folder.results.size(), 1u);
  EXPECT_EQ(folder.results[0].name, "results.json");
  EXPECT_EQ(folder.results[0].json["protocol"], "dc");
}

// A sampling run (`distill diffusion sample`) logs no curves: no warning that metrics are missing.
TEST(RunFolder, SamplingRunsAreNotWarnedForMissingMetrics) {
  TempDir dir;
  fixture::write(dir.file("samples/config.toml"), "[diffusion]\n");
  fixture::write(dir.file("samples/samples.pt"), "x");
  fixture::write(dir.file("trained/config.toml"), "[diffusion]\n");
  EXPECT_FALSE(has_warning(read_run_folder(dir.file("samples")).warnings,
                           "metrics.jsonl missing: no curves to plot"));
  EXPECT_TRUE(has_warning(read_run_folder(dir.file("trained")).warnings,
                          "metrics.jsonl missing: no curves to plot"));
}

// An eval still training its students: no results.json yet, students.jsonl says how far it got.
TEST(RunFolder, AnUnfinishedEvalSaysHowManyStudentsAreRecorded) {
  TempDir dir;
  fixture::write(dir.file("eval/config.toml"), "[eval]\nruns = 3\n");
  fixture::write(dir.file("eval/students.jsonl"),
                 "{\"settings\": \"\"}\n{\"set\": \"a\"}\n{\"set\": \"b\"}\n{\"set\"");
  RunFolder folder = read_run_folder(dir.file("eval"));
  ASSERT_EQ(folder.kind, "eval");
  EXPECT_TRUE(has_warning(folder.warnings,
                          "results.json missing: the eval is running or was stopped; 2 students "
                          "are recorded in students.jsonl (`distill eval --resume` continues)"))
      << joined(folder.warnings);
  fixture::write(dir.file("eval/results.json"), fixture::kEvalResults);
  EXPECT_TRUE(read_run_folder(dir.file("eval")).warnings.empty())
      << joined(read_run_folder(dir.file("eval")).warnings);
}

TEST(RunFolder, MissingPiecesBecomeWarningsNotErrors) {
  TempDir dir;
  const std::string run = dir.file("broken");
  fixture::write(run + "/syn.pt", "x");                   // a set whose grid.png is missing
  fixture::write(run + "/empty.png", "");                 // a write that never finished
  fixture::write(run + "/fake.png", "GIF89a not a png");  // wrong content
  std::filesystem::create_symlink(run + "/gone.png", run + "/dangling.png");
  fixture::write(run + "/results.json", "{\"protocol\": \"dc\",");
  RunFolder folder = read_run_folder(run);
  EXPECT_TRUE(folder.images.empty());
  EXPECT_FALSE(folder.metrics);
  EXPECT_FALSE(folder.config);
  const auto& w = folder.warnings;
  EXPECT_TRUE(has_warning(w, "config.toml missing: the run's settings are unknown")) << joined(w);
  EXPECT_TRUE(has_warning(w, "metrics.jsonl missing: no curves to plot")) << joined(w);
  EXPECT_TRUE(has_warning(w, "empty.png: image is empty (a write that did not finish?), not shown"))
      << joined(w);
  EXPECT_TRUE(has_warning(w, "fake.png: not a PNG file (no PNG signature and header), not shown"))
      << joined(w);
  EXPECT_TRUE(has_warning(
      w, "dangling.png: image missing (a link to a file that does not exist), not shown"))
      << joined(w);
  EXPECT_TRUE(
      has_warning(w, "grid.png missing: this run writes its synthetic set's image grid there"))
      << joined(w);
  bool json_warning = false;
  for (const auto& text : w) {
    json_warning |= text.rfind("results.json: not valid JSON (", 0) == 0 &&
                    text.find("parse error") != std::string::npos;
  }
  EXPECT_TRUE(json_warning) << joined(w);
  EXPECT_EQ(w.size(), 7u) << joined(w);
}

TEST(RunFolder, BrokenConfigIsNamedWithItsLine) {
  TempDir dir;
  fixture::write(dir.file("r/config.toml"), "[mtt]\nipc = = 1\n");
  fixture::write(dir.file("r/metrics.jsonl"), "");
  RunFolder folder = read_run_folder(dir.file("r"));
  ASSERT_GE(folder.warnings.size(), 1u);
  EXPECT_EQ(folder.warnings[0].rfind("config.toml:2: not valid TOML (", 0), 0u)
      << folder.warnings[0];
  EXPECT_TRUE(has_warning(folder.warnings, "metrics.jsonl: no metrics logged yet (no valid line)"))
      << joined(folder.warnings);
  ASSERT_TRUE(folder.config);  // still shown as written
}

TEST(RunFolder, OversizedImagesAreListedNotEmbedded) {
  TempDir dir;
  fixture::write(dir.file("r/config.toml"), "[train]\n");
  fixture::write(dir.file("r/metrics.jsonl"), "{\"step\":1,\"loss\":1}\n");
  fixture::write(dir.file("r/big.png"), fixture::tiny_png(8, 8));
  ReadOptions options;
  options.max_image_bytes = 10;
  RunFolder folder = read_run_folder(dir.file("r"), options);
  EXPECT_TRUE(folder.images.empty());
  ASSERT_EQ(folder.warnings.size(), 1u);
  EXPECT_EQ(folder.warnings[0], "big.png: image is " +
                                    std::to_string(fixture::tiny_png(8, 8).size()) +
                                    " bytes, over the embedding limit of 10 bytes "
                                    "(report.max_image_mib), not shown");
}

TEST(RunFolder, AMissingFolderIsAnErrorNamingIt) {
  TempDir dir;
  try {
    read_run_folder(dir.file("nope"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "report: run folder '" + dir.file("nope") + "' does not exist");
  }
  fixture::write(dir.file("file"), "x");
  EXPECT_THROW(read_run_folder(dir.file("file")), Error);
}

}  // namespace
}  // namespace distill::report
