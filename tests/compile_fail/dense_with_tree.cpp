// Must not compile: the dense mixer has no tree, so a tree field may not leave its default.
#include <hattn/hattn.hpp>

int main() {
  hattn::Decoder<hattn::Config{.levels = 2, .heads = 2, .d_model = 8,
                               .node_combine = hattn::NodeCombine::residual, .mixer = hattn::Mixer::dense}>
      model(16, 64);
  return int(model.vocab_size());
}
