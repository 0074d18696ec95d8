#pragma once
/// \file
/// ListOps, the Long Range Arena's test of hierarchical structure: nested expressions such as
/// `[MAX 2 9 [MIN 4 7 ] 0 ]` over the digits 0-9 with the operators MIN, MAX, MED (the median,
/// rounded down) and SM (the sum modulo 10), whose value is one of ten classes. Generated as LRA's
/// generator does (listops.py: an operator node with probability 0.25 below the maximum depth,
/// 2 to max_args arguments, lengths kept strictly between min_length and max_length), from a
/// seeded counter-based generator, and framed for a decoder: the expression, an answer marker,
/// and the answer as the only target.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::data {

/// The fixed ListOps vocabulary: the digits are their own ids.
enum ListOpsToken : std::int32_t {
  listops_min = 10,     ///< `[MIN`
  listops_max = 11,     ///< `[MAX`
  listops_med = 12,     ///< `[MED`: the median, rounded down (LRA: int(np.median(args)))
  listops_sm = 13,      ///< `[SM`: the sum modulo 10
  listops_end = 14,     ///< `]`
  listops_answer = 15,  ///< `=`: the position whose next token is the answer
  listops_pad = 16,     ///< after the answer marker, to a batch's length
};
/// Tokens of the ListOps vocabulary.
inline constexpr std::int32_t listops_vocab = 17;

/// The generator's parameters: LRA's by default (listops.py's flags).
struct ListOpsOptions {
  int max_depth = 10;       ///< nodes at this depth are digits (the root is at depth 1)
  int max_args = 10;        ///< arguments per operator, at least 2
  Index min_length = 500;   ///< an expression has more tokens than this ...
  Index max_length = 2000;  ///< ... and fewer than this
  double operator_p = 0.25; ///< chance that a node above the maximum depth is an operator

  /// LRA's options with the lengths scaled to a model of `sequence_length` tokens: an expression
  /// plus its answer marker fits (max_length = sequence_length, exclusive), and LRA's ratio of
  /// 500 to 2000 sets the minimum (a quarter of it).
  static ListOpsOptions for_sequence(Index sequence_length) {
    ListOpsOptions o;
    o.max_length = sequence_length;
    o.min_length = sequence_length / 4;
    return o;
  }
};

/// One ListOps expression and its value.
struct ListOpsExample {
  std::vector<std::int32_t> tokens;  ///< the expression, ListOpsToken ids
  int answer = 0;                    ///< its value, 0-9
};

/// The value of a ListOps expression given as tokens, computed with a stack (independent of how
/// the generator builds trees). Throws hattn::Error `evaluate_listops: <problem> at token <i>`
/// for a token outside the vocabulary or not allowed there, an operator with no argument, an
/// unclosed operator or trailing tokens.
inline int evaluate_listops(std::span<const std::int32_t> tokens) {
  struct Frame {
    std::int32_t op;
    std::vector<int> args;
  };
  std::vector<Frame> stack;
  int result = -1;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::int32_t t = tokens[i];
    hattn::detail::require(result < 0, "evaluate_listops", "trailing token ", t, " at token ", i, " after a whole expression");
    if (t >= 0 && t <= 9) {
      if (stack.empty()) result = t;
      else stack.back().args.push_back(t);
    } else if (t >= listops_min && t <= listops_sm) {
      stack.push_back({t, {}});
    } else if (t == listops_end) {
      hattn::detail::require(!stack.empty(), "evaluate_listops", "']' closes no operator at token ", i);
      Frame f = std::move(stack.back());
      stack.pop_back();
      hattn::detail::require(!f.args.empty(), "evaluate_listops", "operator without arguments at token ", i);
      std::sort(f.args.begin(), f.args.end());
      int v = 0;
      switch (f.op) {
        case listops_min: v = f.args.front(); break;
        case listops_max: v = f.args.back(); break;
        case listops_med: {
          const std::size_t n = f.args.size();
          v = n % 2 ? f.args[n / 2] : (f.args[n / 2 - 1] + f.args[n / 2]) / 2;  // floor of the median
          break;
        }
        default:
          for (int a : f.args) v += a;
          v %= 10;
      }
      if (stack.empty()) result = v;
      else stack.back().args.push_back(v);
    } else {
      throw Error(hattn::detail::concat("evaluate_listops: token ", t, " is not part of an expression at token ", i));
    }
  }
  hattn::detail::require(stack.empty() && result >= 0, "evaluate_listops",
                  tokens.empty() ? "empty expression" : "unclosed operator at the end");
  return result;
}

/// The text of a ListOps expression, e.g. `[MAX 2 9 [MIN 4 7 ] 0 ]` (the answer marker is `=`,
/// padding `_`).
inline std::string listops_text(std::span<const std::int32_t> tokens) {
  std::string s;
  for (std::int32_t t : tokens) {
    if (!s.empty()) s += ' ';
    if (t >= 0 && t <= 9) s += char('0' + t);
    else if (t == listops_min) s += "[MIN";
    else if (t == listops_max) s += "[MAX";
    else if (t == listops_med) s += "[MED";
    else if (t == listops_sm) s += "[SM";
    else if (t == listops_end) s += ']';
    else if (t == listops_answer) s += '=';
    else if (t == listops_pad) s += '_';
    else s += '?';
  }
  return s;
}

/// Seeded ListOps expressions: the same seed and stream give the same sequence of examples.
class ListOpsGenerator {
 public:
  /// Throws hattn::Error for options no expression can meet: max_depth < 1, max_args < 2,
  /// min_length < 0, max_length <= min_length + 1, operator_p outside (0, 1) (at 0 or 1 no
  /// expression of a length between the bounds may ever come).
  ListOpsGenerator(ListOpsOptions options, std::uint64_t seed, std::uint64_t stream = 0)
      : o_(options), gen_(seed, stream) {
    const char* op = "ListOpsGenerator";
    hattn::detail::require(o_.max_depth >= 1, op, "max_depth must be >= 1, got ", o_.max_depth);
    hattn::detail::require(o_.max_args >= 2, op, "max_args must be >= 2, got ", o_.max_args);
    hattn::detail::require(o_.min_length >= 0, op, "min_length must be >= 0, got ", o_.min_length);
    hattn::detail::require(o_.max_length > o_.min_length + 1, op, "no length lies strictly between min_length ",
                    o_.min_length, " and max_length ", o_.max_length);
    hattn::detail::require(o_.operator_p > 0 && o_.operator_p < 1, op, "operator_p must be in (0, 1), got ", o_.operator_p);
  }

  /// The next expression with a length strictly between the bounds (LRA's rejection sampling).
  /// Throws hattn::Error after a million rejected draws in a row: the bounds are out of reach of
  /// max_depth and max_args.
  ListOpsExample next() {
    for (int attempt = 0; attempt < 1000000; ++attempt) {
      ListOpsExample e;
      tree(1, e.tokens);
      const Index n = Index(e.tokens.size());
      if (n > o_.min_length && n < o_.max_length) {
        e.answer = evaluate_listops(e.tokens);
        return e;
      }
    }
    throw Error(hattn::detail::concat("ListOpsGenerator: no expression with between ", o_.min_length + 1, " and ",
                               o_.max_length - 1, " tokens in a million draws (max_depth ", o_.max_depth,
                               ", max_args ", o_.max_args, ")"));
  }

  /// The options in use.
  const ListOpsOptions& options() const { return o_; }

 private:
  // Appends one node at `depth`; stops growing once the expression is already too long, since it
  // would be rejected anyway (that changes no accepted expression, only saves work).
  void tree(int depth, std::vector<std::int32_t>& out) {
    if (Index(out.size()) >= o_.max_length) {
      out.push_back(0);
      return;
    }
    const bool op = depth < o_.max_depth && gen_.uniform() < o_.operator_p;
    if (!op) {
      out.push_back(std::int32_t(gen_.below(10)));
      return;
    }
    const int args = 2 + int(gen_.below(std::uint64_t(o_.max_args - 1)));
    out.push_back(listops_min + std::int32_t(gen_.below(4)));
    for (int a = 0; a < args; ++a) tree(depth + 1, out);
    out.push_back(listops_end);
  }

  ListOpsOptions o_;
  Generator gen_;
};

/// A batch framed for a decoder: row b is example b's expression, the answer marker, then padding
/// to the longest row; its only target is the answer digit at the marker (-100 elsewhere), so
/// the loss is the answer's cross-entropy.
struct ListOpsBatch {
  Tensor<std::int32_t, 2> ids;      ///< (B, T)
  Tensor<std::int32_t, 2> targets;  ///< (B, T)
  std::vector<Index> answer_at;     ///< (B) the marker's position in each row
};

/// Fills row `b` of (B, T) `ids` and `targets` with `e`: the expression, the answer marker, padding;
/// the answer as the only target (-100 elsewhere).
inline void fill_listops_row(View<std::int32_t, 2> ids, View<std::int32_t, 2> targets, Index b, const ListOpsExample& e) {
  const Index T = ids.dim(1), n = Index(e.tokens.size());
  hattn::detail::require(n + 1 <= T, "fill_listops_row", "an expression of ", n, " tokens and its answer marker do not fit in ",
                  T, " tokens");
  for (Index t = 0; t < T; ++t) {
    ids(b, t) = t < n ? e.tokens[std::size_t(t)] : t == n ? listops_answer : listops_pad;
    targets(b, t) = t == n ? e.answer : -100;
  }
}

/// Frames `examples` (non-empty) as one batch.
inline ListOpsBatch frame_listops(std::span<const ListOpsExample> examples) {
  hattn::detail::require(!examples.empty(), "frame_listops", "no examples");
  Index T = 0;
  for (const auto& e : examples) T = std::max(T, Index(e.tokens.size()) + 1);
  const Index B = Index(examples.size());
  ListOpsBatch batch{Tensor<std::int32_t, 2>(B, T), Tensor<std::int32_t, 2>(B, T), {}};
  for (Index b = 0; b < B; ++b) {
    fill_listops_row(batch.ids, batch.targets, b, examples[std::size_t(b)]);
    batch.answer_at.push_back(Index(examples[std::size_t(b)].tokens.size()));
  }
  return batch;
}

/// ListOps as a data source for hattn::Trainer (its data concept): every training row a new
/// expression, drawn from the trainer's generator (so a resumed run draws the same ones), framed
/// in rows of sequence_length tokens; a held-out set generated once from its own seed and stream,
/// disjoint in its randomness from every training draw (those use stream 0 of seeds from the
/// trainer's generator, the held-out set stream 1).
class ListOpsTask {
 public:
  /// Throws hattn::Error `ListOpsTask: ...` for sequence_length < 2, expressions that may not fit
  /// (options.max_length > sequence_length) or validation_examples < 0, and the generator's errors.
  ListOpsTask(ListOpsOptions options, Index sequence_length, Index validation_examples = 2000,
              std::uint64_t validation_seed = 1)
      : options_(options), seq_(sequence_length) {
    hattn::detail::require(sequence_length >= 2, "ListOpsTask", "sequence_length must be >= 2, got ", sequence_length);
    hattn::detail::require(options.max_length <= sequence_length, "ListOpsTask", "expressions of up to ",
                    options.max_length - 1, " tokens and their answer marker do not fit in sequence_length ",
                    sequence_length);
    hattn::detail::require(validation_examples >= 0, "ListOpsTask", "validation_examples must be >= 0, got ",
                    validation_examples);
    ListOpsGenerator held_out(options, validation_seed, /*stream=*/1);
    for (Index i = 0; i < validation_examples; ++i) validation_.push_back(held_out.next());
  }

  /// Tokens per row.
  Index sequence_length() const { return seq_; }
  /// Held-out examples (one row each).
  Index validation_windows() const { return Index(validation_.size()); }
  /// The ListOps vocabulary: ids 0 .. listops_pad.
  std::pair<std::int32_t, std::int32_t> token_range() const { return {0, listops_pad}; }
  /// The held-out examples.
  const std::vector<ListOpsExample>& validation() const { return validation_; }
  /// The generator's options.
  const ListOpsOptions& options() const { return options_; }

  /// Fills (B, T) `inputs` and `targets` with B new expressions, row b from a generator seeded
  /// with the b-th rng.next_u64().
  void train_batch(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, Generator& rng) const {
    check(inputs, targets, "ListOpsTask::train_batch");
    for (Index b = 0; b < inputs.dim(0); ++b) {
      ListOpsGenerator g(options_, rng.next_u64());
      fill_listops_row(inputs, targets, b, g.next());
    }
  }

  /// Fills (B, T) `inputs` and `targets` with held-out examples (index B + b) mod
  /// validation_windows(), for b in [0, B).
  void validation_batch(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, Index index) const {
    constexpr const char* op = "ListOpsTask::validation_batch";
    check(inputs, targets, op);
    hattn::detail::require(!validation_.empty(), op, "there are no held-out examples");
    hattn::detail::require(index >= 0, op, "batch index must be >= 0, got ", index);
    const Index B = inputs.dim(0), n = Index(validation_.size());
    for (Index b = 0; b < B; ++b) fill_listops_row(inputs, targets, b, validation_[std::size_t((index * B + b) % n)]);
  }

 private:
  void check(View<std::int32_t, 2> inputs, View<std::int32_t, 2> targets, const char* op) const {
    hattn::detail::require(inputs.dim(0) >= 1 && inputs.dim(1) == seq_ && targets.dims == inputs.dims, op, "want (B, ", seq_,
                    ") inputs and targets with B >= 1, got ", inputs.shape(), " and ", targets.shape());
  }

  ListOpsOptions options_;
  Index seq_;
  std::vector<ListOpsExample> validation_;
};

/// What a model makes of ListOps examples: the digit it ranks first among the ten at each
/// answer marker, and the mean cross-entropy of the true answer over the whole vocabulary there.
struct ListOpsScore {
  std::vector<int> predicted;  ///< (n)
  double loss = 0;             ///< nats per example
};

/// Scores `examples` (non-empty) with `model` (a hattn::Decoder) in one inference pass, reading
/// each example as training frames it: in a row of model.sequence_length() tokens, padded after
/// the marker (no dropout; for a causal model the padding changes nothing before it). Runs
/// `batch` rows per forward pass. Throws hattn::Error for an example that does not fit and for
/// batch < 1.
template <class Model>
ListOpsScore listops_score(const Model& model, std::span<const ListOpsExample> examples, Index batch = 16) {
  hattn::detail::require(!examples.empty(), "listops_predict", "no examples");
  hattn::detail::require(batch >= 1, "listops_predict", "batch must be >= 1, got ", batch);
  const Index S = model.sequence_length(), n = Index(examples.size());
  ListOpsScore score;
  double nats = 0;
  for (Index first = 0; first < n; first += batch) {
    const Index B = std::min(batch, n - first);
    Tensor<std::int32_t, 2> ids(B, S), targets(B, S);  // (B, S) each
    for (Index b = 0; b < B; ++b) fill_listops_row(ids, targets, b, examples[std::size_t(first + b)]);
    const auto logits = model.logits(ids);  // (B, S, V)
    const Index V = logits.dimension(2);
    for (Index b = 0; b < B; ++b) {
      const ListOpsExample& e = examples[std::size_t(first + b)];
      const Index at = Index(e.tokens.size());
      int best = 0;
      for (int d = 1; d < 10; ++d)
        if (logits(b, at, d) > logits(b, at, best)) best = d;
      score.predicted.push_back(best);
      double top = double(logits(b, at, 0)), sum = 0;
      for (Index v = 1; v < V; ++v) top = std::max(top, double(logits(b, at, v)));
      for (Index v = 0; v < V; ++v) sum += std::exp(double(logits(b, at, v)) - top);
      nats += top + std::log(sum) - double(logits(b, at, e.answer));
    }
  }
  score.loss = nats / double(n);
  return score;
}

/// The digit `model` ranks first at each example's answer marker (listops_score's predictions).
template <class Model>
std::vector<int> listops_predict(const Model& model, std::span<const ListOpsExample> examples, Index batch = 16) {
  return listops_score(model, examples, batch).predicted;
}

/// The fraction of `examples` (non-empty) whose answer listops_predict(model, examples, batch)
/// gets right. Throws as listops_predict.
template <class Model>
double listops_accuracy(const Model& model, std::span<const ListOpsExample> examples, Index batch = 16) {
  const std::vector<int> predicted = listops_predict(model, examples, batch);
  Index right = 0;
  for (std::size_t i = 0; i < examples.size(); ++i) right += predicted[i] == examples[i].answer;
  return double(right) / double(examples.size());
}

/// The fraction of `examples` (non-empty) whose answer is the most common answer among them: the
/// accuracy of always guessing that class, the floor a model must beat.
inline double listops_majority(std::span<const ListOpsExample> examples) {
  hattn::detail::require(!examples.empty(), "listops_majority", "no examples");
  std::array<Index, 10> count{};
  for (const ListOpsExample& e : examples) ++count[std::size_t(e.answer)];
  return double(*std::max_element(count.begin(), count.end())) / double(examples.size());
}

}  // namespace hattn::data
