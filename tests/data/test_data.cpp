// Tokenizing text files in chunks (boundaries never split a pre-token), the train / validation
// split, batches (targets shifted by one, last -100), reproducible and resumable sampling, and
// exact errors.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "hattn/data/dataset.hpp"
#include "hattn/data/text_file.hpp"
#include "support/files.hpp"

namespace fs = std::filesystem;
using hattn::Index;
using hattn::data::Batch;
using hattn::data::Dataset;
using hattn::data::read_tokens;

using hattn::test::TempDir;
using hattn::test::put;
using hattn::test::slurp;

namespace {

// Byte-level encoding: id = byte.
struct Bytes {
  std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<std::int32_t> ids(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
};

// GPT-2's pre-tokenizer, 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+,
// over bytes with ASCII letters and digits, and with U+00A0 (bytes C2 A0) as whitespace as in
// Python's \s. Each pre-token becomes one id, a hash of its text: any pre-token split in two, or two
// merged, changes the ids.
struct PreTokenizer {
  std::vector<std::int32_t> encode(std::string_view text) const {
static const std::string ws = R"((?:\s|\xC2\xA0))", nonws = R"((?:(?!\xC2\xA0)\S))";
    static const std::regex pre(R"('s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?(?:(?![A-Za-z0-9])(?!\xC2\xA0)\S)+|)" +
                                ws + "+(?!" + nonws + ")|" + ws + "+");
    std::vector<std::int32_t> ids;
    const std::string s(text);
    for (auto it = std::sregex_iterator(s.begin(), s.end(), pre); it != std::sregex_iterator(); ++it)
      ids.push_back(std::int32_t(std::hash<std::string>{}(it->str()) % 1000003));
    return ids;
  }
};

const std::string sample_text =
    "The quick  brown fox's 42 jumps,\tover\n\n  the lazy dog!!  \r\nIt's 3.14 -- caf\xc3\xa9 \xe2\x9c\x93 "
    "supercalifragilisticexpialidocious   end.\n x\xc2\xa0 \n y \xc2\xa0z\n   ";

std::vector<std::int32_t> iota_tokens(Index n) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) t[std::size_t(i)] = std::int32_t(i);
  return t;
}

bool equal(const Batch& a, const Batch& b) {
  return a.inputs.size() == b.inputs.size() &&
         std::equal(a.inputs.data(), a.inputs.data() + a.inputs.size(), b.inputs.data()) &&
         std::equal(a.targets.data(), a.targets.data() + a.targets.size(), b.targets.data());
}

}  // namespace

TEST_CASE("read_tokens gives the file's bytes for any chunk size", "[data][text_file]") {
  TempDir dir{"hattn_test_data"};
  const auto path = dir.write("t.txt", sample_text);
  const auto whole = Bytes{}.encode(sample_text);
  for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(3), std::size_t(7), std::size_t(64),
                            hattn::data::default_chunk_bytes}) {
    INFO("chunk " << chunk);
    CHECK(read_tokens(path, Bytes{}, chunk) == whole);
  }
}

TEST_CASE("read_tokens splits chunks only between a visible ASCII character and ASCII whitespace", "[data][text_file]") {
  TempDir dir{"hattn_test_data"};
  const auto path = dir.write("t.txt", sample_text);
  for (std::size_t chunk = 1; chunk <= 24; ++chunk) {
    std::vector<std::string> pieces;
    const auto ids = read_tokens(path, [&](std::string_view s) {
      pieces.emplace_back(s);
      return Bytes{}.encode(s);
    }, chunk);
    INFO("chunk " << chunk << ", " << pieces.size() << " pieces");
    std::string joined;
    for (const auto& p : pieces) joined += p;
    CHECK(joined == sample_text);
    CHECK(ids.size() == sample_text.size());
    for (std::size_t i = 0; i + 1 < pieces.size(); ++i) {
      REQUIRE_FALSE(pieces[i].empty());
      CHECK(hattn::data::detail::is_visible_ascii(pieces[i].back()));
      CHECK(hattn::data::detail::is_space(pieces[i + 1].front()));
    }
    if (chunk < 8) CHECK(pieces.size() > 5);  // the text really was read in pieces
  }
}

TEST_CASE("chunked pre-tokenization equals tokenizing the whole text", "[data][text_file]") {
  TempDir dir{"hattn_test_data"};
  const auto path = dir.write("t.txt", sample_text);
  const PreTokenizer tok;
  const auto whole = tok.encode(sample_text);
  for (std::size_t chunk = 1; chunk <= 40; ++chunk) {
    INFO("chunk " << chunk);
    CHECK(read_tokens(path, tok, chunk) == whole);
  }
  // The test can tell: cutting at arbitrary byte positions changes the ids.
  std::vector<std::int32_t> naive;
  for (std::size_t i = 0; i < sample_text.size(); i += 7) {
    const auto part = tok.encode(std::string_view(sample_text).substr(i, 7));
    naive.insert(naive.end(), part.begin(), part.end());
  }
  CHECK(naive != whole);
}

TEST_CASE("a run without whitespace longer than a chunk is read whole", "[data][text_file]") {
  TempDir dir{"hattn_test_data"};
  const std::string text = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bb\n" + std::string(50, 'x');
  const auto path = dir.write("t.txt", text);
  CHECK(read_tokens(path, PreTokenizer{}, 3) == PreTokenizer{}.encode(text));
  CHECK(read_tokens(path, PreTokenizer{}, 3).size() == 4);
}

TEST_CASE("read_tokens errors are exact", "[data][text_file][errors]") {
  TempDir dir{"hattn_test_data"};
  const auto missing = dir.path / "missing.txt";
  REQUIRE_THROWS_WITH(read_tokens(missing, Bytes{}), "read_tokens: '" + missing.string() + "' does not exist");
  const auto empty = dir.write("empty.txt", "");
  REQUIRE_THROWS_WITH(read_tokens(empty, Bytes{}), "read_tokens: '" + empty.string() + "' is empty");
  REQUIRE_THROWS_WITH(read_tokens(dir.path, Bytes{}),
                      "read_tokens: cannot read '" + dir.path.string() + "': Is a directory");
  const auto spaces = dir.write("spaces.txt", "  \n\t ");
  REQUIRE_THROWS_WITH(read_tokens(spaces, [](std::string_view) { return std::vector<std::int32_t>{}; }),
                      "read_tokens: '" + spaces.string() + "' gave no tokens (5 bytes)");
  REQUIRE_THROWS_WITH(read_tokens(spaces, Bytes{}, 0), "read_tokens: chunk_bytes must be >= 1, got 0");
}

TEST_CASE("Dataset splits off the last fraction for validation", "[data][dataset]") {
  const Dataset d(iota_tokens(1000), 16);
  CHECK(d.sequence_length() == 16);
  CHECK(d.train_tokens().size() == 900);
  CHECK(d.validation_tokens().size() == 100);
  CHECK(d.validation_tokens().front() == 900);
  CHECK(d.train_windows() == 885);
  CHECK(d.validation_windows() == 6);

  const Dataset q(iota_tokens(103), 8, 0.25);  // floor(103 * 0.25) = 25
  CHECK(q.train_tokens().size() == 78);
  CHECK(q.validation_tokens().size() == 25);
  CHECK(q.validation_windows() == 3);

  const Dataset none(iota_tokens(50), 8, 0.0);
  CHECK(none.train_tokens().size() == 50);
  CHECK(none.validation_windows() == 0);
  REQUIRE_THROWS_WITH(none.validation_batch(2, 0), "Dataset::validation_batch: there is no validation split");
}

TEST_CASE("training batches are windows of the training split, targets shifted, last -100", "[data][dataset]") {
  const Dataset d(iota_tokens(200), 10);  // train: tokens 0..179
  hattn::Generator rng(3);
  const Batch b = d.train_batch(6, rng);
  REQUIRE(b.inputs.dimension(0) == 6);
  REQUIRE(b.inputs.dimension(1) == 10);
  CHECK(rng.position() > 0);
  for (Index r = 0; r < 6; ++r) {
    const std::int32_t start = b.inputs(r, 0);
    CHECK(start + 10 <= 180);
    for (Index t = 0; t < 10; ++t) {
      CHECK(b.inputs(r, t) == start + t);
      CHECK(b.targets(r, t) == (t < 9 ? start + t + 1 : -100));
    }
  }
}

TEST_CASE("sampling covers every training window", "[data][dataset]") {
  const Dataset d(iota_tokens(40), 8, 0.0);  // 33 windows
  hattn::Generator rng(1);
  std::set<std::int32_t> starts;
  for (int i = 0; i < 100; ++i) {
    const Batch b = d.train_batch(20, rng);
    for (Index r = 0; r < 20; ++r) starts.insert(b.inputs(r, 0));
  }
  CHECK(starts.size() == 33);
  CHECK(*starts.begin() == 0);
  CHECK(*starts.rbegin() == 32);
}

TEST_CASE("batches are reproducible from a seed and resume from a saved generator state", "[data][dataset]") {
  const Dataset d(iota_tokens(5000), 32);
  hattn::Generator a(42), b(42), c(43);
  const Batch a1 = d.train_batch(4, a), b1 = d.train_batch(4, b), c1 = d.train_batch(4, c);
  CHECK(equal(a1, b1));
  CHECK_FALSE(equal(a1, c1));

  d.train_batch(4, a);
  const std::uint64_t seed = a.seed(), stream = a.stream(), position = a.position();
  const Batch next1 = d.train_batch(4, a), next2 = d.train_batch(4, a);
  hattn::Generator resumed(seed, stream, position);
  CHECK(equal(d.train_batch(4, resumed), next1));
  CHECK(equal(d.train_batch(4, resumed), next2));
}

TEST_CASE("validation batches are consecutive windows of the validation split, the same every time", "[data][dataset]") {
  const Dataset d(iota_tokens(1000), 16);  // validation: tokens 900..999, 6 windows
  const Batch v0 = d.validation_batch(4, 0), v1 = d.validation_batch(4, 1);
  for (Index r = 0; r < 4; ++r) CHECK(v0.inputs(r, 0) == 900 + 16 * r);
  CHECK(v1.inputs(0, 0) == 900 + 16 * 4);
  CHECK(v1.inputs(1, 0) == 900 + 16 * 5);
  CHECK(v1.inputs(2, 0) == 900);  // wraps around
  CHECK(v0.targets(0, 14) == 915);
  CHECK(v0.targets(0, 15) == -100);
  CHECK(equal(v0, d.validation_batch(4, 0)));
  CHECK(equal(d.validation_batch(3, 2), d.validation_batch(3, 4)));  // windows 6..8 = 0..2 = 12..14
}

TEST_CASE("Dataset errors are exact", "[data][dataset][errors]") {
  REQUIRE_THROWS_WITH(Dataset(iota_tokens(8), 8), "Dataset: corpus of 8 tokens is shorter than one sequence + 1 (9 tokens for sequence_length 8)");
  REQUIRE_THROWS_WITH(Dataset(iota_tokens(100), 1), "Dataset: sequence_length must be >= 2, got 1");
  REQUIRE_THROWS_WITH(Dataset(iota_tokens(100), 8, 1.0), "Dataset: validation_fraction must be in [0, 1), got 1");
  REQUIRE_THROWS_WITH(Dataset(iota_tokens(20), 8, 0.6), "Dataset: training split of 8 tokens is shorter than one sequence + 1 (9 tokens)");
  REQUIRE_THROWS_WITH(Dataset(iota_tokens(20), 8),
                      "Dataset: validation split of 2 tokens (the last 0.1 of 20) is shorter than one sequence (8 tokens)");
  const Dataset d(iota_tokens(100), 8);
  hattn::Generator rng(0);
  REQUIRE_THROWS_WITH(d.train_batch(0, rng), "Dataset::train_batch: batch must be >= 1, got 0");
  hattn::Tensor<std::int32_t, 2> in(2, 7), tg(2, 7);
  REQUIRE_THROWS_WITH(d.train_batch(in, tg, rng),
                      "Dataset::train_batch: want inputs and targets of shape (B, 8) with B >= 1, got inputs (2, 7) and targets (2, 7)");
  REQUIRE_THROWS_WITH(d.validation_batch(2, -1), "Dataset::validation_batch: batch index must be >= 0, got -1");
  CHECK(rng.position() == 0);  // nothing drawn by a rejected call
}
