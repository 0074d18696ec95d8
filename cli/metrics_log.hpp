#pragma once
// metrics.jsonl, the log of a training run: one JSON object per line, each line handed to the
// kernel whole, in one write, as soon as it is made, so that a killed run's log holds every line
// it made and no torn one.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "hattn/core/error.hpp"
#include "hattn/io/safetensors.hpp"

namespace hattn::cli {

/// An append-only JSON-lines file, written without a user-space buffer.
class MetricsLog {
 public:
  /// Opens `path` for appending, emptied first unless `append`. Throws hattn::Error
  /// "cannot open '<path>': <reason>".
  MetricsLog(const std::filesystem::path& path, bool append)
      : path_(path),
        fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0666)) {
    if (fd_.get() < 0)
      throw Error(hattn::detail::concat("cannot open ", io::detail::quoted(path_), ": ", io::detail::errno_text(errno)));
  }

  /// Appends `record.dump()` and a newline in one write(2): when this returns the kernel has the
  /// line, so a killed process loses none (nothing is synced: a power cut may). Throws hattn::Error
  /// "cannot write '<path>': <reason>", e.g. "No space left on device".
  void append(const nlohmann::json& record) {
    std::string line = record.dump();
    line.push_back('\n');
    if (const int err = io::detail::write_all(fd_.get(), line.data(), line.size()))
      throw Error(hattn::detail::concat("cannot write ", io::detail::quoted(path_), ": ", io::detail::errno_text(err)));
  }

  /// The file's path.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  io::detail::Fd fd_;
};

}  // namespace hattn::cli
