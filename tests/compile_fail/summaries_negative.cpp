// Must not compile: summaries must be >= 0.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .summaries = -1}> model(16, 64);
  return int(model.vocab_size());
}
