#pragma once
/// \file
/// The oneDNN GEMM backend (HATTN_GEMM=onednn): dnnl_sgemm, whose kernels oneDNN picks from the
/// CPU's instruction set (AVX2, AVX-512, ...) at run time rather than from a table of CPU models.
/// The only header that includes oneDNN. Float only: doubles go to OpenBLAS.
///
/// Debian builds oneDNN with OpenMP threading. hattn parallelises around the products (fixed tiles,
/// so results do not depend on the thread count), so every product runs with the calling thread's
/// OpenMP team limited to one thread (and the caller's setting restored after): oneDNN then never
/// splits a product, and in particular never its reduction dimension, across threads.

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>

#include <string>

#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn::detail::onednn {

/// Sets the calling thread's OpenMP team size for oneDNN. The OpenMP runtime is the one oneDNN itself
/// loaded (looked up at run time, so the consumer needs no OpenMP flags and a different compiler's
/// runtime can never be the one set).
inline void set_openmp_threads(int threads) {
  using SetThreads = void (*)(int);
  static const auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
  if (set) set(threads);
}

/// The calling thread's OpenMP team size for its next parallel region (omp_get_max_threads of the
/// runtime oneDNN loaded; 1 when there is none).
inline int openmp_threads() {
  using GetThreads = int (*)();
  static const auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
  return get ? get() : 1;
}

/// While it lives, the calling thread's OpenMP team is one thread; then the caller's own setting
/// is back. Checked at every product, not once per thread: a caller that sets its OpenMP team
/// after hattn's first product (research code that runs OpenMP loops of its own) must not get
/// oneDNN splitting hattn's products, and their reduction dimension, across threads.
class SingleThreaded {
 public:
  SingleThreaded() : previous_(openmp_threads()) {
    if (previous_ != 1) set_openmp_threads(1);
  }
  ~SingleThreaded() {
    if (previous_ != 1) set_openmp_threads(previous_);
  }
  SingleThreaded(const SingleThreaded&) = delete;
  SingleThreaded& operator=(const SingleThreaded&) = delete;

 private:
  int previous_;  // the caller's team size
};

/// C = alpha op(A) op(B) + beta C, row-major, on the calling thread.
inline void sgemm(bool ta, bool tb, Index m, Index n, Index k, float alpha, const float* a, Index lda,
                  const float* b, Index ldb, float beta, float* c, Index ldc) {
  const SingleThreaded one_thread;
  // oneDNN's dnnl_sgemm is row-major: C (m, n) = op(A) (m, k) op(B) (k, n).
  const dnnl_status_t status = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b,
                                          ldb, beta, c, ldc);
  require(status == dnnl_success, "gemm", "oneDNN's dnnl_sgemm failed with status ", int(status),
          " for sizes (", m, ", ", n, ", ", k, ")");
}

/// Whether a row of C comes out bitwise the same from every call whose row count is a multiple of
/// gemm_row_unit (96), whatever that count: true for oneDNN's AVX-512 sgemm kernels (48-row unroll,
/// one path for every such m; tests/core/test_gemm_backend.cpp). Its AVX2 and older kernels switch
/// paths with the row count (different results for m < 512 and m >= 512 at n = k = 768 in 2.6.3),
/// so RowMode::stable products run on OpenBLAS there.
inline bool rows_stable() {
  static const bool stable = (dnnl_get_effective_cpu_isa() & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
  return stable;
}

/// The instruction set oneDNN's kernels use on this CPU (its dnnl_get_effective_cpu_isa).
inline std::string isa() {
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
  }
}

/// oneDNN's version, "major.minor.patch".
inline std::string version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace hattn::detail::onednn
