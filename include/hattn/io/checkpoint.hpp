#pragma once
/// \file
/// A model's weights as safetensors, with SPEC.md's names and PyTorch's shapes (float32): files
/// written here load in PyTorch (`load_state_dict`), and a PyTorch `state_dict` written as
/// safetensors loads here. The checks every checkpoint loader shares are in
/// hattn/io/checkpoint_checks.hpp.

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/io/checkpoint_checks.hpp"
#include "hattn/io/excerpt.hpp"
#include "hattn/io/safetensors.hpp"
#include "hattn/model/decoder.hpp"

namespace hattn {

/// What load_safetensors found besides the weights.
struct LoadReport {
  std::map<std::string, std::string> metadata;  ///< the file's "__metadata__"
  std::vector<std::string> notes;               ///< things the caller should tell the user
};

/// The configuration JSON stored in checkpoints: every field of Config (for_each_config_field(),
/// enums by name), vocab_size and sequence_length.
template <Config C, class T, template <Config, class> class M>
nlohmann::json config_json(const Decoder<C, T, M>& model) {
  nlohmann::json j = nlohmann::json::object();
  for_each_config_field([&](auto field) {
    const auto v = C.*field.member;
    if constexpr (std::is_enum_v<decltype(v)>) j[std::string(field.name)] = std::string(value_name(v));
    else j[std::string(field.name)] = v;
  });
  j["vocab_size"] = model.vocab_size();
  j["sequence_length"] = model.sequence_length();
  return j;
}

/// The CheckpointConfig of `model` (what save_safetensors() stores).
template <Config C, class T, template <Config, class> class M>
CheckpointConfig checkpoint_config(const Decoder<C, T, M>& model) {
  return {C, model.vocab_size(), model.sequence_length()};
}

/// Writes every parameter of `model` (the fixed position table too, as PyTorch's state_dict holds
/// it) as float32 under its SPEC.md name, with the configuration in the metadata (`hattn.config`)
/// plus `extra` metadata. Atomic: a failed write leaves an existing file intact.
template <Config C, class T, template <Config, class> class M>
void save_safetensors(const Decoder<C, T, M>& model, const std::filesystem::path& path,
                      std::map<std::string, std::string> extra = {}) {
  std::vector<std::vector<float>> converted;  // float copies, for a double model
  std::vector<io::TensorRef> refs;
  converted.reserve(model.parameters().size());
  for (const auto& p : model.parameters()) {
    const float* data;
    if constexpr (std::is_same_v<T, float>) {
      data = p.value;
    } else {
      converted.emplace_back(p.value, p.value + p.size());
      data = converted.back().data();
    }
    refs.push_back(io::TensorRef::of(p.name, data, p.shape));
  }
  extra["format"] = "hattn";
  extra[config_key] = config_json(model).dump();
  io::write_safetensors(path, refs, extra);
}

/// Loads weights saved by save_safetensors or by PyTorch (a state_dict with SPEC.md's names, in
/// float32). All or nothing: every name, shape, dtype and value is checked before any weight
/// changes, so on any error the model is unchanged. Throws hattn::Error `load_safetensors: '<path>':
/// <problem>`: a missing tensor, an unexpected tensor, a shape or dtype other than the model's, a
/// weight that is not finite (`tensor '<name>' holds nan at [i, j] (weights must be finite)`), a
/// malformed `hattn.config` (parse_checkpoint_config()) or one that differs from the model's
/// (require_same_config()); format defects come from read_safetensors.
/// A file without `hattn.config` (e.g. written from PyTorch) cannot show its variant: it loads into
/// the model's, with a note in the report (weights trained with the original notebook learned
/// under its non-causal mask, SPEC.md, and behave as trained only in a seed_compat model). A
/// seed_compat model's report always says that it is not causal.
template <Config C, class T, template <Config, class> class M>
LoadReport load_safetensors(Decoder<C, T, M>& model, const std::filesystem::path& path) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  const std::string where = detail::concat("load_safetensors: '", path.string(), "': ");
  LoadReport report{file.metadata(), {}};

  if (const auto it = file.metadata().find(config_key); it != file.metadata().end()) {
    require_same_config(parse_checkpoint_config(it->second, where), checkpoint_config(model), where);
  } else if constexpr (C.seed_compat) {
    report.notes.push_back(
        "no hattn.config metadata: loaded into a seed_compat model, which reproduces the original PyTorch "
        "notebook's mask: it is NOT causal (an output depends on later tokens of its chunk, SPEC.md)");
  } else {
    report.notes.push_back(detail::concat(
        "no hattn.config metadata: loaded as variant ", describe_variant(C),
        ". If these weights were trained with the original PyTorch notebook, they were learned under its "
        "non-causal mask (SPEC.md) and behave as trained only in a seed_compat model "
        "(hattn::Config{.seed_compat = true}, the tool's --variant notebook)"));
  }
  if constexpr (C.seed_compat) {
    if (file.metadata().contains(config_key))
      report.notes.push_back("seed_compat model: it is NOT causal (an output depends on later tokens of its chunk, "
                             "SPEC.md)");
  }

  // Validate everything first.
  auto require = [&](bool ok, const auto&... parts) {
    if (!ok) throw Error(detail::concat(where, parts...));
  };
  std::map<std::string, bool, std::less<>> expected;
  for (const auto& p : model.parameters()) {
    require(file.contains(p.name), "missing tensor '", p.name, "'");
    const io::TensorInfo& info = file.info(p.name);
    require(info.dtype == io::DType::F32, "tensor '", p.name, "' has dtype ", io::dtype_name(info.dtype),
            ", expected F32");
    require(info.shape == p.shape, "tensor '", p.name, "' has shape ", io::detail::bracket_shape(info.shape),
            ", the model's is ", io::detail::bracket_shape(p.shape));
    expected[p.name] = true;
  }
  for (const auto& name : file.names())
    require(expected.count(name) == 1, "unexpected tensor '", io::excerpt(name), "' (not a parameter of this model)");
  for (const auto& p : model.parameters()) check_finite_tensor(file, p.name, ValueRule::finite, "weights", where);

  // Then copy.
  for (const auto& p : model.parameters()) {
    if constexpr (std::is_same_v<T, float>) {
      file.copy_to(p.name, p.value, p.shape);
    } else {
      const std::vector<float> v = file.read<float>(p.name);
      std::copy(v.begin(), v.end(), p.value);
    }
  }
  return report;
}

}  // namespace hattn
