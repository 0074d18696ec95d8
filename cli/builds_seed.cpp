// The builds of preset 'seed' (cli/presets.hpp): Commands<C> for each of its variants.

#include "commands_impl.hpp"

namespace hattn::cli {

template struct Commands<build_config("seed", "replace")>;
#ifndef HATTN_CLI_SEED_RULE_ONLY
template struct Commands<build_config("seed", "notebook")>;
#endif

}  // namespace hattn::cli
