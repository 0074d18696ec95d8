#pragma once
/// \file
/// How messages quote what a file holds: a short text or JSON value whole, a long one as its first
/// bytes followed by "... (<n> bytes)", so that a message never grows with the file.

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace hattn::io {

/// The most bytes of a text or a JSON value that a message quotes.
inline constexpr std::size_t max_excerpt_bytes = 64;

namespace detail {

/// The length of the longest prefix of `s` of at most `n` bytes that does not end inside a UTF-8
/// sequence (it backs off over at most 3 continuation bytes).
constexpr std::size_t utf8_prefix_length(std::string_view s, std::size_t n) {
  if (n >= s.size()) return s.size();
  for (int k = 0; k < 3 && n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80; ++k) --n;
  return n;
}

/// `shown` + "... (<total> bytes)".
inline std::string elided(std::string shown, std::size_t total) {
  shown += "... (";
  shown += std::to_string(total);
  shown += " bytes)";
  return shown;
}

/// Serializes a JSON value as dump() does, keeping only the first `limit` + 1 bytes of the text
/// but counting all of them: memory stays bounded whatever the value's size.
class BoundedDump {
 public:
  /// Keeps the first `limit` + 1 bytes.
  explicit BoundedDump(std::size_t limit) : limit_(limit) {}

  /// Appends the serialization of `v` (one level of recursion per level of nesting).
  void value(const nlohmann::json& v) {
    if (v.is_object()) {
      add("{");
      bool first = true;
      for (const auto& [k, x] : v.items()) {
        if (!first) add(",");
        first = false;
        string(k);
        add(":");
        value(x);
      }
      add("}");
    } else if (v.is_array()) {
      add("[");
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i) add(",");
        value(v[i]);
      }
      add("]");
    } else if (v.is_string()) {
      string(v.get_ref<const std::string&>());
    } else {
      add(v.dump());  // a number, boolean or null: short
    }
  }

  /// The first bytes of the serialization.
  const std::string& text() const { return out_; }
  /// The length of the whole serialization.
  std::size_t total() const { return total_; }

 private:
  void add(std::string_view piece) {
    total_ += piece.size();
    if (out_.size() <= limit_) out_.append(piece.substr(0, limit_ + 1 - out_.size()));
  }
  // dump() of the string, a few KB at a time (pieces end on UTF-8 boundaries, so each is valid).
  void string(std::string_view s) {
    add("\"");
    for (std::size_t i = 0; i < s.size();) {
      std::size_t n = utf8_prefix_length(s.substr(i), 4096);
      if (n == 0) n = 1;
      const std::string d = nlohmann::json(std::string(s.substr(i, n))).dump(-1, ' ', false,
                                                                             nlohmann::json::error_handler_t::replace);
      add(std::string_view(d).substr(1, d.size() - 2));
      i += n;
    }
    add("\"");
  }

  std::size_t limit_;
  std::size_t total_ = 0;
  std::string out_;
};

}  // namespace detail

/// `s` when it is at most max_excerpt_bytes long; otherwise its first max_excerpt_bytes bytes
/// (fewer if that would cut a UTF-8 character) and "... (<s.size()> bytes)".
inline std::string excerpt(std::string_view s) {
  if (s.size() <= max_excerpt_bytes) return std::string(s);
  return detail::elided(std::string(s.substr(0, detail::utf8_prefix_length(s, max_excerpt_bytes))), s.size());
}

/// `v.dump()` when that is at most max_excerpt_bytes long; otherwise its first max_excerpt_bytes
/// bytes and "... (<n> bytes)", n being the length of the whole dump. Never builds the whole dump.
inline std::string json_excerpt(const nlohmann::json& v) {
  detail::BoundedDump d(max_excerpt_bytes);
  d.value(v);
  if (d.total() <= max_excerpt_bytes) return d.text();
  return detail::elided(d.text().substr(0, detail::utf8_prefix_length(d.text(), max_excerpt_bytes)), d.total());
}

}  // namespace hattn::io
