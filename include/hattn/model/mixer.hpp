#pragma once
/// \file
/// The mixer seam: what fills a decoder block's two attention slots (SPEC.md step 2, HA1 and HA2).
/// A mixer is a class template `M<Config, T>` satisfying model::MixerFor; the block and the decoder
/// only ever talk to it through this concept, so a new kind of attention is one new header that
/// implements it, passed as `hattn::Decoder<config, T, M>` (docs/architecture.md, "Adding a
/// variant"). The two mixers of SPEC.md are model::HierarchicalMixer and model::DenseMixer.

#include <concepts>
#include <string>
#include <type_traits>
#include <vector>

#include "hattn/config.hpp"
#include "hattn/model/activations.hpp"
#include "hattn/model/attention_maps.hpp"
#include "hattn/model/dense.hpp"
#include "hattn/model/hierarchy.hpp"
#include "hattn/model/layers.hpp"
#include "hattn/model/parameters.hpp"

namespace hattn::model {

/// What a block needs of the mixer `M` computing in `T`:
/// - `M::Params`, `M::Acts`: one slot's parameters and activations;
/// - `M::slot_name(slot)`: the slot's name inside a block for slot 1 and 2 (parameter names);
/// - `M::padded_length(T)`: rows per sequence inside the blocks (padding rows at the end of each
///   sequence hold finite values that no real row may read);
/// - `M::make_params(pb, prefix)`: takes and names a slot's parameters in a fixed order;
/// - `M::make_acts(ab, B, Tp, checkpoint)`: takes a slot's activations over B sequences of Tp
///   rows, and its dropout sites (ActivationBuilder::dropout_site);
/// - `M::forward(params, acts, x, ctx)`: the slot on x (B Tp, d), recorded on ctx.tape, returning
///   (B Tp, d) whose gradient is a relay the caller clears; checkpointed when ctx.recompute is set;
/// - `M::maps(acts, prefix, T, Tp, out)`: appends the head-averaged (T, T) attention maps of
///   sequence 0 after an inference pass.
template <class M, class T>
concept MixerFor = requires(ParameterBuilder<T>& pb, ActivationBuilder<T>& ab, const typename M::Params& p,
                            typename M::Acts& a, const typename M::Acts& ca, Var<T, 2> x,
                            const ForwardContext& ctx, std::vector<AttentionMap<T>>& maps) {
  { M::slot_name(1) } -> std::convertible_to<std::string>;
  { M::padded_length(Index{1}) } -> std::same_as<Index>;
  { M::make_params(pb, std::string()) } -> std::same_as<typename M::Params>;
  { M::make_acts(ab, Index{1}, Index{1}, false) } -> std::same_as<typename M::Acts>;
  { M::forward(p, a, x, ctx) } -> std::same_as<Var<T, 2>>;
  M::maps(ca, std::string(), Index{1}, Index{1}, maps);
};

/// The mixer a Config names: `mixer = hierarchical` (with its node rules) or `dense`.
template <Config C, class T>
using DefaultMixer = std::conditional_t<C.mixer == Mixer::dense, DenseMixer<C, T>, HierarchicalMixer<C, T>>;

}  // namespace hattn::model
