#pragma once
/// \file
/// Parsing JSON read from files: nlohmann's parser with two limits a hostile file could otherwise
/// exploit. Nesting is bounded while parsing (nlohmann's parser and destructor are iterative, but
/// dump(), copies and comparisons recurse once per level, so 100,000 nested `[` would overflow the
/// stack later), and a key that appears twice in one object is an error (nlohmann would keep the
/// last silently). Every JSON text hattn reads from a file goes through parse_json().

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hattn/io/excerpt.hpp"

namespace hattn::io {

/// The deepest nesting of arrays and objects parse_json() accepts by default (a safetensors
/// header needs 3, encoder.json and checkpoint metadata 1).
inline constexpr std::size_t max_json_depth = 64;

/// Why parse_json() rejected a text.
struct JsonProblem {
  /// What kind of defect.
  enum class Kind {
    syntax,         ///< not JSON (also invalid UTF-8, trailing bytes, number overflow)
    too_deep,       ///< arrays and objects nested deeper than the limit
    duplicate_key,  ///< a key twice in one object
  };
  Kind kind = Kind::syntax;               ///< what kind
  std::string message;                    ///< syntax: nlohmann's message, e.g. `parse error at line 1, column 7: ...`
  std::size_t byte = 0;                   ///< syntax: the 1-based position of the byte where it was detected
  std::size_t max_depth = 0;              ///< too_deep: the limit
  std::string key;                        ///< duplicate_key: the key
  std::vector<std::string> path;          ///< duplicate_key: the keys leading to its object (empty: the top level)

  /// The defect as the rest of a sentence about the text: `is not valid JSON: <message>`,
  /// `nests arrays and objects deeper than <max_depth> levels` or `has key '<key>' more than once`
  /// (followed by ` in '<a>' > '<b>'` for an object inside others). Keys are excerpts.
  std::string describe() const {
    switch (kind) {
      case Kind::syntax:
        return "is not valid JSON: " + message;
      case Kind::too_deep:
        return "nests arrays and objects deeper than " + std::to_string(max_depth) + " levels";
      case Kind::duplicate_key:
        break;
    }
    std::string s = "has key '" + excerpt(key) + "' more than once";
    for (std::size_t i = 0; i < path.size(); ++i) s += (i ? " > '" : " in '") + excerpt(path[i]) + "'";
    return s;
  }
};

/// What parse_json() returns: the document, or the reason there is none.
struct ParsedJson {
  nlohmann::json value;                ///< the document (null when `problem` is set)
  std::optional<JsonProblem> problem;  ///< set when the text was rejected
};

namespace detail {

/// nlohmann SAX handler that builds the document as nlohmann's own parser does, stopping at the
/// first object or array deeper than the limit and at the first duplicate key.
class BoundedJsonBuilder {
 public:
  using json = nlohmann::json;

  /// A builder that accepts `max_depth` nested arrays and objects.
  explicit BoundedJsonBuilder(std::size_t max_depth) : max_depth_(max_depth) {}

  // The SAX events of nlohmann's json_sax interface; false stops the parser.
  bool null() { return put(json(nullptr)); }
  bool boolean(bool v) { return put(json(v)); }
  bool number_integer(json::number_integer_t v) { return put(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return put(json(v)); }
  bool number_float(json::number_float_t v, const json::string_t&) { return put(json(v)); }
  bool string(json::string_t& v) { return put(json(v)); }
  bool binary(json::binary_t& v) { return put(json::binary(v)); }
  bool start_object(std::size_t) { return open(json::object()); }
  bool start_array(std::size_t) { return open(json::array()); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    auto& members = stack_.back().value->get_ref<json::object_t&>();
    const auto [it, inserted] = members.emplace(k, nullptr);
    if (!inserted) {
      JsonProblem p;
      p.kind = JsonProblem::Kind::duplicate_key;
      p.key = k;
      for (std::size_t i = 1; i < stack_.size(); ++i) p.path.push_back(stack_[i].key ? *stack_[i].key : "[]");
      problem = std::move(p);
      return false;
    }
    slot_ = &it->second;
    key_ = &it->first;
    return true;
  }

  bool parse_error(std::size_t position, const std::string& last_token, const json::exception& e) {
    std::string msg = e.what();
    if (const auto close = msg.find("] "); msg.starts_with("[json.exception") && close != std::string::npos)
      msg.erase(0, close + 2);  // drop "[json.exception.parse_error.101] "
    // The message quotes the token being read, which may be as long as the text: shorten it.
    if (last_token.size() > max_excerpt_bytes)
      if (const auto at = msg.rfind(last_token); at != std::string::npos)
        msg.replace(at, last_token.size(), excerpt(last_token));
    JsonProblem p;
    p.kind = JsonProblem::Kind::syntax;
    p.message = std::move(msg);
    p.byte = position;
    problem = std::move(p);
    return false;
  }

  json root;                           ///< the document built so far
  std::optional<JsonProblem> problem;  ///< set when parsing stopped on a defect

 private:
  struct Open {
    json* value;             // the open array or object
    const std::string* key;  // its key in the enclosing object (null at the top or in an array)
  };

  // Stores `v` where the next value goes; returns where it went (or null when there is nowhere).
  json* place(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back().value;
    if (top.is_array()) {
      auto& items = top.get_ref<json::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool put(json&& v) {
    place(std::move(v));
    return true;
  }
  bool open(json&& v) {
    if (stack_.size() >= max_depth_) {
      JsonProblem p;
      p.kind = JsonProblem::Kind::too_deep;
      p.max_depth = max_depth_;
      problem = std::move(p);
      return false;
    }
    const std::string* key = !stack_.empty() && stack_.back().value->is_object() ? key_ : nullptr;
    json* where = place(std::move(v));
    stack_.push_back({where, key});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  std::size_t max_depth_;
  std::vector<Open> stack_;          // the open containers, outermost first
  json* slot_ = nullptr;             // the member the last key created
  const std::string* key_ = nullptr; // ... and its key
};

}  // namespace detail

/// Parses `text` as one JSON value (nothing but white space may follow it), with arrays and
/// objects nested at most `max_depth` deep and no key twice in an object. Never throws for a bad
/// text: the result's `problem` says what is wrong (the first defect met, reading from the start).
/// The value is what nlohmann::json::parse() returns for an accepted text. Memory: the document,
/// plus a few pointers per open container.
inline ParsedJson parse_json(std::string_view text, std::size_t max_depth = max_json_depth) {
  detail::BoundedJsonBuilder builder(max_depth);
  const char* begin = text.data();
  const bool ok = nlohmann::json::sax_parse(begin, begin + text.size(), &builder);
  ParsedJson out;
  if (ok && !builder.problem) {
    out.value = std::move(builder.root);
  } else if (builder.problem) {
    out.problem = std::move(builder.problem);
  } else {  // not reached: the parser reports every failure through the handler
    out.problem.emplace().message = "rejected by the parser";
  }
  return out;
}

}  // namespace hattn::io
