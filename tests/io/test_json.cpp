// hattn/io/json.hpp and hattn/io/excerpt.hpp: bounded nesting, duplicate keys, short quotes.

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <string>

#include "hattn/io/excerpt.hpp"
#include "hattn/io/json.hpp"

namespace io = hattn::io;
using Kind = io::JsonProblem::Kind;

TEST_CASE("parse_json gives nlohmann's document for every accepted text", "[json]") {
  for (const char* text : {"{}", "[]", "null", " 1 ", "-5", "18446744073709551615", "2.5e-3", "\"\\u00e9\"",
                           R"({"a": [1, {"b": null, "c": [true, false]}], "d": {"e": "f"}, "": 0})",
                           R"([[[[[[[[[[]]]]]]]]]])"}) {
    const io::ParsedJson p = io::parse_json(text);
    INFO(text);
    REQUIRE_FALSE(p.problem);
    CHECK(p.value == nlohmann::json::parse(text));
    CHECK(p.value.dump() == nlohmann::json::parse(text).dump());
  }
  // Same number types as nlohmann's parser.
  CHECK(io::parse_json("5").value.is_number_unsigned());
  CHECK(io::parse_json("-5").value.is_number_integer());
  CHECK(io::parse_json("5.0").value.is_number_float());
}

TEST_CASE("parse_json reports the first defect", "[json]") {
  auto problem = [](std::string_view text, std::size_t depth = io::max_json_depth) {
    const io::ParsedJson p = io::parse_json(text, depth);
    REQUIRE(p.problem);
    CHECK(p.value.is_null());
    return *p.problem;
  };
  const io::JsonProblem syntax = problem("{\"a\": 1,");
  CHECK(syntax.kind == Kind::syntax);
  CHECK(syntax.byte == 9);
  CHECK(syntax.describe() == "is not valid JSON: parse error at line 1, column 9: syntax error while parsing object key - "
                             "unexpected end of input; expected string literal");
  CHECK(problem("1 2").describe() == "is not valid JSON: parse error at line 1, column 3: syntax error while parsing value - "
                                     "unexpected number literal; expected end of input");
  CHECK(problem("").byte == 1);
  CHECK(problem("1e999").describe() == "is not valid JSON: number overflow parsing '1e999'");

  // Depth: `depth` nested containers parse, one more does not, however deep the text goes.
  CHECK_FALSE(io::parse_json(std::string(64, '[') + std::string(64, ']')).problem);
  const io::JsonProblem deep = problem(std::string(65, '[') + std::string(65, ']'));
  CHECK(deep.kind == Kind::too_deep);
  CHECK(deep.describe() == "nests arrays and objects deeper than 64 levels");
  CHECK(problem(std::string(1'000'000, '[')).kind == Kind::too_deep);
  CHECK(problem("[{\"a\": [1]}]", 2).describe() == "nests arrays and objects deeper than 2 levels");
  CHECK_FALSE(io::parse_json("[{\"a\": 1}]", 2).problem);

  // Duplicates, with the keys leading to their object.
  const io::JsonProblem dup = problem(R"({"a": 1, "b": 2, "a": 3})");
  CHECK(dup.kind == Kind::duplicate_key);
  CHECK(dup.key == "a");
  CHECK(dup.path.empty());
  CHECK(dup.describe() == "has key 'a' more than once");
  const io::JsonProblem inner = problem(R"({"x": {"y": [{"k": 1, "k": 1}]}})");
  CHECK(inner.path == std::vector<std::string>{"x", "y", "[]"});
  CHECK(inner.describe() == "has key 'k' more than once in 'x' > 'y' > '[]'");
  CHECK_FALSE(io::parse_json(R"([{"k": 1}, {"k": 1}])").problem);  // one key in each of two objects

  // The token nlohmann quotes is shortened (its length as nlohmann spells it: U+0001 as "<U+0001>").
  const std::string s = "\"" + std::string(100000, 'z') + "\x01\"";
  CHECK(problem(s).describe() == "is not valid JSON: parse error at line 1, column 100002: syntax error while parsing value - "
                                 "invalid string: control character U+0001 (SOH) must be escaped to \\u0001; last read: '\"" +
                                     std::string(63, 'z') + "... (100009 bytes)'");
}

TEST_CASE("excerpts quote short text whole and long text as a prefix and its length", "[json]") {
  CHECK(io::excerpt("") == "");
  CHECK(io::excerpt(std::string(64, 'a')) == std::string(64, 'a'));
  CHECK(io::excerpt(std::string(65, 'a')) == std::string(64, 'a') + "... (65 bytes)");
  // A prefix never ends inside a UTF-8 character: "é" is 2 bytes, 63 'a' then é would cut it.
  CHECK(io::excerpt(std::string(63, 'a') + "\xc3\xa9" + "b") == std::string(63, 'a') + "... (66 bytes)");

  using nlohmann::json;
  for (const json& v : {json(nullptr), json(3), json(-2.5), json("x\n\"y"), json::array({1, "a", json::object()}),
                        json::parse(R"({"k": [1, 2, {"z": "\u00e9"}], "a": true})")})
    CHECK(io::json_excerpt(v) == v.dump());
  const json big = std::string(10'000'000, 'q');
  CHECK(io::json_excerpt(big) == "\"" + std::string(63, 'q') + "... (10000002 bytes)");
  json many = json::array();
  for (int i = 0; i < 1000; ++i) many.push_back(i);
  CHECK(io::json_excerpt(many) == many.dump().substr(0, 64) + "... (" + std::to_string(many.dump().size()) + " bytes)");
  // Escapes count as dump() writes them.
  const json controls = std::string(40, '\x01');
  CHECK(io::json_excerpt(controls) == controls.dump().substr(0, 64) + "... (242 bytes)");
}
