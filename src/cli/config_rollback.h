#pragma once

namespace distill::cli {

// A run refused for bad input (distill::Error: an incompatible --resume, a wrong setting found
// after the run folder was opened) must leave that folder as it was: start_run records the
// config.toml it replaced, and main() puts it back on such an error (or, when the run wrote the
// folder's first config and made no progress, removes it with the metrics log).
void restore_replaced_config();

}  // namespace distill::cli
