#pragma once
// metrics.jsonl, the log of a training run: one JSON object per line, each line handed to the
// kernel whole, in one write, as soon as it is made, so that a killed run's log holds every line
// it made and no torn one; and, for --resume, the log cut back to the checkpoint it resumes from.

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

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

/// Replaces the file at `path` by one holding `text`, atomically and durably, as write_safetensors
/// does: the bytes go to io::temporary_path(path), which is synced and renamed over `path`, and the
/// directory is synced. On failure the temporary file is removed, `path` is untouched and
/// hattn::Error "cannot replace '<path>': <step> '<tmp>': <reason>" is thrown.
inline void replace_file(const std::filesystem::path& path, std::string_view text) {
  const std::filesystem::path tmp = io::temporary_path(path);
  auto fail = [&](const char* step, int err) {
    ::unlink(tmp.c_str());
    throw Error(hattn::detail::concat("cannot replace ", io::detail::quoted(path), ": ", step, " ",
                                      io::detail::quoted(tmp), ": ", io::detail::errno_text(err)));
  };
  {
    io::detail::Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
    if (fd.get() < 0) fail("cannot create", errno);
    if (const int err = io::detail::write_all(fd.get(), text.data(), text.size())) fail("cannot write", err);
    if (::fsync(fd.get()) != 0) fail("cannot sync", errno);
    if (const int err = fd.close()) fail("cannot close", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename", errno);
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  io::detail::Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());  // best effort: the new file is in place either way
}

/// What trim_metrics kept and dropped, in lines.
struct MetricsTrim {
  std::size_t kept = 0;     ///< lines kept
  std::size_t dropped = 0;  ///< lines dropped
};

/// Cuts the metrics log at `path` back to what a checkpoint of step `step` has seen, so that the
/// log of a resumed run matches its weights. Keeps, in order, the whole lines (ending in a newline)
/// that are JSON objects with an integer "step" <= `step`; when a kept line's step comes again (an
/// older run resumed from an earlier checkpoint without cutting its log), the later lines win: a
/// training line (one with "loss") replaces the kept lines of its step and after, a validation line
/// those after its step. Drops everything else: later steps, a torn last line, lines that are not
/// such objects. The file is replaced atomically (replace_file) if anything is dropped, and left
/// alone otherwise; a missing file is nothing to cut. Throws hattn::Error "cannot read '<path>'"
/// or replace_file's.
inline MetricsTrim trim_metrics(const std::filesystem::path& path, std::int64_t step) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream in(path, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad() || !in.is_open()) throw Error(hattn::detail::concat("cannot read ", io::detail::quoted(path)));

  struct Line {
    std::string_view text;  // with its newline
    std::int64_t step;
  };
  std::vector<Line> kept;
  std::size_t lines = 0;
  for (std::size_t begin = 0; begin < text.size();) {
    const std::size_t end = text.find('\n', begin);
    ++lines;
    if (end == std::string::npos) break;  // a torn last line
    const std::string_view line = std::string_view(text).substr(begin, end + 1 - begin);
    begin = end + 1;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    const std::int64_t s = j["step"].get<std::int64_t>();
    if (s > step) continue;
    const bool training = j.contains("loss");
    while (!kept.empty() && (kept.back().step > s || (training && kept.back().step == s))) kept.pop_back();
    kept.push_back({line, s});
  }
  const MetricsTrim trim{kept.size(), lines - kept.size()};
  if (trim.dropped == 0) return trim;
  std::string out;
  for (const Line& l : kept) out += l.text;
  replace_file(path, out);
  return trim;
}

}  // namespace hattn::cli
