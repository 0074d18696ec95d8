#pragma once
// Pictures the command-line tool writes: the loss curve (SVG) and attention maps (PNG heatmaps).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <stb/stb_image_write.h>

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

/// Writes an SVG line chart of `series` (e.g. training and validation loss against the step).
inline void write_line_chart_svg(const std::filesystem::path& path, const std::string& title,
                                 const std::string& x_label, const std::string& y_label,
                                 const std::vector<Series>& series) {
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
  const double W = 860, H = 520, L = 80, R = 180, Tm = 50, Bm = 60;
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
  int row = 0;
  for (const auto& s : series) {
    std::string pts;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", s.color, pts);
    const double ly = Tm + 20 + 22 * row++;
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"3\"/>"
                       "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                       W - R + 15, ly, W - R + 40, s.color, W - R + 46, ly + 4, s.name);
  }
  svg += "</svg>\n";
  std::ofstream out(path);
  out << svg;
  detail::require(bool(out), "write_line_chart_svg", "cannot write '", path.string(), "'");
}

/// Viridis-like colour of v in [0, 1].
inline std::array<std::uint8_t, 3> colormap(double v) {
  static constexpr std::array<std::array<double, 3>, 5> stops{
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  v = std::clamp(v, 0.0, 1.0) * 4;
  const int i = std::min(3, int(v));
  const double f = v - i;
  std::array<std::uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[k] = std::uint8_t(std::lround(stops[i][k] * (1 - f) + stops[i + 1][k] * f));
  return c;
}

/// Writes a (rows, cols) matrix as a PNG heatmap, each entry a square of pixels (about 512 pixels
/// across in all), values scaled by sqrt so that small attention weights stay visible.
template <class T>
void write_heatmap_png(const std::filesystem::path& path, const Tensor<T, 2>& m) {
  const Index rows = m.dimension(0), cols = m.dimension(1);
  const Index cell = std::max<Index>(1, 512 / std::max<Index>(1, std::max(rows, cols)));
  double top = 0;
  for (Index i = 0; i < m.size(); ++i) top = std::max(top, double(m.data()[i]));
  const Index w = cols * cell, h = rows * cell;
  std::vector<std::uint8_t> img(std::size_t(w * h * 3));
  for (Index y = 0; y < h; ++y)
    for (Index x = 0; x < w; ++x) {
      const double v = top > 0 ? std::sqrt(double(m(y / cell, x / cell)) / top) : 0;
      const auto c = colormap(v);
      std::copy(c.begin(), c.end(), img.begin() + (y * w + x) * 3);
    }
  detail::require(stbi_write_png(path.string().c_str(), int(w), int(h), 3, img.data(), int(w * 3)) != 0,
                  "write_heatmap_png", "cannot write '", path.string(), "'");
}

}  // namespace hattn::cli
