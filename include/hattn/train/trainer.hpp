#pragma once
/// \file
/// A training loop for research code: batches from a data source (a data::Dataset of text windows,
/// or a generated task such as data::ListOpsTask), gradient accumulation over
/// micro-batches, global-norm clipping, AdamW under a warmup + cosine schedule, periodic validation,
/// callbacks, a stop on a non-finite loss, and an explicit state that resumes bit-exactly.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/rng.hpp"
#include "hattn/core/split.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/data/dataset.hpp"
#include "hattn/model/parameters.hpp"
#include "hattn/ops/cross_entropy.hpp"
#include "hattn/train/adamw.hpp"
#include "hattn/train/clip.hpp"
#include "hattn/train/schedule.hpp"

namespace hattn {

/// The number of `targets` entries that count in the mean cross-entropy (those other than -100).
inline Index count_targets(View<const std::int32_t, 2> targets) {
  Index n = 0;
  for (Index i = 0; i < targets.size(); ++i) n += targets.data[i] != ops::ignore_index;
  return n;
}

/// What Trainer does. Defaults: the schedule decays over `steps` from `lr` to `min_lr`.
struct TrainOptions {
  std::int64_t steps = 1000;      ///< optimizer steps in all (the schedule's total_steps)
  Index batch = 8;                ///< sequences per optimizer step
  Index micro_batches = 1;        ///< forward/backward passes per step, 1 to batch (need not divide it)
  double lr = 3e-4;               ///< peak learning rate (WarmupCosine::peak_lr)
  double min_lr = 0;              ///< learning rate at the end (WarmupCosine::min_lr)
  std::int64_t warmup_steps = 0;  ///< linear warmup (WarmupCosine::warmup_steps)
  double beta1 = 0.9;             ///< AdamW first-moment decay
  double beta2 = 0.999;           ///< AdamW second-moment decay
  double eps = 1e-8;              ///< AdamW epsilon
  double weight_decay = 0.1;      ///< AdamW decay of the selected tensors (default_weight_decay)
  double clip = 1.0;              ///< max global gradient norm; <= 0 disables clipping
  bool dropout = true;            ///< dropout in training forwards
  std::int64_t eval_every = 0;    ///< validate after every this many steps; 0 never
  Index eval_batches = 4;         ///< validation batches (of `batch` sequences) per evaluation
  std::uint64_t seed = 0;         ///< key of the batch sampling Generator
};

/// Reported after every applied step.
struct StepInfo {
  std::int64_t step = 0;  ///< 0-based index of the step just applied (its lr is schedule.lr(step))
  double loss = 0;        ///< mean cross-entropy of the whole batch, before the update
  double lr = 0;          ///< learning rate of the step
  double grad_norm = 0;   ///< global gradient norm before clipping
  Index tokens = 0;       ///< input tokens of the batch (B * T)
  Index targets = 0;      ///< targets the loss counts (not -100)
  double seconds = 0;     ///< wall time of the step
};

/// Reported after every evaluation.
struct EvalInfo {
  std::int64_t step = 0;  ///< steps completed when evaluated
  double loss = 0;        ///< mean cross-entropy over all counted validation targets
  Index targets = 0;      ///< counted validation targets
  double seconds = 0;     ///< wall time of the evaluation
};

/// How run() ended.
enum class TrainStatus {
  completed,            ///< reached TrainOptions::steps (or the requested number of steps)
  non_finite_loss,      ///< a micro-batch's loss was NaN or infinite; that step was not applied
  non_finite_gradient,  ///< the gradient norm was NaN or infinite; that step was not applied
};

/// What run() did.
struct TrainResult {
  TrainStatus status = TrainStatus::completed;  ///< how it ended
  std::int64_t steps = 0;        ///< steps completed in all (the state's step) when it returned
  std::int64_t failed_step = -1; ///< 0-based index of the step that was not applied, or -1
  double loss = 0;               ///< loss of the last applied step (NaN if none in this run)
  std::string message;           ///< what happened, for a log ("" when completed)
};

/// Everything that makes the next steps of a Trainer what they would have been without a pause,
/// apart from the model's weights (save those with the model) and the TrainOptions (keep them).
template <class T>
struct TrainState {
  std::int64_t step = 0;               ///< optimizer steps completed (also AdamW's step count)
  std::uint64_t model_step = 0;        ///< Decoder::step(): key of the next forward's dropout masks
  std::uint64_t data_seed = 0;         ///< the batch Generator's seed
  std::uint64_t data_stream = 0;       ///< ... its stream
  std::uint64_t data_position = 0;     ///< ... and its position
  std::vector<T> first_moment;         ///< AdamW first moments, flat, trainable tensors in registry order
  std::vector<T> second_moment;        ///< AdamW second moments, same layout
};

/// The training loop. One step: draw `batch` windows from the training split (one Generator draw
/// each, in row order); for each of the `micro_batches` consecutive groups of rows (as even as
/// they go, the first batch % micro_batches groups one row larger: 8 rows in 3 are 3, 3, 2): forward
/// (dropout per options) and backward scaled by its share of the counted targets, into zeroed
/// gradients, then added element by element to the sum of the earlier micro-batches' gradients,
/// in micro-batch order, so the gradients add up to the whole batch's (as a data-parallel run's
/// ranks sum theirs in rank order; with one micro-batch the gradient is left as computed). Every micro-batch
/// of a step runs at the same dropout step, with its sequences' batch indices
/// (set_first_sequence), so each sequence's dropout masks are those of the whole batch in one
/// pass, whatever `micro_batches` is; the step then advances by one. Clip the global norm; set
/// the learning rate from WarmupCosine; AdamW step. A NaN or infinite micro-batch loss or gradient
/// norm stops run() before the update, with the step reported in the TrainResult.
///
/// Validation runs after every `eval_every` completed steps over `eval_batches` x `batch`
/// deterministic validation sequences, in micro-batch pieces, without dropout; it leaves the model's
/// dropout step as it found it, so evaluating never changes training.
///
/// The model (e.g. hattn::Decoder<cfg, T>) needs `Scalar`, `parameters()`, `zero_grad()`,
/// `forward(ids, targets, dropout)`, `backward(loss_scale)`, `step()`, `set_step()`,
/// `set_first_sequence()`, `vocab_size()` and
/// `sequence_length()`. The data source needs `sequence_length()`, `validation_windows()` (0: no
/// validation split), `token_range()` (the smallest and largest token id it can produce),
/// `train_batch(inputs, targets, rng)` (drawing only from `rng`, so the trainer's state resumes it)
/// and `validation_batch(inputs, targets, index)`, as data::Dataset has them.
template <class Model, class Data = data::Dataset>
class Trainer {
 public:
  /// The model's scalar type.
  using T = typename Model::Scalar;

  /// Called after every applied step.
  std::function<void(const StepInfo&)> on_step;
  /// Called after every evaluation.
  std::function<void(const EvalInfo&)> on_eval;

  /// A trainer of `model` on `data` (both must outlive it), from step 0, whose AdamW decays the
  /// tensors `decay` selects. Throws hattn::Error "Trainer: ..." for options it cannot run:
  /// steps < 0, batch < 1, micro_batches outside [1, batch], eval_every < 0, eval_batches < 1
  /// when evaluating, evaluating without a validation split, sequences longer than the model's, a
  /// token outside the model's vocabulary; and the errors of WarmupCosine and AdamW for their options.
  Trainer(Model& model, const Data& data, const TrainOptions& options,
          const typename AdamW<T>::Predicate& decay = default_weight_decay<T>)
      : model_(&model),
        data_(&data),
        options_(options),
        schedule_{options.lr, options.min_lr, options.warmup_steps, options.steps},
        optimizer_(model.parameters(),
                   AdamWOptions{.lr = options.lr, .beta1 = options.beta1, .beta2 = options.beta2,
                                .eps = options.eps, .weight_decay = options.weight_decay},
                   decay),
        rng_(options.seed) {
    constexpr const char* op = "Trainer";
    const TrainOptions& o = options;
    detail::require(o.steps >= 0, op, "steps must be >= 0, got ", o.steps);
    detail::require(o.batch >= 1, op, "batch must be >= 1, got ", o.batch);
    detail::require(o.micro_batches >= 1 && o.micro_batches <= o.batch, op, "micro_batches must be in [1, batch ",
                    o.batch, "], got ", o.micro_batches);
    detail::require(o.eval_every >= 0, op, "eval_every must be >= 0, got ", o.eval_every);
    detail::require(o.eval_every == 0 || o.eval_batches >= 1, op, "eval_batches must be >= 1, got ",
                    o.eval_batches);
    detail::require(o.eval_every == 0 || data.validation_windows() > 0, op,
                    "eval_every is ", o.eval_every, " but the dataset has no validation split");
    detail::require(data.sequence_length() <= model.sequence_length(), op, "dataset sequences of ",
                    data.sequence_length(), " tokens exceed the model's sequence_length ",
                    model.sequence_length());
    const auto [lo, hi] = data.token_range();
    detail::require(lo >= 0 && hi < model.vocab_size(), op, "token id ", lo < 0 ? lo : hi,
                    " in the dataset is outside the model's vocabulary [0, ", model.vocab_size(), ")");
    schedule_.validate();
    const Index T_ = data.sequence_length();
    inputs_ = Tensor<std::int32_t, 2>(o.batch, T_);
    targets_ = Tensor<std::int32_t, 2>(o.batch, T_);
    if (o.micro_batches > 1) {  // the micro-batches' gradient sum, flat in registry order
      std::size_t n = 0;
      for (const Parameter<T>& p : model.parameters()) {
        sum_offsets_.push_back(n);
        n += p.trainable() ? std::size_t(p.size()) : 0;
      }
      grad_sum_.assign(n, T(0));
    }
  }

  /// Runs steps until TrainOptions::steps are completed or a step fails.
  TrainResult run() { return run(options_.steps - step()); }

  /// Runs at most `max_steps` more steps (never beyond TrainOptions::steps), stopping early if
  /// a step fails.
  TrainResult run(std::int64_t max_steps) {
    TrainResult result;
    result.loss = std::nan("");
    const std::int64_t end = std::min(options_.steps, step() + std::max<std::int64_t>(max_steps, 0));
    while (step() < end) {
      const StepInfo info = train_step(result);
      if (result.status != TrainStatus::completed) break;
      result.loss = info.loss;
      if (on_step) on_step(info);
      if (options_.eval_every > 0 && step() % options_.eval_every == 0) {
        const EvalInfo e = evaluate();
        if (on_eval) on_eval(e);
      }
    }
    result.steps = step();
    return result;
  }

  /// Mean cross-entropy over validation batches 0 .. eval_batches - 1 (of `batch` sequences, run in
  /// the training step's micro-batch pieces), without dropout. Leaves the model's dropout step and the parameters'
  /// gradients unchanged; replaces the model's last forward.
  EvalInfo evaluate() {
    detail::require(data_->validation_windows() > 0, "Trainer::evaluate", "the dataset has no validation split");
    const auto t0 = std::chrono::steady_clock::now();
    const std::uint64_t saved_step = model_->step();
    double weighted = 0;
    Index counted = 0;
    for (Index j = 0; j < std::max<Index>(options_.eval_batches, 1); ++j) {
      data_->validation_batch(inputs_, targets_, j);
      for (Index i = 0; i < options_.micro_batches; ++i) {
        const MicroBatch mb = micro_batch(i);
        const Index n = count_targets(mb.targets);
        weighted += double(model_->forward(mb.ids, mb.targets, /*dropout=*/false)) * double(n);
        counted += n;
      }
    }
    model_->set_step(saved_step);
    EvalInfo e;
    e.step = step();
    e.loss = weighted / double(counted);
    e.targets = counted;
    e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return e;
  }

  /// Steps completed.
  std::int64_t step() const { return optimizer_.steps(); }

  /// A copy of everything the next steps depend on besides the weights and the options.
  TrainState<T> state() const {
    TrainState<T> s;
    s.step = step();
    s.model_step = model_->step();
    s.data_seed = rng_.seed();
    s.data_stream = rng_.stream();
    s.data_position = rng_.position();
    s.first_moment = optimizer_.first_moments();
    s.second_moment = optimizer_.second_moments();
    return s;
  }

  /// Continues from `s` (taken by state(), with the model's weights of that moment restored
  /// separately): the following steps are bitwise those the original run took. Throws hattn::Error
  /// "Trainer::restore: ..." if the moments do not match the model's trainable size or the step is
  /// negative; nothing changes then.
  void restore(const TrainState<T>& s) {
    const std::size_t n = optimizer_.first_moments().size();
    detail::require(s.first_moment.size() == n && s.second_moment.size() == n, "Trainer::restore",
                    "moments of ", s.first_moment.size(), " and ", s.second_moment.size(),
                    " elements, the model has ", n, " trainable");
    detail::require(s.step >= 0, "Trainer::restore", "step must be >= 0, got ", s.step);
    optimizer_.set_steps(s.step);
    optimizer_.first_moments() = s.first_moment;
    optimizer_.second_moments() = s.second_moment;
    model_->set_step(s.model_step);
    rng_ = Generator(s.data_seed, s.data_stream, s.data_position);
  }

  /// The optimizer.
  AdamW<T>& optimizer() { return optimizer_; }
  /// The learning-rate schedule.
  const WarmupCosine& schedule() const { return schedule_; }
  /// The options.
  const TrainOptions& options() const { return options_; }
  /// The batch sampling generator (its seed, stream and position are in state()).
  const Generator& data_rng() const { return rng_; }

 private:
  // One step; on a non-finite loss or norm sets result's status, failed_step and message and
  // returns without updating the weights.
  StepInfo train_step(TrainResult& result) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<Parameter<T>>& params = model_->parameters();
    const Index k = options_.micro_batches;
    data_->train_batch(inputs_, targets_, rng_);
    const Index total = count_targets(targets_);
    StepInfo info;
    info.step = step();
    info.tokens = options_.batch * data_->sequence_length();
    info.targets = total;
    // One dropout step for the whole batch, each micro-batch at its sequences' batch indices.
    const std::uint64_t dropout_step = model_->step();
    const auto next_dropout_step = [&] {
      model_->set_step(dropout_step + 1);
      model_->set_first_sequence(0);
    };
    for (Index i = 0; i < k; ++i) {
      const MicroBatch mb = micro_batch(i);
      const Index n = count_targets(mb.targets);
      model_->set_step(dropout_step);
      model_->set_first_sequence(std::uint64_t(mb.first));
      model_->zero_grad();
      const double loss = double(model_->forward(mb.ids, mb.targets, options_.dropout));
      if (!std::isfinite(loss)) {
        next_dropout_step();
        return fail(result, TrainStatus::non_finite_loss,
                    detail::concat("Trainer: loss is ", loss, " in step ", info.step + 1, " (micro-batch ", i,
                                   "); the step was not applied"));
      }
      // The batch's mean CE is sum_i (n_i / N) mean_i: weight each micro-batch's gradient by its
      // share of the counted targets; backward adds, so the gradients accumulate in place.
      const double weight = double(n) / double(total);
      model_->backward(T(weight));
      info.loss += weight * loss;
      if (k > 1) add_to_gradient_sum(params, i == 0);
    }
    next_dropout_step();
    if (k > 1) set_gradients_to_sum(params);
    info.grad_norm = clip_grad_norm(params, options_.clip);
    if (!std::isfinite(info.grad_norm))
      return fail(result, TrainStatus::non_finite_gradient,
                  detail::concat("Trainer: gradient norm is ", info.grad_norm, " in step ", info.step + 1,
                                 "; the step was not applied"));
    info.lr = schedule_.lr(info.step);
    optimizer_.set_lr(info.lr);
    optimizer_.step();
    info.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return info;
  }

  // Micro-batch i of the batch in inputs_ and targets_: rows [first, first + rows), the batch split
  // by even_split_start (8 rows in 3 micro-batches are 3, 3 and 2).
  struct MicroBatch {
    Index first;
    View<const std::int32_t, 2> ids, targets;  // (rows, T) each
  };
  MicroBatch micro_batch(Index i) const {
    const Index B = options_.batch, k = options_.micro_batches, T_ = data_->sequence_length();
    const Index first = even_split_start(B, k, i), rows = even_split_start(B, k, i + 1) - first;
    return {first, View<const std::int32_t, 2>(inputs_.data() + first * T_, rows, T_),
            View<const std::int32_t, 2>(targets_.data() + first * T_, rows, T_)};
  }

  // Calls f(sum, grad, count) for every block of the trainable gradients (detail::for_each_grad_block,
  // in parallel), `sum` the block's place in grad_sum_.
  template <class F>
  void for_each_sum_block(const std::vector<Parameter<T>>& params, F&& f) {
    detail::for_each_grad_block(params, [&](Index, const Parameter<T>& p, Index begin, Index end) {
      T* sum = grad_sum_.data() + sum_offsets_[std::size_t(&p - params.data())] + begin;  // (end - begin)
      f(sum, p.grad + begin, end - begin);
    });
  }

  // grad_sum_ = the trainable gradients (the first micro-batch), or grad_sum_ + them, element by element.
  void add_to_gradient_sum(const std::vector<Parameter<T>>& params, bool first) {
    for_each_sum_block(params, [first](T* sum, T* grad, Index count) {
      if (first) {
        std::copy(grad, grad + count, sum);
      } else {
        for (Index e = 0; e < count; ++e) sum[e] = sum[e] + grad[e];
      }
    });
  }

  // The trainable gradients = grad_sum_.
  void set_gradients_to_sum(const std::vector<Parameter<T>>& params) {
    for_each_sum_block(params, [](T* sum, T* grad, Index count) { std::copy(sum, sum + count, grad); });
  }

  StepInfo fail(TrainResult& result, TrainStatus status, std::string message) const {
    result.status = status;
    result.failed_step = step();
    result.message = std::move(message);
    return {};
  }

  Model* model_;
  const Data* data_;
  TrainOptions options_;
  WarmupCosine schedule_;
  AdamW<T> optimizer_;
  Generator rng_;                                  // batch sampling
  Tensor<std::int32_t, 2> inputs_, targets_;       // (batch, T) this step's batch
  std::vector<T> grad_sum_;                        // (trainable scalars) micro-batches' gradient sum
  std::vector<std::size_t> sum_offsets_;           // (registry entries) where each starts in grad_sum_
};

}  // namespace hattn
