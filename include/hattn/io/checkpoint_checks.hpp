#pragma once
/// \file
/// What every checkpoint loader checks before it uses a file: the two JSON metadata values
/// (`hattn.config`, the model shape; `hattn.train_state`, the trainer's counters), parsed through
/// io::parse_json() and validated field by field, and tensor values (finite; moments >= 0). Apart
/// from the model, so that the checks can be run, and fuzzed, on their own.

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "hattn/config.hpp"
#include "hattn/core/error.hpp"
#include "hattn/io/excerpt.hpp"
#include "hattn/io/json.hpp"
#include "hattn/io/safetensors.hpp"

namespace hattn {


/// The metadata key holding a checkpoint's model configuration (JSON).
inline constexpr const char* config_key = "hattn.config";

/// The metadata key of a training checkpoint's state (JSON: step, model_step, model_seed,
/// data_seed, data_stream, data_position).
inline constexpr const char* train_state_key = "hattn.train_state";

/// The model a checkpoint's `hattn.config` holds (parse_checkpoint_config()).
struct CheckpointConfig {
  Config model;              ///< the compile-time part, ranges as in for_each_config_field()
  Index vocab_size = 1;      ///< in [1, 2^31 - 1] (token ids are 32-bit)
  Index sequence_length = 1; ///< in [1, 2^31 - 1]

  /// The compile-time part.
  constexpr Config config() const { return model; }
  /// Field by field.
  bool operator==(const CheckpointConfig&) const = default;
};

/// A field's value as messages and checkpoints show it: a number, `true` / `false`, or a quoted
/// name ("full").
template <class V>
std::string field_text(V v) {
  if constexpr (std::is_same_v<V, bool>) return v ? "true" : "false";
  else if constexpr (std::is_enum_v<V>) return detail::concat('"', value_name(v), '"');
  else return std::to_string(v);
}

/// The variant fields of `c` that leave their defaults (SPEC.md "Variants"), as messages show
/// them, e.g. `node_combine "residual", summaries 16`; `the seed's (every variant field at its
/// default)` when there are none.
inline std::string describe_variant(const Config& c) {
  std::string out;
  for_each_config_field([&](auto field) {
    if (field.variant && c.*field.member != Config{}.*field.member)
      out += detail::concat(out.empty() ? "" : ", ", field.name, " ", field_text(c.*field.member));
  });
  return out.empty() ? "the seed's (every variant field at its default)" : out;
}

namespace detail {

/// Parses metadata value `text` (of metadata key `key`) as a JSON object; throws hattn::Error
/// `<where>metadata <key> <problem>`: `is not valid JSON: <detail>`, `nests arrays and objects
/// deeper than 64 levels`, `has key '<k>' more than once` or `is a JSON <type>, not an object`.
inline nlohmann::json metadata_object(std::string_view text, std::string_view key, std::string_view where) {
  io::ParsedJson parsed = io::parse_json(text);
  if (parsed.problem) throw Error(concat(where, "metadata ", key, " ", parsed.problem->describe()));
  if (!parsed.value.is_object())
    throw Error(concat(where, "metadata ", key, " is a JSON ", parsed.value.type_name(), ", not an object"));
  return std::move(parsed.value);
}

/// The member `field` of metadata object `obj` (of key `key`); throws hattn::Error
/// `<where>metadata <key> has no "<field>"`.
inline const nlohmann::json& metadata_field(const nlohmann::json& obj, const char* field, std::string_view key,
                                            std::string_view where) {
  const auto it = obj.find(field);
  if (it == obj.end()) throw Error(concat(where, "metadata ", key, " has no \"", field, "\""));
  return *it;
}

/// Integer member `field` of `obj`, which must lie in [lo, hi]; throws hattn::Error
/// `<where>metadata <key> has no "<field>"` or `<where>metadata <key>: "<field>" must be an integer
/// in [<lo>, <hi>], got <json>` (e.g. for 1e300, -1 or "3").
inline std::uint64_t metadata_integer(const nlohmann::json& obj, const char* field, std::int64_t lo, std::uint64_t hi,
                                      std::string_view key, std::string_view where) {
  const nlohmann::json& v = metadata_field(obj, field, key, where);
  bool ok = false;
  std::uint64_t u = 0;
  if (v.is_number_unsigned()) {
    u = v.get<std::uint64_t>();
    ok = u <= hi && (lo <= 0 || u >= static_cast<std::uint64_t>(lo));
  } else if (v.is_number_integer()) {  // negative
    const std::int64_t i = v.get<std::int64_t>();
    ok = i >= lo && (i < 0 || static_cast<std::uint64_t>(i) <= hi);
    u = static_cast<std::uint64_t>(i);
  }
  if (!ok)
    throw Error(concat(where, "metadata ", key, ": \"", field, "\" must be an integer in [", lo, ", ", hi, "], got ",
                       io::json_excerpt(v)));
  return u;
}

/// "nan", "inf", "-inf" or the value, as messages show a float (NaN by its bits: -ffast-math
/// cannot fold the test away).
inline std::string float_text(float v) {
  if ((std::bit_cast<std::uint32_t>(v) & 0x7fffffffu) > 0x7f800000u) return "nan";
  return concat(v);
}

/// "[i, j, k]": flat index `flat` of a row-major tensor of `shape`.
inline std::string index_text(std::size_t flat, const std::vector<Index>& shape) {
  std::vector<Index> at(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    const auto n = static_cast<std::size_t>(shape[d]);
    at[d] = static_cast<Index>(flat % n);
    flat /= n;
  }
  return io::detail::bracket_shape(at);
}

}  // namespace detail

/// Parses and validates the text of a `hattn.config` metadata value (as save_safetensors() writes
/// it; other members are ignored; a variant field that is absent, as in checkpoints written before
/// the variants, is its default). Throws hattn::Error `<where>metadata hattn.config <problem>`:
/// `is not valid JSON: <detail>`, `nests arrays and objects deeper than 64 levels`, `has key '<k>'
/// more than once`, `is a JSON <type>, not an object`, `has no "<field>"`, `: "<field>" must be an
/// integer in [<lo>, <hi>], got <json>` (ranges as in for_each_config_field() and CheckpointConfig),
/// `: "<field>" must be "<a>" or "<b>", got <json>` (e.g. node_mask "aligned" or "full") or
/// `: "seed_compat" must be true or false, got <json>`. `where` is the start of every message,
/// e.g. `load_safetensors: 'model.safetensors': `. Meant for loaders, and for fuzzing.
inline CheckpointConfig parse_checkpoint_config(std::string_view text, std::string_view where) {
  const nlohmann::json j = detail::metadata_object(text, config_key, where);
  constexpr std::uint64_t int_max = std::numeric_limits<std::int32_t>::max();
  const auto must_be = [&](std::string_view field, std::string_view what, const nlohmann::json& got) {
    return Error(detail::concat(where, "metadata ", config_key, ": \"", field, "\" must be ", what, ", got ",
                                io::json_excerpt(got)));
  };
  CheckpointConfig c;
  for_each_config_field([&](auto field) {
    using V = std::remove_reference_t<decltype(c.model.*field.member)>;
    const std::string name(field.name);
    if (field.variant && !j.contains(name)) return;  // written before the variants: the default
    if constexpr (std::is_same_v<V, int>) {
      c.model.*field.member = static_cast<int>(detail::metadata_integer(
          j, name.c_str(), field.lo, static_cast<std::uint64_t>(field.hi), config_key, where));
    } else if constexpr (std::is_same_v<V, bool>) {
      const nlohmann::json& v = detail::metadata_field(j, name.c_str(), config_key, where);
      if (!v.is_boolean()) throw must_be(name, "true or false", v);
      c.model.*field.member = v.template get<bool>();
    } else {
      const nlohmann::json& v = detail::metadata_field(j, name.c_str(), config_key, where);
      const auto names = value_names(V{});
      std::size_t i = 0;
      while (i < names.size() && !(v.is_string() && v.template get<std::string>() == names[i])) ++i;
      if (i == names.size())
        throw must_be(name, detail::concat('"', names[0], "\" or \"", names[1], '"'), v);
      c.model.*field.member = static_cast<V>(i);
    }
  });
  c.vocab_size = static_cast<Index>(detail::metadata_integer(j, "vocab_size", 1, int_max, config_key, where));
  c.sequence_length = static_cast<Index>(detail::metadata_integer(j, "sequence_length", 1, int_max, config_key, where));
  return c;
}

/// Throws hattn::Error when `got` (a checkpoint's) is not `want` (the model's):
/// `<where>checkpoint variant is <variant>, the model's is <variant>` (describe_variant()) when a
/// variant field differs, else `<where>checkpoint <field> is <value>, the model's is <value>` for
/// the first other field, in alphabetical order (blocks, d_model, heads, levels, node_mask,
/// sequence_length, vocab_size); node masks are shown quoted ("full").
inline void require_same_config(const CheckpointConfig& got, const CheckpointConfig& want, std::string_view where) {
  if (!same_variant(got.model, want.model))
    throw Error(detail::concat(where, "checkpoint variant is ", describe_variant(got.model), ", the model's is ",
                               describe_variant(want.model)));
  std::map<std::string, std::pair<std::string, std::string>> fields;  // name -> (got, want), sorted
  for_each_config_field([&](auto field) {
    fields[std::string(field.name)] = {field_text(got.model.*field.member), field_text(want.model.*field.member)};
  });
  fields["sequence_length"] = {std::to_string(got.sequence_length), std::to_string(want.sequence_length)};
  fields["vocab_size"] = {std::to_string(got.vocab_size), std::to_string(want.vocab_size)};
  for (const auto& [name, values] : fields)
    if (values.first != values.second)
      throw Error(detail::concat(where, "checkpoint ", name, " is ", values.first, ", the model's is ", values.second));
}

/// What check_finite_tensor() requires of the values.
enum class ValueRule {
  finite,               ///< no NaN, no infinity
  finite_non_negative,  ///< ... and none below 0 (-0 is allowed)
};

/// Throws hattn::Error `<where>tensor '<name>' holds <value> at [i, j] (<what> must be finite)` (or
/// `must be finite and >= 0`) for the first value of F32 tensor `name` of `file` that breaks `rule`.
/// `what` names the values in the message, e.g. `weights`. Throws hattn::Error
/// `check_finite_tensor: tensor '<name>' has dtype <t>, expected F32` for another dtype.
inline void check_finite_tensor(const io::SafetensorsFile& file, const std::string& name, ValueRule rule,
                                std::string_view what, std::string_view where) {
  const io::TensorInfo& info = file.info(name);
  detail::require(info.dtype == io::DType::F32, "check_finite_tensor", "tensor '", io::excerpt(name), "' has dtype ",
                  io::dtype_name(info.dtype), ", expected F32");
  const std::span<const std::byte> bytes = file.bytes(name);
  const std::size_t n = bytes.size() / 4;
  const bool sign_matters = rule == ValueRule::finite_non_negative;
  // Bit tests (exponent all ones; above 0x80000000: negative and not -0), so that -ffast-math
  // cannot drop them; per block a min and a max, which vectorize, and a search only in a bad block.
  const std::uint32_t limit = sign_matters ? 0x80000000u : 0xffffffffu;
  auto bad = [limit](std::uint32_t u) { return (u & 0x7f800000u) == 0x7f800000u || u > limit; };
  constexpr std::size_t block = 4096;
  for (std::size_t start = 0; start < n; start += block) {
    const std::size_t end = std::min(n, start + block);
    std::uint32_t finite = 0xffffffffu, largest = 0;  // finite: 0 once an exponent is all ones
    for (std::size_t i = start; i < end; ++i) {
      std::uint32_t u;
      std::memcpy(&u, bytes.data() + 4 * i, 4);
      finite = std::min(finite, (u & 0x7f800000u) ^ 0x7f800000u);
      largest = std::max(largest, u);
    }
    if (finite != 0 && largest <= limit) continue;
    for (std::size_t i = start; i < end; ++i) {
      std::uint32_t u;
      std::memcpy(&u, bytes.data() + 4 * i, 4);
      if (!bad(u)) continue;
      float v;
      std::memcpy(&v, &u, 4);
      throw Error(detail::concat(where, "tensor '", io::excerpt(name), "' holds ", detail::float_text(v), " at ",
                                 detail::index_text(i, info.shape), " (", what, " must be finite",
                                 sign_matters ? " and >= 0)" : ")"));
    }
  }
}

/// The counters of a `hattn.train_state` metadata value (parse_train_state()).
struct TrainCounters {
  std::int64_t step = 0;            ///< optimizer steps completed, in [0, 2^63 - 1]
  std::uint64_t model_step = 0;     ///< the model's dropout step
  std::uint64_t model_seed = 0;     ///< the model's dropout key
  std::uint64_t data_seed = 0;      ///< the batch Generator's seed
  std::uint64_t data_stream = 0;    ///< ... its stream
  std::uint64_t data_position = 0;  ///< ... and its position
};

/// Parses and validates the text of a `hattn.train_state` metadata value (other members are
/// ignored). Each counter must be an integer: `step` in [0, 2^63 - 1], the others in [0, 2^64 - 1]
/// (a negative one would wrap). Throws hattn::Error `<where>metadata hattn.train_state <problem>`:
/// `is not valid JSON: <detail>`, `nests arrays and objects deeper than 64 levels`, `has key '<k>'
/// more than once`, `is a JSON <type>, not an object`, `has no "<field>"` or `: "<field>" must be
/// an integer in [<lo>, <hi>], got <json>`. Meant for loaders, and for fuzzing.
inline TrainCounters parse_train_state(std::string_view text, std::string_view where) {
  const nlohmann::json j = detail::metadata_object(text, train_state_key, where);
  constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();
  auto get = [&](const char* field, std::uint64_t hi) {
    return detail::metadata_integer(j, field, 0, hi, train_state_key, where);
  };
  TrainCounters c;
  c.step = static_cast<std::int64_t>(get("step", std::numeric_limits<std::int64_t>::max()));
  c.model_step = get("model_step", u64_max);
  c.model_seed = get("model_seed", u64_max);
  c.data_seed = get("data_seed", u64_max);
  c.data_stream = get("data_stream", u64_max);
  c.data_position = get("data_position", u64_max);
  return c;
}

}  // namespace hattn
