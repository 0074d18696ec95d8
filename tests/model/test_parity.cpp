// Parity of the seed model with the PyTorch reference, in float and in double: the fixtures of
// tests/fixtures/README.md without a variant (support/parity_check.hpp says what is compared and to
// what bound). The variants' parity is in test_parity_variants.cpp.

#include <catch2/catch.hpp>

#include "support/parity_check.hpp"

using hattn::NodeMask;
using hattn::test::parity::check_fixture;

namespace {

template <class T>
void check_all() {
  check_fixture<hattn::Config{.levels = 1, .heads = 1, .d_model = 8}, T>("l1_h1_d8");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .node_mask = NodeMask::full}, T>(
      "l2_h2_d16_pad_full");
  check_fixture<hattn::Config{.levels = 3, .heads = 4, .d_model = 16, .blocks = 2}, T>("l3_h4_d16_blocks2");
  check_fixture<hattn::Config{.levels = 5, .heads = 2, .d_model = 16}, T>("l5_h2_d16");
  check_fixture<hattn::Config{.levels = 5, .heads = 4, .d_model = 32, .node_mask = NodeMask::full}, T>(
      "l5_h4_d32_pad_full");
  check_fixture<hattn::Config{.levels = 1, .heads = 4, .d_model = 64}, T>("l1_h4_d64_pad");
  check_fixture<hattn::Config{.levels = 2, .heads = 1, .d_model = 8, .blocks = 2}, T>("l2_h1_d8_blocks2_pad");
}

}  // namespace

TEST_CASE("the float model matches PyTorch within float error bounds that hold for any summation order",
          "[parity]") {
  check_all<float>();
}

TEST_CASE("the double model matches PyTorch's float64 results to float32 storage precision", "[parity]") {
  check_all<double>();
}

