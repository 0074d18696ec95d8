// The builds of preset 'small' (cli/presets.hpp): Commands<C> for each of its variants.

#include "commands_impl.hpp"

namespace hattn::cli {

template struct Commands<build_config("small", "replace")>;
template struct Commands<build_config("small", "residual")>;
template struct Commands<build_config("small", "pooled")>;
template struct Commands<build_config("small", "dense")>;
template struct Commands<build_config("small", "dense3")>;
template struct Commands<build_config("small", "notebook")>;

}  // namespace hattn::cli
