// Turning what a connection received into commands for the writer, the same way for
// every protocol: decode, apply the authenticated identity, and keep one answer slot
// per command so answers go back in order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/command.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "server/auth.h"

namespace tally::server {

// One request's commands: every input command has a result slot; those that decoded
// also wait in `commands` for the writer.
class CommandBatch {
 public:
  // Room for `commands` commands and results, so that filling the batch moves no
  // command twice (a Command is two dozen strings).
  void reserve(size_t commands);
  // A command that decoded and passed scope_command.
  void add(Command&& command);
  // A command refused before the engine; `id` is echoed when known.
  void refuse(Status status, std::string id = {});

  size_t size() const { return results_.size(); }
  std::vector<Command>& commands() { return commands_; }
  // Fills the slots of the decoded commands with the writer's results, in order.
  void complete(std::vector<CommandResult> results);
  const std::vector<CommandResult>& results() const { return results_; }
  std::vector<CommandResult>& results() { return results_; }

 private:
  std::vector<CommandResult> results_;
  std::vector<Command> commands_;
  std::vector<uint32_t> slots_;
};

// Decodes one JSON command line for `who`. A line that does not decode gets its error
// in its slot; a command `who` may not send refuses the whole request (returned).
Status add_json_command(std::string_view line, const Identity& who, CommandBatch* batch);

// Decodes a body of JSON command lines (SPEC §4). Blank lines are skipped. Request-level
// errors: invalid_argument (no command), too_large (more than kBatchCommandsMax), and
// forbidden from scope_command.
Status add_json_lines(std::string_view body, const Identity& who, CommandBatch* batch);

// Checks a record_usage command built field by field (CloudEvents, the binary typed
// form) by the rules decode_command applies to the JSON form.
Status check_usage(const Command& command);

// The HTTP status that best fits an error code (200 for kOk).
unsigned http_status(ErrorCode code);

}  // namespace tally::server
