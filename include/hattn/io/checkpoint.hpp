#pragma once
/// \file
/// A model's weights as safetensors, with SPEC.md's names and PyTorch's shapes (float32): files
/// written here load in PyTorch (`load_state_dict`), and a PyTorch `state_dict` written as
/// safetensors loads here.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/io/safetensors.hpp"
#include "hattn/model/decoder.hpp"

namespace hattn {

/// What load_safetensors found besides the weights.
struct LoadReport {
  std::map<std::string, std::string> metadata;  ///< the file's "__metadata__"
  std::vector<std::string> notes;               ///< things the caller should tell the user
};

/// "aligned" or "full".
constexpr const char* node_mask_name(NodeMask m) { return m == NodeMask::aligned ? "aligned" : "full"; }

/// The metadata key holding a checkpoint's model configuration (JSON).
inline constexpr const char* config_key = "hattn.config";

/// The configuration JSON stored in checkpoints: levels, heads, d_model, blocks, node_mask,
/// vocab_size, sequence_length.
template <Config C, class T>
nlohmann::json config_json(const Decoder<C, T>& model) {
  return {{"levels", C.levels},       {"heads", C.heads},
          {"d_model", C.d_model},     {"blocks", C.blocks},
          {"node_mask", node_mask_name(C.node_mask)}, {"vocab_size", model.vocab_size()},
          {"sequence_length", model.sequence_length()}};
}

/// Writes every parameter of `model` (the fixed position table too, as PyTorch's state_dict holds
/// it) as float32 under its SPEC.md name, with the configuration in the metadata (`hattn.config`)
/// plus `extra` metadata. Atomic: a failed write leaves an existing file intact.
template <Config C, class T>
void save_safetensors(const Decoder<C, T>& model, const std::filesystem::path& path,
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
/// float32). All or nothing: every name, shape and dtype is checked before any weight changes, so
/// on any error the model is unchanged. Throws hattn::Error `load_safetensors: '<path>': <problem>`:
/// a missing tensor, an unexpected tensor, a shape or dtype other than the model's, or a
/// `hattn.config` that differs from the model's; format defects come from read_safetensors.
/// A file without `hattn.config` (e.g. written from PyTorch) loads, with a note in the report:
/// weights trained with the original notebook learned under its non-causal mask (SPEC.md) and do
/// not behave as trained under hattn's causal attention.
template <Config C, class T>
LoadReport load_safetensors(Decoder<C, T>& model, const std::filesystem::path& path) {
  const io::SafetensorsFile file = io::read_safetensors(path);
  const std::string where = detail::concat("'", path.string(), "'");
  constexpr const char* op = "load_safetensors";
  LoadReport report{file.metadata(), {}};

  if (const auto it = file.metadata().find(config_key); it != file.metadata().end()) {
    const nlohmann::json want = config_json(model);
    nlohmann::json got = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    detail::require(got.is_object(), op, where, ": metadata ", config_key, " is not a JSON object");
    for (const auto& [key, value] : want.items()) {
      detail::require(got.contains(key) && got[key] == value, op, where, ": checkpoint ", key, " is ",
                      got.contains(key) ? got[key].dump() : std::string("missing"), ", the model's is ",
                      value.dump());
    }
  } else {
    report.notes.push_back(
        "no hattn.config metadata: if these weights were trained with the original PyTorch notebook, "
        "they were learned under its non-causal mask (SPEC.md) and do not behave as trained under "
        "hattn's causal attention; hattn has no seed_compat mask policy to reproduce that mask");
  }

  // Validate everything first.
  std::map<std::string, bool, std::less<>> expected;
  for (const auto& p : model.parameters()) {
    detail::require(file.contains(p.name), op, where, ": missing tensor '", p.name, "'");
    const io::TensorInfo& info = file.info(p.name);
    detail::require(info.dtype == io::DType::F32, op, where, ": tensor '", p.name, "' has dtype ",
                    io::dtype_name(info.dtype), ", expected F32");
    detail::require(info.shape == p.shape, op, where, ": tensor '", p.name, "' has shape ",
                    io::detail::bracket_shape(info.shape), ", the model's is ",
                    io::detail::bracket_shape(p.shape));
    expected[p.name] = true;
  }
  for (const auto& name : file.names())
    detail::require(expected.count(name) == 1, op, where, ": unexpected tensor '", name,
                    "' (not a parameter of this model)");

  // Then copy.
  for (const auto& p : model.parameters()) {
    const std::vector<float> v = file.read<float>(p.name);
    std::copy(v.begin(), v.end(), p.value);
  }
  return report;
}

}  // namespace hattn
