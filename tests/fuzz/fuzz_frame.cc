// libFuzzer target: the binary protocol's frame decoding (server/protocol.cc) and what
// the daemon does with a verified frame — decode each command (JSON line or typed usage
// record) and each result. Any bytes must be refused or decoded, never crash.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "engine/query.h"
#include "server/auth.h"
#include "server/protocol.h"
#include "server/requests.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tally;
  if (size == 0 || size > server::kFrameBytesMax) return 0;
  server::FrameBuffer buffer;
  buffer.resize(static_cast<uint32_t>(size));
  std::memcpy(buffer.body(), data, size);
  const protocol::Frame* frame = server::verify_frame(buffer.frame());
  if (frame == nullptr) return 0;
  const server::Identity platform{ActorKind::kPlatform, "platform", {}};
  if (const protocol::Request* request = frame->message_as_Request()) {
    server::CommandBatch batch;
    if (request->commands() != nullptr) {
      for (const protocol::RequestCommand* item : *request->commands()) {
        if (item->json() != nullptr) {
          (void)server::add_json_command(item->json()->string_view(), platform, &batch);
        } else if (item->usage() != nullptr) {
          Command command;
          const Status status = server::usage_command(*item->usage(), &command);
          if (!status.ok() && status.message.empty()) std::abort();
        }
      }
    }
    Query query;
    if (request->query() != nullptr) (void)decode_query(request->query()->string_view(), &query, ActorField::kOptional);
  }
  if (const protocol::Response* response = frame->message_as_Response()) {
    if (response->results() != nullptr) {
      for (const protocol::Result* result : *response->results()) (void)server::result_of(*result).to_json();
    }
  }
  return 0;
}
