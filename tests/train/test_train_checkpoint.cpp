#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "hattn/hattn.hpp"
#include "hattn/train/checkpoint.hpp"
#include "support/files.hpp"

using hattn::Index;
namespace fs = std::filesystem;

namespace {

constexpr hattn::Config cfg{.levels = 2, .heads = 2, .d_model = 16};
using Model = hattn::Decoder<cfg>;

std::vector<std::int32_t> corpus() {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "a stitch in time saves nine; look before you leap. ";
  return {text.begin(), text.end()};
}

hattn::TrainOptions options() {
  return {.steps = 8, .batch = 4, .micro_batches = 2, .lr = 3e-3, .warmup_steps = 2, .eval_every = 3, .seed = 11};
}

std::vector<float> weights(const Model& m) {
  std::vector<float> w;
  for (const auto& p : m.parameters()) w.insert(w.end(), p.value, p.value + p.size());
  return w;
}

}  // namespace

TEST_CASE("N steps equal N/2 steps, save, load into a fresh model, N/2 steps: bitwise", "[train][checkpoint]") {
  hattn::data::Dataset data(corpus(), 32);
  Model straight(256, 32, 1);
  hattn::Trainer<Model> a(straight, data, options());
  REQUIRE(a.run().status == hattn::TrainStatus::completed);

  Model first(256, 32, 1);
  hattn::Trainer<Model> b(first, data, options());
  REQUIRE(b.run(4).steps == 4);
  const hattn::test::TempDir dir{"hattn_test_train_checkpoint"};
  const fs::path path = dir / "resume.safetensors";
  hattn::save_training_checkpoint(path, first, b.state(), {{"preset", "test"}});

  Model resumed(256, 32, 999);  // different initial weights: everything must come from the file
  hattn::Trainer<Model> c(resumed, data, options());
  const auto ckpt = hattn::load_training_checkpoint(path, resumed);
  REQUIRE(ckpt.metadata.at("preset") == "test");
  REQUIRE(ckpt.state.step == 4);
  c.restore(ckpt.state);
  REQUIRE(c.run().status == hattn::TrainStatus::completed);
  REQUIRE(c.step() == 8);
  REQUIRE(weights(resumed) == weights(straight));
}

TEST_CASE("a training checkpoint holds the model checkpoint's names plus the moments, errors are exact",
          "[train][checkpoint]") {
  hattn::data::Dataset data(corpus(), 32);
  Model m(256, 32, 1);
  hattn::Trainer<Model> t(m, data, options());
  t.run(2);
  const hattn::test::TempDir dir{"hattn_test_train_checkpoint"};
  const fs::path path = dir / "names.safetensors";
  hattn::save_training_checkpoint(path, m, t.state());
  const auto file = hattn::io::read_safetensors(path);
  for (const auto& p : m.parameters()) {
    REQUIRE(file.contains(p.name));
    REQUIRE(file.contains(std::string("optimizer.exp_avg.") + p.name) == p.trainable());
    REQUIRE(file.contains(std::string("optimizer.exp_avg_sq.") + p.name) == p.trainable());
  }
  const auto meta = hattn::read_checkpoint_metadata(path);
  REQUIRE(nlohmann::json::parse(meta.at("hattn.train_state"))["step"] == 2);

  // A model checkpoint is not a training checkpoint.
  const fs::path model_only = dir / "model.safetensors";
  hattn::save_safetensors(m, model_only);
  Model other(256, 32, 5);
  const auto before = weights(other);
  REQUIRE_THROWS_WITH(hattn::load_training_checkpoint(model_only, other),
                      "load_training_checkpoint: '" + model_only.string() +
                          "': no hattn.train_state metadata (a model checkpoint, not a training checkpoint)");
  // Another configuration.
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 16, .node_mask = hattn::NodeMask::full}> full(256, 32);
  REQUIRE_THROWS_WITH(hattn::load_training_checkpoint(path, full),
                      "load_training_checkpoint: '" + path.string() +
                          "': checkpoint node_mask is \"aligned\", the model's is \"full\"");
  REQUIRE(weights(other) == before);
}

namespace {

// Rewrites the training checkpoint `src` as `dst`, after `edit(tensors, metadata)` (tensors by name,
// all float32).
template <class Edit>
void rewrite(const fs::path& src, const fs::path& dst, Edit edit) {
  const auto file = hattn::io::read_safetensors(src);
  std::map<std::string, std::vector<float>> tensors;
  for (const auto& name : file.names()) tensors[name] = file.read<float>(name);
  std::map<std::string, std::string> meta = file.metadata();
  edit(tensors, meta);
  std::vector<hattn::io::TensorRef> refs;
  for (const auto& name : file.names())
    refs.push_back(hattn::io::TensorRef::of(name, tensors.at(name).data(), file.info(name).shape));
  hattn::io::write_safetensors(dst, refs, meta);
}

}  // namespace

TEST_CASE("a training checkpoint with bad values or counters is refused, naming the tensor or field",
          "[train][checkpoint]") {
  hattn::data::Dataset data(corpus(), 32);
  Model m(256, 32, 1);
  hattn::Trainer<Model> t(m, data, options());
  t.run(2);
  const hattn::test::TempDir dir{"hattn_test_train_checkpoint"};
  const fs::path good = dir / "good.safetensors", bad = dir / "bad.safetensors";
  hattn::save_training_checkpoint(good, m, t.state());
  const std::string at = "load_training_checkpoint: '" + bad.string() + "': ";
  Model target(256, 32, 7);
  const auto before = weights(target);
  auto message = [&](auto edit) {
    rewrite(good, bad, edit);
    try {
      hattn::load_training_checkpoint(bad, target);
    } catch (const hattn::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  using Tensors = std::map<std::string, std::vector<float>>;
  using Meta = std::map<std::string, std::string>;
  auto set_value = [](const std::string& name, std::size_t i, float v) {
    return [=](Tensors& ts, Meta&) { ts.at(name)[i] = v; };
  };
  const std::string w = "decoder_block.feed_forward.0.weight";  // (64, 16)

  CHECK(message(set_value(w, 17, NAN)) == at + "tensor '" + w + "' holds nan at [1, 1] (weights must be finite)");
  CHECK(message(set_value("optimizer.exp_avg." + w, 0, -INFINITY)) ==
        at + "tensor 'optimizer.exp_avg." + w + "' holds -inf at [0, 0] (first moments must be finite)");
  CHECK(message(set_value("optimizer.exp_avg_sq." + w, 33, -1.0f)) ==
        at + "tensor 'optimizer.exp_avg_sq." + w + "' holds -1 at [2, 1] (second moments must be finite and >= 0)");
  CHECK(message(set_value("optimizer.exp_avg_sq." + w, 33, INFINITY)) ==
        at + "tensor 'optimizer.exp_avg_sq." + w + "' holds inf at [2, 1] (second moments must be finite and >= 0)");

  auto set_state = [](const char* key, const nlohmann::json& v) {
    return [=](Tensors&, Meta& meta) {
      nlohmann::json s = nlohmann::json::parse(meta.at("hattn.train_state"));
      if (v.is_discarded()) s.erase(key);
      else s[key] = v;
      meta["hattn.train_state"] = s.dump();
    };
  };
  const std::string state = at + "metadata hattn.train_state";
  CHECK(message(set_state("model_step", -1)) ==
        state + ": \"model_step\" must be an integer in [0, 18446744073709551615], got -1");
  CHECK(message(set_state("step", std::uint64_t{1} << 63)) ==
        state + ": \"step\" must be an integer in [0, 9223372036854775807], got 9223372036854775808");
  CHECK(message(set_state("data_position", 1.5)) ==
        state + ": \"data_position\" must be an integer in [0, 18446744073709551615], got 1.5");
  CHECK(message(set_state("data_seed", nlohmann::json(nlohmann::json::value_t::discarded))) ==
        state + " has no \"data_seed\"");
  auto set_meta = [](const char* key, std::string text) {
    return [=](Tensors&, Meta& meta) { meta[key] = text; };
  };
  const std::size_t depth = 100000;
  const std::string deep = "{\"levels\": " + std::string(depth, '[') + std::string(depth, ']') + "}";
  CHECK(message(set_meta("hattn.config", deep)) == at + "metadata hattn.config nests arrays and objects deeper than 64 levels");
  CHECK(message(set_meta("hattn.train_state", "{\"step\": 1, \"step\": 2}")) == state + " has key 'step' more than once");
  CHECK(weights(target) == before);
  CHECK(message(set_value("optimizer.exp_avg_sq." + w, 33, -0.0f)) == "(no error)");  // -0 >= 0

  // read_checkpoint_metadata checks the two values too, so its callers can parse them freely.
  rewrite(good, bad, set_meta("hattn.config", R"({"levels": 3})"));
  REQUIRE_THROWS_WITH(hattn::read_checkpoint_metadata(bad),
                      "read_checkpoint_metadata: '" + bad.string() +
                          "': metadata hattn.config has no \"heads\"");
  rewrite(good, bad, [](Tensors&, Meta& meta) {
    nlohmann::json c = nlohmann::json::parse(meta.at("hattn.config"));
    c["levels"] = 1e300;
    meta["hattn.config"] = c.dump();
  });
  REQUIRE_THROWS_WITH(hattn::read_checkpoint_metadata(bad),
                      "read_checkpoint_metadata: '" + bad.string() +
                          "': metadata hattn.config: \"levels\" must be an integer in [1, 30], got 1e+300");
  rewrite(good, bad, set_state("model_step", -1));
  REQUIRE_THROWS_WITH(hattn::read_checkpoint_metadata(bad),
                      "read_checkpoint_metadata: '" + bad.string() +
                          "': metadata hattn.train_state: \"model_step\" must be an integer in [0, 18446744073709551615], got -1");
  // The unedited file loads.
  REQUIRE(hattn::load_training_checkpoint(good, target).state.step == 2);
}

TEST_CASE("parse_train_state reads the counters save_training_checkpoint writes", "[train][checkpoint]") {
  const hattn::TrainCounters c = hattn::parse_train_state(
      R"({"step": 4, "model_step": 18446744073709551615, "model_seed": 3, "data_seed": 5, "data_stream": 6,
          "data_position": 7, "extra": "ignored"})",
      "x: ");
  CHECK(c.step == 4);
  CHECK(c.model_step == 18446744073709551615u);
  CHECK(c.model_seed == 3);
  CHECK(c.data_seed == 5);
  CHECK(c.data_stream == 6);
  CHECK(c.data_position == 7);
  REQUIRE_THROWS_WITH(hattn::parse_train_state("3", "x: "), "x: metadata hattn.train_state is a JSON number, not an object");
}
