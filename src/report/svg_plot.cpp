#include "src/report/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "src/core/error.h"
#include "src/report/html_escape.h"

namespace distill::report {
namespace {

// Tableau-10: distinct colours for up to ten overlaid runs, then they repeat.
constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr double kMarginLeft = 64, kMarginRight = 16, kMarginTop = 28, kMarginBottom = 44;
constexpr double kRowHeight = 18;
constexpr double kLogLadder[] = {1, 2, 5};  // log-axis ticks within a decade

std::string px(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", v);
  return buffer;
}

// A range that has width: a single value is widened by 10 % of itself (or by 1 around zero).
void widen(double& lo, double& hi) {
  if (hi > lo) return;
  double pad = lo == 0.0 ? 1.0 : std::abs(lo) * 0.1;
  lo -= pad;
  hi += pad;
}

Axis linear_axis(double lo, double hi) {
  Axis axis;
  axis.ticks = nice_ticks(lo, hi);
  axis.lo = axis.ticks.front();
  axis.hi = axis.ticks.back();
  return axis;
}

// Within about two decades the axis ends at 1, 2 or 5 times a power of ten around the data
// (so 1.06..1.2 is drawn on 1..2, not squeezed into 1..10); wider ranges end at powers of ten.
Axis log_axis(double lo, double hi) {
  Axis axis;
  axis.log = true;
  const int first = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int last = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  if (last - first > 2) {
    axis.lo = std::pow(10.0, first);
    axis.hi = std::pow(10.0, last);
  } else {
    std::vector<double> ladder;
    for (int k = first; k <= last + 1; ++k) {
      for (double m : kLogLadder) ladder.push_back(m * std::pow(10.0, k));
    }
    axis.lo = ladder.front();
    for (double v : ladder) {
      if (v <= lo * (1 + 1e-9)) axis.lo = v;
    }
    axis.hi = ladder.back();
    for (auto it = ladder.rbegin(); it != ladder.rend(); ++it) {
      if (*it >= hi * (1 - 1e-9) && *it > axis.lo) axis.hi = *it;
    }
  }
  axis.ticks = log_ticks(axis.lo, axis.hi);
  return axis;
}

double axis_fraction(const Axis& axis, double v) {
  if (axis.log)
    return (std::log10(v) - std::log10(axis.lo)) / (std::log10(axis.hi) - std::log10(axis.lo));
  return (v - axis.lo) / (axis.hi - axis.lo);
}

// Indices of the points drawn: all of them, or for long series the non-finite ones plus the
// smallest and largest finite y of each bucket of consecutive points (keeps spikes visible).
std::vector<size_t> kept_points(const Series& s, size_t max_points) {
  const size_t n = s.x.size();
  std::vector<size_t> kept;
  if (n <= max_points || max_points < 2) {
    for (size_t i = 0; i < n; ++i) kept.push_back(i);
    return kept;
  }
  const size_t buckets = max_points / 2;
  for (size_t b = 0; b < buckets; ++b) {
    size_t begin = n * b / buckets, end = n * (b + 1) / buckets;
    size_t lo = end, hi = end;
    auto flush = [&] {
      if (lo == end) return;
      kept.push_back(std::min(lo, hi));
      if (hi != lo) kept.push_back(std::max(lo, hi));
      lo = hi = end;
    };
    for (size_t i = begin; i < end; ++i) {
      if (!std::isfinite(s.x[i])) continue;
      if (!std::isfinite(s.y[i])) {
        flush();  // keeps the line broken at the right place
        kept.push_back(i);
        continue;
      }
      if (lo == end || s.y[i] < s.y[lo]) lo = i;
      if (hi == end || s.y[i] > s.y[hi]) hi = i;
    }
    flush();
  }
  return kept;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    throw Error("plot axis: range [" + format_number(lo) + ", " + format_number(hi) +
                "] is not finite");
  }
  if (lo > hi) std::swap(lo, hi);
  widen(lo, hi);
  const double raw = (hi - lo) / std::max(target, 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double residual = raw / magnitude;
  const double step = (residual < 1.5   ? 1.0
                       : residual < 3.0 ? 2.0
                       : residual < 7.0 ? 5.0
                                        : 10.0) *
                      magnitude;
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  // k * step rather than repeated addition, so ticks print as 0.3, not 0.30000000000000004.
  for (double k = first; k <= last + 0.5; k += 1.0)
    ticks.push_back(k * step == 0.0 ? 0.0 : k * step);
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  if (!(lo > 0.0) || !(hi >= lo) || !std::isfinite(hi)) {
    throw Error("log axis: range [" + format_number(lo) + ", " + format_number(hi) +
                "] must be positive and finite");
  }
  const int first = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int last = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  std::vector<double> ticks;
  if (last - first > 2) {
    const int stride = (last - first + 7) / 8;  // at most ~8 labelled decades
    for (int k = first; k <= last; k += stride) ticks.push_back(std::pow(10.0, k));
    return ticks;
  }
  for (int k = first; k <= last; ++k) {
    for (double m : kLogLadder) {
      const double v = m * std::pow(10.0, k);
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push_back(v);
    }
  }
  return ticks;
}

std::string format_number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0.0) return "0";
  char buffer[32];
  const double magnitude = std::abs(value);
  std::snprintf(buffer, sizeof buffer, magnitude >= 1e5 || magnitude < 1e-3 ? "%.3g" : "%.4g",
                value);
  std::string text = buffer;
  // 1e-05 -> 1e-5, 1e+06 -> 1e6
  size_t e = text.find('e');
  if (e != std::string::npos) {
    std::string mantissa = text.substr(0, e), exponent = text.substr(e + 1);
    bool negative = exponent[0] == '-';
    size_t digits = exponent.find_first_not_of("+-0");
    text = mantissa + "e" + (negative ? "-" : "") +
           (digits == std::string::npos ? "0" : exponent.substr(digits));
  }
  return text;
}

double PlotLayout::to_px_x(double v) const { return left + axis_fraction(x, v) * width; }

double PlotLayout::to_px_y(double v) const { return top + height - axis_fraction(y, v) * height; }

PlotLayout layout_plot(const std::vector<Series>& series, const PlotOptions& options) {
  PlotLayout layout;
  layout.left = kMarginLeft;
  layout.top = kMarginTop;
  layout.width = std::max(options.width - kMarginLeft - kMarginRight, 10.0);
  layout.height = std::max(options.height - kMarginTop - kMarginBottom, 10.0);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double x_lo = kInf, x_hi = -kInf, y_lo = kInf, y_hi = -kInf;
  size_t non_positive = 0;
  for (const Series& s : series) {
    if (s.x.size() != s.y.size()) {
      throw Error("plot '" + options.title + "': series '" + s.name + "' has " +
                  std::to_string(s.x.size()) + " x values but " + std::to_string(s.y.size()) +
                  " y values");
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i])) {
        ++layout.skipped_x_points;
        continue;
      }
      // A marked non-finite point still needs its step on the x axis.
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      if (!std::isfinite(s.y[i])) {
        ++layout.non_finite_points;
        continue;
      }
      ++layout.finite_points;
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
      if (s.y[i] <= 0.0) ++non_positive;
    }
  }
  layout.empty = layout.finite_points == 0;
  layout.x = x_lo <= x_hi ? linear_axis(x_lo, x_hi) : linear_axis(0.0, 1.0);
  if (layout.empty) {
    layout.y = linear_axis(0.0, 1.0);
    layout.notes.push_back("no finite values to plot");
  } else if (options.log_y && non_positive == 0) {
    layout.y = log_axis(y_lo, y_hi);
  } else {
    if (options.log_y) {
      layout.notes.push_back("log scale not used: " + std::to_string(non_positive) +
                             " value(s) <= 0 (a log axis needs positive data)");
    }
    layout.y = linear_axis(y_lo, y_hi);
  }
  if (layout.non_finite_points > 0) {
    layout.notes.push_back(std::to_string(layout.non_finite_points) +
                           " non-finite value(s) (NaN/inf) not drawn, marked with a red x");
  }
  if (layout.skipped_x_points > 0) {
    layout.notes.push_back(std::to_string(layout.skipped_x_points) +
                           " point(s) with a non-finite step skipped");
  }
  for (const Series& s : series) {
    if (s.x.size() > options.max_points && options.max_points >= 2) {
      layout.notes.push_back((s.name.empty() ? std::string("series") : "'" + s.name + "'") + ": " +
                             std::to_string(s.x.size()) + " points thinned to the min and max of " +
                             std::to_string(options.max_points / 2) + " buckets");
    }
  }
  return layout;
}

std::string render_svg_plot(const std::vector<Series>& series, const PlotOptions& options) {
  const PlotLayout L = layout_plot(series, options);
  const bool legend = series.size() > 1;
  const bool cross_legend = L.non_finite_points > 0;
  const size_t rows = (legend ? series.size() : 0) + (cross_legend ? 1 : 0) + L.notes.size();
  const double total_height = options.height + rows * kRowHeight + (rows > 0 ? 4 : 0);
  const double bottom = L.top + L.height, right = L.left + L.width;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"" << options.width
      << "\" height=\"" << px(total_height) << "\" viewBox=\"0 0 " << options.width << " "
      << px(total_height) << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  svg << "<title>" << html_escape(options.title) << "</title>\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg << "<text x=\"" << px(L.left) << "\" y=\"17\" font-size=\"13\" font-weight=\"bold\">"
      << html_escape(options.title) << (L.y.log ? " (log scale)" : "") << "</text>\n";
  // Grid and tick labels.
  svg << "<g class=\"ticks\" stroke=\"#e3e3e3\">\n";
  for (double t : L.x.ticks) {
    svg << "<line x1=\"" << px(L.to_px_x(t)) << "\" y1=\"" << px(L.top) << "\" x2=\""
        << px(L.to_px_x(t)) << "\" y2=\"" << px(bottom) << "\"/>\n";
  }
  for (double t : L.y.ticks) {
    svg << "<line x1=\"" << px(L.left) << "\" y1=\"" << px(L.to_px_y(t)) << "\" x2=\"" << px(right)
        << "\" y2=\"" << px(L.to_px_y(t)) << "\"/>\n";
  }
  svg << "</g>\n<g class=\"tick-labels\" fill=\"#333333\">\n";
  for (double t : L.x.ticks) {
    svg << "<text class=\"x-tick\" x=\"" << px(L.to_px_x(t)) << "\" y=\"" << px(bottom + 14)
        << "\" text-anchor=\"middle\">" << format_number(t) << "</text>\n";
  }
  for (double t : L.y.ticks) {
    svg << "<text class=\"y-tick\" x=\"" << px(L.left - 5) << "\" y=\"" << px(L.to_px_y(t) + 4)
        << "\" text-anchor=\"end\">" << format_number(t) << "</text>\n";
  }
  svg << "</g>\n";
  svg << "<text x=\"" << px(L.left + L.width / 2) << "\" y=\"" << px(bottom + 32)
      << "\" text-anchor=\"middle\">" << html_escape(options.x_label) << "</text>\n";
  if (!options.y_label.empty()) {
    svg << "<text transform=\"translate(12 " << px(L.top + L.height / 2)
        << ") rotate(-90)\" text-anchor=\"middle\">" << html_escape(options.y_label) << "</text>\n";
  }
  svg << "<rect class=\"frame\" x=\"" << px(L.left) << "\" y=\"" << px(L.top) << "\" width=\""
      << px(L.width) << "\" height=\"" << px(L.height) << "\" fill=\"none\" stroke=\"#555555\"/>\n";
  if (L.empty) {
    svg << "<text class=\"no-data\" x=\"" << px(L.left + L.width / 2) << "\" y=\""
        << px(L.top + L.height / 2) << "\" text-anchor=\"middle\" font-size=\"14\" "
        << "fill=\"#999999\">no data</text>\n";
  }
  // Lines (broken at non-finite points), dots when sparse, crosses for non-finite points.
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    const char* colour = kPalette[k % std::size(kPalette)];
    std::vector<size_t> kept = kept_points(s, options.max_points);
    std::vector<std::vector<size_t>> segments(1);
    std::vector<size_t> crosses;
    for (size_t i : kept) {
      if (!std::isfinite(s.x[i])) continue;
      if (std::isfinite(s.y[i])) {
        segments.back().push_back(i);
      } else {
        crosses.push_back(i);
        if (!segments.back().empty()) segments.emplace_back();
      }
    }
    svg << "<g class=\"series\" stroke=\"" << colour << "\" fill=\"" << colour << "\">\n";
    for (const auto& segment : segments) {
      if (segment.size() >= 2) {
        svg << "<polyline fill=\"none\" stroke-width=\"1.5\" points=\"";
        for (size_t i : segment)
          svg << px(L.to_px_x(s.x[i])) << "," << px(L.to_px_y(s.y[i])) << " ";
        svg << "\"/>\n";
      }
      // Lone points (and every point of short series) get a dot so they are visible.
      if (segment.size() == 1 || s.x.size() <= 30) {
        for (size_t i : segment) {
          svg << "<circle cx=\"" << px(L.to_px_x(s.x[i])) << "\" cy=\"" << px(L.to_px_y(s.y[i]))
              << "\" r=\"2.5\" stroke=\"none\"/>\n";
        }
      }
    }
    svg << "</g>\n";
    for (size_t i : crosses) {
      // NaN and -inf sit at the bottom edge, +inf at the top.
      const double cx = L.to_px_x(s.x[i]);
      const double cy = s.y[i] > 0 ? L.top + 6 : bottom - 6;
      svg << "<g class=\"non-finite\" stroke=\"#d00000\" stroke-width=\"2\"><title>"
          << html_escape(s.name.empty() ? "" : s.name + ": ") << "step " << format_number(s.x[i])
          << ": " << format_number(s.y[i]) << "</title><line x1=\"" << px(cx - 4) << "\" y1=\""
          << px(cy - 4) << "\" x2=\"" << px(cx + 4) << "\" y2=\"" << px(cy + 4) << "\"/><line x1=\""
          << px(cx - 4) << "\" y1=\"" << px(cy + 4) << "\" x2=\"" << px(cx + 4) << "\" y2=\""
          << px(cy - 4) << "\"/></g>\n";
    }
  }
  // Legend and notes, one row each under the plot.
  double row_y = options.height + 12;
  if (legend) {
    for (size_t k = 0; k < series.size(); ++k) {
      const Series& s = series[k];
      bool has_data =
          std::any_of(s.y.begin(), s.y.end(), [](double v) { return std::isfinite(v); });
      svg << "<g class=\"legend\"><rect x=\"" << px(L.left) << "\" y=\"" << px(row_y - 9)
          << "\" width=\"14\" height=\"10\" fill=\"" << kPalette[k % std::size(kPalette)]
          << "\"/><text x=\"" << px(L.left + 20) << "\" y=\"" << px(row_y) << "\">"
          << html_escape(s.name) << (has_data ? "" : " (no data)") << "</text></g>\n";
      row_y += kRowHeight;
    }
  }
  if (cross_legend) {
    svg << "<text class=\"legend\" x=\"" << px(L.left) << "\" y=\"" << px(row_y)
        << "\" fill=\"#d00000\">x = non-finite value (NaN/inf), not drawn</text>\n";
    row_y += kRowHeight;
  }
  for (const std::string& note : L.notes) {
    svg << "<text class=\"note\" x=\"" << px(L.left) << "\" y=\"" << px(row_y)
        << "\" fill=\"#8a5a00\">" << html_escape(note) << "</text>\n";
    row_y += kRowHeight;
  }
  svg << "</svg>\n";
  return svg.str();
}

std::string render_svg_confusion(const std::vector<std::vector<int64_t>>& counts,
                                 const std::string& title) {
  const size_t n = counts.size();
  for (const auto& row : counts) {
    if (row.size() != n) {
      throw Error("confusion matrix: expected " + std::to_string(n) + " columns per row, found " +
                  std::to_string(row.size()));
    }
  }
  const double cell = n <= 10 ? 36 : n <= 20 ? 24 : std::max(4.0, 480.0 / static_cast<double>(n));
  const double left = 46, top = 40;
  const double width = left + cell * static_cast<double>(n) + 10;
  const double height = top + cell * static_cast<double>(n) + 30;
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"confusion\" width=\"" << px(width)
      << "\" height=\"" << px(height) << "\" viewBox=\"0 0 " << px(width) << " " << px(height)
      << "\" font-family=\"sans-serif\" font-size=\"10\">\n";
  svg << "<title>" << html_escape(title) << "</title>\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg << "<text x=\"" << px(left) << "\" y=\"15\" font-size=\"13\" font-weight=\"bold\">"
      << html_escape(title) << "</text>\n";
  svg << "<text x=\"" << px(left) << "\" y=\"" << px(top - 6)
      << "\" fill=\"#333333\">predicted class &#8594;</text>\n";
  svg << "<text x=\"4\" y=\"" << px(top + cell * static_cast<double>(n) + 20)
      << "\" fill=\"#333333\">rows: true class (share of the row)</text>\n<g class=\"cells\">\n";
  for (size_t i = 0; i < n; ++i) {
    int64_t total = 0;
    for (int64_t c : counts[i]) total += c;
    svg << "<text x=\"" << px(left - 6) << "\" y=\"" << px(top + cell * (i + 0.5) + 3)
        << "\" text-anchor=\"end\" fill=\"#333333\">" << i << "</text>\n";
    for (size_t j = 0; j < n; ++j) {
      const double share =
          total > 0 ? static_cast<double>(counts[i][j]) / static_cast<double>(total) : 0.0;
      // White to #08306b (dark blue) by the share.
      const int r = static_cast<int>(std::lround(255 - share * (255 - 0x08)));
      const int g = static_cast<int>(std::lround(255 - share * (255 - 0x30)));
      const int b = static_cast<int>(std::lround(255 - share * (255 - 0x6b)));
      const double x = left + cell * static_cast<double>(j), y = top + cell * static_cast<double>(i);
      svg << "<rect x=\"" << px(x) << "\" y=\"" << px(y) << "\" width=\"" << px(cell)
          << "\" height=\"" << px(cell) << "\" fill=\"rgb(" << r << "," << g << "," << b
          << ")\" stroke=\"#dddddd\"/>\n";
      if (n <= 20 && counts[i][j] > 0) {
        svg << "<text x=\"" << px(x + cell / 2) << "\" y=\"" << px(y + cell / 2 + 3)
            << "\" text-anchor=\"middle\" fill=\"" << (share > 0.5 ? "#ffffff" : "#222222")
            << "\">" << std::lround(100 * share) << "</text>\n";
      }
    }
  }
  svg << "</g>\n";
  for (size_t j = 0; j < n; ++j) {
    svg << "<text x=\"" << px(left + cell * (j + 0.5)) << "\" y=\""
        << px(top + cell * static_cast<double>(n) + 10) << "\" text-anchor=\"middle\" "
        << "fill=\"#333333\">" << j << "</text>\n";
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace distill::report
