#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "hattn/io/safetensors.hpp"
#include "support/files.hpp"

namespace fs = std::filesystem;
namespace io = hattn::io;
using hattn::Index;
using io::DType;

using hattn::test::TempDir;
using hattn::test::put;
using hattn::test::slurp;

namespace {



// The 8-byte little-endian length prefix, spelled out byte by byte.
std::string le64(std::uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text (used as is, no padding added) and a data section.
std::string file_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

// Names of leftover temporary files in `dir`.
std::vector<std::string> temp_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) out.push_back(e.path().filename());
  return out;
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string bytes_of(std::span<const std::byte> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

// A file written by /usr/bin/python3 with PyTorch (the format written by hand with struct + json,
// header keys sorted by name so they are not in data order, header padded with spaces to 8 bytes):
//
//   half = torch.tensor([1.0, -2.5, 6.1035156e-05, 5.9604645e-08, 65504.0, float("inf"), -0.0, 0.1],
//                       dtype=torch.float16)
//   bf = torch.tensor([1.0, -3.140625, 1e30, 1e-30, float("-inf"), 0.1], dtype=torch.bfloat16)
//   ts = {"w.weight": torch.tensor([[0.5, -1.25, 3.0], [1e-3, 0.1, -0.0]], dtype=torch.float32),
//         "a.scalar": torch.tensor(2.718281828459045, dtype=torch.float64),
//         "ids": torch.tensor([-1, 0, 2**40], dtype=torch.int64),
//         "half": half, "half_as_f32": half.float(), "bf": bf, "bf_as_f32": bf.float(),
//         "empty": torch.zeros((0, 3), dtype=torch.int32),
//         "bytes": torch.tensor([[0, 255], [7, 128]], dtype=torch.uint8)}
//   header, data = {"__metadata__": {"format": "pt", "note": "made by torch"}}, b""
//   for k, t in ts.items():
//       raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
//       header[k] = {"dtype": names[t.dtype], "shape": list(t.shape),
//                    "data_offsets": [len(data), len(data) + len(raw)]}
//       data += raw
//   h = json.dumps(header, sort_keys=True).encode(); h += b" " * (-len(h) % 8)
//   blob = struct.pack("<Q", len(h)) + h + data
const unsigned char python_file[] = {
    0xb0, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61,
    0x74, 0x22, 0x3a, 0x20, 0x22, 0x70, 0x74, 0x22, 0x2c, 0x20, 0x22, 0x6e, 0x6f, 0x74, 0x65, 0x22,
    0x3a, 0x20, 0x22, 0x6d, 0x61, 0x64, 0x65, 0x20, 0x62, 0x79, 0x20, 0x74, 0x6f, 0x72, 0x63, 0x68,
    0x22, 0x7d, 0x2c, 0x20, 0x22, 0x61, 0x2e, 0x73, 0x63, 0x61, 0x6c, 0x61, 0x72, 0x22, 0x3a, 0x20,
    0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a,
    0x20, 0x5b, 0x32, 0x34, 0x2c, 0x20, 0x33, 0x32, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70,
    0x65, 0x22, 0x3a, 0x20, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70,
    0x65, 0x22, 0x3a, 0x20, 0x5b, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x62, 0x66, 0x22, 0x3a, 0x20, 0x7b,
    0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20,
    0x5b, 0x31, 0x30, 0x34, 0x2c, 0x20, 0x31, 0x31, 0x36, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79,
    0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x42, 0x46, 0x31, 0x36, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x36, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x62, 0x66, 0x5f,
    0x61, 0x73, 0x5f, 0x66, 0x33, 0x32, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f,
    0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x31, 0x31, 0x36, 0x2c, 0x20,
    0x31, 0x34, 0x30, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22,
    0x46, 0x33, 0x32, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b,
    0x36, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x62, 0x79, 0x74, 0x65, 0x73, 0x22, 0x3a, 0x20, 0x7b, 0x22,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b,
    0x31, 0x34, 0x30, 0x2c, 0x20, 0x31, 0x34, 0x34, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70,
    0x65, 0x22, 0x3a, 0x20, 0x22, 0x55, 0x38, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65,
    0x22, 0x3a, 0x20, 0x5b, 0x32, 0x2c, 0x20, 0x32, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x65, 0x6d, 0x70,
    0x74, 0x79, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x31, 0x34, 0x30, 0x2c, 0x20, 0x31, 0x34, 0x30, 0x5d,
    0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x49, 0x33, 0x32, 0x22,
    0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x30, 0x2c, 0x20, 0x33,
    0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x68, 0x61, 0x6c, 0x66, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x61,
    0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x35, 0x36,
    0x2c, 0x20, 0x37, 0x32, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20,
    0x22, 0x46, 0x31, 0x36, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20,
    0x5b, 0x38, 0x5d, 0x7d, 0x2c, 0x20, 0x22, 0x68, 0x61, 0x6c, 0x66, 0x5f, 0x61, 0x73, 0x5f, 0x66,
    0x33, 0x32, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x37, 0x32, 0x2c, 0x20, 0x31, 0x30, 0x34, 0x5d, 0x2c,
    0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c,
    0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x38, 0x5d, 0x7d, 0x2c, 0x20,
    0x22, 0x69, 0x64, 0x73, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66,
    0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x33, 0x32, 0x2c, 0x20, 0x35, 0x36, 0x5d,
    0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x22, 0x49, 0x36, 0x34, 0x22,
    0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20, 0x5b, 0x33, 0x5d, 0x7d, 0x2c,
    0x20, 0x22, 0x77, 0x2e, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x22, 0x3a, 0x20, 0x7b, 0x22, 0x64,
    0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x20, 0x5b, 0x30,
    0x2c, 0x20, 0x32, 0x34, 0x5d, 0x2c, 0x20, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x20,
    0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x20, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x20,
    0x5b, 0x32, 0x2c, 0x20, 0x33, 0x5d, 0x7d, 0x7d, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0xa0, 0xbf,
    0x00, 0x00, 0x40, 0x40, 0x6f, 0x12, 0x83, 0x3a, 0xcd, 0xcc, 0xcc, 0x3d, 0x00, 0x00, 0x00, 0x80,
    0x69, 0x57, 0x14, 0x8b, 0x0a, 0xbf, 0x05, 0x40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
    0x00, 0x3c, 0x00, 0xc1, 0x00, 0x04, 0x01, 0x00, 0xff, 0x7b, 0x00, 0x7c, 0x00, 0x80, 0x66, 0x2e,
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x80, 0x38, 0x00, 0x00, 0x80, 0x33,
    0x00, 0xe0, 0x7f, 0x47, 0x00, 0x00, 0x80, 0x7f, 0x00, 0x00, 0x00, 0x80, 0x00, 0xc0, 0xcc, 0x3d,
    0x80, 0x3f, 0x49, 0xc0, 0x4a, 0x71, 0xa2, 0x0d, 0x80, 0xff, 0xcd, 0x3d, 0x00, 0x00, 0x80, 0x3f,
    0x00, 0x00, 0x49, 0xc0, 0x00, 0x00, 0x4a, 0x71, 0x00, 0x00, 0xa2, 0x0d, 0x00, 0x00, 0x80, 0xff,
    0x00, 0x00, 0xcd, 0x3d, 0x00, 0xff, 0x07, 0x80
};

}  // namespace

TEST_CASE("dtype names, sizes and C++ types", "[safetensors]") {
  const std::map<std::string, std::size_t> expected = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  for (const auto& [name, size] : expected) {
    const DType t = io::parse_dtype(name);
    REQUIRE(io::dtype_name(t) == name);
    REQUIRE(io::dtype_size(t) == size);
  }
  REQUIRE_THROWS_WITH(io::parse_dtype("f32"), "parse_dtype: unknown safetensors dtype \"f32\"");
  REQUIRE_THROWS_WITH(io::parse_dtype("F4"), "parse_dtype: unknown safetensors dtype \"F4\"");
  REQUIRE_THROWS_AS(io::parse_dtype(""), hattn::Error);

  STATIC_REQUIRE(io::dtype_of<float>() == DType::F32);
  STATIC_REQUIRE(io::dtype_of<const double>() == DType::F64);
  STATIC_REQUIRE(io::dtype_of<std::int8_t>() == DType::I8);
  STATIC_REQUIRE(io::dtype_of<std::uint8_t>() == DType::U8);
  STATIC_REQUIRE(io::dtype_of<std::int16_t>() == DType::I16);
  STATIC_REQUIRE(io::dtype_of<std::uint16_t>() == DType::U16);
  STATIC_REQUIRE(io::dtype_of<std::int32_t>() == DType::I32);
  STATIC_REQUIRE(io::dtype_of<std::uint32_t>() == DType::U32);
  STATIC_REQUIRE(io::dtype_of<std::int64_t>() == DType::I64);
  STATIC_REQUIRE(io::dtype_of<long long>() == DType::I64);
  STATIC_REQUIRE(io::dtype_of<std::uint64_t>() == DType::U64);
}

TEST_CASE("half and bfloat16 widen to float exactly", "[safetensors]") {
  REQUIRE(io::f16_to_f32(0x3c00) == 1.0f);
  REQUIRE(io::f16_to_f32(0xc100) == -2.5f);
  REQUIRE(io::f16_to_f32(0x7bff) == 65504.0f);
  REQUIRE(io::f16_to_f32(0x0400) == 0x1p-14f);             // smallest normal
  REQUIRE(io::f16_to_f32(0x0001) == 0x1p-24f);             // smallest subnormal
  REQUIRE(io::f16_to_f32(0x83ff) == -1023 * 0x1p-24f);     // largest subnormal, negative
  REQUIRE(std::bit_cast<std::uint32_t>(io::f16_to_f32(0x8000)) == 0x80000000u);  // -0
  REQUIRE(io::f16_to_f32(0x7c00) == INFINITY);
  REQUIRE(io::f16_to_f32(0xfc00) == -INFINITY);
  REQUIRE(std::isnan(io::f16_to_f32(0x7e00)));
  REQUIRE(std::isnan(io::f16_to_f32(0x7c01)));
  REQUIRE(io::bf16_to_f32(0x3f80) == 1.0f);
  REQUIRE(io::bf16_to_f32(0xc049) == -3.140625f);
  REQUIRE(io::bf16_to_f32(0xff80) == -INFINITY);
  REQUIRE(std::isnan(io::bf16_to_f32(0x7fc0)));
}

TEST_CASE("write then read round-trips dtypes, shapes, scalars, empty tensors and metadata", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "model.safetensors";
  const std::vector<float> w = {0.5f, -1.25f, 3.0f, 1e-3f, 0.1f, -0.0f};  // (2, 3)
  const double scalar = 2.718281828459045;                                // []
  const std::vector<std::int64_t> ids = {-1, 0, std::int64_t{1} << 40, 7, -9};  // (5)
  const std::vector<std::int32_t> none;                                   // (0, 4)
  const std::vector<std::uint8_t> u8 = {0, 1, 2, 253, 254, 255};         // (3, 1, 2)
  const std::vector<std::uint16_t> half = {0x3c00, 0xc100, 0x0001, 0x7c00};  // (4) F16 bits
  const std::vector<std::uint16_t> bf = {0x3f80, 0xc049};                 // (2) BF16 bits
  const std::vector<io::TensorRef> refs = {
      io::TensorRef::of("w.weight", w.data(), {2, 3}),
      io::TensorRef::of("scalar", &scalar, {}),
      io::TensorRef::of("ids", ids.data(), {5}),
      io::TensorRef::of("none", none.data(), {0, 4}),
      io::TensorRef::of("u8", u8.data(), {3, 1, 2}),
      {"half", DType::F16, {4}, half.data()},
      {"bf", DType::BF16, {2}, bf.data()},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"quote\"d", "ünïcødé \\ \n"}, {"empty", ""}};

  for (bool with_meta : {true, false}) {
    io::write_safetensors(p, refs, with_meta ? meta : std::map<std::string, std::string>{});
    const io::SafetensorsFile f = io::read_safetensors(p);

    REQUIRE(f.path() == p);
    REQUIRE(f.names() == std::vector<std::string>{"w.weight", "scalar", "ids", "none", "u8", "half", "bf"});
    REQUIRE(f.size() == 7);
    REQUIRE(f.metadata() == (with_meta ? meta : std::map<std::string, std::string>{}));
    REQUIRE(f.contains("ids"));
    REQUIRE_FALSE(f.contains("w"));

    REQUIRE(f.info("w.weight").dtype == DType::F32);
    REQUIRE(f.info("w.weight").shape == std::vector<Index>{2, 3});
    REQUIRE(f.info("w.weight").begin == 0);
    REQUIRE(f.info("w.weight").end == 24);
    REQUIRE(f.info("scalar").shape.empty());
    REQUIRE(f.info("scalar").numel() == 1);
    REQUIRE(f.info("scalar").begin == 24);
    REQUIRE(f.info("none").numel() == 0);
    REQUIRE(f.info("none").nbytes() == 0);
    REQUIRE(f.info("u8").shape == std::vector<Index>{3, 1, 2});
    REQUIRE(f.info("bf").end == f.data().size());

    REQUIRE(raw_bytes(f.read<float>("w.weight")) == raw_bytes(w));  // bitwise, including -0.0
    REQUIRE(f.read<double>("scalar") == std::vector<double>{scalar});
    REQUIRE(f.read<std::int64_t>("ids") == ids);
    REQUIRE(f.read<std::int32_t>("none").empty());
    REQUIRE(f.read<std::uint8_t>("u8") == u8);
    REQUIRE(bytes_of(f.bytes("half")) == raw_bytes(half));
    REQUIRE(bytes_of(f.bytes("bf")) == raw_bytes(bf));
    REQUIRE(f.read_as_f32("half") == std::vector<float>{1.0f, -2.5f, 0x1p-24f, INFINITY});
    REQUIRE(f.read_as_f32("bf") == std::vector<float>{1.0f, -3.140625f});
    REQUIRE(raw_bytes(f.read_as_f32("w.weight")) == raw_bytes(w));

    std::vector<float> out(6, 42.0f);
    f.copy_to("w.weight", out.data(), {2, 3});
    REQUIRE(raw_bytes(out) == raw_bytes(w));
    double s = 0;
    f.copy_to("scalar", &s, {});
    REQUIRE(s == scalar);

    // Header: 8-byte aligned, padded with spaces, metadata first and only when given.
    const std::string raw = slurp(p);
    std::uint64_t n = 0;
    std::memcpy(&n, raw.data(), 8);
    REQUIRE(n % 8 == 0);
    REQUIRE(raw.size() == 8 + n + f.data().size());
    const std::string header = raw.substr(8, n);
    const std::size_t json_end = header.find_last_not_of(' ') + 1;  // the rest is padding
    REQUIRE(n - json_end < 8);
    REQUIRE(nlohmann::json::parse(header.substr(0, json_end)).is_object());
    REQUIRE(header.starts_with(with_meta ? "{\"__metadata__\":{" : "{\"w.weight\":{"));
    REQUIRE(temp_files(dir.path).empty());
  }
}

TEST_CASE("an empty tensor list writes a valid file", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "empty.safetensors";
  io::write_safetensors(p, {}, {});
  REQUIRE(slurp(p) == le64(8) + "{}      ");
  const auto f = io::read_safetensors(p);
  REQUIRE(f.names().empty());
  REQUIRE(f.metadata().empty());
  REQUIRE(f.data().empty());
}

TEST_CASE("a hand-built file reads byte for byte", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "hand.safetensors";
  // Keys not in data order, "__metadata__" last, extra spaces inside and 13 spaces of padding.
  const std::string header =
      R"({"b": {"shape": [], "dtype": "I16", "data_offsets": [8, 10]}, )"
      R"("a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"k": "v"}})"
      "             ";
  const std::string data = std::string("\x00\x00\x80\x3f", 4) +  // 1.0f
                           std::string("\x00\x00\x00\xc0", 4) +  // -2.0f
                           std::string("\xfe\xff", 2);           // int16 -2
  put(p, le64(header.size()) + header + data);
  const auto f = io::read_safetensors(p);
  REQUIRE(f.names() == std::vector<std::string>{"a", "b"});
  REQUIRE(f.read<float>("a") == std::vector<float>{1.0f, -2.0f});
  REQUIRE(f.read<std::int16_t>("b") == std::vector<std::int16_t>{-2});
  REQUIRE(f.info("b").shape.empty());
  REQUIRE(f.metadata() == std::map<std::string, std::string>{{"k", "v"}});
  REQUIRE(bytes_of(f.data()) == data);

  // Unpadded headers (data not aligned) read the same; unknown entry fields are ignored.
  const std::string tight = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":[1]}})";
  REQUIRE(tight.size() % 8 != 0);
  put(p, le64(tight.size()) + tight + data.substr(0, 8));
  REQUIRE(io::read_safetensors(p).read<float>("a") == std::vector<float>{1.0f, -2.0f});
}

TEST_CASE("a file written by PyTorch reads with the right values", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "torch.safetensors";
  put(p, std::string(reinterpret_cast<const char*>(python_file), sizeof python_file));
  const auto f = io::read_safetensors(p);
  REQUIRE(f.names() == std::vector<std::string>{"w.weight", "a.scalar", "ids", "half", "half_as_f32", "bf",
                                                "bf_as_f32", "empty", "bytes"});
  REQUIRE(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "made by torch"}});
  REQUIRE(f.read<float>("w.weight") == std::vector<float>{0.5f, -1.25f, 3.0f, 1e-3f, 0.1f, -0.0f});
  REQUIRE(f.info("w.weight").shape == std::vector<Index>{2, 3});
  REQUIRE(f.read<double>("a.scalar") == std::vector<double>{2.718281828459045});
  REQUIRE(f.info("a.scalar").shape.empty());
  REQUIRE(f.read<std::int64_t>("ids") == std::vector<std::int64_t>{-1, 0, std::int64_t{1} << 40});
  REQUIRE(f.info("empty").shape == std::vector<Index>{0, 3});
  REQUIRE(f.read<std::int32_t>("empty").empty());
  REQUIRE(f.read<std::uint8_t>("bytes") == std::vector<std::uint8_t>{0, 255, 7, 128});
  // PyTorch's own widening (.float()) agrees bit for bit with ours, subnormals, inf and -0 included.
  REQUIRE(raw_bytes(f.read_as_f32("half")) == raw_bytes(f.read<float>("half_as_f32")));
  REQUIRE(raw_bytes(f.read_as_f32("bf")) == raw_bytes(f.read<float>("bf_as_f32")));
  REQUIRE(f.read<float>("half_as_f32")[3] == 0x1p-24f);
}

TEST_CASE("every malformed file is rejected with an exact message", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "bad.safetensors";
  const std::string at = "read_safetensors: '" + p.string() + "': ";
  auto check = [&](const std::string& bytes, const std::string& problem) {
    put(p, bytes);
    REQUIRE_THROWS_WITH(io::read_safetensors(p), at + problem);
  };
  auto check_header = [&](const std::string& header, const std::string& data, const std::string& problem) {
    check(file_bytes(header, data), problem);
  };
  const std::string f32x2 = R"("dtype": "F32", "shape": [2], "data_offsets": [0, 8])";

  SECTION("file system") {
    const fs::path missing = dir / "missing.safetensors";
    REQUIRE_THROWS_WITH(io::read_safetensors(missing),
                        "read_safetensors: '" + missing.string() + "': cannot open: No such file or directory");
    REQUIRE_THROWS_WITH(io::read_safetensors(dir.path),
                        "read_safetensors: '" + dir.path.string() + "' is not a regular file (it is a directory)");
    // Neither blocks: a FIFO nobody writes to, a device that never ends.
    const fs::path fifo = dir / "fifo.safetensors";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    REQUIRE_THROWS_WITH(io::read_safetensors(fifo),
                        "read_safetensors: '" + fifo.string() + "' is not a regular file (it is a FIFO)");
    REQUIRE_THROWS_WITH(io::read_safetensors("/dev/zero"),
                        "read_safetensors: '/dev/zero' is not a regular file (it is a character device)");
    REQUIRE_THROWS_WITH(io::read_safetensors("/proc/self/status"),
                        "read_safetensors: '/proc/self/status' is not a regular file (it is in the proc file system)");
  }
  SECTION("length prefix") {
    check("", "file is 0 bytes, too short for the 8-byte header length");
    check(std::string("\x02\x00\x00\x00\x00", 5), "file is 5 bytes, too short for the 8-byte header length");
    check(le64(100) + std::string(10, ' '), "header length 100 runs past the end of the file (10 bytes follow the length)");
    check(le64(~std::uint64_t{0}) + "{}",
          "header length 18446744073709551615 runs past the end of the file (2 bytes follow the length)");
  }
  SECTION("JSON") {
    check_header(R"({"a": )", "",
                 "header is not valid JSON: parse error at line 1, column 7: syntax error while parsing value - "
                 "unexpected end of input; expected '[', '{', or a literal");
    check_header("{\"\xff\": 1}", "",
                 "header is not valid JSON: parse error at line 1, column 3: syntax error while parsing object key - "
                 "invalid string: ill-formed UTF-8 byte; last read: '\"\xff'; expected string literal");
    check_header("", "",
                 "header is not valid JSON: parse error at line 1, column 1: syntax error while parsing value - "
                 "unexpected end of input; expected '[', '{', or a literal");
    check_header("[1, 2]", "", "header is a JSON array, not an object");
    check_header("\"x\"    ", "", "header is a JSON string, not an object");
    check_header(R"({"a": {)" + f32x2 + R"(}, "a": {)" + f32x2 + "}}", std::string(8, '\0'),
                 "header has key 'a' more than once");
  }
  SECTION("metadata") {
    check_header(R"({"__metadata__": ["x"]})", "", R"("__metadata__" must be an object of strings, got ["x"])");
    check_header(R"({"__metadata__": {"ok": "v", "k": 3}})", "",
                 R"("__metadata__" value for key 'k' must be a string, got 3)");
    check_header(R"({"__metadata__": {"k": null}})", "", R"("__metadata__" value for key 'k' must be a string, got null)");
  }
  SECTION("entries") {
    const std::string d8(8, '\0');
    check_header(R"({"a": 5})", "", "tensor 'a': entry must be an object, got 5");
    check_header(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", d8, "tensor 'a': missing \"dtype\"");
    check_header(R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", d8, "tensor 'a': missing \"shape\"");
    check_header(R"({"a": {"dtype": "F32", "shape": [2]}})", d8, "tensor 'a': missing \"data_offsets\"");
    check_header(R"({"a": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})", d8,
                 "tensor 'a': \"dtype\" must be a string, got 4");
    check_header(R"({"a": {"dtype": "f32", "shape": [2], "data_offsets": [0, 8]}})", d8,
                 "tensor 'a': unknown dtype \"f32\"");
    check_header(R"({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 8]}})", d8,
                 "tensor 'a': unknown dtype \"F4\"");
    for (const char* shape : {"2", "[2, -1]", "[2.0]", "[\"2\"]", "null", "[9223372036854775808]"})
      check_header(R"({"a": {"dtype": "F32", "shape": )" + std::string(shape) + R"(, "data_offsets": [0, 8]}})", d8,
                   "tensor 'a': \"shape\" must be an array of non-negative integers, got " +
                       nlohmann::json::parse(shape).dump());
    for (const char* offsets : {"[0]", "[0, 8, 9]", "[0, \"8\"]", "{}", "[-1, 8]", "[0, 8.0]"})
      check_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": )" + std::string(offsets) + "}}", d8,
                   "tensor 'a': \"data_offsets\" must be an array of two non-negative integers, got " +
                       nlohmann::json::parse(offsets).dump());
  }
  SECTION("offsets and sizes") {
    check_header(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", std::string(8, '\0'),
                 "tensor 'a': data_offsets [8, 4] have begin > end");
    check_header(R"({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", std::string(12, '\0'),
                 "tensor 'a': data_offsets [0, 12] hold 12 bytes, but F32 shape [2, 2] needs 16");
    check_header(R"({"a": {"dtype": "F64", "shape": [], "data_offsets": [0, 4]}})", std::string(4, '\0'),
                 "tensor 'a': data_offsets [0, 4] hold 4 bytes, but F64 shape [] needs 8");
    check_header(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})",
                 std::string(8, '\0'), "tensor 'a': shape [4611686018427387904, 8] is too large");
    check_header(R"({"a": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 8]}})",
                 std::string(8, '\0'), "tensor 'a': shape [4611686018427387904] is too large");
  }
  SECTION("layout") {
    const std::string d16(16, '\0');
    check_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", std::string(8, '\0'),
                 "tensor 'a': data_offsets [4, 8] leave a gap at the start of the data section");
    check_header(R"({"b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}, )"
                 R"("a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                 std::string(12, '\0'), "tensor 'b': data_offsets [8, 12] leave a gap after tensor 'a' at [0, 4]");
    check_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                 R"("b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                 std::string(8, '\0'), "tensor 'b': data_offsets [4, 8] overlap tensor 'a' at [0, 8]");
    check_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                 R"("b": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})",
                 std::string(8, '\0'), "tensor 'b': data_offsets [0, 8] overlap tensor 'a' at [0, 8]");
    check_header(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", std::string(10, '\0'),
                 "truncated data section: 10 bytes, but tensors end at byte 16");
    check_header(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", std::string(6, '\0'),
                 "data section is 6 bytes, but tensors end at byte 4 (trailing bytes)");
    check_header("{}", "x", "data section is 1 bytes, but tensors end at byte 0 (trailing bytes)");
    // Zero-sized tensors may share an offset with the tensor that follows.
    put(p, file_bytes(R"({"e": {"dtype": "I32", "shape": [0, 3], "data_offsets": [4, 4]}, )"
                      R"("a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, )"
                      R"("b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}})",
                      d16.substr(0, 6)));
    REQUIRE(io::read_safetensors(p).names() == std::vector<std::string>{"a", "e", "b"});
  }
}

TEST_CASE("hostile headers fail fast with short messages", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "hostile.safetensors";
  const std::string at = "read_safetensors: '" + p.string() + "': ";
  auto message = [&](const std::string& bytes) {
    put(p, bytes);
    try {
      io::read_safetensors(p);
    } catch (const hattn::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string f32x2 = R"("dtype": "F32", "shape": [2], "data_offsets": [0, 8])";
  const std::string d8(8, '\0');

  SECTION("deep nesting is refused while parsing (nothing recurses on it afterwards)") {
    const std::size_t depth = 100000;
    const std::string deep = R"({"t":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
    CHECK(message(file_bytes(deep, "")) == at + "header nests arrays and objects deeper than 64 levels");
    // 64 levels (the header object and 63 arrays) parse; the entry is then rejected, quoted short.
    const std::string deepest = R"({"t":)" + std::string(63, '[') + std::string(63, ']') + "}";
    CHECK(message(file_bytes(deepest, "")) ==
          at + "tensor 't': entry must be an object, got " + std::string(63, '[') + std::string(1, ']') +
              "... (126 bytes)");
    CHECK(message(file_bytes(R"({"t":)" + std::string(64, '[') + std::string(64, ']') + "}", "")) ==
          at + "header nests arrays and objects deeper than 64 levels");
  }
  SECTION("duplicate keys at every level are named") {
    CHECK(message(file_bytes(R"({"a": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}})", d8)) ==
          at + "tensor 'a': entry has key 'dtype' more than once");
    CHECK(message(file_bytes(R"({"__metadata__": {"k": "1", "k": "2"}})", "")) ==
          at + "\"__metadata__\" has key 'k' more than once");
    CHECK(message(file_bytes(R"({"a": {)" + f32x2 + R"(, "extra": {"x": 1, "x": 2}}})", d8)) ==
          at + "tensor 'a': \"extra\" has key 'x' more than once");
    CHECK(message(file_bytes(R"({"__metadata__": {"k": {"x": 1, "x": 2}}})", "")) ==
          at + "\"__metadata__\" value for key 'k' has key 'x' more than once");
  }
  SECTION("40,000 tensors parse in well under a second (no quadratic duplicate check)") {
    std::string header = "{";
    for (int i = 0; i < 40000; ++i)
      header += (i ? ", \"t" : "\"t") + std::to_string(i) + R"(": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]})";
    header += "}";
    put(p, file_bytes(header, ""));
    const auto t0 = std::chrono::steady_clock::now();
    const auto f = io::read_safetensors(p);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(f.size() == 40000);
    CHECK(seconds < 1.0);
    // The same with a duplicate at the very end is named as quickly.
    header.back() = ',';
    header += R"("t0": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}})";
    const auto t1 = std::chrono::steady_clock::now();
    CHECK(message(file_bytes(header, "")) == at + "header has key 't0' more than once");
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() < 1.0);
  }
  SECTION("long values, names and tokens are quoted as excerpts") {
    const std::string x(5'000'000, 'x');
    CHECK(message(file_bytes(R"({"a": ")" + x + "\"}", "")) ==
          at + "tensor 'a': entry must be an object, got \"" + std::string(63, 'x') + "... (5000002 bytes)");
    const std::string name(100, 'n');
    CHECK(message(file_bytes("{\"" + name + "\": 5}", "")) ==
          at + "tensor '" + std::string(64, 'n') + "... (100 bytes)': entry must be an object, got 5");
    CHECK(message(file_bytes(R"({"__metadata__": {")" + name + "\": 1}}", "")) ==
          at + "\"__metadata__\" value for key '" + std::string(64, 'n') + "... (100 bytes)' must be a string, got 1");
    // nlohmann's message quotes the token it was reading when it failed: here a 1 MB string.
    const std::string bad = "{\"" + std::string(1'000'000, 'y') + "\xff\": 1}";
    CHECK(message(file_bytes(bad, "")) ==
          at + "header is not valid JSON: parse error at line 1, column 1000003: syntax error while parsing object key - "
               "invalid string: ill-formed UTF-8 byte; last read: '\"" + std::string(63, 'y') +
               "... (1000002 bytes)'; expected string literal");
    // A shape of many extents is quoted short too.
    std::string shape = "[";
    for (int i = 0; i < 1000; ++i) shape += i ? ",-1" : "-1";
    shape += "]";
    CHECK(message(file_bytes(R"({"a": {"dtype": "F32", "shape": )" + shape + R"(, "data_offsets": [0, 8]}})", d8)) ==
          at + "tensor 'a': \"shape\" must be an array of non-negative integers, got " + shape.substr(0, 64) +
              "... (" + std::to_string(shape.size()) + " bytes)");
  }
  SECTION("the header may hold at most 100,000,000 bytes") {
    // A sparse file: the length is checked before anything else is read.
    const std::uint64_t n = 100'000'001;
    put(p, le64(n));
    REQUIRE(::truncate(p.c_str(), static_cast<off_t>(8 + n)) == 0);
    try {
      io::read_safetensors(p);
      FAIL("no error");
    } catch (const hattn::Error& e) {
      CHECK(std::string(e.what()) == at + "header length 100000001 is over the format's limit of 100000000 bytes");
    }
  }
  SECTION("element counts are checked product by product") {
    // The reference implementation folds the shape left to right with checked products: an
    // overflowing prefix is an error even when a later extent is 0.
    CHECK(message(file_bytes(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 4, 0], "data_offsets": [0, 0]}})", "")) ==
          at + "tensor 'a': shape [4611686018427387904, 4, 0] is too large");
    CHECK(message(file_bytes(R"({"a": {"dtype": "U8", "shape": [0, 4611686018427387904, 4], "data_offsets": [0, 0]}})", "")) ==
          "(no error)");
    const io::TensorInfo huge{DType::F32, {Index{1} << 62, 4, 0}, 0, 0};
    REQUIRE_THROWS_WITH(huge.numel(),
                        "TensorInfo::numel: shape [4611686018427387904, 4, 0] has a negative extent or too many elements");
    CHECK(io::TensorInfo{DType::F32, {3, 0, Index{1} << 62}, 0, 0}.numel() == 0);
  }
}

TEST_CASE("parse_safetensors reads bytes in memory as read_safetensors reads a file", "[safetensors]") {
  const auto* raw = reinterpret_cast<const std::byte*>(python_file);
  const io::SafetensorsFile f = io::parse_safetensors({raw, sizeof python_file});
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "torch.safetensors";
  put(p, std::string(reinterpret_cast<const char*>(python_file), sizeof python_file));
  const io::SafetensorsFile g = io::read_safetensors(p);
  CHECK(f.path() == "<memory>");
  CHECK(f.names() == g.names());
  CHECK(f.metadata() == g.metadata());
  CHECK(bytes_of(f.data()) == bytes_of(g.data()));
  for (const auto& name : f.names()) CHECK(bytes_of(f.bytes(name)) == bytes_of(g.bytes(name)));

  // The same messages, naming the buffer.
  auto message = [](const std::string& bytes, const fs::path& name) {
    try {
      io::parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), name);
    } catch (const hattn::Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  CHECK(message("", "<memory>") == "read_safetensors: '<memory>': file is 0 bytes, too short for the 8-byte header length");
  CHECK(message(le64(100) + "{}", "buf") ==
        "read_safetensors: 'buf': header length 100 runs past the end of the file (2 bytes follow the length)");
  CHECK(message(file_bytes(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", std::string(6, '\0')), "b") ==
        "read_safetensors: 'b': data section is 6 bytes, but tensors end at byte 4 (trailing bytes)");
  const std::size_t depth = 100000;
  CHECK(message(file_bytes(std::string(depth, '[') + std::string(depth, ']'), ""), "b") ==
        "read_safetensors: 'b': header nests arrays and objects deeper than 64 levels");
}

TEST_CASE("typed accessors check names, dtypes and shapes", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "t.safetensors";
  const std::vector<double> x = {1, 2, 3, 4, 5, 6};
  const std::vector<std::int32_t> i = {1, 2};
  const std::vector<io::TensorRef> refs = {io::TensorRef::of("x", x.data(), {2, 3}),
                                           io::TensorRef::of("i", i.data(), {2})};
  io::write_safetensors(p, refs, {});
  const auto f = io::read_safetensors(p);
  const std::string q = "'" + p.string() + "'";
  REQUIRE_THROWS_WITH(f.info("y"), "SafetensorsFile: " + q + ": no tensor named 'y'");
  REQUIRE_THROWS_WITH(f.bytes("y"), "SafetensorsFile: " + q + ": no tensor named 'y'");
  REQUIRE_THROWS_WITH(f.read<float>("x"), "SafetensorsFile::read: " + q + ": tensor 'x' has dtype F64, expected F32");
  REQUIRE_THROWS_WITH(f.read<std::int64_t>("i"),
                      "SafetensorsFile::read: " + q + ": tensor 'i' has dtype I32, expected I64");
  std::vector<double> out(6, -7.0);
  REQUIRE_THROWS_WITH(f.copy_to("x", out.data(), {3, 2}),
                      "SafetensorsFile::copy_to: " + q + ": tensor 'x' has shape [2, 3], expected [3, 2]");
  REQUIRE_THROWS_WITH(f.copy_to("x", out.data(), {6}),
                      "SafetensorsFile::copy_to: " + q + ": tensor 'x' has shape [2, 3], expected [6]");
  REQUIRE(out == std::vector<double>(6, -7.0));  // untouched on failure
  std::vector<float> outf(6);
  REQUIRE_THROWS_WITH(f.copy_to("x", outf.data(), {2, 3}),
                      "SafetensorsFile::copy_to: " + q + ": tensor 'x' has dtype F64, expected F32");
  REQUIRE_THROWS_WITH(f.read_as_f32("x"),
                      "SafetensorsFile::read_as_f32: " + q + ": tensor 'x' has dtype F64, expected F32, F16 or BF16");
  f.copy_to("x", out.data(), {2, 3});
  REQUIRE(out == x);
}

TEST_CASE("invalid tensor lists are rejected before anything is written", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "w.safetensors";
  const std::string at = "write_safetensors: '" + p.string() + "': ";
  const std::vector<float> v = {1, 2, 3, 4};
  auto check = [&](const std::vector<io::TensorRef>& refs, const std::map<std::string, std::string>& meta,
                   const std::string& problem) {
    REQUIRE_THROWS_WITH(io::write_safetensors(p, refs, meta), at + problem);
    REQUIRE(fs::is_empty(dir.path));
  };
  check({io::TensorRef::of("a", v.data(), {2}), io::TensorRef::of("b", v.data(), {2}),
         io::TensorRef::of("a", v.data(), {1})},
        {}, "tensor name 'a' appears more than once");
  check({io::TensorRef::of("__metadata__", v.data(), {2})}, {}, "tensor name \"__metadata__\" is reserved");
  check({io::TensorRef::of("a", v.data(), {2, -2})}, {}, "tensor 'a': negative extent in shape [2, -2]");
  check({io::TensorRef::of("a", v.data(), {Index{1} << 62, 4})}, {},
        "tensor 'a': shape [4611686018427387904, 4] is too large");
  check({io::TensorRef::of("a", static_cast<const float*>(nullptr), {3})}, {}, "tensor 'a': data is null for 12 bytes");
  check({io::TensorRef::of("bad\xff", v.data(), {1})}, {},
        "header is not valid UTF-8: invalid UTF-8 byte at index 3: 0xFF");
  check({}, {{"k", "v\xc3"}}, "header is not valid UTF-8: incomplete UTF-8 string; last byte: 0xC3");
  // A null pointer is fine for an empty tensor.
  io::write_safetensors(p, std::vector{io::TensorRef::of("e", static_cast<const float*>(nullptr), {0})}, {});
  REQUIRE(io::read_safetensors(p).info("e").nbytes() == 0);
}

TEST_CASE("writing replaces the file atomically and failures leave it intact", "[safetensors]") {
  TempDir dir{"hattn_test_safetensors"};
  const fs::path p = dir / "m.safetensors";
  const std::vector<float> a = {1, 2, 3};
  const std::vector<float> b = {4, 5, 6, 7, 8};
  io::write_safetensors(p, std::vector{io::TensorRef::of("a", a.data(), {3})}, {{"v", "1"}});
  const std::string old_bytes = slurp(p);

  SECTION("overwrite") {
    // A reader that opened the old file keeps seeing it whole: the new file is renamed over the old
    // one, never written into it.
    std::ifstream old_reader(p, std::ios::binary);
    io::write_safetensors(p, std::vector{io::TensorRef::of("b", b.data(), {5})}, {{"v", "2"}});
    REQUIRE(std::string(std::istreambuf_iterator<char>(old_reader), std::istreambuf_iterator<char>()) == old_bytes);
    const auto f = io::read_safetensors(p);
    REQUIRE(f.names() == std::vector<std::string>{"b"});
    REQUIRE(f.read<float>("b") == b);
    REQUIRE(f.metadata().at("v") == "2");
    REQUIRE(temp_files(dir.path).empty());
  }
  SECTION("missing directory") {
    const fs::path q = dir / "no_such_dir" / "m.safetensors";
    const std::string tmp = q.string() + ".tmp-" + std::to_string(::getpid());
    REQUIRE_THROWS_WITH(io::write_safetensors(q, std::vector{io::TensorRef::of("b", b.data(), {5})}, {}),
                        "write_safetensors: '" + q.string() + "': cannot create temporary file '" + tmp +
                            "': No such file or directory");
    REQUIRE_FALSE(fs::exists(q.parent_path()));
    REQUIRE(slurp(p) == old_bytes);
  }
  SECTION("target is a directory") {
    const fs::path d = dir / "sub";
    fs::create_directory(d);
    const std::string tmp = d.string() + ".tmp-" + std::to_string(::getpid());
    REQUIRE_THROWS_WITH(io::write_safetensors(d, std::vector{io::TensorRef::of("b", b.data(), {5})}, {}),
                        "write_safetensors: '" + d.string() + "': cannot rename '" + tmp + "' to '" + d.string() +
                            "': Is a directory");
    REQUIRE(fs::is_directory(d));
    REQUIRE(fs::is_empty(d));
    REQUIRE(slurp(p) == old_bytes);
  }
  SECTION("write fails mid-file (file size limit)") {
    // RLIMIT_FSIZE makes write() fail with EFBIG part-way through the data, like a full disk.
    const std::vector<float> big(4096, 1.0f);
    rlimit old{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    rlimit small = old;
    small.rlim_cur = 1000;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      io::write_safetensors(p, std::vector{io::TensorRef::of("big", big.data(), {4096})}, {});
    } catch (const hattn::Error& e) {
      message = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    const std::string tmp = p.string() + ".tmp-" + std::to_string(::getpid());
    REQUIRE(message == "write_safetensors: '" + p.string() + "': writing temporary file '" + tmp +
                           "' failed: File too large");
    REQUIRE(slurp(p) == old_bytes);
    REQUIRE(io::read_safetensors(p).read<float>("a") == a);
  }
  REQUIRE(temp_files(dir.path).empty());
}
