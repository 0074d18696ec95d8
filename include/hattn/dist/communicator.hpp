#pragma once
/// \file
/// Data-parallel communication over MPI: the only header that includes <mpi.h>, behind the
/// optional target hattn::dist (CMake option HATTN_MPI), so that code which never trains across
/// processes never needs MPI.
///
/// The one collective training needs is a sum of every rank's gradient that is bitwise the sum one
/// process forms by adding the ranks' contributions in rank order, ((g_0 + g_1) + g_2) + ...,
/// element by element (Communicator::sum_in_rank_order). MPI's own reductions promise no order (a
/// ring reduce-scatter adds in a different order on every rank for N >= 3, and MPI_Allreduce may
/// pick any algorithm), so the sum is built from point-to-point messages: the vector is cut into N
/// shards, rank s owns shard s and receives the other ranks' pieces of it one at a time, in rank
/// order, adding each to its running sum, then every rank gathers every shard. Each rank sends
/// about 2 (N - 1) / N of the vector's bytes, and holds two shard-sized buffers besides it.

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/split.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::dist {

namespace detail {

/// Throws hattn::Error "<op>: <MPI's message>" unless `code` is MPI_SUCCESS.
inline void check(int code, const char* op) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(hattn::detail::concat(op, ": ", std::string(text, std::size_t(length))));
}

/// The MPI datatype of float or double.
template <class T>
MPI_Datatype datatype() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

}  // namespace detail

/// MPI for the lifetime of the object: MPI_Init_thread (MPI_THREAD_FUNNELED: only the thread that
/// created it calls MPI; hattn's TBB workers never do) and MPI_Finalize, unless MPI was already
/// initialized by the program, which then also finalizes it.
class Environment {
 public:
  /// Initializes MPI with the program's arguments (argc and argv may be null).
  Environment(int* argc, char*** argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided = 0;
    detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "dist::Environment");
    owner_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);  // errors become hattn::Error
  }
  ~Environment() {
    if (owner_) MPI_Finalize();
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

 private:
  bool owner_ = false;
};

/// The processes of one training job (MPI_COMM_WORLD) and their collectives.
class Communicator {
 public:
  /// MPI_COMM_WORLD; MPI must be initialized (dist::Environment).
  Communicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    hattn::detail::require(initialized != 0, "dist::Communicator", "MPI is not initialized (create a dist::Environment first)");
    detail::check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "dist::Communicator");
    detail::check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "dist::Communicator");
  }

  /// This process's rank, 0 .. size() - 1.
  int rank() const { return rank_; }
  /// The number of processes.
  int size() const { return size_; }

  /// Where shard `s` of an n-element vector starts (s = size(): n): even_split_start, the first
  /// n % size() shards one element longer.
  Index shard_start(Index n, int s) const { return even_split_start(n, size_, s); }

  /// Replaces `data` on every rank by the element-wise sum of all ranks' `data`, added in rank
  /// order: sum = (((data_0 + data_1) + data_2) + ...), bitwise what one process computes adding
  /// the ranks' vectors one after the other (for one rank, data is left as it is). Every rank must
  /// pass the same length, which is checked first (an error on every rank, not a hang).
  template <class T>
  void sum_in_rank_order(std::span<T> data) const {
    constexpr const char* op = "dist::Communicator::sum_in_rank_order";
    const std::int64_t n = std::int64_t(data.size());
    std::int64_t lo = n, hi = n;
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD), op);
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD), op);
    hattn::detail::require(lo == hi, op, "ranks pass vectors of different lengths (", lo, " to ", hi, ")");
    if (size_ == 1 || n == 0) return;
    hattn::detail::require(n / size_ < std::int64_t(1) << 30, op, "shards of ", n / size_,
                           " elements: at most 2^30 are supported");
    const MPI_Datatype type = detail::datatype<T>();
    constexpr int tag = 7001;
    // Send every other rank its shard of this rank's vector (non-blocking, all at once).
    std::vector<MPI_Request> sends;
    sends.reserve(static_cast<std::size_t>(size_ - 1));
    for (int s = 0; s < size_; ++s) {
      if (s == rank_) continue;
      const Index s0 = shard_start(n, s), count = shard_start(n, s + 1) - s0;
      sends.emplace_back();
      detail::check(MPI_Isend(data.data() + s0, int(count), type, s, tag, MPI_COMM_WORLD, &sends.back()), op);
    }
    // Own shard: the running sum starts with rank 0's piece and takes rank q's piece q-th.
    const Index r0 = shard_start(n, rank_), count = shard_start(n, rank_ + 1) - r0;
    T* sum = data.data() + r0;                              // (count) the running sum, in place
    std::vector<T> mine(sum, sum + count), piece(static_cast<std::size_t>(count));  // (count) each
    for (int q = 0; q < size_; ++q) {
      const T* term = mine.data();
      if (q != rank_) {
        detail::check(MPI_Recv(piece.data(), int(count), type, q, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), op);
        term = piece.data();
      }
      if (q == 0) {
        std::copy(term, term + count, sum);
      } else {
        for (Index e = 0; e < count; ++e) sum[e] = sum[e] + term[e];
      }
    }
    detail::check(MPI_Waitall(int(sends.size()), sends.data(), MPI_STATUSES_IGNORE), op);
    // Every rank gathers every shard.
    std::vector<int> counts(static_cast<std::size_t>(size_)), starts(static_cast<std::size_t>(size_));
    for (int s = 0; s < size_; ++s) {
      starts[std::size_t(s)] = int(shard_start(n, s));
      counts[std::size_t(s)] = int(shard_start(n, s + 1) - shard_start(n, s));
    }
    detail::check(MPI_Allgatherv(MPI_IN_PLACE, 0, type, data.data(), counts.data(), starts.data(), type,
                                 MPI_COMM_WORLD),
                  op);
  }

 private:
  int rank_ = 0, size_ = 1;
};

}  // namespace hattn::dist
