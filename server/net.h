// Internal to server/: what the listeners and the HTTP and binary sessions share. The
// only server header that includes Boost; include it from server/*.cc alone.
#pragma once

#include <utility>  // before Boost 1.74's asio, whose awaitable.hpp forgets it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "server/auth.h"
#include "server/metrics.h"
#include "server/server.h"
#include "server/writer.h"

namespace tally::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// A connection, as the server sees it when shutting down.
class Session {
 public:
  virtual ~Session() = default;
  // Stop reading new requests; close once every request received has been answered.
  // Safe to call from any thread.
  virtual void drain() = 0;
};

// The state every connection shares.
struct Core {
  explicit Core(const ServerOptions& server_options) : options(server_options) {}

  const ServerOptions options;
  std::unique_ptr<Writer> writer;
  AuthIndex auth;
  Metrics metrics;
  std::atomic<bool> draining{false};

  // Live sessions, for the connection limit and for draining.
  uint64_t add_session(std::weak_ptr<Session> session);
  void remove_session(uint64_t id);
  size_t session_count() const;
  void drain_sessions();
  // Waits until no session is left or the deadline passes; true if none is left.
  bool wait_sessions_closed(std::chrono::steady_clock::time_point deadline);

 private:
  mutable std::mutex sessions_mutex_;
  std::condition_variable sessions_closed_;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions_;
  uint64_t next_session_id_ = 1;

 public:
  // Last, so it is destroyed first: handlers it still holds may end sessions, which
  // unregister themselves from the members above.
  asio::io_context io;
};

// Offers work to the writer: `attempt` submits and returns the writer's answer. When
// the queue is full it tries again every millisecond (on `timer`'s executor, without
// blocking a thread) until limits.queue_wait_max has passed; then, or when the writer
// has stopped, `refused` gets an unavailable error. The caller does not read more from
// its connection meanwhile: that is the back-pressure.
void submit_with_retry(Core& core, std::shared_ptr<asio::steady_timer> timer, std::function<Writer::Admission()> attempt,
                       std::function<void(Status)> refused, std::chrono::steady_clock::time_point deadline = {});

// Starts serving one accepted connection. With `refuse` it only tells the client the
// server is full and closes.
void start_http_session(Core& core, tcp::socket socket, bool refuse);
void start_binary_session(Core& core, tcp::socket socket, bool refuse);

}  // namespace tally::server
