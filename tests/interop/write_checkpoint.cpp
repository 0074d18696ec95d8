// Writes, into the directory given as the only argument, a seeded model of the l1_h1_d8 shape
// (model.safetensors, via hattn::save_safetensors) and its inference output on fixed ids
// (outputs.safetensors: "ids" I32 (B, T) and "probs" F32 (B, T, V)), for check_torch.py to
// reproduce in PyTorch.

#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <vector>

#include "hattn/hattn.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: write_checkpoint <output dir>\n";
    return 2;
  }
  try {
    constexpr hattn::Config C{.levels = 1, .heads = 1, .d_model = 8};
    constexpr hattn::Index V = 11, S = 16, B = 2, T = 13;  // T = 13: the blocks pad to 14 rows
    const hattn::Decoder<C> model(V, S, /*seed=*/2024);
    std::vector<std::int32_t> ids(B * T);  // (B, T)
    for (hattn::Index i = 0; i < B * T; ++i) ids[std::size_t(i)] = std::int32_t((7 * i + 3) % V);
    const auto probs = model.predict(hattn::View<const std::int32_t, 2>(ids.data(), B, T));  // (B, T, V)

    const std::filesystem::path dir = argv[1];
    hattn::save_safetensors(model, dir / "model.safetensors");
    const std::vector<hattn::io::TensorRef> outputs = {
        hattn::io::TensorRef::of("ids", ids.data(), {B, T}),
        hattn::io::TensorRef::of("probs", probs.data(), {B, T, V})};
    hattn::io::write_safetensors(dir / "outputs.safetensors", outputs);
  } catch (const std::exception& e) {
    std::cerr << "write_checkpoint: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
