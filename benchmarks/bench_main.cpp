// hattn_bench entry point: Google Benchmark's runner, with hattn's thread count in the context.
//
// Besides Google Benchmark's flags it takes:
//   --hattn_threads=N             cap hattn's threads (hattn::ThreadLimit) for the whole run
//   --hattn_iterations=N          fixed iteration count for the BM_Predict / BM_TrainStep benchmarks
//   --hattn_sgemm_peak_gflops=X   the peak MFU divides by, instead of measuring it in this process

#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <hattn/core/blas.hpp>
#include <hattn/core/parallel.hpp>

#include "bench_common.hpp"

namespace {

/// The value of `arg` if it is `--<name>=<value>`.
std::optional<std::string> flag_value(std::string_view arg, std::string_view name) {
  const std::string prefix = "--" + std::string(name) + "=";
  if (arg.substr(0, prefix.size()) != prefix) return std::nullopt;
  return std::string(arg.substr(prefix.size()));
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<hattn::ThreadLimit> limit;
  benchmark::IterationCount iterations = 0;
  int kept = 1;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string_view arg = argv[i];
      if (auto v = flag_value(arg, "hattn_threads")) {
        limit = std::make_unique<hattn::ThreadLimit>(std::stoi(*v));
      } else if (auto v = flag_value(arg, "hattn_iterations")) {
        iterations = std::stoll(*v);
      } else if (auto v = flag_value(arg, "hattn_sgemm_peak_gflops")) {
        hattn_bench::set_sgemm_peak(std::stod(*v) * 1e9);
      } else if (arg.substr(0, 8) == "--hattn_") {
        std::fprintf(stderr, "hattn_bench: unknown flag %s\n", argv[i]);
        return 1;
      } else {
        argv[kept++] = argv[i];
      }
    }
  } catch (const std::exception& e) {  // std::stoi & co. on a malformed number, ThreadLimit(0)
    std::fprintf(stderr, "hattn_bench: bad flag value: %s\n", e.what());
    return 1;
  }
  argc = kept;
  hattn_bench::register_model_benchmarks(iterations);
  benchmark::AddCustomContext("hattn_threads", std::to_string(hattn::max_threads()));
  const hattn::GemmInfo gemm = hattn::gemm_info();
  benchmark::AddCustomContext("hattn_gemm", gemm.summary());
  if (!gemm.warning.empty()) std::fprintf(stderr, "%s\n", gemm.warning.c_str());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
