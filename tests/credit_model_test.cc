// Model-based test of the credit ledger: random sequences of every credit command,
// mixed with time passing, engine restarts and verify runs, executed both by the
// engine and by the reference model in credit_model.h. After every step the engine's
// answer and its balances must equal the model's, and its invariants must hold; at the
// end, verify passes and export -> import reproduces the projections exactly.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "credit_model.h"
#include "engine/clock.h"
#include "engine/command.h"
#include "engine/engine.h"
#include "engine/values.h"
#include "replay/export.h"
#include "replay/replay.h"

namespace tally {
namespace {

using model::kDayUs;
using model::kHourUs;
using model::kMinuteUs;
using model::kSecondUs;

constexpr const char* kOrg = "acme";
constexpr const char* kAlice = "alice@acme.io";  // owner, primary
constexpr const char* kBob = "bob@acme.io";      // member, w1
constexpr const char* kCarol = "carol@acme.io";  // admin, w2
constexpr const char* kDave = "dave@acme.io";    // not a member
constexpr const char* kKey = "key:backend";

// One random step. Its numbers are read by the step's kind; zero is the simplest
// choice everywhere, so shrinking heads for plain commands.
enum class Op : uint8_t {
  kAdvance, kGrant, kSetPlan, kRenewPlan, kSetPrice, kUsage, kUsageRetry, kTransfer, kReserve,
  kSettle, kRelease, kSetLimit, kSetMode, kDeleteWorkspace, kCreateWorkspace, kRestart, kVerify,
};

struct Step {
  Op op = Op::kAdvance;
  int a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0;
  int64_t x = 0;
};

std::ostream& operator<<(std::ostream& out, const Step& s) {
  return out << "{op " << static_cast<int>(s.op) << " a" << s.a << " b" << s.b << " c" << s.c << " d" << s.d << " e" << s.e << " f"
             << s.f << " g" << s.g << " x" << s.x << "}";
}

rc::Gen<Step> step_gen() {
  using namespace rc;
  const auto op = gen::weightedElement<Op>({
      {14, Op::kAdvance}, {10, Op::kGrant}, {3, Op::kSetPlan}, {4, Op::kRenewPlan}, {3, Op::kSetPrice}, {16, Op::kUsage},
      {6, Op::kUsageRetry}, {8, Op::kTransfer}, {10, Op::kReserve}, {7, Op::kSettle}, {3, Op::kRelease}, {5, Op::kSetLimit},
      {3, Op::kSetMode}, {3, Op::kDeleteWorkspace}, {3, Op::kCreateWorkspace}, {2, Op::kRestart}, {3, Op::kVerify},
  });
  // Uniform whatever the size: rapidcheck would otherwise squeeze early cases' numbers
  // towards zero. Shrinking still heads for zero.
  const auto small = gen::resize(100, gen::inRange(0, 1000));
  const auto large = gen::resize(100, gen::inRange<int64_t>(0, 1'000'000));
  return gen::map(gen::tuple(op, small, small, small, small, small, small, small, large),
                  [](const auto& t) {
                    Step s;
                    std::tie(s.op, s.a, s.b, s.c, s.d, s.e, s.f, s.g, s.x) = t;
                    return s;
                  });
}

// Where test stores go. Not /dev/shm: RocksDB preallocates each write-ahead log
// (fallocate of ~140 MB here), which tmpfs turns into zeroed memory at every open, and
// that cost 20x the time of the fsyncs it would save.
std::filesystem::path scratch_root() { return std::filesystem::temp_directory_path(); }

// A fresh directory, removed with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(std::string_view what) {
    static std::atomic<int> counter{0};
    path_ = (scratch_root() / fmt::format("tally-credit-model-{}-{}-{}", getpid(), counter++, what)).string();
    std::filesystem::remove_all(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int64_t micro(int64_t thousandths) { return thousandths * 1000; }  // 0.001 credits

// The engine and the model, side by side, with a trace for failure messages.
class Harness {
 public:
  Harness(int64_t start_us, bool budget) : start_us_(start_us), clock_(start_us), dir_("live"), import_dir_("import") {
    open();
    Command org = base(CommandType::kCreateOrg, kAlice);
    org.mode = budget ? "budget" : "shared";
    setup(org);
    for (const char* name : {"w1", "w2"}) {
      Command ws = base(CommandType::kCreateWorkspace, kAlice);
      ws.workspace = name;
      setup(ws);
    }
    invite(kBob, "member", "w1");
    invite(kCarol, "admin", "w2");
    // A rate card to start from; steps change it.
    for (const auto& [tool, unit, price] : {std::tuple{"chat", "tokens", 100}, std::tuple{"image", "image", 40'000}}) {
      Command rate = base(CommandType::kSetPrice, "platform");
      rate.org.clear();
      rate.tool = tool;
      rate.model = "m1";
      rate.unit = unit;
      rate.credits_per_unit_micro = price;
      rate.effective_at_us = start_us - kDayUs;
      setup(rate);
    }
    Command key = base(CommandType::kCreateServiceKey, "platform");
    key.key = std::string(kKey).substr(4);
    key.secret_sha256 = std::string(64, 'a');
    setup(key);
    Command first = base(CommandType::kGrantCredits, kAlice);
    first.grant = "welcome";
    first.kind = "promo";
    first.credits_micro = micro(5000);
    setup(first);
    check_state();
  }

  void run(const Step& step) {
    switch (step.op) {
      case Op::kAdvance:
        flush();
        return advance(step);
      case Op::kRestart:
        flush();
        trace("restart");
        open();
        return check_state();
      case Op::kVerify:
        flush();
        return check_history(step);
      case Op::kUsageRetry:
        if (usage_sent_.empty()) return;
        return submit(retry(step), step);
      default:
        return submit(build(step), step);
    }
  }

  // The end of a case: verify, then export -> import must reproduce every row.
  void finish() {
    flush();
    const VerifyReport report = verify(engine_->store(), &engine_->state());
    if (!report.ok()) fail("final verify: " + report.problems.front());
    std::stringstream exported;
    ExportStats export_stats;
    if (Status s = export_commands(engine_->store(), exported, &export_stats); !s.ok()) fail("export: " + s.message);
    ManualClock import_clock(0);
    EngineOptions options;
    options.data_dir = import_dir_.path();
    options.clock = &import_clock;
    std::unique_ptr<Engine> copy;
    if (Status s = Engine::open(options, &copy); !s.ok()) fail("open import: " + s.message);
    ImportStats import_stats;
    if (Status s = import_commands(*copy, exported, &import_stats); !s.ok()) fail("import: " + s.message);
    if (import_stats.events != engine_->store().last_seq()) fail(fmt::format("import made {} events, the log has {}", import_stats.events, engine_->store().last_seq()));
    if (projection_rows(copy->state()) != projection_rows(engine_->state())) fail("export -> import changed the projections");
    const VerifyReport copy_report = verify(copy->store(), &copy->state());
    if (!copy_report.ok()) fail("verify of the import: " + copy_report.problems.front());
  }

 private:
  Command base(CommandType type, std::string actor) {
    Command command;
    command.type = type;
    command.actor = std::move(actor);
    command.org = kOrg;
    return command;
  }

  void open() {
    engine_.reset();
    EngineOptions options;
    options.data_dir = dir_.path();
    options.clock = &clock_;
    options.split_apply_commands = 2;  // batches of two or more apply on two threads
    if (Status s = Engine::open(options, &engine_); !s.ok()) fail("open: " + s.message);
  }

  void setup(const Command& command) {
    const CommandResult result = engine_->execute(std::span<const Command>(&command, 1)).front();
    trace(encode_command(command) + " -> " + result.to_json());
    const model::Outcome expected = model_.execute(command, clock_.now_us());
    if (!result.status.ok() || !expected.ok()) fail("setup refused: " + result.status.message);
    clock_.advance(kSecondUs);
  }

  void invite(const char* user, const char* role, const char* workspace) {
    Command invitation = base(CommandType::kInviteMember, kAlice);
    invitation.user = user;
    invitation.role = role;
    invitation.workspace = workspace;
    setup(invitation);
    setup(base(CommandType::kAcceptInvite, user));
    model_.add_member(user, role, workspace);
  }

  void advance(const Step& step) {
    const int64_t now = clock_.now_us();
    int64_t delta = 0;
    switch (step.a % 8) {
      case 0: delta = 0; break;
      case 1: delta = 1; break;
      case 2: delta = (step.x % 60 + 1) * kSecondUs; break;
      case 3: delta = (step.x % 180 + 1) * kMinuteUs; break;
      case 4: delta = (step.x % 72 + 1) * kHourUs; break;
      case 5: delta = (step.x % 40 + 1) * kDayUs; break;
      case 6: {  // to just before, at or just after the next UTC midnight
        const int64_t midnight = (model::utc_day(now) + 1) * kDayUs;
        delta = midnight + (step.x % 3 - 1) * kSecondUs - now;
        break;
      }
      case 7: {  // to just before, at or just after the next lot expiry or hold timeout
        int64_t due = std::numeric_limits<int64_t>::max();
        for (const model::Lot& lot : model_.lots) {
          if (lot.expires_at > now) due = std::min(due, lot.expires_at);
        }
        for (const auto& [id, hold] : model_.holds) {
          if (hold.end == model::HoldEnd::kOpen && hold.expires_at > now) due = std::min(due, hold.expires_at);
        }
        if (due != std::numeric_limits<int64_t>::max()) delta = std::max<int64_t>(0, due + step.x % 3 - 1 - now);
        break;
      }
    }
    clock_.advance(delta);
    trace(fmt::format("advance {}us to {}", delta, format_time(clock_.now_us())));
  }

  // Mostly the owner or an admin; now and then someone the role matrix refuses.
  static std::string actor_for_management(int choice) {
    switch (choice % 20) {
      case 16: case 17: return "platform";
      case 18: return kBob;  // a member
      case 19: return choice % 40 == 19 ? kKey : kDave;
      default: return choice % 2 == 0 ? kAlice : kCarol;
    }
  }

  static std::string workspace_name(int choice) {
    static const char* const kNames[] = {"primary", "w1", "w2", "w3"};
    return kNames[choice % 4];
  }

  // The members, and now and then a stranger.
  static std::string user_name(int choice) {
    static const char* const kUsers[] = {kAlice, kBob, kCarol, kAlice, kBob, kCarol, kAlice, kBob, kCarol, kDave};
    return kUsers[choice % 10];
  }

  // The workspace a user acts in, by the model; any name for a stranger.
  std::string home_of(const std::string& user) const {
    auto it = model_.members.find(user);
    return it == model_.members.end() ? "w1" : model_.workspaces[it->second.workspace].name;
  }

  // Who uses tools: the user, a service key or the platform for them, or someone else.
  void pick_user(Command& command, int actor_choice, int user_choice, int workspace_choice) const {
    const std::string user = user_name(user_choice);
    switch (actor_choice % 20) {
      case 10: case 11: case 12: case 13: command.actor = kKey; command.user = user; break;
      case 14: case 15: command.actor = "platform"; command.user = user; break;
      case 16: command.actor = user; command.user = user; break;
      case 17: command.actor = kKey; break;  // no user: missing_field
      case 18: command.actor = user_name(user_choice + 1); command.user = user; break;  // for someone else
      case 19: command.actor = "platform"; command.user = user; break;
      default: command.actor = user; break;
    }
    // The platform may name any workspace; everyone else only the user's own.
    const bool elsewhere = workspace_choice % 20 >= 17 || actor_choice % 20 == 19;
    command.workspace = elsewhere ? workspace_name(workspace_choice) : home_of(user);
  }

  // Half the usage and holds go to a member whose pool has credits, for about what is
  // there, so that debits succeed, reach limits and run pools dry often.
  void steer(Command& command, const Step& s) {
    std::vector<std::string> funded;
    for (const auto& [user, member] : model_.members) {
      if (model_.available(model_.budget ? member.workspace : 0) > 0) funded.push_back(user);
    }
    if (funded.empty()) return;
    const std::string& user = funded[static_cast<size_t>(s.b) % funded.size()];
    command.actor = s.a % 4 == 0 ? kKey : user;
    command.user = s.a % 4 == 0 ? user : "";
    command.workspace = home_of(user);
    const uint32_t workspace = model_.members.at(user).workspace;
    const int64_t pool = model_.available(model_.budget ? workspace : 0);
    if (command.type != CommandType::kReserve && !command.credits_micro) return;  // priced
    command.credits_micro = pool * (s.x % 110) / 100 + 1;
    // On the edges: exactly what is left of the pool or of the tightest limit, or one more.
    int64_t room = pool;
    const model::Limits& ws = model_.workspaces[workspace].limits;
    const int64_t now = std::max(clock_.now_us(), model_.last_time + 1);
    if (ws.day) room = std::min(room, *ws.day - model_.used(workspace, {}, true, now));
    if (ws.month) room = std::min(room, *ws.month - model_.used(workspace, {}, false, now));
    if (auto spender = model_.spenders.find(user); spender != model_.spenders.end()) {
      const model::Limits& mine = spender->second.limits;
      if (mine.day) room = std::min(room, *mine.day - model_.used(std::nullopt, user, true, now));
      if (mine.month) room = std::min(room, *mine.month - model_.used(std::nullopt, user, false, now));
    }
    if (s.f % 3 == 0 && room >= 0) command.credits_micro = room + (s.f / 3) % 2;
  }

  Command build(const Step& s) {
    const int64_t now = clock_.now_us();
    Command command;
    const std::string org = s.g % 40 == 39 ? "nope" : kOrg;
    switch (s.op) {
      case Op::kGrant: {
        static const char* const kKinds[] = {"plan", "one_time", "top_up", "promo", "one_time"};
        command = base(CommandType::kGrantCredits, actor_for_management(s.b));
        command.kind = kKinds[s.a % 5];
        command.grant = fmt::format("g{}", s.d % 12);
        command.credits_micro = s.e % 25 == 24 ? 0 : micro(3 * (s.x % 5000) + 1);
        switch (s.c % 7) {
          case 2:  // shared expiry times, so lots tie on expiry and the next keys decide
            command.expires_at_us = start_us_ + (s.c % 3 == 0 ? 6 * kHourUs : s.c % 3 == 1 ? 3 * kDayUs : 40 * kDayUs);
            break;
          case 3: command.expires_at_us = now + (s.x % 5 + 1) * kHourUs; break;
          case 4: command.expires_at_us = now + (s.x % 10 + 1) * kDayUs; break;
          case 5: command.expires_at_us = now + (s.x % 59 + 1) * kSecondUs; break;
          case 6: command.expires_at_us = s.c % 14 == 6 ? now : now + 35 * kDayUs; break;
          default: break;  // no expiry
        }
        break;
      }
      case Op::kSetPlan:
        command = base(CommandType::kSetPlan, actor_for_management(s.b));
        command.plan = fmt::format("plan{}", s.d % 3);
        command.monthly_credits_micro = s.e % 25 == 24 ? 0 : micro(s.x % 3000 + 1);
        if (s.a % 3 != 0) command.rollover = s.a % 3 == 1 ? 1 : 0;
        break;
      case Op::kRenewPlan:
        command = base(CommandType::kRenewPlan, actor_for_management(s.b));
        command.grant = fmt::format("g{}", s.d % 12);
        break;
      case Op::kSetPrice: {
        command = base(CommandType::kSetPrice, s.b % 10 == 9 ? kAlice : "platform");
        command.org.clear();
        command.tool = s.a % 2 == 0 ? "chat" : "image";
        command.model = s.c % 2 == 0 ? "m1" : "m2";
        command.unit = (s.d % 4 == 3) == (command.tool == "chat") ? "image" : "tokens";
        command.credits_per_unit_micro = (s.x % 200) * 10;
        switch (s.e % 4) {
          case 1: command.effective_at_us = now - 2 * kHourUs; break;
          case 2: command.effective_at_us = now - kMinuteUs; break;
          case 3: command.effective_at_us = now + kHourUs; break;
          default: break;  // now
        }
        break;
      }
      case Op::kUsage: {
        command = base(CommandType::kRecordUsage, "");
        pick_user(command, s.a, s.b, s.c);
        command.id = fmt::format("u{}", s.d % 16);
        command.tool = s.e % 2 == 0 ? "chat" : "image";
        command.model = (s.e / 2) % 2 == 0 ? "m1" : "m2";
        command.unit = ((s.e / 4) % 6 == 5) == (command.tool == "chat") ? "image" : "tokens";
        command.quantity = s.x % 20;
        if ((s.x / 20) % 3 != 0) command.credits_micro = micro((s.x / 60) % 1500);
        if (s.g % 2 == 0) steer(command, s);
        switch (s.f % 8) {
          case 4: command.occurred_at_us = now - 2 * kHourUs; break;
          case 5: command.occurred_at_us = now - 3 * kDayUs; break;
          case 6: command.occurred_at_us = now + 4 * kMinuteUs; break;
          case 7: command.occurred_at_us = (s.f / 8) % 2 == 0 ? now - 91 * kDayUs : now + 6 * kMinuteUs; break;
          default: command.occurred_at_us = now; break;
        }
        usage_sent_.push_back(command);
        break;
      }
      case Op::kTransfer:
        command = base(CommandType::kTransferCredits, actor_for_management(s.b));
        command.from = s.c % 10 < 6 ? "primary" : workspace_name(s.c);
        command.to = s.d % 10 < 8 ? workspace_name(s.d % 3 + 1) : workspace_name(s.d);
        command.credits_micro = s.e % 25 == 24 ? 0 : micro(s.x % 3000 + 1);
        if (s.g % 2 == 0) {
          // Often most of what the source has, sometimes a little more.
          const auto from = model_.find_workspace(command.from);
          if (from) {
            const int64_t has = model_.available(*from);
            command.credits_micro = s.x % 4 == 0 ? has + (s.x / 4) % 2 : has * (s.x % 120) / 100 + 1;
          }
        }
        if (!model_.budget && s.g % 3 != 0) {  // a transfer needs budget mode: switch first
          command = base(CommandType::kSetBudgetMode, kAlice);
          command.mode = "budget";
        }
        break;
      case Op::kReserve: {
        command = base(CommandType::kReserve, "");
        pick_user(command, s.a, s.b, s.c);
        command.hold = fmt::format("h{}", s.d % 16);
        command.credits_micro = s.e % 25 == 24 ? 0 : micro(s.x % 2000 + 1);
        static const int64_t kTimeouts[] = {30, 600, 7200, 2 * 86400};
        command.timeout_s = kTimeouts[s.f % 4];
        if (s.g / 2 % 2 == 0) {
          command.tool = "video";
          command.model = "veo";
        }
        if (s.g % 2 == 0) steer(command, s);
        break;
      }
      case Op::kSettle:
      case Op::kRelease: {
        command = base(s.op == Op::kSettle ? CommandType::kSettle : CommandType::kReleaseHold, "");
        // Mostly a hold that is open, if any is.
        std::vector<std::string> open;
        for (const auto& [id, hold] : model_.holds) {
          if (hold.end == model::HoldEnd::kOpen) open.push_back(id);
        }
        std::vector<std::string> closed;
        for (const auto& [id, hold] : model_.holds) {
          if (hold.end != model::HoldEnd::kOpen) closed.push_back(id);
        }
        if (!open.empty() && s.e % 5 != 0) {
          command.hold = open[static_cast<size_t>(s.d) % open.size()];
        } else if (!closed.empty() && s.e % 10 != 0) {
          command.hold = closed[static_cast<size_t>(s.d) % closed.size()];
        } else {
          command.hold = fmt::format("h{}", s.d % 16);
        }
        auto hold = model_.holds.find(command.hold);
        const std::string owner = hold == model_.holds.end() ? kAlice : hold->second.user;
        switch (s.a % 10) {
          case 7: command.actor = kKey; break;
          case 8: command.actor = "platform"; break;
          case 9: command.actor = user_name(s.b); break;  // maybe not the hold's user
          default: command.actor = owner; break;
        }
        if (s.op == Op::kSettle) {
          const int64_t amount = hold == model_.holds.end() ? micro(100) : hold->second.amount;
          switch (s.c % 6) {
            case 0: command.credits_micro = amount; break;
            case 1: command.credits_micro = amount / 2; break;
            case 2: command.credits_micro = 0; break;
            case 3: command.credits_micro = amount + 1; break;
            default: command.credits_micro = micro(s.x % 1000); break;
          }
        }
        break;
      }
      case Op::kSetLimit:
        command = base(CommandType::kSetLimit, actor_for_management(s.b));
        switch (s.a % 9) {
          case 7: break;  // neither: invalid_argument
          case 8:
            command.workspace = workspace_name(s.c);
            command.user = user_name(s.d);
            break;
          default:
            if (s.a % 9 < 4) {
              command.workspace = workspace_name(s.c);
            } else {
              command.user = user_name(s.d);
            }
        }
        command.period = s.e % 2 == 0 ? "day" : "month";
        if (s.x % 5 != 0) command.credits_micro = micro((s.x / 5) % 3000);
        break;
      case Op::kSetMode:
        command = base(CommandType::kSetBudgetMode, actor_for_management(s.b));
        command.mode = s.a % 2 == 0 ? "budget" : "shared";
        break;
      case Op::kDeleteWorkspace:
        command = base(CommandType::kDeleteWorkspace, actor_for_management(s.b));
        command.workspace = workspace_name(s.c);
        if (s.g % 2 == 0) {  // often one that funds an open hold, whose return then has nowhere to go
          for (const auto& [id, hold] : model_.holds) {
            if (hold.end == model::HoldEnd::kOpen && hold.funding != 0 && !model_.workspaces[hold.funding].deleted) {
              command.workspace = model_.workspaces[hold.funding].name;
            }
          }
        }
        break;
      case Op::kCreateWorkspace:
        command = base(CommandType::kCreateWorkspace, actor_for_management(s.b));
        command.workspace = workspace_name(s.c % 3 + 1);
        break;
      default:
        fail("not a command step");
    }
    if (!command.org.empty()) command.org = org;
    return command;
  }

  // A usage command sent before, again: as it was, by another actor (the same
  // content), or changed (a conflict if the first was recorded).
  Command retry(const Step& s) {
    Command command = usage_sent_[static_cast<size_t>(s.d) % usage_sent_.size()];
    switch (s.a % 8) {
      case 5: command.quantity = *command.quantity + 1; break;
      case 6: command.credits_micro = command.credits_micro.value_or(0) + 1; break;
      case 7:  // the same content through the service key
        if (command.user.empty() && command.actor.find('@') != std::string::npos) command.user = command.actor;
        command.actor = kKey;
        break;
      default: break;
    }
    return command;
  }

  // Runs the command now, or now and then queues it to go with the next ones in one
  // group commit.
  void submit(const Command& command, const Step& step) {
    pending_.emplace_back(command, model_.execute(command, clock_.now_us()));
    if (step.f % 5 != 4 || pending_.size() == 4) flush();
  }

  void flush() {
    if (pending_.empty()) return;
    std::vector<Command> batch;
    for (const auto& [command, expected] : pending_) {
      Command decoded;  // through the JSON codec, as clients send it
      const std::string json = encode_command(command);
      if (Status s = decode_command(json, &decoded); !s.ok()) fail("the codec refused " + json + ": " + s.message);
      batch.push_back(std::move(decoded));
    }
    const std::vector<CommandResult> results = engine_->execute(batch);
    for (size_t i = 0; i < results.size(); ++i) {
      trace(fmt::format("{}{} -> {}", pending_.size() > 1 ? "(batch) " : "", encode_command(batch[i]), results[i].to_json()));
    }
    for (size_t i = 0; i < results.size(); ++i) compare(results[i], pending_[i].second);
    pending_.clear();
    if (engine_->store().last_seq() != model_.last_seq) {
      fail(fmt::format("the log ends at {}, the model at {}", engine_->store().last_seq(), model_.last_seq));
    }
    if (engine_->last_time_us() != model_.last_time) fail("the engine time differs from the model's");
    check_state();
    history_.emplace_back(model_.last_seq, org_balance_json());
  }

  void compare(const CommandResult& result, const model::Outcome& expected) {
    if (result.status.code != expected.code) {
      fail(fmt::format("expected {} but the engine answered {}", error_name(expected.code), error_name(result.status.code)));
    }
    if (!expected.ok()) return;
    if (result.seq != expected.seq || result.events != expected.events) {
      fail(fmt::format("expected seq {} with {} events, got seq {} with {}", expected.seq, expected.events, result.seq, result.events));
    }
    std::vector<std::string> members;
    if (expected.duplicate) members.push_back("\"duplicate\":true");
    if (expected.credits) members.push_back(fmt::format("\"credits\":\"{}\"", format_credits(*expected.credits)));
    if (expected.expires_at) members.push_back(fmt::format("\"expires_at\":\"{}\"", format_time(*expected.expires_at)));
    if (expected.returned) members.push_back(fmt::format("\"returned\":\"{}\"", format_credits(*expected.returned)));
    const std::string extra = fmt::format("{}", fmt::join(members, ","));
    if (result.members() != extra) fail(fmt::format("expected the answer members {}, got {}", extra, result.members()));
  }

  // Verify, and a balance as of an earlier sequence number equals what it was then.
  void check_history(const Step& step) {
    trace("verify");
    const VerifyReport report = verify(engine_->store(), &engine_->state());
    if (!report.ok()) fail("verify: " + report.problems.front());
    if (history_.empty()) return;
    const auto& [seq, then] = history_[static_cast<size_t>(step.x) % history_.size()];
    const std::string json = engine_->query(fmt::format(R"({{"query":"balance","actor":"platform","org":"acme","as_of_seq":{}}})", seq));
    if (json.find(then) == std::string::npos) fail(fmt::format("balance as of seq {}: {} lacks {}", seq, json, then));
  }

  // ---- comparing the engine's state with the model's -----------------------------------
  void expect_equal(int64_t actual, int64_t expected, std::string_view what) {
    if (actual != expected) fail(fmt::format("{}: engine {} model {}", what, actual, expected));
  }

  void check_state() {
    const ProjectionSet& state = engine_->state();
    for (const std::string& problem : state.balances.check_invariants()) fail("invariant: " + problem);
    const OrgBalances* b = state.balances.find(kOrg);
    if (b == nullptr) fail("no balances");
    const model::Ledger& m = model_;
    expect_equal(b->granted, m.granted, "granted");
    expect_equal(b->expired, m.expired, "expired");
    expect_equal(b->banked, m.banked, "banked");
    expect_equal(b->held, m.held, "held");
    expect_equal(b->consumed, m.consumed, "consumed");
    expect_equal(b->available(), m.available(), "available");
    expect_equal(static_cast<int64_t>(b->lots.size()), static_cast<int64_t>(m.lots.size()), "lots");
    for (uint32_t id = 0; id < m.lots.size(); ++id) {
      const Lot& lot = b->lots[id];
      const model::Lot& want = m.lots[id];
      const std::string name = fmt::format("lot {}", id);
      if (lot.grant != want.grant || lot_kind_name(lot.kind) != kind_name(want.kind) || lot.from_bank != want.from_bank) fail(name + " differs");
      expect_equal(lot.amount, want.amount, name + " amount");
      expect_equal(lot.expires_at_us, want.expires_at, name + " expiry");
      expect_equal(lot.granted_us, want.granted_at, name + " grant time");
      expect_equal(lot.consumed, want.consumed, name + " consumed");
      expect_equal(lot.expired_amount, want.expired_amount, name + " expired");
      expect_equal(lot.banked_amount, want.banked_amount, name + " banked");
    }
    expect_equal(static_cast<int64_t>(b->workspaces.size()), static_cast<int64_t>(m.workspaces.size()), "workspaces");
    for (uint32_t w = 0; w < m.workspaces.size(); ++w) check_workspace(*b, w);
    for (const auto& [user, spender] : m.spenders) {
      auto it = b->members.find(user);
      expect_equal(it == b->members.end() ? 0 : it->second.held, spender.held, user + " held");
      expect_equal(it == b->members.end() ? 0 : it->second.consumed, spender.consumed, user + " consumed");
    }
    expect_equal(static_cast<int64_t>(b->holds.size()), static_cast<int64_t>(m.holds.size()), "holds");
    for (const auto& [id, want] : m.holds) {
      auto it = b->holds.find(id);
      if (it == b->holds.end()) fail("no hold " + id);
      const Hold& hold = it->second;
      if (static_cast<int>(hold.state) != static_cast<int>(want.end)) fail("hold " + id + " state differs");
      expect_equal(hold.amount, want.amount, "hold " + id + " amount");
      expect_equal(hold.expires_at_us, want.expires_at, "hold " + id + " expiry");
      expect_equal(hold.consumed, want.end == model::HoldEnd::kOpen ? 0 : want.consumed, "hold " + id + " consumed");
      expect_portions(hold.lots, m.ordered(want.lots), "hold " + id);
    }
    expect_equal(static_cast<int64_t>(b->usage_ids.size()), static_cast<int64_t>(m.usage.size()), "usage ids");
    for (const auto& [id, want] : m.usage) {
      const std::optional<UsageRef> got = b->usage_ids.find(id);
      if (!got) fail("no usage id " + id);
      expect_equal(got->amount, want.amount, "usage " + id + " amount");
      expect_equal(static_cast<int64_t>(got->seq), static_cast<int64_t>(want.seq), "usage " + id + " seq");
    }
    check_usage_totals(state);
    check_queries();
  }

  static std::string_view kind_name(model::Kind kind) {
    switch (kind) {
      case model::Kind::kPlan: return "plan";
      case model::Kind::kOneTime: return "one_time";
      case model::Kind::kTopUp: return "top_up";
      case model::Kind::kPromo: return "promo";
    }
    return "?";
  }

  void expect_portions(const std::vector<LotPortion>& actual, const std::vector<std::pair<uint32_t, int64_t>>& expected, const std::string& what) {
    bool same = actual.size() == expected.size();
    for (size_t i = 0; same && i < actual.size(); ++i) same = actual[i].lot == expected[i].first && actual[i].amount == expected[i].second;
    if (same) return;
    std::string a, e;
    for (const LotPortion& p : actual) a += fmt::format(" {}:{}", p.lot, p.amount);
    for (const auto& [lot, amount] : expected) e += fmt::format(" {}:{}", lot, amount);
    fail(fmt::format("{} lots (in consumption order): engine [{}] model [{}]", what, a, e));
  }

  void check_workspace(const OrgBalances& b, uint32_t w) {
    const WorkspaceBalance& ws = b.workspaces[w];
    const model::Workspace& want = model_.workspaces[w];
    const std::string name = fmt::format("workspace {}", w);
    expect_equal(ws.available, model_.available(w), name + " available");
    expect_equal(ws.held, want.held, name + " held");
    expect_equal(ws.consumed, want.consumed, name + " consumed");
    expect_portions(ws.holdings, model_.ordered(want.holdings), name);
    // The statement's running balance ends at what the workspace holds.
    const StatementAccount* entries = engine_->state().statements.entries(kOrg, w);
    expect_equal(entries == nullptr || entries->empty() ? 0 : entries->back().balance, model_.available(w), name + " statement balance");
  }

  // Usage aggregates: per workspace, events and credits; per member, credits.
  void check_usage_totals(const ProjectionSet& state) {
    std::map<uint32_t, std::pair<int64_t, int64_t>> by_workspace;
    std::map<std::string, int64_t> by_user;
    state.usage.for_each(kOrg, [&](const UsageCell& cell, const UsageTotals& totals) {
      by_workspace[cell.workspace].first += totals.events;
      by_workspace[cell.workspace].second += totals.credits;
      by_user[std::string(cell.user)] += totals.credits;
    });
    for (uint32_t w = 0; w < model_.workspaces.size(); ++w) {
      expect_equal(by_workspace[w].first, model_.workspaces[w].usage_events, fmt::format("usage events of workspace {}", w));
      expect_equal(by_workspace[w].second, model_.workspaces[w].consumed, fmt::format("usage credits of workspace {}", w));
    }
    for (const auto& [user, spender] : model_.spenders) expect_equal(by_user[user], spender.consumed, "usage credits of " + user);
  }

  static std::string limit_json(const std::optional<int64_t>& limit, int64_t used, std::string_view period) {
    if (!limit) return {};
    return fmt::format("\"{}\":{{\"limit\":\"{}\",\"used\":\"{}\"}}", period, format_credits(*limit), format_credits(used));
  }

  // The balance queries answer what the model says, limits' use included.
  // What the organization's balance query must say, by the model.
  std::string org_balance_json() const {
    const model::Ledger& m = model_;
    return fmt::format("\"available\":\"{}\",\"held\":\"{}\",\"consumed\":\"{}\",\"granted\":\"{}\",\"expired\":\"{}\",\"banked\":\"{}\"",
                       format_credits(m.available()), format_credits(m.held), format_credits(m.consumed), format_credits(m.granted),
                       format_credits(m.expired), format_credits(m.banked));
  }

  void check_queries() {
    const model::Ledger& m = model_;
    const std::string org_json = engine_->query(R"({"query":"balance","actor":"platform","org":"acme"})");
    const std::string org_expected = org_balance_json();
    if (org_json.find(org_expected) == std::string::npos) fail("org balance query: " + org_json + " lacks " + org_expected);
    for (uint32_t w = 0; w < m.workspaces.size(); ++w) {
      const model::Workspace& ws = m.workspaces[w];
      if (ws.deleted) continue;
      const std::string json = engine_->query(fmt::format(R"({{"query":"balance","actor":"platform","org":"acme","workspace":"{}"}})", ws.name));
      // A query reads the period buckets of the engine's now: the clock, or the last
      // event's time when the clock has not passed it.
      const int64_t now = std::max(clock_.now_us(), m.last_time);
      std::vector<std::string> limits;
      for (const std::string& part : {limit_json(ws.limits.day, m.used(w, {}, true, now), "day"),
                                      limit_json(ws.limits.month, m.used(w, {}, false, now), "month")}) {
        if (!part.empty()) limits.push_back(part);
      }
      const std::string expected = fmt::format("\"available\":\"{}\",\"held\":\"{}\",\"consumed\":\"{}\",\"spendable\":\"{}\",\"limits\":{{{}}}",
                                               format_credits(m.available(w)), format_credits(ws.held), format_credits(ws.consumed),
                                               format_credits(m.available(m.budget ? w : 0)), fmt::join(limits, ","));
      if (json.find(expected) == std::string::npos) fail("workspace balance query: " + json + " lacks " + expected);
    }
  }

  void trace(std::string line) {
    trace_.push_back(std::move(line));
  }

  [[noreturn]] void fail(const std::string& why) {
    std::string text = "\n";
    const size_t from = trace_.size() > 60 ? trace_.size() - 60 : 0;
    for (size_t i = from; i < trace_.size(); ++i) text += "  " + trace_[i] + "\n";
    RC_FAIL(why + "\nlast steps:" + text);
  }

  int64_t start_us_;
  ManualClock clock_;
  TempDir dir_;  // outlives the engines, which are declared after it
  TempDir import_dir_;
  std::unique_ptr<Engine> engine_;
  model::Ledger model_;
  std::vector<Command> usage_sent_;
  std::vector<std::pair<Command, model::Outcome>> pending_;  // commands for the next group commit
  std::vector<std::pair<uint64_t, std::string>> history_;     // (log end, org balance then)
  std::vector<std::string> trace_;
};

// Start times near the end of a day, of a month, of a year.
const int64_t kStarts[] = {
    1'769'896'800'000'000,  // 2026-01-31T22:00:00Z
    1'773'619'140'000'000,  // 2026-03-15T23:59:00Z
    1'798'758'000'000'000,  // 2026-12-31T23:00:00Z
};

RC_GTEST_PROP(CreditModel, EngineMatchesTheModel, ()) {
  const int start = *rc::gen::resize(100, rc::gen::inRange(0, 3));
  const bool budget = *rc::gen::arbitrary<bool>();
  const auto count = *rc::gen::resize(100, rc::gen::inRange<size_t>(1, 81));
  const auto steps = *rc::gen::container<std::vector<Step>>(count, step_gen());
  Harness harness(kStarts[start], budget);
  for (const Step& step : steps) harness.run(step);
  harness.finish();
}

TEST(CreditModel, StartTimesAreWhatTheyClaim) {
  int64_t t;
  ASSERT_TRUE(parse_time("2026-01-31T22:00:00Z", &t));
  EXPECT_EQ(t, kStarts[0]);
  ASSERT_TRUE(parse_time("2026-03-15T23:59:00Z", &t));
  EXPECT_EQ(t, kStarts[1]);
  ASSERT_TRUE(parse_time("2026-12-31T23:00:00Z", &t));
  EXPECT_EQ(t, kStarts[2]);
}

// The model's calendar agrees with the engine's where limits and plans depend on it.
RC_GTEST_PROP(CreditModel, CalendarsAgree, ()) {
  const int64_t time_us = *rc::gen::inRange<int64_t>(0, 4'102'444'800'000'000);  // 1970..2100
  RC_ASSERT(model::utc_day(time_us) == day_of(time_us));
  RC_ASSERT(add_months(time_us, 1) == model::one_month_later(time_us));
  const int64_t next_day = time_us + kDayUs;
  RC_ASSERT((model::utc_month(time_us) == model::utc_month(next_day)) == (month_of(time_us) == month_of(next_day)));
}

}  // namespace
}  // namespace tally
