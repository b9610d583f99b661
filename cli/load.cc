#include "cli/load.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/clock.h"
#include "engine/values.h"
#include "server/client.h"
#include "server/server.h"

namespace tally::cli {
namespace {

using Clock = std::chrono::steady_clock;

int fail(const Status& status) {
  std::cerr << "tally load: " << error_name(status.code) << ": " << status.message << '\n';
  return 1;
}

Status connect(const LoadOptions& options, const std::string& token, std::unique_ptr<server::Client>* client) {
  std::string host;
  uint16_t port = 0;
  if (Status s = server::parse_host_port(options.server, &host, &port); !s.ok()) return s;
  return server::Client::connect(host, port, token, client);
}

// Runs command lines in requests of at most 4,096; every command must succeed.
Status run_all(server::Client& client, const std::vector<std::string>& lines, std::string* last_extra) {
  for (size_t start = 0; start < lines.size(); start += 4096) {
    const std::vector<std::string> part(lines.begin() + static_cast<ptrdiff_t>(start),
                                        lines.begin() + static_cast<ptrdiff_t>(std::min(lines.size(), start + 4096)));
    std::vector<CommandResult> results;
    if (Status s = client.execute(part, &results); !s.ok()) return s;
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i].status.ok()) return Error(results[i].status.code, fmt::format("{}: {}", part[i], results[i].status.message));
      if (last_extra != nullptr) *last_extra = results[i].members();
    }
  }
  return Status::Ok();
}

std::string member_name(uint32_t i) { return fmt::format("m{}@load.test", i); }

// A minimal HTTP/1.1 client for POST /v1/events on one keep-alive connection: enough
// for the daemon's answers, which always carry Content-Length.
class HttpConnection {
 public:
  ~HttpConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status connect(const std::string& address) {
    uint16_t port = 0;
    if (Status s = server::parse_host_port(address, &host_, &port); !s.ok()) return s;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host_.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || found == nullptr) {
      return Error(ErrorCode::kUnavailable, fmt::format("cannot resolve {}", address));
    }
    for (addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd_ >= 0 && ::connect(fd_, a->ai_addr, a->ai_addrlen) != 0) {
        ::close(fd_);
        fd_ = -1;
      }
    }
    freeaddrinfo(found);
    if (fd_ < 0) return Error(ErrorCode::kUnavailable, fmt::format("cannot connect to {}", address));
    host_ = address;
    return Status::Ok();
  }
  // Posts a CloudEvents batch; *status and *body are the answer's.
  Status post_events(const std::string& token, const std::string& body, unsigned* status, std::string* answer) {
    std::string request = fmt::format(
        "POST /v1/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n"
        "Content-Type: application/cloudevents-batch+json\r\nContent-Length: {}\r\n\r\n",
        host_, token, body.size());
    request += body;
    for (size_t done = 0; done < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + done, request.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return Error(ErrorCode::kUnavailable, "the daemon closed the HTTP connection");
      done += static_cast<size_t>(n);
    }
    size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (buffer_.size() > 64 * 1024) return Error(ErrorCode::kInternal, "an HTTP answer's header is over 64 KiB");
      if (Status s = read_more(); !s.ok()) return s;
    }
    const std::string_view head(buffer_.data(), header_end);
    if (head.size() < 12 || head.substr(0, 9) != "HTTP/1.1 ") return Error(ErrorCode::kInternal, "not an HTTP/1.1 answer");
    *status = static_cast<unsigned>(std::stoul(std::string(head.substr(9, 3))));
    size_t length_at = std::string::npos;
    for (std::string_view name : {"Content-Length: ", "content-length: "}) {
      if (length_at == std::string::npos && head.find(name) != std::string::npos) length_at = head.find(name) + name.size();
    }
    if (length_at == std::string::npos) return Error(ErrorCode::kInternal, "an HTTP answer without Content-Length");
    const size_t length = std::stoul(std::string(head.substr(length_at, head.find("\r\n", length_at) - length_at)));
    const size_t body_start = header_end + 4;
    while (buffer_.size() < body_start + length) {
      if (Status s = read_more(); !s.ok()) return s;
    }
    answer->assign(buffer_, body_start, length);
    buffer_.erase(0, body_start + length);
    return Status::Ok();
  }

 private:
  Status read_more() {
    char chunk[64 * 1024];
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return Error(ErrorCode::kUnavailable, "the daemon closed the HTTP connection");
    buffer_.append(chunk, static_cast<size_t>(n));
    return Status::Ok();
  }

  int fd_ = -1;
  std::string host_;
  std::string buffer_;
};

// How many results of a batch answer are ok and how many are not.
void count_results(std::string_view answer, uint64_t* ok, uint64_t* not_ok) {
  for (size_t at = answer.find("\"ok\":"); at != std::string_view::npos; at = answer.find("\"ok\":", at + 5)) {
    ++(answer.substr(at + 5, 4) == "true" ? *ok : *not_ok);
  }
}

}  // namespace

int run_load(const LoadOptions& options) {
  if (options.rate > 0 && options.events / options.rate > kLoadSecondsMax) {
    return fail(Error(ErrorCode::kInvalidArgument, fmt::format("{} events at {} events/s would take more than {} s; record fewer or faster",
                                                               options.events, options.rate, kLoadSecondsMax)));
  }
  std::string admin;
  if (Status s = server::read_token_file(options.token_file, &admin); !s.ok()) return fail(s);
  std::unique_ptr<server::Client> setup;
  if (Status s = connect(options, admin, &setup); !s.ok()) return fail(s);

  // A fresh organization for this run, so runs never collide.
  const std::string org = fmt::format("load-{}", SystemClock().now_us());
  std::vector<std::string> lines;
  lines.push_back(fmt::format(R"({{"cmd":"create_org","org":"{}","owner":"owner@load.test","mode":"budget"}})", org));
  for (uint32_t w = 1; w < options.workspaces; ++w) {
    lines.push_back(fmt::format(R"({{"cmd":"create_workspace","actor":"owner@load.test","org":"{}","workspace":"w{}"}})", org, w));
  }
  auto workspace_of = [&](uint32_t member) { return member % options.workspaces == 0 ? std::string("primary") : fmt::format("w{}", member % options.workspaces); };
  for (uint32_t m = 0; m < options.members; ++m) {
    lines.push_back(fmt::format(R"({{"cmd":"invite_member","actor":"owner@load.test","org":"{}","user":"{}","role":"member","workspace":"{}"}})", org,
                                member_name(m), workspace_of(m)));
    lines.push_back(fmt::format(R"({{"cmd":"accept_invite","actor":"{}","org":"{}"}})", member_name(m), org));
  }
  // Each workspace gets enough credits: 1 micro-credit per event, with room to spare.
  const uint64_t per_workspace = options.events / options.workspaces + 1000;
  const uint64_t total_credits = per_workspace * options.workspaces / 1'000'000 + 1;
  lines.push_back(fmt::format(R"({{"cmd":"grant_credits","actor":"owner@load.test","org":"{}","grant":"g","kind":"top_up","credits":"{}"}})", org,
                              std::min<uint64_t>(total_credits * 2, 1'000'000'000)));
  for (uint32_t w = 1; w < options.workspaces; ++w) {
    lines.push_back(fmt::format(R"({{"cmd":"transfer_credits","actor":"owner@load.test","org":"{}","from":"primary","to":"w{}","credits":"{}"}})", org, w,
                                format_credits(static_cast<int64_t>(per_workspace))));
  }
  lines.push_back(R"({"cmd":"set_price","tool":"chat","model":"load-model","unit":"token","credits_per_unit":"0.000001","effective_at":"2020-01-01T00:00:00Z"})");
  lines.push_back(fmt::format(R"({{"cmd":"create_service_key","org":"{}","key":"loader"}})", org));
  std::string extra;
  const auto setup_start = Clock::now();
  if (Status s = run_all(*setup, lines, &extra); !s.ok()) return fail(s);
  const size_t at = extra.find("\"secret\":\"");
  if (at == std::string::npos) return fail(Error(ErrorCode::kInternal, "the service key's secret is missing"));
  const std::string key = extra.substr(at + 10, extra.find('"', at + 10) - at - 10);
  std::cout << fmt::format("setup: organization {} with {} workspaces and {} members, {} commands in {:.2f} s\n", org, options.workspaces,
                           options.members, lines.size(), std::chrono::duration<double>(Clock::now() - setup_start).count());

  // Ingest.
  const int64_t occurred_at = SystemClock().now_us() - 60'000'000;
  std::atomic<uint64_t> next_event{0};
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<uint64_t> refused{0};
  std::mutex latencies_mutex;
  std::vector<double> latencies_us;
  std::atomic<bool> failed{false};
  Clock::time_point ingest_start;  // set before the workers start
  // With a rate: waits until the request starting at event `first` is due.
  auto pace = [&](uint64_t first) {
    if (options.rate == 0) return;
    std::this_thread::sleep_until(ingest_start + std::chrono::microseconds(first * 1'000'000 / options.rate));
  };
  auto worker = [&](uint32_t connection) {
    std::unique_ptr<server::Client> client;
    if (Status s = connect(options, key, &client); !s.ok()) {
      fail(s);
      failed = true;
      return;
    }
    std::vector<Clock::time_point> sent_at;
    std::vector<double> mine;
    std::vector<server::UsageRecord> records;
    size_t in_flight = 0;
    auto receive = [&]() -> bool {
      server::Reply reply;
      if (Status s = client->receive(&reply); !s.ok() || !reply.status.ok()) {
        fail(s.ok() ? reply.status : s);
        return false;
      }
      mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent_at[reply.request_id % sent_at.size()]).count());
      for (const CommandResult& result : reply.results) ++(result.status.ok() ? acknowledged : refused);
      --in_flight;
      return true;
    };
    sent_at.resize(options.window + 1);
    for (;;) {
      const uint64_t first = next_event.fetch_add(options.batch);
      if (first >= options.events || failed) break;
      const uint64_t count = std::min<uint64_t>(options.batch, options.events - first);
      records.resize(count);
      for (uint64_t i = 0; i < count; ++i) {
        const uint32_t member = static_cast<uint32_t>((first + i) * 7919 % options.members);
        server::UsageRecord& record = records[i];
        record.id = fmt::format("e{}", first + i);
        record.org = org;
        record.workspace = workspace_of(member);
        record.user = member_name(member);
        record.tool = "chat";
        record.model = "load-model";
        record.quantity = 1;
        record.unit = "token";
        record.occurred_at_us = occurred_at;
      }
      pace(first);
      uint64_t request_id = 0;
      if (Status s = client->send_usage(records, &request_id); !s.ok()) {
        fail(s);
        failed = true;
        break;
      }
      sent_at[request_id % sent_at.size()] = Clock::now();
      if (++in_flight >= options.window && !receive()) {
        failed = true;
        break;
      }
    }
    while (in_flight > 0 && !failed) {
      if (!receive()) failed = true;
    }
    std::lock_guard lock(latencies_mutex);
    latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    (void)connection;
  };
  // The same events as CloudEvents batches over HTTP, one request in flight per connection.
  const std::string occurred_text = format_time(occurred_at);
  auto http_worker = [&](uint32_t connection) {
    HttpConnection http;
    if (Status s = http.connect(options.http); !s.ok()) {
      fail(s);
      failed = true;
      return;
    }
    std::vector<double> mine;
    std::string body;
    std::string answer;
    for (;;) {
      const uint64_t first = next_event.fetch_add(options.batch);
      if (first >= options.events || failed) break;
      const uint64_t count = std::min<uint64_t>(options.batch, options.events - first);
      body.clear();
      body.push_back('[');
      for (uint64_t i = 0; i < count; ++i) {
        const uint32_t member = static_cast<uint32_t>((first + i) * 7919 % options.members);
        if (i > 0) body += ',';
        body += fmt::format(R"({{"specversion":"1.0","id":"e{}","source":"/tally-load","type":"com.tally.usage.recorded","time":"{}",)"
                            R"("subject":"{}/{}/{}","data":{{"tool":"chat","model":"load-model","quantity":1,"unit":"token"}}}})",
                            first + i, occurred_text, org, workspace_of(member), member_name(member));
      }
      body += ']';
      pace(first);
      unsigned status = 0;
      const auto begin = Clock::now();
      if (Status s = http.post_events(key, body, &status, &answer); !s.ok()) {
        fail(s);
        failed = true;
        break;
      }
      mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
      if (status != 200) {
        fail(Error(ErrorCode::kInternal, fmt::format("HTTP {}: {}", status, answer.substr(0, 200))));
        failed = true;
        break;
      }
      uint64_t ok = 0, not_ok = 0;
      count_results(answer, &ok, &not_ok);
      if (ok + not_ok != count) {
        fail(Error(ErrorCode::kInternal, fmt::format("{} results for {} events", ok + not_ok, count)));
        failed = true;
        break;
      }
      acknowledged += ok;
      refused += not_ok;
    }
    std::lock_guard lock(latencies_mutex);
    latencies_us.insert(latencies_us.end(), mine.begin(), mine.end());
    (void)connection;
  };
  // Reserve -> settle round trips, one after the other, while the ingest runs.
  std::vector<double> round_trips_us;
  std::atomic<bool> ingest_done{false};
  auto round_tripper = [&] {
    std::unique_ptr<server::Client> client;
    if (Status s = connect(options, key, &client); !s.ok()) {
      fail(s);
      return;
    }
    const std::string user = member_name(0);
    const std::string workspace = workspace_of(0);
    for (uint32_t i = 0; i < options.round_trips && !failed; ++i) {
      const std::vector<std::string> reserve = {fmt::format(
          R"({{"cmd":"reserve","org":"{}","workspace":"{}","user":"{}","hold":"rt-{}","credits":"0.000001","timeout_s":60}})", org, workspace, user, i)};
      const std::vector<std::string> settle = {fmt::format(R"({{"cmd":"settle","org":"{}","hold":"rt-{}","credits":"0.000001"}})", org, i)};
      std::vector<CommandResult> results;
      const auto begin = Clock::now();
      if (Status s = client->execute(reserve, &results); !s.ok() || !results[0].status.ok()) {
        fail(s.ok() ? results[0].status : s);
        return;
      }
      if (Status s = client->execute(settle, &results); !s.ok() || !results[0].status.ok()) {
        fail(s.ok() ? results[0].status : s);
        return;
      }
      round_trips_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - begin).count());
      if (ingest_done) break;  // "under load" only
    }
  };
  const auto start = Clock::now();
  ingest_start = start;
  std::vector<std::thread> threads;
  for (uint32_t c = 0; c < options.connections; ++c) {
    if (options.http.empty()) {
      threads.emplace_back(worker, c);
    } else {
      threads.emplace_back(http_worker, c);
    }
  }
  std::thread round_trip_thread;
  if (options.round_trips > 0) round_trip_thread = std::thread(round_tripper);
  for (std::thread& thread : threads) thread.join();
  ingest_done = true;
  if (round_trip_thread.joinable()) round_trip_thread.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (failed) return 1;
  std::sort(latencies_us.begin(), latencies_us.end());
  auto percentile = [&](double p) { return latencies_us.empty() ? 0.0 : latencies_us[static_cast<size_t>(p * static_cast<double>(latencies_us.size() - 1))]; };
  std::cout << fmt::format("ingest: {} events acknowledged ({} refused) in {:.2f} s = {:.0f} events/s over {} {} connections, {} per request, {} in flight{}\n",
                           acknowledged.load(), refused.load(), seconds, static_cast<double>(acknowledged) / seconds, options.connections,
                           options.http.empty() ? "binary-protocol" : "HTTP (CloudEvents batches)", options.batch,
                           options.http.empty() ? options.window : 1,
                           options.rate > 0 ? fmt::format(", paced at {} events/s", options.rate) : std::string());
  std::cout << fmt::format("request latency: p50 {:.0f} us, p99 {:.0f} us, max {:.0f} us\n", percentile(0.5), percentile(0.99), percentile(1.0));
  if (!round_trips_us.empty()) {
    std::sort(round_trips_us.begin(), round_trips_us.end());
    auto at = [&](double p) { return round_trips_us[static_cast<size_t>(p * static_cast<double>(round_trips_us.size() - 1))]; };
    std::cout << fmt::format("reserve -> settle round trips under load: {}, p50 {:.0f} us, p99 {:.0f} us, max {:.0f} us\n", round_trips_us.size(),
                             at(0.5), at(0.99), at(1.0));
  }
  return refused == 0 ? 0 : 1;
}

}  // namespace tally::cli
