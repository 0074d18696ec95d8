// libFuzzer target: the checkpoint metadata parsers on arbitrary text, the values of the
// `hattn.config` and `hattn.train_state` keys as a checkpoint carries them. Bad text must end in
// hattn::Error (parse_json reports, never throws): no crash, no sanitizer report, no other
// exception. A config that parses must be within the ranges its fields document.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <hattn/io/checkpoint_checks.hpp>
#include <hattn/io/json.hpp>

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_checkpoint_metadata: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const hattn::io::ParsedJson parsed = hattn::io::parse_json(text);
  if (parsed.problem) (void)parsed.problem->describe();
  try {
    const auto c = hattn::parse_checkpoint_config(text, "fuzz: ");
    const hattn::Config& m = c.model;
    if (m.levels < 1 || m.levels > 30 || m.heads < 1 || m.d_model < 1 || m.blocks < 1 || m.summaries < 0 ||
        c.vocab_size < 1 ||
        c.vocab_size > 2147483647 || c.sequence_length < 1 || c.sequence_length > 2147483647)
      fail("parse_checkpoint_config accepted a field outside its range");
  } catch (const hattn::Error&) {
  }
  try {
    if (hattn::parse_train_state(text, "fuzz: ").step < 0) fail("parse_train_state accepted a negative step");
  } catch (const hattn::Error&) {
  }
  return 0;
}
