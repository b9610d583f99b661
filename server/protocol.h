// The binary protocol's frames (schemas/protocol.fbs): building, checking and
// converting them. Shared by the daemon and server/client.h; free of any socket code.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/command.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "schemas/protocol_generated.h"

namespace tally::server {

inline constexpr size_t kFrameLengthBytes = 4;             // little-endian length prefix
inline constexpr uint32_t kFrameBytesMax = 16u << 20;        // 16 MiB, prefix excluded
inline constexpr uint32_t kProtocolVersion = 1;

// The length a 4-byte little-endian prefix announces.
uint32_t frame_length(const uint8_t* prefix);

// Storage for one received frame, its length prefix included: FlatBuffers aligns a
// size-prefixed buffer from the start of the prefix, and verifies it so.
class FrameBuffer {
 public:
  // Makes room for a body of `length` bytes and writes the prefix; body() points at it.
  void resize(uint32_t length);
  uint8_t* body() { return bytes() + kFrameLengthBytes; }
  uint32_t length() const { return length_; }
  // The prefix and the body.
  std::string_view frame() const { return {reinterpret_cast<const char*>(words_.data()), kFrameLengthBytes + length_}; }

 private:
  uint8_t* bytes() { return reinterpret_cast<uint8_t*>(words_.data()); }
  std::vector<uint64_t> words_;
  uint32_t length_ = 0;
};

// Checks a received frame (prefix and body, as FrameBuffer::frame() holds it); null when
// it is not a Frame.
const protocol::Frame* verify_frame(std::string_view frame);

// The finished frame in `builder`, length prefix included.
std::string frame_bytes(flatbuffers::FlatBufferBuilder& builder, protocol::Message type, flatbuffers::Offset<void> message);

// Frames the daemon sends.
std::string hello_frame(std::string_view token, std::string_view client);
std::string results_frame(uint64_t request_id, std::span<const CommandResult> results);
std::string query_answer_frame(uint64_t request_id, std::string_view answer);
// A refusal of a whole request (request_id 0: of the connection).
std::string error_frame(uint64_t request_id, const Status& status);
std::string welcome_frame(std::string_view identity);

// A Result table back into the CommandResult it was made from (to_json() gives the
// same answer line the HTTP API would).
CommandResult result_of(const protocol::Result& result);

// A typed usage record into a record_usage command, checked like the JSON form.
Status usage_command(const protocol::UsageRecord& usage, Command* command);

}  // namespace tally::server
