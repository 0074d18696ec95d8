#pragma once
/// \file
/// Tokenizing a text file in chunks: only the token array is ever whole in memory, never the text.
/// POSIX only (open/read/fstat). Only regular files are read (no FIFOs, devices or sockets), and
/// exactly as many bytes as the file's size.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/io/regular_file.hpp"  // io::detail::file_kind

namespace hattn::data {

/// What read_tokens accepts as a tokenizer: an object with `encode(std::string_view)` (e.g. the
/// hattn::io tokenizers), or a callable taking a std::string_view, returning a
/// std::vector<std::int32_t>.
template <class Tok>
concept TextEncoder = requires(Tok& t, std::string_view s) {
  { t.encode(s) } -> std::convertible_to<std::vector<std::int32_t>>;
} || requires(Tok& t, std::string_view s) {
  { t(s) } -> std::convertible_to<std::vector<std::int32_t>>;
};

/// Bytes read_tokens reads at a time by default.
inline constexpr std::size_t default_chunk_bytes = std::size_t{1} << 20;

namespace detail {

/// ASCII whitespace: space, \t, \n, \v, \f, \r. These bytes never occur inside a multi-byte UTF-8
/// character, so splitting before one never splits a character.
constexpr bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/// A printable ASCII character other than space (0x21 to 0x7E): a whole character that is not
/// whitespace in any encoding's sense (unlike the bytes of U+00A0 or U+3000, which are).
constexpr bool is_visible_ascii(char c) { return c > ' ' && c < '\x7f'; }

/// Where a chunk of `text` may end: the largest p with text[p] ASCII whitespace and text[p - 1] a
/// visible ASCII character; 0 when there is none. A split there cuts no character and no run of
/// (Unicode) whitespace.
constexpr std::size_t split_point(std::string_view text) {
  for (std::size_t p = text.size(); p-- > 1;)
    if (is_space(text[p]) && is_visible_ascii(text[p - 1])) return p;
  return 0;
}

template <class Tok>
std::vector<std::int32_t> encode(Tok& tokenizer, std::string_view text) {
  if constexpr (requires { tokenizer.encode(text); })
    return tokenizer.encode(text);
  else
    return tokenizer(text);
}

inline std::string quoted(const std::filesystem::path& p) {
  std::string s = p.string();
  s.insert(s.begin(), '\'');
  s.push_back('\'');
  return s;
}

/// Closes a file descriptor on scope exit.
struct FileCloser {
  int fd;
  ~FileCloser() { ::close(fd); }
};

/// Throws hattn::Error unless `st` (the fstat of `path`, opened without blocking) describes a
/// regular file, before anything is read: a FIFO would block, a device such as /dev/zero never
/// ends. A directory gives "<op>: cannot read '<path>': Is a directory" (as read(2) would say),
/// anything else "<op>: '<path>' is not a regular file (<kind>)", kind as io::detail::file_kind names it.
inline void require_regular_file(const struct stat& st, const std::filesystem::path& path, const char* op) {
  if (S_ISREG(st.st_mode)) return;
  if (S_ISDIR(st.st_mode))
    throw Error(hattn::detail::concat(op, ": cannot read ", quoted(path), ": ", std::generic_category().message(EISDIR)));
  throw Error(hattn::detail::concat(op, ": ", quoted(path), " is not a regular file (", io::detail::file_kind(st.st_mode), ")"));
}

}  // namespace detail

/// Tokenizes the regular file at `path` with `tokenizer` and returns all its ids, reading
/// `chunk_bytes` at a time so that the text is never held whole in memory (only the current piece
/// of it and the ids). It reads exactly the size fstat reports when the file is opened, and stores
/// that count in `*bytes_read` when `bytes_read` is not null.
///
/// Chunk boundaries: each piece handed to the tokenizer ends with a visible ASCII character
/// (0x21-0x7E) and the next begins with the ASCII whitespace byte that followed it
/// (detail::split_point): the boundary is the start of a whitespace run. GPT-2's pre-tokenizer
/// (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, no look-behind)
/// never makes a pre-token that spans a non-whitespace character followed by whitespace, so the ids
/// equal those of tokenizing the whole text at once; byte-level tokenizers are indifferent to
/// boundaries. (Requiring an ASCII character before the boundary keeps it out of runs of Unicode
/// whitespace such as U+00A0 followed by a space, which GPT-2 tokenizes as one run.) When a chunk holds no such boundary (a run of
/// more than chunk_bytes bytes without whitespace), further chunks are appended to it until one is
/// found or the file ends, so the piece can grow beyond chunk_bytes. After the first piece, the ids
/// array is reserved for the whole file at the first piece's ids-per-byte rate.
///
/// The file is opened without blocking and checked to be a regular file before any read
/// (detail::require_regular_file), so a FIFO, a socket or a device such as /dev/zero is refused
/// at once. A file whose content differs in length from its size (one truncated or appended to
/// while it is read, or a /proc file, which reports a size of 0) is an error, not a shorter or
/// longer text.
///
/// Throws hattn::Error, with `'<path>'` quoted:
///   "read_tokens: '<path>' does not exist"              (no such file)
///   "read_tokens: cannot open '<path>': <reason>"       (e.g. "Permission denied")
///   "read_tokens: cannot read '<path>': <reason>"       (e.g. "Is a directory", "Input/output error")
///   "read_tokens: '<path>' is not a regular file (<kind>)"  (kind: "a FIFO", "a character device", ...)
///   "read_tokens: '<path>' ended after <n> of its <size> bytes (was it truncated while being read?)"
///   "read_tokens: '<path>' grew while being read (beyond the <size> bytes it had when opened)"
///   "read_tokens: '<path>' has content but a size of 0: not an ordinary file (e.g. one under /proc)"
///   "read_tokens: '<path>' is empty"
///   "read_tokens: '<path>' gave no tokens (<n> bytes)"  (the tokenizer returned nothing at all)
///   "read_tokens: chunk_bytes must be >= 1, got 0"
template <TextEncoder Tok>
std::vector<std::int32_t> read_tokens(const std::filesystem::path& path, Tok&& tokenizer,
                                      std::size_t chunk_bytes = default_chunk_bytes,
                                      std::uint64_t* bytes_read = nullptr) {
  constexpr const char* op = "read_tokens";
  hattn::detail::require(chunk_bytes >= 1, op, "chunk_bytes must be >= 1, got ", chunk_bytes);
  // O_NONBLOCK: opening a FIFO without a writer would block; O_NOCTTY: a terminal stays unowned.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    hattn::detail::require(err != ENOENT, op, detail::quoted(path), " does not exist");
    struct stat st {};
    if (err == ENXIO && ::stat(path.c_str(), &st) == 0) detail::require_regular_file(st, path, op);  // a socket
    throw Error(hattn::detail::concat(op, ": cannot open ", detail::quoted(path), ": ",
                                      std::generic_category().message(err)));
  }
  const detail::FileCloser closer{fd};
  auto fail_reading = [&](int err) {
    throw Error(hattn::detail::concat(op, ": cannot read ", detail::quoted(path), ": ",
                                      std::generic_category().message(err)));
  };
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_reading(errno);
  detail::require_regular_file(st, path, op);
  if (const int flags = ::fcntl(fd, F_GETFL); flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const std::uint64_t file_bytes = std::uint64_t(st.st_size);

  // Reads up to n bytes at p, fewer only at the end of the file.
  auto read_up_to = [&](char* p, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      const ssize_t r = ::read(fd, p + got, n - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail_reading(errno);
      if (r == 0) break;
      got += std::size_t(r);
    }
    return got;
  };

  std::vector<std::int32_t> ids;
  std::string piece;  // (carried bytes + chunk_bytes) the text not yet tokenized
  std::uint64_t total = 0;
  bool first = true;
  auto tokenize = [&](std::string_view text) {
    const std::vector<std::int32_t> out = detail::encode(tokenizer, text);
    if (first && file_bytes > text.size() && !text.empty()) {
      const double rate = double(out.size()) / double(text.size());
      ids.reserve(std::size_t(std::ceil(rate * double(file_bytes))));
    }
    first = false;
    ids.insert(ids.end(), out.begin(), out.end());
  };
  for (;;) {
    const std::size_t kept = piece.size();
    const std::size_t want = std::size_t(std::min<std::uint64_t>(chunk_bytes, file_bytes - total));
    piece.resize(kept + want);
    const std::size_t got = read_up_to(piece.data() + kept, want);
    piece.resize(kept + got);
    total += got;
    hattn::detail::require(got == want, op, detail::quoted(path), " ended after ", total, " of its ", file_bytes,
                           " bytes (was it truncated while being read?)");
    if (total == file_bytes) break;  // all of it: `piece` is the rest
    const std::size_t p = detail::split_point(piece);
    if (p == 0) continue;  // no boundary yet: read more into the same piece
    tokenize(std::string_view(piece).substr(0, p));
    piece.erase(0, p);
  }
  char extra = 0;  // the size was the whole content, unless one more byte can be read
  if (read_up_to(&extra, 1) != 0) {
    hattn::detail::require(file_bytes > 0, op, detail::quoted(path),
                           " has content but a size of 0: not an ordinary file (e.g. one under /proc)");
    throw Error(hattn::detail::concat(op, ": ", detail::quoted(path), " grew while being read (beyond the ",
                                      file_bytes, " bytes it had when opened)"));
  }
  hattn::detail::require(total > 0, op, detail::quoted(path), " is empty");
  if (!piece.empty()) tokenize(piece);
  hattn::detail::require(!ids.empty(), op, detail::quoted(path), " gave no tokens (", total, " bytes)");
  if (bytes_read) *bytes_read = total;
  return ids;
}

}  // namespace hattn::data
