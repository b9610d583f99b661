// libFuzzer target: CloudEvents decoding (server/cloudevents.cc), in structured and in
// batch mode. Any bytes must decode into record_usage commands or be refused with an
// error code and a message — never crash, hang or leak.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/cloudevents.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tally;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const server::Identity key{ActorKind::kServiceKey, "key:k1", "acme"};
  for (const bool batch : {false, true}) {
    server::CommandBatch out;
    const Status status = server::add_cloudevents(body, batch, key, &out);
    if (!status.ok() && status.message.empty()) std::abort();
    for (const CommandResult& result : out.results()) {
      if (!result.status.ok() && result.status.message.empty()) std::abort();
    }
    for (const Command& command : out.commands()) {
      // What decoded is a valid usage event of the key's own organization.
      if (command.type != CommandType::kRecordUsage || command.org != "acme" || !server::check_usage(command).ok()) std::abort();
    }
  }
  return 0;
}
