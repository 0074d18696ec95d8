#pragma once
/// \file
/// FROZEN: include/hattn/model/decoder.hpp as of commit 314ec1c, moved to namespace hattn::frozen (never edit;
/// tests/model/test_frozen_model.cpp compares today's model layer with it, bitwise).
///
/// hattn::Decoder: the whole model (SPEC.md), its parameters, training-mode forward/backward on the
/// tape, and inference.

#include <array>
#include <bit>
#include <memory>
#include <mutex>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hattn/autograd/tape.hpp"
#include "hattn/config.hpp"
#include "hattn/core/arena.hpp"
#include "hattn/core/error.hpp"
#include "hattn/core/huge_pages.hpp"
#include "hattn/core/tensor.hpp"
#include "support/frozen/activations.hpp"
#include "support/frozen/attention_maps.hpp"
#include "support/frozen/block.hpp"
#include "support/frozen/layers.hpp"
#include "support/frozen/parameters.hpp"
#include "hattn/ops/cross_entropy.hpp"
#include "hattn/ops/embedding.hpp"
#include "hattn/ops/linear.hpp"
#include "hattn/ops/linear_cross_entropy.hpp"
#include "hattn/ops/rows.hpp"
#include "hattn/ops/softmax.hpp"

namespace hattn::frozen {

/// The hierarchical attention decoder of SPEC.md with compile-time shape `C`, computing in `T`
/// (float; double for gradient checks).
///
/// Training: `forward(ids, targets)` runs the model on the tape and returns the mean cross-entropy,
/// `backward()` adds the gradients into every parameter's `grad`, `zero_grad()` clears them; an
/// optimizer then updates `parameters()`. Inference: `predict(ids)` returns probabilities; it is
/// const, uses no shared state, and may run concurrently from several threads on one model.
template <Config C, class T = float>
class Decoder {
  static_assert(CheckConfig<C>::value);
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "hattn::Decoder: the scalar type must be float or double");
  static constexpr int L = C.levels;
  static constexpr int Blocks = C.blocks;

 public:
  /// The compile-time configuration.
  static constexpr Config config = C;
  /// The scalar type.
  using Scalar = T;
  /// Token ids, (batch, tokens).
  using Ids = Tensor<std::int32_t, 2>;
  /// The cross-entropy target that is ignored (PyTorch's ignore_index).
  static constexpr std::int32_t ignore_index = ops::ignore_index;

  /// A model for `vocab_size` tokens and sequences of up to `sequence_length`, initialized as
  /// PyTorch initializes it (SPEC.md) from `seed`.
  /// Throws hattn::Error if vocab_size < 1, sequence_length < 1, or levels > floor(log2(sequence_length)).
  Decoder(Index vocab_size, Index sequence_length, std::uint64_t seed = 0)
      : vocab_(vocab_size), seq_(sequence_length), seed_(seed) {
    detail::require(vocab_size >= 1, "Decoder", "vocab_size must be >= 1, got ", vocab_size);
    detail::require(sequence_length >= 1, "Decoder", "sequence_length must be >= 1, got ",
                    sequence_length);
    const int max_levels = std::bit_width(std::uint64_t(sequence_length)) - 1;
    detail::require(L <= max_levels, "Decoder", "levels = ", L, " is too deep for sequence_length = ",
                    sequence_length, " (at most floor(log2(", sequence_length, ")) = ", max_levels, ")");
    ParameterBuilder<T> sizing;
    build(sizing);
    values_.reserve(sizing.total());
    grads_.reserve(sizing.total());
    ParameterBuilder<T> pb(values_, grads_, registry_);
    params_ = build(pb);
    initialize(registry_, seed);
  }

  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  /// Vocabulary size V.
  Index vocab_size() const { return vocab_; }
  /// Longest sequence S (rows of the position table).
  Index sequence_length() const { return seq_; }
  /// The initialization seed; also the key of dropout masks.
  std::uint64_t seed() const { return seed_; }
  /// Sets the key of dropout masks (initialization has already happened); resuming training from
  /// a checkpoint restores it so that the masks continue as they would have.
  void set_seed(std::uint64_t seed) { seed_ = seed; }

  /// Every named tensor (SPEC.md names), in PyTorch's state_dict order.
  const std::vector<Parameter<T>>& parameters() const { return registry_; }
  /// The tensor called `name`; throws hattn::Error if there is none.
  const Parameter<T>& parameter(std::string_view name) const {
    for (const auto& p : registry_)
      if (p.name == name) return p;
    throw Error(detail::concat("Decoder: no parameter named '", name, "'"));
  }
  /// Number of trainable scalars.
  Index parameter_count() const {
    Index n = 0;
    for (const auto& p : registry_) n += p.trainable() ? p.size() : 0;
    return n;
  }

  /// Sets every gradient to zero.
  void zero_grad() { grads_.zero(); }

  /// Training-mode forward: runs the model on (B, T) `ids` with dropout (when `dropout`), records
  /// the tape, and returns the mean cross-entropy over the `targets` (B, T) that are not -100.
  /// The logits stay readable through last_logits() until the next forward.
  /// Throws hattn::Error, before computing anything, for an empty batch, T = 0, T >
  /// sequence_length, a token id outside [0, V), or a target outside [0, V) and not -100.
  T forward(View<const std::int32_t, 2> ids, View<const std::int32_t, 2> targets, bool dropout = true) {
    validate_ids(ids, "Decoder::forward");
    detail::require(targets.dims == ids.dims, "Decoder::forward", "targets ", targets.shape(),
                    " do not match ids ", ids.shape());
    validate_targets(targets);
    const Index B = ids.dim(0), T_ = ids.dim(1), Tp = padded_length(T_);
    Workspace& ws = workspace(B, T_);
    std::copy(ids.data, ids.data + ids.size(), ws.ids.begin());
    for (Index b = 0; b < B; ++b)  // padding rows' targets stay -100
      std::copy(&targets(b, 0), &targets(b, 0) + T_, ws.targets.begin() + b * Tp);
    ws.tape.clear();
    // Gradients outside the permanent region are cleared on the tape, just before their use.
    std::fill_n(ws.grads.data(), ws.permanent_grads, T(0));
    logits_consumed_ = false;
    model::ForwardContext ctx{&ws.tape, dropout, seed_, step_++, C.heads,
                              checkpointing_ ? &ws.recompute : nullptr};
    ctx.sequences = B;  // dropout masks keyed per sequence, as the live model keys them
    const Var<T, 2> rows = hidden(ws.acts, View<const std::int32_t, 2>(ws.ids.data(), B, T_), ctx);
    return ops::linear_cross_entropy<T>(&ws.tape, ws.acts.loss, rows, params_.head_w, params_.head_b,
                                        View<const std::int32_t, 1>(ws.targets.data(), B * Tp),
                                        ws.acts.lse, ws.acts.logits, logit_chunk());
  }

  /// Adds loss_scale * d(loss)/d(parameter) of the last forward() into every parameter's gradient
  /// (a scale other than 1 weights micro-batches in gradient accumulation).
  void backward(T loss_scale = T(1)) {
    detail::require(ws_.B > 0 && ws_.tape.size() > 0, "Decoder::backward",
                    "no forward pass recorded since the last backward");
    ws_.acts.loss.grad.data[0] = loss_scale;
    ws_.tape.backward();
    ws_.tape.clear();
    logits_consumed_ = true;
  }

  /// The (B, T, V) logits of the last forward(), bitwise as that pass computed them (they are
  /// recomputed from the head's input: with checkpointing the pass keeps no logits, and without it
  /// backward turns them into their gradient). Read them before backward().
  Tensor<T, 3> last_logits() const {
    detail::require(ws_.B > 0 && !logits_consumed_, "Decoder::last_logits",
                    ws_.B > 0 ? "backward() has replaced the logits by their gradient" : "no forward pass yet");
    const View<const T, 2> head_in = ws_.acts.blocks[Blocks - 1].out.value;  // (B * Tp, d) kept
    Tensor<T, 2> all(head_in.dim(0), vocab_);  // (B * Tp, V), one product as in the forward pass
    ops::linear_forward<T>(View<T, 2>(all), head_in, params_.head_w.value,
                           params_.head_b.value);
    return real_rows(View<const T, 2>(all), ws_.B, ws_.tokens);
  }

  /// Gradient checkpointing: when on, forward() keeps only each hierarchical attention's input
  /// and output, and backward() recomputes the hierarchy's activations level by level before its
  /// backward pass (model::HierCheckpointNode); the feed-forward's hidden layer and the head's
  /// (B T, V) logits are not kept either but recomputed (the logits chunk by chunk, see
  /// ops::linear_cross_entropy). Gradients, loss and logits are bitwise the same either way.
  /// Memory drops by the logits, the hidden layers and nearly all of the hierarchies'
  /// activations; time rises by about one forward pass of the model (the tree levels below the
  /// top of each hierarchy are computed twice).
  void set_checkpointing(bool on) { checkpointing_ = on; }
  /// Whether gradient checkpointing is on.
  bool checkpointing() const { return checkpointing_; }

  /// Bytes of a training workspace: activation values and their gradients.
  struct WorkspaceBytes {
    std::size_t values = 0;     ///< activations kept for backward, relays, spans, recompute region
    std::size_t gradients = 0;  ///< activation gradients (not the parameters')
  };
  /// The training workspace reserved so far (by the largest forward() shape, with checkpointing
  /// as it was then; zero before the first forward()). Parameters, their gradients and optimizer
  /// state are not included.
  WorkspaceBytes workspace_bytes() const {
    return {std::size_t(ws_.values.capacity()) * sizeof(T), std::size_t(ws_.grads.capacity()) * sizeof(T)};
  }

  /// Dropout masks depend on (seed, step); forward() advances the step. Set it to resume exactly.
  void set_step(std::uint64_t step) { step_ = step; }
  /// The step the next forward() uses for its dropout masks.
  std::uint64_t step() const { return step_; }

  /// Inference: softmax probabilities (B, T, V) for (B, T) `ids`, no dropout, no tape. Const and
  /// safe to call concurrently: each call borrows its own activation arena from a pool that keeps
  /// them for later calls (memory grows to the largest shape times the peak concurrency).
  /// Throws hattn::Error for the invalid inputs forward() rejects.
  Tensor<T, 3> predict(View<const std::int32_t, 2> ids) const {
    validate_ids(ids, "Decoder::predict");
    Tensor<T, 3> probs = new_result(ids);
    head_into(ids, View<T, 3>(probs));
    softmax_in_place(View<T, 3>(probs));
    return probs;
  }

  /// As predict(ids), into the caller's (B, T, V) `out`: repeated inference into one buffer
  /// allocates nothing and touches no fresh pages (for a large vocabulary, the kernel zeroing a
  /// new result's pages is a fifth of a call). Throws hattn::Error, before writing anything, for
  /// what predict(ids) rejects and for an `out` of another shape.
  void predict(View<const std::int32_t, 2> ids, View<T, 3> out) const {
    logits(ids, out);
    softmax_in_place(out);
  }

  /// Inference logits (B, T, V), as predict() but before the softmax.
  Tensor<T, 3> logits(View<const std::int32_t, 2> ids) const {
    validate_ids(ids, "Decoder::predict");
    Tensor<T, 3> result = new_result(ids);
    head_into(ids, View<T, 3>(result));
    return result;
  }

  /// As logits(ids), into the caller's (B, T, V) `out` (see predict(ids, out)).
  void logits(View<const std::int32_t, 2> ids, View<T, 3> out) const {
    validate_ids(ids, "Decoder::predict");
    const Index B = ids.dim(0), T_ = ids.dim(1);
    detail::require(out.dim(0) == B && out.dim(1) == T_ && out.dim(2) == vocab_, "Decoder::predict",
                    "output ", out.shape(), " does not match (B, T, V) = (", B, ", ", T_, ", ", vocab_, ")");
    head_into(ids, out);
  }

  /// Inference logits (B, V) of the token after each sequence: the head runs on the last real row
  /// only (what generation needs). Throws as predict().
  Tensor<T, 2> next_token_logits(View<const std::int32_t, 2> ids) const {
    validate_ids(ids, "Decoder::next_token_logits");
    const Index B = ids.dim(0), T_ = ids.dim(1), Tp = padded_length(T_);
    const ArenaLease lease(*this);
    Acts acts = make_acts(B, T_, *lease, nullptr, 0);
    const Var<T, 2> rows = hidden(acts, ids, model::ForwardContext{nullptr, false, seed_, 0, C.heads});
    Tensor<T, 2> last(B, C.d_model), out(B, vocab_);
    for (Index b = 0; b < B; ++b)
      std::copy(rows.value.data + (b * Tp + T_ - 1) * C.d_model, rows.value.data + (b * Tp + T_) * C.d_model,
                last.data() + b * C.d_model);
    ops::linear_forward<T>(View<T, 2>(out), View<const T, 2>(last), params_.head_w.value, params_.head_b.value);
    return out;
  }

  /// Head-averaged attention maps of sequence 0 of `ids` (inference): for every block and each of
  /// its two hierarchical attentions, the leaf map and one map per tree level, each (T, T).
  std::vector<AttentionMap<T>> attention_maps(View<const std::int32_t, 2> ids) const {
    validate_ids(ids, "Decoder::attention_maps");
    const Index B = ids.dim(0), T_ = ids.dim(1);
    const ArenaLease lease(*this);
    Acts acts = make_acts(B, T_, *lease, nullptr, 0);
    hidden(acts, ids, model::ForwardContext{nullptr, false, seed_, 0, C.heads});
    std::vector<AttentionMap<T>> maps;
    for (int b = 0; b < Blocks; ++b) {
      const std::string prefix = Blocks == 1 ? "decoder_block" : "decoder_blocks." + std::to_string(b);
      for (int h = 0; h < 2; ++h) {
        auto m = model::hier_attention_maps<T, L>(h == 0 ? acts.blocks[b].ha1 : acts.blocks[b].ha2,
                                                  prefix + ".hier_attn" + std::to_string(h + 1), T_,
                                                  padded_length(T_), C.heads, C.node_mask);
        for (auto& x : m) maps.push_back(std::move(x));
      }
    }
    return maps;
  }

  /// Rows per sequence inside the blocks: T rounded up to a multiple of 2^levels.
  static constexpr Index padded_length(Index tokens) {
    constexpr Index chunks = Index{1} << L;
    return (tokens + chunks - 1) / chunks * chunks;
  }

 private:
  /// Every parameter's view.
  struct Params {
    Var<T, 2> tok;                                    ///< (V, d) token embedding
    View<T, 2> pos;                                   ///< (S, d) fixed sinusoid table
    std::array<model::BlockParams<T, L>, Blocks> blocks;
    Var<T, 2> head_w;                                 ///< (V, d)
    Var<T, 1> head_b;                                 ///< (V)
  };

  /// Every activation of a (B, T) forward pass; inside the blocks every sequence is padded to
  /// Tp = padded_length(T) rows (see block_forward).
  struct Acts {
    Var<T, 3> emb;                                    ///< (B, T, d) embedding (dropout in place)
    View<T, 3> emb_dropped_grad;                      ///< (B, T, d)
    Var<T, 3> padded;                                 ///< (B, Tp, d) zero rows appended; if Tp > T
    std::array<model::BlockActs<T, L>, Blocks> blocks;
    View<T, 2> logits;                                ///< (B * Tp, V), or (R, V) chunk scratch; then their gradient
    View<T, 1> lse;                                   ///< (B * Tp) log-sum-exp of each logit row
    Var<T, 1> loss;                                   ///< (1)
  };

  /// An inference arena borrowed from the model's pool for one call and returned after it, so
  /// repeated predict() calls reuse memory (an arena only grows) while concurrent calls each hold
  /// their own.
  class ArenaLease {
   public:
    explicit ArenaLease(const Decoder& model) : model_(model) {
      std::lock_guard<std::mutex> lock(model_.pool_mutex_);
      if (model_.pool_.empty()) {
        arena_ = std::make_unique<Arena<T>>();
      } else {
        arena_ = std::move(model_.pool_.back());
        model_.pool_.pop_back();
      }
    }
    ~ArenaLease() {
      std::lock_guard<std::mutex> lock(model_.pool_mutex_);
      model_.pool_.push_back(std::move(arena_));
    }
    ArenaLease(const ArenaLease&) = delete;
    ArenaLease& operator=(const ArenaLease&) = delete;
    Arena<T>& operator*() const { return *arena_; }

   private:
    const Decoder& model_;
    std::unique_ptr<Arena<T>> arena_;
  };

  /// Training memory for one (B, T) shape, reused while the shape stays.
  struct Workspace {
    Index B = 0, tokens = 0;  // the shape it is laid out for
    bool checkpointing = false;  // and whether the hierarchies' values and the logits are recomputed
    Arena<T> values, grads;
    Index permanent_grads = 0;  // leading elements of grads zeroed at the start of a step
    Acts acts;
    std::vector<std::int32_t> ids;      // (B * T) copy the tape refers to
    std::vector<std::int32_t> targets;  // (B * Tp) copy, -100 on padding rows
    Tape tape;
    Tape recompute;  // a checkpointed hierarchy's recomputation
  };

  Params build(ParameterBuilder<T>& pb) {
    constexpr Index d = C.d_model;
    Params p;
    p.tok = pb.take(vocab_, d);
    p.pos = pb.take_fixed(seq_, d);
    if (p.tok.value.present()) {
      pb.name("pos_encoding.word_embedding_layer.weight", {vocab_, d}, p.tok.value.data, p.tok.grad.data,
              Init::normal);
      pb.name("pos_encoding.position_embedding_layer.weight", {seq_, d}, p.pos.data, nullptr,
              Init::sinusoid);
    }
    for (int b = 0; b < Blocks; ++b) {
      const std::string prefix = Blocks == 1 ? "decoder_block" : "decoder_blocks." + std::to_string(b);
      p.blocks[b] = model::make_block<T, L>(pb, prefix, d);
    }
    std::tie(p.head_w, p.head_b) = model::make_linear(pb, "linear", vocab_, d);
    return p;
  }

  /// Rows per chunk of the fused head and loss (ops::linear_cross_entropy_chunk).
  Index logit_chunk() const { return ops::linear_cross_entropy_chunk(vocab_); }

  /// `logit_rows`: rows of the logits buffer (B * Tp to keep them, one chunk to recompute them, 0
  /// for inference).
  Acts layout(model::ActivationBuilder<T>& ab, Index B, Index T_, Index logit_rows, bool checkpoint) const {
    constexpr Index d = C.d_model;
    const Index Tp = padded_length(T_);
    Acts a;
    a.emb = ab.take(B, T_, d);
    a.emb_dropped_grad = ab.take_grad(B, T_, d);
    if (Tp != T_) a.padded = ab.take(B, Tp, d);
    for (int b = 0; b < Blocks; ++b)
      a.blocks[b] = model::make_block_acts<T, L>(ab, B, Tp, d, C.heads, checkpoint);
    if (logit_rows > 0) {
      // The cross-entropy backward replaces the logits by their gradient: one (rows, V) buffer.
      // Checkpointed, it is a chunk recomputed in the head's backward, before any hierarchy is
      // recomputed: it shares the recompute region with their values.
      ab.set_recompute(checkpoint);
      a.logits = ab.stat(logit_rows, vocab_);
      ab.set_recompute(false);
      a.lse = ab.stat(B * Tp);
    }
    a.loss = ab.take(1);
    return a;
  }

  /// Sizes `values` (and `grads`, in training) for a (B, T) pass and lays the activations out;
  /// `permanent_grads`, if given, receives the size of the gradients zeroed at each step.
  Acts make_acts(Index B, Index T_, Arena<T>& values, Arena<T>* grads, Index logit_rows,
                 bool checkpoint = false, Index* permanent_grads = nullptr) const {
    model::ActivationBuilder<T> sizing(grads != nullptr);
    layout(sizing, B, T_, logit_rows, checkpoint);
    if (permanent_grads) *permanent_grads = sizing.permanent_grads();
    model::ActivationBuilder<T> ab(sizing, values, grads);
    return layout(ab, B, T_, logit_rows, checkpoint);
  }

  Workspace& workspace(Index B, Index T_) {
    if (ws_.B != B || ws_.tokens != T_ || ws_.checkpointing != checkpointing_) {
      const Index rows = B * padded_length(T_);
      ws_.acts = make_acts(B, T_, ws_.values, &ws_.grads, checkpointing_ ? std::min(rows, logit_chunk()) : rows,
                           checkpointing_, &ws_.permanent_grads);
      ws_.checkpointing = checkpointing_;
      ws_.ids.assign(std::size_t(B * T_), 0);
      ws_.targets.assign(std::size_t(B * padded_length(T_)), ignore_index);
      ws_.B = B;
      ws_.tokens = T_;
    }
    return ws_;
  }

  /// Embedding, padding and blocks; returns the last block's output (B * Tp, d).
  Var<T, 2> hidden(Acts& a, View<const std::int32_t, 2> ids, const model::ForwardContext& ctx) const {
    Tape* tape = ctx.tape;
    ops::embedding<T>(tape, a.emb, ids, params_.tok, params_.pos);
    Var<T, 3> x = model::maybe_dropout(ctx, a.emb, a.emb_dropped_grad, 0);
    if (a.padded.value.present()) {
      ops::pad_rows<T>(tape, a.padded, x);
      x = a.padded;
    }
    const Index Tp = x.value.dim(1);
    Var<T, 2> rows = model::matrix(x);  // (B * Tp, d)
    for (int b = 0; b < Blocks; ++b)
      rows = model::block_forward<T, L, C.node_mask>(params_.blocks[b], a.blocks[b], rows, Tp, ctx,
                                                     1 + std::uint64_t(b) * 2 * (L + 1));
    return rows;
  }

  /// The logits of valid (B, T) `ids` into (B, T, V) `out`, checked by the caller.
  void head_into(View<const std::int32_t, 2> ids, View<T, 3> out) const {
    const Index B = ids.dim(0), T_ = ids.dim(1), Tp = padded_length(T_);
    const ArenaLease lease(*this);
    Acts acts = make_acts(B, T_, *lease, nullptr, 0);
    const Var<T, 2> rows = hidden(acts, ids, model::ForwardContext{nullptr, false, seed_, 0, C.heads});
    // The head writes each sequence's real rows straight into the result: no (B*Tp, V) buffer, no
    // copy. One product per sequence, so a row's bits depend on its position t only (as in
    // training, where every sequence starts at a multiple of Tp).
    for (Index b = 0; b < B; ++b)
      ops::linear_forward<T>(View<T, 2>(out.data + b * T_ * vocab_, T_, vocab_),
                             View<const T, 2>(rows.value.data + b * Tp * C.d_model, T_, C.d_model),
                             params_.head_w.value, params_.head_b.value);
  }

  /// Softmax over the last dimension of (B, T, V) `probs`, in place.
  static void softmax_in_place(View<T, 3> probs) {
    const View<T, 2> m = probs.matrix();
    ops::softmax_forward<T>(m, View<const T, 2>(m));
  }

  /// An uninitialized (B, T, V) result for valid (B, T) `ids`, its pages advised as huge before
  /// the first touch.
  Tensor<T, 3> new_result(View<const std::int32_t, 2> ids) const {
    Tensor<T, 3> result(ids.dim(0), ids.dim(1), vocab_);
    advise_huge_pages(result.data(), std::size_t(result.size()) * sizeof(T));
    return result;
  }

  /// The real rows of (B * Tp, V) logits as a (B, T, V) tensor.
  Tensor<T, 3> real_rows(View<const T, 2> logits, Index B, Index T_) const {
    const Index Tp = padded_length(T_);
    Tensor<T, 3> out(B, T_, vocab_);
    for (Index b = 0; b < B; ++b)
      std::copy(logits.data + b * Tp * vocab_, logits.data + (b * Tp + T_) * vocab_,
                out.data() + b * T_ * vocab_);
    return out;
  }

  void validate_ids(View<const std::int32_t, 2> ids, const char* op) const {
    detail::require(ids.dim(0) >= 1, op, "empty batch: ids ", ids.shape());
    detail::require(ids.dim(1) >= 1, op, "empty sequence: ids ", ids.shape(), " has T = 0 tokens");
    detail::require(ids.dim(1) <= seq_, op, "sequence of ", ids.dim(1),
                    " tokens exceeds sequence_length = ", seq_);
    for (Index b = 0; b < ids.dim(0); ++b)
      for (Index t = 0; t < ids.dim(1); ++t) {
        const std::int32_t id = ids(b, t);
        detail::require(id >= 0 && id < vocab_, op, "token id ", id, " at (", b, ", ", t,
                        ") is outside the vocabulary [0, ", vocab_, ")");
      }
  }

  void validate_targets(View<const std::int32_t, 2> targets) const {
    bool any = false;
    for (Index b = 0; b < targets.dim(0); ++b)
      for (Index t = 0; t < targets.dim(1); ++t) {
        const std::int32_t y = targets(b, t);
        detail::require((y >= 0 && y < vocab_) || y == ignore_index, "Decoder::forward", "target ", y,
                        " at (", b, ", ", t, ") is outside [0, ", vocab_, ") and is not -100");
        any = any || y != ignore_index;
      }
    detail::require(any, "Decoder::forward", "every target is -100: there is nothing to learn from");
  }

  Index vocab_, seq_;
  std::uint64_t seed_;
  std::uint64_t step_ = 0;
  bool logits_consumed_ = false;  // backward() has run since the last forward
  bool checkpointing_ = false;    // set_checkpointing
  Arena<T> values_, grads_;                // parameters and their gradients
  std::vector<Parameter<T>> registry_;     // names and views into values_ / grads_
  Params params_;
  Workspace ws_;
  mutable std::mutex pool_mutex_;                     // guards pool_
  mutable std::vector<std::unique_ptr<Arena<T>>> pool_;  // idle inference arenas
};

}  // namespace hattn::frozen
