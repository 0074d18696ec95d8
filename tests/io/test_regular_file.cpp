// hattn/io/regular_file.hpp: only regular files are opened, without blocking, and reads stop at
// the size a file had when it was opened.

#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "hattn/io/regular_file.hpp"
#include "support/files.hpp"

namespace fs = std::filesystem;
namespace io = hattn::io;
using hattn::test::TempDir;

TEST_CASE("open_regular_file refuses everything but a regular file, without blocking", "[regular_file]") {
  TempDir dir{"hattn_test_regular_file"};
  const std::string d = dir.path.string();

  const fs::path missing = dir / "missing";
  REQUIRE_THROWS_WITH(io::open_regular_file(missing, "corpus file"),
                      "corpus file '" + missing.string() + "': cannot open: No such file or directory");
  REQUIRE_THROWS_WITH(io::open_regular_file(dir.path, "corpus file"),
                      "corpus file '" + d + "' is not a regular file (it is a directory)");
  const fs::path fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // nobody writes to it: opening it for reading would block
  REQUIRE_THROWS_WITH(io::open_regular_file(fifo, "read:"), "read: '" + fifo.string() + "' is not a regular file (it is a FIFO)");
  REQUIRE_THROWS_WITH(io::open_regular_file("/dev/zero", ""), "'/dev/zero' is not a regular file (it is a character device)");
  REQUIRE_THROWS_WITH(io::open_regular_file("/proc/self/status", "x"),
                      "x '/proc/self/status' is not a regular file (it is in the proc file system)");
  if (fs::exists("/sys/kernel/mm/transparent_hugepage/enabled"))
    REQUIRE_THROWS_WITH(io::open_regular_file("/sys/kernel/mm/transparent_hugepage/enabled", "x"),
                        "x '/sys/kernel/mm/transparent_hugepage/enabled' is not a regular file (it is in sysfs)");
  // A socket (bound in a short path: sun_path holds 108 bytes).
  const fs::path sock = fs::temp_directory_path() / ("hattn_sock_" + std::to_string(::getpid()));
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::bind(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  CHECK_THROWS_WITH(io::open_regular_file(sock, "x"), "x '" + sock.string() + "' is not a regular file (it is a socket)");
  ::close(s);
  ::unlink(sock.c_str());
  // A symbolic link is followed: to a regular file it opens, to a FIFO it is refused.
  fs::create_symlink(fifo, dir / "link");
  REQUIRE_THROWS_WITH(io::open_regular_file(dir / "link", "x"),
                      "x '" + (dir / "link").string() + "' is not a regular file (it is a FIFO)");
  const fs::path plain = dir.write("plain.txt", "hello");
  fs::create_symlink(plain, dir / "link2");
  CHECK(io::open_regular_file(dir / "link2", "x").size() == 5);
  // Unreadable.
  if (::geteuid() != 0) {
    const fs::path secret = dir.write("secret", "s");
    fs::permissions(secret, fs::perms::none);
    REQUIRE_THROWS_WITH(io::open_regular_file(secret, "x"), "x '" + secret.string() + "': cannot open: Permission denied");
  }
}

TEST_CASE("a regular file reads up to its size when opened", "[regular_file]") {
  TempDir dir{"hattn_test_regular_file"};
  const fs::path p = dir.write("data.bin", std::string("ab\0cd", 5));
  io::RegularFile f = io::open_regular_file(p, "x");
  CHECK(f.size() == 5);
  CHECK(f.fd() >= 0);
  std::string buf(8, '?');
  CHECK(f.read(std::as_writable_bytes(std::span(buf.data(), 3))) == 3);
  CHECK(f.read(std::as_writable_bytes(std::span(buf.data() + 3, 5))) == 2);  // the end of the file
  CHECK(buf.substr(0, 5) == std::string("ab\0cd", 5));
  io::RegularFile g = std::move(f);
  CHECK(f.fd() == -1);
  CHECK(g.size() == 5);

  CHECK(io::read_regular_file(p, "x", 5) == std::string("ab\0cd", 5));
  CHECK(io::read_regular_file(dir.write("empty", ""), "x", 0).empty());
  REQUIRE_THROWS_WITH(io::read_regular_file(p, "Gpt2Bpe:", 4), "Gpt2Bpe: '" + p.string() + "' is 5 bytes, more than the limit of 4");
  REQUIRE_THROWS_WITH(io::read_regular_file("/dev/zero", "x", 100), "x '/dev/zero' is not a regular file (it is a character device)");
}
