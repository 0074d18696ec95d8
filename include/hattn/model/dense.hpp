#pragma once
/// \file
/// The dense baseline (SPEC.md "Variants", `Mixer::dense`): each attention slot is
/// `Dropout(LN(MHA(x, x, causal)))` over the whole unpadded sequence, row t seeing rows t' <= t.
/// No padding, no chunks, no tree: `levels` is unused.

#include <string>
#include <vector>

#include "hattn/config.hpp"
#include "hattn/model/activations.hpp"
#include "hattn/model/attention_maps.hpp"
#include "hattn/model/checkpoint.hpp"
#include "hattn/model/self_attention.hpp"

namespace hattn::model {

/// The dense causal attention as a mixer (model/mixer.hpp).
template <Config C, class T>
struct DenseMixer {
  /// Parameters of one slot: `attn{1,2}.self_attention`, `attn{1,2}.norm`.
  using Params = SelfAttentionParams<T>;
  /// Activations of one slot.
  using Acts = SelfAttentionActs<T>;

  /// A slot's name inside a block: `attn1`, `attn2`.
  static std::string slot_name(int slot) { return "attn" + std::to_string(slot); }

  /// No padding: the sequence is one block of T rows.
  static constexpr Index padded_length(Index tokens) { return tokens; }

  /// Takes and names a slot's parameters under `prefix` (e.g. "decoder_block.attn1").
  static Params make_params(ParameterBuilder<T>& pb, const std::string& prefix) {
    return make_self_attention(pb, prefix, C.d_model);
  }

  /// Takes a slot's activations over B sequences of Tp = T rows (values in the recompute region
  /// with `checkpoint`: the checkpoint node recomputes them before the slot's backward pass).
  static Acts make_acts(ActivationBuilder<T>& ab, Index B, Index Tp, bool checkpoint) {
    ab.set_recompute(checkpoint);
    Acts a = make_self_attention_acts(ab, B * Tp, Tp, C.d_model, C.heads);
    ab.set_recompute(false);
    return a;
  }

  /// Forward pass on x (B T, d), every op recorded on ctx.tape; returns the output (B T, d), a
  /// relay whose gradient the caller clears before its backward adds into it.
  static Var<T, 2> forward_recorded(const Params& p, Acts& a, Var<T, 2> x, const ForwardContext& ctx) {
    return self_attention_forward(p, a, x, ctx);
  }

  /// Forward pass; checkpointed (ctx.recompute set) through model::checkpointed.
  static Var<T, 2> forward(const Params& p, Acts& a, Var<T, 2> x, const ForwardContext& ctx) {
    return checkpointed<DenseMixer>(p, a, x, ctx);
  }

  /// The head-averaged (T, T) map `<prefix>` of sequence 0 of the slot's last inference pass.
  static void maps(const Acts& a, const std::string& prefix, Index T_, Index, std::vector<AttentionMap<T>>& out) {
    constexpr Index d = C.d_model;
    Rows<const T> qs = blocks(a.qkv, T_, 0, d).value, ks = blocks(a.qkv, T_, d, d).value;
    qs.groups = ks.groups = 1;
    out.push_back({prefix, detail::attention_map<T>(T_, qs, ks, View<const T, 3>(a.lse), C.heads, ops::Mask::causal,
                                                    [](Index) { return Index{0}; },
                                                    [](Index, Index j) { return std::pair{j, j + 1}; })});
  }
};

}  // namespace hattn::model
