#pragma once
/// \file
/// Flat, 64-byte aligned buffers handed out by bumping an offset: parameters, gradients and
/// activations each live in one arena, sized once per (batch, length) shape, so a training step
/// allocates nothing.

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "hattn/core/error.hpp"
#include "hattn/core/huge_pages.hpp"
#include "hattn/core/tensor.hpp"

namespace hattn {

/// Counts the elements a sequence of Arena::take calls needs, with the arena's rounding, so that
/// an arena can be sized exactly once before use.
class ArenaPlan {
 public:
  /// Elements per alignment unit: every block starts on a 64-byte boundary.
  static constexpr Index align_bytes = 64;

  /// Adds a block of `n` elements of `T`; returns its offset in elements.
  template <class T>
  Index add(Index n) {
    const Index offset = used_;
    used_ += round_up<T>(n);
    return offset;
  }
  /// Elements needed so far.
  Index total() const { return used_; }

  /// `n` rounded up to a whole number of 64-byte units of `T`.
  template <class T>
  static constexpr Index round_up(Index n) {
    constexpr Index unit = align_bytes / static_cast<Index>(sizeof(T));
    return (n + unit - 1) / unit * unit;
  }

 private:
  Index used_ = 0;
};

/// A fixed-capacity bump allocator over one aligned buffer of `T`.
/// requires: the capacity, set by reserve(), covers every take() until the next reset().
/// ensures: blocks never move until the next reserve(); take() never allocates.
template <class T>
class Arena {
 public:
  Arena() = default;
  /// An arena of `capacity` zeroed elements.
  explicit Arena(Index capacity) { reserve(capacity); }

  /// Makes room for `capacity` elements; reallocates (and zeroes) only when growing.
  /// Invalidates every block taken before.
  void reserve(Index capacity) {
    detail::require(capacity >= 0, "Arena::reserve", "negative capacity ", capacity);
    offset_ = 0;
    if (capacity <= capacity_) return;
    std::size_t bytes = static_cast<std::size_t>(
        ArenaPlan::round_up<T>(capacity) * static_cast<Index>(sizeof(T)));
    // Large arenas start on a huge page and ask for huge pages (core/huge_pages.hpp).
    const bool huge = bytes >= 4 * huge_page_bytes;
    if (huge) bytes = (bytes + huge_page_bytes - 1) / huge_page_bytes * huge_page_bytes;
    T* p = static_cast<T*>(
        std::aligned_alloc(huge ? huge_page_bytes : std::size_t(ArenaPlan::align_bytes), bytes));
    if (p == nullptr) throw std::bad_alloc();
    if (huge) advise_huge_pages(p, bytes);
    std::memset(p, 0, bytes);
    buffer_.reset(p);
    capacity_ = capacity;
  }

  /// The next `n` elements (64-byte aligned); throws hattn::Error past the capacity.
  T* take(Index n) {
    const Index rounded = ArenaPlan::round_up<T>(n);
    detail::require(n >= 0 && offset_ + rounded <= ArenaPlan::round_up<T>(capacity_), "Arena::take",
                    "request of ", n, " elements exceeds the capacity (", offset_, " of ",
                    capacity_, " used)");
    T* p = buffer_.get() + offset_;
    offset_ += rounded;
    return p;
  }

  /// A view of the next block, shaped `dims...`.
  template <class... Dims>
  View<T, sizeof...(Dims)> view(Dims... dims) {
    const Index n = (Index{1} * ... * static_cast<Index>(dims));
    return View<T, sizeof...(Dims)>(take(n), dims...);
  }

  /// Forgets every block (the memory stays).
  void reset() { offset_ = 0; }
  /// Sets every element of the buffer to zero.
  void zero() {
    if (buffer_) std::memset(buffer_.get(), 0, static_cast<std::size_t>(capacity_) * sizeof(T));
  }
  /// Start of the buffer.
  T* data() { return buffer_.get(); }
  /// Elements handed out since the last reset (with rounding).
  Index used() const { return offset_; }
  /// Elements available.
  Index capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> buffer_;  // (capacity_) elements
  Index capacity_ = 0;
  Index offset_ = 0;
};

}  // namespace hattn
