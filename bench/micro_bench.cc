// Micro benchmarks (Google Benchmark): the pieces on the hot path of one usage event.
//   build/bench/bench/tally_micro_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <filesystem>
#include <vector>

#include <fmt/format.h>

#include "bench/usage_workload.h"
#include "engine/command.h"
#include "engine/crc32c.h"
#include "engine/engine.h"
#include "engine/event_format.h"
#include "engine/usage_envelope.h"
#include "engine/values.h"

namespace {

using namespace tally;

const char* kUsageJson =
    R"({"cmd":"record_usage","actor":"key:backend","id":"u-12345","org":"org1","workspace":"ws12","user":"m123@example.com",)"
    R"("tool":"chat","model":"gpt-4.1","quantity":1200,"unit":"token","occurred_at":"2026-11-23T10:00:00Z"})";

void BM_DecodeUsageCommand(benchmark::State& state) {
  Command command;
  for (auto _ : state) {
    Status s = decode_command(kUsageJson, &command);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_DecodeUsageCommand);

void BM_ParseCredits(benchmark::State& state) {
  int64_t micro = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(parse_credits("1234.567891", &micro));
  }
}
BENCHMARK(BM_ParseCredits);

// One UsageRecorded envelope's fields, as tally_load's workload makes them.
const std::vector<fb::LotAmount> kLots = {fb::LotAmount(0, 2400)};
const EnvelopeHeader kHeader{.seq = 1, .time_us = 1'795'000'000'000'000, .actor = "key:backend", .command_id = "u-12345", .command_seq = 1};
const UsageRecordedFields kUsage{.org = "org1", .id = "u-12345", .workspace = 12, .user = "m123@example.com", .tool = "chat",
                                 .model = "gpt-4.1", .quantity = 1200, .unit = "token", .amount = 2400,
                                 .occurred_at = 1'795'000'000'000'000, .funding_workspace = 12, .lots = kLots, .priced = true,
                                 .content_hash = 0x1234};

// The envelope as the engine writes it (engine/usage_envelope.h), into a buffer on
// the stack as LiveContext::emit_usage does.
std::string usage_envelope() {
  alignas(kEnvelopeAlignment) uint8_t buffer[1024];
  return std::string(encode_usage_envelope(kHeader, kUsage, buffer, sizeof buffer));
}

void BM_EncodeUsageEnvelope(benchmark::State& state) {
  alignas(kEnvelopeAlignment) uint8_t buffer[1024];
  for (auto _ : state) benchmark::DoNotOptimize(encode_usage_envelope(kHeader, kUsage, buffer, sizeof buffer));
}
BENCHMARK(BM_EncodeUsageEnvelope);

// The same envelope through FlatBufferBuilder, which builds every other event (the
// builder kept, its buffer reused, as the engine's is).
void BM_BuildUsageEnvelopeWithFlatBufferBuilder(benchmark::State& state) {
  flatbuffers::FlatBufferBuilder b(1024);
  for (auto _ : state) {
    b.Clear();
    auto payload = fb::CreateUsageRecordedDirect(b, "org1", "u-12345", 12, "m123@example.com", "chat", "gpt-4.1", 1200, "token", 2400,
                                                 1'795'000'000'000'000, 12, &kLots, true, 0x1234);
    auto actor = b.CreateString("key:backend");
    auto id = b.CreateString("u-12345");
    b.Finish(fb::CreateEnvelope(b, 1, 1'795'000'000'000'000, kSchemaVersion, actor, id, 1, fb::Event::UsageRecorded, payload.Union()));
    benchmark::DoNotOptimize(b.GetBufferPointer());
  }
}
BENCHMARK(BM_BuildUsageEnvelopeWithFlatBufferBuilder);

void BM_DecodeUsageEnvelope(benchmark::State& state) {
  const std::string bytes = usage_envelope();
  for (auto _ : state) benchmark::DoNotOptimize(decode_envelope(bytes));
}
BENCHMARK(BM_DecodeUsageEnvelope);

// The CRC32C RocksDB puts on every WAL record (engine/crc32c.h), over a 1 MiB write
// batch: the crc32 instruction's path, and the table's (the speed of a CPU without
// SSE4.2; RocksDB's own portable build is also table-driven).
void BM_Crc32c(benchmark::State& state) {
  const std::string bytes(1 << 20, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(crc32c_extend(0, bytes.data(), bytes.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_Crc32c)->Unit(benchmark::kMicrosecond);

void BM_Crc32cTable(benchmark::State& state) {
  const std::string bytes(1 << 20, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(crc32c_extend_table(0, bytes.data(), bytes.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes.size()));
}
BENCHMARK(BM_Crc32cTable)->Unit(benchmark::kMicrosecond);

// A ledger with the SPEC §5 shape, shared by the engine-level benchmarks below.
struct Ledger {
  std::string dir;
  std::unique_ptr<Engine> engine;
  bench::UsageWorkload workload{bench::UsageWorkloadOptions{}};
  uint64_t next = 0;
  SystemClock clock;

  Ledger() {
    dir = (std::filesystem::temp_directory_path() / fmt::format("tally-micro-{}", getpid())).string();
    std::filesystem::remove_all(dir);
    EngineOptions options;
    options.data_dir = dir;
    if (!Engine::open(options, &engine).ok()) std::abort();
    const std::vector<Command> setup = workload.setup(clock.now_us());
    for (size_t i = 0; i < setup.size(); i += kBatchCommandsMax) {
      engine->execute(std::span(setup).subspan(i, std::min(kBatchCommandsMax, setup.size() - i)));
    }
  }
  ~Ledger() {
    engine.reset();
    std::filesystem::remove_all(dir);
  }
};

Ledger& ledger() {
  static Ledger instance;
  return instance;
}

// One group commit of N usage events: validation, apply, encoding, one synced write,
// and, as the engine does by default, a projection's changed rows about every 262,144
// events (EngineOptions::row_lag_events), so the figure is an average over those.
void BM_ExecuteUsageBatch(benchmark::State& state) {
  Ledger& l = ledger();
  const auto n = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<Command> batch;
    for (size_t i = 0; i < n; ++i) batch.push_back(l.workload.usage(l.next++, l.clock.now_us()));
    state.ResumeTiming();
    benchmark::DoNotOptimize(l.engine->execute(batch));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_ExecuteUsageBatch)->Arg(1)->Arg(1024)->Arg(8192)->Unit(benchmark::kMicrosecond);

// The balance of one workspace, read from the in-memory projection.
void BM_BalanceLookup(benchmark::State& state) {
  Ledger& l = ledger();
  const ProjectionSet& s = l.engine->state();
  uint32_t w = 0;
  for (auto _ : state) {
    const OrgBalances* balances = s.balances.find("org3");
    benchmark::DoNotOptimize(balances->workspaces[1 + (w++ % 100)].available);
  }
}
BENCHMARK(BM_BalanceLookup);

// The same through the JSON query interface (decode, permission check, encode).
void BM_BalanceQueryJson(benchmark::State& state) {
  Ledger& l = ledger();
  const std::string query = R"({"query":"balance","actor":"key:backend","org":"org3","workspace":"ws310"})";
  for (auto _ : state) benchmark::DoNotOptimize(l.engine->query(query));
}
BENCHMARK(BM_BalanceQueryJson);

// The usage report of one organization grouped by workspace and tool.
void BM_UsageAggregationQuery(benchmark::State& state) {
  Ledger& l = ledger();
  if (l.next < 100000) {
    for (int i = 0; i < 100000 / 8192 + 1; ++i) {
      std::vector<Command> batch;
      for (size_t j = 0; j < 8192; ++j) batch.push_back(l.workload.usage(l.next++, l.clock.now_us()));
      l.engine->execute(batch);
    }
  }
  const std::string query = R"({"query":"usage","actor":"platform","org":"org3","group_by":["workspace","tool"]})";
  for (auto _ : state) benchmark::DoNotOptimize(l.engine->query(query));
}
BENCHMARK(BM_UsageAggregationQuery)->Unit(benchmark::kMicrosecond);

// An idempotency lookup of a usage id already recorded (the retry path).
void BM_IdempotencyRetry(benchmark::State& state) {
  Ledger& l = ledger();
  std::vector<Command> first = {l.workload.usage(l.next++, l.clock.now_us())};
  l.engine->execute(first);
  for (auto _ : state) benchmark::DoNotOptimize(l.engine->execute(first));
}
BENCHMARK(BM_IdempotencyRetry)->Unit(benchmark::kMicrosecond);

// The price of a usage event's (tool, model), as record_usage looks it up for every
// priced event, on a rate card of N products (the workload has one).
void BM_RateLookup(benchmark::State& state) {
  const auto products = static_cast<int>(state.range(0));
  const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("tally-micro-rates-{}", getpid())).string();
  std::filesystem::remove_all(dir);
  {
    std::unique_ptr<Engine> engine;
    EngineOptions options;
    options.data_dir = dir;
    if (!Engine::open(options, &engine).ok()) std::abort();
    std::vector<Command> prices;
    for (int i = 0; i < products; ++i) {
      Command command;
      const std::string line = fmt::format(
          R"({{"cmd":"set_price","actor":"platform","tool":"tool{}","model":"model-{}","unit":"token","credits_per_unit":"0.001"}})", i % 8, i);
      if (!decode_command(line, &command).ok()) std::abort();
      prices.push_back(std::move(command));
    }
    for (const CommandResult& result : engine->execute(prices)) {
      if (!result.status.ok()) std::abort();
    }
    const RatesProjection& rates = engine->state().rates;
    // Every product in turn, in an order other than the one they were priced in.
    std::vector<std::pair<std::string, std::string>> asked;
    for (int i = 0; i < products; ++i) {
      const int product = (i * 7) % products;
      asked.emplace_back(fmt::format("tool{}", product % 8), fmt::format("model-{}", product));
    }
    const int64_t now = SystemClock().now_us();
    size_t i = 0;
    for (auto _ : state) {
      const auto& [tool, model] = asked[i++ % asked.size()];
      const Rate* rate = rates.find(tool, model, now);
      if (rate == nullptr) std::abort();  // every product asked for has a price
      benchmark::DoNotOptimize(rate);
    }
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RateLookup)->Arg(1)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
