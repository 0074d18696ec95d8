// libFuzzer target: GPT-2 BPE encode/decode on arbitrary bytes. Every id must lie in
// [0, vocab_size()) and decode(encode(text)) must give the text back, byte for byte, for the BPE
// tokenizer and for the byte tokenizer. The vocabulary is GPT-2's own (encoder.json, vocab.bpe),
// loaded once from HATTN_GPT2_DIR (the environment variable, else the directory the build fetched).
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <hattn/io/gpt2_bpe.hpp>

namespace {

const hattn::io::Tokenizer* bpe = nullptr;
const hattn::io::Tokenizer* bytes = nullptr;

void check_round_trip(const hattn::io::Tokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  for (const auto id : ids)
    if (id < 0 || id >= tok.vocab_size()) {
      std::fprintf(stderr, "%.*s: id %d outside [0, %d)\n", int(tok.name().size()), tok.name().data(), int(id),
                   int(tok.vocab_size()));
      std::abort();
    }
  if (tok.decode(ids) != text) {
    std::fprintf(stderr, "%.*s: decode(encode(text)) differs from the text\n", int(tok.name().size()),
                 tok.name().data());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("HATTN_GPT2_DIR");
  static const hattn::io::Gpt2Bpe gpt2(dir ? dir : HATTN_FUZZ_GPT2_DIR);
  static const hattn::io::ByteTokenizer byte_tokenizer;
  bpe = &gpt2;
  bytes = &byte_tokenizer;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_round_trip(*bpe, text);
  check_round_trip(*bytes, text);
  return 0;
}
