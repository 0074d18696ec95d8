#pragma once
// Pictures the command-line tool writes: the loss curve (SVG) and attention maps (PNG heat maps,
// drawn in cli/plots.cpp).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::cli {

/// One curve of a line chart: (x, y) points, a name and a colour.
struct Series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;
};

/// About `count` round tick values covering [lo, hi].
inline std::vector<double> ticks(double lo, double hi, int count = 6) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / count, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag, step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push_back(v);
  return t;
}

/// A second y axis on the right of a chart, reading the same curves in other units: value =
/// y * scale (e.g. bits per byte of a loss in nats per token).
struct RightAxis {
  std::string label;
  double scale = 1;
};

/// Writes an SVG line chart of `series` (e.g. training and validation loss against the step),
/// with `right`'s axis on the right when its label is not empty.
inline void write_line_chart_svg(const std::filesystem::path& path, const std::string& title,
                                 const std::string& x_label, const std::string& y_label,
                                 const std::vector<Series>& series, const RightAxis& right = {}) {
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  const double W = right.label.empty() ? 860 : 920, H = 520, L = 80, R = right.label.empty() ? 180 : 240, Tm = 50,
               Bm = 60;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - Bm - (y - y0) / (y1 - y0) * (H - Tm - Bm); };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"28\" font-size=\"17\" text-anchor=\"middle\">{}</text>\n",
      W, H, (L + W - R) / 2, title);
  for (double t : ticks(x0, x1)) {
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"#ddd\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:g}</text>\n",
                       px(t), Tm, H - Bm, H - Bm + 18, t);
  }
  for (double t : ticks(y0, y1)) {
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:g}</text>\n",
                       L, py(t), W - R, L - 6, py(t) + 4, t);
  }
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", L, Tm,
                     W - L - R, H - Tm - Bm);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (L + W - R) / 2, H - 18, x_label);
  svg += fmt::format("<text transform=\"translate(22,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     (Tm + H - Bm) / 2, y_label);
  if (!right.label.empty() && right.scale > 0) {
    for (double t : ticks(y0 * right.scale, y1 * right.scale)) {
      const double y = py(t / right.scale);
      svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#333\"/>"
                         "<text x=\"{3}\" y=\"{4:.1f}\">{5:g}</text>\n",
                         W - R, y, W - R + 5, W - R + 8, y + 4, t);
    }
    svg += fmt::format("<text transform=\"translate({},{}) rotate(90)\" text-anchor=\"middle\">{}</text>\n",
                       W - R + 52, (Tm + H - Bm) / 2, right.label);
  }
  int row = 0;
  for (const auto& s : series) {
    std::string pts;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", s.color, pts);
    const double ly = Tm + 20 + 22 * row++, lx = right.label.empty() ? W - R + 15 : W - R + 70;
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>"
                       "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                       lx, ly, lx + 25, s.color, lx + 31, ly + 4, s.name);
  }
  svg += "</svg>\n";
  std::ofstream out(path);
  out << svg;
  detail::require(bool(out), "write_line_chart_svg", "cannot write '", path.string(), "'");
}

/// A heat map's annotations: its title, and one label per row and per column (e.g. the prompt's
/// characters), drawn along the axes where a cell is wide enough for one; empty: none.
struct HeatmapLabels {
  std::string title;                       ///< above the map
  std::string x_axis = "key position";     ///< under the columns
  std::string y_axis = "query position";   ///< above the rows' numbers
  std::vector<std::string> rows, cols;     ///< one label per row / column (ASCII), or none
};

/// Where write_heatmap_png puts the map: `cell` pixels per entry, its top-left corner at (left,
/// top), the image width x height pixels.
struct HeatmapLayout {
  Index cell;           ///< pixels per entry, across and down
  Index left, top;      ///< the map's top-left pixel
  Index width, height;  ///< the whole image's
};

/// The layout of a (rows, cols) heat map with `labels`.
HeatmapLayout heatmap_layout(Index rows, Index cols, const HeatmapLabels& labels);

/// The heat maps' colour of v in [0, 1] (viridis-like: dark violet to yellow), as RGB.
std::array<std::uint8_t, 3> heatmap_colour(double v);

/// Writes a (rows, cols) row-major matrix of values >= 0 as a PNG heat map: each entry a square of
/// pixels (about 512 across in all), the colour scaled by sqrt(value / max) so that small weights
/// stay visible; with the title above, tick marks and position numbers on both axes, the labels
/// along them where they fit, and a colour bar giving the value of each colour. Throws
/// hattn::Error when the file cannot be written. (cli/plots.cpp)
void write_heatmap_png(const std::filesystem::path& path, const std::vector<double>& values, Index rows, Index cols,
                       const HeatmapLabels& labels);

/// As above, for a (rows, cols) tensor.
template <class T>
void write_heatmap_png(const std::filesystem::path& path, const Tensor<T, 2>& m, const HeatmapLabels& labels) {
  std::vector<double> values(std::size_t(m.size()));  // (rows, cols), row-major like m
  for (Index i = 0; i < m.size(); ++i) values[std::size_t(i)] = double(m.data()[i]);
  write_heatmap_png(path, values, m.dimension(0), m.dimension(1), labels);
}

}  // namespace hattn::cli
