#pragma once
/// \file
/// The OpenBLAS GEMM backend: cblas_sgemm / cblas_dgemm, single-threaded (hattn tiles around it).
/// The only header that includes <cblas.h>. Always present: it is the float backend when hattn is
/// configured with HATTN_GEMM=openblas, and the double backend with either choice (oneDNN has no
/// f64 GEMM).

#include <cblas.h>

#include <string>
#include <type_traits>

#include "hattn/core/tensor.hpp"

namespace hattn::detail::openblas {

/// Makes OpenBLAS single-threaded once per process: hattn parallelises around BLAS calls, and
/// OpenBLAS's own threads would oversubscribe the cores inside TBB tasks.
inline void single_threaded() {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

/// C = alpha op(A) op(B) + beta C, row-major, on the calling thread.
template <class T>
void gemm(bool ta, bool tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, const T* b,
          Index ldb, T beta, T* c, Index ldc) {
  single_threaded();
  const auto to = [](bool t) { return t ? CblasTrans : CblasNoTrans; };
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, to(ta), to(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
  } else {
    static_assert(std::is_same_v<T, double>, "hattn::gemm supports float and double");
    cblas_dgemm(CblasRowMajor, to(ta), to(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
                int(ldb), beta, c, int(ldc));
  }
}

/// The kernel OpenBLAS selected for this CPU at load time (its DYNAMIC_ARCH core name, or the
/// one OPENBLAS_CORETYPE forced), e.g. "SkylakeX", "Haswell", "Prescott".
inline std::string kernel() { return openblas_get_corename(); }

/// OpenBLAS's version, "0.3.21" (its OPENBLAS_VERSION without the name and spaces).
inline std::string version() {
  std::string v = OPENBLAS_VERSION;
  const auto digit = v.find_first_of("0123456789");
  v = digit == std::string::npos ? v : v.substr(digit);
  return v.substr(0, v.find_last_not_of(' ') + 1);
}

/// m n k up to which this OpenBLAS sends a product to its small-matrix kernels instead of the
/// blocked ones: 100^3 for the AVX-512 kernels (SkylakeX and the cores that use them) in 0.3.21,
/// none elsewhere. A row's bits differ between the two, so RowMode::stable keeps its calls above it.
inline double small_kernel_mnk() {
  static const double mnk = [] {
    const std::string core = kernel();
    return core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids" ? 1e6 : 0.0;
  }();
  return mnk;
}

/// Whether `core` (an OpenBLAS core name) is one of its generic, pre-AVX2 x86-64 kernels.
inline bool kernel_lacks_avx2(const std::string& core) {
  for (const char* fast : {"Haswell", "SkylakeX", "Cooperlake", "SapphireRapids", "Zen"})
    if (core == fast) return false;
  return true;
}

}  // namespace hattn::detail::openblas
