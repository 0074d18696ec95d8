#pragma once
/// \file
/// Transparent huge pages for large buffers: on Linux, a 2 MiB page replaces 512 4 KiB pages, so
/// first touching an 800 MB tensor takes hundreds, not hundreds of thousands, of page faults, and
/// large products miss the TLB less. Elsewhere, or where the kernel declines, this does nothing.

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace hattn {

/// Size of a transparent huge page (x86-64 and most aarch64 Linux kernels).
inline constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

/// Asks the kernel to back the whole huge pages inside [p, p + bytes) with huge pages; call it
/// before the memory is first touched. Only a hint: failures are ignored.
inline void advise_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (begin + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
  const std::uintptr_t last = (begin + bytes) / huge_page_bytes * huge_page_bytes;
  if (last > first) (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace hattn
