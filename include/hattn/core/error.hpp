#pragma once
/// \file
/// hattn's single exception type and the helpers that build its messages.

#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace hattn {

/// Thrown for every invalid input hattn detects (shapes, token ids, files). The message starts
/// with the name of the operation that rejected the input and states what it got.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// "(2, 3, 4)" for a list of extents.
inline std::string shape_string(std::initializer_list<long long> dims) {
  std::ostringstream s;
  s << '(';
  bool first = true;
  for (long long d : dims) {
    s << (first ? "" : ", ") << d;
    first = false;
  }
  s << ')';
  return s.str();
}

/// Concatenates its arguments with operator<< into one string.
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return s.str();
}

/// Throws hattn::Error("<op>: <message parts...>") unless `ok`.
template <class... Parts>
void require(bool ok, std::string_view op, const Parts&... parts) {
  if (!ok) throw Error(concat(op, ": ", parts...));
}

}  // namespace detail
}  // namespace hattn
