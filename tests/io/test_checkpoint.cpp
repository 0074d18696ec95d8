// Model checkpoints (hattn/io/checkpoint.hpp): save/load round trips, the file's names, shapes,
// dtype and metadata, PyTorch state_dict files (tests/fixtures/state_dict_l1_h1_d8.safetensors),
// exact error messages with all-or-nothing loading, and atomic overwrites.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "support/files.hpp"
#include "support/float_error.hpp"

#ifndef HATTN_FIXTURE_DIR
#error "HATTN_FIXTURE_DIR must name tests/fixtures"
#endif

namespace fs = std::filesystem;
namespace io = hattn::io;
using hattn::Config;
using hattn::Index;
using hattn::NodeMask;

using hattn::test::TempDir;
using hattn::test::put;
using hattn::test::slurp;

namespace {



std::uint64_t header_length(const std::string& file) {
  std::uint64_t n = 0;
  std::memcpy(&n, file.data(), 8);
  return n;
}

std::string le64(std::uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A copy of every parameter's values, in the model's order.
template <class M>
std::vector<std::vector<typename M::Scalar>> snapshot(const M& model) {
  std::vector<std::vector<typename M::Scalar>> out;
  for (const auto& p : model.parameters()) out.emplace_back(p.value, p.value + p.size());
  return out;
}

// True when every parameter of `model` holds exactly the bits of `snap`.
template <class M>
bool unchanged(const M& model, const std::vector<std::vector<typename M::Scalar>>& snap) {
  const auto& params = model.parameters();
  if (params.size() != snap.size()) return false;
  for (std::size_t i = 0; i < params.size(); ++i)
    if (Index(snap[i].size()) != params[i].size() ||
        std::memcmp(snap[i].data(), params[i].value, snap[i].size() * sizeof(typename M::Scalar)) != 0)
      return false;
  return true;
}

// True when the parameters of `a` and `b` (same config) are bitwise equal.
template <class M>
bool same_parameters(const M& a, const M& b) {
  return unchanged(a, snapshot(b));
}

template <class T>
bool bitwise_equal(const hattn::Tensor<T, 3>& a, const hattn::Tensor<T, 3>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), std::size_t(a.size()) * sizeof(T)) == 0;
}

std::vector<std::int32_t> random_ids(Index n, Index vocab, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int32_t> dist(0, std::int32_t(vocab - 1));
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  for (auto& id : ids) id = dist(gen);
  return ids;
}

// SPEC.md's parameter names and PyTorch shapes for one block (written out from the spec, not taken
// from the model).
std::map<std::string, std::vector<Index>> spec_shapes(int levels, Index d, Index vocab, Index seq) {
  std::map<std::string, std::vector<Index>> s;
  s["pos_encoding.word_embedding_layer.weight"] = {vocab, d};
  s["pos_encoding.position_embedding_layer.weight"] = {seq, d};
  auto mha = [&](const std::string& prefix) {
    for (const char* w : {"W_q", "W_k", "W_v", "W_o"}) {
      s[prefix + "." + w + ".weight"] = {d, d};
      s[prefix + "." + w + ".bias"] = {d};
    }
  };
  auto norm = [&](const std::string& prefix) {
    s[prefix + ".weight"] = {d};
    s[prefix + ".bias"] = {d};
  };
  for (const char* ha : {"decoder_block.hier_attn1", "decoder_block.hier_attn2"}) {
    mha(std::string(ha) + ".leaf_attention.self_attention");
    norm(std::string(ha) + ".leaf_attention.norm");
    for (int l = 0; l < levels; ++l) {
      const std::string node = std::string(ha) + ".node_layers." + std::to_string(l);
      mha(node + ".cross_attention");
      norm(node + ".norm");
    }
  }
  s["decoder_block.feed_forward.0.weight"] = {4 * d, d};
  s["decoder_block.feed_forward.0.bias"] = {4 * d};
  s["decoder_block.feed_forward.2.weight"] = {d, 4 * d};
  s["decoder_block.feed_forward.2.bias"] = {d};
  for (const char* n : {"decoder_block.norm1", "decoder_block.norm2", "decoder_block.norm3"}) norm(n);
  s["linear.weight"] = {vocab, d};
  s["linear.bias"] = {vocab};
  return s;
}

// Saves a model, loads it into a differently seeded one, and checks the file and the result.
template <Config C>
void check_round_trip(Index V, Index S) {
  TempDir dir{"hattn_test_checkpoint"};
  const fs::path path = dir / "model.safetensors";
  const hattn::Decoder<C> a(V, S, 11);
  hattn::Decoder<C> b(V, S, 12);
  const Index B = 2, T = S - 3;
  const auto ids_v = random_ids(B * T, V, 5);
  const hattn::View<const std::int32_t, 2> ids(ids_v.data(), B, T);
  REQUIRE_FALSE(same_parameters(a, b));
  REQUIRE_FALSE(bitwise_equal(a.predict(ids), b.predict(ids)));

  hattn::save_safetensors(a, path, {{"step", "7"}});
  const hattn::LoadReport report = hattn::load_safetensors(b, path);
  CHECK(same_parameters(a, b));
  CHECK(bitwise_equal(a.predict(ids), b.predict(ids)));
  CHECK(report.notes.empty());

  // Metadata: the format tag, the exact configuration JSON, and the caller's extra entries.
  const nlohmann::json config = {{"levels", C.levels},
                                 {"heads", C.heads},
                                 {"d_model", C.d_model},
                                 {"blocks", C.blocks},
                                 {"node_mask", C.node_mask == NodeMask::aligned ? "aligned" : "full"},
                                 {"vocab_size", V},
                                 {"sequence_length", S}};
  const std::map<std::string, std::string> meta = {
      {"format", "hattn"}, {"hattn.config", config.dump()}, {"step", "7"}};
  CHECK(report.metadata == meta);
  const auto file = io::read_safetensors(path);
  CHECK(file.metadata() == meta);
  CHECK(nlohmann::json::parse(file.metadata().at("hattn.config")) == config);

  // Tensors: the model's names, in its (state_dict) order, with its PyTorch shapes, all F32.
  std::vector<std::string> names;
  for (const auto& p : a.parameters()) names.push_back(p.name);
  CHECK(file.names() == names);
  for (const auto& p : a.parameters()) {
    INFO(p.name);
    CHECK(file.info(p.name).dtype == io::DType::F32);
    CHECK(file.info(p.name).shape == p.shape);
  }
  if constexpr (C.blocks == 1) {
    const auto spec = spec_shapes(C.levels, C.d_model, V, S);
    REQUIRE(file.size() == spec.size());
    for (const auto& [name, shape] : spec) {
      INFO(name);
      REQUIRE(file.contains(name));
      CHECK(file.info(name).shape == shape);
    }
  } else {
    CHECK(file.contains("decoder_blocks.1.hier_attn2.node_layers.0.cross_attention.W_o.bias"));
    CHECK_FALSE(file.contains("decoder_block.norm1.weight"));
  }
}

constexpr Config C1{.levels = 1, .heads = 1, .d_model = 8};  // the l1_h1_d8 fixture's shape
constexpr Index V1 = 11, S1 = 16;

std::string fixture(const std::string& name) { return std::string(HATTN_FIXTURE_DIR) + "/" + name; }

}  // namespace

TEST_CASE("save then load reproduces every parameter and prediction bitwise", "[checkpoint]") {
  SECTION("one block, two levels (SPEC.md names)") {
    check_round_trip<Config{.levels = 2, .heads = 2, .d_model = 16}>(23, 32);
  }
  SECTION("two blocks, full node mask") {
    check_round_trip<Config{.levels = 1, .heads = 1, .d_model = 8, .blocks = 2, .node_mask = NodeMask::full}>(
        V1, S1);
  }
}

TEST_CASE("a double model saves float32 and loads back its values rounded to float", "[checkpoint]") {
  TempDir dir{"hattn_test_checkpoint"};
  const fs::path path = dir / "double.safetensors";
  const hattn::Decoder<C1, double> a(V1, S1, 3);
  hattn::save_safetensors(a, path);
  const auto file = io::read_safetensors(path);
  for (const auto& name : file.names()) CHECK(file.info(name).dtype == io::DType::F32);

  // Some values must need rounding, or the check below could not tell float from double storage.
  bool any_rounded = false;
  for (const auto& p : a.parameters())
    for (Index i = 0; i < p.size(); ++i) any_rounded = any_rounded || double(float(p.value[i])) != p.value[i];
  REQUIRE(any_rounded);

  hattn::Decoder<C1, double> b(V1, S1, 4);
  hattn::load_safetensors(b, path);
  hattn::Decoder<C1, float> f(V1, S1, 4);
  hattn::load_safetensors(f, path);
  for (std::size_t k = 0; k < a.parameters().size(); ++k) {
    const auto &pa = a.parameters()[k], &pb = b.parameters()[k];
    const auto& pf = f.parameters()[k];
    INFO(pa.name);
    bool ok = true;
    for (Index i = 0; i < pa.size(); ++i)
      ok = ok && pb.value[i] == double(float(pa.value[i])) && pf.value[i] == float(pa.value[i]);
    CHECK(ok);
  }
}

TEST_CASE("a PyTorch state_dict file loads, with a note about the notebook's mask", "[checkpoint]") {
  const std::string path = fixture("state_dict_l1_h1_d8.safetensors");
  const auto file = io::read_safetensors(path);
  REQUIRE(file.metadata().empty());

  hattn::Decoder<C1> model(V1, S1, 77);
  const hattn::LoadReport report = hattn::load_safetensors(model, path);
  CHECK(report.metadata.empty());
  REQUIRE(report.notes.size() == 1);
  CHECK_THAT(report.notes[0], Catch::Contains("non-causal mask"));
  CHECK_THAT(report.notes[0], Catch::Contains("notebook"));

  // The same weights as the parity fixture's param.*, hence its outputs.
  const auto ref = io::read_safetensors(fixture("l1_h1_d8.safetensors"));
  for (const auto& p : model.parameters()) {
    INFO(p.name);
    const auto v = ref.read<float>("param." + p.name);
    REQUIRE(Index(v.size()) == p.size());
    CHECK(std::memcmp(v.data(), p.value, v.size() * sizeof(float)) == 0);
  }
  const auto ids_v = ref.read<std::int32_t>("input.ids");
  const auto& ids_shape = ref.info("input.ids").shape;
  const auto probs = model.predict(hattn::View<const std::int32_t, 2>(ids_v.data(), ids_shape[0], ids_shape[1]));
  const auto want = ref.read<float>("output.probs");
  REQUIRE(Index(want.size()) == probs.size());
  // test_parity's bound for probabilities: gamma_forward (|p| (1 + 4 max|logits|) + 1e-3).
  const auto config = nlohmann::json::parse(ref.metadata().at("config"));
  const double gamma = hattn::test::fe::decoder_bounds(config["levels"], config["heads"], config["d_model"],
                                                       config["blocks"], config["vocab_size"], config["batch"],
                                                       config["tokens"])
                           .forward;
  double logit_scale = 0;
  for (float z : ref.read<float>("output.logits")) logit_scale = std::max(logit_scale, double(std::abs(z)));
  hattn::test::fe::Worst worst;
  for (std::size_t i = 0; i < want.size(); ++i)
    worst(probs.data()[i], want[i], gamma * (std::abs(double(want[i])) * (1 + 4 * logit_scale) + 1e-3));
  worst.print("l1_h1_d8 probabilities from the loaded checkpoint (float)");
  CHECK(worst.ratio <= 1);

  SECTION("without hattn.config, a model of another shape is caught by the tensor shapes") {
    hattn::Decoder<C1> wide(V1 + 1, S1, 77);
    const auto before = snapshot(wide);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(wide, path),
                        "load_safetensors: '" + path +
                            "': tensor 'pos_encoding.word_embedding_layer.weight' has shape [11, 8], the model's "
                            "is [12, 8]");
    CHECK(unchanged(wide, before));
  }
}

TEST_CASE("bad checkpoints throw the exact error and leave the model unchanged", "[checkpoint]") {
  TempDir dir{"hattn_test_checkpoint"};
  // The files carry another model's weights, so a partial copy before the error would show.
  const hattn::Decoder<C1> source(V1, S1, 21);
  hattn::Decoder<C1> model(V1, S1, 22);
  const auto before = snapshot(model);
  REQUIRE_FALSE(same_parameters(source, model));
  const fs::path good = dir / "good.safetensors";
  hattn::save_safetensors(source, good);
  const std::string good_bytes = slurp(good);
  const std::map<std::string, std::string> meta = io::read_safetensors(good).metadata();

  // The source's tensors as TensorRefs, in the model's order, for building edited files.
  std::vector<io::TensorRef> refs;
  for (const auto& p : source.parameters()) refs.push_back(io::TensorRef::of(p.name, p.value, p.shape));
  REQUIRE(refs.back().name == "linear.bias");
  const fs::path p = dir / "bad.safetensors";
  const std::string ps = p.string();
  const std::string load = "load_safetensors: '" + ps + "': ";
  const std::string read = "read_safetensors: '" + ps + "': ";

  SECTION("missing tensor (the last one, after every other has been seen)") {
    refs.pop_back();
    io::write_safetensors(p, refs, meta);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p), load + "missing tensor 'linear.bias'");
  }
  SECTION("extra tensor") {
    const std::vector<float> extra(3, 1.0f);
    refs.push_back(io::TensorRef::of("linear.scale", extra.data(), {3}));
    io::write_safetensors(p, refs, meta);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        load + "unexpected tensor 'linear.scale' (not a parameter of this model)");
  }
  SECTION("wrong shape (same element count)") {
    auto& r = refs[refs.size() - 3];  // decoder_block.norm3.bias, late in the order
    REQUIRE(r.name == "decoder_block.norm3.bias");
    r.shape = {1, 8};
    io::write_safetensors(p, refs, meta);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        load + "tensor 'decoder_block.norm3.bias' has shape [1, 8], the model's is [8]");
  }
  SECTION("wrong dtype (F16)") {
    const std::vector<std::uint16_t> halves(V1, 0x3c00);  // 1.0 in half precision
    refs.back() = io::TensorRef{"linear.bias", io::DType::F16, {V1}, halves.data()};
    io::write_safetensors(p, refs, meta);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p), load + "tensor 'linear.bias' has dtype F16, expected F32");
  }
  SECTION("truncated data section") {
    const std::uint64_t n = header_length(good_bytes);
    const std::size_t data = good_bytes.size() - 8 - n;
    put(p, good_bytes.substr(0, good_bytes.size() - 4));
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        read + "truncated data section: " + std::to_string(data - 4) +
                            " bytes, but tensors end at byte " + std::to_string(data));
  }
  SECTION("header length past the end of the file") {
    const std::uint64_t n = good_bytes.size();
    put(p, le64(n) + good_bytes.substr(8));
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        read + "header length " + std::to_string(n) + " runs past the end of the file (" +
                            std::to_string(n - 8) + " bytes follow the length)");
  }
  SECTION("header is not JSON") {
    std::string bytes = good_bytes;
    REQUIRE(bytes[8] == '{');
    bytes[8] = '#';
    put(p, bytes);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        read + "header is not valid JSON: parse error at line 1, column 1: syntax error while "
                               "parsing value - invalid literal; last read: '#'");
  }
  SECTION("hattn.config with another node_mask") {
    const hattn::Decoder<Config{.levels = 1, .heads = 1, .d_model = 8, .node_mask = NodeMask::full}> full(V1, S1, 21);
    hattn::save_safetensors(full, p);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        load + "checkpoint node_mask is \"full\", the model's is \"aligned\"");
  }
  SECTION("file does not exist") {
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p), read + "cannot open: No such file or directory");
  }
  CHECK(unchanged(model, before));
  // The untouched original still loads (the failures above are the edits, not the writer).
  hattn::load_safetensors(model, good);
  CHECK(same_parameters(source, model));
}

TEST_CASE("a failed save over an existing checkpoint leaves it loadable and identical", "[checkpoint]") {
  TempDir dir{"hattn_test_checkpoint"};
  const fs::path path = dir / "model.safetensors";
  const hattn::Decoder<C1> first(V1, S1, 31);
  const hattn::Decoder<C1> second(V1, S1, 32);
  hattn::save_safetensors(first, path);
  const std::string old_bytes = slurp(path);
  REQUIRE(old_bytes.size() > 4000);

  // RLIMIT_FSIZE makes write() fail with EFBIG part-way through the new file, like a full disk.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4000;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    hattn::save_safetensors(second, path);
  } catch (const hattn::Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);

  const std::string tmp = path.string() + ".tmp-" + std::to_string(::getpid());
  REQUIRE(message == "write_safetensors: '" + path.string() + "': writing temporary file '" + tmp +
                         "' failed: File too large");
  CHECK_FALSE(fs::exists(tmp));
  CHECK(slurp(path) == old_bytes);
  hattn::Decoder<C1> loaded(V1, S1, 33);
  hattn::load_safetensors(loaded, path);
  CHECK(same_parameters(first, loaded));
  CHECK_FALSE(same_parameters(second, loaded));

  // Without the limit the same save replaces the file.
  hattn::save_safetensors(second, path);
  hattn::load_safetensors(loaded, path);
  CHECK(same_parameters(second, loaded));
}
