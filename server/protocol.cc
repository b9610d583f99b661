#include "server/protocol.h"

#include "engine/values.h"
#include "server/requests.h"

namespace tally::server {
namespace {

std::string_view view(const flatbuffers::String* s) { return s == nullptr ? std::string_view() : s->string_view(); }

// `members` is scratch space, reused from one result to the next.
flatbuffers::Offset<protocol::Result> build_result(flatbuffers::FlatBufferBuilder& builder, const CommandResult& result,
                                                   std::string* members) {
  flatbuffers::Offset<flatbuffers::String> error, message, id, extra;
  if (!result.status.ok()) {
    error = builder.CreateString(error_name(result.status.code));
    message = builder.CreateString(result.status.message);
  }
  if (!result.id.empty()) id = builder.CreateString(result.id);
  members->clear();
  result.append_members(members);
  if (!members->empty()) extra = builder.CreateString(*members);
  protocol::ResultBuilder out(builder);
  out.add_ok(result.status.ok());
  out.add_seq(result.seq);
  if (!error.IsNull()) out.add_error(error);
  if (!message.IsNull()) out.add_message(message);
  if (!id.IsNull()) out.add_id(id);
  if (!extra.IsNull()) out.add_extra(extra);
  return out.Finish();
}

}  // namespace

uint32_t frame_length(const uint8_t* prefix) {
  return static_cast<uint32_t>(prefix[0]) | static_cast<uint32_t>(prefix[1]) << 8 | static_cast<uint32_t>(prefix[2]) << 16 |
         static_cast<uint32_t>(prefix[3]) << 24;
}

void FrameBuffer::resize(uint32_t length) {
  length_ = length;
  const size_t words = (kFrameLengthBytes + length + 7) / 8;
  // A connection that sent one huge frame does not keep its memory for small ones.
  if (words_.capacity() > (size_t{1} << 17) && words < (size_t{1} << 13)) words_ = std::vector<uint64_t>();
  words_.resize(words);
  for (size_t i = 0; i < kFrameLengthBytes; ++i) bytes()[i] = static_cast<uint8_t>(length >> (8 * i));
}

const protocol::Frame* verify_frame(std::string_view frame) {
  const auto* data = reinterpret_cast<const uint8_t*>(frame.data());
  // Depth and table counts are bounded by the verifier's defaults (64, 1,000,000).
  flatbuffers::Verifier verifier(data, frame.size());
  if (!protocol::VerifySizePrefixedFrameBuffer(verifier)) return nullptr;
  const protocol::Frame* root = protocol::GetSizePrefixedFrame(data);
  return root->message_type() == protocol::Message::NONE ? nullptr : root;
}

std::string frame_bytes(flatbuffers::FlatBufferBuilder& builder, protocol::Message type, flatbuffers::Offset<void> message) {
  builder.FinishSizePrefixed(protocol::CreateFrame(builder, type, message));
  return std::string(reinterpret_cast<const char*>(builder.GetBufferPointer()), builder.GetSize());
}

std::string hello_frame(std::string_view token, std::string_view client) {
  flatbuffers::FlatBufferBuilder builder(256);
  auto hello = protocol::CreateHello(builder, builder.CreateString(token), builder.CreateString(client), kProtocolVersion);
  return frame_bytes(builder, protocol::Message::Hello, hello.Union());
}

std::string results_frame(uint64_t request_id, std::span<const CommandResult> results) {
  flatbuffers::FlatBufferBuilder builder(64 + results.size() * 48);
  std::vector<flatbuffers::Offset<protocol::Result>> offsets;
  offsets.reserve(results.size());
  std::string members;
  for (const CommandResult& result : results) offsets.push_back(build_result(builder, result, &members));
  auto vector = builder.CreateVector(offsets);
  protocol::ResponseBuilder response(builder);
  response.add_request_id(request_id);
  response.add_ok(true);
  response.add_results(vector);
  return frame_bytes(builder, protocol::Message::Response, response.Finish().Union());
}

std::string query_answer_frame(uint64_t request_id, std::string_view answer) {
  flatbuffers::FlatBufferBuilder builder(64 + answer.size());
  auto text = builder.CreateString(answer);
  protocol::ResponseBuilder response(builder);
  response.add_request_id(request_id);
  response.add_ok(true);
  response.add_query_answer(text);
  return frame_bytes(builder, protocol::Message::Response, response.Finish().Union());
}

std::string error_frame(uint64_t request_id, const Status& status) {
  flatbuffers::FlatBufferBuilder builder(256);
  auto error = builder.CreateString(error_name(status.code));
  auto message = builder.CreateString(status.message);
  protocol::ResponseBuilder response(builder);
  response.add_request_id(request_id);
  response.add_ok(false);
  response.add_error(error);
  response.add_message(message);
  return frame_bytes(builder, protocol::Message::Response, response.Finish().Union());
}

std::string welcome_frame(std::string_view identity) {
  flatbuffers::FlatBufferBuilder builder(128);
  auto who = builder.CreateString(identity);
  protocol::ResponseBuilder response(builder);
  response.add_request_id(0);
  response.add_ok(true);
  response.add_identity(who);
  return frame_bytes(builder, protocol::Message::Response, response.Finish().Union());
}

CommandResult result_of(const protocol::Result& result) {
  CommandResult out;
  out.seq = result.seq();
  out.id = view(result.id());
  out.extra = view(result.extra());
  if (!result.ok()) {
    ErrorCode code = ErrorCode::kInternal;
    if (!error_from_name(view(result.error()), &code) || code == ErrorCode::kOk) code = ErrorCode::kInternal;
    out.status = Error(code, std::string(view(result.message())));
  }
  return out;
}

Status usage_command(const protocol::UsageRecord& usage, Command* command) {
  *command = Command();
  command->type = CommandType::kRecordUsage;
  command->actor = view(usage.actor());
  command->id = view(usage.id());
  command->org = view(usage.org());
  command->workspace = view(usage.workspace());
  command->user = view(usage.user());
  command->tool = view(usage.tool());
  command->model = view(usage.model());
  command->unit = view(usage.unit());
  command->quantity = usage.quantity();
  command->occurred_at_us = usage.occurred_at_us();
  if (usage.credits_micro() >= 0) command->credits_micro = usage.credits_micro();
  const std::string& actor = command->actor;
  const bool actor_ok = actor.empty() || actor == "platform" || (actor.starts_with("key:") ? valid_id(actor.substr(4)) : valid_user(actor));
  if (!actor_ok) return Error(ErrorCode::kInvalidArgument, "field \"actor\" must be \"platform\", \"key:<id>\" or a user id");
  return check_usage(*command);
}

}  // namespace tally::server
