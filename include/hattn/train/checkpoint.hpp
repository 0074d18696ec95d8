#pragma once
/// \file
/// Training checkpoints: the weights (SPEC.md names, as in a model checkpoint), the optimizer's
/// moments and everything else a Trainer needs to continue bit-exactly, in one safetensors file
/// written atomically (a failed or interrupted write leaves the previous checkpoint loadable).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hattn/core/error.hpp"
#include "hattn/io/checkpoint.hpp"
#include "hattn/io/safetensors.hpp"
#include "hattn/model/decoder.hpp"
#include "hattn/train/trainer.hpp"

namespace hattn {

/// The metadata key of a training checkpoint's state (JSON: step, model_step, model_seed,
/// data_seed, data_stream, data_position).
inline constexpr const char* train_state_key = "hattn.train_state";
/// Tensor name prefixes of the optimizer's moments.
inline constexpr const char* first_moment_prefix = "optimizer.exp_avg.";
inline constexpr const char* second_moment_prefix = "optimizer.exp_avg_sq.";

/// What load_training_checkpoint returns besides the weights it loads into the model.
template <class T>
struct TrainingCheckpoint {
  TrainState<T> state;                          ///< for Trainer::restore
  std::map<std::string, std::string> metadata;  ///< the file's metadata (preset, tokenizer, ...)
};

/// Reads just a checkpoint's metadata (hattn.config, preset, tokenizer, ...), e.g. to pick the
/// compiled preset before building the model.
inline std::map<std::string, std::string> read_checkpoint_metadata(const std::filesystem::path& path) {
  return io::read_safetensors(path).metadata();
}

/// Writes `model`'s weights, `state`'s moments and counters, and `extra` metadata to `path`
/// atomically. The weights are float32 under their SPEC.md names; the moments are
/// `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>` (PyTorch Adam's state names).
template <Config C, class T>
void save_training_checkpoint(const std::filesystem::path& path, const Decoder<C, T>& model,
                              const TrainState<T>& state, std::map<std::string, std::string> extra = {}) {
  Index trainable = 0;
  for (const auto& p : model.parameters()) trainable += p.trainable() ? p.size() : 0;
  detail::require(Index(state.first_moment.size()) == trainable && Index(state.second_moment.size()) == trainable,
                  "save_training_checkpoint", "moments of ", state.first_moment.size(), " and ",
                  state.second_moment.size(), " elements, the model has ", trainable, " trainable");
  // float32 copies of everything, in one buffer per tensor (the file format is float32).
  std::vector<std::vector<float>> buffers;
  std::vector<io::TensorRef> refs;
  buffers.reserve(3 * model.parameters().size());
  auto add = [&](std::string name, const T* data, const std::vector<Index>& shape, Index n) {
    buffers.emplace_back(data, data + n);
    refs.push_back(io::TensorRef::of(std::move(name), buffers.back().data(), shape));
  };
  Index offset = 0;
  for (const auto& p : model.parameters()) add(p.name, p.value, p.shape, p.size());
  for (const auto& p : model.parameters()) {
    if (!p.trainable()) continue;
    add(first_moment_prefix + p.name, state.first_moment.data() + offset, p.shape, p.size());
    add(second_moment_prefix + p.name, state.second_moment.data() + offset, p.shape, p.size());
    offset += p.size();
  }
  extra["format"] = "hattn";
  extra[config_key] = config_json(model).dump();
  extra[train_state_key] = nlohmann::json{{"step", state.step},
                                          {"model_step", state.model_step},
                                          {"model_seed", model.seed()},
                                          {"data_seed", state.data_seed},
                                          {"data_stream", state.data_stream},
                                          {"data_position", state.data_position}}
                               .dump();
  io::write_safetensors(path, refs, extra);
}

/// Loads a training checkpoint written by save_training_checkpoint into `model` (its weights and
/// the key of its dropout masks) and returns the trainer state and metadata. All or nothing: on any error (format, a missing or extra tensor, a
/// shape, a configuration other than the model's, a missing or malformed train state) the model
/// is unchanged and hattn::Error `load_training_checkpoint: '<path>': ...` (or read_safetensors')
/// is thrown. Float moments are exact; a double model's are float32-rounded.
template <Config C, class T>
TrainingCheckpoint<T> load_training_checkpoint(const std::filesystem::path& path, Decoder<C, T>& model) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  constexpr const char* op = "load_training_checkpoint";
  const std::string where = detail::concat("'", path.string(), "'");
  const auto& meta = file.metadata();
  TrainingCheckpoint<T> out;
  out.metadata = meta;

  const auto cfg = meta.find(config_key);
  detail::require(cfg != meta.end(), op, where, ": no ", config_key, " metadata (not a hattn checkpoint)");
  const nlohmann::json got = nlohmann::json::parse(cfg->second, nullptr, false);
  const nlohmann::json want = config_json(model);
  for (const auto& [key, value] : want.items())
    detail::require(got.is_object() && got.contains(key) && got[key] == value, op, where, ": checkpoint ",
                    key, " is ", got.is_object() && got.contains(key) ? got[key].dump() : std::string("missing"),
                    ", the model's is ", value.dump());
  const auto st = meta.find(train_state_key);
  detail::require(st != meta.end(), op, where, ": no ", train_state_key, " metadata (a model checkpoint, "
                  "not a training checkpoint)");
  const nlohmann::json s = nlohmann::json::parse(st->second, nullptr, false);
  for (const char* key : {"step", "model_step", "model_seed", "data_seed", "data_stream", "data_position"})
    detail::require(s.is_object() && s.contains(key) && s[key].is_number_integer(), op, where, ": ",
                    train_state_key, " lacks an integer '", key, "'");

  std::map<std::string, bool, std::less<>> expected;
  auto check = [&](const std::string& name, const std::vector<Index>& shape) {
    detail::require(file.contains(name), op, where, ": missing tensor '", name, "'");
    const io::TensorInfo& info = file.info(name);
    detail::require(info.dtype == io::DType::F32, op, where, ": tensor '", name, "' has dtype ",
                    io::dtype_name(info.dtype), ", expected F32");
    detail::require(info.shape == shape, op, where, ": tensor '", name, "' has shape ",
                    io::detail::bracket_shape(info.shape), ", the model's is ", io::detail::bracket_shape(shape));
    expected[name] = true;
  };
  for (const auto& p : model.parameters()) {
    check(p.name, p.shape);
    if (p.trainable()) {
      check(first_moment_prefix + p.name, p.shape);
      check(second_moment_prefix + p.name, p.shape);
    }
  }
  for (const auto& name : file.names())
    detail::require(expected.count(name) == 1, op, where, ": unexpected tensor '", name, "'");

  // Validated: copy.
  out.state.step = s["step"].get<std::int64_t>();
  out.state.model_step = s["model_step"].get<std::uint64_t>();
  out.state.data_seed = s["data_seed"].get<std::uint64_t>();
  out.state.data_stream = s["data_stream"].get<std::uint64_t>();
  out.state.data_position = s["data_position"].get<std::uint64_t>();
  model.set_seed(s["model_seed"].get<std::uint64_t>());  // the key of its dropout masks
  for (const auto& p : model.parameters()) {
    const std::vector<float> v = file.read<float>(p.name);
    std::copy(v.begin(), v.end(), p.value);
    if (!p.trainable()) continue;
    const std::vector<float> m = file.read<float>(first_moment_prefix + p.name);
    const std::vector<float> q = file.read<float>(second_moment_prefix + p.name);
    out.state.first_moment.insert(out.state.first_moment.end(), m.begin(), m.end());
    out.state.second_moment.insert(out.state.second_moment.end(), q.begin(), q.end());
  }
  return out;
}

}  // namespace hattn
