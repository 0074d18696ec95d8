// The builds of preset 'tiny' (cli/presets.hpp): Commands<C> for each of its variants (with
// HATTN_CLI_TINY_ONLY, the sanitizer builds, the default variant's only).

#include "commands_impl.hpp"

namespace hattn::cli {

template struct Commands<build_config("tiny", "pooled")>;
#ifndef HATTN_CLI_TINY_ONLY
template struct Commands<build_config("tiny", "replace")>;
template struct Commands<build_config("tiny", "residual")>;
template struct Commands<build_config("tiny", "dense")>;
template struct Commands<build_config("tiny", "dense3")>;
template struct Commands<build_config("tiny", "notebook")>;
#endif

}  // namespace hattn::cli
