#pragma once
/// \file
/// Opening files for reading that must be regular files. A FIFO, a device, a directory or a file
/// of a pseudo file system (/proc, /sys) is refused with a message before anything is read from
/// it, and without blocking: a FIFO nobody writes to would otherwise hang the reader, /dev/zero
/// would never end, and /proc files report a size of 0 whatever they hold. Reads stop at the size
/// the file had when it was opened. POSIX (open/fstat/read), plus statfs on Linux.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/vfs.h>
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "hattn/core/error.hpp"

namespace hattn::io {

namespace detail {

/// "a FIFO", "a directory", ... for a st_mode that is not S_ISREG.
inline const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "of an unknown kind";
}

/// The pseudo file system `fd` lives on ("the proc file system", "sysfs"), or null for any other.
inline const char* pseudo_file_system(int fd) {
#if defined(__linux__)
  struct ::statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return nullptr;
  if (fs.f_type == 0x9fa0) return "the proc file system";  // PROC_SUPER_MAGIC
  if (fs.f_type == 0x62656572) return "sysfs";            // SYSFS_MAGIC
#else
  (void)fd;
#endif
  return nullptr;
}

/// "<what> '<path>'", how messages name the file.
inline std::string file_label(std::string_view what, const std::filesystem::path& path) {
  std::string s(what);
  if (!s.empty()) s += ' ';
  s += '\'';
  s += path.string();
  s += '\'';
  return s;
}

}  // namespace detail

/// A regular file open for reading: its descriptor (closed on destruction) and its size when it
/// was opened. Move-only. Obtained from open_regular_file().
class RegularFile {
 public:
  /// Takes over `o`'s descriptor (`o` is left closed).
  RegularFile(RegularFile&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), size_(o.size_), label_(std::move(o.label_)) {}
  /// Closes this descriptor and takes over `o`'s.
  RegularFile& operator=(RegularFile&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      size_ = o.size_;
      label_ = std::move(o.label_);
    }
    return *this;
  }
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  /// Closes the descriptor.
  ~RegularFile() { reset(); }

  /// The file descriptor (blocking reads, close-on-exec); owned by this object.
  int fd() const noexcept { return fd_; }

  /// The file's size in bytes when it was opened.
  std::uint64_t size() const noexcept { return size_; }

  /// Reads into `out` from the current position until it is full or the file ends; returns the
  /// number of bytes read (less than out.size() only at the end of the file). Throws hattn::Error
  /// `<what> '<path>': cannot read: <errno text>`.
  std::size_t read(std::span<std::byte> out) const {
    std::size_t got = 0;
    while (got < out.size()) {
      const ::ssize_t r = ::read(fd_, out.data() + got, out.size() - got);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw Error(label_ + ": cannot read: " + std::generic_category().message(errno));
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    return got;
  }

 private:
  friend RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what);
  RegularFile(int fd, std::uint64_t size, std::string label) : fd_(fd), size_(size), label_(std::move(label)) {}
  void reset() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::string label_;  // "<what> '<path>'"
};

/// Opens `path` for reading if it is a regular file. `what` starts every message (e.g.
/// `read_safetensors:` or `corpus file`; may be empty). Throws hattn::Error
/// - `<what> '<path>': cannot open: <errno text>` (e.g. `No such file or directory`)
/// - `<what> '<path>' is not a regular file (it is a FIFO)`, or `a directory`, `a character device`,
///   `a block device`, `a socket`; `(it is in the proc file system)` / `(it is in sysfs)`.
/// The path is checked with stat() before it is opened, so nothing but a regular file is ever
/// opened (opening a device can have effects of its own); it is then opened with O_NONBLOCK, which
/// cannot block even on a FIFO, and checked again with fstat(), so a file swapped in between is
/// refused too. The descriptor is blocking afterwards.
inline RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what) {
  const std::string label = detail::file_label(what, path);
  auto refuse = [&](std::string_view kind) {
    throw Error(hattn::detail::concat(label, " is not a regular file (it is ", kind, ")"));
  };
  auto cannot_open = [&](int err) { throw Error(label + ": cannot open: " + std::generic_category().message(err)); };
  struct ::stat st {};
  if (::stat(path.c_str(), &st) != 0) cannot_open(errno);
  if (!S_ISREG(st.st_mode)) refuse(detail::file_kind(st.st_mode));
  RegularFile file(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC), 0, label);
  if (file.fd_ < 0 || ::fstat(file.fd_, &st) != 0) cannot_open(errno);
  if (!S_ISREG(st.st_mode)) refuse(detail::file_kind(st.st_mode));
  if (const char* fs = detail::pseudo_file_system(file.fd_)) refuse(std::string("in ") + fs);
  if (const int flags = ::fcntl(file.fd_, F_GETFL); flags >= 0) ::fcntl(file.fd_, F_SETFL, flags & ~O_NONBLOCK);
  file.size_ = st.st_size > 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
  return file;
}

/// The whole content of the regular file `path` (as open_regular_file() checks it), which may
/// hold at most `max_bytes` bytes. Throws open_regular_file()'s errors, RegularFile::read()'s, and
/// hattn::Error `<what> '<path>' is <n> bytes, more than the limit of <max_bytes>`.
inline std::string read_regular_file(const std::filesystem::path& path, std::string_view what,
                                     std::uint64_t max_bytes) {
  const RegularFile file = open_regular_file(path, what);
  if (file.size() > max_bytes)
    throw Error(hattn::detail::concat(detail::file_label(what, path), " is ", file.size(),
                                      " bytes, more than the limit of ", max_bytes));
  std::string text(static_cast<std::size_t>(file.size()), '\0');
  text.resize(file.read(std::as_writable_bytes(std::span(text))));
  return text;
}

}  // namespace hattn::io
