#pragma once
/// \file
/// Training checkpoints: the weights (SPEC.md names, as in a model checkpoint), the optimizer's
/// moments and everything else a Trainer needs to continue bit-exactly, in one safetensors file
/// written atomically (a failed or interrupted write leaves the previous checkpoint loadable).

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hattn/core/error.hpp"
#include "hattn/io/checkpoint.hpp"
#include "hattn/io/safetensors.hpp"
#include "hattn/model/decoder.hpp"
#include "hattn/train/trainer.hpp"

namespace hattn {

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
/// compiled preset before building the model. `hattn.config` and `hattn.train_state`, when
/// present, are validated (parse_checkpoint_config(), parse_train_state()), so that a caller may
/// parse them without checks of its own; errors name the file: `read_checkpoint_metadata:
/// '<path>': metadata hattn.config: "levels" must be an integer in [1, 30], got 1e+300`. Format
/// defects come from read_safetensors.
inline std::map<std::string, std::string> read_checkpoint_metadata(const std::filesystem::path& path) {
  std::map<std::string, std::string> meta = io::read_safetensors(path).metadata();
  const std::string where = detail::concat("read_checkpoint_metadata: '", path.string(), "': ");
  if (const auto it = meta.find(config_key); it != meta.end()) parse_checkpoint_config(it->second, where);
  if (const auto it = meta.find(train_state_key); it != meta.end()) parse_train_state(it->second, where);
  return meta;
}

/// Writes `model`'s weights, `state`'s moments and counters, and `extra` metadata to `path`
/// atomically. The weights are float32 under their SPEC.md names; the moments are
/// `optimizer.exp_avg.<name>` / `optimizer.exp_avg_sq.<name>` (PyTorch Adam's state names).
template <Config C, class T, template <Config, class> class M>
void save_training_checkpoint(const std::filesystem::path& path, const Decoder<C, T, M>& model,
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
/// the key of its dropout masks) and returns the trainer state and metadata. All or nothing: on
/// any error the model is unchanged and hattn::Error `load_training_checkpoint: '<path>': <problem>`
/// (or read_safetensors') is thrown, <problem> being one of
/// - `no hattn.config metadata (not a hattn checkpoint)`, a malformed `hattn.config`
///   (parse_checkpoint_config()) or one other than the model's (`checkpoint node_mask is "full",
///   the model's is "aligned"`, require_same_config())
/// - `no hattn.train_state metadata (a model checkpoint, not a training checkpoint)` or a malformed
///   one (parse_train_state())
/// - `missing tensor '<name>'`, `unexpected tensor '<name>'`, `tensor '<name>' has dtype F16,
///   expected F32`, `tensor '<name>' has shape [...], the model's is [...]`
/// - `tensor '<name>' holds nan at [i, j] (weights must be finite)`, `... (first moments must be
///   finite)`, `... (second moments must be finite and >= 0)` (check_finite_tensor())
/// Float moments are exact; a double model's are float32-rounded.
template <Config C, class T, template <Config, class> class M>
TrainingCheckpoint<T> load_training_checkpoint(const std::filesystem::path& path, Decoder<C, T, M>& model) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  const std::string where = detail::concat("load_training_checkpoint: '", path.string(), "': ");
  auto require = [&](bool ok, const auto&... parts) {
    if (!ok) throw Error(detail::concat(where, parts...));
  };
  const auto& meta = file.metadata();
  TrainingCheckpoint<T> out;
  out.metadata = meta;

  const auto cfg = meta.find(config_key);
  require(cfg != meta.end(), "no ", config_key, " metadata (not a hattn checkpoint)");
  require_same_config(parse_checkpoint_config(cfg->second, where), checkpoint_config(model), where);
  const auto st = meta.find(train_state_key);
  require(st != meta.end(), "no ", train_state_key, " metadata (a model checkpoint, not a training checkpoint)");
  const TrainCounters counters = parse_train_state(st->second, where);

  std::map<std::string, bool, std::less<>> expected;
  auto check = [&](const std::string& name, const std::vector<Index>& shape) {
    require(file.contains(name), "missing tensor '", name, "'");
    const io::TensorInfo& info = file.info(name);
    require(info.dtype == io::DType::F32, "tensor '", name, "' has dtype ", io::dtype_name(info.dtype),
            ", expected F32");
    require(info.shape == shape, "tensor '", name, "' has shape ", io::detail::bracket_shape(info.shape),
            ", the model's is ", io::detail::bracket_shape(shape));
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
    require(expected.count(name) == 1, "unexpected tensor '", io::excerpt(name), "'");
  for (const auto& p : model.parameters()) {
    check_finite_tensor(file, p.name, ValueRule::finite, "weights", where);
    if (!p.trainable()) continue;
    check_finite_tensor(file, first_moment_prefix + p.name, ValueRule::finite, "first moments", where);
    check_finite_tensor(file, second_moment_prefix + p.name, ValueRule::finite_non_negative, "second moments", where);
  }

  // Validated: copy.
  out.state.step = counters.step;
  out.state.model_step = counters.model_step;
  out.state.data_seed = counters.data_seed;
  out.state.data_stream = counters.data_stream;
  out.state.data_position = counters.data_position;
  model.set_seed(counters.model_seed);  // the key of its dropout masks
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
