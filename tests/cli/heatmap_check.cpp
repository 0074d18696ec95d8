// Checks the attention heat maps' pictures (cli/plots.cpp) by decoding what write_heatmap_png
// writes: the image has the layout's size, every entry's cell has the colour of sqrt(value / max),
// the colour bar runs from the largest value's colour at the top to zero's at the bottom, and the
// title, the axes' numbers and the labels leave dark pixels where they are drawn.
//
//   heatmap_check DIR   (writes DIR/map.png; exit 0 and "ok" when every check holds)

#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../../cli/plots.hpp"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "heatmap_check: %s\n", what.c_str());
    ++failures;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: heatmap_check DIR\n"), 2;
  using hattn::Index;
  const Index rows = 5, cols = 7;
  std::vector<double> values(rows * cols);  // (rows, cols)
  for (Index i = 0; i < rows * cols; ++i) values[std::size_t(i)] = double((i * 7) % 11) / 20.0;  // max 0.5
  const hattn::cli::HeatmapLabels labels{.title = "decoder_block.hier_attn1.leaf, mean over heads",
                                         .rows = {"a", "b", "c", "d", "e"},
                                         .cols = {"a", "b", "c", "d", "e", "f", "g"}};
  const std::filesystem::path png = std::filesystem::path(argv[1]) / "map.png";
  hattn::cli::write_heatmap_png(png, values, rows, cols, labels);
  const auto layout = hattn::cli::heatmap_layout(rows, cols, labels);

  int w = 0, h = 0, channels = 0;
  unsigned char* img = stbi_load(png.string().c_str(), &w, &h, &channels, 3);
  if (!img) return std::fprintf(stderr, "heatmap_check: cannot decode '%s'\n", png.string().c_str()), 1;
  expect(w == layout.width && h == layout.height, "the image is " + std::to_string(w) + " x " + std::to_string(h) +
                                                      ", the layout " + std::to_string(layout.width) + " x " +
                                                      std::to_string(layout.height));
  auto pixel = [&](Index x, Index y) {
    const unsigned char* p = img + (y * w + x) * 3;
    return std::array<std::uint8_t, 3>{p[0], p[1], p[2]};
  };
  for (Index r = 0; r < rows; ++r)
    for (Index c = 0; c < cols; ++c) {
      const auto want = hattn::cli::heatmap_colour(std::sqrt(values[std::size_t(r * cols + c)] / 0.5));
      const Index x = layout.left + c * layout.cell + layout.cell / 2, y = layout.top + r * layout.cell + layout.cell / 2;
      expect(pixel(x, y) == want, "cell (" + std::to_string(r) + ", " + std::to_string(c) + ") has the wrong colour");
    }
  // The colour bar, 24 pixels right of the map.
  const Index bar_x = layout.left + cols * layout.cell + 24 + 8;
  expect(pixel(bar_x, layout.top) == hattn::cli::heatmap_colour(1.0), "the colour bar's top is not the maximum's colour");
  expect(pixel(bar_x, layout.top + rows * layout.cell - 1) == hattn::cli::heatmap_colour(0.0),
         "the colour bar's bottom is not zero's colour");
  // Dark pixels where text is drawn: the title, the column labels under the map, the numbers.
  auto dark_in = [&](Index x0, Index y0, Index x1, Index y1) {
    int n = 0;
    for (Index y = y0; y < y1; ++y)
      for (Index x = x0; x < x1; ++x) {
        const auto p = pixel(x, y);
        n += p[0] < 128 && p[1] < 128 && p[2] < 128;
      }
    return n;
  };
  expect(dark_in(10, 10, 300, 26) > 50, "no title");
  const Index below = layout.top + rows * layout.cell;
  expect(dark_in(layout.left, below + 3, layout.left + layout.cell, below + 12) > 3, "no label under column 0");
  expect(dark_in(layout.left, below + 19, layout.left + cols * layout.cell, below + 33) > 10, "no column numbers");
  expect(dark_in(0, layout.top, layout.left - 2, layout.top + rows * layout.cell) > 10, "no row numbers or labels");
  expect(dark_in(layout.left + cols * layout.cell + 40, layout.top - 4, w, layout.top + 8) > 5, "no colour bar value");
  stbi_image_free(img);
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
