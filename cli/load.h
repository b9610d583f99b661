// `tally load`: an end-to-end load generator for a running daemon. It sets up its own
// organization (members spread over workspaces, credits, a price, a service key) with
// the admin token over the binary protocol, then records usage events from several
// connections — over the binary protocol, each pipelining requests of typed usage
// records, or with `http` set as CloudEvents batches to POST /v1/events, one request at
// a time per keep-alive connection — as fast as the daemon answers or paced at a given
// rate, and reports throughput and request latency. Every acknowledged event is durable
// (the daemon's contract).
#pragma once

#include <cstdint>
#include <string>

namespace tally::cli {

struct LoadOptions {
  std::string server;      // HOST:PORT of the binary protocol
  std::string token_file;  // the admin token
  std::string http;        // HOST:PORT of the HTTP API: ingest there as CloudEvents batches
  uint32_t connections = 16;
  uint64_t events = 1'000'000;
  uint32_t batch = 1000;   // usage records per request
  uint32_t window = 4;     // requests in flight per connection
  uint32_t workspaces = 1000;
  uint32_t members = 10'000;
  // Sequential reserve -> settle round trips on one more connection while the ingest
  // runs (0: none); their latency is reported separately.
  uint32_t round_trips = 0;
  // Events per second offered in all (0: as fast as the daemon answers): a request
  // whose first event is the n-th is not sent before n / rate seconds into the ingest.
  // Refused when the ingest would then take more than kLoadSecondsMax.
  uint64_t rate = 0;
};

inline constexpr uint64_t kLoadSecondsMax = 3600;

int run_load(const LoadOptions& options);

}  // namespace tally::cli
