// libFuzzer target: the JSON command decoder (engine/command.cc). Any bytes must decode
// or be refused with an error code — never crash, hang or leak — and whatever decodes
// must survive the round trip: encode_command's canonical line decodes again to the
// same canonical line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/command.h"
#include "engine/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  tally::Command command;
  const tally::Status status = tally::decode_command(json, &command);
  if (!status.ok()) {
    // A refusal names a decoding error, and says why.
    switch (status.code) {
      case tally::ErrorCode::kInvalidJson:
      case tally::ErrorCode::kInvalidArgument:
      case tally::ErrorCode::kUnknownCommand:
      case tally::ErrorCode::kUnknownField:
      case tally::ErrorCode::kMissingField:
      case tally::ErrorCode::kTooLarge:
      case tally::ErrorCode::kInvalidAmount:
        break;
      default:
        std::fprintf(stderr, "decode_command answered %s\n", std::string(tally::error_name(status.code)).c_str());
        std::abort();
    }
    if (status.message.empty()) std::abort();
    return 0;
  }
  const std::string encoded = tally::encode_command(command);
  tally::Command again;
  const tally::Status second = tally::decode_command(encoded, &again);
  if (!second.ok()) {
    std::fprintf(stderr, "the canonical line does not decode: %s: %s\n", encoded.c_str(), second.message.c_str());
    std::abort();
  }
  const std::string reencoded = tally::encode_command(again);
  if (reencoded != encoded) {
    std::fprintf(stderr, "round trip differs:\n  %s\n  %s\n", encoded.c_str(), reencoded.c_str());
    std::abort();
  }
  return 0;
}
