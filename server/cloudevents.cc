#include "server/cloudevents.h"

#include <simdjson.h>

#include <fmt/format.h>

#include "engine/values.h"

namespace tally::server {
namespace {

Status bad(std::string_view attribute, std::string_view expected) {
  return Error(ErrorCode::kInvalidArgument, fmt::format("CloudEvents attribute \"{}\" must be {}", attribute, expected));
}

Status string_of(simdjson::dom::element value, std::string_view name, std::string_view* out) {
  if (value.get(*out)) return bad(name, "a string");
  return Status::Ok();
}

// CloudEvents extension attribute names: lower-case letters and digits.
bool extension_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// Sets `target` from `value`, or checks that it agrees with what the subject said.
Status merge(std::string* target, std::string_view value, std::string_view name) {
  if (!target->empty() && *target != value) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("data.{} \"{}\" disagrees with the subject", name, excerpt(value)));
  }
  *target = value;
  return Status::Ok();
}

Status read_data(simdjson::dom::element value, Command* command) {
  simdjson::dom::object data;
  if (value.get(data)) return bad("data", "a JSON object");
  for (auto [key, field] : data) {
    if (key == "quantity") {
      int64_t quantity;
      if (field.get(quantity)) return Error(ErrorCode::kInvalidArgument, "data.quantity must be an integer");
      command->quantity = quantity;
      continue;
    }
    std::string_view text;
    if (field.get(text)) return Error(ErrorCode::kInvalidArgument, fmt::format("data.{} must be a string", excerpt(key)));
    if (key == "tool") {
      command->tool = text;
    } else if (key == "model") {
      command->model = text;
    } else if (key == "unit") {
      command->unit = text;
    } else if (key == "credits") {
      int64_t micro;
      if (!parse_credits(text, &micro)) {
        return Error(ErrorCode::kInvalidAmount, "data.credits must be decimal credits like \"2.42\": no sign, at most 6 decimals");
      }
      command->credits_micro = micro;
    } else if (key == "org") {
      if (Status s = merge(&command->org, text, key); !s.ok()) return s;
    } else if (key == "workspace") {
      if (Status s = merge(&command->workspace, text, key); !s.ok()) return s;
    } else if (key == "user") {
      if (Status s = merge(&command->user, text, key); !s.ok()) return s;
    } else {
      return Error(ErrorCode::kUnknownField, fmt::format("usage data takes no field \"{}\"", excerpt(key)));
    }
  }
  return Status::Ok();
}

// "<org>/<workspace>" or "<org>/<workspace>/<user>".
Status read_subject(std::string_view subject, Command* command) {
  const size_t first = subject.find('/');
  if (first == std::string_view::npos) return bad("subject", "\"<org>/<workspace>\" or \"<org>/<workspace>/<user>\"");
  const size_t second = subject.find('/', first + 1);
  command->org = subject.substr(0, first);
  command->workspace = subject.substr(first + 1, second == std::string_view::npos ? std::string_view::npos : second - first - 1);
  if (second != std::string_view::npos) command->user = subject.substr(second + 1);
  return Status::Ok();
}

// One event object to one record_usage command. Sets *id as soon as it is known.
// REQUIRES: *command is as default-constructed.
Status event_to_command(simdjson::dom::element element, Command* command, std::string* id) {
  simdjson::dom::object event;
  if (element.get(event)) return Error(ErrorCode::kInvalidJson, "a CloudEvent must be a JSON object");
  command->type = CommandType::kRecordUsage;
  bool has_specversion = false, has_type = false, has_source = false, has_data = false;
  std::string_view subject;
  simdjson::dom::element data;
  for (auto [key, value] : event) {
    std::string_view text;
    if (key == "data") {
      data = value;
      has_data = true;
      continue;
    }
    if (key == "data_base64") return bad("data_base64", "absent: usage data is JSON");
    if (key == "specversion" || key == "id" || key == "source" || key == "type" || key == "time" || key == "subject" ||
        key == "datacontenttype" || key == "dataschema") {
      if (Status s = string_of(value, key, &text); !s.ok()) return s;
    } else if (extension_name(key)) {
      continue;  // extension attributes are allowed and mean nothing to Tally
    } else {
      return Error(ErrorCode::kUnknownField, fmt::format("\"{}\" is not a CloudEvents attribute name", excerpt(key)));
    }
    if (key == "specversion") {
      if (text != "1.0") return bad("specversion", "\"1.0\"");
      has_specversion = true;
    } else if (key == "id") {
      if (!valid_command_id(text)) return bad("id", "1 to 128 printable ASCII characters without spaces (the usage id)");
      command->id = text;
      *id = text;
    } else if (key == "source") {
      if (text.empty()) return bad("source", "a non-empty URI-reference");
      has_source = true;
    } else if (key == "type") {
      if (text != kUsageEventType) return bad("type", fmt::format("\"{}\"", kUsageEventType));
      has_type = true;
    } else if (key == "time") {
      int64_t time_us;
      if (!parse_time(text, &time_us)) return bad("time", "an RFC 3339 UTC time like 2026-11-23T10:00:00Z");
      command->occurred_at_us = time_us;
    } else if (key == "subject") {
      subject = text;
    } else if (key == "datacontenttype") {
      if (!text.starts_with("application/json")) return bad("datacontenttype", "application/json");
    }
  }
  if (!has_specversion) return Error(ErrorCode::kMissingField, "a CloudEvent needs \"specversion\"");
  if (command->id.empty()) return Error(ErrorCode::kMissingField, "a CloudEvent needs \"id\" (the usage id)");
  if (!has_source) return Error(ErrorCode::kMissingField, "a CloudEvent needs \"source\"");
  if (!has_type) return Error(ErrorCode::kMissingField, "a CloudEvent needs \"type\"");
  if (!command->occurred_at_us) return Error(ErrorCode::kMissingField, "a usage CloudEvent needs \"time\" (when the usage occurred)");
  if (!has_data) return Error(ErrorCode::kMissingField, "a usage CloudEvent needs \"data\"");
  if (!subject.empty()) {
    if (Status s = read_subject(subject, command); !s.ok()) return s;
  }
  if (Status s = read_data(data, command); !s.ok()) return s;
  return check_usage(*command);
}

Status add_event(simdjson::dom::element element, const Identity& who, CommandBatch* out) {
  Command command;
  std::string id;
  if (Status s = event_to_command(element, &command, &id); !s.ok()) {
    out->refuse(std::move(s), std::move(id));
    return Status::Ok();
  }
  if (Status s = scope_command(who, &command); !s.ok()) return s;
  out->add(std::move(command));
  return Status::Ok();
}

}  // namespace

Status add_cloudevents(std::string_view body, bool batch, const Identity& who, CommandBatch* out) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(body.data(), body.size()).get(root)) {
    return Error(ErrorCode::kInvalidJson, fmt::format("the body is not valid JSON: {}", simdjson::error_message(error)));
  }
  if (!batch) return add_event(root, who, out);
  simdjson::dom::array events;
  if (root.get(events)) return Error(ErrorCode::kInvalidJson, "a batch of CloudEvents is a JSON array");
  if (events.size() > kBatchCommandsMax) {
    return Error(ErrorCode::kTooLarge, fmt::format("a batch holds at most {} events", kBatchCommandsMax));
  }
  if (events.size() == 0) return Error(ErrorCode::kInvalidArgument, "the batch holds no event");
  out->reserve(events.size());
  for (simdjson::dom::element element : events) {
    if (Status s = add_event(element, who, out); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace tally::server
