// libFuzzer target: the GPT-2 BPE loader on arbitrary files. The input is split at its first NUL
// byte into encoder.json and vocab.bpe (no NUL: all of it is encoder.json, vocab.bpe is empty).
// Bad files must end in hattn::Error: no crash, no sanitizer report, no other exception, bounded
// time and memory. A vocabulary that loads must encode and decode: ids in range, decode(encode(t))
// == t for a few fixed texts and for the input itself.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <hattn/io/gpt2_bpe.hpp>

namespace {

void check_round_trip(const hattn::io::Tokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  for (const auto id : ids)
    if (id < 0 || id >= tok.vocab_size()) {
      std::fprintf(stderr, "fuzz_gpt2_bpe: id %d outside [0, %d)\n", int(id), int(tok.vocab_size()));
      std::abort();
    }
  if (tok.decode(ids) != text) {
    std::fprintf(stderr, "fuzz_gpt2_bpe: decode(encode(text)) differs from the text\n");
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string_view encoder = input.substr(0, nul);
  const std::string_view merges = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  try {
    const auto bpe = hattn::io::Gpt2Bpe::parse(encoder, merges);
    check_round_trip(bpe, "Hello, world! It's 2026.\n");
    check_round_trip(bpe, "\xff\xfe\x80 \xe4\xbd\xa0\xe5\xa5\xbd <|endoftext|>");
    check_round_trip(bpe, merges.substr(0, 256));
  } catch (const hattn::Error&) {
  }
  return 0;
}
