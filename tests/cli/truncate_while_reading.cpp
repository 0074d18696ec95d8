// truncate_while_reading DIR: writes DIR/shrinking.txt (60 bytes), has read_tokens read it 16 bytes
// at a time and, when the first piece reaches the tokenizer, truncates the file to 20 bytes, as
// another program might while `hattn train` reads its corpus. Prints read_tokens' error the way
// `hattn` does ("hattn: error: <message>", exit 1), or the token count if there was none (exit 0).

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>

#include "hattn/data/text_file.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: truncate_while_reading DIR\n");
    return 2;
  }
  const std::filesystem::path path = std::filesystem::path(argv[1]) / "shrinking.txt";
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << "alpha beta gamma delta epsilon zeta eta theta iota kappa nu\n";  // 60 bytes
  bool truncated = false;
  auto bytes_truncating = [&](std::string_view text) {
    if (!truncated) truncated = ::truncate(path.c_str(), 20) == 0;
    return std::vector<std::int32_t>(text.begin(), text.end());
  };
  try {
    const auto ids = hattn::data::read_tokens(path, bytes_truncating, 16);
    std::printf("%zu tokens\n", ids.size());
    return 0;
  } catch (const hattn::Error& e) {
    std::fprintf(stderr, "hattn: error: %s\n", e.what());
    return 1;
  }
}
