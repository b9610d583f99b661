// CloudEvents 1.0 usage ingestion (POST /v1/events). Each event becomes one
// record_usage command; docs/server.md documents the mapping:
//
//   id          -> id (the usage id: the idempotency key)
//   time        -> occurred_at (required here, RFC 3339 UTC)
//   type        -> must be kUsageEventType
//   subject     -> "<org>/<workspace>" or "<org>/<workspace>/<user>" (optional when
//                  data names them)
//   data        -> {"tool","model","quantity","unit", optional "credits", and optional
//                  "org","workspace","user"}
//   specversion -> must be "1.0"; source is required; datacontenttype, when present,
//                  must be application/json; extension attributes are ignored.
#pragma once

#include <string_view>

#include "engine/error.h"
#include "server/auth.h"
#include "server/requests.h"

namespace tally::server {

inline constexpr std::string_view kUsageEventType = "com.tally.usage.recorded";
inline constexpr std::string_view kStructuredContentType = "application/cloudevents+json";
inline constexpr std::string_view kBatchContentType = "application/cloudevents-batch+json";

// Decodes a structured-mode body (one event, `batch` false) or a batch-mode body (a
// JSON array of events) into `out`, one slot per event; an event that does not map to
// record_usage gets its own error, with its id echoed when it has one. Request-level
// errors: invalid_json (the body), too_large (more than kBatchCommandsMax events),
// invalid_argument (an empty batch) and forbidden (scope_command).
Status add_cloudevents(std::string_view body, bool batch, const Identity& who, CommandBatch* out);

}  // namespace tally::server
