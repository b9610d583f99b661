// The tally subcommands that talk to a daemon: `serve` runs one, `apply --server` and
// `query --server` are its clients over the binary protocol.
#pragma once

#include <istream>
#include <ostream>
#include <string>

#include "cli/io.h"
#include "server/server.h"

namespace tally::cli {

// Serves until SIGTERM or SIGINT, then shuts down gracefully. Returns the exit code.
int run_serve(const server::ServerOptions& options);

// Sends the command lines of `in` to the daemon at `address` (HOST:PORT) and writes one
// answer line per input line to `out`, in order, like apply_lines.
int run_remote_apply(const std::string& address, const std::string& token, std::istream& in, std::ostream& out, ApplyStats* stats);

// Sends one query to the daemon and prints its answer.
int run_remote_query(const std::string& address, const std::string& token, const std::string& json, std::ostream& out);

}  // namespace tally::cli
