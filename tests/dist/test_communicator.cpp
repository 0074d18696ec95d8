// The MPI communicator (include/hattn/dist/communicator.hpp), run by ctest under mpiexec with 2
// and 3 ranks: the rank-order sum against one process adding the ranks' vectors one after the
// other, bitwise, for float and double and lengths that do not divide evenly; a length mismatch
// is an error on every rank, not a hang; the shards.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "hattn/core/rng.hpp"
#include "hattn/dist/communicator.hpp"

using hattn::Index;

namespace {

// Rank q's vector: values spread over many magnitudes, so that the order of the additions shows
// in the bits of the sum.
template <class T>
std::vector<T> contribution(int q, Index n) {
  hattn::Generator g(std::uint64_t(1000 + q));
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = T(g.uniform(-1, 1) * std::pow(10.0, double(g.below(9)) - 4));
  return v;
}

template <class T>
void check_rank_order_sum(const hattn::dist::Communicator& comm, Index n) {
  const int N = comm.size();
  std::vector<T> data = contribution<T>(comm.rank(), n);
  comm.sum_in_rank_order(std::span<T>(data));
  std::vector<T> expected = contribution<T>(0, n), reversed = contribution<T>(N - 1, n);
  for (int q = 1; q < N; ++q) {
    const auto v = contribution<T>(q, n), w = contribution<T>(N - 1 - q, n);
    for (Index e = 0; e < n; ++e) {
      expected[std::size_t(e)] = expected[std::size_t(e)] + v[std::size_t(e)];
      reversed[std::size_t(e)] = reversed[std::size_t(e)] + w[std::size_t(e)];
    }
  }
  INFO("rank " << comm.rank() << " of " << N << ", n " << n << (sizeof(T) == 4 ? " float" : " double"));
  CHECK(std::memcmp(data.data(), expected.data(), std::size_t(n) * sizeof(T)) == 0);
  // With three ranks or more another order gives other bits somewhere (two terms commute), so the
  // comparison above can tell the orders apart.
  if (N >= 3 && n >= 1000)
    CHECK(std::memcmp(expected.data(), reversed.data(), std::size_t(n) * sizeof(T)) != 0);
}

}  // namespace

TEST_CASE("sum_in_rank_order is bitwise the ranks' vectors added one after the other in rank order",
          "[dist]") {
  const hattn::dist::Communicator comm;
  CHECK(comm.size() >= 1);
  for (Index n : {Index(1), Index(2), Index(7), Index(1000), Index(4097)}) {
    check_rank_order_sum<float>(comm, n);
    check_rank_order_sum<double>(comm, n);
  }
}

TEST_CASE("vectors of different lengths are an error on every rank, not a hang", "[dist][errors]") {
  const hattn::dist::Communicator comm;
  std::vector<float> data(comm.rank() == 0 ? 5 : 6, 1.0f);
  if (comm.size() == 1) {
    comm.sum_in_rank_order(std::span<float>(data));
    CHECK(data == std::vector<float>(5, 1.0f));  // one rank: nothing to add
  } else {
    REQUIRE_THROWS_WITH(comm.sum_in_rank_order(std::span<float>(data)),
                        "dist::Communicator::sum_in_rank_order: ranks pass vectors of different lengths (5 to 6)");
  }
}

TEST_CASE("shards split a vector as evenly as it goes, the first ones one element longer", "[dist]") {
  const hattn::dist::Communicator comm;
  const int N = comm.size();
  CHECK(comm.shard_start(10, 0) == 0);
  CHECK(comm.shard_start(10, N) == 10);
  for (int s = 0; s < N; ++s) {
    const Index len = comm.shard_start(10, s + 1) - comm.shard_start(10, s);
    CHECK(len == 10 / N + (s < 10 % N ? 1 : 0));
  }
}

int main(int argc, char* argv[]) {
  const hattn::dist::Environment mpi(&argc, &argv);
  return Catch::Session().run(argc, argv);
}
