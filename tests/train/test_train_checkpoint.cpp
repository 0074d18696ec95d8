#include <catch2/catch.hpp>

#include <filesystem>
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
