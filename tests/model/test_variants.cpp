// The variants of SPEC.md "Variants" tested as the seed model is (test_decoder.cpp): central
// differences in double, checkpointing bitwise equal to the plain step, causality (and the
// notebook's leak under seed_compat), 1 vs 2 threads, parameter names, and the cases where a
// variant must reduce to the seed's model bitwise. Parity with PyTorch is in test_parity_variants.cpp.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "support/gradcheck.hpp"
#include "support/model_checks.hpp"

using hattn::Config;
using hattn::Index;
using hattn::Mixer;
using hattn::NodeCombine;
using hattn::NodeMask;
using namespace hattn::test;  // NOLINT(google-build-using-namespace): the shared model checks

namespace {

constexpr Config residual{.levels = 2, .heads = 2, .d_model = 8, .node_combine = NodeCombine::residual};
constexpr Config residual_full{.levels = 2, .heads = 1, .d_model = 8, .blocks = 2, .node_mask = NodeMask::full,
                               .node_combine = NodeCombine::residual};
// C = 2 at T = 16: S_l = 2, 4, 8 against k = 3: level 0 unchanged, levels 1 and 2 pooled unevenly.
constexpr Config pooled{.levels = 3, .heads = 2, .d_model = 8, .summaries = 3};
constexpr Config pooled_full{.levels = 2, .heads = 2, .d_model = 8, .node_mask = NodeMask::full, .summaries = 2};
constexpr Config pooled_residual{.levels = 3, .heads = 1, .d_model = 8, .blocks = 2,
                                 .node_combine = NodeCombine::residual, .summaries = 2};
constexpr Config dense{.levels = 2, .heads = 2, .d_model = 8, .mixer = Mixer::dense};
constexpr Config dense_blocks{.levels = 1, .heads = 1, .d_model = 8, .blocks = 2, .mixer = Mixer::dense};
constexpr Config notebook{.levels = 2, .heads = 2, .d_model = 16, .seed_compat = true};

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class Model>
std::vector<std::string> names(const Model& m) {
  std::vector<std::string> n;
  for (const auto& p : m.parameters()) n.push_back(p.name + " " + p.shape_string());
  return n;
}

}  // namespace

TEST_CASE("variant gradients pass central differences in double", "[variants][gradcheck]") {
  check_model_gradients<residual>(11, 16, 2, 13);
  check_model_gradients<residual_full>(7, 16, 2, 16, true);
  check_model_gradients<pooled>(9, 16, 2, 16);
  check_model_gradients<pooled>(9, 16, 1, 11, true, true);  // padded, dropout, checkpointing
  check_model_gradients<pooled_full>(7, 16, 2, 16);
  check_model_gradients<pooled_residual>(7, 32, 1, 29, false, true);
  check_model_gradients<dense>(11, 16, 2, 13);
  check_model_gradients<dense_blocks>(7, 8, 2, 8, true, true);
}

TEST_CASE("variants under gradient checkpointing give bitwise the same loss, logits and gradients",
          "[variants][checkpoint]") {
  check_checkpointing<residual, float>(37, 2, 45);
  check_checkpointing<pooled, float>(37, 2, 61);
  check_checkpointing<pooled_residual, float>(29, 2, 64);
  check_checkpointing<dense, float>(37, 3, 29);
  check_checkpointing<dense_blocks, double>(19, 2, 30);
}

TEST_CASE("every causal variant: changing future tokens leaves past outputs bitwise unchanged",
          "[variants][causal]") {
  check_causality<residual>(29, 64, 32);
  check_causality<residual_full>(29, 64, 27);
  check_causality<pooled>(29, 64, 64);  // C = 8: every level pools 3 summaries
  check_causality<pooled>(29, 64, 45);  // padded, C = 6
  check_causality<pooled_full>(29, 64, 50);
  check_causality<pooled_residual>(29, 64, 40);
  check_causality<dense>(29, 64, 33);
  check_causality<dense_blocks>(13, 16, 11);
}

TEST_CASE("every variant keys dropout masks by the sequence's index in the batch, not by the forward pass",
          "[variants][dropout]") {
  check_dropout_split<residual>(29, 64, 32);
  check_dropout_split<residual_full>(29, 64, 27);
  check_dropout_split<pooled>(29, 64, 45);
  check_dropout_split<pooled_residual>(29, 64, 40);
  check_dropout_split<dense>(29, 64, 33);
  check_dropout_split<dense_blocks>(13, 16, 11);
}

TEST_CASE("seed_compat is not causal: future tokens change past outputs, as in the notebook",
          "[variants][causal][seed_compat]") {
  hattn::Decoder<notebook> m(29, 64, 21);
  const Ids ids = random_ids(1, 64, 29, 23);
  Ids changed = ids;
  for (Index t = 40; t < 64; ++t) changed(0, t) = std::int32_t((ids(0, t) + 1) % 29);
  const auto a = m.predict(ids), b = m.predict(changed);
  // Chunks of 16: the leaf attention of chunk 32..47 reads rows 40..47 from rows 32..39.
  Index changed_rows = 0;
  for (Index t = 32; t < 40; ++t) {
    bool differs = false;
    for (Index v = 0; v < 29; ++v) differs = differs || a(0, t, v) != b(0, t, v);
    changed_rows += differs;
  }
  REQUIRE(changed_rows == 8);
  REQUIRE(prefix_equal(a, b, 32));  // rows of earlier chunks read nothing of 40.. (the tree's left halves)
  STATIC_REQUIRE_FALSE(hattn::Decoder<notebook>::causal);
  STATIC_REQUIRE(hattn::Decoder<pooled_residual>::causal);
}

TEST_CASE("every variant: outputs and gradients are bitwise equal with 1 and 2 threads", "[variants][threads]") {
  const auto check = [](auto model) {
    auto& m = *model;
    const Index V = m.vocab_size();
    const Ids ids = random_ids(3, 60, V, 13), targets = next_tokens(ids);
    auto run = [&] { return step_and_predict(m, ids, targets); };
    REQUIRE(same_bits(with_threads(1, run), with_threads(2, run)));
  };
  check(std::make_unique<hattn::Decoder<pooled>>(97, 64, 11));
  check(std::make_unique<hattn::Decoder<dense>>(97, 64, 11));
  check(std::make_unique<hattn::Decoder<notebook>>(97, 64, 11));
}

TEST_CASE("variant parameter names: the tree's rules keep the seed's, the dense baseline renames the slots",
          "[variants][names]") {
  // Both rules at once: residual combine and summaries.
  const hattn::Decoder<Config{.levels = 3, .heads = 1, .d_model = 8, .blocks = 2}> seed(11, 16);
  const hattn::Decoder<pooled_residual> rules(11, 16);
  REQUIRE(names(rules) == names(seed));
  const hattn::Decoder<dense> d(11, 16);
  const std::vector<std::string> expected{
      "pos_encoding.word_embedding_layer.weight (11, 8)",
      "pos_encoding.position_embedding_layer.weight (16, 8)",
      "decoder_block.attn1.self_attention.W_q.weight (8, 8)",
      "decoder_block.attn1.self_attention.W_q.bias (8)",
      "decoder_block.attn1.self_attention.W_k.weight (8, 8)",
      "decoder_block.attn1.self_attention.W_k.bias (8)",
      "decoder_block.attn1.self_attention.W_v.weight (8, 8)",
      "decoder_block.attn1.self_attention.W_v.bias (8)",
      "decoder_block.attn1.self_attention.W_o.weight (8, 8)",
      "decoder_block.attn1.self_attention.W_o.bias (8)",
      "decoder_block.attn1.norm.weight (8)",
      "decoder_block.attn1.norm.bias (8)",
      "decoder_block.attn2.self_attention.W_q.weight (8, 8)",
      "decoder_block.attn2.self_attention.W_q.bias (8)",
      "decoder_block.attn2.self_attention.W_k.weight (8, 8)",
      "decoder_block.attn2.self_attention.W_k.bias (8)",
      "decoder_block.attn2.self_attention.W_v.weight (8, 8)",
      "decoder_block.attn2.self_attention.W_v.bias (8)",
      "decoder_block.attn2.self_attention.W_o.weight (8, 8)",
      "decoder_block.attn2.self_attention.W_o.bias (8)",
      "decoder_block.attn2.norm.weight (8)",
      "decoder_block.attn2.norm.bias (8)",
      "decoder_block.feed_forward.0.weight (32, 8)",
      "decoder_block.feed_forward.0.bias (32)",
      "decoder_block.feed_forward.2.weight (8, 32)",
      "decoder_block.feed_forward.2.bias (8)",
      "decoder_block.norm1.weight (8)",
      "decoder_block.norm1.bias (8)",
      "decoder_block.norm2.weight (8)",
      "decoder_block.norm2.bias (8)",
      "decoder_block.norm3.weight (8)",
      "decoder_block.norm3.bias (8)",
      "linear.weight (11, 8)",
      "linear.bias (11)",
  };
  REQUIRE(names(d) == expected);
}

TEST_CASE("summaries no fewer than every level's rows leave the seed's model bitwise, and a dense model does "
          "not depend on levels",
          "[variants]") {
  // T = 64, L = 2: C = 16, S_l = 16 and 32, all <= 32 summaries.
  constexpr Config seed{.levels = 2, .heads = 2, .d_model = 16};
  constexpr Config wide{.levels = 2, .heads = 2, .d_model = 16, .summaries = 32};
  hattn::Decoder<seed> a(29, 64, 3);
  hattn::Decoder<wide> b(29, 64, 3);
  const Ids ids = random_ids(2, 64, 29, 4);
  const auto pa = a.predict(ids), pb = b.predict(ids);
  REQUIRE(std::memcmp(pa.data(), pb.data(), std::size_t(pa.size()) * sizeof(float)) == 0);
  // 31 summaries pool the top level (S = 32): the outputs move.
  hattn::Decoder<Config{.levels = 2, .heads = 2, .d_model = 16, .summaries = 31}> c(29, 64, 3);
  const auto pc = c.predict(ids);
  REQUIRE(std::memcmp(pa.data(), pc.data(), std::size_t(pa.size()) * sizeof(float)) != 0);

  hattn::Decoder<dense> d1(29, 64, 3);
  hattn::Decoder<Config{.levels = 4, .heads = 2, .d_model = 8, .mixer = Mixer::dense}> d4(29, 64, 3);
  const auto p1 = d1.predict(ids), p4 = d4.predict(ids);
  REQUIRE(std::memcmp(p1.data(), p4.data(), std::size_t(p1.size()) * sizeof(float)) == 0);
  REQUIRE(d1.padded_length(37) == 37);
}

TEST_CASE("attention maps: a pooled level at summary resolution, the dense baseline as one causal map",
          "[variants][attention]") {
  hattn::Decoder<Config{.levels = 2, .heads = 2, .d_model = 16, .summaries = 3}> m(29, 32, 5);
  const Ids ids = random_ids(1, 32, 29, 6);
  const auto maps = m.attention_maps(ids);
  REQUIRE(maps.size() == 6);
  for (const auto& map : maps) {
    INFO(map.name);
    // Causal, and every real row's weights sum to 1 over its visible keys (per summary, once).
    for (Index i = 0; i < 32; ++i)
      for (Index j = i + 1; j < 32; ++j) REQUIRE(map.probs(i, j) == 0.0f);
  }
  // Level 1 (S = 16, pooled into 3 summaries of rows [0, 5), [5, 10), [10, 16)): right row 16 + i
  // gives one weight to all rows of a summary, and sees summary b from i >= s_b on.
  const auto& level1 = maps[2];
  REQUIRE(level1.name == "decoder_block.hier_attn1.level1");
  for (Index i = 0; i < 16; ++i) {
    const Index row = 16 + i;
    const float w0 = level1.probs(row, 0), w1 = level1.probs(row, 5), w2 = level1.probs(row, 10);
    for (Index j = 0; j < 5; ++j) REQUIRE(level1.probs(row, j) == w0);
    for (Index j = 5; j < 10; ++j) REQUIRE(level1.probs(row, j) == w1);
    for (Index j = 10; j < 16; ++j) REQUIRE(level1.probs(row, j) == w2);
    REQUIRE(w0 > 0);
    REQUIRE((w1 > 0) == (i >= 5));
    REQUIRE((w2 > 0) == (i >= 10));
    REQUIRE(double(w0) + double(w1) + double(w2) == Approx(1.0).epsilon(1e-5));
  }

  hattn::Decoder<dense_blocks> d(29, 32, 5);
  const auto dmaps = d.attention_maps(ids);
  REQUIRE(dmaps.size() == 4);
  REQUIRE(dmaps[0].name == "decoder_blocks.0.attn1");
  REQUIRE(dmaps[3].name == "decoder_blocks.1.attn2");
  for (Index i = 0; i < 32; ++i) {
    double sum = 0;
    for (Index j = 0; j < 32; ++j) {
      if (j > i) REQUIRE(dmaps[1].probs(i, j) == 0.0f);
      sum += dmaps[1].probs(i, j);
    }
    REQUIRE(sum == Approx(1.0).epsilon(1e-5));
  }
}
