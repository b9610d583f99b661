// A blocking client of the binary protocol (schemas/protocol.fbs), for tests, tools and
// `tally apply --server`. Not thread-safe: one Client per thread. Requests may be
// pipelined: send several, then receive their answers, which come in request order.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"
#include "engine/error.h"

namespace tally::server {

struct ClientOptions {
  std::chrono::milliseconds timeout{30'000};  // to connect, and for each answer
  std::string name = "tally-client";          // shown in the server's log
};

// record_usage in typed form: no JSON on either side.
struct UsageRecord {
  std::string id;
  std::string org;
  std::string workspace;
  std::string user;  // optional
  std::string tool;
  std::string model;
  int64_t quantity = 0;
  std::string unit;
  int64_t occurred_at_us = 0;
  std::optional<int64_t> credits_micro;  // absent: priced from the rate card
};

struct Reply {
  uint64_t request_id = 0;
  Status status;                       // not ok: the whole request was refused
  std::vector<CommandResult> results;  // one per command, in order
  std::string query_answer;            // the JSON answer line of a query
  std::string identity;                // the answer to the Hello: who the token acts as
};

class Client {
 public:
  // Connects to host:port and says Hello with `token`. Fails with unauthenticated when
  // the server refuses the token, unavailable when it cannot be reached.
  static Status connect(const std::string& host, uint16_t port, std::string_view token, std::unique_ptr<Client>* client,
                        const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Who the token acts as: "platform", "key:<id>" or a user id.
  const std::string& identity() const { return identity_; }

  // Send one request without waiting for its answer; *request_id names it.
  Status send_commands(std::span<const std::string> json_lines, uint64_t* request_id);
  Status send_usage(std::span<const UsageRecord> records, uint64_t* request_id);
  Status send_query(std::string_view json, uint64_t* request_id);
  // The next answer, in request order.
  Status receive(Reply* reply);

  // Send and wait. A refused request returns its error.
  Status execute(std::span<const std::string> json_lines, std::vector<CommandResult>* results);
  Status record_usage(std::span<const UsageRecord> records, std::vector<CommandResult>* results);
  Status query(std::string_view json, std::string* answer);

  // Writes raw bytes to the connection (for tests of malformed input).
  Status send_raw(std::string_view bytes);
  // Closes the sending half, so the server sees the end of input.
  void shutdown_send();

 private:
  Client(int fd, ClientOptions options) : fd_(fd), options_(std::move(options)) {}
  Status send_frame(const std::string& frame);
  Status read_exact(char* data, size_t size);
  Status wait(uint64_t request_id, Reply* reply);

  int fd_;
  ClientOptions options_;
  std::string identity_;
  uint64_t next_request_id_ = 1;
  bool broken_ = false;
};

// Splits "host:port" (or "[v6]:port").
Status parse_host_port(std::string_view text, std::string* host, uint16_t* port);

}  // namespace tally::server
