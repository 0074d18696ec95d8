#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "hattn/hattn.hpp"
#include "support/float_error.hpp"
#include "support/gradcheck.hpp"
#include "support/model_checks.hpp"

using hattn::Index;
using hattn::NodeMask;
using Ids = hattn::Tensor<std::int32_t, 2>;
namespace fe = hattn::test::fe;
using namespace hattn::test;  // NOLINT(google-build-using-namespace): the shared model checks

namespace {

// An upper bound on the spectral norm of a (rows, cols) row-major matrix: ||W||_2^2 is the largest
// eigenvalue of A = W^T W, at most ||A^(2^j)||_F^(2^-j) for every j (the Frobenius norm of a
// symmetric matrix bounds its largest eigenvalue). Five squarings leave a factor of at most
// cols^(2^-7) on the result: 1.022 for cols = 16.
double spectral_norm_bound(const float* w, Index rows, Index cols) {
  std::vector<double> a(std::size_t(cols * cols), 0.0), sq(a.size());
  const auto at = [cols](Index i, Index j) { return std::size_t(i * cols + j); };
  for (Index i = 0; i < cols; ++i)
    for (Index j = 0; j < cols; ++j)
      for (Index r = 0; r < rows; ++r) a[at(i, j)] += double(w[r * cols + i]) * double(w[r * cols + j]);
  const auto frobenius = [](const std::vector<double>& m) {
    double f = 0;
    for (double x : m) f += x * x;
    return std::sqrt(f);
  };
  double log_scale = 0;  // A^(2^k) = a * exp(log_scale), kept normalized against overflow
  constexpr int squarings = 5;
  for (int k = 0; k < squarings; ++k) {
    const double f = frobenius(a);
    for (double& x : a) x /= f;
    log_scale += std::log(f);
    std::fill(sq.begin(), sq.end(), 0.0);
    for (Index i = 0; i < cols; ++i)
      for (Index l = 0; l < cols; ++l)
        for (Index j = 0; j < cols; ++j) sq[at(i, j)] += a[at(i, l)] * a[at(l, j)];
    a.swap(sq);
    log_scale *= 2;
  }
  return std::exp((std::log(frobenius(a)) + log_scale) / std::ldexp(1.0, squarings + 1));
}

// Euclidean norm of n floats.
double norm2(const float* x, Index n) {
  double s = 0;
  for (Index i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return std::sqrt(s);
}

// An upper bound on the Euclidean norm of a float LayerNorm output row, gamma xhat + beta: the
// normalized row has ||xhat||^2 = d var / (var + eps) < d, and the float result adds a relative 2u.
template <class Model>
double layernorm_output_bound(const Model& m, const std::string& norm) {
  const auto& w = m.parameter(norm + ".weight");
  const auto& b = m.parameter(norm + ".bias");
  double top = 0;
  for (Index i = 0; i < w.size(); ++i) top = std::max(top, double(std::abs(w.value[i])));
  return (top * std::sqrt(double(w.size())) + norm2(b.value, b.size())) * (1 + 2 * fe::u);
}

}  // namespace

TEST_CASE("the decoder's parameters carry SPEC.md's names and shapes", "[decoder]") {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8}> m(11, 16);
  const auto& ps = m.parameters();
  REQUIRE(ps.front().name == "pos_encoding.word_embedding_layer.weight");
  REQUIRE(ps.front().shape == std::vector<Index>{11, 8});
  REQUIRE(ps[1].name == "pos_encoding.position_embedding_layer.weight");
  REQUIRE_FALSE(ps[1].trainable());
  REQUIRE(m.parameter("decoder_block.hier_attn2.node_layers.1.cross_attention.W_v.bias").shape ==
          std::vector<Index>{8});
  REQUIRE(m.parameter("decoder_block.hier_attn1.leaf_attention.self_attention.W_o.weight").shape ==
          std::vector<Index>{8, 8});
  REQUIRE(m.parameter("decoder_block.feed_forward.0.weight").shape == std::vector<Index>{32, 8});
  REQUIRE(m.parameter("decoder_block.feed_forward.2.weight").shape == std::vector<Index>{8, 32});
  REQUIRE(m.parameter("decoder_block.norm3.bias").shape == std::vector<Index>{8});
  REQUIRE(ps.back().name == "linear.bias");
  // 2 HAs x (1 leaf + 2 levels) x (4 linears x 2 + norm x 2) + ff 4 + norms 6 + emb 2 + head 2
  REQUIRE(ps.size() == 2 * 3 * 10 + 4 + 6 + 2 + 2);
  REQUIRE_THROWS_WITH(m.parameter("decoder_block.norm4.bias"), "Decoder: no parameter named 'decoder_block.norm4.bias'");

  hattn::Decoder<hattn::Config{.levels = 1, .heads = 1, .d_model = 4, .blocks = 2}> two(5, 4);
  REQUIRE(two.parameter("decoder_blocks.1.norm1.weight").shape == std::vector<Index>{4});
}

TEST_CASE("initialization follows PyTorch's defaults and is reproducible from the seed", "[decoder]") {
  constexpr hattn::Config cfg{.levels = 1, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> a(50, 32, 3), b(50, 32, 3), c(50, 32, 4);
  for (std::size_t i = 0; i < a.parameters().size(); ++i) {
    const auto& p = a.parameters()[i];
    REQUIRE(std::equal(p.value, p.value + p.size(), b.parameters()[i].value));
  }
  const auto& w = a.parameter("decoder_block.feed_forward.2.weight");  // fan_in 64: bound 1/8
  REQUIRE(*std::max_element(w.value, w.value + w.size()) <= 0.125f);
  REQUIRE(*std::min_element(w.value, w.value + w.size()) >= -0.125f);
  REQUIRE(*std::max_element(w.value, w.value + w.size()) > 0.12f);
  const auto& e = a.parameter("pos_encoding.word_embedding_layer.weight");
  double s2 = 0;
  for (Index i = 0; i < e.size(); ++i) s2 += double(e.value[i]) * e.value[i];
  REQUIRE(std::abs(s2 / double(e.size()) - 1.0) < 0.1);  // N(0, 1): 800 samples
  const auto& n = a.parameter("decoder_block.norm2.weight");
  REQUIRE(std::all_of(n.value, n.value + n.size(), [](float x) { return x == 1.0f; }));
  const auto& pos = a.parameter("pos_encoding.position_embedding_layer.weight");
  REQUIRE(pos.value[1 * 16 + 0] == float(std::sin(1.0)));
  REQUIRE(c.parameter("linear.weight").value[0] != a.parameter("linear.weight").value[0]);
}

TEST_CASE("whole-model gradients pass central differences in double", "[decoder][gradcheck]") {
  check_model_gradients<hattn::Config{.levels = 1, .heads = 2, .d_model = 8}>(11, 8, 2, 7);
  check_model_gradients<hattn::Config{.levels = 2, .heads = 1, .d_model = 6, .node_mask = NodeMask::full}>(9, 16, 1, 13);
  check_model_gradients<hattn::Config{.levels = 2, .heads = 2, .d_model = 4, .blocks = 2}>(7, 8, 2, 8);
}

TEST_CASE("gradients with dropout and with checkpointing pass central differences in double",
          "[decoder][gradcheck][checkpoint]") {
  constexpr hattn::Config one{.levels = 1, .heads = 2, .d_model = 8};
  constexpr hattn::Config three{.levels = 3, .heads = 1, .d_model = 4, .blocks = 2};
  check_model_gradients<one>(11, 8, 2, 7, true, false);
  check_model_gradients<one>(11, 8, 2, 7, false, true);
  check_model_gradients<one>(11, 8, 2, 7, true, true);
  check_model_gradients<three>(7, 16, 2, 13, true, true);
}


TEST_CASE("gradient checkpointing gives bitwise the same loss, logits and gradients", "[decoder][checkpoint]") {
  check_checkpointing<hattn::Config{.levels = 1, .heads = 2, .d_model = 16}, float>(37, 3, 29);
  check_checkpointing<hattn::Config{.levels = 2, .heads = 4, .d_model = 32, .blocks = 2}, float>(37, 2, 64);
  check_checkpointing<hattn::Config{.levels = 3, .heads = 2, .d_model = 16, .node_mask = NodeMask::full},
                      float>(37, 2, 45);
  check_checkpointing<hattn::Config{.levels = 2, .heads = 2, .d_model = 8}, double>(19, 2, 30);
  // Four levels: the top and three lower levels recomputed one at a time over shared values.
  check_checkpointing<hattn::Config{.levels = 4, .heads = 2, .d_model = 16}, float>(29, 2, 61);
  // A vocabulary whose logits split into several chunks (192 rows each for V = 150000; 4 x 62
  // rows): checkpointing recomputes them chunk by chunk in backward instead of keeping them.
  REQUIRE(hattn::ops::linear_cross_entropy_chunk(150000) < 4 * 62);
  check_checkpointing<hattn::Config{.levels = 1, .heads = 2, .d_model = 16}, float>(150000, 4, 61);

  // Switching it on and off between steps re-lays the workspace and changes nothing.
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> m(23, 32, 3);
  const Ids ids = random_ids(2, 32, 23, 4), targets = next_tokens(ids);
  std::vector<std::vector<float>> runs;
  for (bool on : {false, true, false}) {
    m.set_checkpointing(on);
    REQUIRE(m.checkpointing() == on);
    m.zero_grad();
    m.set_step(2);
    m.forward(ids, targets, true);
    m.backward();
    runs.push_back(all_grads(m));
  }
  REQUIRE(runs[0] == runs[1]);
  REQUIRE(runs[0] == runs[2]);
}

TEST_CASE("workspace_bytes: nothing before a forward pass, checkpointing lays out fewer values, the "
          "same gradients",
          "[decoder][checkpoint]") {
  constexpr hattn::Config cfg{.levels = 3, .heads = 2, .d_model = 16};
  const Ids ids = random_ids(2, 64, 200, 8), targets = next_tokens(ids);
  std::vector<hattn::Decoder<cfg>::WorkspaceBytes> sizes;
  for (bool on : {false, true}) {
    hattn::Decoder<cfg> m(200, 64, 9);
    m.set_checkpointing(on);
    REQUIRE(m.workspace_bytes().values == 0);
    REQUIRE(m.workspace_bytes().gradients == 0);
    m.forward(ids, targets, true);
    m.backward();
    sizes.push_back(m.workspace_bytes());
  }
  // Plain: at least the (128, 200) logits and one (128, 16) activation per op are kept.
  REQUIRE(sizes[0].values > (128 * 200 + 128 * 16) * sizeof(float));
  REQUIRE(sizes[1].values < sizes[0].values);
  REQUIRE(sizes[1].gradients == sizes[0].gradients);
  REQUIRE(sizes[1].gradients > 0);
}

TEST_CASE("changing future tokens leaves every past output bitwise unchanged", "[decoder][causal]") {
  check_causality<hattn::Config{.levels = 2, .heads = 2, .d_model = 16}>(29, 64, 32);
  check_causality<hattn::Config{.levels = 2, .heads = 2, .d_model = 16}>(29, 64, 27);  // padded
  check_causality<hattn::Config{.levels = 3, .heads = 4, .d_model = 16, .node_mask = NodeMask::full}>(29, 64, 64);
  check_causality<hattn::Config{.levels = 3, .heads = 4, .d_model = 16, .node_mask = NodeMask::full}>(29, 64, 45);
  check_causality<hattn::Config{.levels = 1, .heads = 1, .d_model = 8, .blocks = 2}>(13, 16, 11);
}

TEST_CASE("dropout masks are keyed by the sequence's index in the batch, not by the forward pass",
          "[decoder][dropout]") {
  check_dropout_split<hattn::Config{.levels = 2, .heads = 2, .d_model = 16}>(29, 64, 32);
  check_dropout_split<hattn::Config{.levels = 3, .heads = 4, .d_model = 16, .node_mask = NodeMask::full}>(29, 64, 45);
  check_dropout_split<hattn::Config{.levels = 1, .heads = 1, .d_model = 8, .blocks = 2}>(13, 16, 11);
}

TEST_CASE("lengths with the same chunk size give bitwise equal outputs on their common prefix", "[decoder]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> m(31, 64, 5);
  perturb_norms(m, 6);
  const Ids long_ids = random_ids(2, 24, 31, 7);  // chunks of 6
  for (Index t : {Index(21), Index(22), Index(23)}) {
    Ids short_ids(2, t);
    for (Index b = 0; b < 2; ++b)
      for (Index j = 0; j < t; ++j) short_ids(b, j) = long_ids(b, j);
    const auto a = m.predict(long_ids), b = m.predict(short_ids);
    Index mismatches = 0;
    for (Index i = 0; i < 2; ++i)
      for (Index j = 0; j < t; ++j)
        for (Index v = 0; v < 31; ++v) mismatches += a(i, j, v) != b(i, j, v);
    INFO("T = 24 against T = " << t);
    REQUIRE(mismatches == 0);
  }
}

TEST_CASE("outputs and gradients are bitwise equal with 1 and 2 threads, concurrent predict equals serial",
          "[decoder][threads]") {
  constexpr hattn::Config cfg{.levels = 3, .heads = 4, .d_model = 32};
  hattn::Decoder<cfg> m(97, 128, 11);
  perturb_norms(m, 12);
  const Ids ids = random_ids(4, 100, 97, 13), targets = next_tokens(ids);
  auto run = [&] { return step_and_predict(m, ids, targets); };
  const auto one = hattn::test::with_threads(1, run);
  const auto two = hattn::test::with_threads(2, run);
  REQUIRE(one.size() == two.size());
  REQUIRE(one == two);

  const auto serial = m.predict(ids);
  std::vector<hattn::Tensor<float, 3>> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { results[std::size_t(i)] = m.predict(ids); });
  for (auto& t : threads) t.join();
  for (const auto& r : results) REQUIRE(prefix_equal(serial, r, 100));
}

TEST_CASE("the tape reused across steps gives identical results", "[decoder][tape]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 8};
  hattn::Decoder<cfg> m(17, 32, 1);
  const Ids ids = random_ids(3, 20, 17, 2), targets = next_tokens(ids);
  std::vector<float> first;
  for (int step = 0; step < 3; ++step) {
    m.zero_grad();
    m.set_step(9);
    const float loss = m.forward(ids, targets, true);
    m.backward();
    auto g = all_grads(m);
    g.push_back(loss);
    if (step == 0) first = g;
    REQUIRE(g == first);
  }
  // Dropout masks change with the step.
  m.set_step(10);
  const float other = m.forward(ids, targets, true);
  REQUIRE(other != first.back());
}

TEST_CASE("bad input is rejected with an exact message before anything is computed", "[decoder][errors]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 8};
  hattn::Decoder<cfg> m(10, 16);
  Ids ids = random_ids(2, 5, 10, 3);
  ids(1, 3) = -1;
  REQUIRE_THROWS_WITH(m.predict(ids), "Decoder::predict: token id -1 at (1, 3) is outside the vocabulary [0, 10)");
  ids(1, 3) = 10;
  REQUIRE_THROWS_WITH(m.predict(ids), "Decoder::predict: token id 10 at (1, 3) is outside the vocabulary [0, 10)");
  REQUIRE_THROWS_WITH(m.forward(ids, next_tokens(ids)),
                      "Decoder::forward: token id 10 at (1, 3) is outside the vocabulary [0, 10)");
  REQUIRE_THROWS_WITH(m.predict(Ids(2, 0)), "Decoder::predict: empty sequence: ids (2, 0) has T = 0 tokens");
  REQUIRE_THROWS_WITH(m.predict(random_ids(1, 17, 10, 4)),
                      "Decoder::predict: sequence of 17 tokens exceeds sequence_length = 16");
  const Ids good = random_ids(2, 5, 10, 5);
  Ids bad_targets = next_tokens(good);
  bad_targets(0, 2) = 10;
  REQUIRE_THROWS_WITH(m.forward(good, bad_targets),
                      "Decoder::forward: target 10 at (0, 2) is outside [0, 10) and is not -100");
  Ids ignored(2, 5);
  ignored.setConstant(-100);
  REQUIRE_THROWS_WITH(m.forward(good, ignored),
                      "Decoder::forward: every target is -100: there is nothing to learn from");
  REQUIRE_THROWS_WITH(m.forward(good, Ids(2, 4)), "Decoder::forward: targets (2, 4) do not match ids (2, 5)");
  REQUIRE_THROWS_WITH(m.backward(), "Decoder::backward: no forward pass recorded since the last backward");
  REQUIRE_THROWS_WITH(m.last_logits(), "Decoder::last_logits: no forward pass yet");
  m.forward(good, next_tokens(good));
  REQUIRE(m.last_logits().dimension(2) == 10);
  m.backward();
  REQUIRE_THROWS_WITH(m.last_logits(),
                      "Decoder::last_logits: backward() has replaced the logits by their gradient");
  using Deep = hattn::Decoder<hattn::Config{.levels = 5, .heads = 1, .d_model = 2}>;
  REQUIRE_THROWS_WITH(Deep(4, 31), "Decoder: levels = 5 is too deep for sequence_length = 31 (at most floor(log2(31)) = 4)");
  REQUIRE_NOTHROW(Deep(4, 32));
}

TEST_CASE("next-token logits equal the last position's logits", "[decoder][generate]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> m(23, 32, 4);
  const Ids ids = random_ids(3, 11, 23, 5);
  const auto all = m.logits(ids);
  const auto next = m.next_token_logits(ids);
  REQUIRE(next.dimension(0) == 3);
  REQUIRE(next.dimension(1) == 23);
  // The same hidden row goes through two head products, each within gamma_(d+1) (sum |h w_v| +
  // |b_v|) of the exact logit, with sum |h w_v| <= ||h|| ||w_v|| and h the last block's LayerNorm
  // output: |next - all| <= 2 gamma_(d+1) (||h|| ||w_v|| + |b_v|).
  constexpr Index d = cfg.d_model;
  const double h_norm = layernorm_output_bound(m, "decoder_block.norm3");
  const auto& w = m.parameter("linear.weight");
  const auto& bias = m.parameter("linear.bias");
  fe::Worst worst;
  for (Index b = 0; b < 3; ++b)
    for (Index v = 0; v < 23; ++v) {
      const double bound = 2 * fe::dot_bound(d, h_norm * norm2(w.value + v * d, d) + std::abs(bias.value[v]), 1);
      INFO("row " << b << ", logit " << v << ": " << next(b, v) << " vs " << all(b, 10, v) << ", bound " << bound);
      REQUIRE(worst(next(b, v), all(b, 10, v), bound) <= 1);
    }
  worst.print("next-token logits (float)");
}

TEST_CASE("predict and logits into the caller's buffer equal the returned results bitwise, a wrong "
          "shape is refused before anything is written",
          "[decoder][predict]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> m(23, 32, 4);
  perturb_norms(m, 5);
  const Ids ids = random_ids(3, 11, 23, 6);
  const auto probs = m.predict(ids), logits = m.logits(ids);
  hattn::Tensor<float, 3> out(3, 11, 23);
  for (int repeat = 0; repeat < 2; ++repeat) {  // the buffer is reused, not appended to
    m.predict(ids, hattn::View<float, 3>(out));
    REQUIRE(std::equal(out.data(), out.data() + out.size(), probs.data()));
    m.logits(ids, hattn::View<float, 3>(out));
    REQUIRE(std::equal(out.data(), out.data() + out.size(), logits.data()));
  }
  hattn::Tensor<float, 3> wrong(3, 11, 22);
  wrong.setConstant(7.0f);
  REQUIRE_THROWS_WITH(m.predict(ids, hattn::View<float, 3>(wrong)),
                      "Decoder::predict: output (3, 11, 22) does not match (B, T, V) = (3, 11, 23)");
  REQUIRE_THROWS_WITH(m.logits(ids, hattn::View<float, 3>(out.data(), 3, 12, 23)),
                      "Decoder::predict: output (3, 12, 23) does not match (B, T, V) = (3, 11, 23)");
  Ids bad = ids;
  bad(1, 2) = 23;
  REQUIRE_THROWS_WITH(m.predict(bad, hattn::View<float, 3>(wrong)),
                      "Decoder::predict: token id 23 at (1, 2) is outside the vocabulary [0, 23)");
  REQUIRE(std::all_of(wrong.data(), wrong.data() + wrong.size(), [](float e) { return e == 7.0f; }));
}

TEST_CASE("attention maps are causal probability rows, per hierarchy level", "[decoder][attention]") {
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> m(23, 32, 4);
  const Ids ids = random_ids(2, 14, 23, 6);  // padded to 16: chunks of 4
  const auto maps = m.attention_maps(ids);
  // A map row of a query that attends is the head average of sum_j exp(s_j - lse) (exactly 1),
  // its scores recomputed by a float loop and lse from the forward pass's GEMM scores. Each score
  // is within E = gamma_(dh+3) |q| |k| / sqrt(dh) (fe::dot_bound, sum |q k| <= |q| |k|), and lse
  // within E plus its softmax, log and add roundings (test_attention's bound), so a head's row is
  // within 2 E + u (5 S + 4 log n + 4) + gamma_(n-1), S = |q| |k| / sqrt(dh) bounding every |score|,
  // n <= Tp = 16 keys; the head average adds gamma_heads. |q| <= ||W_q||_2 R + ||b_q|| (plus its
  // GEMM's gamma_(d+1)), R bounding the map's attention inputs: the embedding rows for the first
  // leaf attention, LayerNorm outputs (norm1; the leaves' and lower levels' norms) for the others.
  constexpr Index d = cfg.d_model, dh = d / cfg.heads, keys = 16;
  const auto& tok = m.parameter("pos_encoding.word_embedding_layer.weight");
  const auto& pos = m.parameter("pos_encoding.position_embedding_layer.weight");
  double embedded = 0;
  for (Index t = 0; t < 14; ++t) {
    std::vector<float> row(d);
    for (Index c = 0; c < d; ++c) row[std::size_t(c)] = tok.value[ids(0, t) * d + c] + pos.value[t * d + c];
    embedded = std::max(embedded, norm2(row.data(), d) * (1 + fe::u));
  }
  const auto projection_bound = [&](const std::string& prefix, double R) {
    const auto& w = m.parameter(prefix + ".weight");
    const auto& b = m.parameter(prefix + ".bias");
    const double frob = norm2(w.value, w.size()), bias = norm2(b.value, b.size());
    return spectral_norm_bound(w.value, d, d) * R + bias + fe::gamma(double(d + 1)) * (frob * R + bias);
  };
  // The bound on |row sum - 1| for the map called `name` ("<ha>.leaf" or "<ha>.level<l>").
  const auto row_bound = [&](const std::string& name) {
    const std::string ha = name.substr(0, name.rfind('.')), part = name.substr(name.rfind('.') + 1);
    std::string attention;
    double R = 0;
    if (part == "leaf") {
      attention = ha + ".leaf_attention.self_attention";
      R = ha.ends_with("hier_attn1") ? embedded : layernorm_output_bound(m, "decoder_block.norm1");
    } else {
      const int l = std::stoi(part.substr(5));
      attention = ha + ".node_layers." + std::to_string(l) + ".cross_attention";
      R = layernorm_output_bound(m, ha + ".leaf_attention.norm");
      for (int below = 0; below < l; ++below)
        R = std::max(R, layernorm_output_bound(m, ha + ".node_layers." + std::to_string(below) + ".norm"));
    }
    const double S = projection_bound(attention + ".W_q", R) * projection_bound(attention + ".W_k", R) /
                     std::sqrt(double(dh));
    const double E = fe::gamma(double(dh + 3)) * S;
    const double head = 2 * E + fe::u * (5 * S + 4 * std::log(double(keys)) + 4) + fe::gamma(double(keys - 1));
    return head * (1 + fe::gamma(double(cfg.heads))) + fe::gamma(double(cfg.heads)) + fe::gamma(14, fe::u_double);
  };
  fe::Worst worst;
  REQUIRE(maps.size() == 2 * 3);
  REQUIRE(maps[0].name == "decoder_block.hier_attn1.leaf");
  REQUIRE(maps[2].name == "decoder_block.hier_attn1.level1");
  REQUIRE(maps[5].name == "decoder_block.hier_attn2.level1");
  for (const auto& map : maps) {
    INFO(map.name);
    const double bound = row_bound(map.name);
    REQUIRE(map.probs.dimension(0) == 14);
    for (Index i = 0; i < 14; ++i) {
      double row = 0;
      for (Index j = 0; j < 14; ++j) {
        if (j > i) REQUIRE(map.probs(i, j) == 0.0f);  // causal
        REQUIRE(map.probs(i, j) >= 0.0f);
        row += map.probs(i, j);
      }
      // Leaf rows and the right halves' rows are distributions; left halves attend nothing at a level.
      const bool level0 = map.name.ends_with("level0"), level1 = map.name.ends_with("level1");
      const bool attends = !(level0 || level1) || (level0 ? (i / 4) % 2 == 1 : (i / 8) % 2 == 1);
      if (attends) {
        INFO("row " << i << " sums to " << row << ", bound " << bound);
        REQUIRE(worst(row, 1.0, bound) <= 1);
      } else {
        REQUIRE(row == 0.0);  // nothing was added
      }
    }
  }
  worst.print("attention map row sums (float)");
  // Level 1 (segments of 8): row 9 (right) attends to left rows 0..1 only under the aligned mask.
  REQUIRE(maps[2].probs(9, 1) > 0.0f);
  REQUIRE(maps[2].probs(9, 2) == 0.0f);
}

TEST_CASE("generation is greedy or seeded sampling, stops at the end id, and validates options",
          "[decoder][generate]") {
  constexpr hattn::Config cfg{.levels = 1, .heads = 2, .d_model = 8};
  hattn::Decoder<cfg> m(13, 8, 2);
  const Ids prompt = random_ids(2, 3, 13, 7);
  hattn::SampleOptions greedy{.max_new_tokens = 12, .temperature = 0};
  std::vector<std::pair<Index, std::int32_t>> streamed;
  const auto g1 = hattn::generate(m, prompt, greedy, [&](Index b, std::int32_t id) { streamed.emplace_back(b, id); });
  REQUIRE(g1[0].size() == 12);  // context grows past sequence_length 8: cropped to the last 8
  REQUIRE(streamed.size() == 24);
  // Greedy equals the argmax of next_token_logits step by step for row 0.
  std::vector<std::int32_t> ctx(&prompt(0, 0), &prompt(0, 0) + 3);
  for (int step = 0; step < 12; ++step) {
    const Index n = std::min<Index>(Index(ctx.size()), 8);
    Ids w(1, n);
    std::copy(ctx.end() - n, ctx.end(), w.data());
    const auto l = m.next_token_logits(w);
    const auto id = std::int32_t(std::max_element(l.data(), l.data() + 13) - l.data());
    REQUIRE(g1[0][std::size_t(step)] == id);
    ctx.push_back(id);
  }
  hattn::SampleOptions sample{.max_new_tokens = 20, .temperature = 1.3, .top_k = 5, .top_p = 0.9, .seed = 3};
  const auto s1 = hattn::generate(m, prompt, sample), s2 = hattn::generate(m, prompt, sample);
  REQUIRE(s1 == s2);
  sample.seed = 4;
  REQUIRE(hattn::generate(m, prompt, sample) != s1);
  // The end id stops a row: make every token the end id by choosing the row's own greedy token.
  hattn::SampleOptions stop{.max_new_tokens = 12, .temperature = 0, .end_id = g1[0][0]};
  const auto s3 = hattn::generate(m, Ids(prompt.slice(std::array<Index, 2>{0, 0}, std::array<Index, 2>{1, 3})), stop);
  REQUIRE(s3[0].size() == 1);
  REQUIRE_THROWS_WITH(hattn::generate(m, Ids(1, 0), greedy), "generate: the prompt has no tokens: (1, 0)");
  REQUIRE_THROWS_WITH(hattn::generate(m, prompt, hattn::SampleOptions{.top_p = 0}), "generate: top_p must be in (0, 1], got 0");
  REQUIRE_THROWS_WITH(hattn::generate(m, prompt, hattn::SampleOptions{.temperature = -1}),
                      "generate: temperature must be >= 0, got -1");
}

TEST_CASE("pick_token honours top-k and top-p exactly", "[generate]") {
  const float logits[5] = {0.0f, 2.0f, 1.0f, 2.0f, -1.0f};  // ties at ids 1 and 3
  hattn::SampleOptions o{.temperature = 1.0, .top_k = 2};
  // top-2 = {1, 3} with equal probability: u < 0.5 -> id 1, else id 3.
  REQUIRE(hattn::pick_token(logits, 5, o, 0.25) == 1);
  REQUIRE(hattn::pick_token(logits, 5, o, 0.75) == 3);
  o = {.temperature = 1.0, .top_p = 0.3};  // the top token alone has probability ~0.4 >= 0.3
  for (double u : {0.0, 0.5, 0.999}) REQUIRE(hattn::pick_token(logits, 5, o, u) == 1);
  o = {.temperature = 0};
  REQUIRE(hattn::pick_token(logits, 5, o, 0.9) == 1);  // argmax: first of the tied maxima
}
