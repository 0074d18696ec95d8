#pragma once
/// \file
/// Tokenizers: the common interface every tokenizer implements, and the byte-level tokenizer.
/// GPT-2's byte-level BPE (Gpt2Bpe) and make_tokenizer(), which builds either by name, live in
/// hattn/io/gpt2_bpe.hpp.
///
/// A tokenizer maps text, taken as arbitrary bytes, to token ids in [0, vocab_size()) and back.
/// Every tokenizer here is lossless: decode(encode(s)) == s for every byte string s, including
/// invalid UTF-8.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hattn/core/error.hpp"

namespace hattn::io {

/// The interface callers hold when the tokenizer is chosen at run time (e.g. a
/// `std::unique_ptr<Tokenizer>` from make_tokenizer()). Implementations are immutable after
/// construction as far as callers can tell, and every member is safe to call from several threads.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// The token ids of `text` (any bytes).
  /// ensures: every id is in [0, vocab_size()); decode(encode(text)) == text.
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;

  /// The bytes that `ids` stand for, concatenated. The result need not be valid UTF-8 (a slice of
  /// a token sequence can end inside a character).
  /// requires: every id in [0, vocab_size()); otherwise throws hattn::Error
  /// `<Class>::decode: id <id> at position <i> is outside [0, <vocab_size>)`.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;

  /// Number of ids: every id is in [0, vocab_size()).
  virtual std::int32_t vocab_size() const = 0;

  /// Short name, as make_tokenizer() accepts it: "byte" or "gpt2".
  virtual std::string_view name() const = 0;

  /// The end-of-text id that separates documents, when the vocabulary has one.
  virtual std::optional<std::int32_t> eot() const = 0;

 protected:
  Tokenizer() = default;
  Tokenizer(const Tokenizer&) = default;
  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(const Tokenizer&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;
};

namespace detail {

/// Throws `<op>: id <id> at position <i> is outside [0, <vocab_size>)` for the first id of `ids`
/// outside [0, vocab_size), if any.
inline void check_decode_ids(std::span<const std::int32_t> ids, std::int32_t vocab_size, std::string_view op) {
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size)
      throw Error(hattn::detail::concat(op, ": id ", ids[i], " at position ", i, " is outside [0, ", vocab_size,
                                        ")"));
}

}  // namespace detail

/// The byte-level tokenizer: 256 ids, id = byte value (0..255), one id per byte of the text.
/// It has no end-of-text id: all 256 ids are bytes, so none is free to mark a document boundary
/// (eot() is empty); a model that needs one uses a larger vocabulary such as GPT-2's.
class ByteTokenizer final : public Tokenizer {
 public:
  /// Number of ids.
  static constexpr std::int32_t size = 256;

  /// One id per byte: ids[i] = (unsigned char)text[i].
  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }

  /// One byte per id. Throws hattn::Error
  /// `ByteTokenizer::decode: id <id> at position <i> is outside [0, 256)`.
  std::string decode(std::span<const std::int32_t> ids) const override {
    detail::check_decode_ids(ids, size, "ByteTokenizer::decode");
    std::string text(ids.size(), '\0');
    for (std::size_t i = 0; i < ids.size(); ++i) text[i] = static_cast<char>(static_cast<unsigned char>(ids[i]));
    return text;
  }

  /// 256.
  std::int32_t vocab_size() const override { return size; }

  /// "byte".
  std::string_view name() const override { return "byte"; }

  /// Empty: the byte vocabulary has no end-of-text id.
  std::optional<std::int32_t> eot() const override { return std::nullopt; }
};

}  // namespace hattn::io
