#pragma once
/// \file
/// Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes of
/// UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
/// relative to the first byte after the header) plus an optional "__metadata__" object of strings,
/// then the raw little-endian, row-major tensor data. The reader accepts the files the reference
/// implementation accepts: the tensors must cover the data section with no gap, overlap or
/// trailing byte (the format forbids holes so that a file cannot double as another format), and
/// the header is at most 100 MB. Stricter than the reference, it also rejects a key twice in one
/// JSON object and arrays or objects nested more than 64 deep (io/json.hpp).
/// POSIX only (open/read/write/fsync/rename), for atomic and durable writes.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/core/tensor.hpp"
#include "hattn/io/excerpt.hpp"
#include "hattn/io/json.hpp"
#include "hattn/io/regular_file.hpp"

static_assert(std::endian::native == std::endian::little,
              "hattn/io/safetensors.hpp copies tensor bytes as they are: it needs a little-endian host, "
              "as the safetensors format stores little-endian data");

namespace hattn::io {

/// Element types of the safetensors format, spelled as in the file ("F32", "BF16", ...). Every
/// type here is a whole number of bytes wide; sub-byte types (e.g. F4) are not supported.
enum class DType : std::uint8_t {
  BOOL,     ///< 1-byte boolean (0 or 1)
  U8,       ///< uint8
  I8,       ///< int8
  F8_E5M2,  ///< 8-bit float, 5 exponent and 2 mantissa bits
  F8_E4M3,  ///< 8-bit float, 4 exponent and 3 mantissa bits
  I16,      ///< int16
  U16,      ///< uint16
  F16,      ///< IEEE 754 half precision
  BF16,     ///< bfloat16 (the upper half of a float32)
  I32,      ///< int32
  U32,      ///< uint32
  F32,      ///< IEEE 754 single precision
  F64,      ///< IEEE 754 double precision
  I64,      ///< int64
  U64,      ///< uint64
};

namespace detail {

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  std::size_t size;
};

inline constexpr DTypeEntry dtype_table[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},   {DType::U32, "U32", 4}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::I64, "I64", 8}, {DType::U64, "U64", 8},
};

static_assert(
    [] {
      for (std::size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; ++i)
        if (static_cast<std::size_t>(dtype_table[i].dtype) != i) return false;
      return true;
    }(),
    "dtype_table must list every DType in enum order (dtype_entry indexes it by value)");

/// The dtype spelled `name`, or nothing.
constexpr std::optional<DType> find_dtype(std::string_view name) {
  for (const DTypeEntry& e : dtype_table)
    if (e.name == name) return e.dtype;
  return std::nullopt;
}

constexpr const DTypeEntry& dtype_entry(DType t) { return dtype_table[static_cast<std::size_t>(t)]; }

/// "[2, 3]" (the safetensors spelling of a shape).
inline std::string bracket_shape(const std::vector<Index>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// The text of errno value `err`, e.g. "No space left on device".
inline std::string errno_text(int err) { return std::generic_category().message(err); }

/// Element count of `shape`, or nothing when an extent is negative or a partial product (taken
/// left to right, as the reference implementation does) exceeds the largest Index: [2^62, 4, 0] is
/// too large although it holds no element.
inline std::optional<Index> checked_numel(const std::vector<Index>& shape) {
  Index n = 1;
  for (Index d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) return std::nullopt;
  return n;
}

/// Byte count of `numel` elements of `t`, or nothing on overflow.
inline std::optional<std::size_t> checked_nbytes(Index numel, DType t) {
  const std::size_t size = dtype_entry(t).size;
  const auto n = static_cast<std::size_t>(numel);
  if (n > std::numeric_limits<std::size_t>::max() / size) return std::nullopt;
  return n * size;
}

/// "'<path>'", how messages name a file.
inline std::string quoted(const std::filesystem::path& p) {
  std::string s = p.string();  // appended, not "'" + s: GCC 12 warns falsely (-Wrestrict) on the latter
  s.insert(s.begin(), '\'');
  s.push_back('\'');
  return s;
}

/// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  /// Closes now; returns 0 or the errno of close.
  int close() {
    const int fd = std::exchange(fd_, -1);
    return fd >= 0 && ::close(fd) != 0 ? errno : 0;
  }

 private:
  int fd_;
};

/// Writes all `n` bytes at `p` to `fd`; returns 0 or the errno of the failing write.
inline int write_all(int fd, const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  while (n > 0) {
    const ::ssize_t w = ::write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    b += w;
    n -= static_cast<std::size_t>(w);
  }
  return 0;
}

}  // namespace detail

/// The file spelling of `t`, e.g. "BF16".
constexpr std::string_view dtype_name(DType t) { return detail::dtype_entry(t).name; }

/// Bytes per element of `t`.
constexpr std::size_t dtype_size(DType t) { return detail::dtype_entry(t).size; }

/// The dtype spelled `name` ("F32", "I64", ...). Throws hattn::Error
/// `parse_dtype: unknown safetensors dtype "<name>"` for any other string (spelling is exact and
/// case-sensitive, as in the format).
inline DType parse_dtype(std::string_view name) {
  if (auto t = detail::find_dtype(name)) return *t;
  throw Error(hattn::detail::concat("parse_dtype: unknown safetensors dtype \"", name, "\""));
}

/// The dtype that stores C++ type `T` as it is in memory: float F32, double F64, and the integer
/// types by width and signedness (int64_t I64, uint8_t U8, ...). bool and other types have none
/// (bool's object representation is not guaranteed to match BOOL's bytes; read those with bytes()).
template <class T>
consteval DType dtype_of() {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, float>) {
    return DType::F32;
  } else if constexpr (std::is_same_v<U, double>) {
    return DType::F64;
  } else if constexpr (std::is_integral_v<U> && !std::is_same_v<U, bool>) {
    constexpr bool s = std::is_signed_v<U>;
    if constexpr (sizeof(U) == 1) return s ? DType::I8 : DType::U8;
    else if constexpr (sizeof(U) == 2) return s ? DType::I16 : DType::U16;
    else if constexpr (sizeof(U) == 4) return s ? DType::I32 : DType::U32;
    else if constexpr (sizeof(U) == 8) return s ? DType::I64 : DType::U64;
    else static_assert(sizeof(U) == 0, "dtype_of: no safetensors dtype for this integer width");
  } else {
    static_assert(sizeof(U) == 0, "dtype_of: no safetensors dtype for this C++ type");
  }
}

/// The float32 value of IEEE half-precision bits `h` (exact: every half is a float).
inline float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
    const float v = static_cast<float>(man) * 0x1p-24f;
    return sign ? -v : v;
  }
  // Normal numbers rebias the exponent (15 -> 127); inf and NaN keep an all-ones exponent.
  const std::uint32_t fexp = exp == 0x1f ? 0xffu : exp + 112u;
  return std::bit_cast<float>(sign | (fexp << 23) | (man << 13));
}

/// The float32 value of bfloat16 bits `b` (exact: bfloat16 is a float32 with the low 16 bits zero).
inline float bf16_to_f32(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

/// Where one tensor lives in a file and what it holds.
struct TensorInfo {
  DType dtype = DType::F32;  ///< element type
  std::vector<Index> shape;  ///< extents, outermost first; empty for a scalar (one element)
  std::size_t begin = 0;     ///< first byte, relative to the start of the data section
  std::size_t end = 0;       ///< one past the last byte (end - begin == numel() * dtype_size(dtype))

  /// Number of elements (1 for a scalar, 0 when some extent is 0). Throws hattn::Error
  /// `TensorInfo::numel: shape [...] has a negative extent or too many elements` when `shape` is
  /// one that read_safetensors() rejects (checked_numel()).
  Index numel() const {
    const std::optional<Index> n = detail::checked_numel(shape);
    if (!n)
      throw Error("TensorInfo::numel: shape " + detail::bracket_shape(shape) +
                  " has a negative extent or too many elements");
    return *n;
  }
  /// Number of data bytes.
  std::size_t nbytes() const { return end - begin; }
};

/// The largest header the format allows, in bytes (the reference implementation's limit).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

namespace detail {

/// A validated header: the tensor table in data order, the metadata, and the size of the data
/// section the tensors tile.
struct HeaderTable {
  std::vector<std::string> names;               ///< in data order
  std::vector<TensorInfo> infos;                ///< parallel to names
  std::map<std::string, std::string> metadata;  ///< "__metadata__"
  std::uint64_t data_bytes = 0;                 ///< the size of the data section
};

/// Throws `<where>header length <N> ...` unless the header length `header_len` read from a file of
/// `file_size` >= 8 bytes fits in the file and in max_header_bytes.
inline void check_header_length(std::uint64_t header_len, std::uint64_t file_size, const std::string& where) {
  using hattn::detail::concat;
  if (header_len > file_size - 8)
    throw Error(concat(where, "header length ", header_len, " runs past the end of the file (", file_size - 8,
                       " bytes follow the length)"));
  if (header_len > max_header_bytes)
    throw Error(concat(where, "header length ", header_len, " is over the format's limit of ", max_header_bytes,
                       " bytes"));
}

/// The problem of a duplicate key in the header, as read_safetensors() words it.
inline std::string duplicate_key_message(const JsonProblem& p) {
  const std::string k = excerpt(p.key);
  if (p.path.empty()) return "header has key '" + k + "' more than once";
  const std::string outer = excerpt(p.path[0]);
  if (p.path[0] == "__metadata__") {
    if (p.path.size() == 1) return "\"__metadata__\" has key '" + k + "' more than once";
    return "\"__metadata__\" value for key '" + excerpt(p.path[1]) + "' has key '" + k + "' more than once";
  }
  if (p.path.size() == 1) return "tensor '" + outer + "': entry has key '" + k + "' more than once";
  return "tensor '" + outer + "': \"" + excerpt(p.path[1]) + "\" has key '" + k + "' more than once";
}

/// Parses and validates the header text, for a data section of `data_bytes` bytes (see
/// read_safetensors() for the checks and messages, each prefixed by `where`).
inline HeaderTable parse_header(std::string_view header_text, std::uint64_t data_bytes, const std::string& where) {
  using hattn::detail::concat;
  auto fail = [&](const auto&... parts) { throw Error(concat(where, parts...)); };

  ParsedJson parsed = parse_json(header_text);
  if (parsed.problem) {
    const JsonProblem& p = *parsed.problem;
    if (p.kind == JsonProblem::Kind::duplicate_key) fail(duplicate_key_message(p));
    fail("header ", p.describe());
  }
  const nlohmann::json& header = parsed.value;
  if (!header.is_object()) fail("header is a JSON ", header.type_name(), ", not an object");

  HeaderTable table;
  struct Entry {
    const std::string* name;
    TensorInfo info;
  };
  std::vector<Entry> entries;
  entries.reserve(header.size());
  for (const auto& member : header.get_ref<const nlohmann::json::object_t&>()) {
    const std::string& name = member.first;  // (not a structured binding: lambdas capture these)
    const nlohmann::json& value = member.second;
    if (name == "__metadata__") {
      if (!value.is_object()) fail("\"__metadata__\" must be an object of strings, got ", json_excerpt(value));
      for (const auto& [k, v] : value.get_ref<const nlohmann::json::object_t&>()) {
        if (!v.is_string())
          fail("\"__metadata__\" value for key '", excerpt(k), "' must be a string, got ", json_excerpt(v));
        table.metadata.emplace(k, v.get_ref<const std::string&>());
      }
      continue;
    }
    // (the message prefix is built only on failure: building it for every entry would cost more
    // than parsing them)
    auto bad = [&](const auto&... parts) { fail("tensor '", excerpt(name), "': ", parts...); };
    if (!value.is_object()) bad("entry must be an object, got ", json_excerpt(value));
    const auto field = [&](const char* key) -> const nlohmann::json& {
      const auto it = value.find(key);
      if (it == value.end()) bad("missing \"", key, "\"");
      return *it;
    };
    const nlohmann::json &jd = field("dtype"), &js = field("shape"), &jo = field("data_offsets");
    if (!jd.is_string()) bad("\"dtype\" must be a string, got ", json_excerpt(jd));
    const auto dtype = detail::find_dtype(jd.get_ref<const std::string&>());
    if (!dtype) bad("unknown dtype ", json_excerpt(jd));
    auto is_extent = [](const nlohmann::json& j) {
      return j.is_number_unsigned() &&
             j.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<Index>::max());
    };
    if (!js.is_array() || !std::all_of(js.begin(), js.end(), is_extent))
      bad("\"shape\" must be an array of non-negative integers, got ", json_excerpt(js));
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      bad("\"data_offsets\" must be an array of two non-negative integers, got ", json_excerpt(jo));

    Entry e{&name, {}};
    e.info.dtype = *dtype;
    e.info.shape.reserve(js.size());
    for (const auto& d : js) e.info.shape.push_back(static_cast<Index>(d.get<std::uint64_t>()));
    const auto b = jo[0].get<std::uint64_t>(), en = jo[1].get<std::uint64_t>();
    if (b > en) bad("data_offsets [", b, ", ", en, "] have begin > end");
    const auto numel = detail::checked_numel(e.info.shape);
    const auto need = numel ? detail::checked_nbytes(*numel, *dtype) : std::nullopt;
    if (!need) bad("shape ", detail::bracket_shape(e.info.shape), " is too large");
    if (en - b != *need)
      bad("data_offsets [", b, ", ", en, "] hold ", en - b, " bytes, but ", dtype_name(*dtype),
          " shape ", detail::bracket_shape(e.info.shape), " needs ", *need);
    e.info.begin = static_cast<std::size_t>(b);
    e.info.end = static_cast<std::size_t>(en);
    entries.push_back(std::move(e));
  }

  // Layout: in data order the tensors tile [0, last end) exactly.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::pair(a.info.begin, a.info.end) < std::pair(b.info.begin, b.info.end);
  });
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const TensorInfo& t = entries[i].info;
    if (t.begin == covered) {
      covered = t.end;
      continue;
    }
    const std::string span =
        concat("tensor '", excerpt(*entries[i].name), "': data_offsets [", t.begin, ", ", t.end, "] ");
    if (i == 0) fail(span, "leave a gap at the start of the data section");
    const Entry& prev = entries[i - 1];
    fail(span, t.begin > covered ? "leave a gap after" : "overlap", " tensor '", excerpt(*prev.name), "' at [",
         prev.info.begin, ", ", prev.info.end, "]");
  }
  if (data_bytes < covered) fail("truncated data section: ", data_bytes, " bytes, but tensors end at byte ", covered);
  if (data_bytes > covered)
    fail("data section is ", data_bytes, " bytes, but tensors end at byte ", covered, " (trailing bytes)");

  table.data_bytes = covered;
  table.names.reserve(entries.size());
  table.infos.reserve(entries.size());
  for (Entry& e : entries) {
    table.names.push_back(*e.name);
    table.infos.push_back(std::move(e.info));
  }
  return table;
}

}  // namespace detail

class SafetensorsFile;
SafetensorsFile read_safetensors(const std::filesystem::path& path);
SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, const std::filesystem::path& name);

/// A parsed and fully validated safetensors file held in memory: the tensor table (in data order),
/// the metadata and the data bytes. Obtained from read_safetensors() or parse_safetensors(); move-only (it owns the bytes,
/// and spans from bytes() stay valid across moves). Read-only, so safe to share between threads.
class SafetensorsFile {
 public:
  /// The file it was read from (used in error messages).
  const std::filesystem::path& path() const { return path_; }

  /// Tensor names in the order of their data in the file (ascending data_offsets; empty tensors
  /// sharing an offset come first, by name).
  const std::vector<std::string>& names() const { return names_; }

  /// Number of tensors.
  std::size_t size() const { return names_.size(); }

  /// True when the file holds a tensor called `name`.
  bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }

  /// The entry of tensor `name`. Throws hattn::Error
  /// `SafetensorsFile: '<path>': no tensor named '<name>'` when there is none.
  const TensorInfo& info(std::string_view name) const { return infos_[find(name)]; }

  /// The "__metadata__" map (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// The raw little-endian bytes of tensor `name` (any dtype). Throws like info().
  std::span<const std::byte> bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    return data().subspan(t.begin, t.nbytes());
  }

  /// The whole data section (the bytes after the header).
  std::span<const std::byte> data() const { return {buffer_.get(), data_size_}; }

  /// Copies tensor `name` into `out`, which must have room for its numel() elements of T.
  /// Throws hattn::Error `SafetensorsFile::copy_to: '<path>': tensor '<name>' has dtype F64, expected
  /// F32` unless its dtype is dtype_of<T>(), and `... tensor '<name>' has shape [2, 3], expected
  /// [3, 2]` unless its shape equals `expected_shape` (pass {} for a scalar); `out` is untouched then.
  template <class T>
  void copy_to(std::string_view name, T* out, const std::vector<Index>& expected_shape) const {
    const TensorInfo& t = checked(name, dtype_of<T>(), "SafetensorsFile::copy_to");
    hattn::detail::require(t.shape == expected_shape, "SafetensorsFile::copy_to", detail::quoted(path_),
                           ": tensor '", name, "' has shape ", detail::bracket_shape(t.shape), ", expected ",
                           detail::bracket_shape(expected_shape));
    if (t.nbytes() > 0) std::memcpy(out, data().data() + t.begin, t.nbytes());  // data may be unaligned
  }

  /// Tensor `name` as a vector of T (its shape is info(name).shape). Throws hattn::Error
  /// `SafetensorsFile::read: '<path>': tensor '<name>' has dtype I64, expected I32` unless its dtype
  /// is dtype_of<T>().
  template <class T>
  std::vector<T> read(std::string_view name) const {
    const TensorInfo& t = checked(name, dtype_of<T>(), "SafetensorsFile::read");
    std::vector<T> v(static_cast<std::size_t>(t.numel()));
    if (t.nbytes() > 0) std::memcpy(v.data(), data().data() + t.begin, t.nbytes());
    return v;
  }

  /// Tensor `name` widened to float32, exactly: F32 is copied, F16 and BF16 converted (PyTorch
  /// checkpoints are often stored in half precision). Throws hattn::Error `SafetensorsFile::read_as_f32:
  /// '<path>': tensor '<name>' has dtype F64, expected F32, F16 or BF16` for other dtypes (F64 would
  /// lose precision silently).
  std::vector<float> read_as_f32(std::string_view name) const {
    const TensorInfo& t = info(name);
    if (t.dtype == DType::F32) return read<float>(name);
    hattn::detail::require(t.dtype == DType::F16 || t.dtype == DType::BF16, "SafetensorsFile::read_as_f32",
                           detail::quoted(path_), ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
                           ", expected F32, F16 or BF16");
    std::vector<float> v(static_cast<std::size_t>(t.numel()));
    const std::byte* p = data().data() + t.begin;
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      v[i] = t.dtype == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits);
    }
    return v;
  }

 private:
  friend SafetensorsFile read_safetensors(const std::filesystem::path& path);
  friend SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, const std::filesystem::path& name);

  // Takes the table and allocates (uninitialized) room for the data section.
  void adopt(detail::HeaderTable&& t) {
    names_ = std::move(t.names);
    infos_ = std::move(t.infos);
    metadata_ = std::move(t.metadata);
    data_size_ = static_cast<std::size_t>(t.data_bytes);
    for (std::size_t i = 0; i < names_.size(); ++i) index_.emplace(names_[i], i);
    buffer_ = std::make_unique_for_overwrite<std::byte[]>(data_size_);
  }

  std::size_t find(std::string_view name) const {
    const auto it = index_.find(name);
    if (it == index_.end())
      throw Error(hattn::detail::concat("SafetensorsFile: ", detail::quoted(path_), ": no tensor named '", name, "'"));
    return it->second;
  }

  const TensorInfo& checked(std::string_view name, DType want, std::string_view op) const {
    const TensorInfo& t = info(name);
    hattn::detail::require(t.dtype == want, op, detail::quoted(path_), ": tensor '", name, "' has dtype ",
                           dtype_name(t.dtype), ", expected ", dtype_name(want));
    return t;
  }

  std::filesystem::path path_;
  std::unique_ptr<std::byte[]> buffer_;  // the data section
  std::size_t data_size_ = 0;
  std::vector<std::string> names_;                         // data order
  std::vector<TensorInfo> infos_;                          // parallel to names_
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in names_
  std::map<std::string, std::string> metadata_;
};

/// Reads and validates the safetensors file at `path` (all of it, into memory). Only a regular
/// file is read (see open_regular_file()), the header only once its length fits the file and the
/// format's limit, the data only once the header is valid and accounts for every byte of it. Every
/// defect throws hattn::Error `read_safetensors: '<path>' is not a regular file (it is a FIFO)`
/// (or another kind, see open_regular_file()) or `read_safetensors: '<path>': <problem>`, where
/// <problem> is one of:
/// - `cannot open: <errno text>` / `cannot read: <errno text>`
/// - `file is <n> bytes, too short for the 8-byte header length`
/// - `header length <N> runs past the end of the file (<m> bytes follow the length)`
/// - `header length <N> is over the format's limit of 100000000 bytes`
/// - `file changed while it was read (it was <n> bytes when opened)`
/// - `header is not valid JSON: <nlohmann's message>` (also invalid UTF-8)
/// - `header nests arrays and objects deeper than 64 levels`
/// - `header is a JSON <type>, not an object` (e.g. `array`)
/// - `header has key '<key>' more than once`, `tensor '<name>': entry has key '<key>' more than
///   once`, `"__metadata__" has key '<key>' more than once` (and for deeper objects
///   `tensor '<name>': "<field>" has key '<key>' more than once`)
/// - `"__metadata__" must be an object of strings, got <json>` /
///   `"__metadata__" value for key '<key>' must be a string, got <json>`
/// - `tensor '<name>': entry must be an object, got <json>` / `tensor '<name>': missing "<field>"`
/// - `tensor '<name>': "dtype" must be a string, got <json>` / `tensor '<name>': unknown dtype "<s>"`
/// - `tensor '<name>': "shape" must be an array of non-negative integers, got <json>`
/// - `tensor '<name>': "data_offsets" must be an array of two non-negative integers, got <json>`
/// - `tensor '<name>': data_offsets [b, e] have begin > end`
/// - `tensor '<name>': shape [...] is too large` (a partial product of its extents, or its byte
///   count, overflows)
/// - `tensor '<name>': data_offsets [b, e] hold <k> bytes, but F32 shape [...] needs <n>`
/// - `tensor '<name>': data_offsets [b, e] leave a gap at the start of the data section`
/// - `tensor '<name>': data_offsets [b, e] leave a gap after tensor '<prev>' at [b', e']`
/// - `tensor '<name>': data_offsets [b, e] overlap tensor '<prev>' at [b', e']`
/// - `truncated data section: <m> bytes, but tensors end at byte <e>`
/// - `data section is <m> bytes, but tensors end at byte <e> (trailing bytes)`
/// Names, keys and JSON values longer than 64 bytes are shown as excerpts (excerpt(),
/// json_excerpt()). Header keys may come in any order; fields other than dtype/shape/data_offsets
/// are ignored.
inline SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  using hattn::detail::concat;
  const std::string where = concat("read_safetensors: ", detail::quoted(path), ": ");
  const RegularFile file = open_regular_file(path, "read_safetensors:");
  const std::uint64_t file_size = file.size();
  auto read_exactly = [&](void* p, std::size_t n) {
    if (file.read({static_cast<std::byte*>(p), n}) != n)
      throw Error(concat(where, "file changed while it was read (it was ", file_size, " bytes when opened)"));
  };

  if (file_size < 8) throw Error(concat(where, "file is ", file_size, " bytes, too short for the 8-byte header length"));
  std::uint64_t header_len = 0;
  read_exactly(&header_len, 8);
  detail::check_header_length(header_len, file_size, where);
  std::string header(static_cast<std::size_t>(header_len), '\0');
  read_exactly(header.data(), header.size());
  detail::HeaderTable table = detail::parse_header(header, file_size - 8 - header_len, where);

  SafetensorsFile f;
  f.path_ = path;
  f.adopt(std::move(table));
  read_exactly(f.buffer_.get(), f.data_size_);
  return f;
}

/// Parses and validates `bytes` as the whole of a safetensors file, exactly as read_safetensors()
/// does a file's content, with the same messages (`read_safetensors: '<name>': <problem>`; no
/// file system problems). The result holds a copy of the data section and reports `name` as its
/// path. Meant for bytes from elsewhere than a file, and for fuzzing.
inline SafetensorsFile parse_safetensors(std::span<const std::byte> bytes,
                                         const std::filesystem::path& name = "<memory>") {
  using hattn::detail::concat;
  const std::string where = concat("read_safetensors: ", detail::quoted(name), ": ");
  const std::uint64_t file_size = bytes.size();
  if (file_size < 8) throw Error(concat(where, "file is ", file_size, " bytes, too short for the 8-byte header length"));
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  detail::check_header_length(header_len, file_size, where);
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + 8, static_cast<std::size_t>(header_len));
  detail::HeaderTable table = detail::parse_header(header, file_size - 8 - header_len, where);

  SafetensorsFile f;
  f.path_ = name;
  f.adopt(std::move(table));
  if (f.data_size_ > 0) std::memcpy(f.buffer_.get(), bytes.data() + 8 + header_len, f.data_size_);
  return f;
}

/// One tensor to write: its name, dtype, shape and `numel * dtype_size(dtype)` bytes of
/// little-endian row-major data at `data` (not owned; may be null only when that is 0 bytes).
struct TensorRef {
  std::string name;          ///< unique within a file; "__metadata__" is reserved
  DType dtype = DType::F32;  ///< element type of the bytes at `data`
  std::vector<Index> shape;  ///< extents, outermost first; empty for a scalar
  const void* data = nullptr;  ///< first byte of the tensor

  /// A reference to `data`, typed: the dtype is dtype_of<T>().
  template <class T>
  static TensorRef of(std::string name, const T* data, std::vector<Index> shape) {
    return TensorRef{std::move(name), dtype_of<T>(), std::move(shape), data};
  }
};

/// Where write_safetensors(path, ...) writes before renaming over `path`: `<path>.tmp-<pid>`, in the
/// same directory, `pid` being the writing process's (by default this one's). A process killed
/// during a save leaves this file behind.
inline std::filesystem::path temporary_path(const std::filesystem::path& path, long pid = long(::getpid())) {
  return path.string() + ".tmp-" + std::to_string(pid);
}

namespace detail {

/// The environment variable of write_safetensors' test-only pause.
inline constexpr const char* pause_in_save_variable = "HATTN_TEST_PAUSE_IN_SAVE";

/// For tests only: when HATTN_TEST_PAUSE_IN_SAVE is set and not empty, stops the process with
/// SIGSTOP, so that a test sees it stopped (waitpid with WUNTRACED) in the middle of a save and
/// kills it there or lets it go on (SIGCONT). Nothing otherwise.
inline void pause_in_save_for_tests() {
  if (const char* v = std::getenv(pause_in_save_variable); v != nullptr && *v != '\0') ::raise(SIGSTOP);
}

}  // namespace detail

/// Writes `tensors` (data in the given order, the header listing them in that order after
/// "__metadata__", which is omitted when `metadata` is empty) to `path` as a safetensors file whose
/// header is padded with spaces to a multiple of 8 bytes, so that the data starts 8-byte aligned.
/// Atomic and durable: the bytes go to temporary_path(path) in the same directory, which is fsynced,
/// renamed over `path`, and the directory fsynced. On failure the temporary file is removed, `path`
/// is untouched and hattn::Error `write_safetensors: '<path>': <problem>` is thrown, <problem> being
/// one of `tensor name '<name>' appears more than once`, `tensor name "__metadata__" is reserved`,
/// `tensor '<name>': negative extent in shape [...]`, `tensor '<name>': shape [...] is too large`,
/// `tensor '<name>': data is null for <n> bytes`, `header is not valid UTF-8: <detail>`,
/// `cannot create temporary file '<tmp>': <errno text>`, `writing temporary file '<tmp>' failed:
/// <errno text>` (e.g. `No space left on device`), `cannot sync temporary file '<tmp>': <errno
/// text>`, `cannot close temporary file '<tmp>': <errno text>` or `cannot rename '<tmp>' to
/// '<path>': <errno text>`. Only if syncing the directory fails after the rename (the new file is in
/// place but may not survive a crash) does it throw `'<path>' was replaced, but syncing directory
/// '<dir>' failed: <errno text>`. The new file gets mode 0666 minus the umask. Two threads of one
/// process must not write the same path at the same time (they would share the temporary name).
/// With HATTN_TEST_PAUSE_IN_SAVE set (tests only), the process stops itself once the header and the
/// first half of the tensors are in the temporary file (detail::pause_in_save_for_tests).
inline void write_safetensors(const std::filesystem::path& path, std::span<const TensorRef> tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  using hattn::detail::concat;
  const std::string where = concat("write_safetensors: ", detail::quoted(path), ": ");
  auto fail = [&](const auto&... parts) { throw Error(concat(where, parts...)); };

  // Validate and build the header before touching the file system.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::vector<std::size_t> sizes;
  sizes.reserve(tensors.size());
  std::size_t offset = 0;
  for (const TensorRef& t : tensors) {
    if (t.name == "__metadata__") fail("tensor name \"__metadata__\" is reserved");
    if (header.contains(t.name)) fail("tensor name '", t.name, "' appears more than once");
    const std::string tensor = concat("tensor '", t.name, "': ");
    if (std::any_of(t.shape.begin(), t.shape.end(), [](Index d) { return d < 0; }))
      fail(tensor, "negative extent in shape ", detail::bracket_shape(t.shape));
    const auto numel = detail::checked_numel(t.shape);
    const auto nbytes = numel ? detail::checked_nbytes(*numel, t.dtype) : std::nullopt;
    if (!nbytes || *nbytes > std::numeric_limits<std::size_t>::max() - offset)
      fail(tensor, "shape ", detail::bracket_shape(t.shape), " is too large");
    if (t.data == nullptr && *nbytes > 0) fail(tensor, "data is null for ", *nbytes, " bytes");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + *nbytes}}};
    sizes.push_back(*nbytes);
    offset += *nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {  // invalid UTF-8 in a name or metadata string
    std::string msg = e.what();
    if (const auto close = msg.find("] "); close != std::string::npos) msg.erase(0, close + 2);
    fail("header is not valid UTF-8: ", msg);
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t header_len = text.size();

  // Write the temporary file; remove it on any failure.
  const std::filesystem::path tmp = temporary_path(path);
  detail::Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
  if (fd.get() < 0) {
    const int e = errno;
    fail("cannot create temporary file ", detail::quoted(tmp), ": ", detail::errno_text(e));
  }
  auto fail_removing = [&](const std::string& what, int err) {
    fd.close();
    ::unlink(tmp.c_str());
    fail(what, ": ", detail::errno_text(err));
  };
  int err = detail::write_all(fd.get(), &header_len, 8);
  if (!err) err = detail::write_all(fd.get(), text.data(), text.size());
  const std::size_t half = tensors.size() / 2;
  for (std::size_t i = 0; i < half && !err; ++i) err = detail::write_all(fd.get(), tensors[i].data, sizes[i]);
  if (!err) detail::pause_in_save_for_tests();
  for (std::size_t i = half; i < tensors.size() && !err; ++i) err = detail::write_all(fd.get(), tensors[i].data, sizes[i]);
  if (err) fail_removing(concat("writing temporary file ", detail::quoted(tmp), " failed"), err);
  if (::fsync(fd.get()) != 0) {
    const int e = errno;
    fail_removing(concat("cannot sync temporary file ", detail::quoted(tmp)), e);
  }
  if (const int e = fd.close()) fail_removing(concat("cannot close temporary file ", detail::quoted(tmp)), e);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename ", detail::quoted(tmp), " to ", detail::quoted(path), ": ", detail::errno_text(e));
  }

  // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL): nothing to do.
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  detail::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const int derr = dfd.get() < 0 ? errno : (::fsync(dfd.get()) != 0 ? errno : 0);
  if (derr != 0 && derr != EINVAL)
    fail(detail::quoted(path), " was replaced, but syncing directory ", detail::quoted(dir), " failed: ",
         detail::errno_text(derr));
}

}  // namespace hattn::io
