// The binary framed protocol (schemas/protocol.fbs, docs/server.md): length-prefixed
// FlatBuffers frames, a Hello first, then pipelined Requests. Reading goes on while up
// to limits.pipelined_requests_max requests are in flight; answers leave in request
// order, several frames per write when they are ready together.
#include <spdlog/spdlog.h>

#include <array>
#include <deque>
#include <optional>

#include <fmt/format.h>

#include "engine/query.h"
#include "server/net.h"
#include "server/protocol.h"
#include "server/requests.h"

namespace tally::server {
namespace {

class BinarySession final : public Session, public std::enable_shared_from_this<BinarySession> {
 public:
  BinarySession(Core& core, tcp::socket socket)
      : core_(core), stream_(std::move(socket)), timer_(std::make_shared<asio::steady_timer>(stream_.get_executor())) {
    core_.metrics.connection_opened(Protocol::kBinary);
  }

  ~BinarySession() override {
    core_.metrics.connection_closed(Protocol::kBinary);
    core_.remove_session(id_);
  }

  void start(bool refuse) {
    id_ = core_.add_session(weak_from_this());
    asio::dispatch(stream_.get_executor(), [self = shared_from_this(), refuse] {
      if (refuse) return self->fail(Error(ErrorCode::kUnavailable, "too many connections; retry later"));
      self->read_prefix();
    });
  }

  void drain() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->draining_ = true;
      self->stop_reading();
    });
  }

 private:
  // ---- reading --------------------------------------------------------------------

  void read_prefix() {
    if (input_closed_ || reading_ || waiting_for_writer_) return;
    if (in_flight_ >= core_.options.limits.pipelined_requests_max) return;  // resumes when an answer is ready
    reading_ = true;
    // Before the Hello a client has one request timeout; after it, the idle timeout.
    stream_.expires_after(identity_ ? core_.options.limits.idle_timeout : core_.options.limits.request_timeout);
    asio::async_read(stream_, asio::buffer(prefix_), [self = shared_from_this()](beast::error_code ec, size_t bytes) {
      self->on_prefix(ec, bytes);
    });
  }

  void on_prefix(beast::error_code ec, size_t bytes) {
    reading_ = false;
    if (input_closed_) return maybe_close();
    if (ec) {
      if (ec == asio::error::eof && bytes > 0) {
        return fail(Error(ErrorCode::kInvalidArgument, fmt::format("truncated frame: the connection ended after {} of 4 length bytes", bytes)));
      }
      return end_input();  // end of stream, timeout or reset: nothing more to answer
    }
    const uint32_t length = frame_length(prefix_.data());
    if (length > kFrameBytesMax) {
      return fail(Error(ErrorCode::kTooLarge, fmt::format("a frame is at most {} bytes; this one announced {}", kFrameBytesMax, length)));
    }
    if (length == 0) return fail(Error(ErrorCode::kInvalidArgument, "a frame is never empty"));
    frame_.resize(length);
    reading_ = true;
    stream_.expires_after(core_.options.limits.request_timeout);
    asio::async_read(stream_, asio::buffer(frame_.body(), frame_.length()), [self = shared_from_this()](beast::error_code ec, size_t bytes) {
      self->on_frame(ec, bytes);
    });
  }

  void on_frame(beast::error_code ec, size_t bytes) {
    reading_ = false;
    if (input_closed_) return maybe_close();
    if (ec == asio::error::eof) {
      return fail(Error(ErrorCode::kInvalidArgument, fmt::format("truncated frame: the connection ended after {} of {} bytes", bytes, frame_.length())));
    }
    if (ec) return end_input();
    core_.metrics.count_frames(1, 0);
    const protocol::Frame* frame = verify_frame(frame_.frame());
    if (frame == nullptr) return fail(Error(ErrorCode::kInvalidArgument, "the frame is not a valid protocol Frame (schemas/protocol.fbs)"));
    if (const protocol::Hello* hello = frame->message_as_Hello()) return on_hello(*hello);
    if (const protocol::Request* request = frame->message_as_Request()) {
      if (!identity_) return fail(Error(ErrorCode::kUnauthenticated, "the first frame must be a Hello with a token"));
      on_request(*request);
      return read_prefix();
    }
    fail(Error(ErrorCode::kInvalidArgument, "clients send Hello and Request frames only"));
  }

  void on_hello(const protocol::Hello& hello) {
    if (identity_) return fail(Error(ErrorCode::kInvalidArgument, "a connection says Hello once"));
    if (hello.version() != kProtocolVersion) {
      return fail(Error(ErrorCode::kInvalidArgument, fmt::format("this server speaks protocol version {}", kProtocolVersion)));
    }
    const std::string_view token = hello.token() == nullptr ? std::string_view() : hello.token()->string_view();
    identity_ = core_.auth.authenticate(token);
    if (!identity_) return fail(Error(ErrorCode::kUnauthenticated, "the Hello's token is not a valid admin token, service key or user token"));
    answer(next_slot(), welcome_frame(identity_->actor));
    read_prefix();
  }

  void on_request(const protocol::Request& request) {
    const uint64_t request_id = request.request_id();
    const size_t slot = next_slot();
    const bool has_commands = request.commands() != nullptr && request.commands()->size() > 0;
    const bool has_query = request.query() != nullptr;
    if (has_commands == has_query) {
      return answer(slot, error_frame(request_id, Error(ErrorCode::kInvalidArgument, "a request holds commands or one query")));
    }
    if (has_query) return run_query(slot, request_id, request.query()->string_view());
    if (request.commands()->size() > kBatchCommandsMax) {
      return answer(slot, error_frame(request_id, Error(ErrorCode::kTooLarge, fmt::format("a request holds at most {} commands", kBatchCommandsMax))));
    }
    auto batch = std::make_shared<CommandBatch>();
    batch->reserve(request.commands()->size());
    for (const protocol::RequestCommand* item : *request.commands()) {
      if (Status s = add_command(*item, batch.get()); !s.ok()) return answer(slot, error_frame(request_id, s));
    }
    for (const CommandResult& result : batch->results()) {
      if (!result.status.ok()) core_.metrics.count_refused(result.status.code);
    }
    if (batch->commands().empty()) return answer(slot, results_frame(request_id, batch->results()));
    run_commands(slot, request_id, std::move(batch));
  }

  // One command of a request into the batch; an error refuses the whole request.
  Status add_command(const protocol::RequestCommand& item, CommandBatch* batch) {
    const bool has_json = item.json() != nullptr;
    const bool has_usage = item.usage() != nullptr;
    if (has_json == has_usage) {
      batch->refuse(Error(ErrorCode::kInvalidArgument, "a command is either a JSON line or a usage record"));
      return Status::Ok();
    }
    if (has_json) return add_json_command(item.json()->string_view(), *identity_, batch);
    Command command;
    if (Status s = usage_command(*item.usage(), &command); !s.ok()) {
      batch->refuse(std::move(s), command.id);
      return Status::Ok();
    }
    if (Status s = scope_command(*identity_, &command); !s.ok()) return s;
    batch->add(std::move(command));
    return Status::Ok();
  }

  void run_commands(size_t slot, uint64_t request_id, std::shared_ptr<CommandBatch> batch) {
    auto self = shared_from_this();
    // The commands come back to be destroyed here, on the connection's thread.
    Writer::CommandsDone done = [self, slot, request_id, batch](std::vector<CommandResult> results, std::vector<Command> commands) {
      asio::post(self->stream_.get_executor(), [self, slot, request_id, batch, results = std::move(results),
                                                spent = std::move(commands)]() mutable {
        spent.clear();
        batch->complete(std::move(results));
        self->finish(slot, results_frame(request_id, batch->results()));
      });
    };
    const Writer::Lane lane = Writer::lane_for(batch->commands().size(), in_flight_ == 0);
    hand_to_writer(slot, request_id, [self, batch, done, lane]() mutable { return self->core_.writer->submit(batch->commands(), done, lane); });
  }

  void run_query(size_t slot, uint64_t request_id, std::string_view json) {
    auto query = std::make_shared<Query>();
    if (Status s = decode_query(json, query.get(), ActorField::kOptional); !s.ok()) {
      core_.metrics.count_refused(s.code);
      return answer(slot, query_answer_frame(request_id, error_json(s)));
    }
    if (Status s = scope_query(*identity_, &query->actor, query->org); !s.ok()) return answer(slot, error_frame(request_id, s));
    auto self = shared_from_this();
    Writer::QueryDone done = [self, slot, request_id](std::string answer) {
      asio::post(self->stream_.get_executor(), [self, slot, request_id, answer = std::move(answer)] {
        self->finish(slot, query_answer_frame(request_id, answer));
      });
    };
    const Writer::Lane lane = Writer::lane_for(1, in_flight_ == 0);
    hand_to_writer(slot, request_id, [self, query, done, lane]() mutable { return self->core_.writer->submit(*query, done, lane); });
  }

  // Submits to the writer; reading pauses until the writer has taken the request.
  void hand_to_writer(size_t slot, uint64_t request_id, std::function<Writer::Admission()> attempt) {
    ++in_flight_;
    waiting_for_writer_ = true;
    auto self = shared_from_this();
    auto queued_or_refused = [self, attempt = std::move(attempt)]() mutable {
      const Writer::Admission admission = attempt();
      if (admission == Writer::Admission::kQueued) {
        self->waiting_for_writer_ = false;
        self->read_prefix();
      }
      return admission;
    };
    submit_with_retry(core_, timer_, std::move(queued_or_refused), [self, slot, request_id](Status refused) {
      self->waiting_for_writer_ = false;
      self->finish(slot, error_frame(request_id, refused));
    });
  }

  // An answer from the writer (or a refusal) for a request that was in flight.
  void finish(size_t slot, std::string frame) {
    --in_flight_;
    answer(slot, std::move(frame));
    read_prefix();
    maybe_close();
  }

  // ---- writing, in request order ----------------------------------------------------

  size_t next_slot() {
    pending_.emplace_back();
    return first_slot_ + pending_.size() - 1;
  }

  void answer(size_t slot, std::string frame) {
    pending_[slot - first_slot_] = std::move(frame);
    while (!pending_.empty() && pending_.front()) {
      outbox_.push_back(std::move(*pending_.front()));
      pending_.pop_front();
      ++first_slot_;
    }
    flush();
  }

  void flush() {
    if (writing_ || outbox_.empty() || closed_) return;
    writing_ = true;
    sending_.clear();
    std::swap(sending_, outbox_);
    buffers_.clear();
    for (const std::string& frame : sending_) buffers_.emplace_back(frame.data(), frame.size());
    stream_.expires_after(core_.options.limits.write_timeout);
    asio::async_write(stream_, buffers_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
  }

  void on_written(beast::error_code ec) {
    writing_ = false;
    core_.metrics.count_frames(0, sending_.size());
    if (ec) return close();  // the client cannot be answered any more
    flush();
    maybe_close();
  }

  // ---- ending -------------------------------------------------------------------------

  // Answers a connection-level error (request id 0) and closes once it is out.
  void fail(const Status& error) {
    if (error.code != ErrorCode::kUnavailable) spdlog::debug("binary connection refused: {}", error.message);
    answer(next_slot(), error_frame(0, error));
    end_input();
  }

  void stop_reading() {
    end_input();
    // A read in progress only waits for input that will not be answered.
    if (reading_) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_receive, ignored);
    }
  }

  void end_input() {
    input_closed_ = true;
    maybe_close();
  }

  void maybe_close() {
    if (!input_closed_ || in_flight_ > 0 || writing_ || !outbox_.empty() || !pending_.empty()) return;
    close();
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    timer_->cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  Core& core_;
  beast::tcp_stream stream_;
  std::shared_ptr<asio::steady_timer> timer_;  // waiting for room in the writer queue
  std::array<uint8_t, kFrameLengthBytes> prefix_{};
  FrameBuffer frame_;
  std::optional<Identity> identity_;
  uint64_t id_ = 0;
  size_t in_flight_ = 0;             // requests handed to the writer and not yet answered
  bool reading_ = false;
  bool waiting_for_writer_ = false;  // a request waits for room in the writer queue
  bool input_closed_ = false;        // no more frames will be read
  bool draining_ = false;
  bool writing_ = false;
  bool closed_ = false;
  // Answers by request order: slot first_slot_ + i is pending_[i], empty until ready.
  std::deque<std::optional<std::string>> pending_;
  size_t first_slot_ = 0;
  std::vector<std::string> outbox_;   // ready, in order, not yet written
  std::vector<std::string> sending_;  // being written
  std::vector<asio::const_buffer> buffers_;
};

}  // namespace

void start_binary_session(Core& core, tcp::socket socket, bool refuse) {
  std::make_shared<BinarySession>(core, std::move(socket))->start(refuse);
}

}  // namespace tally::server
