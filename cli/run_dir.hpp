#pragma once
// The output directory of a training run: an exclusive lock that keeps a second `hattn train` out
// of it while one runs, and the removal of the temporary files that a killed save left there.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/io/safetensors.hpp"

namespace hattn::cli {

/// The lock file of a run directory, `<dir>/.hattn.lock`.
inline constexpr const char* lock_file_name = ".hattn.lock";

/// An exclusive flock(2) on `<dir>/.hattn.lock`, held from construction to destruction. The kernel
/// releases it when the process ends, however it ends (kill -9 included), so a lock is never left
/// stale. The file holds the holder's pid, so that a refused run can name it; it stays in the
/// directory afterwards (deleting it would let two runs lock two different files of one name).
class RunLock {
 public:
  /// Creates `<dir>/.hattn.lock` if needed and locks it without waiting. Throws hattn::Error
  ///   "'<dir>' is in use by another hattn train (pid <pid>): wait for it to end, or pass another --out"
  ///   ("pid unknown" while the holder has not written its pid yet), or
  ///   "cannot lock '<dir>/.hattn.lock': <reason>".
  explicit RunLock(const std::filesystem::path& dir)
      : dir_(dir), fd_(::open((dir / lock_file_name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666)) {
    const std::filesystem::path file = dir / lock_file_name;
    auto fail = [&](int err) {
      throw Error(hattn::detail::concat("cannot lock ", io::detail::quoted(file), ": ", io::detail::errno_text(err)));
    };
    if (fd_.get() < 0) fail(errno);
    int rc;
    do rc = ::flock(fd_.get(), LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      if (errno != EWOULDBLOCK) fail(errno);
      char buf[32] = {};
      const ::ssize_t n = ::pread(fd_.get(), buf, sizeof buf - 1, 0);
      const long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
      throw Error(hattn::detail::concat(io::detail::quoted(dir_), " is in use by another hattn train (pid ",
                                        pid > 0 ? std::to_string(pid) : std::string("unknown"),
                                        "): wait for it to end, or pass another --out"));
    }
    // Ours: record the pid for the message above (best effort: the lock holds without it).
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_.get(), 0) != 0 || ::pwrite(fd_.get(), pid.data(), pid.size(), 0) < 0) {
    }
  }

  /// The locked directory.
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  io::detail::Fd fd_;
};

/// A temporary file of a save (io::temporary_path) found by remove_stale_temporaries.
struct StaleTemporary {
  std::filesystem::path path;  ///< the file
  long pid = 0;                ///< the process that wrote it
  std::uintmax_t bytes = 0;    ///< its size
  bool removed = false;        ///< false: a running process has that pid, so the file was kept
};

/// Removes what saves that never finished left in the locked directory: for each of `names`
/// (e.g. "checkpoint.safetensors"), the regular files named `<name>.tmp-<pid>`
/// (io::temporary_path) whose writer is gone, and nothing else. Holding `lock` means that no other
/// hattn train writes there. A file is removed when its pid is this process's (which has saved
/// nothing yet: an earlier process had the same pid, as happens in a fresh container) or no
/// process has it; it is kept when a running process has the pid: most likely the pid was reused,
/// but the writer could also be a program that does not take the lock (an older hattn, or one
/// calling write_safetensors), and removing its file would fail its save. Returns every file
/// found, removed or kept, sorted by path.
inline std::vector<StaleTemporary> remove_stale_temporaries(const RunLock& lock,
                                                            std::span<const std::string_view> names) {
  namespace fs = std::filesystem;
  std::vector<StaleTemporary> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(lock.dir(), ec)) {
    const std::string file = entry.path().filename().string();
    for (const std::string_view name : names) {
      const std::string prefix = io::temporary_path(std::string(name), 0).string();  // "<name>.tmp-0"
      const std::string_view stem = std::string_view(prefix).substr(0, prefix.size() - 1);
      if (!file.starts_with(stem) || file.size() == stem.size() || file.size() > stem.size() + 9) continue;
      const std::string digits = file.substr(stem.size());
      if (digits.find_first_not_of("0123456789") != std::string::npos || digits[0] == '0') continue;
      std::error_code e;
      if (entry.is_symlink(e) || !entry.is_regular_file(e)) continue;
      StaleTemporary t{entry.path(), std::stol(digits), entry.file_size(e), false};
      const bool gone = ::kill(pid_t(t.pid), 0) != 0 && errno == ESRCH;
      if (t.pid == long(::getpid()) || gone) t.removed = fs::remove(t.path, e);
      found.push_back(std::move(t));
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& x, const auto& y) { return x.path < y.path; });
  return found;
}

}  // namespace hattn::cli
