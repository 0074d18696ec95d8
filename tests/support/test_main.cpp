// Catch2's main for every test executable, which first refuses test case names that ctest cannot
// run: catch_discover_tests registers each name as a ctest test, and CMake splits a name at ';'
// into two tests that match no test case (and so pass without running anything).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

int main(int argc, char* argv[]) {
  int bad = 0;
  for (const auto& test : Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
    if (test.name.find(';') != std::string::npos) {
      std::fprintf(stderr, "test case name contains ';', which ctest would split: \"%s\"\n", test.name.c_str());
      ++bad;
    }
  }
  if (bad) return 2;
  return Catch::Session().run(argc, argv);
}
