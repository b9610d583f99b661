#include "server/client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "server/protocol.h"

namespace tally::server {
namespace {

Status unavailable(std::string what) { return Error(ErrorCode::kUnavailable, std::move(what)); }

void set_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

flatbuffers::Offset<flatbuffers::String> optional_string(flatbuffers::FlatBufferBuilder& builder, std::string_view text) {
  return text.empty() ? flatbuffers::Offset<flatbuffers::String>() : builder.CreateString(text);
}

std::string request_frame(flatbuffers::FlatBufferBuilder& builder, uint64_t request_id,
                          flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<protocol::RequestCommand>>> commands,
                          flatbuffers::Offset<flatbuffers::String> query) {
  protocol::RequestBuilder request(builder);
  request.add_request_id(request_id);
  if (!commands.IsNull()) request.add_commands(commands);
  if (!query.IsNull()) request.add_query(query);
  return frame_bytes(builder, protocol::Message::Request, request.Finish().Union());
}

}  // namespace

Status parse_host_port(std::string_view text, std::string* host, uint16_t* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("\"{}\" is not HOST:PORT", text));
  }
  std::string_view name = text.substr(0, colon);
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
  const std::string_view digits = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535) {
    return Error(ErrorCode::kInvalidArgument, fmt::format("\"{}\" is not a port number", digits));
  }
  *host = name;
  *port = static_cast<uint16_t>(value);
  return Status::Ok();
}

Status Client::connect(const std::string& host, uint16_t port, std::string_view token, std::unique_ptr<Client>* client,
                       const ClientOptions& options) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int error = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); error != 0) {
    return unavailable(fmt::format("cannot resolve {}: {}", host, gai_strerror(error)));
  }
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* address = found; address != nullptr && fd < 0; address = address->ai_next) {
    fd = ::socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
    if (fd < 0) continue;
    set_timeouts(fd, options.timeout);
    if (::connect(fd, address->ai_addr, address->ai_addrlen) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return unavailable(fmt::format("cannot connect to {}:{}: {}", host, port, last_error));
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  std::unique_ptr<Client> connected(new Client(fd, options));
  if (Status s = connected->send_frame(hello_frame(token, options.name)); !s.ok()) return s;
  Reply welcome;
  if (Status s = connected->receive(&welcome); !s.ok()) return s;
  if (!welcome.status.ok()) return welcome.status;
  connected->identity_ = welcome.identity;
  *client = std::move(connected);
  return Status::Ok();
}

Client::~Client() { ::close(fd_); }

Status Client::send_raw(std::string_view bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      return unavailable(fmt::format("sending to the server failed: {}", n < 0 ? std::strerror(errno) : "closed"));
    }
    sent += static_cast<size_t>(n);
  }
  return Status::Ok();
}

void Client::shutdown_send() { ::shutdown(fd_, SHUT_WR); }

Status Client::send_frame(const std::string& frame) {
  if (broken_) return unavailable("the connection failed earlier");
  if (frame.size() - kFrameLengthBytes > kFrameBytesMax) {
    return Error(ErrorCode::kTooLarge, fmt::format("a frame is at most {} bytes; split the request", kFrameBytesMax));
  }
  return send_raw(frame);
}

Status Client::read_exact(char* data, size_t size) {
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::recv(fd_, data + got, size - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return unavailable("no answer from the server in time");
      return unavailable(n == 0 ? "the server closed the connection" : fmt::format("reading from the server failed: {}", std::strerror(errno)));
    }
    got += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Client::send_commands(std::span<const std::string> json_lines, uint64_t* request_id) {
  flatbuffers::FlatBufferBuilder builder(256 + json_lines.size() * 128);
  std::vector<flatbuffers::Offset<protocol::RequestCommand>> commands;
  commands.reserve(json_lines.size());
  for (const std::string& line : json_lines) {
    auto json = builder.CreateString(line);
    protocol::RequestCommandBuilder command(builder);
    command.add_json(json);
    commands.push_back(command.Finish());
  }
  *request_id = next_request_id_++;
  return send_frame(request_frame(builder, *request_id, builder.CreateVector(commands), {}));
}

Status Client::send_usage(std::span<const UsageRecord> records, uint64_t* request_id) {
  flatbuffers::FlatBufferBuilder builder(256 + records.size() * 160);
  std::vector<flatbuffers::Offset<protocol::RequestCommand>> commands;
  commands.reserve(records.size());
  for (const UsageRecord& record : records) {
    auto id = builder.CreateString(record.id);
    auto org = builder.CreateString(record.org);
    auto workspace = builder.CreateString(record.workspace);
    auto user = optional_string(builder, record.user);
    auto tool = builder.CreateString(record.tool);
    auto model = builder.CreateString(record.model);
    auto unit = builder.CreateString(record.unit);
    auto usage = protocol::CreateUsageRecord(builder, id, org, workspace, user, tool, model, record.quantity, unit,
                                             record.occurred_at_us, record.credits_micro.value_or(-1));
    commands.push_back(protocol::CreateRequestCommand(builder, {}, usage));
  }
  *request_id = next_request_id_++;
  return send_frame(request_frame(builder, *request_id, builder.CreateVector(commands), {}));
}

Status Client::send_query(std::string_view json, uint64_t* request_id) {
  flatbuffers::FlatBufferBuilder builder(128 + json.size());
  auto query = builder.CreateString(json);
  *request_id = next_request_id_++;
  return send_frame(request_frame(builder, *request_id, {}, query));
}

Status Client::receive(Reply* reply) {
  *reply = Reply();
  if (broken_) return unavailable("the connection failed earlier");
  uint8_t prefix[kFrameLengthBytes];
  if (Status s = read_exact(reinterpret_cast<char*>(prefix), sizeof prefix); !s.ok()) return s;
  const uint32_t length = frame_length(prefix);
  if (length == 0 || length > kFrameBytesMax) {
    broken_ = true;
    return Error(ErrorCode::kInvalidArgument, fmt::format("the server sent a frame of {} bytes", length));
  }
  FrameBuffer buffer;
  buffer.resize(length);
  if (Status s = read_exact(reinterpret_cast<char*>(buffer.body()), length); !s.ok()) return s;
  const protocol::Frame* frame = verify_frame(buffer.frame());
  const protocol::Response* response = frame == nullptr ? nullptr : frame->message_as_Response();
  if (response == nullptr) {
    broken_ = true;
    return Error(ErrorCode::kInvalidArgument, "the server sent something other than a Response frame");
  }
  reply->request_id = response->request_id();
  if (!response->ok()) {
    ErrorCode code = ErrorCode::kInternal;
    if (response->error() == nullptr || !error_from_name(response->error()->string_view(), &code)) code = ErrorCode::kInternal;
    reply->status = Error(code, response->message() == nullptr ? std::string() : response->message()->str());
    // Request id 0 refuses the connection itself: the server closes it.
    if (reply->request_id == 0) {
      broken_ = true;
      return reply->status;
    }
    return Status::Ok();
  }
  if (response->results() != nullptr) {
    reply->results.reserve(response->results()->size());
    for (const protocol::Result* result : *response->results()) reply->results.push_back(result_of(*result));
  }
  if (response->query_answer() != nullptr) reply->query_answer = response->query_answer()->str();
  if (response->identity() != nullptr) reply->identity = response->identity()->str();
  return Status::Ok();
}

Status Client::wait(uint64_t request_id, Reply* reply) {
  if (Status s = receive(reply); !s.ok()) return s;
  if (reply->request_id != request_id) {
    broken_ = true;
    return Error(ErrorCode::kInternal, fmt::format("expected the answer to request {}, got {}", request_id, reply->request_id));
  }
  return reply->status;
}

Status Client::execute(std::span<const std::string> json_lines, std::vector<CommandResult>* results) {
  uint64_t request_id;
  if (Status s = send_commands(json_lines, &request_id); !s.ok()) return s;
  Reply reply;
  if (Status s = wait(request_id, &reply); !s.ok()) return s;
  *results = std::move(reply.results);
  return Status::Ok();
}

Status Client::record_usage(std::span<const UsageRecord> records, std::vector<CommandResult>* results) {
  uint64_t request_id;
  if (Status s = send_usage(records, &request_id); !s.ok()) return s;
  Reply reply;
  if (Status s = wait(request_id, &reply); !s.ok()) return s;
  *results = std::move(reply.results);
  return Status::Ok();
}

Status Client::query(std::string_view json, std::string* answer) {
  uint64_t request_id;
  if (Status s = send_query(json, &request_id); !s.ok()) return s;
  Reply reply;
  if (Status s = wait(request_id, &reply); !s.ok()) return s;
  *answer = std::move(reply.query_answer);
  return Status::Ok();
}

}  // namespace tally::server
