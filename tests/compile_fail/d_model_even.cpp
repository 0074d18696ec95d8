// Must not compile: d_model must be even.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 1, .d_model = 7}> model(16, 64);
  return int(model.vocab_size());
}
