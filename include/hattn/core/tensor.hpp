#pragma once
/// \file
/// Views over arena memory: View (trivially copyable, the ops' currency) and its Eigen TensorMap,
/// and Rows for strided sets of row blocks.

#include <unsupported/Eigen/CXX11/Tensor>

#include <array>
#include <functional>
#include <cstdint>
#include <string>
#include <type_traits>

#include "hattn/core/error.hpp"

namespace hattn {

/// Signed extent and offset type, Eigen's.
using Index = Eigen::Index;

/// A row-major, non-owning view of R-dimensional data (an Eigen TensorMap). Use `TensorView<const T, R>`
/// for read-only data. A view whose data() is null stands for "no tensor" (e.g. a gradient not wanted).
template <class T, int R>
using TensorView = Eigen::TensorMap<Eigen::Tensor<T, R, Eigen::RowMajor, Index>>;

/// `T` itself, in a non-deduced context: ops write inputs as `View<const Id<T>, R>` so that `T` is
/// deduced from their first argument only and the others convert (e.g. View<T> to View<const T>).
template <class T>
using Id = std::type_identity_t<T>;

/// An owning row-major tensor, for results handed to the user.
template <class T, int R>
using Tensor = Eigen::Tensor<T, R, Eigen::RowMajor, Index>;

/// The currency of hattn's ops: a trivially copyable, non-owning row-major view (pointer and
/// extents) that can be stored in tape records, which Eigen's TensorMap cannot. `map()` gives the
/// Eigen TensorMap for Eigen expressions. `View<T, R>` converts to `View<const T, R>`. A default
/// View (null data) stands for "no tensor", e.g. a gradient that is not wanted.
template <class T, int R>
struct View {
  T* data = nullptr;            ///< first element, or null
  std::array<Index, R> dims{};  ///< extents, outermost first

  View() = default;
  /// A view of `dims...` elements at `p`.
  template <class... D>
    requires(sizeof...(D) == R)
  View(T* p, D... d) : data(p), dims{static_cast<Index>(d)...} {}
  /// A view of an Eigen TensorMap.
  View(const TensorView<T, R>& m) : data(m.data()) {  // NOLINT(google-explicit-constructor)
    for (int i = 0; i < R; ++i) dims[i] = m.dimension(i);
  }
  /// A view of an owning Eigen tensor.
  View(Tensor<std::remove_const_t<T>, R>& t) : data(t.data()) {  // NOLINT(google-explicit-constructor)
    for (int i = 0; i < R; ++i) dims[i] = t.dimension(i);
  }
  /// A read-only view of a const owning Eigen tensor.
  View(const Tensor<std::remove_const_t<T>, R>& t)  // NOLINT(google-explicit-constructor)
    requires std::is_const_v<T>
      : data(t.data()) {
    for (int i = 0; i < R; ++i) dims[i] = t.dimension(i);
  }
  /// Read-only view of a mutable one.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  View(const View<U, R>& v) : data(v.data), dims(v.dims) {}  // NOLINT(google-explicit-constructor)

  /// Extent `i`.
  Index dim(int i) const { return dims[i]; }
  /// Number of elements.
  Index size() const {
    Index n = 1;
    for (Index d : dims) n *= d;
    return n;
  }
  /// True when the view has data.
  bool present() const { return data != nullptr; }
  /// Eigen TensorMap over the same data.
  TensorView<T, R> map() const { return TensorView<T, R>(data, dims); }
  /// Element at `idx...` (row-major).
  template <class... I>
    requires(sizeof...(I) == R)
  T& operator()(I... idx) const {
    const std::array<Index, R> at{static_cast<Index>(idx)...};
    Index off = 0;
    for (int i = 0; i < R; ++i) off = off * dims[i] + at[i];
    return data[off];
  }
  /// "(d0, d1, ...)", for error messages.
  std::string shape() const {
    std::string s = "(";
    for (int i = 0; i < R; ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
  }
  /// The same data as (d0 * ... * d_{R-2}, d_{R-1}).
  View<T, 2> matrix() const {
    static_assert(R >= 2, "matrix() needs rank 2 or more");
    const Index cols = dims[R - 1];
    return View<T, 2>(data, cols == 0 ? 0 : size() / cols, cols);
  }
};

/// True when the `na` elements at `a` and the `nb` elements at `b` share no element. Ops use it to
/// reject partial overlaps between an output and an input (in place is allowed only where the op
/// says so).
template <class T>
bool disjoint(const T* a, Index na, const T* b, Index nb) {
  const std::less<const T*> lt;  // a total order even for unrelated pointers
  return !lt(a, b + nb) || !lt(b, a + na);
}

/// A set of `groups` blocks of `rows` x `cols` elements inside a larger row-major buffer:
/// element (g, r, c) lives at `data[g * group_stride + r * row_stride + c]`. Attention reads its
/// queries, keys and values through these: leaf chunks (consecutive blocks of rows), the right or
/// left halves of sibling pairs (every other block), and column slices of fused Q|K|V buffers.
template <class T>
struct Rows {
  T* data = nullptr;       ///< element (0, 0, 0)
  Index groups = 0;        ///< number of blocks
  Index rows = 0;          ///< rows per block
  Index cols = 0;          ///< columns read from each row
  Index row_stride = 0;    ///< elements between consecutive rows of a block
  Index group_stride = 0;  ///< elements between consecutive blocks

  /// Read-only rows of the same blocks.
  operator Rows<const T>() const  // NOLINT(google-explicit-constructor)
    requires(!std::is_const_v<T>)
  {
    return Rows<const T>{data, groups, rows, cols, row_stride, group_stride};
  }
  /// Pointer to row `r` of block `g`.
  T* row(Index g, Index r) const { return data + g * group_stride + r * row_stride; }
  /// "(groups, rows, cols)" for error messages.
  std::string shape() const { return detail::shape_string({groups, rows, cols}); }
};

/// The whole of a contiguous (M, cols) matrix as one block of M rows.
template <class T>
Rows<T> rows_of(View<T, 2> m) {
  return Rows<T>{m.data, 1, m.dim(0), m.dim(1), m.dim(1), m.size()};
}

/// Splits a contiguous (M, cols) matrix into M / block consecutive blocks of `block` rows.
template <class T>
Rows<T> blocks_of(View<T, 2> m, Index block) {
  detail::require(block > 0 && m.dim(0) % block == 0, "blocks_of", "cannot split ", m.shape(),
                  " into blocks of ", block, " rows");
  const Index cols = m.dim(1);
  return Rows<T>{m.data, m.dim(0) / block, block, cols, cols, block * cols};
}

}  // namespace hattn
