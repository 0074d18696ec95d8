// What ListOps accuracy needs no model: baselines on the held-out set `hattn eval --task listops`
// scores, from statistics of training-like examples.
//
//   build/benchmarks/hattn_listops_baselines [sequence_length=512] [train_examples=8000] [held_out=2000]
//
// The training-like examples come from the generator as hattn train draws them (one generator per
// example, seeded from a hattn::Generator); the held-out set is ListOpsTask's with seed 2, stream 1
// (hattn eval's default --listops-seed). Prints, for each rule, its accuracy on the held-out set:
//   majority        the most frequent answer overall;
//   by operator     the most frequent answer given the outermost operator;
//   by operator and arguments  ... given the outermost operator and how many arguments it has.

#include <array>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <utility>
#include <vector>

#include "hattn/core/rng.hpp"
#include "hattn/data/listops.hpp"

namespace {

using hattn::Index;
using hattn::data::ListOpsExample;

/// (outermost operator token, its number of direct arguments) of an expression.
std::pair<int, int> outer(const ListOpsExample& e) {
  int depth = 0, args = 0;
  for (std::size_t i = 1; i < e.tokens.size(); ++i) {
    const std::int32_t t = e.tokens[i];
    if (t == hattn::data::listops_end) {
      if (depth == 0) break;
      --depth;
    } else if (t >= hattn::data::listops_min && t <= hattn::data::listops_sm) {
      if (depth == 0) ++args;
      ++depth;
    } else if (depth == 0) {
      ++args;  // a digit argument of the outermost operator
    }
  }
  return {int(e.tokens[0]), args};  // an expression is never empty (min_length >= 0 excludes it)
}

template <class Key>
double accuracy(const std::vector<ListOpsExample>& train, const std::vector<ListOpsExample>& test, Key key) {
  std::map<decltype(key(train[0])), std::array<Index, 10>> counts;
  std::array<Index, 10> all{};
  for (const auto& e : train) {
    ++counts[key(e)][std::size_t(e.answer)];
    ++all[std::size_t(e.answer)];
  }
  const auto argmax = [](const std::array<Index, 10>& c) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < c.size(); ++i) best = c[i] > c[best] ? i : best;
    return int(best);
  };
  Index right = 0;
  for (const auto& e : test) {
    const auto it = counts.find(key(e));
    right += (it == counts.end() ? argmax(all) : argmax(it->second)) == e.answer;
  }
  return double(right) / double(test.size());
}

}  // namespace

int main(int argc, char** argv) try {
  const Index S = argc > 1 ? std::atol(argv[1]) : 512;
  const Index n_train = argc > 2 ? std::atol(argv[2]) : 8000;
  const Index n_test = argc > 3 ? std::atol(argv[3]) : 2000;
  if (argc > 4 || S < 16 || n_train < 1 || n_test < 1) {
    std::fprintf(stderr, "usage: hattn_listops_baselines [sequence_length >= 16] [train_examples >= 1] [held_out >= 1]\n");
    return 2;
  }
  const auto options = hattn::data::ListOpsOptions::for_sequence(S);
  const hattn::data::ListOpsTask task(options, S, n_test, /*validation_seed=*/2);
  hattn::Generator rng(0);
  std::vector<ListOpsExample> train;
  for (Index i = 0; i < n_train; ++i) train.push_back(hattn::data::ListOpsGenerator(options, rng.next_u64()).next());
  const auto& test = task.validation();
  std::printf("ListOps, sequence %ld: %ld training-like examples, %ld held-out (seed 2)\n", long(S), long(n_train),
              long(n_test));
  std::printf("majority                     %.1f%%\n", 100 * accuracy(train, test, [](const ListOpsExample&) { return 0; }));
  std::printf("by operator                  %.1f%%\n",
              100 * accuracy(train, test, [](const ListOpsExample& e) { return outer(e).first; }));
  std::printf("by operator and arguments    %.1f%%\n",
              100 * accuracy(train, test, [](const ListOpsExample& e) { return outer(e); }));
} catch (const std::exception& e) {
  std::fprintf(stderr, "hattn_listops_baselines: %s\n", e.what());
  return 1;
}
