// The Tally daemon (`tally serve`): one writer thread owns the engine; connection
// threads speak HTTP/1.1 JSON (Boost.Beast) and the binary framed protocol
// (schemas/protocol.fbs), authenticate every request, and hand commands to the writer.
// docs/server.md describes the protocols, authentication, limits and metrics.
//
// This header is free of Boost; the networking lives in server/*.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/clock.h"
#include "engine/error.h"

namespace tally::server {

// Every limit the daemon enforces, with the error a client gets when it hits one.
struct ServerLimits {
  size_t connections_max = 1024;                  // more are refused (HTTP 503 / error frame)
  size_t http_body_bytes_max = 16u << 20;         // HTTP 413 too_large
  size_t http_header_bytes_max = 16u << 10;       // HTTP 431
  std::chrono::milliseconds request_timeout{30'000};  // HTTP: to receive a whole request; binary: one frame once begun
  std::chrono::milliseconds idle_timeout{300'000};    // binary: between frames; the connection is closed
  std::chrono::milliseconds write_timeout{30'000};    // a client that does not read its answers is dropped
  std::chrono::milliseconds queue_wait_max{5'000};    // waiting for room in the writer queue, then unavailable
  size_t pipelined_requests_max = 64;             // binary: requests in flight per connection; reading pauses
  std::chrono::milliseconds drain_timeout{10'000};    // shutdown: how long answers may take to go out
};

struct ServerOptions {
  std::string data_dir;
  std::string bind_address = "127.0.0.1";
  uint16_t binary_port = 7420;  // 0 picks a free port (see Server::binary_port)
  uint16_t http_port = 7421;
  // The bearer secret that acts as "platform"; empty means no platform access over the
  // network. Only its SHA-256 is kept.
  std::string admin_token;
  unsigned io_threads = 2;
  // Bulk commands per group commit, at most, while small interactive requests keep
  // coming (WriterOptions::express_batch_commands_max): smaller answers those requests
  // sooner and takes bulk ingest in more, costlier commits.
  size_t express_batch_commands = 512;
  ServerLimits limits;
  std::chrono::milliseconds tick_interval{1000};
  // Null means the system clock. Not owned; must outlive the server.
  Clock* clock = nullptr;
};

class Server {
 public:
  // Opens the store, listens on both ports and starts serving.
  static Status start(const ServerOptions& options, std::unique_ptr<Server>* server);
  // Shuts down (see shutdown) if that was not done.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  uint16_t binary_port() const;
  uint16_t http_port() const;

  // Graceful stop: stops accepting, stops reading new requests, executes and answers
  // every request already received, closes the connections, then closes the store.
  // Nothing is acknowledged that is not durable, and nothing after the store closes.
  void shutdown();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reads a bearer secret from the first line of `path` (surrounding whitespace
// trimmed). Refuses secrets shorter than 16 bytes.
Status read_token_file(const std::string& path, std::string* token);

}  // namespace tally::server
