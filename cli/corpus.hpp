#pragma once
// Reading a training corpus: one text file, or every text file of a directory (the default corpus is
// Debian's fortunes, a directory of plain-text files with binary *.dat indexes beside them).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hattn/core/error.hpp"
#include "hattn/data/text_file.hpp"
#include "hattn/io/tokenizer.hpp"

namespace hattn::cli {

/// Where `hattn train` looks for text when given none: Debian's `fortunes` package.
inline constexpr const char* default_corpus = "/usr/share/games/fortunes";

/// The text files a corpus path stands for: the file itself, or the regular files of a directory
/// (not symbolic links, not *.dat indexes), sorted by name.
inline std::vector<std::filesystem::path> corpus_files(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.is_symlink() || !e.is_regular_file() || e.path().extension() == ".dat") continue;
    files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  detail::require(!files.empty(), "corpus", "'", path.string(), "' is a directory without text files");
  return files;
}

/// Tokens of every file of the corpus, in order, and in `*bytes` (when not null) the bytes read.
/// Throws hattn::Error for a missing, unreadable, empty or non-regular file, or one that changed
/// while it was read (read_tokens' messages).
inline std::vector<std::int32_t> read_corpus(const std::filesystem::path& path, const io::Tokenizer& tok,
                                             std::size_t* bytes = nullptr) {
  std::vector<std::int32_t> tokens;
  std::size_t total = 0;
  for (const auto& file : corpus_files(path)) {
    std::uint64_t file_bytes = 0;
    const auto t = data::read_tokens(file, tok, data::default_chunk_bytes, &file_bytes);
    tokens.insert(tokens.end(), t.begin(), t.end());
    total += std::size_t(file_bytes);
  }
  if (bytes) *bytes = total;
  return tokens;
}

}  // namespace hattn::cli
