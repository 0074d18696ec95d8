// Model checkpoints (hattn/io/checkpoint.hpp): save/load round trips, the file's names, shapes,
// dtype and metadata, PyTorch state_dict files (tests/fixtures/state_dict_l1_h1_d8.safetensors),
// exact error messages with all-or-nothing loading, and atomic overwrites.

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
using hattn::Mixer;
using hattn::NodeCombine;
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
  CHECK(report.notes.size() == (C.seed_compat ? 1u : 0u));  // a seed_compat model says it is not causal

  // Metadata: the format tag, the exact configuration JSON, and the caller's extra entries.
  const nlohmann::json config = {{"levels", C.levels},
                                 {"heads", C.heads},
                                 {"d_model", C.d_model},
                                 {"blocks", C.blocks},
                                 {"node_mask", C.node_mask == NodeMask::aligned ? "aligned" : "full"},
                                 {"node_combine", C.node_combine == NodeCombine::replace ? "replace" : "residual"},
                                 {"summaries", C.summaries},
                                 {"mixer", C.mixer == Mixer::hierarchical ? "hierarchical" : "dense"},
                                 {"seed_compat", C.seed_compat},
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
  if constexpr (C.blocks == 1 && C.mixer == Mixer::hierarchical) {  // the dense names: test_variants
    const auto spec = spec_shapes(C.levels, C.d_model, V, S);
    REQUIRE(file.size() == spec.size());
    for (const auto& [name, shape] : spec) {
      INFO(name);
      REQUIRE(file.contains(name));
      CHECK(file.info(name).shape == shape);
    }
  } else if constexpr (C.blocks > 1) {
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
  SECTION("every variant records its fields") {
    check_round_trip<Config{.levels = 2, .heads = 2, .d_model = 8, .node_combine = NodeCombine::residual,
                            .summaries = 3}>(V1, S1);
    check_round_trip<Config{.levels = 2, .heads = 2, .d_model = 8, .mixer = Mixer::dense}>(V1, S1);
    check_round_trip<Config{.levels = 2, .heads = 2, .d_model = 8, .seed_compat = true}>(V1, S1);
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

namespace {

// Loads the plain state_dict `name` (tests/fixtures: SPEC.md names, no metadata) into `model` and
// checks it holds the weights of parity fixture `parity` and reproduces its probabilities within
// test_parity's bound; returns the load report.
template <class Model>
hattn::LoadReport check_state_dict(Model& model, const std::string& name, const std::string& parity) {
  const std::string path = fixture(name);
  const auto file = io::read_safetensors(path);
  REQUIRE(file.metadata().empty());
  const hattn::LoadReport report = hattn::load_safetensors(model, path);
  CHECK(report.metadata.empty());

  // The same weights as the parity fixture's param.*, hence its outputs.
  const auto ref = io::read_safetensors(fixture(parity));
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
  worst.print((parity + " probabilities from the loaded state_dict (float)").c_str());
  CHECK(worst.ratio <= 1);
  return report;
}

}  // namespace

TEST_CASE("a PyTorch state_dict file loads, with a note about the notebook's mask", "[checkpoint]") {
  const std::string path = fixture("state_dict_l1_h1_d8.safetensors");
  hattn::Decoder<C1> model(V1, S1, 77);
  const hattn::LoadReport report = check_state_dict(model, "state_dict_l1_h1_d8.safetensors", "l1_h1_d8.safetensors");
  REQUIRE(report.notes.size() == 1);
  CHECK_THAT(report.notes[0], Catch::Contains("non-causal mask"));
  CHECK_THAT(report.notes[0], Catch::Contains("notebook"));
  CHECK_THAT(report.notes[0], Catch::Contains("seed_compat"));

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

TEST_CASE("a state_dict trained under the notebook's mask loads into a seed_compat model and reproduces its "
          "outputs, with a warning that the model is not causal",
          "[checkpoint][seed_compat]") {
  hattn::Decoder<Config{.levels = 2, .heads = 2, .d_model = 16, .seed_compat = true}> model(13, 64, 5);
  const hattn::LoadReport report =
      check_state_dict(model, "state_dict_notebook_l2_h2_d16.safetensors", "notebook_l2_h2_d16.safetensors");
  REQUIRE(report.notes.size() == 1);
  CHECK_THAT(report.notes[0], Catch::Contains("seed_compat") && Catch::Contains("NOT causal"));
  // The same file in a causal model loads too (it cannot show its variant), with the hint.
  hattn::Decoder<Config{.levels = 2, .heads = 2, .d_model = 16}> causal(13, 64, 5);
  const hattn::LoadReport plain = hattn::load_safetensors(causal, fixture("state_dict_notebook_l2_h2_d16.safetensors"));
  REQUIRE(plain.notes.size() == 1);
  CHECK_THAT(plain.notes[0], Catch::Contains("loaded as variant the seed's") && Catch::Contains("seed_compat"));
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
  SECTION("hattn.config of another variant, naming both") {
    const hattn::Decoder<Config{.levels = 1, .heads = 1, .d_model = 8, .node_combine = NodeCombine::residual,
                                .summaries = 4}>
        pooled(V1, S1, 21);
    hattn::save_safetensors(pooled, p);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        load + "checkpoint variant is node_combine \"residual\", summaries 4, the model's is the "
                               "seed's (every variant field at its default)");
    hattn::save_safetensors(model, p);
    hattn::Decoder<Config{.levels = 1, .heads = 1, .d_model = 8, .seed_compat = true}> notebook(V1, S1, 21);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(notebook, p),
                        load + "checkpoint variant is the seed's (every variant field at its default), the model's "
                               "is seed_compat true");
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
  SECTION("a FIFO is refused without blocking") {
    REQUIRE(::mkfifo(p.c_str(), 0600) == 0);
    REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                        "read_safetensors: '" + ps + "' is not a regular file (it is a FIFO)");
  }
  SECTION("a weight that is not finite (the first bad one is named)") {
    auto& r = refs[refs.size() - 2];  // linear.weight, (V1, 8)
    REQUIRE(r.name == "linear.weight");
    const std::vector<float> original(static_cast<const float*>(r.data),
                                      static_cast<const float*>(r.data) + V1 * 8);  // (V1, 8)
    for (const auto& [value, text] : std::vector<std::pair<float, std::string>>{
             {NAN, "nan"}, {INFINITY, "inf"}, {-INFINITY, "-inf"}}) {
      std::vector<float> w = original;  // (V1, 8); r.data points at the last pass's copy otherwise
      w[13] = value;  // row 1, column 5
      w[20] = NAN;
      r.data = w.data();
      io::write_safetensors(p, refs, meta);
      REQUIRE_THROWS_WITH(hattn::load_safetensors(model, p),
                          load + "tensor 'linear.weight' holds " + text + " at [1, 5] (weights must be finite)");
    }
  }
  SECTION("malformed hattn.config: a message naming the file and the field") {
    auto with_config = [&](const std::string& config) {
      auto m = meta;
      m["hattn.config"] = config;
      io::write_safetensors(p, refs, m);
      try {
        hattn::load_safetensors(model, p);
      } catch (const hattn::Error& e) {
        return std::string(e.what());
      }
      return std::string("(no error)");
    };
    const std::string cfg = load + "metadata hattn.config";
    nlohmann::json good = nlohmann::json::parse(meta.at("hattn.config"));
    auto edited = [&](const char* key, const nlohmann::json& v) {
      nlohmann::json j = good;
      j[key] = v;
      return j.dump();
    };
    CHECK(with_config(edited("levels", 1e300)) == cfg + ": \"levels\" must be an integer in [1, 30], got 1e+300");
    CHECK(with_config(edited("levels", 31)) == cfg + ": \"levels\" must be an integer in [1, 30], got 31");
    CHECK(with_config(edited("heads", -1)) == cfg + ": \"heads\" must be an integer in [1, 2147483647], got -1");
    CHECK(with_config(edited("d_model", 8.0)) == cfg + ": \"d_model\" must be an integer in [1, 2147483647], got 8.0");
    CHECK(with_config(edited("blocks", "1")) == cfg + ": \"blocks\" must be an integer in [1, 2147483647], got \"1\"");
    CHECK(with_config(edited("vocab_size", std::uint64_t{1} << 40)) ==
          cfg + ": \"vocab_size\" must be an integer in [1, 2147483647], got 1099511627776");
    CHECK(with_config(edited("node_mask", "causal")) == cfg + ": \"node_mask\" must be \"aligned\" or \"full\", got \"causal\"");
    CHECK(with_config(edited("node_combine", 1)) ==
          cfg + ": \"node_combine\" must be \"replace\" or \"residual\", got 1");
    CHECK(with_config(edited("mixer", "Dense")) == cfg + ": \"mixer\" must be \"hierarchical\" or \"dense\", got \"Dense\"");
    CHECK(with_config(edited("summaries", -2)) == cfg + ": \"summaries\" must be an integer in [0, 2147483647], got -2");
    CHECK(with_config(edited("seed_compat", "false")) == cfg + ": \"seed_compat\" must be true or false, got \"false\"");
    CHECK(with_config(edited("seed_compat", 0)) == cfg + ": \"seed_compat\" must be true or false, got 0");
    // A variant field that parses but is not the model's: the variant message.
    CHECK(with_config(edited("summaries", 2)) ==
          load + "checkpoint variant is summaries 2, the model's is the seed's (every variant field at its default)");
    CHECK(with_config(edited("sequence_length", std::string(1000, 's'))) ==
          cfg + ": \"sequence_length\" must be an integer in [1, 2147483647], got \"" + std::string(63, 's') + "... (1002 bytes)");
    nlohmann::json missing = good;
    missing.erase("heads");
    CHECK(with_config(missing.dump()) == cfg + " has no \"heads\"");
    CHECK(with_config("[1, 2]") == cfg + " is a JSON array, not an object");
    CHECK(with_config("{\"levels\": 1, \"levels\": 1}") == cfg + " has key 'levels' more than once");
    CHECK(with_config("{\"levels\": ") ==
          cfg + " is not valid JSON: parse error at line 1, column 12: syntax error while parsing value - unexpected end "
                "of input; expected '[', '{', or a literal");
    const std::size_t depth = 100000;
    CHECK(with_config("{\"levels\": " + std::string(depth, '[') + std::string(depth, ']') + "}") ==
          cfg + " nests arrays and objects deeper than 64 levels");
    // Deep but within the limit: the mismatch message quotes it short.
    CHECK(with_config(edited("levels", nlohmann::json::parse(std::string(60, '[') + std::string(60, ']')))) ==
          cfg + ": \"levels\" must be an integer in [1, 30], got " + std::string(60, '[') + std::string(4, ']') +
              "... (120 bytes)");
  }
  CHECK(unchanged(model, before));
  // The untouched original still loads (the failures above are the edits, not the writer).
  hattn::load_safetensors(model, good);
  CHECK(same_parameters(source, model));
}

TEST_CASE("parse_checkpoint_config reads the configuration save_safetensors writes", "[checkpoint]") {
  const hattn::Decoder<Config{.levels = 2, .heads = 2, .d_model = 8, .blocks = 3, .node_mask = NodeMask::full}> m(11, 16);
  const hattn::CheckpointConfig c = hattn::parse_checkpoint_config(hattn::config_json(m).dump(), "x: ");
  CHECK(c == hattn::checkpoint_config(m));
  CHECK(c.model.levels == 2);
  CHECK(c.model.heads == 2);
  CHECK(c.model.d_model == 8);
  CHECK(c.model.blocks == 3);
  CHECK(c.model.node_mask == NodeMask::full);
  CHECK(c.vocab_size == 11);
  CHECK(c.sequence_length == 16);
  CHECK(c.config().blocks == 3);
  // Members it does not know are ignored; the prefix starts every message.
  nlohmann::json j = hattn::config_json(m);
  j["comment"] = {1, 2};
  CHECK(hattn::parse_checkpoint_config(j.dump(), "x: ") == c);
  REQUIRE_THROWS_WITH(hattn::parse_checkpoint_config("", "x: "),
                      "x: metadata hattn.config is not valid JSON: parse error at line 1, column 1: syntax error while "
                      "parsing value - unexpected end of input; expected '[', '{', or a literal");
  // A checkpoint written before the variants has none of their fields: they read as the defaults.
  for (const char* key : {"node_combine", "summaries", "mixer", "seed_compat"}) j.erase(key);
  CHECK(hattn::parse_checkpoint_config(j.dump(), "x: ") == c);
  // require_same_config names the first differing field in alphabetical order.
  hattn::CheckpointConfig other = c;
  other.vocab_size = 12;
  other.model.heads = 1;
  REQUIRE_THROWS_WITH(hattn::require_same_config(other, c, "x: "), "x: checkpoint heads is 1, the model's is 2");
}

TEST_CASE("check_finite_tensor names the first bad value by its index", "[checkpoint]") {
  auto file = [](const std::string& header, const std::vector<float>& values) {
    std::string bytes = le64(header.size()) + header;
    bytes.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
    return io::parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())));
  };
  const auto f = file(R"({"m": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, )"
                      R"("s": {"dtype": "F32", "shape": [], "data_offsets": [24, 28]}})",
                      {0.0f, -0.0f, 1.0f, -2.0f, NAN, -INFINITY, 3.0f});
  using hattn::ValueRule;
  REQUIRE_THROWS_WITH(hattn::check_finite_tensor(f, "m", ValueRule::finite, "values", "x: "),
                      "x: tensor 'm' holds nan at [1, 1] (values must be finite)");
  REQUIRE_THROWS_WITH(hattn::check_finite_tensor(f, "m", ValueRule::finite_non_negative, "moments", "x: "),
                      "x: tensor 'm' holds -2 at [1, 0] (moments must be finite and >= 0)");
  hattn::check_finite_tensor(f, "s", ValueRule::finite_non_negative, "values", "x: ");
  // Across blocks: the first bad value far into a large tensor.
  std::vector<float> big(10000, 1.0f);
  big[9001] = INFINITY;
  big[9999] = NAN;
  const auto g = file(R"({"b": {"dtype": "F32", "shape": [100, 100], "data_offsets": [0, 40000]}})", big);
  REQUIRE_THROWS_WITH(hattn::check_finite_tensor(g, "b", ValueRule::finite, "weights", ""),
                      "tensor 'b' holds inf at [90, 1] (weights must be finite)");
  const auto h = file(R"({"i": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})", {1.0f});
  REQUIRE_THROWS_WITH(hattn::check_finite_tensor(h, "i", ValueRule::finite, "weights", ""),
                      "check_finite_tensor: tensor 'i' has dtype I32, expected F32");
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
