// The attention heat maps (cli/plots.hpp): the map's pixels, and its title, axes, labels and colour
// bar drawn with stb_easy_font's bitmap font, whose glyphs are axis-aligned quads filled here.

#include "plots.hpp"

#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "hattn/core/error.hpp"

namespace hattn::cli {
namespace {

using Rgb = std::array<std::uint8_t, 3>;

/// An RGB image, white at first.
struct Canvas {
  Index w, h;
  std::vector<std::uint8_t> rgb;  // (h, w, 3)
  Canvas(Index width, Index height) : w(width), h(height), rgb(std::size_t(width * height * 3), 255) {}

  /// Fills [x0, x1) x [y0, y1), clipped to the image.
  void fill(Index x0, Index y0, Index x1, Index y1, Rgb c) {
    x0 = std::max<Index>(x0, 0), y0 = std::max<Index>(y0, 0), x1 = std::min(x1, w), y1 = std::min(y1, h);
    for (Index y = y0; y < y1; ++y)
      for (Index x = x0; x < x1; ++x) std::copy(c.begin(), c.end(), rgb.begin() + (y * w + x) * 3);
  }

  /// Text in stb_easy_font's glyphs magnified `scale` times, its top-left corner at (x, y); only
  /// printable ASCII is drawn.
  void text(double x, double y, const std::string& s, int scale = 2, Rgb c = {0, 0, 0}) {
    std::string ascii;
    for (char ch : s) ascii += ch >= 32 && ch < 127 ? ch : '?';
    std::vector<char> quads(ascii.size() * 1024 + 1024);  // ~270 bytes per character on average, more for some
    const int n = stb_easy_font_print(0, 0, ascii.data(), nullptr, quads.data(), int(quads.size()));
    for (int q = 0; q < n; ++q) {
      const float* v = reinterpret_cast<const float*>(quads.data() + q * 64);  // 4 vertices of 16 bytes
      float qx0 = v[0], qy0 = v[1], qx1 = v[0], qy1 = v[1];
      for (int k = 1; k < 4; ++k) {
        qx0 = std::min(qx0, v[4 * k]), qx1 = std::max(qx1, v[4 * k]);
        qy0 = std::min(qy0, v[4 * k + 1]), qy1 = std::max(qy1, v[4 * k + 1]);
      }
      // Outward to whole pixels, so that no stroke of a glyph rounds away.
      fill(Index(std::floor(x + qx0 * scale)), Index(std::floor(y + qy0 * scale)),
           Index(std::ceil(x + qx1 * scale)), Index(std::ceil(y + qy1 * scale)), c);
    }
  }

  /// Pixels across `s` at `scale`.
  static Index text_width(const std::string& s, int scale = 2) {
    std::string copy = s;
    return Index(stb_easy_font_width(copy.data())) * scale;
  }
};

/// Round positions to number an axis of n entries with, about `count` of them.
std::vector<Index> axis_ticks(Index n, int count = 6) {
  std::vector<Index> t;
  for (double v : ticks(0, double(std::max<Index>(n - 1, 1)), count))
    if (v >= 0 && v <= double(n - 1) && v == std::floor(v)) t.push_back(Index(v));
  return t;
}

/// Character labels fit when a cell is at least one glyph wide (6 pixels at scale 1).
bool chars_fit(const std::vector<std::string>& labels, Index cell) { return !labels.empty() && cell >= 7; }

}  // namespace

std::array<std::uint8_t, 3> heatmap_colour(double v) {
  static constexpr std::array<std::array<double, 3>, 5> stops{
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  v = std::clamp(v, 0.0, 1.0) * 4;
  const int i = std::min(3, int(v));
  const double f = v - i;
  Rgb c{};
  for (int k = 0; k < 3; ++k) c[k] = std::uint8_t(std::lround(stops[i][k] * (1 - f) + stops[i + 1][k] * f));
  return c;
}

HeatmapLayout heatmap_layout(Index rows, Index cols, const HeatmapLabels& labels) {
  const Index cell = std::max<Index>(1, 512 / std::max<Index>(1, std::max(rows, cols)));
  const Index left = 70 + (chars_fit(labels.rows, cell) ? 12 : 0), top = 44;
  const Index bottom = 68 + (chars_fit(labels.cols, cell) ? 12 : 0), right = 140;
  return {cell, left, top, left + cols * cell + right, top + rows * cell + bottom};
}

void write_heatmap_png(const std::filesystem::path& path, const std::vector<double>& values, Index rows, Index cols,
                       const HeatmapLabels& labels) {
  detail::require(rows >= 1 && cols >= 1 && Index(values.size()) == rows * cols, "write_heatmap_png",
                  "want rows * cols values, got ", values.size(), " for (", rows, ", ", cols, ")");
  const HeatmapLayout layout = heatmap_layout(rows, cols, labels);
  const Index cell = layout.cell, left = layout.left, top = layout.top, bottom = layout.height - top - rows * cell;
  const Index mw = cols * cell, mh = rows * cell;  // the map's pixels
  const bool col_chars = chars_fit(labels.cols, cell), row_chars = chars_fit(labels.rows, cell);
  Canvas img(layout.width, layout.height);
  double vmax = 0;
  for (double v : values) vmax = std::max(vmax, v);
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      const double v = vmax > 0 ? std::sqrt(std::max(0.0, values[std::size_t(r * cols + c)]) / vmax) : 0;
      img.fill(left + c * cell, top + r * cell, left + (c + 1) * cell, top + (r + 1) * cell, heatmap_colour(v));
    }
  const Rgb black{0, 0, 0}, grey{90, 90, 90};
  // Frame, title, axis names.
  img.fill(left - 1, top - 1, left + mw + 1, top, black), img.fill(left - 1, top + mh, left + mw + 1, top + mh + 1, black);
  img.fill(left - 1, top, left, top + mh, black), img.fill(left + mw, top, left + mw + 1, top + mh, black);
  img.text(10, 10, labels.title);
  img.text(double(left + mw / 2 - Canvas::text_width(labels.x_axis) / 2), double(top + mh + bottom - 20), labels.x_axis);
  img.text(4, double(top - 18), labels.y_axis, 1, grey);
  // Ticks: position numbers on both axes (at a cell's centre).
  const Index chars_gap = 12;
  for (Index t : axis_ticks(cols)) {
    const Index x = left + t * cell + cell / 2;
    img.fill(x, top + mh, x + 1, top + mh + 5, black);
    const std::string s = std::to_string(t);
    img.text(double(x - Canvas::text_width(s) / 2), double(top + mh + 7 + (col_chars ? chars_gap : 0)), s);
  }
  for (Index t : axis_ticks(rows)) {
    const Index y = top + t * cell + cell / 2;
    img.fill(left - 5, y, left, y + 1, black);
    const std::string s = std::to_string(t);
    img.text(double(left - 8 - (row_chars ? chars_gap : 0) - Canvas::text_width(s)), double(y - 7), s);
  }
  // The labels (the prompt's characters), one per cell.
  if (col_chars)
    for (Index c = 0; c < cols && c < Index(labels.cols.size()); ++c)
      img.text(double(left + c * cell + (cell - Canvas::text_width(labels.cols[std::size_t(c)], 1)) / 2),
               double(top + mh + 4), labels.cols[std::size_t(c)], 1, grey);
  if (row_chars)
    for (Index r = 0; r < rows && r < Index(labels.rows.size()); ++r)
      img.text(double(left - 4 - Canvas::text_width(labels.rows[std::size_t(r)], 1)), double(top + r * cell + cell / 2 - 3),
               labels.rows[std::size_t(r)], 1, grey);
  // The colour bar: sqrt scale, labelled with the values of five colours.
  const Index bx = left + mw + 24, bw = 16;
  for (Index y = 0; y < mh; ++y) img.fill(bx, top + y, bx + bw, top + y + 1, heatmap_colour(1.0 - double(y) / double(std::max<Index>(mh - 1, 1))));
  for (int k = 0; k <= 4; ++k) {
    const double f = k / 4.0;  // colour position; value = f^2 * max
    const Index y = top + Index(std::lround((1 - f) * double(mh - 1)));
    img.fill(bx + bw, y, bx + bw + 4, y + 1, black);
    img.text(double(bx + bw + 6), double(y - 7), fmt::format("{:.3g}", f * f * vmax));
  }
  detail::require(stbi_write_png(path.string().c_str(), int(img.w), int(img.h), 3, img.rgb.data(), int(img.w * 3)) != 0,
                  "write_heatmap_png", "cannot write '", path.string(), "'");
}

}  // namespace hattn::cli
