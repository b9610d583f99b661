// Internal to the engine: the interface between the command loop and the command
// handlers. A handler checks its command against the state and either refuses it
// (returns an error, having emitted nothing) or emits the events that carry it out.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <string>

#include "engine/assert.h"
#include "engine/command.h"
#include "engine/command_lookups.h"
#include "engine/error.h"
#include "engine/permissions.h"
#include "engine/usage_envelope.h"
#include "projections/projection_set.h"
#include "schemas/events_generated.h"

namespace tally {

class CommandContext {
 public:
  virtual ~CommandContext() = default;
  virtual const ProjectionSet& state() const = 0;
  virtual const Command& command() const = 0;
  // Engine time of the next event.
  virtual int64_t now_us() const = 0;
  // The builder for the next event's payload; build the payload table, then emit it.
  virtual flatbuffers::FlatBufferBuilder& builder() = 0;
  // Wraps the payload in an envelope, applies it to the state and appends it to the
  // batch. The state seen through state() changes at once.
  virtual void emit(fb::Event type, flatbuffers::Offset<void> payload) = 0;
  // emit for a UsageRecorded event, whose envelope is written without the builder, in
  // a layout of its own (engine/usage_envelope.h).
  virtual void emit_usage(const UsageRecordedFields& usage) = 0;
  // Adds the member "key":"value" (value as a JSON string) to the command's answer.
  virtual void add_result(std::string_view key, std::string_view value) = 0;
  // Sets the answer's amount, "key":"<credits_micro in credits>" (CommandResult); at
  // most once per command, and `key` must outlive the answer (a string literal).
  virtual void set_amount(std::string_view key, int64_t credits_micro) = 0;
  // Accepts the command without events: it repeats the command whose first event is
  // `seq` (a retried usage event), or, with seq 0, it had nothing to do (a tick).
  virtual void answer_duplicate(uint64_t seq) = 0;
  virtual uint32_t events() const = 0;
  // What the engine found for this command ahead of running it, if anything.
  virtual const CommandLookups* lookups() const { return nullptr; }
};

// Runs the handler for context.command().type.
Status handle_command(CommandContext& context);
Status handle_org_command(CommandContext& context);
Status handle_credit_command(CommandContext& context);

// Expires the lots and times out the holds that are due at context.now_us().
Status tick(CommandContext& context);
// Moves everything `workspace` holds to the primary workspace.
void emit_return_to_primary(CommandContext& context, const Org& org, uint32_t workspace, fb::MoveReason reason);

// Finds the command's organization, checks that the actor may take `action` on it,
// and that it is not deleted (unknown_org, forbidden, org_deleted, in that order).
Status authorized_org(const CommandContext& context, Action action, const Org** org);

}  // namespace tally
