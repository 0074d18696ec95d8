// A fifth variant in one file, as docs/architecture.md ("Adding a variant") walks through: a mixer
// written here, outside the library, that attends only inside each leaf chunk (local attention, the
// hierarchy without its tree), plugged in as hattn::Decoder<cfg, T, LocalMixer>. The library is not
// edited; the shared model checks run on it unchanged.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "support/files.hpp"
#include "support/model_checks.hpp"

namespace model = hattn::model;
using hattn::Config;
using hattn::Index;
using namespace hattn::test;  // NOLINT(google-build-using-namespace): the shared model checks

namespace {

/// Causal self-attention inside each of the 2^levels leaf chunks, nothing across them: the
/// concept model::MixerFor, implemented from the library's self-attention layer.
template <Config C, class T>
struct LocalMixer {
  using Params = model::SelfAttentionParams<T>;
  using Acts = model::SelfAttentionActs<T>;

  static std::string slot_name(int slot) { return "local_attn" + std::to_string(slot); }
  static constexpr Index padded_length(Index tokens) {
    constexpr Index chunks = Index{1} << C.levels;
    return (tokens + chunks - 1) / chunks * chunks;
  }
  static Params make_params(hattn::ParameterBuilder<T>& pb, const std::string& prefix) {
    return model::make_self_attention(pb, prefix, C.d_model);
  }
  static Acts make_acts(model::ActivationBuilder<T>& ab, Index B, Index Tp, bool checkpoint) {
    ab.set_recompute(checkpoint);
    Acts a = model::make_self_attention_acts(ab, B * Tp, Tp >> C.levels, C.d_model, C.heads);
    ab.set_recompute(false);
    return a;
  }
  static hattn::Var<T, 2> forward_recorded(const Params& p, Acts& a, hattn::Var<T, 2> x,
                                           const model::ForwardContext& ctx) {
    return model::self_attention_forward(p, a, x, ctx);
  }
  static hattn::Var<T, 2> forward(const Params& p, Acts& a, hattn::Var<T, 2> x, const model::ForwardContext& ctx) {
    return model::checkpointed<LocalMixer>(p, a, x, ctx);
  }
  static void maps(const Acts&, const std::string&, Index, Index, std::vector<hattn::AttentionMap<T>>&) {}
};

constexpr Config cfg{.levels = 2, .heads = 2, .d_model = 8};

}  // namespace

TEST_CASE("a mixer written outside the library satisfies the concept and names its slots", "[mixer]") {
  static_assert(model::MixerFor<LocalMixer<cfg, float>, float>);
  const hattn::Decoder<cfg, float, LocalMixer> m(11, 16);
  bool found = false;
  for (const auto& p : m.parameters()) found = found || p.name == "decoder_block.local_attn2.self_attention.W_q.weight";
  REQUIRE(found);
  REQUIRE(m.parameter_count() < hattn::Decoder<cfg>(11, 16).parameter_count());  // no node layers
}

TEST_CASE("a custom mixer gets the seed model's checks unchanged", "[mixer][gradcheck][causal][checkpoint]") {
  check_model_gradients<cfg, LocalMixer>(11, 16, 2, 13, true, true);
  check_checkpointing<cfg, float, LocalMixer>(29, 2, 45);
  check_causality<cfg, LocalMixer>(29, 64, 40);
}

TEST_CASE("a custom mixer's model saves and loads", "[mixer][checkpoint]") {
  TempDir dir{"hattn_test_custom_mixer"};
  const hattn::Decoder<cfg, float, LocalMixer> a(11, 16, 1);
  hattn::Decoder<cfg, float, LocalMixer> b(11, 16, 2);
  hattn::save_safetensors(a, dir / "local.safetensors");
  hattn::load_safetensors(b, dir / "local.safetensors");
  const Ids ids = random_ids(2, 16, 11, 3);
  const auto pa = a.predict(ids), pb = b.predict(ids);
  REQUIRE(prefix_equal(pa, pb, 16));
  // Its parameter names are its own: a hierarchical model cannot load it.
  hattn::Decoder<cfg> h(11, 16);
  REQUIRE_THROWS_WITH(hattn::load_safetensors(h, dir / "local.safetensors"),
                      Catch::Contains("missing tensor 'decoder_block.hier_attn1.leaf_attention.self_attention.W_q.weight'"));
}
