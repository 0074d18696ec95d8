// The model layer against a frozen copy of itself (tests/support/frozen/, the model layer as it was
// before the variants' redesign): with the seed's variant fields, the loss, the logits, every
// parameter gradient, inference probabilities, next-token logits and attention maps must be
// bitwise identical, with dropout and checkpointing on and off, over several steps. Both models
// run in this process on the same GEMM backend and kernel, so the comparison holds whatever the
// machine's kernel rounds like.

#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "support/frozen/decoder.hpp"

using hattn::Index;
using hattn::NodeMask;

namespace {

template <class T>
bool same_bits(const T* a, const T* b, Index n) {
  return std::memcmp(a, b, std::size_t(n) * sizeof(T)) == 0;
}

template <class T>
Index first_difference(const T* a, const T* b, Index n) {
  for (Index i = 0; i < n; ++i)
    if (std::memcmp(a + i, b + i, sizeof(T)) != 0) return i;
  return -1;
}

struct Shape {
  Index vocab, seq, batch, tokens;
};

// Runs `steps` training steps (forward, logits, backward, a plain SGD update so that later steps
// see new weights) on both models and compares everything each step reads or writes.
template <hattn::Config C, class T>
void compare(Shape s, bool dropout, bool checkpoint, int steps = 2) {
  static_assert(hattn::Config{.levels = C.levels, .heads = C.heads, .d_model = C.d_model, .blocks = C.blocks,
                              .node_mask = C.node_mask} == C,
                "the frozen model implements only the seed's variant fields");
  INFO("levels " << C.levels << " heads " << C.heads << " d " << C.d_model << " blocks " << C.blocks
                 << " node_mask " << hattn::value_name(C.node_mask) << " T " << s.tokens << " dropout "
                 << dropout << " checkpointing " << checkpoint << (sizeof(T) == 8 ? " double" : " float"));
  hattn::Decoder<C, T> live(s.vocab, s.seq, 11);
  hattn::frozen::Decoder<C, T> frozen(s.vocab, s.seq, 11);
  live.set_checkpointing(checkpoint);
  frozen.set_checkpointing(checkpoint);

  const auto& lp = live.parameters();
  const auto& fp = frozen.parameters();
  REQUIRE(lp.size() == fp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) {
    INFO(lp[i].name);
    REQUIRE(lp[i].name == fp[i].name);
    REQUIRE(lp[i].shape == fp[i].shape);
    REQUIRE(same_bits(lp[i].value, fp[i].value, lp[i].size()));
  }

  hattn::Tensor<std::int32_t, 2> ids(s.batch, s.tokens), targets(s.batch, s.tokens);
  hattn::Generator gen(5, 0);
  for (int step = 0; step < steps; ++step) {
    INFO("step " << step);
    for (Index b = 0; b < s.batch; ++b)
      for (Index t = 0; t < s.tokens; ++t) {
        ids(b, t) = std::int32_t(gen.next_u64() % std::uint64_t(s.vocab));
        targets(b, t) = t + 1 < s.tokens ? std::int32_t(gen.next_u64() % std::uint64_t(s.vocab)) : -100;
      }
    live.zero_grad();
    frozen.zero_grad();
    const T live_loss = live.forward(ids, targets, dropout);
    const T frozen_loss = frozen.forward(ids, targets, dropout);
    REQUIRE(same_bits(&live_loss, &frozen_loss, 1));
    const auto ll = live.last_logits(), fl = frozen.last_logits();
    REQUIRE(same_bits(ll.data(), fl.data(), ll.size()));
    live.backward();
    frozen.backward();
    for (std::size_t i = 0; i < lp.size(); ++i) {
      if (!lp[i].trainable()) continue;
      INFO(lp[i].name << ": first differing gradient entry "
                      << first_difference(lp[i].grad, fp[i].grad, lp[i].size()));
      REQUIRE(same_bits(lp[i].grad, fp[i].grad, lp[i].size()));
      for (Index j = 0; j < lp[i].size(); ++j) {
        lp[i].value[j] -= T(0.05) * lp[i].grad[j];
        fp[i].value[j] -= T(0.05) * fp[i].grad[j];
      }
    }
  }

  const auto lprob = live.predict(ids), fprob = frozen.predict(ids);
  REQUIRE(same_bits(lprob.data(), fprob.data(), lprob.size()));
  const auto lnext = live.next_token_logits(ids), fnext = frozen.next_token_logits(ids);
  REQUIRE(same_bits(lnext.data(), fnext.data(), lnext.size()));
  const auto lmaps = live.attention_maps(ids);
  const auto fmaps = frozen.attention_maps(ids);
  REQUIRE(lmaps.size() == fmaps.size());
  for (std::size_t i = 0; i < lmaps.size(); ++i) {
    INFO(lmaps[i].name);
    REQUIRE(lmaps[i].name == fmaps[i].name);
    REQUIRE(lmaps[i].probs.size() == fmaps[i].probs.size());
    REQUIRE(same_bits(lmaps[i].probs.data(), fmaps[i].probs.data(), lmaps[i].probs.size()));
  }
}

}  // namespace

TEST_CASE("the seed model is bitwise the frozen model: one level, one head") {
  constexpr hattn::Config c{.levels = 1, .heads = 1, .d_model = 8};
  compare<c, float>({11, 16, 2, 16}, false, false);
  compare<c, float>({11, 16, 2, 16}, true, false);
}

TEST_CASE("the seed model is bitwise the frozen model: padding, the full mask, two blocks") {
  constexpr hattn::Config c{.levels = 2, .heads = 2, .d_model = 16, .blocks = 2, .node_mask = NodeMask::full};
  compare<c, float>({37, 32, 3, 13}, true, false);
  compare<c, float>({37, 32, 3, 13}, true, true);
}

TEST_CASE("the seed model is bitwise the frozen model: three levels, checkpointing, dropout") {
  constexpr hattn::Config c{.levels = 3, .heads = 4, .d_model = 32};
  compare<c, float>({50, 64, 2, 64}, true, true, 3);
  compare<c, float>({50, 64, 2, 45}, true, false);
}

TEST_CASE("the seed model is bitwise the frozen model: five levels, two blocks, checkpointing") {
  constexpr hattn::Config c{.levels = 5, .heads = 2, .d_model = 16, .blocks = 2};
  compare<c, float>({29, 64, 1, 64}, true, true);
  compare<c, float>({29, 64, 2, 61}, false, false);
}

TEST_CASE("the seed model is bitwise the frozen model: double, as gradient checks run it") {
  constexpr hattn::Config c{.levels = 2, .heads = 2, .d_model = 8, .node_mask = NodeMask::full};
  compare<c, double>({13, 16, 2, 11}, true, true);
  compare<c, double>({13, 16, 2, 16}, false, false);
}
