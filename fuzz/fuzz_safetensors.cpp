// libFuzzer target: the safetensors reader on arbitrary bytes (the whole file: 8-byte header
// length, JSON header, data). Bad input must end in hattn::Error and nothing else: no crash, no
// sanitizer report, no other exception, bounded time and memory. What parses must be consistent:
// every tensor's bytes lie inside the data section and have the size its dtype and shape give, and
// reading it (as stored and widened to float32) and checking it for finiteness work or throw
// hattn::Error.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>

#include <hattn/io/checkpoint_checks.hpp>
#include <hattn/io/safetensors.hpp>

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  std::optional<hattn::io::SafetensorsFile> parsed;
  try {
    parsed.emplace(hattn::io::parse_safetensors(bytes, "fuzz.safetensors"));
  } catch (const hattn::Error&) {
    return 0;
  }
  const hattn::io::SafetensorsFile& file = *parsed;
  const auto section = file.data();
  for (const auto& name : file.names()) {
    const auto& info = file.info(name);
    const auto raw = file.bytes(name);
    if (!raw.empty() && (raw.data() < section.data() || raw.data() + raw.size() > section.data() + section.size()))
      fail("a tensor's bytes lie outside the data section");
    if (raw.size() != std::size_t(info.numel()) * hattn::io::dtype_size(info.dtype))
      fail("a tensor's byte count differs from its dtype and shape");
    try {
      (void)file.read_as_f32(name);
    } catch (const hattn::Error&) {
    }
    try {
      hattn::check_finite_tensor(file, name, hattn::ValueRule::finite, "tensor", "fuzz: ");
    } catch (const hattn::Error&) {
    }
  }
  return 0;
}
