// The daemon end to end, in process, over loopback (127.0.0.1, ephemeral ports): the
// HTTP API and the binary protocol, authentication for a grid of roles and actions,
// CloudEvents, malformed and oversized input, limits, timeouts and a graceful shutdown.
// Every loop is bounded in count and in time.
#include <utility>  // before Boost 1.74's asio, whose awaitable.hpp forgets it

// GCC reports a false maybe-uninitialized in Beast 1.74's response parser
// (basic_parser::content_length_unchecked) when building with the sanitizers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "engine/test_util.h"
#include "engine/thread_name.h"
#include "engine/values.h"
#include "replay/export.h"
#include "server/client.h"
#include "server/protocol.h"
#include "server/server.h"

namespace tally::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::string_view kAdmin = "admin-token-for-tests-0123456789";

// Usage must have occurred within the last 90 days: an hour ago.
int64_t recent_us() {
  static const int64_t value = SystemClock().now_us() - 3'600'000'000;
  return value;
}

// Bodies say @WHEN@ for that time.
std::string when(std::string text) {
  static const std::string time = format_time(recent_us());
  for (size_t at = text.find("@WHEN@"); at != std::string::npos; at = text.find("@WHEN@", at)) text.replace(at, 6, time);
  return text;
}

struct HttpAnswer {
  unsigned status = 0;
  std::string body;
  std::string content_type;
};

// One HTTP request on a fresh connection.
HttpAnswer http_call(uint16_t port, http::verb method, std::string_view target, std::string body = {}, std::string_view token = {},
                     std::string_view content_type = "application/json") {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(10s);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> request(method, beast::string_view(target.data(), target.size()), 11);
  request.set(http::field::host, "127.0.0.1");
  if (!token.empty()) request.set(http::field::authorization, "Bearer " + std::string(token));
  if (!body.empty()) request.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  request.body() = when(std::move(body));
  request.prepare_payload();
  // The server may answer (413) and stop reading before the whole body is sent.
  beast::error_code write_error;
  http::write(stream, request, write_error);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  HttpAnswer answer;
  answer.status = response.result_int();
  answer.body = response.body();
  answer.content_type = std::string(response[http::field::content_type]);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return answer;
}

HttpAnswer post(uint16_t port, std::string_view target, std::string body, std::string_view token,
                std::string_view content_type = "application/json") {
  return http_call(port, http::verb::post, target, std::move(body), token, content_type);
}

// Sends raw bytes and reads until the server closes (or `timeout` passes).
std::string raw_exchange(uint16_t port, std::string_view bytes, std::chrono::milliseconds timeout = 5000ms, bool half_close = false) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  if (!bytes.empty()) asio::write(stream, asio::buffer(bytes.data(), bytes.size()));
  beast::error_code ec;
  if (half_close) stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::string received;
  char chunk[4096];
  for (int i = 0; i < 10000; ++i) {
    stream.expires_after(timeout);
    const size_t n = stream.read_some(asio::buffer(chunk), ec);
    received.append(chunk, n);
    if (ec) break;
  }
  return received;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// The value of a string member in a JSON answer, e.g. "secret".
std::string member(const std::string& json, std::string_view name) {
  const std::string key = fmt::format("\"{}\":\"", name);
  const size_t at = json.find(key);
  if (at == std::string::npos) return {};
  const size_t start = at + key.size();
  return json.substr(start, json.find('"', start) - start);
}

std::string usage_event(std::string_view id, std::string_view subject, int quantity, std::string_view extra_data = {}) {
  return fmt::format(R"({{"specversion":"1.0","id":"{}","source":"/tests","type":"com.tally.usage.recorded",)"
                     R"("time":"@WHEN@","subject":"{}","data":{{"tool":"chat","model":"m1","quantity":{},"unit":"token"{}}}}})",
                     id, subject, quantity, extra_data);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("tally-server-test-{}-{}", ::getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
    std::filesystem::create_directories(dir_);
    options_.data_dir = (dir_ / "data").string();
    options_.binary_port = 0;
    options_.http_port = 0;
    options_.admin_token = std::string(kAdmin);
    options_.tick_interval = 100ms;
    options_.limits.http_body_bytes_max = 1u << 20;
    options_.limits.request_timeout = 2000ms;
    options_.limits.idle_timeout = 2000ms;
  }

  void TearDown() override {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void start() {
    ASSERT_TRUE(Server::start(options_, &server_).ok());
    http_port_ = server_->http_port();
    binary_port_ = server_->binary_port();
  }

  HttpAnswer commands(std::string_view token, const std::vector<std::string>& lines) {
    std::string body;
    for (const std::string& line : lines) body += line + "\n";
    return post(http_port_, "/v1/commands", body, token);
  }

  // One command; its answer line.
  std::string command(std::string_view token, const std::string& line) {
    const HttpAnswer answer = commands(token, {line});
    EXPECT_EQ(answer.status, 200u) << answer.body;
    return answer.body.substr(0, answer.body.find('\n'));
  }

  std::string query(std::string_view token, const std::string& json, unsigned* status = nullptr) {
    const HttpAnswer answer = post(http_port_, "/v1/query", json, token);
    if (status != nullptr) *status = answer.status;
    return answer.body;
  }

  uint64_t last_seq() {
    const HttpAnswer answer = http_call(http_port_, http::verb::get, "/healthz");
    const size_t at = answer.body.find("\"last_seq\":");
    return at == std::string::npos ? 0 : std::stoull(answer.body.substr(at + 11));
  }

  // acme (budget mode): owner alice, admin ann, member bob in workspace "design", 1000
  // credits in design; a service key k1, a revoked key k2; user tokens for all three.
  // beta: owner zed, with its own key k1 (same id, another secret).
  void populate() {
    const std::string admin(kAdmin);
    for (const char* line : {
             R"({"cmd":"create_org","org":"acme","owner":"alice@acme.io","mode":"budget"})",
             R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
             R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"ann@acme.io","role":"admin","workspace":"primary"})",
             R"({"cmd":"accept_invite","actor":"ann@acme.io","org":"acme"})",
             R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"design"})",
             R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
             R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g0","kind":"plan","credits":"5000"})",
             R"({"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"primary","to":"design","credits":"1000"})",
             R"({"cmd":"create_org","org":"beta","owner":"zed@beta.io"})",
             R"({"cmd":"grant_credits","actor":"zed@beta.io","org":"beta","grant":"b0","kind":"plan","credits":"100"})",
             R"({"cmd":"set_price","tool":"chat","model":"m1","unit":"token","credits_per_unit":"0.001","effective_at":"2020-01-01T00:00:00Z"})",
         }) {
      ASSERT_TRUE(has(command(admin, line), "\"ok\":true")) << line;
    }
    auto secret_of = [&](const std::string& line) {
      const std::string answer = command(admin, line);
      EXPECT_TRUE(has(answer, "\"ok\":true")) << answer;
      return member(answer, "secret");
    };
    key_ = secret_of(R"({"cmd":"create_service_key","org":"acme","key":"k1"})");
    revoked_key_ = secret_of(R"({"cmd":"create_service_key","org":"acme","key":"k2"})");
    beta_key_ = secret_of(R"({"cmd":"create_service_key","org":"beta","key":"k1"})");
    ASSERT_TRUE(has(command(admin, R"({"cmd":"revoke_service_key","org":"acme","key":"k2"})"), "\"ok\":true"));
    owner_ = secret_of(R"({"cmd":"create_user_token","user":"alice@acme.io","token":"t-alice"})");
    admin_user_ = secret_of(R"({"cmd":"create_user_token","user":"ann@acme.io","token":"t-ann"})");
    member_ = secret_of(R"({"cmd":"create_user_token","user":"bob@acme.io","token":"t-bob"})");
    ASSERT_EQ(key_.substr(0, 4), "tsk_");
    ASSERT_EQ(owner_.substr(0, 4), "tut_");
  }

  std::filesystem::path dir_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
  uint16_t http_port_ = 0;
  uint16_t binary_port_ = 0;
  std::string key_, revoked_key_, beta_key_, owner_, admin_user_, member_;
};

TEST_F(ServerTest, HealthAndMetricsNeedNoToken) {
  start();
  HttpAnswer health = http_call(http_port_, http::verb::get, "/healthz");
  EXPECT_EQ(health.status, 200u);
  EXPECT_TRUE(has(health.body, "\"ok\":true"));
  HttpAnswer metrics = http_call(http_port_, http::verb::get, "/metrics");
  EXPECT_EQ(metrics.status, 200u);
  EXPECT_TRUE(has(metrics.body, "tally_commands_total{type=\"record_usage\"}"));
  EXPECT_TRUE(has(metrics.body, "tally_commit_duration_seconds_bucket"));
  EXPECT_EQ(http_call(http_port_, http::verb::get, "/nope").status, 404u);
  // A path that is not UTF-8 is quoted with U+FFFD in its place, so the answer stays
  // valid JSON.
  const HttpAnswer not_utf8 = http_call(http_port_, http::verb::get, "/n\xffpe");
  EXPECT_EQ(not_utf8.status, 404u);
  EXPECT_TRUE(has(not_utf8.body, "no endpoint /n\xEF\xBF\xBDpe")) << not_utf8.body;
  EXPECT_EQ(http_call(http_port_, http::verb::get, "/v1/commands").status, 405u);
  EXPECT_EQ(http_call(http_port_, http::verb::post, "/healthz", "{}").status, 405u);
}

// The server's threads carry their names (engine/thread_name.h; docs/server.md).
TEST_F(ServerTest, ItsThreadsAreNamed) {
  start();
  std::string found;
  for (const char* name : {kWriterThreadName, kIoThreadName, kCommitThreadName}) {
    EXPECT_TRUE(testing::has_thread(name, &found)) << name << " not among: " << found;
  }
}

TEST_F(ServerTest, HttpCommandsAnswerEachLineInOrder) {
  start();
  populate();
  const HttpAnswer answer = commands(kAdmin, {
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"video","id":"c1"})",
      "not json",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"video","id":"c2"})",
      R"({"cmd":"create_workspace","org":"acme","workspace":"audio","bogus":1})",
      R"({"cmd":"record_usage","actor":"bob@acme.io","id":"u-1","org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"m1","quantity":2000,"unit":"token","occurred_at":"@WHEN@"})",
  });
  ASSERT_EQ(answer.status, 200u);
  EXPECT_EQ(answer.content_type, "application/x-ndjson");
  const std::vector<std::string> lines = lines_of(answer.body);
  ASSERT_EQ(lines.size(), 5u) << answer.body;
  EXPECT_TRUE(has(lines[0], "\"ok\":true") && has(lines[0], "\"id\":\"c1\""));
  EXPECT_TRUE(has(lines[1], "\"error\":\"invalid_json\""));
  EXPECT_TRUE(has(lines[2], "\"error\":\"workspace_exists\"") && has(lines[2], "\"id\":\"c2\""));
  EXPECT_TRUE(has(lines[3], "\"error\":\"unknown_field\""));
  EXPECT_TRUE(has(lines[4], "\"ok\":true") && has(lines[4], "\"credits\":\"2\""));
  const std::string balance = query(member_, R"({"query":"balance","org":"acme","workspace":"design"})");
  EXPECT_TRUE(has(balance, "\"available\":\"998\"")) << balance;
  // An empty body is refused as a whole.
  EXPECT_EQ(post(http_port_, "/v1/commands", "\n\n", kAdmin).status, 400u);
}

// Who may do what, through the network: the identity comes from the token.
TEST_F(ServerTest, AuthorizationGrid) {
  start();
  populate();
  struct Row {
    const char* action;
    std::string line;  // without actor: the token decides
    std::map<std::string, bool> allowed;  // by identity name
  };
  // Users use tools for themselves in their own workspace; the platform and keys name the user.
  auto usage = [](int n, std::string_view who = "key") {
    const bool self = who == "owner" || who == "admin" || who == "member";
    const std::string_view workspace = who == "member" || !self ? "design" : "primary";
    const std::string user = self ? std::string() : R"("user":"bob@acme.io",)";
    return fmt::format(R"({{"cmd":"record_usage","id":"grid-{}","org":"acme","workspace":"{}",{}"tool":"chat","model":"m1","quantity":1000,"unit":"token","occurred_at":"@WHEN@"}})",
                       n, workspace, user);
  };
  int n = 0;
  const std::map<std::string, std::string> tokens = {
      {"platform", std::string(kAdmin)}, {"owner", owner_}, {"admin", admin_user_}, {"member", member_}, {"key", key_}};
  const std::vector<std::string> order = {"platform", "owner", "admin", "member", "key"};
  for (const std::string& who : order) {
    const std::string& token = tokens.at(who);
    // Use tools: everyone (the member in their own workspace, the key for any member).
    const std::string used = command(token, usage(++n, who));
    EXPECT_TRUE(has(used, "\"ok\":true")) << who << " " << used;
    // View: everyone.
    unsigned status = 0;
    const std::string balance = query(token, R"({"query":"balance","org":"acme","workspace":"design"})", &status);
    EXPECT_EQ(status, 200u) << who << " " << balance;
    // Grant credits: platform, owner, admin.
    const bool manage = who == "platform" || who == "owner" || who == "admin";
    const std::string grant = command(token, fmt::format(R"({{"cmd":"grant_credits","org":"acme","grant":"grid-g{}","kind":"promo","credits":"1"}})", n));
    EXPECT_EQ(has(grant, "\"ok\":true"), manage) << who << " " << grant;
    if (!manage) {
      EXPECT_TRUE(has(grant, "\"error\":\"forbidden\"")) << who;
    }
    // Invite members: platform, owner, admin.
    const std::string invite = command(token, fmt::format(R"({{"cmd":"invite_member","org":"acme","user":"new{}@acme.io","role":"member","workspace":"design"}})", n));
    EXPECT_EQ(has(invite, "\"ok\":true"), manage) << who << " " << invite;
    // Service keys and the rate card: the platform alone.
    const std::string key = command(token, fmt::format(R"({{"cmd":"create_service_key","org":"acme","key":"grid-k{}"}})", n));
    EXPECT_EQ(has(key, "\"ok\":true"), who == "platform") << who << " " << key;
    // Delete the organization: the owner alone (and the platform), tried below on a throwaway one.
    if (who == "admin" || who == "member" || who == "key") {
      const std::string removal = command(token, R"({"cmd":"delete_org","org":"acme"})");
      EXPECT_TRUE(has(removal, "\"error\":\"forbidden\"")) << who << " " << removal;
    }
  }
  // The owner may delete an organization it owns; an admin may not.
  ASSERT_TRUE(has(command(kAdmin, R"({"cmd":"create_org","org":"gone","owner":"alice@acme.io"})"), "\"ok\":true"));
  EXPECT_TRUE(has(command(admin_user_, R"({"cmd":"delete_org","org":"gone"})"), "\"error\":\"forbidden\""));
  EXPECT_TRUE(has(command(owner_, R"({"cmd":"delete_org","org":"gone"})"), "\"ok\":true"));
  // A member sees only their own workspace.
  unsigned status = 0;
  query(member_, R"({"query":"balance","org":"acme","workspace":"primary"})", &status);
  EXPECT_EQ(status, 403u);

  const uint64_t before = last_seq();
  // No token, a wrong token, a revoked key: 401.
  EXPECT_EQ(post(http_port_, "/v1/commands", usage(900), "").status, 401u);
  EXPECT_EQ(post(http_port_, "/v1/commands", usage(901), "tsk_not-a-key-at-all").status, 401u);
  EXPECT_EQ(post(http_port_, "/v1/commands", usage(902), revoked_key_).status, 401u);
  EXPECT_EQ(post(http_port_, "/v1/query", R"({"query":"org","org":"acme"})", revoked_key_).status, 401u);
  // Another organization's key, although its id (k1) exists in acme too: 403.
  HttpAnswer other = post(http_port_, "/v1/commands", usage(903), beta_key_);
  EXPECT_EQ(other.status, 403u);
  EXPECT_TRUE(has(other.body, "\"error\":\"forbidden\""));
  EXPECT_EQ(post(http_port_, "/v1/query", R"({"query":"balance","org":"acme"})", beta_key_).status, 403u);
  // One foreign command refuses the whole request.
  EXPECT_EQ(commands(key_, {usage(904), fmt::format(R"({{"cmd":"record_usage","id":"x","org":"beta","workspace":"primary","tool":"chat","model":"m1","quantity":1,"unit":"token","occurred_at":"@WHEN@"}})")}).status, 403u);
  // A user token cannot speak for someone else; the platform may.
  EXPECT_EQ(commands(member_, {R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"sneaky"})"}).status, 403u);
  EXPECT_EQ(last_seq(), before);  // nothing changed
  EXPECT_TRUE(has(command(kAdmin, R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"allowed"})"), "\"ok\":true"));
  // The beta key works for beta.
  EXPECT_TRUE(has(command(beta_key_, R"({"cmd":"record_usage","id":"b-1","org":"beta","workspace":"primary","user":"zed@beta.io","tool":"chat","model":"m1","quantity":1000,"unit":"token","occurred_at":"@WHEN@"})"), "\"ok\":true"));

  // Revoking a user token takes effect before the revocation is answered.
  EXPECT_TRUE(has(command(member_, R"({"cmd":"revoke_user_token","token":"t-bob"})"), "\"ok\":true"));
  EXPECT_EQ(post(http_port_, "/v1/query", R"({"query":"org","org":"acme"})", member_).status, 401u);
}

TEST_F(ServerTest, CredentialsSurviveARestart) {
  start();
  populate();
  server_.reset();
  start();
  unsigned status = 0;
  query(owner_, R"({"query":"members","org":"acme"})", &status);
  EXPECT_EQ(status, 200u);
  EXPECT_EQ(post(http_port_, "/v1/query", R"({"query":"org","org":"acme"})", revoked_key_).status, 401u);
  EXPECT_EQ(post(http_port_, "/v1/query", R"({"query":"org","org":"acme"})", key_).status, 200u);
}

// Secrets are shown once and stored only as SHA-256 hashes: after a run that created
// keys and tokens and used them, no file of the store (write-ahead log, tables,
// manifest) holds any of them in clear, nor does an export.
TEST_F(ServerTest, SecretsAreNeverStoredInClear) {
  start();
  populate();
  const std::vector<std::string> secrets = {key_, revoked_key_, beta_key_, owner_, admin_user_, member_};
  for (const std::string& secret : secrets) ASSERT_GE(secret.size(), 16u);
  server_.reset();  // flushes and closes the store
  size_t files = 0, bytes = 0;
  bool names_found = false;  // the token's id is stored in clear: the scan sees real content
  for (const auto& entry : std::filesystem::recursive_directory_iterator(options_.data_dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream file(entry.path(), std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    ++files;
    bytes += content.size();
    for (const std::string& secret : secrets) EXPECT_EQ(content.find(secret), std::string::npos) << entry.path() << " holds a secret";
    names_found = names_found || content.find("t-alice") != std::string::npos;
  }
  EXPECT_GT(files, 3u);
  EXPECT_GT(bytes, 1000u);
  EXPECT_TRUE(names_found);
  // The check can fail: the hash of a secret is in the store, as the export shows.
  std::unique_ptr<Engine> engine;
  EngineOptions engine_options;
  engine_options.data_dir = options_.data_dir;
  engine_options.create_if_missing = false;
  ASSERT_TRUE(Engine::open(engine_options, &engine).ok());
  std::stringstream exported;
  ExportStats stats;
  ASSERT_TRUE(export_commands(engine->store(), exported, &stats).ok());
  for (const std::string& secret : secrets) EXPECT_EQ(exported.str().find(secret), std::string::npos);
  EXPECT_NE(exported.str().find(to_hex(sha256(key_))), std::string::npos) << "the export should carry the key's hash";
}

TEST_F(ServerTest, CloudEventsStructuredAndBatch) {
  start();
  populate();
  // Structured mode: one event, one answer, the status of its result.
  HttpAnswer one = post(http_port_, "/v1/events", usage_event("ce-1", "acme/design/bob@acme.io", 3000), key_, "application/cloudevents+json");
  EXPECT_EQ(one.status, 200u) << one.body;
  EXPECT_TRUE(has(one.body, "\"id\":\"ce-1\"") && has(one.body, "\"credits\":\"3\""));
  // The same id again: the first result, nothing debited twice.
  HttpAnswer again = post(http_port_, "/v1/events", usage_event("ce-1", "acme/design/bob@acme.io", 3000), key_, "application/cloudevents+json");
  EXPECT_EQ(again.status, 200u);
  EXPECT_TRUE(has(again.body, "\"duplicate\":true"));
  // Batch mode with duplicates inside the batch, a conflict and broken events.
  const std::string batch = "[" + usage_event("ce-2", "acme/design", 1000, R"(,"user":"bob@acme.io")") + "," +
                            usage_event("ce-2", "acme/design", 1000, R"(,"user":"bob@acme.io")") + "," +
                            usage_event("ce-2", "acme/design", 2000, R"(,"user":"bob@acme.io")") + "," +
                            R"({"specversion":"1.0","id":"ce-3","source":"/t","type":"com.example.other","time":"@WHEN@","data":{}})" + "," +
                            R"({"specversion":"1.0","id":"ce-4","source":"/t","type":"com.tally.usage.recorded","subject":"acme/design","data":{"tool":"chat","model":"m1","quantity":1,"unit":"token"}})" + "," +
                            usage_event("ce-5", "acme/design", 1000, R"(,"credits":"0.5","colour":"red")") + "," +
                            R"({"specversion":"1.0","id":"ce-6","source":"/t","type":"com.tally.usage.recorded","time":"@WHEN@","data":{"org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"m1","quantity":1000,"unit":"token","credits":"0.25"}})" +
                            "]";
  HttpAnswer many = post(http_port_, "/v1/events", batch, key_, "application/cloudevents-batch+json");
  ASSERT_EQ(many.status, 200u) << many.body;
  ASSERT_TRUE(many.body.starts_with("[{"));
  // Split the array's objects (answers hold no nested objects).
  std::vector<std::string> results;
  for (size_t at = many.body.find('{'); at != std::string::npos; at = many.body.find('{', at + 1)) {
    results.push_back(many.body.substr(at, many.body.find('}', at) - at + 1));
  }
  ASSERT_EQ(results.size(), 7u) << many.body;
  EXPECT_TRUE(has(results[0], "\"ok\":true") && has(results[0], "\"id\":\"ce-2\""));
  EXPECT_TRUE(has(results[1], "\"duplicate\":true"));
  EXPECT_TRUE(has(results[2], "\"error\":\"id_conflict\""));
  EXPECT_TRUE(has(results[3], "\"error\":\"invalid_argument\"") && has(results[3], "\"id\":\"ce-3\""));
  EXPECT_TRUE(has(results[4], "\"error\":\"missing_field\""));
  EXPECT_TRUE(has(results[5], "\"error\":\"unknown_field\""));
  EXPECT_TRUE(has(results[6], "\"ok\":true") && has(results[6], "\"credits\":\"0.25\""));
  const std::string balance = query(member_, R"({"query":"balance","org":"acme","workspace":"design"})");
  EXPECT_TRUE(has(balance, "\"available\":\"995.75\"")) << balance;

  // Request-level errors.
  EXPECT_EQ(post(http_port_, "/v1/events", "{not json", key_, "application/cloudevents+json").status, 400u);
  EXPECT_EQ(post(http_port_, "/v1/events", usage_event("x", "acme/design", 1), key_, "application/cloudevents-batch+json").status, 400u);
  EXPECT_EQ(post(http_port_, "/v1/events", "[]", key_, "application/cloudevents-batch+json").status, 400u);
  EXPECT_EQ(post(http_port_, "/v1/events", usage_event("x", "acme/design", 1), key_, "application/json").status, 415u);
  EXPECT_EQ(post(http_port_, "/v1/events", usage_event("x", "beta/primary", 1), key_, "application/cloudevents+json").status, 403u);
  // A structured event refused by the engine answers with the status of its error.
  EXPECT_EQ(post(http_port_, "/v1/events", usage_event("x", "acme/nowhere/bob@acme.io", 1), key_, "application/cloudevents+json").status, 404u);
  const std::string metrics = http_call(http_port_, http::verb::get, "/metrics").body;
  EXPECT_TRUE(has(metrics, "tally_cloudevents_total ")) << metrics;
}

TEST_F(ServerTest, MalformedAndOversizedHttp) {
  start();
  populate();
  // Malformed queries.
  unsigned status = 0;
  EXPECT_TRUE(has(query(kAdmin, "{\"query\":", &status), "\"error\":\"invalid_json\""));
  EXPECT_EQ(status, 400u);
  query(kAdmin, R"({"query":"balance","org":"nope"})", &status);
  EXPECT_EQ(status, 404u);
  query(kAdmin, R"({"query":"balance","org":"acme","colour":"red"})", &status);
  EXPECT_EQ(status, 400u);
  // A body over the limit (1 MiB here): 413, and the connection is closed.
  EXPECT_EQ(post(http_port_, "/v1/commands", std::string(2u << 20, 'x'), kAdmin).status, 413u);
  // More commands than one request may hold.
  std::string many;
  for (size_t i = 0; i <= kBatchCommandsMax; ++i) many += "{}\n";
  HttpAnswer too_many = post(http_port_, "/v1/commands", many, kAdmin);
  EXPECT_EQ(too_many.status, 413u);
  EXPECT_TRUE(has(too_many.body, "\"error\":\"too_large\""));
  // Not HTTP at all.
  const std::string garbage = raw_exchange(http_port_, "HELLO THERE\r\n\r\n");
  EXPECT_TRUE(garbage.starts_with("HTTP/1.1 400")) << garbage;
  // Still serving.
  EXPECT_EQ(http_call(http_port_, http::verb::get, "/healthz").status, 200u);
}

// "Expect: 100-continue" gets its go-ahead before the body is sent.
TEST_F(ServerTest, ExpectContinue) {
  start();
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.expires_after(5s);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), http_port_));
  const std::string body = R"({"query":"org","org":"nope"})";
  const std::string head = fmt::format("POST /v1/query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n"
                                       "Expect: 100-continue\r\n\r\n", kAdmin, body.size());
  asio::write(stream, asio::buffer(head));
  beast::flat_buffer buffer;
  char interim[64] = {};
  const size_t n = stream.read_some(asio::buffer(interim, 25));
  EXPECT_EQ(std::string(interim, n), "HTTP/1.1 100 Continue\r\n\r\n");
  asio::write(stream, asio::buffer(body));
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  EXPECT_EQ(response.result_int(), 404u);
  EXPECT_TRUE(has(response.body(), "\"error\":\"unknown_org\""));
}

TEST_F(ServerTest, SlowClientsAreDisconnected) {
  options_.limits.request_timeout = 300ms;
  options_.limits.idle_timeout = 300ms;
  start();
  const auto started = std::chrono::steady_clock::now();
  // Half a request line, then silence: the server closes within its timeout.
  const std::string http_reply = raw_exchange(http_port_, "POST /v1/commands HTTP/1.1\r\nHost: x\r\n", 5000ms);
  EXPECT_TRUE(http_reply.empty()) << http_reply;
  // A binary connection that never says Hello.
  const std::string binary_reply = raw_exchange(binary_port_, "", 5000ms);
  EXPECT_TRUE(binary_reply.empty());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4000ms);
}

TEST_F(ServerTest, ConnectionLimit) {
  options_.limits.connections_max = 3;
  start();
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(std::make_unique<tcp::socket>(io));
    held.back()->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), http_port_));
  }
  // Wait (bounded) until the server has registered them.
  for (int i = 0; i < 100; ++i) {
    const std::string reply = raw_exchange(http_port_, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2000ms);
    if (reply.starts_with("HTTP/1.1 503")) {
      EXPECT_TRUE(has(reply, "\"error\":\"unavailable\""));
      held.clear();
      // Room again once they are gone (bounded wait).
      for (int j = 0; j < 100; ++j) {
        if (raw_exchange(http_port_, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200")) return;
        std::this_thread::sleep_for(20ms);
      }
      FAIL() << "connections were not released";
    }
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "the fourth connection was never refused";
}

TEST_F(ServerTest, BinaryProtocolEndToEnd) {
  start();
  populate();
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::connect("127.0.0.1", binary_port_, key_, &client).ok());
  EXPECT_EQ(client->identity(), "key:k1");
  // JSON commands and typed usage records in one connection.
  std::vector<CommandResult> results;
  ASSERT_TRUE(client->execute(std::vector<std::string>{
                                  when(R"({"cmd":"record_usage","id":"bin-1","org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"m1","quantity":1000,"unit":"token","occurred_at":"@WHEN@"})"),
                                  "garbage",
                                  R"({"cmd":"grant_credits","org":"acme","grant":"nope","kind":"promo","credits":"1"})"},
                              &results)
                  .ok());
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_EQ(results[1].status.code, ErrorCode::kInvalidJson);
  EXPECT_EQ(results[2].status.code, ErrorCode::kForbidden);
  std::vector<UsageRecord> records;
  for (int i = 0; i < 100; ++i) {
    UsageRecord record;
    record.id = fmt::format("typed-{}", i % 90);  // ten repeats: answered as duplicates
    record.org = "acme";
    record.workspace = "design";
    record.user = "bob@acme.io";
    record.tool = "chat";
    record.model = "m1";
    record.quantity = 1000;
    record.unit = "token";
    record.occurred_at_us = recent_us();
    records.push_back(record);
  }
  records[5].workspace = "bad workspace";
  ASSERT_TRUE(client->record_usage(records, &results).ok());
  ASSERT_EQ(results.size(), 100u);
  int ok = 0, duplicates = 0;
  for (const CommandResult& result : results) {
    ok += result.status.ok();
    duplicates += result.to_json().find("\"duplicate\":true") != std::string::npos;
  }
  EXPECT_EQ(results[5].status.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(ok, 99);
  EXPECT_EQ(duplicates, 9);  // typed-5 failed first (bad workspace), so its repeat is new
  // Another organization through a typed record: the request is refused whole.
  records.resize(1);
  records[0].org = "beta";
  records[0].id = "typed-beta";
  EXPECT_EQ(client->record_usage(records, &results).code, ErrorCode::kForbidden);
  // Queries.
  std::string answer;
  ASSERT_TRUE(client->query(R"({"query":"balance","org":"acme","workspace":"design"})", &answer).ok());
  EXPECT_TRUE(has(answer, "\"available\":\"909\"")) << answer;  // 1000 - 1 - 90
  ASSERT_TRUE(client->query(R"({"query":"balance","org":"beta"})", &answer).code == ErrorCode::kForbidden);

  // Pipelining: many requests in flight, answers in request order.
  std::vector<uint64_t> ids;
  for (int i = 0; i < 200; ++i) {
    uint64_t id = 0;
    if (i % 10 == 9) {
      ASSERT_TRUE(client->send_query(R"({"query":"org","org":"acme"})", &id).ok());
    } else {
      ASSERT_TRUE(client->send_commands(std::vector<std::string>{when(fmt::format(
                                            R"({{"cmd":"record_usage","id":"pipe-{}","org":"acme","workspace":"design","user":"bob@acme.io","tool":"chat","model":"m1","quantity":1,"unit":"token","occurred_at":"@WHEN@"}})", i))},
                                        &id)
                      .ok());
    }
    ids.push_back(id);
  }
  for (uint64_t id : ids) {
    Reply reply;
    ASSERT_TRUE(client->receive(&reply).ok());
    EXPECT_EQ(reply.request_id, id);
    EXPECT_TRUE(reply.status.ok());
  }
  // The CLI's client prints the same lines as the HTTP API.
  EXPECT_TRUE(has(results.empty() ? std::string() : results.front().to_json(), "\"ok\""));
}

TEST_F(ServerTest, BinaryProtocolRefusals) {
  start();
  populate();
  std::unique_ptr<Client> client;
  // Bad and revoked tokens.
  EXPECT_EQ(Client::connect("127.0.0.1", binary_port_, "wrong", &client).code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(Client::connect("127.0.0.1", binary_port_, revoked_key_, &client).code, ErrorCode::kUnauthenticated);

  auto error_of = [](const std::string& bytes) -> std::string {
    if (bytes.size() < kFrameLengthBytes) return "no frame";
    FrameBuffer buffer;
    buffer.resize(frame_length(reinterpret_cast<const uint8_t*>(bytes.data())));
    if (bytes.size() < kFrameLengthBytes + buffer.length()) return "short frame";
    std::memcpy(buffer.body(), bytes.data() + kFrameLengthBytes, buffer.length());
    const protocol::Frame* frame = verify_frame(buffer.frame());
    const protocol::Response* response = frame == nullptr ? nullptr : frame->message_as_Response();
    if (response == nullptr || response->error() == nullptr) return "not an error";
    return response->error()->str();
  };
  // A Request before the Hello.
  flatbuffers::FlatBufferBuilder builder;
  auto request = protocol::CreateRequest(builder, 7, 0, builder.CreateString(R"({"query":"org","org":"acme"})"));
  EXPECT_EQ(error_of(raw_exchange(binary_port_, frame_bytes(builder, protocol::Message::Request, request.Union()))), "unauthenticated");
  // An oversized frame: the length alone refuses it.
  const std::string hello = hello_frame(kAdmin, "test");
  std::string oversized = hello + std::string("\x01\x00\x00\x02", 4);  // 32 MiB + 1, over the 16 MiB limit
  std::string reply = raw_exchange(binary_port_, oversized);
  ASSERT_GT(reply.size(), 8u);
  const uint32_t first = frame_length(reinterpret_cast<const uint8_t*>(reply.data()));
  EXPECT_EQ(error_of(reply.substr(kFrameLengthBytes + first)), "too_large");
  // A truncated frame: the connection ends in the middle of it.
  const std::string truncated = hello + std::string("\x40\x00\x00\x00", 4) + std::string(10, 'x');
  reply = raw_exchange(binary_port_, truncated, 5000ms, /*half_close=*/true);
  ASSERT_GT(reply.size(), 8u);
  EXPECT_EQ(error_of(reply.substr(kFrameLengthBytes + frame_length(reinterpret_cast<const uint8_t*>(reply.data())))), "invalid_argument");
  // A frame of garbage.
  std::mt19937 random(42);
  std::string noise(64, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  reply = raw_exchange(binary_port_, hello + std::string("\x40\x00\x00\x00", 4) + noise);
  ASSERT_GT(reply.size(), 8u);
  EXPECT_EQ(error_of(reply.substr(kFrameLengthBytes + frame_length(reinterpret_cast<const uint8_t*>(reply.data())))), "invalid_argument");
  // Too many commands in one request.
  ASSERT_TRUE(Client::connect("127.0.0.1", binary_port_, kAdmin, &client).ok());
  std::vector<std::string> lines(kBatchCommandsMax + 1, "{}");
  std::vector<CommandResult> results;
  EXPECT_EQ(client->execute(lines, &results).code, ErrorCode::kTooLarge);
  // The connection is still usable after a refused request.
  std::string answer;
  EXPECT_TRUE(client->query(R"({"query":"org","org":"acme"})", &answer).ok());
}

TEST_F(ServerTest, TicksExpireHoldsWithoutTraffic) {
  start();
  populate();
  ASSERT_TRUE(has(command(member_, R"({"cmd":"reserve","org":"acme","workspace":"design","hold":"h1","credits":"100","timeout_s":1})"), "\"ok\":true"));
  EXPECT_TRUE(has(query(member_, R"({"query":"balance","org":"acme","workspace":"design"})"), "\"held\":\"100\""));
  // The hold times out after a second; the writer's tick returns it with no command sent.
  std::string balance;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    balance = query(member_, R"({"query":"balance","org":"acme","workspace":"design"})");
    if (has(balance, "\"held\":\"0\"")) break;
  }
  EXPECT_TRUE(has(balance, "\"held\":\"0\"") && has(balance, "\"available\":\"1000\"")) << balance;
}

// Shutdown answers every request already received, and everything answered is durable.
TEST_F(ServerTest, ShutdownDrainsInFlightWork) {
  start();
  populate();
  std::atomic<uint64_t> acknowledged{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      std::unique_ptr<Client> client;
      if (!Client::connect("127.0.0.1", binary_port_, key_, &client).ok()) return;
      std::vector<UsageRecord> records(50);
      int sent = 0;
      for (int round = 0; round < 2000 && !stop; ++round) {
        for (size_t i = 0; i < records.size(); ++i) {
          UsageRecord& record = records[i];
          record = UsageRecord{fmt::format("drain-{}-{}-{}", c, round, i), "acme", "primary", "alice@acme.io", "chat", "m1", 1, "token", recent_us(), 0};
        }
        uint64_t id;
        if (!client->send_usage(records, &id).ok()) break;
        ++sent;
        if (sent > 4) {  // keep a few in flight
          Reply reply;
          if (!client->receive(&reply).ok() || !reply.status.ok()) return;
          for (const CommandResult& result : reply.results) acknowledged += result.status.ok();
          --sent;
        }
      }
      for (; sent > 0; --sent) {
        Reply reply;
        if (!client->receive(&reply).ok() || !reply.status.ok()) return;
        for (const CommandResult& result : reply.results) acknowledged += result.status.ok();
      }
    });
  }
  // Let the load run a little, then stop the server under it.
  for (int i = 0; i < 200 && acknowledged < 2000; ++i) std::this_thread::sleep_for(10ms);
  server_->shutdown();
  stop = true;
  for (std::thread& thread : clients) thread.join();
  const uint64_t acked = acknowledged;
  ASSERT_GT(acked, 0u);
  // Every acknowledged usage event is in the store.
  server_.reset();
  EngineOptions engine_options;
  engine_options.data_dir = options_.data_dir;
  std::unique_ptr<Engine> engine;
  ASSERT_TRUE(Engine::open(engine_options, &engine).ok());
  const std::string usage = engine->query(R"({"query":"usage","actor":"platform","org":"acme","workspace":"primary"})");
  const size_t at = usage.find("\"events\":");
  ASSERT_NE(at, std::string::npos) << usage;
  EXPECT_GE(std::stoull(usage.substr(at + 9)), acked);
}

}  // namespace
}  // namespace tally::server
