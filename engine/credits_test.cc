// Unit tests of the credit commands (SPEC §2 "Credits", "Usage, holds and limits"):
// one test per rule and per error code. Every expectation is worked out by hand from
// the scenario in the test, in credits (1 credit = 1,000,000 micro-credits).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <xxhash.h>

#include "engine/clock.h"
#include "engine/command.h"
#include "engine/engine.h"
#include "engine/event_format.h"
#include "engine/values.h"
#include "projections/balances.h"
#include "projections/statements.h"

namespace tally {

// GoogleTest prints error codes by name.
void PrintTo(ErrorCode code, std::ostream* out) { *out << error_name(code); }

namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

constexpr int64_t credits(int64_t whole) { return whole * 1'000'000; }
constexpr int64_t millis(int64_t thousandths) { return thousandths * 1'000; }  // 0.001 credits

int64_t time_of(const char* text) {
  int64_t time_us = 0;
  EXPECT_TRUE(parse_time(text, &time_us)) << text;
  return time_us;
}

// (grant, amount) pairs, for readable expectations about lots.
using Portions = std::vector<std::pair<std::string, int64_t>>;

class CreditsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const std::filesystem::path root = std::filesystem::temp_directory_path();
    dir_ = (root / fmt::format("tally-credits-test-{}-{}", getpid(), counter++)).string();
    std::filesystem::remove_all(dir_);
    open();
  }

  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  void open() {
    EngineOptions options;
    options.data_dir = dir_;
    options.clock = &clock_;
    ASSERT_TRUE(Engine::open(options, &engine_).ok());
  }

  void restart() {
    engine_.reset();
    open();
  }

  // Decodes one JSON command line and executes it alone.
  CommandResult run(const std::string& json) {
    Command command;
    const Status decoded = decode_command(json, &command);
    EXPECT_TRUE(decoded.ok()) << json << ": " << decoded.message;
    if (!decoded.ok()) {
      CommandResult result;
      result.status = decoded;
      return result;
    }
    return engine_->execute(std::span<const Command>(&command, 1)).front();
  }

  // Runs a command that must be accepted; returns its sequence number.
  uint64_t ok(const std::string& json) {
    const CommandResult result = run(json);
    EXPECT_TRUE(result.status.ok()) << json << " -> " << result.to_json();
    return result.seq;
  }

  // Runs a command that must be refused, and checks that it changed nothing.
  ErrorCode refused(const std::string& json) {
    const uint64_t seq_before = engine_->store().last_seq();
    const auto rows_before = rows();
    const CommandResult result = run(json);
    EXPECT_FALSE(result.status.ok()) << json;
    EXPECT_EQ(engine_->store().last_seq(), seq_before) << json;
    EXPECT_TRUE(rows() == rows_before) << json << ": a refused command changed the balances";
    return result.status.code;
  }

  // The balances' row-level state, to show that a refusal changed nothing.
  std::string rows() const {
    const OrgBalances* b = balances_or_null();
    if (b == nullptr) return {};
    std::string out = fmt::format("{} {} {} {} {} {} |", b->granted, b->expired, b->banked, b->held, b->consumed, b->lots.size());
    for (const WorkspaceBalance& w : b->workspaces) out += fmt::format(" {}/{}/{}", w.available, w.held, w.consumed);
    return out;
  }

  // The organization "acme" (alice owns it) with workspaces w1 (bob, a member) and w2
  // (carol, an admin), and the service key "backend".
  void create_org(const char* mode) {
    ok(fmt::format(R"({{"cmd":"create_org","actor":"alice@acme.io","org":"acme","mode":"{}"}})", mode));
    ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"w1"})");
    ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"w2"})");
    ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"member","workspace":"w1"})");
    ok(R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})");
    ok(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"carol@acme.io","role":"admin","workspace":"w2"})");
    ok(R"({"cmd":"accept_invite","actor":"carol@acme.io","org":"acme"})");
    ok(R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend",)"
       R"("secret_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"})");
  }

  uint64_t grant(const std::string& id, const char* kind, const std::string& amount, int64_t expires_at = 0) {
    std::string json = fmt::format(R"({{"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"{}","kind":"{}","credits":"{}")",
                                   id, kind, amount);
    if (expires_at != 0) json += fmt::format(R"(,"expires_at":"{}")", format_time(expires_at));
    return ok(json + "}");
  }

  // Usage with given credits, by `user` in their own workspace, occurring now.
  std::string usage(const std::string& id, const char* user, const char* workspace, const std::string& amount) {
    return fmt::format(R"({{"cmd":"record_usage","actor":"{}","id":"{}","org":"acme","workspace":"{}","tool":"chat","model":"m1",)"
                       R"("quantity":1,"unit":"tokens","credits":"{}","occurred_at":"{}"}})",
                       user, id, workspace, amount, format_time(clock_.now_us()));
  }

  std::string reserve(const std::string& hold, const char* user, const char* workspace, const std::string& amount, int timeout_s = 600) {
    return fmt::format(R"({{"cmd":"reserve","actor":"{}","org":"acme","workspace":"{}","hold":"{}","credits":"{}","timeout_s":{}}})", user,
                       workspace, hold, amount, timeout_s);
  }

  std::string settle(const std::string& hold, const char* user, const std::string& amount) {
    return fmt::format(R"({{"cmd":"settle","actor":"{}","org":"acme","hold":"{}","credits":"{}"}})", user, hold, amount);
  }

  std::string release(const std::string& hold, const char* user) {
    return fmt::format(R"({{"cmd":"release_hold","actor":"{}","org":"acme","hold":"{}"}})", user, hold);
  }

  std::string transfer(const char* from, const char* to, const std::string& amount) {
    return fmt::format(R"({{"cmd":"transfer_credits","actor":"alice@acme.io","org":"acme","from":"{}","to":"{}","credits":"{}"}})", from, to,
                       amount);
  }

  std::string limit(const std::string& target, const char* period, const std::string& amount) {
    const bool user = target.find('@') != std::string::npos;
    std::string json = fmt::format(R"({{"cmd":"set_limit","actor":"alice@acme.io","org":"acme","{}":"{}","period":"{}")",
                                   user ? "user" : "workspace", target, period);
    if (!amount.empty()) json += fmt::format(R"(,"credits":"{}")", amount);
    return json + "}";
  }

  // The engine's own tick: expires lots and times out holds due now.
  void tick() { run(R"({"cmd":"tick","actor":"platform"})"); }

  // A budget organization whose w1 sees a transfer in, a usage, a hold and its settle:
  // an entry of each kind on the statements of primary and w1. The seqs of each step.
  struct StatementHistory {
    uint64_t granted, moved, used, held, settled;
  };
  StatementHistory statement_history() {
    create_org("budget");
    StatementHistory seqs;
    seqs.granted = grant("g1", "plan", "10");
    seqs.moved = ok(transfer("primary", "w1", "4"));
    seqs.used = ok(usage("u1", "bob@acme.io", "w1", "1"));
    seqs.held = ok(reserve("h1", "bob@acme.io", "w1", "2"));
    seqs.settled = ok(settle("h1", "bob@acme.io", "0.5"));
    return seqs;
  }

  const OrgBalances* balances_or_null() const { return engine_->state().balances.find("acme"); }
  const OrgBalances& balances() const { return *engine_->state().balances.find("acme"); }

  const WorkspaceBalance& workspace(const char* name) const {
    const Org* org = engine_->state().orgs.find("acme");
    return balances().workspaces.at(*org->find_workspace(name));
  }

  const Lot& lot(const std::string& grant) const { return balances().lots.at(balances().lot_by_grant.at(grant)); }

  Portions holdings(const char* name) const {
    Portions out;
    for (const LotPortion& p : workspace(name).holdings) out.emplace_back(balances().lots[p.lot].grant, p.amount);
    return out;
  }

  std::string query(const std::string& json) { return engine_->query(json); }

  ManualClock clock_{time_of("2026-03-10T10:00:00Z")};
  std::string dir_;
  std::unique_ptr<Engine> engine_;
};

#define EXPECT_CONTAINS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// ---- consumption order ------------------------------------------------------------------

TEST_F(CreditsTest, ConsumptionOrderSoonestExpiryFirstAndNoExpiryLast) {
  create_org("shared");
  const int64_t now = clock_.now_us();
  grant("never", "plan", "5");
  grant("late", "plan", "5", now + 10 * kDay);
  grant("soon", "plan", "5", now + 2 * kDay);
  EXPECT_EQ(holdings("primary"), (Portions{{"soon", credits(5)}, {"late", credits(5)}, {"never", credits(5)}}));

  ok(usage("u1", "alice@acme.io", "primary", "7"));
  EXPECT_EQ(lot("soon").consumed, credits(5));
  EXPECT_EQ(lot("late").consumed, credits(2));
  EXPECT_EQ(lot("never").consumed, 0);
  EXPECT_EQ(holdings("primary"), (Portions{{"late", credits(3)}, {"never", credits(5)}}));
}

TEST_F(CreditsTest, ConsumptionOrderPromoBeforePaidAtEqualExpiry) {
  create_org("shared");
  const int64_t expiry = clock_.now_us() + 5 * kDay;
  grant("paid", "top_up", "4", expiry);
  grant("gift", "promo", "4", expiry);   // granted later, but promo
  grant("gift-forever", "promo", "4");  // promo without expiry: expiry decides first
  EXPECT_EQ(holdings("primary"), (Portions{{"gift", credits(4)}, {"paid", credits(4)}, {"gift-forever", credits(4)}}));

  ok(usage("u1", "alice@acme.io", "primary", "5"));
  EXPECT_EQ(lot("gift").consumed, credits(4));
  EXPECT_EQ(lot("paid").consumed, credits(1));
  EXPECT_EQ(lot("gift-forever").consumed, 0);
}

TEST_F(CreditsTest, ConsumptionOrderOldestGrantBeforeGrantId) {
  create_org("shared");
  grant("z-old", "plan", "3");
  clock_.advance(kSecond);
  grant("a-new", "top_up", "3");  // sorts first by id, but is younger
  clock_.advance(kSecond);
  grant("m-newest", "one_time", "3");  // paid kinds are equal to each other
  EXPECT_EQ(holdings("primary"), (Portions{{"z-old", credits(3)}, {"a-new", credits(3)}, {"m-newest", credits(3)}}));

  ok(usage("u1", "alice@acme.io", "primary", "4"));
  EXPECT_EQ(lot("z-old").consumed, credits(3));
  EXPECT_EQ(lot("a-new").consumed, credits(1));
}

// Engine times rise strictly, so two grants never share a grant time through commands;
// the grant-id tie-break is observable only on the projection's order itself.
TEST(ConsumptionOrder, GrantIdBreaksTiesOfEqualGrantTimes) {
  OrgBalances balances;
  for (const char* grant : {"b", "a", "c"}) {
    Lot lot;
    lot.grant = grant;
    lot.kind = LotKind::TopUp;
    lot.granted_us = 1000;
    balances.lots.push_back(lot);
  }
  EXPECT_TRUE(balances.spent_before(1, 0));   // "a" before "b"
  EXPECT_TRUE(balances.spent_before(0, 2));   // "b" before "c"
  EXPECT_FALSE(balances.spent_before(0, 1));
  EXPECT_FALSE(balances.spent_before(0, 0));  // a strict order
  // The same grant (a purchase and the bank lot it released): the lot id decides.
  balances.lots.push_back(balances.lots[1]);
  EXPECT_TRUE(balances.spent_before(1, 3));
  EXPECT_FALSE(balances.spent_before(3, 1));
}

TEST_F(CreditsTest, ConsumptionOrderPutsABankLotAfterThePurchaseThatReleasedIt) {
  create_org("shared");
  grant("pack", "one_time", "2", clock_.now_us() + kHour);
  clock_.advance(2 * kHour);
  const CommandResult bought = run(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"buy","kind":"top_up","credits":"5"})");
  ASSERT_TRUE(bought.status.ok());
  // Both never expire and are paid; the bank lot is granted one microsecond later.
  EXPECT_EQ(holdings("primary"), (Portions{{"buy", credits(5)}, {"buy", credits(2)}}));
  ok(usage("u1", "alice@acme.io", "primary", "6"));
  EXPECT_EQ(holdings("primary"), (Portions{{"buy", credits(1)}}));
  EXPECT_TRUE(balances().lots.back().from_bank);
  EXPECT_EQ(balances().lots.back().outstanding(), credits(1));
}

TEST_F(CreditsTest, TransfersMoveLotsInConsumptionOrder) {
  create_org("budget");
  grant("never", "plan", "3");
  grant("soon", "plan", "3", clock_.now_us() + kDay);
  ok(transfer("primary", "w1", "4"));
  EXPECT_EQ(holdings("w1"), (Portions{{"soon", credits(3)}, {"never", credits(1)}}));
  EXPECT_EQ(holdings("primary"), (Portions{{"never", credits(2)}}));
}

TEST_F(CreditsTest, HoldsDrawLotsInConsumptionOrderAndSettleSpendsTheFirst) {
  create_org("shared");
  grant("never", "plan", "3");
  grant("soon", "promo", "2", clock_.now_us() + kDay);
  ok(reserve("h1", "bob@acme.io", "w1", "4"));
  const Hold& hold = balances().holds.at("h1");
  ASSERT_EQ(hold.lots.size(), 2u);
  EXPECT_EQ(balances().lots[hold.lots[0].lot].grant, "soon");
  EXPECT_EQ(hold.lots[0].amount, credits(2));
  EXPECT_EQ(hold.lots[1].amount, credits(2));
  ok(settle("h1", "bob@acme.io", "3"));
  EXPECT_EQ(lot("soon").consumed, credits(2));
  EXPECT_EQ(lot("never").consumed, credits(1));
  EXPECT_EQ(holdings("primary"), (Portions{{"never", credits(2)}}));
}

// ---- the credit bank --------------------------------------------------------------------

TEST_F(CreditsTest, ExpiredOneTimeCreditsGoToTheBank) {
  create_org("shared");
  grant("pack", "one_time", "5", clock_.now_us() + kHour);
  ok(usage("u1", "alice@acme.io", "primary", "2"));
  clock_.advance(kHour);
  tick();
  EXPECT_EQ(balances().banked, credits(3));
  EXPECT_EQ(balances().expired, 0);
  EXPECT_EQ(lot("pack").banked_amount, credits(3));
  EXPECT_EQ(lot("pack").consumed, credits(2));
  EXPECT_EQ(balances().available(), 0);
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme"})"),
                  R"("available":"0","held":"0","consumed":"2","granted":"5","expired":"0","banked":"3")");
}

TEST_F(CreditsTest, ExpiredPlanTopUpAndPromoCreditsAreNotBanked) {
  create_org("shared");
  const int64_t expiry = clock_.now_us() + kHour;
  grant("p", "plan", "1", expiry);
  grant("t", "top_up", "2", expiry);
  grant("g", "promo", "4", expiry);
  clock_.advance(kHour);
  tick();
  EXPECT_EQ(balances().expired, credits(7));
  EXPECT_EQ(balances().banked, 0);
  EXPECT_EQ(balances().available(), 0);
}

// Starts with 3 credits in the bank: a one_time lot of 3 expired.
class BankTest : public CreditsTest {
 protected:
  void SetUp() override {
    CreditsTest::SetUp();
    create_org("shared");
    grant("pack", "one_time", "3", clock_.now_us() + kHour);
    clock_.advance(kHour);
    tick();
    ASSERT_EQ(balances().banked, credits(3));
  }

  void expect_released_by(const std::string& grant_id, const CommandResult& result) {
    EXPECT_EQ(result.events, 2u);
    EXPECT_EQ(balances().banked, 0);
    const Lot& bank_lot = balances().lots.back();
    EXPECT_TRUE(bank_lot.from_bank);
    EXPECT_EQ(bank_lot.grant, grant_id);
    EXPECT_EQ(bank_lot.kind, LotKind::OneTime);
    EXPECT_EQ(bank_lot.amount, credits(3));
    EXPECT_EQ(bank_lot.expires_at_us, 0);
    EXPECT_EQ(balances().granted, credits(3) + credits(10));  // the bank lot is not a new grant
    EXPECT_EQ(balances().available(), credits(10) + credits(3));
  }
};

TEST_F(BankTest, APlanGrantReleasesTheBank) {
  const CommandResult result = run(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"p1","kind":"plan","credits":"10"})");
  expect_released_by("p1", result);
}

TEST_F(BankTest, ATopUpReleasesTheBank) {
  const CommandResult result = run(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"t1","kind":"top_up","credits":"10"})");
  expect_released_by("t1", result);
}

TEST_F(BankTest, APlanRenewalReleasesTheBank) {
  ok(R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"10"})");
  const CommandResult result = run(R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"r1"})");
  expect_released_by("r1", result);
}

TEST_F(BankTest, OneTimeAndPromoGrantsLeaveTheBankAlone) {
  const CommandResult one_time = run(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"o1","kind":"one_time","credits":"10"})");
  EXPECT_EQ(one_time.events, 1u);
  const CommandResult promo = run(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"promo","credits":"10"})");
  EXPECT_EQ(promo.events, 1u);
  EXPECT_EQ(balances().banked, credits(3));
  EXPECT_EQ(balances().available(), credits(20));
}

// ---- plans ------------------------------------------------------------------------------

TEST_F(CreditsTest, RenewPlanWithoutAPlanIsInvalidArgument) {
  create_org("shared");
  EXPECT_EQ(refused(R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"r1"})"), ErrorCode::kInvalidArgument);
}

TEST_F(CreditsTest, SetPlanNeedsAPositiveAllocation) {
  create_org("shared");
  EXPECT_EQ(refused(R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"0"})"), ErrorCode::kInvalidAmount);
}

TEST_F(CreditsTest, RenewPlanGrantsTheMonthlyAllocationThatRollsOverOrExpires) {
  clock_.set(time_of("2026-03-31T10:00:00Z"));
  create_org("shared");
  ok(R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"100"})");  // rollover by default
  ok(R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"march"})");
  EXPECT_EQ(lot("march").kind, LotKind::Plan);
  EXPECT_EQ(lot("march").amount, credits(100));
  EXPECT_EQ(lot("march").expires_at_us, 0);

  ok(R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"50","rollover":false})");
  clock_.set(time_of("2026-03-31T12:00:00Z"));
  ok(R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"april"})");
  EXPECT_EQ(lot("april").amount, credits(50));
  EXPECT_EQ(lot("april").expires_at_us, time_of("2026-04-30T12:00:00Z"));  // a month later, clamped to April's end
}

// ---- grants -----------------------------------------------------------------------------

TEST_F(CreditsTest, GrantExistsForAnyReuseOfAGrantId) {
  create_org("shared");
  grant("g1", "plan", "5");
  EXPECT_EQ(refused(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"promo","credits":"1"})"),
            ErrorCode::kGrantExists);
  ok(R"({"cmd":"set_plan","actor":"alice@acme.io","org":"acme","plan":"pro","monthly_credits":"10"})");
  EXPECT_EQ(refused(R"({"cmd":"renew_plan","actor":"alice@acme.io","org":"acme","grant":"g1"})"), ErrorCode::kGrantExists);
  EXPECT_EQ(balances().granted, credits(5));
}

TEST_F(CreditsTest, GrantNeedsPositiveCreditsAndAFutureExpiry) {
  create_org("shared");
  EXPECT_EQ(refused(R"({"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"0"})"),
            ErrorCode::kInvalidAmount);
  EXPECT_EQ(refused(fmt::format(R"({{"cmd":"grant_credits","actor":"alice@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"1",)"
                                R"("expires_at":"{}"}})",
                                format_time(clock_.now_us() - kSecond))),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused(R"({"cmd":"grant_credits","actor":"bob@acme.io","org":"acme","grant":"g1","kind":"plan","credits":"1"})"),
            ErrorCode::kForbidden);
}

TEST_F(CreditsTest, GrantsLandInThePrimaryWorkspace) {
  create_org("budget");
  grant("g1", "plan", "5");
  EXPECT_EQ(workspace("primary").available, credits(5));
  EXPECT_EQ(workspace("w1").available, 0);
}

// ---- debits that do not fit ------------------------------------------------------------

TEST_F(CreditsTest, InsufficientCreditsRefusesUsageHoldsAndTransfers) {
  create_org("budget");
  grant("g1", "plan", "5");
  EXPECT_EQ(refused(usage("u1", "alice@acme.io", "primary", "5.000001")), ErrorCode::kInsufficientCredits);
  EXPECT_EQ(refused(reserve("h1", "alice@acme.io", "primary", "6")), ErrorCode::kInsufficientCredits);
  EXPECT_EQ(refused(transfer("primary", "w1", "5.000001")), ErrorCode::kInsufficientCredits);
  // In budget mode a workspace spends only its own credits.
  EXPECT_EQ(refused(usage("u2", "bob@acme.io", "w1", "0.000001")), ErrorCode::kInsufficientCredits);
  // Exactly what is there is fine; held credits are not available.
  ok(reserve("h2", "alice@acme.io", "primary", "2"));
  EXPECT_EQ(refused(usage("u3", "alice@acme.io", "primary", "3.000001")), ErrorCode::kInsufficientCredits);
  ok(usage("u4", "alice@acme.io", "primary", "3"));
  EXPECT_EQ(balances().available(), 0);
}

TEST_F(CreditsTest, InvalidAmountForNothingReservedOrTransferred) {
  create_org("budget");
  grant("g1", "plan", "5");
  EXPECT_EQ(refused(reserve("h1", "alice@acme.io", "primary", "0")), ErrorCode::kInvalidAmount);
  EXPECT_EQ(refused(transfer("primary", "w1", "0")), ErrorCode::kInvalidAmount);
}

// ---- limits -----------------------------------------------------------------------------

class LimitTest : public CreditsTest {
 protected:
  void SetUp() override {
    CreditsTest::SetUp();
    clock_.set(time_of("2026-03-30T20:00:00Z"));  // two days before a new month
    create_org("budget");
    grant("g1", "plan", "100");
    ok(transfer("primary", "w1", "50"));
    ok(transfer("primary", "w2", "20"));
  }
  void next_day() { clock_.advance(kDay); }
};

TEST_F(LimitTest, WorkspaceDayLimitAndItsResetOnANewDay) {
  ok(limit("w1", "day", "3"));
  ok(usage("u1", "bob@acme.io", "w1", "2"));
  ok(usage("u2", "bob@acme.io", "w1", "1"));  // exactly the limit
  EXPECT_EQ(refused(usage("u3", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
  EXPECT_CONTAINS(run(usage("u3", "bob@acme.io", "w1", "0.000001")).status.message,
                  R"(workspace "w1" has a daily limit of 3 and has used 3)");
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"w1"})"),
                  R"("limits":{"day":{"limit":"3","used":"3"}})");
  ok(usage("u4", "carol@acme.io", "w2", "5"));  // another workspace is not limited
  clock_.set(time_of("2026-03-31T00:00:00Z"));  // a new UTC day
  ok(usage("u5", "bob@acme.io", "w1", "3"));
  EXPECT_EQ(refused(usage("u6", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
}

TEST_F(LimitTest, MemberDayLimit) {
  ok(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"carol@acme.io","workspace":"w1"})");
  ok(limit("bob@acme.io", "day", "2"));
  ok(usage("u1", "bob@acme.io", "w1", "2"));
  EXPECT_EQ(refused(usage("u2", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
  EXPECT_CONTAINS(run(usage("u2", "bob@acme.io", "w1", "0.000001")).status.message,
                  "bob@acme.io has a daily limit of 2 and has used 2");
  // The member limit follows bob, not the workspace: carol still spends there.
  ok(usage("u3", "carol@acme.io", "w1", "4"));
  // Through a service key it is still bob's spend.
  EXPECT_EQ(refused(R"({"cmd":"reserve","actor":"key:backend","org":"acme","workspace":"w1","user":"bob@acme.io","hold":"h1","credits":"1","timeout_s":60})"),
            ErrorCode::kLimitExceeded);
  next_day();
  ok(usage("u4", "bob@acme.io", "w1", "2"));
}

TEST_F(LimitTest, WorkspaceMonthLimitKeepsCountingAcrossDays) {
  ok(limit("w1", "month", "5"));
  ok(usage("u1", "bob@acme.io", "w1", "3"));
  next_day();  // 2026-03-31: the same month
  ok(usage("u2", "bob@acme.io", "w1", "2"));
  EXPECT_EQ(refused(usage("u3", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
  next_day();  // 2026-04-01: a new month
  ok(usage("u4", "bob@acme.io", "w1", "5"));
  EXPECT_EQ(refused(usage("u5", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
}

TEST_F(LimitTest, MemberMonthLimit) {
  ok(limit("carol@acme.io", "month", "4"));
  ok(usage("u1", "carol@acme.io", "w2", "1"));
  next_day();
  ok(usage("u2", "carol@acme.io", "w2", "3"));
  EXPECT_EQ(refused(usage("u3", "carol@acme.io", "w2", "0.000001")), ErrorCode::kLimitExceeded);
  next_day();
  ok(usage("u4", "carol@acme.io", "w2", "4"));
}

TEST_F(LimitTest, LimitsCountOpenHoldsAndWhatSettledHoldsConsumed) {
  ok(limit("w1", "day", "5"));
  ok(reserve("h1", "bob@acme.io", "w1", "4"));
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "2")), ErrorCode::kLimitExceeded);
  ok(release("h1", "bob@acme.io"));
  ok(reserve("h2", "bob@acme.io", "w1", "3"));
  ok(settle("h2", "bob@acme.io", "1"));  // 1 counts, the 2 returned do not
  ok(usage("u2", "bob@acme.io", "w1", "4"));
  EXPECT_EQ(refused(usage("u3", "bob@acme.io", "w1", "0.000001")), ErrorCode::kLimitExceeded);
}

TEST_F(LimitTest, ALimitWithoutCreditsIsRemoved) {
  ok(limit("w1", "day", "1"));
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "2")), ErrorCode::kLimitExceeded);
  ok(limit("w1", "day", ""));
  ok(usage("u1", "bob@acme.io", "w1", "2"));
}

TEST_F(CreditsTest, WorkspaceLimitsApplyInSharedModeToo) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(limit("w1", "day", "1"));
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "2")), ErrorCode::kLimitExceeded);
  ok(usage("u2", "carol@acme.io", "w2", "2"));  // from the same pool, another workspace
}

TEST_F(CreditsTest, SetLimitNamesExactlyOneLiveTarget) {
  create_org("shared");
  EXPECT_EQ(refused(R"({"cmd":"set_limit","actor":"alice@acme.io","org":"acme","period":"day","credits":"1"})"), ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused(R"({"cmd":"set_limit","actor":"alice@acme.io","org":"acme","workspace":"w1","user":"bob@acme.io","period":"day"})"),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(refused(limit("nowhere", "day", "1")), ErrorCode::kUnknownWorkspace);
  EXPECT_EQ(refused(limit("dave@acme.io", "day", "1")), ErrorCode::kUnknownMember);
  EXPECT_EQ(refused(R"({"cmd":"set_limit","actor":"bob@acme.io","org":"acme","workspace":"w1","period":"day","credits":"1"})"),
            ErrorCode::kForbidden);
}

// ---- usage: idempotency and prices -----------------------------------------------------

TEST_F(CreditsTest, UsageIdsAreIdempotentAcrossRestarts) {
  create_org("shared");
  grant("g1", "plan", "10");
  const std::string first = usage("u1", "bob@acme.io", "w1", "2");
  const CommandResult recorded = run(first);
  ASSERT_TRUE(recorded.status.ok());
  EXPECT_EQ(recorded.members(), R"("credits":"2")");
  const uint64_t log_end = engine_->store().last_seq();

  const CommandResult again = run(first);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.seq, recorded.seq);
  EXPECT_EQ(again.events, 0u);
  EXPECT_EQ(again.members(), R"("duplicate":true,"credits":"2")");

  restart();
  const CommandResult after_restart = run(first);
  ASSERT_TRUE(after_restart.status.ok());
  EXPECT_EQ(after_restart.seq, recorded.seq);
  EXPECT_EQ(after_restart.members(), R"("duplicate":true,"credits":"2")");
  // The same content through the service key is the same usage.
  std::string by_key = first;
  by_key.replace(by_key.find(R"("actor":"bob@acme.io")"), 21, R"("actor":"key:backend","user":"bob@acme.io")");
  EXPECT_EQ(run(by_key).seq, recorded.seq);

  EXPECT_EQ(engine_->store().last_seq(), log_end);
  EXPECT_EQ(balances().consumed, credits(2));
  EXPECT_EQ(workspace("primary").available, credits(8));
}

// The usage fingerprint is stored in the log and compared on every retry, so its bytes
// must never change: XXH3-64 of org, workspace, user, tool, model, quantity, unit,
// credits in micro-credits (-1 when priced) and occurred_at in microseconds, one per
// line, numbers in decimal.
TEST_F(CreditsTest, UsageFingerprintIsPinned) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(usage("u1", "bob@acme.io", "w1", "2.5"));
  const std::string text = fmt::format("acme\nw1\nbob@acme.io\nchat\nm1\n1\ntokens\n2500000\n{}", clock_.now_us());
  const std::optional<UsageRef> recorded = balances().usage_ids.find("u1");
  ASSERT_TRUE(recorded.has_value());
  EXPECT_EQ(recorded->content_hash, XXH3_64bits(text.data(), text.size()));
}

// A usage event names every lot it draws from, oldest first, however many (more than
// the 16 that record_usage lays out on the stack).
TEST_F(CreditsTest, AUsageDrawnFromManyLotsNamesEachOne) {
  create_org("shared");
  grant("g1", "plan", "10");
  for (int i = 0; i < 20; ++i) grant(fmt::format("x{}", i), "top_up", "1");
  ok(usage("u1", "bob@acme.io", "w1", "10"));
  const uint64_t seq = ok(usage("u2", "bob@acme.io", "w1", "19.5"));
  std::vector<std::pair<uint32_t, int64_t>> lots;
  ASSERT_TRUE(engine_->store()
                  .read_log(seq, seq,
                            [&](uint64_t, std::string_view bytes) {
                              const fb::Envelope* event = decode_envelope(bytes);
                              EXPECT_NE(event, nullptr);
                              if (event == nullptr || event->event_as_UsageRecorded() == nullptr) return false;
                              for (const fb::LotAmount* lot : *event->event_as_UsageRecorded()->lots()) lots.emplace_back(lot->lot(), lot->amount());
                              return false;
                            })
                  .ok());
  ASSERT_EQ(lots.size(), 20u);
  for (size_t i = 0; i < lots.size(); ++i) {
    EXPECT_EQ(lots[i].second, i + 1 < lots.size() ? credits(1) : credits(1) / 2) << i;
    if (i > 0) {
      EXPECT_GT(lots[i].first, lots[i - 1].first) << i;
    }
  }
  EXPECT_EQ(workspace("primary").available, credits(1) / 2);
}

// A command built in-process skips the parser's limits on names; its fingerprint is
// still the hash of the same text, however long (the text no longer fits the
// fingerprint's stack buffer and goes to the heap). Priced by the rate card, its
// credits line is -1.
TEST_F(CreditsTest, UsageFingerprintOfLongNamesIsTheSameText) {
  create_org("shared");
  grant("g1", "plan", "10");
  const std::string model(3000, 'm');
  const int64_t now = clock_.now_us();
  Command price;
  ASSERT_TRUE(decode_command(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"chat","model":"m1","unit":"tokens",)"
                                         R"("credits_per_unit":"0.5","effective_at":"{}"}})",
                                         format_time(now)),
                             &price)
                  .ok());
  price.model = model;
  ASSERT_TRUE(engine_->execute(std::span<const Command>(&price, 1)).front().status.ok());
  Command usage_command;
  ASSERT_TRUE(decode_command(fmt::format(R"({{"cmd":"record_usage","actor":"bob@acme.io","id":"u1","org":"acme","workspace":"w1",)"
                                         R"("tool":"chat","model":"m1","quantity":3,"unit":"tokens","occurred_at":"{}"}})",
                                         format_time(now)),
                             &usage_command)
                  .ok());
  usage_command.model = model;
  const CommandResult result = engine_->execute(std::span<const Command>(&usage_command, 1)).front();
  ASSERT_TRUE(result.status.ok()) << result.to_json();
  EXPECT_EQ(result.members(), R"("credits":"1.5")");
  const std::string text = fmt::format("acme\nw1\nbob@acme.io\nchat\n{}\n3\ntokens\n-1\n{}", model, now);
  ASSERT_GT(text.size(), 1024u);
  const std::optional<UsageRef> recorded = balances().usage_ids.find("u1");
  ASSERT_TRUE(recorded.has_value());
  EXPECT_EQ(recorded->content_hash, XXH3_64bits(text.data(), text.size()));
}

TEST_F(CreditsTest, IdConflictForTheSameUsageIdWithOtherContent) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(usage("u1", "bob@acme.io", "w1", "2"));
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "3")), ErrorCode::kIdConflict);
  EXPECT_EQ(refused(usage("u1", "alice@acme.io", "primary", "2")), ErrorCode::kIdConflict);
  restart();
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "2.5")), ErrorCode::kIdConflict);
  EXPECT_EQ(balances().consumed, credits(2));
}

// The usage bob sends through the service key, priced by the rate card.
std::string priced_usage(const char* id, const char* model, const char* unit, int quantity, int64_t occurred_at) {
  return fmt::format(R"({{"cmd":"record_usage","actor":"key:backend","id":"{}","org":"acme","workspace":"w1","user":"bob@acme.io",)"
                     R"("tool":"image","model":"{}","quantity":{},"unit":"{}","occurred_at":"{}"}})",
                     id, model, quantity, unit, format_time(occurred_at));
}

TEST_F(CreditsTest, UnknownPriceWithoutARateInEffect) {
  create_org("shared");
  grant("g1", "plan", "10");
  const int64_t now = clock_.now_us();
  EXPECT_EQ(refused(priced_usage("u1", "flux", "image", 2, now)), ErrorCode::kUnknownPrice);
  ok(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"image","model":"flux","unit":"image","credits_per_unit":"0.5","effective_at":"{}"}})",
                 format_time(now)));
  EXPECT_EQ(refused(priced_usage("u2", "flux", "image", 2, now - kSecond)), ErrorCode::kUnknownPrice);  // before it took effect
  EXPECT_EQ(refused(priced_usage("u3", "other", "image", 2, now)), ErrorCode::kUnknownPrice);
}

TEST_F(CreditsTest, UsageIsPricedByTheRateInEffectWhenItOccurred) {
  create_org("shared");
  grant("g1", "plan", "10");
  const int64_t now = clock_.now_us();
  ok(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"image","model":"flux","unit":"image","credits_per_unit":"0.5","effective_at":"{}"}})",
                 format_time(now - kHour)));
  ok(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"image","model":"flux","unit":"image","credits_per_unit":"0.25","effective_at":"{}"}})",
                 format_time(now - kMinute)));
  const CommandResult old_price = run(priced_usage("u1", "flux", "image", 3, now - 2 * kMinute));
  EXPECT_EQ(old_price.members(), R"("credits":"1.5")");
  const CommandResult new_price = run(priced_usage("u2", "flux", "image", 3, now));
  EXPECT_EQ(new_price.members(), R"("credits":"0.75")");
  EXPECT_EQ(balances().consumed, millis(2250));
  EXPECT_EQ(refused(R"({"cmd":"set_price","actor":"alice@acme.io","tool":"image","model":"flux","unit":"image","credits_per_unit":"1"})"),
            ErrorCode::kForbidden);
}

TEST_F(CreditsTest, UsageInAnotherUnitThanThePriceIsInvalidArgument) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"image","model":"flux","unit":"image","credits_per_unit":"0.5","effective_at":"{}"}})",
                 format_time(clock_.now_us() - kHour)));
  EXPECT_EQ(refused(priced_usage("u1", "flux", "megapixel", 2, clock_.now_us())), ErrorCode::kInvalidArgument);
  ok(priced_usage("u2", "flux", "image", 2, clock_.now_us()));
}

TEST_F(CreditsTest, UsageMustOccurWithinItsWindow) {
  create_org("shared");
  grant("g1", "plan", "10");
  const int64_t now = clock_.now_us();
  const std::string late = fmt::format(
      R"({{"cmd":"record_usage","actor":"bob@acme.io","id":"u1","org":"acme","workspace":"w1","tool":"chat","model":"m1","quantity":1,"unit":"tokens","credits":"1","occurred_at":"{}"}})",
      format_time(now - 91 * kDay));
  EXPECT_EQ(refused(late), ErrorCode::kInvalidArgument);
  const std::string early = fmt::format(
      R"({{"cmd":"record_usage","actor":"bob@acme.io","id":"u1","org":"acme","workspace":"w1","tool":"chat","model":"m1","quantity":1,"unit":"tokens","credits":"1","occurred_at":"{}"}})",
      format_time(now + 6 * kMinute));
  EXPECT_EQ(refused(early), ErrorCode::kInvalidArgument);
}

TEST_F(CreditsTest, UsersUseToolsOnlyForThemselvesInTheirWorkspace) {
  create_org("shared");
  grant("g1", "plan", "10");
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w2", "1")), ErrorCode::kForbidden);
  EXPECT_EQ(refused(R"({"cmd":"record_usage","actor":"alice@acme.io","id":"u1","org":"acme","workspace":"w1","user":"bob@acme.io","tool":"chat","model":"m1","quantity":1,"unit":"tokens","credits":"1","occurred_at":"2026-03-10T10:00:00Z"})"),
            ErrorCode::kForbidden);
  EXPECT_EQ(refused(R"({"cmd":"record_usage","actor":"key:backend","id":"u1","org":"acme","workspace":"w1","tool":"chat","model":"m1","quantity":1,"unit":"tokens","credits":"1","occurred_at":"2026-03-10T10:00:00Z"})"),
            ErrorCode::kMissingField);
  EXPECT_EQ(refused(R"({"cmd":"record_usage","actor":"key:backend","id":"u1","org":"acme","workspace":"w1","user":"dave@acme.io","tool":"chat","model":"m1","quantity":1,"unit":"tokens","credits":"1","occurred_at":"2026-03-10T10:00:00Z"})"),
            ErrorCode::kUnknownMember);
}

// ---- holds ------------------------------------------------------------------------------

TEST_F(CreditsTest, HoldNotFound) {
  create_org("shared");
  EXPECT_EQ(refused(settle("nope", "bob@acme.io", "1")), ErrorCode::kHoldNotFound);
  EXPECT_EQ(refused(release("nope", "bob@acme.io")), ErrorCode::kHoldNotFound);
}

TEST_F(CreditsTest, HoldExistsForAnyReuseOfAHoldId) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(reserve("h1", "bob@acme.io", "w1", "1"));
  EXPECT_EQ(refused(reserve("h1", "bob@acme.io", "w1", "1")), ErrorCode::kHoldExists);
  ok(release("h1", "bob@acme.io"));
  EXPECT_EQ(refused(reserve("h1", "bob@acme.io", "w1", "1")), ErrorCode::kHoldExists);
}

TEST_F(CreditsTest, HoldClosedOnceSettledReleasedOrTimedOut) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(reserve("settled", "bob@acme.io", "w1", "1"));
  ok(settle("settled", "bob@acme.io", "1"));
  EXPECT_EQ(refused(settle("settled", "bob@acme.io", "1")), ErrorCode::kHoldClosed);
  EXPECT_EQ(refused(release("settled", "bob@acme.io")), ErrorCode::kHoldClosed);
  ok(reserve("released", "bob@acme.io", "w1", "1"));
  ok(release("released", "bob@acme.io"));
  EXPECT_EQ(refused(settle("released", "bob@acme.io", "0")), ErrorCode::kHoldClosed);
  ok(reserve("late", "bob@acme.io", "w1", "1", 60));
  clock_.advance(61 * kSecond);
  EXPECT_EQ(run(settle("late", "bob@acme.io", "1")).status.code, ErrorCode::kHoldClosed);
  EXPECT_EQ(balances().holds.at("late").state, HoldState::kTimedOut);
}

TEST_F(CreditsTest, SettleAtMostTheHeldAmountAndTheRestReturns) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(reserve("h1", "bob@acme.io", "w1", "5"));
  EXPECT_EQ(workspace("primary").available, credits(5));
  EXPECT_EQ(workspace("w1").held, credits(5));
  EXPECT_EQ(refused(settle("h1", "bob@acme.io", "5.000001")), ErrorCode::kInvalidAmount);
  const CommandResult settled = run(settle("h1", "bob@acme.io", "3"));
  ASSERT_TRUE(settled.status.ok());
  EXPECT_EQ(settled.members(), R"("returned":"2")");
  EXPECT_EQ(workspace("primary").available, credits(7));
  EXPECT_EQ(workspace("w1").held, 0);
  EXPECT_EQ(workspace("w1").consumed, credits(3));
  EXPECT_EQ(balances().members.at("bob@acme.io").consumed, credits(3));
  EXPECT_EQ(balances().held, 0);
}

TEST_F(CreditsTest, OnlyTheReservingUserOrAServiceSettles) {
  create_org("shared");
  grant("g1", "plan", "10");
  ok(reserve("h1", "bob@acme.io", "w1", "2"));
  EXPECT_EQ(refused(settle("h1", "carol@acme.io", "1")), ErrorCode::kForbidden);
  ok(settle("h1", "key:backend", "1"));
}

TEST_F(CreditsTest, AHoldTimesOutAtReserveTimePlusTimeout) {
  create_org("shared");
  grant("g1", "plan", "10");
  const int64_t reserved_at = clock_.now_us() + kSecond;
  clock_.set(reserved_at);
  const CommandResult reserved = run(reserve("h1", "bob@acme.io", "w1", "4", 600));
  EXPECT_EQ(reserved.members(), fmt::format(R"("expires_at":"{}")", format_time(reserved_at + 600 * kSecond)));
  clock_.set(reserved_at + 600 * kSecond - 1);
  tick();
  EXPECT_EQ(balances().holds.at("h1").state, HoldState::kOpen);
  clock_.set(reserved_at + 600 * kSecond);
  tick();
  EXPECT_EQ(balances().holds.at("h1").state, HoldState::kTimedOut);
  EXPECT_EQ(workspace("primary").available, credits(10));
  EXPECT_EQ(balances().held, 0);
  EXPECT_EQ(balances().consumed, 0);
}

// Held portions of a lot are not expired while held; they expire when they return.
TEST_F(CreditsTest, HeldCreditsOfAnExpiredLotExpireWhenTheHoldReturnsThem) {
  create_org("shared");
  const int64_t expiry = clock_.now_us() + kHour;
  grant("pack", "one_time", "5", expiry);
  grant("plan", "plan", "5", expiry + 1);
  ok(reserve("h1", "bob@acme.io", "w1", "7", 7200));  // 5 of pack, 2 of plan
  clock_.set(expiry + 1);
  tick();
  EXPECT_EQ(balances().banked, 0);   // nothing of pack was outside the hold
  EXPECT_EQ(balances().expired, credits(3));  // plan's 3 in the workspace
  EXPECT_EQ(balances().held, credits(7));
  ok(settle("h1", "bob@acme.io", "4"));  // spends pack's 4 first
  EXPECT_EQ(lot("pack").consumed, credits(4));
  EXPECT_EQ(lot("pack").banked_amount, credits(1));
  EXPECT_EQ(lot("plan").expired_amount, credits(5));
  EXPECT_EQ(balances().banked, credits(1));
  EXPECT_EQ(balances().expired, credits(5));
  EXPECT_EQ(balances().available(), 0);
  EXPECT_TRUE(engine_->state().balances.check_invariants().empty());
}

TEST_F(CreditsTest, LotsExpireAtEngineTime) {
  create_org("shared");
  const int64_t expiry = clock_.now_us() + kHour;
  grant("g1", "plan", "5", expiry);
  clock_.set(expiry - 1);
  tick();
  EXPECT_EQ(balances().expired, 0);
  EXPECT_EQ(workspace("primary").available, credits(5));
  clock_.set(expiry);
  // The next command, whatever it is, sees the lot expired first.
  EXPECT_EQ(run(usage("u1", "alice@acme.io", "primary", "1")).status.code, ErrorCode::kInsufficientCredits);
  EXPECT_EQ(balances().expired, credits(5));
  EXPECT_TRUE(lot("g1").expired);
  const StatementAccount& entries = *engine_->state().statements.entries("acme", 0);
  EXPECT_EQ(entry_kind_name(entries.back().kind), "expiry");
  EXPECT_EQ(entries.back().time_us, expiry);
  EXPECT_EQ(entries.back().amount, -credits(5));
}

// ---- modes and workspaces ---------------------------------------------------------------

TEST_F(CreditsTest, WrongModeForTransfersInSharedMode) {
  create_org("shared");
  grant("g1", "plan", "10");
  EXPECT_EQ(refused(transfer("primary", "w1", "1")), ErrorCode::kWrongMode);
}

TEST_F(CreditsTest, TransfersNameTwoLiveWorkspaces) {
  create_org("budget");
  grant("g1", "plan", "10");
  EXPECT_EQ(refused(transfer("primary", "nowhere", "1")), ErrorCode::kUnknownWorkspace);
  EXPECT_EQ(refused(transfer("nowhere", "w1", "1")), ErrorCode::kUnknownWorkspace);
  EXPECT_EQ(refused(transfer("w1", "w1", "1")), ErrorCode::kInvalidArgument);
}

TEST_F(CreditsTest, SwitchingToSharedSweepsEveryWorkspaceToThePrimary) {
  create_org("budget");
  grant("g1", "plan", "10");
  ok(transfer("primary", "w1", "3"));
  ok(transfer("primary", "w2", "2"));
  ok(usage("u1", "bob@acme.io", "w1", "1"));
  ok(reserve("h1", "carol@acme.io", "w2", "0.5"));
  const CommandResult switched = run(R"({"cmd":"set_budget_mode","actor":"alice@acme.io","org":"acme","mode":"shared"})");
  ASSERT_TRUE(switched.status.ok());
  EXPECT_EQ(switched.events, 3u);  // the switch and two sweeps
  EXPECT_EQ(workspace("primary").available, credits(10) - credits(1) - millis(500));
  EXPECT_EQ(workspace("w1").available, 0);
  EXPECT_EQ(workspace("w2").available, 0);
  // The hold made in w2 returns to the shared pool.
  ok(release("h1", "carol@acme.io"));
  EXPECT_EQ(workspace("primary").available, credits(9));
  EXPECT_EQ(workspace("w2").available, 0);
  EXPECT_EQ(entry_kind_name(engine_->state().statements.entries("acme", 1)->back().kind), "sweep_out");

  const CommandResult back = run(R"({"cmd":"set_budget_mode","actor":"alice@acme.io","org":"acme","mode":"budget"})");
  EXPECT_EQ(back.events, 1u);  // shared -> budget leaves everything in the primary
  EXPECT_EQ(workspace("primary").available, credits(9));
}

TEST_F(CreditsTest, DeletingAWorkspaceReturnsItsCreditsToThePrimary) {
  create_org("budget");
  grant("g1", "plan", "10");
  ok(transfer("primary", "w1", "4"));
  ok(usage("u1", "bob@acme.io", "w1", "0.5"));
  ok(reserve("h1", "bob@acme.io", "w1", "1"));
  const CommandResult deleted = run(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"w1"})");
  ASSERT_TRUE(deleted.status.ok());
  EXPECT_EQ(deleted.events, 2u);
  EXPECT_EQ(balances().workspaces[1].available, 0);
  EXPECT_EQ(workspace("primary").available, credits(6) + millis(2500));
  // The open hold's credits come back to the primary workspace too.
  ok(release("h1", "bob@acme.io"));
  EXPECT_EQ(workspace("primary").available, millis(9500));
  EXPECT_EQ(balances().workspaces[1].available, 0);
  EXPECT_EQ(balances().workspaces[1].consumed, millis(500));  // history stays
  // The name may be reused; the new workspace starts empty.
  ok(R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"w1"})");
  EXPECT_EQ(workspace("w1").available, 0);
  EXPECT_EQ(workspace("w1").consumed, 0);
}

// Statement entries are kept packed (an amount is the difference of two running
// balances); rows written from them load back to the same entries, and a row whose
// balance does not follow from the one before it (a row missing, say) is refused.
TEST_F(CreditsTest, StatementRowsLoadBackAndABrokenRunningBalanceIsRefused) {
  statement_history();

  // Entries are history rows, which the store keeps in sequence order.
  struct Rows final : RowSink {
    std::vector<std::tuple<uint64_t, std::string, std::string>> history;
    std::vector<std::string> others;
    void put(std::string_view key, std::string_view) override { others.emplace_back(key); }
    void erase(std::string_view) override {}
    void put_history(uint64_t seq, std::string_view key, std::string_view value) override { history.emplace_back(seq, key, value); }
  } dumped;
  const StatementsProjection& live = engine_->state().statements;
  live.dump(&dumped);
  EXPECT_EQ(dumped.others, std::vector<std::string>{"checkpoint/statements"});
  std::sort(dumped.history.begin(), dumped.history.end());  // the store's key order

  StatementsProjection loaded;
  for (const auto& [seq, key, value] : dumped.history) ASSERT_TRUE(loaded.load_history_row(seq, key, value)) << seq << " " << key;
  for (uint32_t w = 0; w < 2; ++w) {  // primary and w1; w2 has no entries
    const StatementAccount* want = live.entries("acme", w);
    const StatementAccount* got = loaded.entries("acme", w);
    ASSERT_NE(want, nullptr);
    ASSERT_NE(got, nullptr);
    ASSERT_EQ(got->size(), want->size());
    for (size_t i = 0; i < want->size(); ++i) {
      const StatementEntry a = (*want)[i], b = (*got)[i];
      EXPECT_EQ(std::tie(a.seq, a.time_us, a.kind, a.amount, a.balance, a.ref, a.other_workspace),
                std::tie(b.seq, b.time_us, b.kind, b.amount, b.balance, b.ref, b.other_workspace));
    }
  }
  EXPECT_EQ((*loaded.entries("acme", 1))[1].ref, "u1");

  // w1's rows without its second entry: the third no longer adds up.
  StatementsProjection broken;
  size_t w1_rows = 0;
  bool refused = false;
  for (const auto& [seq, key, value] : dumped.history) {
    const bool in_w1 = key.ends_with(std::string("acme\0\0\0\0\1", 9));
    if (in_w1 && ++w1_rows == 2) continue;
    if (!broken.load_history_row(seq, key, value)) refused = true;
  }
  EXPECT_EQ(w1_rows, 4u);
  EXPECT_TRUE(refused);
}

// Usage ids load back from their history rows, more of them than the loader holds back
// at once (BalancesProjection::kLoadAhead), in their order; a repeated id is refused,
// even when it is among the last rows, which finish_history() restores.
TEST_F(CreditsTest, UsageIdRowsLoadBackAndARepeatedIdIsRefused) {
  create_org("shared");
  grant("g1", "plan", "1000");
  for (int i = 0; i < 40; ++i) ok(usage(fmt::format("u{}", i), "bob@acme.io", "w1", "1"));

  struct Rows final : RowSink {
    std::vector<std::tuple<uint64_t, std::string, std::string>> history;
    void put(std::string_view, std::string_view) override {}
    void erase(std::string_view) override {}
    void put_history(uint64_t seq, std::string_view key, std::string_view value) override { history.emplace_back(seq, key, value); }
  } dumped;
  engine_->state().balances.dump(&dumped);
  std::sort(dumped.history.begin(), dumped.history.end());  // the store's key order
  ASSERT_EQ(dumped.history.size(), 40u);
  const UsageIds& live = engine_->state().balances.find("acme")->usage_ids;
  const auto ids_of = [](const UsageIds& ids) {
    std::vector<std::pair<std::string, UsageRef>> out;
    ids.for_each([&](UsageIds::Handle h) { out.emplace_back(std::string(ids.id_at(h)), ids.ref_at(h)); });
    return out;
  };

  BalancesProjection loaded;
  for (const auto& [seq, key, value] : dumped.history) ASSERT_TRUE(loaded.load_history_row(seq, key, value)) << seq;
  ASSERT_TRUE(loaded.finish_history());
  ASSERT_NE(loaded.find("acme"), nullptr);
  EXPECT_EQ(ids_of(loaded.find("acme")->usage_ids), ids_of(live));

  // The last row again (a store that repeats it): only finish_history() can see it.
  BalancesProjection repeated_last;
  for (const auto& [seq, key, value] : dumped.history) ASSERT_TRUE(repeated_last.load_history_row(seq, key, value));
  const auto& [seq, key, value] = dumped.history.back();
  ASSERT_TRUE(repeated_last.load_history_row(seq, key, value));
  EXPECT_FALSE(repeated_last.finish_history());

  // The first row again, after the last: refused too, once it leaves the window.
  BalancesProjection repeated_first;
  bool refused = false;
  for (const auto& [s, k, v] : dumped.history) refused |= !repeated_first.load_history_row(s, k, v);
  const auto& [first_seq, first_key, first_value] = dumped.history.front();
  refused |= !repeated_first.load_history_row(first_seq, first_key, first_value);
  refused |= !repeated_first.finish_history();
  EXPECT_TRUE(refused);
}

// ---- queries ----------------------------------------------------------------------------

TEST_F(CreditsTest, StatementsCarryRunningBalances) {
  const auto [granted, moved, used, held, settled] = statement_history();

  struct Expected {
    uint64_t seq;
    const char* kind;
    int64_t amount, balance;
  };
  auto check = [&](uint32_t workspace_id, const std::vector<Expected>& expected) {
    const StatementAccount* entries = engine_->state().statements.entries("acme", workspace_id);
    ASSERT_NE(entries, nullptr);
    ASSERT_EQ(entries->size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ((*entries)[i].seq, expected[i].seq) << i;
      EXPECT_EQ(entry_kind_name((*entries)[i].kind), expected[i].kind) << i;
      EXPECT_EQ((*entries)[i].amount, expected[i].amount) << i;
      EXPECT_EQ((*entries)[i].balance, expected[i].balance) << i;
    }
  };
  check(0, {{granted, "grant", credits(10), credits(10)}, {moved, "transfer_out", -credits(4), credits(6)}});
  check(1, {{moved, "transfer_in", credits(4), credits(4)},
            {used, "usage", -credits(1), credits(3)},
            {held, "hold", -credits(2), credits(1)},
            {settled, "hold_return", millis(1500), millis(2500)}});

  // Paged through the query.
  const std::string first_page = query(R"({"query":"statement","actor":"alice@acme.io","org":"acme","workspace":"w1","limit":2})");
  EXPECT_CONTAINS(first_page, R"("kind":"transfer_in","credits":"4","balance":"4")");
  EXPECT_CONTAINS(first_page, R"("kind":"usage","credits":"-1","balance":"3","ref":"u1")");
  EXPECT_EQ(first_page.find("hold"), std::string::npos);
  EXPECT_CONTAINS(first_page, fmt::format(R"("next_after_seq":{})", used));
  const std::string second_page =
      query(fmt::format(R"({{"query":"statement","actor":"alice@acme.io","org":"acme","workspace":"w1","limit":2,"after_seq":{}}})", used));
  EXPECT_CONTAINS(second_page, R"("kind":"hold","credits":"-2","balance":"1","ref":"h1")");
  EXPECT_CONTAINS(second_page, R"("kind":"hold_return","credits":"1.5","balance":"2.5","ref":"h1")");
  EXPECT_EQ(second_page.find("next_after_seq"), std::string::npos);
}

TEST_F(CreditsTest, UsageAggregatesGroupByWorkspaceMemberToolModelAndDay) {
  clock_.set(time_of("2026-03-10T22:00:00Z"));
  create_org("shared");
  grant("g1", "plan", "100");
  auto record = [&](const char* id, const char* user, const char* workspace, const char* tool, const char* model, int quantity,
                    const char* amount) {
    ok(fmt::format(R"({{"cmd":"record_usage","actor":"{}","id":"{}","org":"acme","workspace":"{}","tool":"{}","model":"{}",)"
                   R"("quantity":{},"unit":"u","credits":"{}","occurred_at":"{}"}})",
                   user, id, workspace, tool, model, quantity, amount, format_time(clock_.now_us())));
  };
  record("u1", "bob@acme.io", "w1", "chat", "m1", 10, "1");
  record("u2", "bob@acme.io", "w1", "image", "m2", 2, "0.5");
  record("u3", "carol@acme.io", "w2", "chat", "m1", 5, "2");
  clock_.set(time_of("2026-03-11T01:00:00Z"));
  record("u4", "bob@acme.io", "w1", "chat", "m1", 1, "0.25");

  auto usage_query = [&](const char* group_by, const char* filter = "") {
    return query(fmt::format(R"({{"query":"usage","actor":"alice@acme.io","org":"acme","group_by":{}{}}})", group_by, filter));
  };
  EXPECT_CONTAINS(usage_query(R"(["workspace"])"),
                  R"("rows":[{"workspace":"w1","events":3,"quantity":13,"credits":"1.75"},{"workspace":"w2","events":1,"quantity":5,"credits":"2"}])");
  EXPECT_CONTAINS(usage_query(R"(["member"])"),
                  R"("rows":[{"member":"bob@acme.io","events":3,"quantity":13,"credits":"1.75"},{"member":"carol@acme.io","events":1,"quantity":5,"credits":"2"}])");
  EXPECT_CONTAINS(usage_query(R"(["tool","model"])"),
                  R"("rows":[{"tool":"chat","model":"m1","events":3,"quantity":16,"credits":"3.25"},{"tool":"image","model":"m2","events":1,"quantity":2,"credits":"0.5"}])");
  EXPECT_CONTAINS(usage_query(R"(["day"])"),
                  R"("rows":[{"day":"2026-03-10T00:00:00Z","events":3,"quantity":17,"credits":"3.5"},{"day":"2026-03-11T00:00:00Z","events":1,"quantity":1,"credits":"0.25"}])");
  EXPECT_CONTAINS(usage_query(R"(["member","day"])", R"(,"tool":"chat")"),
                  R"("rows":[{"member":"bob@acme.io","day":"2026-03-10T00:00:00Z","events":1,"quantity":10,"credits":"1"},)"
                  R"({"member":"bob@acme.io","day":"2026-03-11T00:00:00Z","events":1,"quantity":1,"credits":"0.25"},)"
                  R"({"member":"carol@acme.io","day":"2026-03-10T00:00:00Z","events":1,"quantity":5,"credits":"2"}])");
  // A member sees their own workspace only.
  EXPECT_CONTAINS(query(R"({"query":"usage","actor":"bob@acme.io","org":"acme","group_by":["workspace"]})"),
                  R"("rows":[{"workspace":"w1","events":3,"quantity":13,"credits":"1.75"}])");
}

// The projection interns (tool, model) pairs: "image" / "x" and "imag" / "ex" spell the
// same letters and must stay two rows.
TEST_F(CreditsTest, UsageKeepsToolModelPairsApartWhenTheirLettersRunTogether) {
  create_org("shared");
  grant("g1", "plan", "100");
  ok(fmt::format(R"({{"cmd":"set_price","actor":"platform","tool":"imag","model":"ex","unit":"u","credits_per_unit":"1","effective_at":"{}"}})",
                 format_time(clock_.now_us())));
  auto record = [&](const char* id, const char* tool, const char* model, const char* amount) {
    ok(fmt::format(R"({{"cmd":"record_usage","actor":"bob@acme.io","id":"{}","org":"acme","workspace":"w1","tool":"{}","model":"{}",)"
                   R"("quantity":1,"unit":"u","credits":"{}","occurred_at":"{}"}})",
                   id, tool, model, amount, format_time(clock_.now_us())));
  };
  record("u1", "image", "x", "1");
  record("u2", "imag", "ex", "2");
  record("u3", "image", "x", "4");
  EXPECT_CONTAINS(query(R"({"query":"usage","actor":"alice@acme.io","org":"acme","group_by":["tool","model"]})"),
                  R"("rows":[{"tool":"imag","model":"ex","events":1,"quantity":1,"credits":"2"},)"
                  R"({"tool":"image","model":"x","events":2,"quantity":2,"credits":"5"}])");
}

TEST_F(CreditsTest, BalancesAsOfASequenceNumber) {
  create_org("shared");
  const uint64_t granted = grant("g1", "plan", "10");
  const uint64_t used = ok(usage("u1", "bob@acme.io", "w1", "3"));
  grant("g2", "top_up", "5");
  auto balance_at = [&](uint64_t seq) {
    return query(fmt::format(R"({{"query":"balance","actor":"alice@acme.io","org":"acme","as_of_seq":{}}})", seq));
  };
  EXPECT_CONTAINS(balance_at(granted - 1), R"("available":"0","held":"0","consumed":"0","granted":"0")");
  EXPECT_CONTAINS(balance_at(granted), R"("available":"10","held":"0","consumed":"0","granted":"10")");
  EXPECT_CONTAINS(balance_at(used), R"("available":"7","held":"0","consumed":"3","granted":"10")");
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme"})"), R"("available":"12","held":"0","consumed":"3","granted":"15")");
  EXPECT_CONTAINS(balance_at(used), fmt::format(R"("as_of_seq":{})", used));
}

// Regression: a balance as of a sequence number dated its limit counters at the
// engine's current time, so a day later the limit's use showed as 0.
TEST_F(LimitTest, BalanceAsOfSeqDatesLimitUseAtThatPoint) {
  ok(limit("w1", "day", "3"));
  const uint64_t used = ok(usage("u1", "bob@acme.io", "w1", "2"));
  const std::string as_of = fmt::format(R"({{"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"w1","as_of_seq":{}}})", used);
  EXPECT_CONTAINS(query(as_of), R"("limits":{"day":{"limit":"3","used":"2"}})");
  next_day();
  ok(usage("u2", "bob@acme.io", "w1", "1"));
  EXPECT_CONTAINS(query(as_of), R"("limits":{"day":{"limit":"3","used":"2"}})");
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"w1"})"),
                  R"("limits":{"day":{"limit":"3","used":"1"}})");
  // As of a time, the counters are dated at that time: the next morning nothing is used.
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"w1","as_of":"2026-03-31T08:00:00Z"})"),
                  R"("limits":{"day":{"limit":"3","used":"0"}})");
  EXPECT_CONTAINS(query(R"({"query":"balance","actor":"alice@acme.io","org":"acme","workspace":"w1","as_of":"2026-03-30T23:00:00Z"})"),
                  R"("limits":{"day":{"limit":"3","used":"2"}})");
}

// Regression: a retried usage event was refused (unknown_workspace, forbidden) once its
// workspace was deleted or its member moved, though it had been recorded: a client
// would take the refusal for a failure. Idempotency is permanent (SPEC §2).
TEST_F(CreditsTest, UsageRetryAfterItsWorkspaceWasDeletedIsADuplicate) {
  create_org("shared");
  grant("g1", "plan", "10");
  const std::string first = usage("u1", "bob@acme.io", "w1", "2");
  const uint64_t seq = ok(first);
  std::string by_key = first;
  by_key.replace(by_key.find(R"("actor":"bob@acme.io")"), 21, R"("actor":"key:backend","user":"bob@acme.io")");

  ok(R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"w2"})");
  CommandResult again = run(first);
  EXPECT_TRUE(again.status.ok()) << again.to_json();
  EXPECT_EQ(again.seq, seq);
  EXPECT_EQ(again.members(), R"("duplicate":true,"credits":"2")");

  ok(R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"w1"})");
  for (const std::string& retry : {first, by_key}) {
    again = run(retry);
    EXPECT_TRUE(again.status.ok()) << again.to_json();
    EXPECT_EQ(again.seq, seq);
  }
  EXPECT_EQ(refused(usage("u1", "bob@acme.io", "w1", "3")), ErrorCode::kIdConflict);
  EXPECT_EQ(balances().consumed, credits(2));
  // A new usage still needs a live workspace of the member's.
  EXPECT_EQ(refused(usage("u2", "bob@acme.io", "w1", "2")), ErrorCode::kUnknownWorkspace);
}

// Regression: read_log handed out envelopes wherever RocksDB's block put them, after
// an 8-byte checksum, so FlatBuffers read misaligned scalars (undefined behaviour that
// UBSan reported on every restart, verify, export and as-of query of these tests).
TEST_F(CreditsTest, ReadLogHandsOutAlignedEnvelopes) {
  create_org("shared");
  for (int i = 0; i < 12; ++i) grant(fmt::format("g{}{}", i, std::string(static_cast<size_t>(i), 'x')), "promo", "1");
  restart();  // read back from the table files as well as the memtable
  int records = 0;
  const Status read = engine_->store().read_log(1, engine_->store().last_seq(), [&](uint64_t, std::string_view envelope) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(envelope.data()) % alignof(uint64_t), 0u);
    ++records;
    return true;
  });
  EXPECT_TRUE(read.ok());
  EXPECT_EQ(records, static_cast<int>(engine_->store().last_seq()));
}

}  // namespace
}  // namespace tally

