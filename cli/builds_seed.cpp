// The builds of preset 'seed' (cli/presets.hpp): Commands<C> for each of its variants.

#include "commands_impl.hpp"

namespace hattn::cli {

template struct Commands<build_config("seed", "replace")>;
template struct Commands<build_config("seed", "notebook")>;

}  // namespace hattn::cli
