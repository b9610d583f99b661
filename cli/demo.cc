#include "cli/demo.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "engine/engine.h"
#include "replay/replay.h"

namespace tally::cli {
namespace {

constexpr const char* kTeams[] = {"design", "research", "marketing", "support", "video", "audio", "platform", "sales"};
constexpr const char* kPeople[] = {"ana", "ben", "chen", "dara", "eli", "fatima", "gus", "hana", "ivan", "jo", "kai", "lea"};

Command make(CommandType type, std::string actor, std::string org) {
  Command command;
  command.type = type;
  command.actor = std::move(actor);
  command.org = std::move(org);
  return command;
}

// The commands of one generated organization: its workspaces, invitations, acceptances
// and a few changes, and some requests that must be refused.
std::vector<Command> organization_commands(uint32_t index, std::mt19937_64& random) {
  const std::string org = fmt::format("org-{:03}", index);
  const std::string owner = fmt::format("owner@{}.example", org);
  std::vector<Command> commands;
  Command create = make(CommandType::kCreateOrg, owner, org);
  create.name = fmt::format("Organization {}", index);
  create.mode = index % 2 == 0 ? "shared" : "budget";
  commands.push_back(create);
  const uint32_t teams = 2 + static_cast<uint32_t>(random() % 5);
  for (uint32_t t = 0; t < teams; ++t) {
    Command workspace = make(CommandType::kCreateWorkspace, owner, org);
    workspace.workspace = kTeams[t];
    commands.push_back(workspace);
  }
  const uint32_t people = 4 + static_cast<uint32_t>(random() % 8);
  for (uint32_t p = 0; p < people; ++p) {
    const std::string user = fmt::format("{}@{}.example", kPeople[p], org);
    Command invite = make(CommandType::kInviteMember, owner, org);
    invite.user = user;
    invite.role = p == 0 ? "admin" : "member";
    invite.workspace = kTeams[random() % teams];
    commands.push_back(invite);
    if (p + 1 < people) commands.push_back(make(CommandType::kAcceptInvite, user, org));  // the last one never accepts
  }
  // An admin moves someone; a member tries to create a workspace (refused).
  const std::string admin = fmt::format("{}@{}.example", kPeople[0], org);
  Command move = make(CommandType::kMoveMember, admin, org);
  move.user = fmt::format("{}@{}.example", kPeople[1], org);
  move.workspace = kTeams[0];
  commands.push_back(move);
  Command refused = make(CommandType::kCreateWorkspace, fmt::format("{}@{}.example", kPeople[2], org), org);
  refused.workspace = "shadow-it";
  commands.push_back(refused);
  return commands;
}

}  // namespace

int run_demo(const DemoOptions& options) {
  namespace fs = std::filesystem;
  fs::path dir = options.data_dir;
  const bool temporary = dir.empty();
  if (temporary) {
    dir = fs::temp_directory_path() / fmt::format("tally-demo-{}", getpid());
    fs::remove_all(dir);
  }
  int exit_code = 0;
  {
    std::unique_ptr<Engine> engine;
    EngineOptions engine_options;
    engine_options.data_dir = dir.string();
    if (Status s = Engine::open(engine_options, &engine); !s.ok()) {
      std::cerr << "tally demo: " << s.message << '\n';
      return 1;
    }
    std::mt19937_64 random(options.seed);
    std::vector<Command> commands;
    for (uint32_t i = 0; i < options.orgs; ++i) {
      std::vector<Command> org = organization_commands(i, random);
      commands.insert(commands.end(), org.begin(), org.end());
    }
    const auto start = std::chrono::steady_clock::now();
    uint64_t accepted = 0, refused = 0;
    for (size_t i = 0; i < commands.size(); i += kBatchCommandsMax) {
      const size_t n = std::min(kBatchCommandsMax, commands.size() - i);
      for (const CommandResult& result : engine->execute(std::span(commands).subspan(i, n))) {
        (result.status.ok() ? accepted : refused)++;
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << fmt::format("tally demo: {} commands in {:.3f} s ({:.0f} commands/s): {} accepted, {} refused\n\n",
                             commands.size(), seconds, static_cast<double>(commands.size()) / seconds, accepted, refused);
    for (uint32_t i = 0; i < options.orgs; ++i) {
      const std::string org = fmt::format("org-{:03}", i);
      std::cout << engine->query(fmt::format(R"({{"query":"org","actor":"platform","org":"{}"}})", org)) << '\n';
      std::cout << engine->query(fmt::format(R"({{"query":"workspaces","actor":"platform","org":"{}"}})", org)) << '\n';
      std::cout << engine->query(fmt::format(R"({{"query":"members","actor":"platform","org":"{}"}})", org)) << "\n\n";
    }
    const VerifyReport report = verify(engine->store(), &engine->state());
    std::cout << fmt::format("verify: {} ({} events, {} batches, head {})\n", report.ok() ? "ok" : "FAILED", report.events,
                             report.batches, report.head_hash);
    for (const std::string& problem : report.problems) std::cout << "problem: " << problem << '\n';
    exit_code = report.ok() ? 0 : 1;
  }
  if (temporary) fs::remove_all(dir);
  return exit_code;
}

}  // namespace tally::cli
