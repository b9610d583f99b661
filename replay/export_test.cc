#include "replay/export.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "engine/test_util.h"
#include "replay/replay.h"

namespace tally {
namespace {

using testing::TestEngine;

// A history touching every command type, including ones whose events carry only ids
// (rename, delete, move), a workspace name reused after a delete, and refusals.
void fill(TestEngine& t) {
  const std::vector<std::string> lines = {
      R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme \"A\" caf\u00e9","mode":"budget","id":"c-1"})",
      R"({"cmd":"create_org","actor":"platform","org":"beta","owner":"olga@beta.io"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"admin","workspace":"design"})",
      R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
      R"({"cmd":"invite_member","actor":"bob@acme.io","org":"acme","user":"cy@acme.io","role":"member","workspace":"design"})",
      R"({"cmd":"create_workspace","actor":"cy@acme.io","org":"acme","workspace":"refused"})",
      R"({"cmd":"rename_workspace","actor":"bob@acme.io","org":"acme","workspace":"design","name":"studio"})",
      R"({"cmd":"create_workspace","actor":"bob@acme.io","org":"acme","workspace":"design"})",
      R"({"cmd":"move_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","workspace":"design"})",
      R"({"cmd":"delete_workspace","actor":"alice@acme.io","org":"acme","workspace":"studio"})",
      R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"studio"})",
      R"({"cmd":"change_role","actor":"alice@acme.io","org":"acme","user":"cy@acme.io","role":"admin"})",
      R"({"cmd":"accept_invite","actor":"cy@acme.io","org":"acme"})",
      R"({"cmd":"create_service_key","actor":"platform","org":"acme","key":"backend"})",
      R"({"cmd":"revoke_service_key","actor":"platform","org":"acme","key":"backend"})",
      R"({"cmd":"set_budget_mode","actor":"bob@acme.io","org":"acme","mode":"shared"})",
      R"({"cmd":"transfer_ownership","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})",
      R"({"cmd":"remove_member","actor":"bob@acme.io","org":"acme","user":"alice@acme.io"})",
      R"({"cmd":"delete_org","actor":"olga@beta.io","org":"beta"})",
  };
  for (size_t i = 0; i < lines.size(); ++i) {
    t.clock().advance(1'000'000);
    const CommandResult result = t.run(lines[i]);
    EXPECT_EQ(result.status.ok(), i != 6) << lines[i] << ": " << result.status.message;
  }
}

std::string export_of(const Store& store, ExportStats* stats = nullptr) {
  std::ostringstream out;
  ExportStats scratch;
  const Status status = export_commands(store, out, stats != nullptr ? stats : &scratch);
  EXPECT_TRUE(status.ok()) << status.message;
  return out.str();
}

TEST(Export, WritesOneTimedLinePerAcceptedCommand) {
  TestEngine t;
  fill(t);
  ExportStats stats;
  const std::string text = export_of(t.engine().store(), &stats);
  EXPECT_EQ(stats.commands, 19u);
  EXPECT_EQ(stats.events, 19u);
  std::istringstream lines(text);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    ++count;
    Command command;
    const Status status = decode_command(line, &command);
    ASSERT_TRUE(status.ok()) << line << ": " << status.message;
    EXPECT_TRUE(command.at_us.has_value()) << line;
  }
  EXPECT_EQ(count, 19);
  // Names as they were when the command ran, not as they are now.
  EXPECT_NE(text.find(R"("cmd":"rename_workspace","actor":"bob@acme.io",)"), std::string::npos);
  EXPECT_NE(text.find(R"("org":"acme","name":"studio","workspace":"design"})"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("cmd":"delete_workspace","actor":"alice@acme.io","at":"2026-11-23T10:00:11Z","org":"acme","workspace":"studio"})"),
            std::string::npos)
      << text;
  // The client's command id and the service key's hash survive; no secret is exported.
  EXPECT_NE(text.find(R"("id":"c-1")"), std::string::npos);
  EXPECT_NE(text.find(R"("secret_sha256":")"), std::string::npos);
  EXPECT_EQ(text.find("tsk_"), std::string::npos);
}

TEST(Import, ReproducesTheSameLogTimesAndProjections) {
  TestEngine original;
  fill(original);
  const std::string text = export_of(original.engine().store());

  TestEngine copy("copy");
  copy.clock().set(0);  // import takes every time from the lines, not the clock
  std::istringstream in(text);
  ImportStats stats;
  const Status status = import_commands(copy.engine(), in, &stats);
  ASSERT_TRUE(status.ok()) << status.message;
  EXPECT_EQ(stats.commands, 19u);
  EXPECT_EQ(stats.events, 19u);
  EXPECT_EQ(copy.engine().store().last_seq(), original.engine().store().last_seq());
  EXPECT_EQ(projection_rows(copy.engine().state()), projection_rows(original.engine().state()));
  EXPECT_EQ(copy.engine().last_time_us(), original.engine().last_time_us());
  // Every record's envelope is the same, byte for byte.
  std::vector<std::string> a, b;
  auto collect = [](std::vector<std::string>* out) {
    return [out](uint64_t, std::string_view envelope) {
      out->emplace_back(envelope);
      return true;
    };
  };
  ASSERT_TRUE(original.engine().store().read_log(1, 19, collect(&a)).ok());
  ASSERT_TRUE(copy.engine().store().read_log(1, 19, collect(&b)).ok());
  EXPECT_EQ(a, b);
  for (const char* q : {R"({"query":"members","actor":"platform","org":"acme"})", R"({"query":"workspaces","actor":"platform","org":"acme"})",
                        R"({"query":"org","actor":"platform","org":"beta"})",
                        R"({"query":"members","actor":"platform","org":"acme","as_of_seq":9})"}) {
    EXPECT_EQ(copy.query(q), original.query(q)) << q;
  }
  EXPECT_TRUE(verify(copy.engine().store(), &copy.engine().state()).ok());
  // And the copy exports the same text.
  EXPECT_EQ(export_of(copy.engine().store()), text);
}

TEST(Import, NeedsAnEmptyStore) {
  TestEngine t;
  fill(t);
  std::istringstream in(export_of(t.engine().store()));
  ImportStats stats;
  EXPECT_EQ(import_commands(t.engine(), in, &stats).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(stats.commands, 0u);
}

TEST(Import, SkipsBlankLines) {
  TestEngine t;
  std::istringstream in("\n" R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","at":"2026-01-01T00:00:00Z"})" "\n\n");
  ImportStats stats;
  ASSERT_TRUE(import_commands(t.engine(), in, &stats).ok());
  EXPECT_EQ(stats.commands, 1u);
}

TEST(Import, ALineWithoutAtIsMissingFieldNamingTheLine) {
  TestEngine t;
  std::istringstream in(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme"})" "\n");
  ImportStats stats;
  const Status status = import_commands(t.engine(), in, &stats);
  EXPECT_EQ(status.code, ErrorCode::kMissingField);
  EXPECT_NE(status.message.find("line 1"), std::string::npos) << status.message;
  EXPECT_EQ(t.engine().store().last_seq(), 0u);
}

// Regression: a line that failed to decode used to drop the lines before it that were
// still waiting for their group commit, although import promises they stay committed.
TEST(ImportRegression, AnUndecodableLineDroppedTheLinesBeforeIt) {
  TestEngine t;
  std::istringstream in(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","at":"2026-01-01T00:00:00Z"})" "\n"
                        R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"a","at":"2026-01-01T00:00:01Z"})" "\n"
                        "this is not json\n"
                        R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"b","at":"2026-01-01T00:00:02Z"})" "\n");
  ImportStats stats;
  const Status status = import_commands(t.engine(), in, &stats);
  EXPECT_EQ(status.code, ErrorCode::kInvalidJson);
  EXPECT_NE(status.message.find("line 3"), std::string::npos) << status.message;
  EXPECT_EQ(stats.commands, 2u);
  EXPECT_EQ(t.engine().store().last_seq(), 2u) << "lines 1 and 2 stay committed";
  const Org* acme = t.engine().state().orgs.find("acme");
  ASSERT_NE(acme, nullptr);
  EXPECT_TRUE(acme->find_workspace("a").has_value());
  EXPECT_FALSE(acme->find_workspace("b").has_value()) << "nothing after the bad line";
}

TEST(Import, AMissingAtAfterGoodLinesKeepsTheGoodLines) {
  TestEngine t;
  std::istringstream in(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","at":"2026-01-01T00:00:00Z"})" "\n"
                        R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"a"})" "\n");
  ImportStats stats;
  const Status status = import_commands(t.engine(), in, &stats);
  EXPECT_EQ(status.code, ErrorCode::kMissingField);
  EXPECT_NE(status.message.find("line 2"), std::string::npos) << status.message;
  EXPECT_EQ(t.engine().store().last_seq(), 1u);
}

TEST(Import, ARefusedLineIsReportedWithItsNumberAndTheLinesBeforeItStay) {
  TestEngine t;
  std::istringstream in(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","at":"2026-01-01T00:00:00Z"})" "\n"
                        R"({"cmd":"create_workspace","actor":"zed@evil.io","org":"acme","workspace":"x","at":"2026-01-01T00:00:01Z"})" "\n");
  ImportStats stats;
  const Status status = import_commands(t.engine(), in, &stats);
  EXPECT_EQ(status.code, ErrorCode::kForbidden);
  EXPECT_NE(status.message.find("line 2"), std::string::npos) << status.message;
  EXPECT_EQ(t.engine().store().last_seq(), 1u);
  EXPECT_NE(t.engine().state().orgs.find("acme"), nullptr);
}

}  // namespace
}  // namespace tally
