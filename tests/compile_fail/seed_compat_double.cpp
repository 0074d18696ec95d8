// Must not compile: seed_compat reproduces float32 arithmetic (in double, s - 1e9 does not round to
// -1e9), so its scalar must be float.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8, .seed_compat = true}, double> model(16, 64);
  return int(model.vocab_size());
}
