#pragma once
/// \file
/// The one matrix-product entry point: row-major GEMM over cblas (OpenBLAS). The only header that
/// includes <cblas.h>. OpenBLAS runs single-threaded; large products are split into fixed tiles
/// run through hattn::parallel_for, so results do not depend on the thread count.

#include <cblas.h>

#include <type_traits>

#include "hattn/core/error.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn {

/// Whether a GEMM operand is used as stored or transposed.
enum class Trans : bool { no = false, yes = true };

namespace detail {

/// Makes OpenBLAS single-threaded once per process: hattn parallelises around BLAS calls, and
/// OpenBLAS's own threads would oversubscribe the cores inside TBB tasks.
inline void blas_single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

/// Rows (or columns) per parallel GEMM tile. A constant, so tiles are the same for any thread count.
inline constexpr Index gemm_tile = 128;
/// Products smaller than this many multiply-adds run as one call.
inline constexpr double gemm_parallel_work = 4.0e6;

template <class T>
void gemm_call(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, const T* a, Index lda,
               const T* b, Index ldb, T beta, T* c, Index ldc) {
  const auto to = [](Trans t) { return t == Trans::yes ? CblasTrans : CblasNoTrans; };
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, to(ta), to(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
  } else {
    static_assert(std::is_same_v<T, double>, "hattn::gemm supports float and double");
    cblas_dgemm(CblasRowMajor, to(ta), to(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
  }
}

}  // namespace detail

/// C = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is (m, k), op(B) is (k, n), C is
/// (m, n); `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored. With beta = 1 the
/// product accumulates into C (the backward passes use this). Large products are split into
/// 128-row (or, when m is small, 128-column) tiles that run in parallel.
template <class T>
void gemm(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, const T* a, Index lda,
          const T* b, Index ldb, T beta, T* c, Index ldc) {
  detail::require(m >= 0 && n >= 0 && k >= 0, "gemm", "negative size (", m, ", ", n, ", ", k, ")");
  detail::require(lda >= (ta == Trans::yes ? m : k) && ldb >= (tb == Trans::yes ? k : n) &&
                      ldc >= n,
                  "gemm", "leading dimensions (", lda, ", ", ldb, ", ", ldc,
                  ") too small for sizes (", m, ", ", n, ", ", k, ")");
  if (m == 0 || n == 0) return;
  detail::blas_single_threaded();
  const double work = double(m) * double(n) * double(k);
  const Index tile = detail::gemm_tile;
  if (work < detail::gemm_parallel_work || (m <= tile && n <= tile)) {
    detail::gemm_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (m >= n || m > 2 * tile) {
    // Tiles of rows of C: rows i of op(A).
    parallel_for((m + tile - 1) / tile, [&](Index t) {
      const Index i0 = t * tile, rows = std::min(tile, m - i0);
      const T* a0 = ta == Trans::yes ? a + i0 : a + i0 * lda;
      detail::gemm_call(ta, tb, rows, n, k, alpha, a0, lda, b, ldb, beta, c + i0 * ldc, ldc);
    });
  } else {
    // Tiles of columns of C: columns j of op(B).
    parallel_for((n + tile - 1) / tile, [&](Index t) {
      const Index j0 = t * tile, cols = std::min(tile, n - j0);
      const T* b0 = tb == Trans::yes ? b + j0 * ldb : b + j0;
      detail::gemm_call(ta, tb, m, cols, k, alpha, a, lda, b0, ldb, beta, c + j0, ldc);
    });
  }
}

}  // namespace hattn
