#pragma once
/// \file
/// The one matrix-product entry point: row-major GEMM over a backend chosen when hattn is
/// configured (HATTN_GEMM: oneDNN, whose kernels follow the CPU's instruction set, or OpenBLAS;
/// doubles always run on OpenBLAS). Backends run single-threaded; large products are split into
/// fixed tiles run through hattn::parallel_for, so results do not depend on the thread count.

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/gemm/openblas.hpp"
#include "hattn/core/parallel.hpp"
#include "hattn/core/tensor.hpp"

#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
#include "hattn/core/gemm/onednn.hpp"
#endif

namespace hattn {

/// Whether a GEMM operand is used as stored or transposed.
enum class Trans : bool { no = false, yes = true };

/// How gemm may group the rows of C into BLAS calls.
enum class RowMode : bool {
  /// Whatever is fastest. Results are still the same for any thread count, but a row's bits may
  /// depend on how many rows are computed (BLAS kernels treat edge rows differently).
  any,
  /// Every row of C comes out bitwise the same whatever m is: a row of a (B, T) batch does not
  /// change with T. Calls cover whole units of rows (96, or more where a kernel needs it:
  /// detail::stable_unit) from fixed tile starts; a last partial unit is computed through
  /// zero-padded scratch. Used for activations (rows = tokens), so that a sequence's prefix gives
  /// the same outputs at every length.
  stable,
};

/// Which library computes hattn::gemm's float products (doubles: always OpenBLAS).
enum class GemmBackend { onednn, openblas };

/// The float backend this translation unit was configured with (HATTN_GEMM).
#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
inline constexpr GemmBackend gemm_backend = GemmBackend::onednn;
#else
inline constexpr GemmBackend gemm_backend = GemmBackend::openblas;
#endif

namespace detail {

/// RowMode::any with A transposed and B not: from this many bytes between A's stored rows (rows of
/// the stored (k, m) matrix), gemm computes the transposed product instead (gemm_via_transpose).
/// Packing A^T reads columns at that stride, and strides of 4 KiB multiples map to a few cache
/// sets: on a Xeon of family 6 model 167 oneDNN's single-threaded sgemm falls from 186 GFLOP/s
/// (stride 256 floats) to 120 (8192 floats) for the head's weight gradient, and the transposed
/// product runs at 183.
inline constexpr Index gemm_transpose_stride_bytes = 4096;
/// gemm_via_transpose: columns of C per scratch block (the scratch holds (that, m) floats).
inline constexpr Index gemm_transpose_cols = 512;

/// Rows (or columns) per parallel GEMM tile. A constant, so tiles are the same for any thread count.
inline constexpr Index gemm_tile = 128;
/// Products smaller than this many multiply-adds run as one call.
inline constexpr double gemm_parallel_work = 4.0e6;
/// RowMode::stable: every backend call covers a multiple of this many rows of C. OpenBLAS computes a
/// row of C with the same instruction sequence whenever the call's row count is a multiple of its
/// kernel's unroll in that dimension (24 for the Haswell/Zen sgemm kernel; 4, 8, 16 or 32 on
/// others), and oneDNN's AVX-512 sgemm whenever it is a multiple of 48; 96 is a multiple of all of
/// them. Exceptions (stable_unit, stable_on_openblas) and the checks: tests/core/test_gemm_backend.cpp.
inline constexpr Index gemm_row_unit = 96;
/// RowMode::stable: rows of C per parallel tile (a multiple of gemm_row_unit), and columns of C
/// per tile when C is wider than that. Every tile is a separate BLAS call that packs its operands
/// again, so large products take large tiles: chosen from (n, k) only, never from m, so that a
/// row's tile boundaries do not depend on how many rows there are.
inline constexpr Index gemm_row_tile = 192, gemm_row_tile_large = 768;
inline constexpr Index gemm_col_tile = 512, gemm_col_tile_large = 2048;
/// n * k from which a stable product uses the large tiles.
inline constexpr double gemm_large_nk = 1 << 20;
/// RowMode::any: the largest tile, and the number of tiles a product is split into at least
/// (before rounding the tile up to a multiple of gemm_tile).
inline constexpr Index gemm_tile_max = 1024, gemm_min_tiles = 8;
/// RowMode::any: k / (split extent) from which a product is split into two tiles only.
inline constexpr Index gemm_deep_ratio = 16;

/// One single-threaded backend call: C = alpha op(A) op(B) + beta C, row-major.
template <class T>
void gemm_call(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, const T* a, Index lda,
               const T* b, Index ldb, T beta, T* c, Index ldc) {
#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    onednn::sgemm(ta == Trans::yes, tb == Trans::yes, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  openblas::gemm<T>(ta == Trans::yes, tb == Trans::yes, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// Whether gemm computes C = alpha op(A) op(B) + beta C through its transpose (see
/// gemm_transpose_stride_bytes).
template <class T>
bool gemm_by_transpose(Trans ta, Trans tb, Index lda) {
  return ta == Trans::yes && tb == Trans::no && double(lda) * sizeof(T) >= double(gemm_transpose_stride_bytes);
}

/// C (m, n) = alpha A^T B + beta C for A stored (k, m) and B stored (k, n), computed as its
/// transpose: per block of at most gemm_transpose_cols columns j of C, the scratch
/// X (cols, m) = alpha B[:, j]^T A (one backend call that reads both operands along their stored
/// rows), then C[i, j] = X[j, i] + beta C[i, j] (C is not read when beta = 0, as in a BLAS call).
/// Single-threaded; the result depends on the sizes only.
template <class T>
void gemm_via_transpose(Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b, Index ldb,
                        T beta, T* c, Index ldc) {
  const Index ldx = (m + 15) / 16 * 16 + 16;  // a row stride off the 4 KiB multiples
  thread_local std::vector<T> scratch;         // (gemm_transpose_cols, ldx); grows once per thread
  const Index width = std::min(n, gemm_transpose_cols);
  if (scratch.size() < std::size_t(width * ldx)) scratch.resize(std::size_t(width * ldx));
  T* x = scratch.data();
  constexpr Index block = 16;  // transpose in (16, 16) blocks
  for (Index j0 = 0; j0 < n; j0 += width) {
    const Index cols = std::min(width, n - j0);
    gemm_call(Trans::yes, Trans::no, cols, m, k, alpha, b + j0, ldb, a, lda, T(0), x, ldx);
    for (Index i0 = 0; i0 < m; i0 += block)
      for (Index jb = 0; jb < cols; jb += block) {
        const Index i1 = std::min(m, i0 + block), j1 = std::min(cols, jb + block);
        for (Index i = i0; i < i1; ++i) {
          T* crow = c + i * ldc + j0;  // (cols)
          if (beta == T(0)) {
            for (Index j = jb; j < j1; ++j) crow[j] = x[j * ldx + i];
          } else if (beta == T(1)) {
            for (Index j = jb; j < j1; ++j) crow[j] = x[j * ldx + i] + crow[j];
          } else {
            for (Index j = jb; j < j1; ++j) crow[j] = x[j * ldx + i] + beta * crow[j];
          }
        }
      }
  }
}

/// Whether RowMode::stable products run on OpenBLAS: its own backend, or oneDNN below AVX-512.
template <class T>
bool stable_on_openblas() {
#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
  if constexpr (std::is_same_v<T, float>) return !onednn::rows_stable();
#endif
  return true;
}

/// A backend call for RowMode::stable: the float backend when its rows are stable for every
/// multiple of gemm_row_unit rows, OpenBLAS otherwise (oneDNN below AVX-512).
template <class T>
void gemm_call_stable(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, const T* a, Index lda,
                      const T* b, Index ldb, T beta, T* c, Index ldc) {
  if (stable_on_openblas<T>()) {
    openblas::gemm<T>(ta == Trans::yes, tb == Trans::yes, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  gemm_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// Rows per RowMode::stable call unit for an (n, k) product: gemm_row_unit, or on OpenBLAS the
/// smallest multiple of it that keeps every call above OpenBLAS's small-matrix kernels.
template <class T>
Index stable_unit(Index n, Index k) {
  const double small = stable_on_openblas<T>() ? openblas::small_kernel_mnk() : 0.0;
  const double nk = double(n) * double(k);
  if (nk <= 0 || double(gemm_row_unit) * nk > small) return gemm_row_unit;
  const Index units = Index(small / (double(gemm_row_unit) * nk)) + 1;
  return units * gemm_row_unit;
}

/// Rows [i0, i0 + rows) and columns [j0, j0 + cols) of C as calls over whole stable_unit rows
/// (i0 is a tile start): the whole units directly, a last partial unit through
/// zero-padded scratch copies of A's rows and C's rows (C is copied in, so beta applies exactly
/// as in a direct call).
template <class T>
void gemm_stable_tile(Trans ta, Trans tb, Index i0, Index rows, Index j0, Index cols, Index k,
                      T alpha, const T* a, Index lda, const T* b, Index ldb, T beta, T* c, Index ldc) {
  const Index unit = stable_unit<T>(cols, k);
  const Index whole = rows / unit * unit;
  const T* b0 = tb == Trans::yes ? b + j0 * ldb : b + j0;
  if (whole > 0) {
    const T* a0 = ta == Trans::yes ? a + i0 : a + i0 * lda;
    gemm_call_stable(ta, tb, whole, cols, k, alpha, a0, lda, b0, ldb, beta, c + i0 * ldc + j0, ldc);
  }
  if (whole == rows) return;
  i0 += whole;
  rows -= whole;
  const T* a0 = ta == Trans::yes ? a + i0 : a + i0 * lda;
  T* c0 = c + i0 * ldc + j0;
  const Index padded = unit;  // rows < unit
  thread_local std::vector<T> a_pad, c_pad;  // grow once per thread
  a_pad.assign(std::size_t(padded * k), T(0));
  c_pad.assign(std::size_t(padded * cols), T(0));
  if (ta == Trans::yes) {  // A stored (k, m): copy columns i0 .. i0 + rows into (k, padded)
    for (Index l = 0; l < k; ++l)
      std::copy(a0 + l * lda, a0 + l * lda + rows, a_pad.data() + l * padded);
  } else {                 // A stored (m, k): copy rows into (padded, k)
    for (Index i = 0; i < rows; ++i) std::copy(a0 + i * lda, a0 + i * lda + k, a_pad.data() + i * k);
  }
  for (Index i = 0; i < rows; ++i) std::copy(c0 + i * ldc, c0 + i * ldc + cols, c_pad.data() + i * cols);
  gemm_call_stable(ta, tb, padded, cols, k, alpha, a_pad.data(), ta == Trans::yes ? padded : k, b0, ldb,
            beta, c_pad.data(), cols);
  for (Index i = 0; i < rows; ++i) std::copy(c_pad.data() + i * cols, c_pad.data() + (i + 1) * cols, c0 + i * ldc);
}

}  // namespace detail

/// C = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is (m, k), op(B) is (k, n), C is
/// (m, n); `lda`, `ldb`, `ldc` are the row strides of A, B and C as stored. With beta = 1 the
/// product accumulates into C (the backward passes use this). Large products are split into
/// 128-row (or, when m is small, 128-column) tiles that run in parallel; with RowMode::stable
/// into the fixed tiles that keep each row's result independent of m.
template <class T>
void gemm(Trans ta, Trans tb, Index m, Index n, Index k, T alpha, const T* a, Index lda,
          const T* b, Index ldb, T beta, T* c, Index ldc, RowMode mode = RowMode::any) {
  detail::require(m >= 0 && n >= 0 && k >= 0, "gemm", "negative size (", m, ", ", n, ", ", k, ")");
  detail::require(lda >= (ta == Trans::yes ? m : k) && ldb >= (tb == Trans::yes ? k : n) &&
                      ldc >= n,
                  "gemm", "leading dimensions (", lda, ", ", ldb, ", ", ldc,
                  ") too small for sizes (", m, ", ", n, ", ", k, ")");
  if (m == 0 || n == 0) return;
  if (mode == RowMode::stable) {
    // Tiles fixed by (n, k) alone, from row 0 and column 0.
    const bool large = double(n) * double(k) >= detail::gemm_large_nk;
    const Index rt = large ? detail::gemm_row_tile_large : detail::gemm_row_tile;
    const Index ct = large ? detail::gemm_col_tile_large : detail::gemm_col_tile;
    const Index row_tiles = (m + rt - 1) / rt, col_tiles = n > ct ? (n + ct - 1) / ct : 1;
    const Index width = n > ct ? ct : n;
    parallel_for(row_tiles * col_tiles, [&](Index t) {
      const Index i0 = (t / col_tiles) * rt, j0 = (t % col_tiles) * width;
      detail::gemm_stable_tile(ta, tb, i0, std::min(rt, m - i0), j0, std::min(width, n - j0), k,
                               alpha, a, lda, b, ldb, beta, c, ldc);
    });
    return;
  }
  const double work = double(m) * double(n) * double(k);
  // Tiles of gemm_tile, or larger for large products (fewer repacked operands): about
  // gemm_min_tiles tiles along the split dimension, a multiple of gemm_tile, at most gemm_tile_max.
  // A deep product (k >= gemm_deep_ratio times the split extent) is dominated by packing the
  // operand every tile shares: it takes two tiles.
  const auto tile_for = [k](Index extent) {
    const Index parts = k >= detail::gemm_deep_ratio * extent ? 2 : detail::gemm_min_tiles;
    const Index t = (extent / parts + detail::gemm_tile - 1) / detail::gemm_tile * detail::gemm_tile;
    return std::clamp(t, detail::gemm_tile, detail::gemm_tile_max);
  };
  Index tile = detail::gemm_tile;
  // One single-threaded block of C: a backend call, or the transposed product for an A^T whose
  // stored rows are far apart (detail::gemm_transpose_stride_bytes).
  const bool by_transpose = detail::gemm_by_transpose<T>(ta, tb, lda);
  const auto block = [&](Index rows, Index cols, const T* a0, const T* b0, T* c0) {
    if (by_transpose) {
      detail::gemm_via_transpose(rows, cols, k, alpha, a0, lda, b0, ldb, beta, c0, ldc);
    } else {
      detail::gemm_call(ta, tb, rows, cols, k, alpha, a0, lda, b0, ldb, beta, c0, ldc);
    }
  };
  if (work < detail::gemm_parallel_work || (m <= tile && n <= tile)) {
    block(m, n, a, b, c);
    return;
  }
  if (m >= n || m > 2 * tile) {
    // Tiles of rows of C: rows i of op(A).
    tile = tile_for(m);
    parallel_for((m + tile - 1) / tile, [&](Index t) {
      const Index i0 = t * tile, rows = std::min(tile, m - i0);
      const T* a0 = ta == Trans::yes ? a + i0 : a + i0 * lda;
      block(rows, n, a0, b, c + i0 * ldc);
    });
  } else {
    // Tiles of columns of C: columns j of op(B).
    tile = tile_for(n);
    parallel_for((n + tile - 1) / tile, [&](Index t) {
      const Index j0 = t * tile, cols = std::min(tile, n - j0);
      const T* b0 = tb == Trans::yes ? b + j0 * ldb : b + j0;
      block(m, cols, a, b0, c + j0);
    });
  }
}

/// What computes hattn::gemm on this machine.
struct GemmInfo {
  std::string backend;  ///< "onednn" or "openblas": the float backend (doubles: OpenBLAS)
  std::string kernel;   ///< oneDNN: "isa:<instruction set>"; OpenBLAS: its kernel ("SkylakeX", ...)
  std::string version;  ///< the backend library's version
  int threads = 1;      ///< threads the products' tiles run on (each backend call is single-threaded)
  std::string double_kernel;  ///< OpenBLAS's kernel, which runs the double products
  /// Who runs RowMode::stable products: the backend, or "openblas" where the backend's rows are not
  /// stable (oneDNN below AVX-512).
  std::string stable_rows;
  /// Empty, or one line saying that the backend runs a kernel without AVX2 on a CPU that has AVX2
  /// or AVX-512, and what to do about it.
  std::string warning;

  /// One line: "gemm: onednn 2.6.3 (isa:avx512_core_amx), 2 threads; double: OpenBLAS SkylakeX",
  /// plus "; stable rows: OpenBLAS" when those run on OpenBLAS instead of the backend.
  std::string summary() const {
    return "gemm: " + backend + " " + version + " (" + kernel + "), " + std::to_string(threads) +
           (threads == 1 ? " thread" : " threads") + "; double: OpenBLAS " + double_kernel +
           (stable_rows != backend ? "; stable rows: OpenBLAS" : "");
  }
};

namespace detail {

/// The CPU's widest vector instruction set that matters to a GEMM kernel: "avx512", "avx2" or "".
inline std::string cpu_vector_isa() {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f")) return "avx512";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
#endif
  return "";
}

}  // namespace detail

namespace detail {

/// The warning gemm_info reports: empty unless `kernel` (an OpenBLAS core name, or "isa:<oneDNN
/// instruction set>") lacks AVX2 while the CPU (`cpu_isa`: "avx512", "avx2" or "") has it.
inline std::string gemm_warning(const std::string& backend, const std::string& kernel, const std::string& cpu_isa) {
  if (cpu_isa.empty()) return "";
  const std::string wide = cpu_isa == "avx512" ? "AVX-512" : "AVX2";
  if (backend == "onednn") {
    const std::string isa = kernel.starts_with("isa:") ? kernel.substr(4) : kernel;
    if (isa != "sse41" && isa != "avx") return "";
    return "hattn: warning: oneDNN runs its " + isa + " kernels on a CPU with " + wide +
           " (DNNL_MAX_CPU_ISA set?); unset DNNL_MAX_CPU_ISA for its " + wide + " kernels";
  }
  if (!openblas::kernel_lacks_avx2(kernel)) return "";
  return "hattn: warning: OpenBLAS runs its generic " + kernel + " kernel on a CPU with " + wide +
         " (its table of CPU models lacks this one), several times slower; set OPENBLAS_CORETYPE=" +
         (cpu_isa == "avx512" ? "SkylakeX" : "Haswell") + " or configure hattn with -DHATTN_GEMM=onednn";
}

}  // namespace detail

/// The backend, kernel and threads of hattn::gemm, and a warning when its kernel is slower than
/// this CPU allows.
inline GemmInfo gemm_info() {
  GemmInfo info;
  info.threads = max_threads();
  info.double_kernel = detail::openblas::kernel();
#if defined(HATTN_GEMM_ONEDNN) && HATTN_GEMM_ONEDNN
  info.backend = "onednn";
  info.version = detail::onednn::version();
  info.kernel = "isa:" + detail::onednn::isa();
  info.stable_rows = detail::onednn::rows_stable() ? "onednn" : "openblas";
#else
  info.stable_rows = "openblas";
  info.backend = "openblas";
  info.version = detail::openblas::version();
  info.kernel = info.double_kernel;
#endif
  info.warning = detail::gemm_warning(info.backend, info.kernel, detail::cpu_vector_isa());
  return info;
}

}  // namespace hattn
