// ListOps (data/listops.hpp): the generator's answers against an evaluator written here from the
// text (recursive descent, unlike the library's stack), determinism from the seed, the length
// bounds, LRA's shape statistics, the decoder framing, and exact errors.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"

using hattn::Index;
namespace data = hattn::data;

namespace {

// The value of a ListOps text such as "[MAX 2 9 [MIN 4 7 ] 0 ]", by recursive descent over its
// words: the median by sorting and averaging the middle two (rounded down, as int(np.median)).
int evaluate_text(std::istringstream& words) {
  std::string w;
  words >> w;
  if (w.size() == 1 && w[0] >= '0' && w[0] <= '9') return w[0] - '0';
  std::vector<int> args;
  for (;;) {
    const auto at = words.tellg();
    std::string next;
    words >> next;
    if (next == "]") break;
    words.seekg(at);
    args.push_back(evaluate_text(words));
  }
  std::sort(args.begin(), args.end());
  if (w == "[MIN") return args.front();
  if (w == "[MAX") return args.back();
  if (w == "[MED") {
    const double m = args.size() % 2 ? args[args.size() / 2] : (args[args.size() / 2 - 1] + args[args.size() / 2]) / 2.0;
    return int(m);
  }
  REQUIRE(w == "[SM");
  int s = 0;
  for (int a : args) s += a;
  return s % 10;
}

int evaluate_text(const std::string& text) {
  std::istringstream words(text);
  const int v = evaluate_text(words);
  std::string rest;
  REQUIRE_FALSE(words >> rest);
  return v;
}

}  // namespace

TEST_CASE("ListOps answers agree with an independent evaluator, and small cases by hand", "[listops]") {
  using namespace data;
  const std::vector<std::int32_t> e1{listops_max, 2, 9, listops_min, 4, 7, listops_end, 0, listops_end};
  CHECK(listops_text(e1) == "[MAX 2 9 [MIN 4 7 ] 0 ]");
  CHECK(evaluate_listops(e1) == 9);
  CHECK(evaluate_listops(std::vector<std::int32_t>{listops_med, 1, 4, listops_end}) == 2);  // median 2.5
  CHECK(evaluate_listops(std::vector<std::int32_t>{listops_med, 3, 1, 4, listops_end}) == 3);
  CHECK(evaluate_listops(std::vector<std::int32_t>{listops_sm, 9, 8, 7, listops_end}) == 4);
  CHECK(evaluate_listops(std::vector<std::int32_t>{5}) == 5);

  ListOpsGenerator gen(ListOpsOptions::for_sequence(256), 7);
  std::map<int, int> classes;
  for (int i = 0; i < 300; ++i) {
    const ListOpsExample e = gen.next();
    INFO(listops_text(e.tokens));
    REQUIRE(e.answer == evaluate_text(listops_text(e.tokens)));
    ++classes[e.answer];
  }
  CHECK(classes.size() == 10);  // every class occurs

  // Always guessing the most common answer: 3 of these 5 are 9.
  std::vector<ListOpsExample> five{{{9}, 9}, {{1}, 1}, {{9}, 9}, {{2}, 2}, {{9}, 9}};
  CHECK(listops_majority(five) == 0.6);
  REQUIRE_THROWS_WITH(listops_majority({}), "listops_majority: no examples");
}

TEST_CASE("ListOps generation is determined by the seed and stream, and keeps its length bounds", "[listops]") {
  using namespace data;
  const ListOpsOptions o = ListOpsOptions::for_sequence(256);
  REQUIRE(o.min_length == 64);
  REQUIRE(o.max_length == 256);
  ListOpsGenerator a(o, 3), b(o, 3), c(o, 4), d(o, 3, 1);
  std::set<std::vector<std::int32_t>> distinct;
  for (int i = 0; i < 200; ++i) {
    const auto x = a.next(), y = b.next();
    REQUIRE(x.tokens == y.tokens);
    REQUIRE(x.answer == y.answer);
    REQUIRE(Index(x.tokens.size()) > 64);
    REQUIRE(Index(x.tokens.size()) < 256);  // the expression and its answer marker fit in 256
    distinct.insert(x.tokens);
  }
  CHECK(distinct.size() == 200);
  CHECK(c.next().tokens != ListOpsGenerator(o, 3).next().tokens);
  CHECK(d.next().tokens != ListOpsGenerator(o, 3).next().tokens);

  // LRA's own lengths: every expression within (500, 2000), depth at most 10, at most 10 arguments.
  ListOpsGenerator lra(ListOpsOptions{}, 11);
  for (int i = 0; i < 20; ++i) {
    const auto e = lra.next();
    REQUIRE(e.tokens.size() > 500);
    REQUIRE(e.tokens.size() < 2000);
    int depth = 0, deepest = 0;
    std::vector<int> args;  // per open operator
    for (std::int32_t t : e.tokens) {
      if (t >= listops_min && t <= listops_sm) {
        if (!args.empty()) ++args.back();
        args.push_back(0);
        deepest = std::max(deepest, ++depth);
      } else if (t == listops_end) {
        REQUIRE(args.back() >= 2);
        REQUIRE(args.back() <= 10);
        args.pop_back();
        --depth;
      } else if (!args.empty()) {
        ++args.back();
      }
    }
    REQUIRE(deepest <= 9);  // operators at depths 1..9; depth 10 holds digits only
  }
}

TEST_CASE("a ListOps batch for a decoder: the expression, the marker, padding, and one target per row", "[listops]") {
  using namespace data;
  const std::vector<ListOpsExample> ex{{{listops_sm, 9, 8, listops_end}, 7}, {{3}, 3}};
  const ListOpsBatch b = frame_listops(ex);
  REQUIRE(b.ids.dimension(0) == 2);
  REQUIRE(b.ids.dimension(1) == 5);
  const std::vector<std::int32_t> row0{listops_sm, 9, 8, listops_end, listops_answer};
  const std::vector<std::int32_t> row1{3, listops_answer, listops_pad, listops_pad, listops_pad};
  for (Index t = 0; t < 5; ++t) {
    CHECK(b.ids(0, t) == row0[std::size_t(t)]);
    CHECK(b.ids(1, t) == row1[std::size_t(t)]);
    CHECK(b.targets(0, t) == (t == 4 ? 7 : -100));
    CHECK(b.targets(1, t) == (t == 1 ? 3 : -100));
  }
  CHECK(b.answer_at == std::vector<Index>{4, 1});
  CHECK(listops_text(std::vector<std::int32_t>(row1.begin(), row1.end())) == "3 = _ _ _");
}

TEST_CASE("ListOps rejects bad expressions and impossible options with exact messages", "[listops][errors]") {
  using namespace data;
  using V = std::vector<std::int32_t>;
  REQUIRE_THROWS_WITH(evaluate_listops(V{}), "evaluate_listops: empty expression");
  REQUIRE_THROWS_WITH(evaluate_listops(V{listops_min, 3}), "evaluate_listops: unclosed operator at the end");
  REQUIRE_THROWS_WITH(evaluate_listops(V{listops_end}), "evaluate_listops: ']' closes no operator at token 0");
  REQUIRE_THROWS_WITH(evaluate_listops(V{listops_max, listops_end}),
                      "evaluate_listops: operator without arguments at token 1");
  REQUIRE_THROWS_WITH(evaluate_listops(V{3, 4}), "evaluate_listops: trailing token 4 at token 1 after a whole expression");
  REQUIRE_THROWS_WITH(evaluate_listops(V{listops_min, 17, listops_end}),
                      "evaluate_listops: token 17 is not part of an expression at token 1");
  REQUIRE_THROWS_WITH(ListOpsGenerator(ListOpsOptions{.max_args = 1}, 0),
                      "ListOpsGenerator: max_args must be >= 2, got 1");
  REQUIRE_THROWS_WITH(ListOpsGenerator(ListOpsOptions{.min_length = 10, .max_length = 11}, 0),
                      "ListOpsGenerator: no length lies strictly between min_length 10 and max_length 11");
  REQUIRE_THROWS_WITH(ListOpsGenerator(ListOpsOptions{.operator_p = 1}, 0),
                      "ListOpsGenerator: operator_p must be in (0, 1), got 1");
  // Depth 2 allows at most 2 + 10 = 12 tokens: 500 are out of reach.
  ListOpsGenerator shallow(ListOpsOptions{.max_depth = 2}, 0);
  REQUIRE_THROWS_WITH(shallow.next(), "ListOpsGenerator: no expression with between 501 and 1999 tokens in a million "
                                      "draws (max_depth 2, max_args 10)");
  REQUIRE_THROWS_WITH(frame_listops({}), "frame_listops: no examples");
}

namespace {

// Stand-ins for a model's logits, to check what listops_accuracy counts: one that ranks the true
// answer first, and one that ranks the answer + 1 first (and puts a larger logit on a non-digit
// id, which must not count). Each reads the expression back from its row, which must be framed
// as training frames it: the marker after the expression, padding to the sequence length.
struct Oracle {
  int shift = 0;
  Index sequence_length() const { return 64; }
  hattn::Tensor<float, 3> logits(hattn::View<const std::int32_t, 2> ids) const {
    REQUIRE(ids.dim(1) == 64);
    hattn::Tensor<float, 3> logits(ids.dim(0), 64, data::listops_vocab);
    logits.setZero();
    for (Index b = 0; b < ids.dim(0); ++b) {
      Index marker = 0;
      while (ids(b, marker) != data::listops_answer) ++marker;
      for (Index t = marker + 1; t < 64; ++t) REQUIRE(ids(b, t) == data::listops_pad);
      const std::vector<std::int32_t> expr(&ids(b, 0), &ids(b, 0) + marker);
      logits(b, marker, (data::evaluate_listops(expr) + shift) % 10) = 1;
      logits(b, marker, data::listops_pad) = 5;
    }
    return logits;
  }
};

}  // namespace

TEST_CASE("the ListOps task feeds a trainer, deterministically, and accuracy counts the digit ranked first",
          "[listops][trainer]") {
  using namespace data;
  const ListOpsTask task(ListOpsOptions::for_sequence(64), 64, 40, 5);
  REQUIRE(task.validation_windows() == 40);
  REQUIRE(task.token_range() == std::pair<std::int32_t, std::int32_t>{0, listops_pad});
  hattn::Tensor<std::int32_t, 2> a(3, 64), at(3, 64), b(3, 64), bt(3, 64);
  hattn::Generator r1(9), r2(9);
  task.train_batch(a, at, r1);
  task.train_batch(b, bt, r2);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
  for (Index row = 0; row < 3; ++row) {
    Index marker = -1, counted = 0;
    for (Index t = 0; t < 64; ++t) {
      if (a(row, t) == listops_answer) marker = t;
      counted += at(row, t) != -100;
    }
    REQUIRE(marker > 16);
    REQUIRE(counted == 1);
    REQUIRE(at(row, marker) == evaluate_listops(std::vector<std::int32_t>(&a(row, 0), &a(row, 0) + marker)));
  }
  task.validation_batch(a, at, 1);  // examples 3, 4, 5
  for (Index row = 0; row < 3; ++row) REQUIRE(a(row, 0) == task.validation()[std::size_t(3 + row)].tokens[0]);

  // Batches of 16 over 40 examples: two whole batches and a partial one.
  CHECK(listops_accuracy(Oracle{}, task.validation()) == 1.0);
  CHECK(listops_accuracy(Oracle{1}, task.validation()) == 0.0);
  CHECK(listops_accuracy(Oracle{}, std::span(task.validation()).first(7), 3) == 1.0);
  REQUIRE_THROWS_WITH(listops_accuracy(Oracle{}, task.validation(), 0), "listops_predict: batch must be >= 1, got 0");

  // A decoder trains on it: a finite loss on the answers alone, and a validation loss.
  constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
  hattn::Decoder<cfg> model(listops_vocab, 64, 3);
  hattn::TrainOptions o;
  o.steps = 3;
  o.batch = 4;
  o.eval_every = 3;
  o.eval_batches = 2;
  hattn::Trainer<hattn::Decoder<cfg>, ListOpsTask> trainer(model, task, o);
  const hattn::TrainResult r = trainer.run();
  REQUIRE(r.status == hattn::TrainStatus::completed);
  REQUIRE(std::isfinite(r.loss));
  // Accuracy as counted one example at a time, from a row framed here: the expression, the marker,
  // padding to the model's sequence length, and the digit with the largest logit at the marker.
  Index right = 0;
  for (const ListOpsExample& e : task.validation()) {
    hattn::Tensor<std::int32_t, 2> row(1, 64);
    for (Index t = 0; t < 64; ++t) row(0, t) = listops_pad;
    std::copy(e.tokens.begin(), e.tokens.end(), row.data());
    row(0, Index(e.tokens.size())) = listops_answer;
    const auto logits = model.logits(row);  // (1, 64, V)
    const float* at = &logits(0, Index(e.tokens.size()), 0);
    right += std::max_element(at, at + 10) - at == e.answer;
  }
  CHECK(listops_accuracy(model, task.validation(), 7) == double(right) / 40.0);

  REQUIRE_THROWS_WITH(ListOpsTask(ListOpsOptions::for_sequence(128), 64),
                      "ListOpsTask: expressions of up to 127 tokens and their answer marker do not fit in "
                      "sequence_length 64");
}
