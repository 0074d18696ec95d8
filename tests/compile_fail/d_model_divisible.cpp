// Must not compile: d_model must be divisible by heads.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 3, .d_model = 8}> model(16, 64);
  return int(model.vocab_size());
}
