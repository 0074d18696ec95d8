// Parity of the variants of SPEC.md "Variants" with the PyTorch reference: every variant fixture
// in float, one per rule in double (support/parity_check.hpp says what is compared and to what
// bound). A TU of its own so that the two parity tests compile in parallel.

#include <catch2/catch.hpp>

#include "support/parity_check.hpp"

using hattn::Mixer;
using hattn::NodeCombine;
using hattn::NodeMask;
using hattn::test::parity::check_fixture;

namespace {

// The variants of SPEC.md "Variants" (tests/fixtures/README.md lists the fixtures).
void check_variants() {
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .node_combine = NodeCombine::residual}, float>(
      "residual_l2_h2_d16_pad");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .blocks = 2, .node_mask = NodeMask::full,
                              .node_combine = NodeCombine::residual},
                float>("residual_l2_h2_d8_full_blocks2_pad");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .summaries = 3}, float>("pooled_k3_l3_h2_d8");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .summaries = 6}, float>("pooled_k6_l3_h2_d8");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .node_mask = NodeMask::full, .summaries = 4},
                float>("pooled_k4_l3_h2_d8_full");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .summaries = 7}, float>("pooled_k7_l2_h2_d16_pad");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .node_combine = NodeCombine::residual,
                              .summaries = 2},
                float>("pooled_k2_residual_l3_h2_d8_pad");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .blocks = 2, .mixer = Mixer::dense}, float>(
      "dense_h2_d8_blocks2");
}

// seed_compat computes in float only (SPEC.md: in double, s - 1e9 does not round to -1e9).
void check_notebook() {
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .seed_compat = true}, float>("notebook_l2_h2_d16");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .seed_compat = true}, float>("notebook_l2_h2_d8_pad");
}

}  // namespace

TEST_CASE("every variant matches PyTorch within float error bounds", "[parity][variants]") {
  check_variants();
  check_notebook();
}

TEST_CASE("the variants in double match PyTorch's float64 results to float32 storage precision",
          "[parity][variants]") {
  // One fixture per rule (each double model is one more instantiation to compile; the float
  // case above covers every fixture).
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .node_combine = NodeCombine::residual}, double>(
      "residual_l2_h2_d16_pad");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .summaries = 6}, double>("pooled_k6_l3_h2_d8");
  check_fixture<hattn::Config{.levels = 3, .heads = 2, .d_model = 8, .node_combine = NodeCombine::residual,
                              .summaries = 2},
                double>("pooled_k2_residual_l3_h2_d8_pad");
  check_fixture<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .blocks = 2, .mixer = Mixer::dense}, double>(
      "dense_h2_d8_blocks2");
}
