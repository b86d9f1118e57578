#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace distill::report {

// One line of a plot. A NaN or infinite y (metrics.jsonl writes non-finite values as null) is
// not drawn: the line breaks there and a red cross on the axis marks the step.
struct Series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
};

struct PlotOptions {
  std::string title;
  std::string x_label = "step";
  std::string y_label;
  bool log_y = false;  // refused (with a note) unless every finite y is > 0
  int width = 560;     // SVG pixels; the legend and notes add rows below `height`
  int height = 300;
  size_t max_points = 2000;  // per series; longer series keep the min and max of each bucket
};

struct Axis {
  double lo = 0.0;  // the drawn range, widened to whole ticks
  double hi = 1.0;
  bool log = false;
  std::vector<double> ticks;
};

// Where everything goes: ranges, ticks and the plot area, before any SVG is written.
struct PlotLayout {
  Axis x, y;
  double left = 0, top = 0, width = 0, height = 0;  // the plot area in SVG pixels
  size_t finite_points = 0;
  size_t non_finite_points = 0;    // NaN/inf y: not drawn, marked with a red cross
  size_t skipped_x_points = 0;     // NaN/inf x: cannot be placed, only counted in a note
  bool empty = true;               // no finite point at all ("no data" is drawn)
  std::vector<std::string> notes;  // printed under the plot

  double to_px_x(double x) const;
  double to_px_y(double y) const;
};

// Ticks at 1, 2 or 5 times a power of ten, about `target` of them, covering [lo, hi] (the first
// tick <= lo, the last >= hi). lo == hi is widened first.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// Log-axis ticks in [lo, hi] (both > 0): 1, 2 and 5 times powers of ten when at most two decades
// are spanned, else powers of ten (every n-th one beyond eight decades).
std::vector<double> log_ticks(double lo, double hi);

// Short tick/table label: "0", "0.25", "1500", "1e-05" -> "1e-5".
std::string format_number(double value);

PlotLayout layout_plot(const std::vector<Series>& series, const PlotOptions& options);

// A standalone <svg> element: frame, grid, tick labels, one polyline per series and finite
// segment, red crosses for non-finite points, legend (several series) and notes.
std::string render_svg_plot(const std::vector<Series>& series, const PlotOptions& options);

// A confusion matrix as a standalone <svg> heat map: rows are true classes, columns predicted
// ones, each cell shaded by its share of the row (white 0 to dark blue 1) and, up to 20 classes,
// labelled with that share in percent. Rows of another length than the first are an Error.
std::string render_svg_confusion(const std::vector<std::vector<int64_t>>& counts,
                                 const std::string& title);

}  // namespace distill::report
