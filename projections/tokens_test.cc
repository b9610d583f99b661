#include "projections/tokens.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "engine/engine.h"
#include "replay/export.h"
#include "replay/replay.h"

namespace tally {
namespace {

std::filesystem::path fresh_dir(std::string_view name) {
  auto dir = std::filesystem::temp_directory_path() / fmt::format("tally-tokens-test-{}-{}", ::getpid(), name);
  std::filesystem::remove_all(dir);
  return dir;
}

std::unique_ptr<Engine> open(const std::filesystem::path& dir) {
  EngineOptions options;
  options.data_dir = dir.string();
  std::unique_ptr<Engine> engine;
  EXPECT_TRUE(Engine::open(options, &engine).ok());
  return engine;
}

std::vector<CommandResult> run(Engine& engine, std::initializer_list<const char*> lines) {
  std::vector<Command> commands;
  for (const char* line : lines) {
    Command command;
    EXPECT_TRUE(decode_command(line, &command).ok()) << line;
    commands.push_back(command);
  }
  return engine.execute(commands);
}

TEST(Tokens, CreateRevokeReopenExportImport) {
  const auto dir = fresh_dir("a");
  const auto copy = fresh_dir("b");
  {
    auto engine = open(dir);
    auto results = run(*engine, {R"({"cmd":"create_user_token","actor":"platform","user":"bob@acme.io","token":"t1"})",
                                 R"({"cmd":"create_user_token","actor":"platform","user":"ann@acme.io","token":"t2"})",
                                 R"({"cmd":"create_user_token","actor":"platform","user":"eve@acme.io","token":"t1"})",
                                 R"({"cmd":"create_user_token","actor":"bob@acme.io","user":"bob@acme.io","token":"t3"})",
                                 R"({"cmd":"revoke_user_token","actor":"eve@acme.io","token":"t1"})",
                                 R"({"cmd":"revoke_user_token","actor":"bob@acme.io","token":"t1"})",
                                 R"({"cmd":"revoke_user_token","actor":"platform","token":"t9"})"});
    EXPECT_TRUE(results[0].status.ok());
    EXPECT_NE(results[0].members().find("\"secret\":\"tut_"), std::string::npos);
    EXPECT_TRUE(results[1].status.ok());
    EXPECT_EQ(results[2].status.code, ErrorCode::kKeyExists);
    EXPECT_EQ(results[3].status.code, ErrorCode::kForbidden);
    EXPECT_EQ(results[4].status.code, ErrorCode::kForbidden);
    EXPECT_TRUE(results[5].status.ok());  // a user revokes their own token
    EXPECT_EQ(results[6].status.code, ErrorCode::kUnknownKey);
    const UserToken* t1 = engine->state().tokens.find("t1");
    ASSERT_NE(t1, nullptr);
    EXPECT_TRUE(t1->revoked);
    EXPECT_EQ(t1->user, "bob@acme.io");
    EXPECT_EQ(t1->secret_sha256.size(), 32u);
  }
  std::string exported;
  {
    auto engine = open(dir);  // rows reload from the store
    const UserToken* t2 = engine->state().tokens.find("t2");
    ASSERT_NE(t2, nullptr);
    EXPECT_FALSE(t2->revoked);
    EXPECT_TRUE(engine->state().tokens.find("t1")->revoked);
    EXPECT_TRUE(verify(engine->store(), &engine->state()).ok());
    std::ostringstream out;
    ExportStats stats;
    ASSERT_TRUE(export_commands(engine->store(), out, &stats).ok());
    exported = out.str();
    EXPECT_EQ(stats.commands, 3u);
  }
  auto original = open(dir);
  auto imported = open(copy);
  std::istringstream in(exported);
  ImportStats stats;
  ASSERT_TRUE(import_commands(*imported, in, &stats).ok());
  EXPECT_EQ(projection_rows(imported->state()), projection_rows(original->state()));
  original.reset();
  imported.reset();
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(copy);
}

}  // namespace
}  // namespace tally
