// Must not compile: levels must be >= 1.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 0, .heads = 2, .d_model = 8}> model(16, 64);
  return int(model.vocab_size());
}
