// libFuzzer target: the JSON query decoder and the answers (engine/query.cc), through
// Engine::query on a store with a small history of every event type. Any bytes must
// get exactly one JSON answer line, ok or a stable error code — never a crash.
#include <simdjson.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "engine/error.h"
#include "engine/query.h"
#include "engine/values.h"
#include "fuzz_history.h"

namespace {

tally::Engine* engine = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static int64_t start = 0;
  tally::parse_time("2026-11-23T10:00:00Z", &start);
  static tally::ManualClock clock(start);
  static std::unique_ptr<tally::Engine> owned = tally::fuzz::history_engine(&clock);
  engine = owned.get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  tally::Query query;
  const tally::Status decoded = tally::decode_query(json, &query);
  const std::string answer = engine->query(json);
  // One line of valid JSON: an object with "ok", and on failure a known error code.
  if (answer.find('\n') != std::string::npos) std::abort();
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(answer).get(object)) {
    std::fprintf(stderr, "the answer is not a JSON object: %s\n", answer.c_str());
    std::abort();
  }
  bool ok = false;
  if (object["ok"].get(ok)) std::abort();
  if (!ok) {
    std::string_view name;
    tally::ErrorCode code;
    if (object["error"].get(name) || !tally::error_from_name(name, &code)) std::abort();
    if (!decoded.ok() && code != decoded.code) std::abort();  // decoding errors come back as they are
    if (code == tally::ErrorCode::kInternal) {
      std::fprintf(stderr, "internal error for %.*s: %s\n", static_cast<int>(json.size()), json.data(), answer.c_str());
      std::abort();
    }
  } else if (!decoded.ok()) {
    std::abort();  // an answer to a query that does not decode
  }
  return 0;
}
