#include "server/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/engine.h"
#include "engine/thread_name.h"
#include "server/net.h"

namespace tally::server {

// ---- Core ---------------------------------------------------------------------------

uint64_t Core::add_session(std::weak_ptr<Session> session) {
  std::lock_guard lock(sessions_mutex_);
  const uint64_t id = next_session_id_++;
  sessions_.emplace(id, std::move(session));
  return id;
}

void Core::remove_session(uint64_t id) {
  std::lock_guard lock(sessions_mutex_);
  sessions_.erase(id);
  if (sessions_.empty()) sessions_closed_.notify_all();
}

size_t Core::session_count() const {
  std::lock_guard lock(sessions_mutex_);
  return sessions_.size();
}

void Core::drain_sessions() {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(sessions_mutex_);
    for (auto& [id, weak] : sessions_) {
      if (auto session = weak.lock()) live.push_back(std::move(session));
    }
  }
  for (auto& session : live) session->drain();
}

bool Core::wait_sessions_closed(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(sessions_mutex_);
  return sessions_closed_.wait_until(lock, deadline, [&] { return sessions_.empty(); });
}

void submit_with_retry(Core& core, std::shared_ptr<asio::steady_timer> timer, std::function<Writer::Admission()> attempt,
                       std::function<void(Status)> refused, std::chrono::steady_clock::time_point deadline) {
  switch (attempt()) {
    case Writer::Admission::kQueued:
      return;
    case Writer::Admission::kStopped:
      refused(Error(ErrorCode::kUnavailable, "the server is shutting down; retry on its successor"));
      return;
    case Writer::Admission::kFull:
      break;
  }
  const auto now = std::chrono::steady_clock::now();
  if (deadline == std::chrono::steady_clock::time_point{}) deadline = now + core.options.limits.queue_wait_max;
  if (now >= deadline) {
    refused(Error(ErrorCode::kUnavailable, "the server is overloaded (the writer queue stayed full); retry later"));
    return;
  }
  timer->expires_after(std::chrono::milliseconds(1));
  timer->async_wait([&core, timer, attempt = std::move(attempt), refused = std::move(refused), deadline](beast::error_code ec) mutable {
    if (ec) {
      refused(Error(ErrorCode::kUnavailable, "the request was cancelled while waiting for the writer"));
      return;
    }
    submit_with_retry(core, timer, std::move(attempt), std::move(refused), deadline);
  });
}

// ---- listening ----------------------------------------------------------------------

namespace {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(Core& core, Protocol protocol) : core_(core), protocol_(protocol), acceptor_(asio::make_strand(core.io)), backoff_(acceptor_.get_executor()) {}

  Status listen(const std::string& address, uint16_t port) {
    beast::error_code ec;
    const auto ip = asio::ip::make_address(address, ec);
    if (ec) return Error(ErrorCode::kInvalidArgument, fmt::format("--bind {}: {}", address, ec.message()));
    const tcp::endpoint endpoint(ip, port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Error(ErrorCode::kUnavailable, fmt::format("cannot listen on {}:{}: {}", address, port, ec.message()));
    port_ = acceptor_.local_endpoint().port();
    return Status::Ok();
  }

  void accept() {
    acceptor_.async_accept(asio::make_strand(core_.io), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (!self->acceptor_.is_open() || self->core_.draining) return;
      if (!ec) {
        self->serve(std::move(socket));
        return self->accept();
      }
      // Out of descriptors, say: pause instead of spinning on the error.
      spdlog::warn("accept failed: {}", ec.message());
      self->backoff_.expires_after(std::chrono::milliseconds(50));
      self->backoff_.async_wait([self](beast::error_code) { self->accept(); });
    });
  }

  void close() {
    asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->backoff_.cancel();
    });
  }

  uint16_t port() const { return port_; }

 private:
  void serve(tcp::socket socket) {
    if (core_.draining) return;  // the socket closes as it goes out of scope
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const bool refuse = core_.session_count() >= core_.options.limits.connections_max;
    if (refuse) core_.metrics.connection_refused();
    if (protocol_ == Protocol::kHttp) {
      start_http_session(core_, std::move(socket), refuse);
    } else {
      start_binary_session(core_, std::move(socket), refuse);
    }
  }

  Core& core_;
  Protocol protocol_;
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  uint16_t port_ = 0;
};

}  // namespace

struct Server::Impl {
  std::unique_ptr<Core> core;
  std::shared_ptr<Listener> http;
  std::shared_ptr<Listener> binary;
  std::vector<std::thread> threads;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;
  bool stopped = false;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { shutdown(); }

uint16_t Server::binary_port() const { return impl_->binary->port(); }
uint16_t Server::http_port() const { return impl_->http->port(); }

Status Server::start(const ServerOptions& options, std::unique_ptr<Server>* server) {
  auto impl = std::make_unique<Impl>();
  impl->core = std::make_unique<Core>(options);
  Core& core = *impl->core;

  EngineOptions engine_options;
  engine_options.data_dir = options.data_dir;
  engine_options.create_if_missing = true;
  engine_options.clock = options.clock;
  std::unique_ptr<Engine> engine;
  if (Status s = Engine::open(engine_options, &engine); !s.ok()) return s;

  if (!options.admin_token.empty()) core.auth.set_admin_secret(options.admin_token);
  core.auth.rebuild(engine->state());
  core.metrics.set_last_seq(engine->store().last_seq());

  WriterOptions writer_options;
  writer_options.tick_interval = options.tick_interval;
  writer_options.express_batch_commands_max = std::clamp<size_t>(options.express_batch_commands, 1, kBatchCommandsMax);
  auto observe = [&core](const Engine& engine, std::span<const Command* const> commands, std::span<const CommandResult> results) {
    core.metrics.observe_batch(engine, commands, results);
    // New or revoked credentials take effect before their command is answered.
    if (AuthIndex::affects_credentials(commands, results)) core.auth.rebuild(engine.state());
  };
  core.writer = std::make_unique<Writer>(std::move(engine), writer_options, observe);

  impl->http = std::make_shared<Listener>(core, Protocol::kHttp);
  impl->binary = std::make_shared<Listener>(core, Protocol::kBinary);
  if (Status s = impl->http->listen(options.bind_address, options.http_port); !s.ok()) return s;
  if (Status s = impl->binary->listen(options.bind_address, options.binary_port); !s.ok()) return s;

  core.writer->start();
  impl->work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(core.io.get_executor());
  impl->http->accept();
  impl->binary->accept();
  const unsigned threads = std::max(1u, options.io_threads);
  for (unsigned i = 0; i < threads; ++i) {
    impl->threads.emplace_back([&core] { core.io.run(); });
    name_thread(impl->threads.back(), kIoThreadName);
  }
  spdlog::info("tally serve: {} events in {}; binary protocol on {}:{}, HTTP on {}:{}; {} credentials", core.metrics.last_seq(),
               options.data_dir, options.bind_address, impl->binary->port(), options.bind_address, impl->http->port(), core.auth.size());
  server->reset(new Server(std::move(impl)));
  return Status::Ok();
}

void Server::shutdown() {
  if (impl_ == nullptr || impl_->stopped) return;
  impl_->stopped = true;
  Core& core = *impl_->core;
  const auto deadline = std::chrono::steady_clock::now() + core.options.limits.drain_timeout;
  spdlog::info("shutting down: no new connections or requests; answering the {} commands queued", core.writer->queued_commands());
  // 1. No new connections, no new requests.
  core.draining = true;
  core.metrics.set_draining();
  impl_->http->close();
  impl_->binary->close();
  core.drain_sessions();
  // 2. Execute everything already handed to the writer; its completions post the answers.
  core.writer->stop();
  // 3. Let the answers go out, then close what is left.
  if (!core.wait_sessions_closed(deadline)) spdlog::warn("{} connections still open at the drain deadline; closing them", core.session_count());
  impl_->work.reset();
  core.io.stop();
  for (std::thread& thread : impl_->threads) thread.join();
  impl_->threads.clear();
  // 4. Only now close the store: every answer sent was durable before it was sent.
  std::unique_ptr<Engine> engine = core.writer->release_engine();
  const uint64_t last_seq = engine->store().last_seq();
  engine.reset();
  spdlog::info("stopped; the store is closed at seq {}", last_seq);
}

Status read_token_file(const std::string& path, std::string* token) {
  std::ifstream file(path);
  if (!file) return Error(ErrorCode::kInvalidArgument, fmt::format("cannot read the token file {}", path));
  std::string line;
  std::getline(file, line);
  const size_t first = line.find_first_not_of(" \t\r\n");
  const size_t last = line.find_last_not_of(" \t\r\n");
  *token = first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
  if (token->size() < 16) return Error(ErrorCode::kInvalidArgument, fmt::format("the token in {} is shorter than 16 bytes", path));
  return Status::Ok();
}

}  // namespace tally::server
