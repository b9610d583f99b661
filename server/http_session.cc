// The HTTP/1.1 JSON API (docs/server.md, docs/openapi.yaml): one session per
// connection, one request at a time (keep-alive, no pipelining), every handler on the
// connection's strand.
#include <boost/beast/http.hpp>

#include <spdlog/spdlog.h>

#include <array>

#include <fmt/format.h>

#include "engine/query.h"
#include "server/cloudevents.h"
#include "server/net.h"
#include "server/requests.h"

namespace tally::server {
namespace {

namespace http = beast::http;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kJsonLines = "application/x-ndjson";

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// The media type of a Content-Type value, without parameters, in lower case.
std::string media_type(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return lower(type);
}

// The secret of an "Authorization: Bearer <secret>" header, or empty.
std::string_view bearer_secret(std::string_view header) {
  if (header.size() < 7 || lower(header.substr(0, 7)) != "bearer ") return {};
  std::string_view secret = header.substr(7);
  while (!secret.empty() && secret.front() == ' ') secret.remove_prefix(1);
  while (!secret.empty() && (secret.back() == ' ' || secret.back() == '\t')) secret.remove_suffix(1);
  return secret;
}

// The HTTP status of a JSON answer line: 200 when ok, else the status of its error code.
unsigned answer_status(std::string_view answer) {
  if (answer.starts_with("{\"ok\":true")) return 200;
  constexpr std::string_view kKey = "\"error\":\"";
  const size_t at = answer.find(kKey);
  if (at == std::string_view::npos) return 500;
  const size_t start = at + kKey.size();
  ErrorCode code = ErrorCode::kInternal;
  error_from_name(answer.substr(start, answer.find('"', start) - start), &code);
  return http_status(code);
}

class HttpSession final : public Session, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Core& core, tcp::socket socket)
      : core_(core), stream_(std::move(socket)), timer_(std::make_shared<asio::steady_timer>(stream_.get_executor())) {
    core_.metrics.connection_opened(Protocol::kHttp);
  }

  ~HttpSession() override {
    core_.metrics.connection_closed(Protocol::kHttp);
    core_.remove_session(id_);
  }

  void start(bool refuse) {
    id_ = core_.add_session(weak_from_this());
    asio::dispatch(stream_.get_executor(), [self = shared_from_this(), refuse] {
      if (refuse) {
        self->busy_ = true;
        self->respond_error(503, Error(ErrorCode::kUnavailable, "too many connections; retry later"), false);
      } else {
        self->read_request();
      }
    });
  }

  void drain() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->draining_ = true;
      if (!self->busy_) self->close();
    });
  }

 private:
  void read_request() {
    if (draining_) return close();
    parser_.emplace();
    parser_->body_limit(core_.options.limits.http_body_bytes_max);
    parser_->header_limit(static_cast<uint32_t>(core_.options.limits.http_header_bytes_max));
    stream_.expires_after(core_.options.limits.request_timeout);  // one deadline for the whole request
    http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  // A client that sent "Expect: 100-continue" (curl does for large bodies) waits for a
  // go-ahead before sending the body.
  void on_header(beast::error_code ec) {
    if (ec || closed_ || parser_->is_done()) return on_read(ec);
    const auto expect = parser_->get()[http::field::expect];
    if (lower(std::string_view(expect.data(), expect.size())) != "100-continue") return read_body();
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->close();
      self->read_body();
    });
  }

  void read_body() {
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (closed_) return;
    if (ec == http::error::body_limit) {
      busy_ = true;
      return respond_error(413, Error(ErrorCode::kTooLarge, fmt::format("a request body is at most {} bytes", core_.options.limits.http_body_bytes_max)), false);
    }
    if (ec == http::error::header_limit) {
      busy_ = true;
      return respond_error(431, Error(ErrorCode::kTooLarge, fmt::format("request headers are at most {} bytes", core_.options.limits.http_header_bytes_max)), false);
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() && ec != http::error::end_of_stream &&
        ec != http::error::partial_message) {
      busy_ = true;
      return respond_error(400, Error(ErrorCode::kInvalidArgument, fmt::format("malformed HTTP request: {}", ec.message())), false);
    }
    // End of stream, a timeout (slow or idle client), a reset: nothing to answer.
    if (ec) return close();
    busy_ = true;
    handle(parser_->release());
  }

  void handle(http::request<http::string_body> request) {
    keep_alive_ = request.keep_alive();
    const std::string_view target(request.target().data(), request.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    const http::verb method = request.method();
    if (path == "/healthz" || path == "/metrics") {
      if (method != http::verb::get) return respond_not_allowed("GET");
      return path == "/healthz" ? get_healthz() : get_metrics();
    }
    if (path != "/v1/commands" && path != "/v1/query" && path != "/v1/events") {
      return respond_error(404, Error(ErrorCode::kInvalidArgument, fmt::format("no endpoint {}", excerpt(path, 128))));
    }
    if (method != http::verb::post) return respond_not_allowed("POST");
    if (draining_) return respond_error(503, Error(ErrorCode::kUnavailable, "the server is shutting down"), false);
    const auto authorization = request[http::field::authorization];
    const std::optional<Identity> who = core_.auth.authenticate(bearer_secret(std::string_view(authorization.data(), authorization.size())));
    if (!who) {
      return respond_error(401, Error(ErrorCode::kUnauthenticated, "send Authorization: Bearer <token> with a valid admin token, service key or user token"));
    }
    if (path == "/v1/commands") return post_commands(*who, request.body());
    if (path == "/v1/query") return post_query(*who, request.body());
    const auto content_type = request[http::field::content_type];
    post_events(*who, media_type(std::string_view(content_type.data(), content_type.size())), request.body());
  }

  void get_healthz() {
    if (core_.draining) return respond_error(503, Error(ErrorCode::kUnavailable, "the server is shutting down"));
    if (core_.metrics.read_only()) return respond_error(503, Error(ErrorCode::kReadOnly, "the engine is read-only after a storage failure"));
    respond(200, fmt::format("{{\"ok\":true,\"last_seq\":{}}}\n", core_.metrics.last_seq()), kJson);
  }

  void get_metrics() { respond(200, core_.metrics.render(core_.writer->queued_commands()), "text/plain; version=0.0.4; charset=utf-8"); }

  void post_commands(const Identity& who, const std::string& body) {
    auto batch = std::make_shared<CommandBatch>();
    if (Status s = add_json_lines(body, who, batch.get()); !s.ok()) return respond_error(http_status(s.code), s);
    run_batch(batch, [this](CommandBatch& done) {
      std::string lines;
      for (const CommandResult& result : done.results()) {
        lines += result.to_json();
        lines += '\n';
      }
      respond(200, std::move(lines), kJsonLines);
    });
  }

  void post_events(const Identity& who, const std::string& content_type, const std::string& body) {
    const bool batch_mode = content_type == kBatchContentType;
    if (!batch_mode && content_type != kStructuredContentType) {
      return respond_error(415, Error(ErrorCode::kInvalidArgument, fmt::format("send {} (one event) or {} (a JSON array of events)",
                                                                                kStructuredContentType, kBatchContentType)));
    }
    auto batch = std::make_shared<CommandBatch>();
    if (Status s = add_cloudevents(body, batch_mode, who, batch.get()); !s.ok()) return respond_error(http_status(s.code), s);
    core_.metrics.count_cloudevents(batch->size());
    run_batch(batch, [this, batch_mode](CommandBatch& done) {
      if (!batch_mode) {
        const CommandResult& result = done.results().front();
        return respond(http_status(result.status.code), result.to_json() + "\n", kJson);
      }
      std::string array = "[";
      for (const CommandResult& result : done.results()) {
        if (array.size() > 1) array += ',';
        array += result.to_json();
      }
      array += "]\n";
      respond(200, std::move(array), kJson);
    });
  }

  void post_query(const Identity& who, const std::string& body) {
    auto query = std::make_shared<Query>();
    if (Status s = decode_query(body, query.get(), ActorField::kOptional); !s.ok()) {
      core_.metrics.count_refused(s.code);
      return respond_error(http_status(s.code), s);
    }
    if (Status s = scope_query(who, &query->actor, query->org); !s.ok()) return respond_error(403, s);
    auto self = shared_from_this();
    Writer::QueryDone done = [self](std::string answer) {
      asio::post(self->stream_.get_executor(), [self, answer = std::move(answer)]() mutable {
        const unsigned status = answer_status(answer);
        answer += '\n';
        self->respond(status, std::move(answer), kJson);
      });
    };
    submit_with_retry(
        core_, timer_, [self, query, done]() mutable { return self->core_.writer->submit(*query, done, Writer::lane_for(1, true)); },
        [self](Status refused) { self->respond_error(503, refused, false); });
  }

  // Executes the batch's decoded commands (if any), then calls `finish` on the strand.
  void run_batch(std::shared_ptr<CommandBatch> batch, std::function<void(CommandBatch&)> finish) {
    for (const CommandResult& result : batch->results()) {
      if (!result.status.ok()) core_.metrics.count_refused(result.status.code);
    }
    if (batch->commands().empty()) return finish(*batch);
    auto self = shared_from_this();
    // The commands come back to be destroyed here, on the connection's thread.
    Writer::CommandsDone done = [self, batch, finish](std::vector<CommandResult> results, std::vector<Command> commands) {
      asio::post(self->stream_.get_executor(), [self, batch, finish, results = std::move(results), spent = std::move(commands)]() mutable {
        spent.clear();
        batch->complete(std::move(results));
        finish(*batch);
      });
    };
    // One request at a time per connection: nothing else of ours is with the writer.
    const Writer::Lane lane = Writer::lane_for(batch->commands().size(), true);
    submit_with_retry(
        core_, timer_, [self, batch, done, lane]() mutable { return self->core_.writer->submit(batch->commands(), done, lane); },
        [self](Status refused) { self->respond_error(503, refused, false); });
  }

  void respond_not_allowed(std::string_view allow) {
    response_extra_allow_ = allow;
    respond_error(405, Error(ErrorCode::kInvalidArgument, fmt::format("this endpoint takes {}", allow)));
  }

  void respond_error(unsigned status, const Status& error, bool keep_alive = true) {
    respond(status, error_json(error) + "\n", kJson, keep_alive);
  }

  void respond(unsigned status, std::string body, std::string_view content_type, bool keep_alive = true) {
    if (closed_) return;
    response_ = {};
    response_.version(11);
    response_.result(status);
    response_.set(http::field::server, "tally");
    response_.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
    if (status == 401) response_.set(http::field::www_authenticate, "Bearer realm=\"tally\"");
    if (!response_extra_allow_.empty()) response_.set(http::field::allow, beast::string_view(response_extra_allow_.data(), response_extra_allow_.size()));
    response_extra_allow_ = {};
    response_.body() = std::move(body);
    response_.keep_alive(keep_alive && keep_alive_ && !draining_);
    response_.prepare_payload();
    core_.metrics.count_http_response(status);
    stream_.expires_after(core_.options.limits.write_timeout);
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    busy_ = false;
    if (ec || draining_) return close();
    if (!response_.keep_alive()) return linger();
    read_request();
  }

  // Closing right after an answer while the client is still sending (a body over the
  // limit) would reset the connection, and the client could lose the answer. So stop
  // sending, read and drop what still comes for a moment, then close.
  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(1));  // one deadline for all the reads below
    discard_input();
  }

  void discard_input() {
    stream_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t bytes) {
      self->lingered_bytes_ += bytes;
      if (ec || self->draining_ || self->lingered_bytes_ > kLingerBytesMax) return self->close();
      self->discard_input();
    });
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_->cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  static constexpr size_t kLingerBytesMax = 64u << 20;

  Core& core_;
  beast::tcp_stream stream_;
  std::shared_ptr<asio::steady_timer> timer_;  // waiting for room in the writer queue
  beast::flat_buffer buffer_;
  std::array<char, 16384> discard_{};
  size_t lingered_bytes_ = 0;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::string_view response_extra_allow_;
  uint64_t id_ = 0;
  bool keep_alive_ = true;
  bool busy_ = false;  // a request is being handled: drain waits for its answer
  bool draining_ = false;
  bool closed_ = false;
};

}  // namespace

void start_http_session(Core& core, tcp::socket socket, bool refuse) {
  std::make_shared<HttpSession>(core, std::move(socket))->start(refuse);
}

}  // namespace tally::server
