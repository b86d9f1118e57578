// SVG line plots: axis ranges and ticks, pixel positions, log scale, non-finite points, empty
// series, thinning, escaping and well-formed XML.
#include "src/report/svg_plot.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <regex>

#include "src/core/error.h"
#include "tests/support/test_support.h"

namespace distill::report {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

size_t count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

std::vector<std::string> polylines(const std::string& svg) {
  std::vector<std::string> out;
  std::regex pattern("<polyline[^>]*points=\"([^\"]*)\"");
  for (std::sregex_iterator it(svg.begin(), svg.end(), pattern), end; it != end; ++it) {
    out.push_back((*it)[1]);
  }
  return out;
}

void expect_ticks(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(actual[i], expected[i], 1e-12) << i;
}

TEST(SvgPlot, NiceTicksCoverTheRangeInOneTwoFiveSteps) {
  expect_ticks(nice_ticks(0.13, 0.87), {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9});
  expect_ticks(nice_ticks(0.1, 0.9), {0.0, 0.2, 0.4, 0.6, 0.8, 1.0});
  expect_ticks(nice_ticks(0, 100), {0, 20, 40, 60, 80, 100});
  expect_ticks(nice_ticks(-3, 7), {-4, -2, 0, 2, 4, 6, 8});
  expect_ticks(nice_ticks(1, 1000), {0, 200, 400, 600, 800, 1000});
  // A single value is widened (by 10 %) rather than giving a zero-width axis.
  expect_ticks(nice_ticks(5, 5), {4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6});
  expect_ticks(nice_ticks(0, 0), {-1.0, -0.5, 0.0, 0.5, 1.0});
  EXPECT_THROW(nice_ticks(0, kNaN), Error);
}

TEST(SvgPlot, LogTicksArePowersOfTenWithTwoAndFiveForShortRanges) {
  expect_ticks(log_ticks(1e-3, 100), {1e-3, 1e-2, 1e-1, 1, 10, 100});
  expect_ticks(log_ticks(1, 100), {1, 2, 5, 10, 20, 50, 100});
  EXPECT_EQ(log_ticks(1e-20, 1e20).size(), 9u);  // every fifth decade of 40
  EXPECT_THROW(log_ticks(0, 1), Error);
}

TEST(SvgPlot, FormatNumberIsShort) {
  EXPECT_EQ(format_number(0.0), "0");
  EXPECT_EQ(format_number(0.25), "0.25");
  EXPECT_EQ(format_number(1500), "1500");
  EXPECT_EQ(format_number(1e-5), "1e-5");
  EXPECT_EQ(format_number(2e6), "2e6");
  EXPECT_EQ(format_number(-0.3000000000000001), "-0.3");
  EXPECT_EQ(format_number(kNaN), "NaN");
  EXPECT_EQ(format_number(-kInf), "-inf");
}

TEST(SvgPlot, AxisRangesAndPixelPositions) {
  Series s{"loss", {0, 5, 10}, {0.1, 0.5, 0.9}};
  PlotOptions options;  // 560 x 300: plot area x 64..544, y 28..256 (margins 64/16/28/44)
  PlotLayout layout = layout_plot({s}, options);
  EXPECT_EQ(layout.x.lo, 0);
  EXPECT_EQ(layout.x.hi, 10);
  EXPECT_DOUBLE_EQ(layout.y.lo, 0.0);
  EXPECT_DOUBLE_EQ(layout.y.hi, 1.0);
  EXPECT_FALSE(layout.y.log);
  EXPECT_FALSE(layout.empty);
  EXPECT_EQ(layout.finite_points, 3u);
  EXPECT_DOUBLE_EQ(layout.left, 64);
  EXPECT_DOUBLE_EQ(layout.width, 480);
  EXPECT_DOUBLE_EQ(layout.top, 28);
  EXPECT_DOUBLE_EQ(layout.height, 228);
  // y = 0.5 is halfway up 28..256; x = 5 halfway along 64..544.
  std::vector<std::string> lines = polylines(render_svg_plot({s}, options));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "64.00,233.20 304.00,142.00 544.00,50.80 ");
  std::string svg = render_svg_plot({s}, options);
  for (const char* label : {">0<", ">2<", ">10<", ">0.2<", ">1<"}) {
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  }
  EXPECT_EQ(count(svg, "class=\"x-tick\""), 6u);  // 0 2 4 6 8 10
  EXPECT_EQ(count(svg, "class=\"y-tick\""), 6u);  // 0 .. 1 by 0.2
}

TEST(SvgPlot, LogScaleMapsDecadesEvenly) {
  Series s{"loss", {0, 1, 2}, {1e-3, 0.1, 20}};
  PlotOptions options;
  options.log_y = true;
  PlotLayout layout = layout_plot({s}, options);
  ASSERT_TRUE(layout.y.log);
  EXPECT_DOUBLE_EQ(layout.y.lo, 1e-3);
  EXPECT_DOUBLE_EQ(layout.y.hi, 100);
  // 0.1 is 2 of 5 decades above 1e-3: 40 % up the 228-pixel area from y = 256.
  EXPECT_NEAR(layout.to_px_y(0.1), 256 - 0.4 * 228, 1e-9);
  std::string svg = render_svg_plot({s}, options);
  EXPECT_NE(svg.find("(log scale)"), std::string::npos);
  EXPECT_NE(svg.find(">0.001<"), std::string::npos);
  EXPECT_NE(svg.find(">100<"), std::string::npos);
  EXPECT_TRUE(layout.notes.empty());
}

TEST(SvgPlot, NarrowLogRangesEndAtOneTwoOrFiveTimesAPowerOfTen) {
  PlotOptions options;
  options.log_y = true;
  PlotLayout layout = layout_plot({Series{"loss", {0, 1}, {1.06, 1.2}}}, options);
  ASSERT_TRUE(layout.y.log);
  EXPECT_DOUBLE_EQ(layout.y.lo, 1);
  EXPECT_DOUBLE_EQ(layout.y.hi, 2);
  expect_ticks(layout.y.ticks, {1, 2});
  layout = layout_plot({Series{"loss", {0, 1}, {0.03, 0.4}}}, options);
  EXPECT_DOUBLE_EQ(layout.y.lo, 0.02);
  EXPECT_DOUBLE_EQ(layout.y.hi, 0.5);
  expect_ticks(layout.y.ticks, {0.02, 0.05, 0.1, 0.2, 0.5});
  layout = layout_plot({Series{"loss", {0, 1}, {5, 5}}}, options);  // one value: a whole step
  EXPECT_DOUBLE_EQ(layout.y.lo, 5);
  EXPECT_DOUBLE_EQ(layout.y.hi, 10);
}

TEST(SvgPlot, LogScaleIsRefusedWithANoteForNonPositiveData) {
  Series s{"delta", {0, 1, 2, 3}, {-1, 0, 2, 4}};
  PlotOptions options;
  options.log_y = true;
  PlotLayout layout = layout_plot({s}, options);
  EXPECT_FALSE(layout.y.log);
  EXPECT_DOUBLE_EQ(layout.y.lo, -1);
  EXPECT_DOUBLE_EQ(layout.y.hi, 4);
  ASSERT_EQ(layout.notes.size(), 1u);
  EXPECT_EQ(layout.notes[0],
            "log scale not used: 2 value(s) <= 0 (a log axis needs positive data)");
  std::string svg = render_svg_plot({s}, options);
  EXPECT_NE(svg.find("log scale not used"), std::string::npos);  // visible on the plot
  EXPECT_EQ(svg.find("(log scale)"), std::string::npos);
}

TEST(SvgPlot, NonFinitePointsAreSkippedBreakTheLineAndAreMarked) {
  Series s{"loss", {1, 2, 3, 4, 5, 6}, {1, 2, kNaN, 4, 5, kInf}};
  PlotOptions options;
  PlotLayout layout = layout_plot({s}, options);
  EXPECT_EQ(layout.finite_points, 4u);
  EXPECT_EQ(layout.non_finite_points, 2u);
  // The range comes from finite values only; the steps of NaN points stay on the x axis.
  EXPECT_DOUBLE_EQ(layout.y.lo, 1);
  EXPECT_DOUBLE_EQ(layout.y.hi, 5);
  EXPECT_DOUBLE_EQ(layout.x.hi, 6);
  std::string svg = render_svg_plot({s}, options);
  std::vector<std::string> lines = polylines(svg);
  ASSERT_EQ(lines.size(), 2u);  // 1-2 and 4-5: the line breaks at the NaN
  EXPECT_EQ(count(lines[0], ","), 2u);
  EXPECT_EQ(count(lines[1], ","), 2u);
  EXPECT_EQ(count(svg, "class=\"non-finite\""), 2u);
  EXPECT_NE(svg.find("step 3: NaN"), std::string::npos);
  EXPECT_NE(svg.find("step 6: inf"), std::string::npos);
  EXPECT_NE(svg.find("2 non-finite value(s) (NaN/inf) not drawn"), std::string::npos);
  EXPECT_NE(svg.find("x = non-finite value"), std::string::npos);  // legend for the crosses
  // NaN sits on the bottom edge (y 256 - 6), +inf on the top edge (28 + 6).
  const double x3 = layout.to_px_x(3);
  char nan_cross[64];
  std::snprintf(nan_cross, sizeof nan_cross, "x1=\"%.2f\" y1=\"%.2f\"", x3 - 4, 250.0 - 4);
  EXPECT_NE(svg.find(nan_cross), std::string::npos) << nan_cross;
}

TEST(SvgPlot, NonFiniteStepsAreCountedNotPlaced) {
  Series s{"loss", {1, kNaN, 3}, {1, 2, 3}};
  PlotLayout layout = layout_plot({s}, PlotOptions{});
  EXPECT_EQ(layout.skipped_x_points, 1u);
  EXPECT_EQ(layout.non_finite_points, 0u);
  ASSERT_EQ(layout.notes.size(), 1u);
  EXPECT_EQ(layout.notes[0], "1 point(s) with a non-finite step skipped");
}

TEST(SvgPlot, EmptySeriesDrawAFrameWithNoData) {
  for (const std::vector<Series>& series :
       {std::vector<Series>{}, std::vector<Series>{Series{"loss", {}, {}}},
        std::vector<Series>{Series{"loss", {1, 2}, {kNaN, kNaN}}}}) {
    PlotLayout layout = layout_plot(series, PlotOptions{});
    EXPECT_TRUE(layout.empty);
    EXPECT_DOUBLE_EQ(layout.y.lo, 0);
    EXPECT_DOUBLE_EQ(layout.y.hi, 1);
    std::string svg = render_svg_plot(series, PlotOptions{});
    EXPECT_NE(svg.find(">no data<"), std::string::npos);
    EXPECT_NE(svg.find("no finite values to plot"), std::string::npos);
    EXPECT_TRUE(polylines(svg).empty());
  }
}

TEST(SvgPlot, SeveralSeriesGetALegendAndAnEmptyOneSaysSo) {
  std::vector<Series> series{
      {"run-a", {0, 1}, {1, 2}}, {"run-b", {0, 2}, {3, 1}}, {"run-c", {}, {}}};
  std::string svg = render_svg_plot(series, PlotOptions{});
  EXPECT_EQ(polylines(svg).size(), 2u);
  EXPECT_EQ(count(svg, "class=\"legend\""), 3u);
  EXPECT_NE(svg.find(">run-a<"), std::string::npos);
  EXPECT_NE(svg.find(">run-c (no data)<"), std::string::npos);
  PlotLayout layout = layout_plot(series, PlotOptions{});
  EXPECT_DOUBLE_EQ(layout.x.hi, 2);  // the union of the runs' steps
  EXPECT_DOUBLE_EQ(layout.y.hi, 3);
}

TEST(SvgPlot, MismatchedSeriesIsAnErrorNamingIt) {
  try {
    layout_plot({Series{"loss", {1, 2}, {1}}}, PlotOptions{"curve"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "plot 'curve': series 'loss' has 2 x values but 1 y values");
  }
}

TEST(SvgPlot, LongSeriesAreThinnedButKeepTheirSpikes) {
  Series s{"loss", {}, {}};
  for (int i = 0; i < 10000; ++i) {
    s.x.push_back(i);
    s.y.push_back(i == 5003 ? 100.0 : std::sin(i * 0.01));
  }
  PlotOptions options;
  options.max_points = 200;
  std::string svg = render_svg_plot({s}, options);
  std::vector<std::string> lines = polylines(svg);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_LE(count(lines[0], ","), 200u);
  EXPECT_GE(count(lines[0], ","), 150u);
  PlotLayout layout = layout_plot({s}, options);
  char spike[64];  // the spike is the top of the axis (100 rounds to a tick)
  std::snprintf(spike, sizeof spike, "%.2f,%.2f", layout.to_px_x(5003), layout.to_px_y(100));
  EXPECT_NE(lines[0].find(spike), std::string::npos) << spike;
  EXPECT_NE(svg.find("10000 points thinned to the min and max of 100 buckets"), std::string::npos);
}

TEST(SvgPlot, TextIsEscaped) {
  Series s{"<script>alert(1)</script>", {0, 1}, {0, kNaN}};
  Series t{"a&b", {0, 1}, {1, 1}};
  PlotOptions options;
  options.title = "<b>loss</b>";
  options.x_label = "it\"er";
  std::string svg = render_svg_plot({s, t}, options);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
  EXPECT_EQ(svg.find("<b>"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(svg.find("&lt;b&gt;loss&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_NE(svg.find("it&quot;er"), std::string::npos);
}

TEST(SvgPlot, OutputIsWellFormedXml) {
  DISTILL_REQUIRE_TOOL(access("/usr/bin/python3", X_OK) == 0, "/usr/bin/python3 to parse XML");
  testing::TempDir dir;
  std::vector<Series> series{{"<a> & 'b'", {0, 1, 2, 3}, {1, kNaN, 3, -kInf}}, {"c", {}, {}}};
  PlotOptions options;
  options.title = "x < y & \"z\"";
  options.log_y = true;
  testing::write_bytes(dir.file("plot.svg"), render_svg_plot(series, options));
  testing::CommandResult r = testing::run_command(
      "/usr/bin/python3 -c \"import sys, xml.etree.ElementTree as E; "
      "root = E.parse(sys.argv[1]).getroot(); print(root.tag, len(root.findall('.//*')))\" " +
      dir.file("plot.svg"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("{http://www.w3.org/2000/svg}svg", 0), 0u) << r.output;
}

// Confusion heat map: each cell shaded by its share of its row, from white (0) to #08306b (1),
// and labelled in percent; the empty cell carries no label; ragged rows are refused.
TEST(SvgConfusion, CellsAreShadedAndLabelledByTheirShareOfTheRow) {
  const std::string svg = render_svg_confusion({{3, 1}, {0, 4}}, "confusion <a>");
  EXPECT_NE(svg.find("<title>confusion &lt;a&gt;</title>"), std::string::npos);
  // 0.75: 255 - 0.75 * (255 - 8) = 69.75 -> 70; 255 - 0.75 * 207 = 99.75 -> 100; 255 - 0.75 *
  // 148 = 144.
  EXPECT_NE(svg.find("fill=\"rgb(70,100,144)\""), std::string::npos) << svg;
  EXPECT_NE(svg.find("fill=\"rgb(8,48,107)\""), std::string::npos);     // 4 of 4
  EXPECT_NE(svg.find("fill=\"rgb(255,255,255)\""), std::string::npos);  // 0 of 4
  EXPECT_NE(svg.find(">75</text>"), std::string::npos);
  EXPECT_NE(svg.find(">25</text>"), std::string::npos);
  EXPECT_NE(svg.find(">100</text>"), std::string::npos);
  EXPECT_EQ(svg.find(">0</text>\n</g>"), std::string::npos);  // no label on the empty cell
  EXPECT_THROW(render_svg_confusion({{1, 2}, {3}}, "ragged"), Error);
}

}  // namespace
}  // namespace distill::report
