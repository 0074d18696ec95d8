// hattn_bench entry point: Google Benchmark's runner, with hattn's thread count in the context.

#include <benchmark/benchmark.h>

#include <string>

#include <hattn/core/parallel.hpp>

int main(int argc, char** argv) {
  benchmark::AddCustomContext("hattn_threads", std::to_string(hattn::max_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
