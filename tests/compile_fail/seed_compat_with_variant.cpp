// Must not compile: seed_compat reproduces the notebook's model only, not a variant of it.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .summaries = 4, .seed_compat = true}>
      model(16, 64);
  return int(model.vocab_size());
}
