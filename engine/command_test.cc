#include "engine/command.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/json_writer.h"
#include "engine/test_util.h"
#include "engine/values.h"

namespace tally {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// A valid value for every field of the catalog.
const Fields kSampleValues = {
    {"actor", "alice@acme.io"},
    {"id", "c-1"},
    {"at", "2026-11-23T10:00:00Z"},
    {"org", "acme"},
    {"name", "Acme Inc"},
    {"mode", "budget"},
    {"workspace", "design"},
    {"user", "bob@acme.io"},
    {"role", "admin"},
    {"owner", "carol@acme.io"},
    {"key", "backend"},
    {"secret_sha256", std::string(64, 'a')},
};

std::string sample(std::string_view field) {
  for (const auto& [name, value] : kSampleValues) {
    if (name == field) return value;
  }
  ADD_FAILURE() << "no sample value for " << field;
  return {};
}

// What SPEC §4 and command.h say each command takes ("actor" is always required; "id"
// and "at" are always optional).
struct Expected {
  std::string name;
  CommandType type;
  std::vector<std::string> required;
  std::vector<std::string> optional;
};

const std::vector<Expected> kExpected = {
    {"create_org", CommandType::kCreateOrg, {"org"}, {"name", "mode", "owner"}},
    {"delete_org", CommandType::kDeleteOrg, {"org"}, {}},
    {"set_budget_mode", CommandType::kSetBudgetMode, {"org", "mode"}, {}},
    {"create_workspace", CommandType::kCreateWorkspace, {"org", "workspace"}, {}},
    {"rename_workspace", CommandType::kRenameWorkspace, {"org", "workspace", "name"}, {}},
    {"delete_workspace", CommandType::kDeleteWorkspace, {"org", "workspace"}, {}},
    {"invite_member", CommandType::kInviteMember, {"org", "user", "role", "workspace"}, {}},
    {"accept_invite", CommandType::kAcceptInvite, {"org"}, {}},
    {"change_role", CommandType::kChangeRole, {"org", "user", "role"}, {}},
    {"move_member", CommandType::kMoveMember, {"org", "user", "workspace"}, {}},
    {"remove_member", CommandType::kRemoveMember, {"org", "user"}, {}},
    {"transfer_ownership", CommandType::kTransferOwnership, {"org", "user"}, {}},
    {"create_service_key", CommandType::kCreateServiceKey, {"org", "key"}, {"secret_sha256"}},
    {"revoke_service_key", CommandType::kRevokeServiceKey, {"org", "key"}, {}},
};

// {"cmd":<cmd>, <fields in order>}, properly escaped.
std::string json_of(std::string_view cmd, const Fields& fields) {
  JsonWriter out;
  out.begin_object().field("cmd", cmd);
  for (const auto& [name, value] : fields) out.field(name, value);
  out.end_object();
  return out.take();
}

Fields required_fields(const Expected& expected) {
  Fields fields = {{"actor", sample("actor")}};
  for (const std::string& name : expected.required) fields.emplace_back(name, sample(name));
  return fields;
}

Status decode(std::string_view json, Command* command = nullptr) {
  Command scratch;
  return decode_command(json, command != nullptr ? command : &scratch);
}

std::string text_field(const Command& command, std::string_view field) {
  if (field == "actor") return command.actor;
  if (field == "id") return command.id;
  if (field == "at") return command.at_us ? format_time(*command.at_us) : std::string();
  if (field == "org") return command.org;
  if (field == "name") return command.name;
  if (field == "mode") return command.mode;
  if (field == "workspace") return command.workspace;
  if (field == "user") return command.user;
  if (field == "role") return command.role;
  if (field == "owner") return command.owner;
  if (field == "key") return command.key;
  if (field == "secret_sha256") return command.secret_sha256;
  ADD_FAILURE() << "unknown field " << field;
  return {};
}

void expect_same(const Command& a, const Command& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.at_us, b.at_us);
  for (const auto& [field, value] : kSampleValues) EXPECT_EQ(text_field(a, field), text_field(b, field)) << field;
}

TEST(DecodeCommand, TheTableCoversEveryCommandType) {
  std::set<CommandType> types;
  for (const Expected& expected : kExpected) {
    types.insert(expected.type);
    EXPECT_EQ(command_name(expected.type), expected.name);
  }
  EXPECT_EQ(types.size(), 14u);
  EXPECT_EQ(static_cast<int>(*types.rbegin()), 13) << "a new command type needs a row in kExpected";
}

TEST(DecodeCommand, DecodesEveryCommandWithItsRequiredFields) {
  for (const Expected& expected : kExpected) {
    SCOPED_TRACE(expected.name);
    const Fields fields = required_fields(expected);
    Command command;
    const Status status = decode(json_of(expected.name, fields), &command);
    ASSERT_TRUE(status.ok()) << status.message;
    EXPECT_EQ(command.type, expected.type);
    for (const auto& [name, value] : fields) EXPECT_EQ(text_field(command, name), value) << name;
    // Fields not given stay empty.
    for (const auto& sample : kSampleValues) {
      const std::string_view name = sample.first;
      if (std::none_of(fields.begin(), fields.end(), [&](const auto& f) { return f.first == name; })) {
        EXPECT_EQ(text_field(command, name), "") << name;
      }
    }
  }
}

TEST(DecodeCommand, DecodesEveryCommandWithAllItsOptionalFields) {
  for (const Expected& expected : kExpected) {
    SCOPED_TRACE(expected.name);
    Fields fields = required_fields(expected);
    for (const std::string& name : expected.optional) fields.emplace_back(name, sample(name));
    fields.emplace_back("id", sample("id"));
    fields.emplace_back("at", sample("at"));
    Command command;
    const Status status = decode(json_of(expected.name, fields), &command);
    ASSERT_TRUE(status.ok()) << status.message;
    for (const auto& [name, value] : fields) EXPECT_EQ(text_field(command, name), value) << name;
    ASSERT_TRUE(command.at_us.has_value());
    EXPECT_EQ(*command.at_us, 1'795'428'000'000'000);
  }
}

TEST(DecodeCommand, EachRequiredFieldMissingIsMissingFieldNamingIt) {
  for (const Expected& expected : kExpected) {
    const Fields fields = required_fields(expected);
    for (size_t drop = 0; drop < fields.size(); ++drop) {
      SCOPED_TRACE(expected.name + " without " + fields[drop].first);
      Fields partial = fields;
      partial.erase(partial.begin() + static_cast<std::ptrdiff_t>(drop));
      const Status status = decode(json_of(expected.name, partial));
      EXPECT_EQ(status.code, ErrorCode::kMissingField) << status.message;
      EXPECT_NE(status.message.find('"' + fields[drop].first + '"'), std::string::npos) << status.message;
    }
  }
}

TEST(DecodeCommand, MissingCmdIsMissingField) {
  const Status status = decode(R"({"actor":"alice@acme.io","org":"acme"})");
  EXPECT_EQ(status.code, ErrorCode::kMissingField);
  EXPECT_NE(status.message.find("cmd"), std::string::npos);
}

TEST(DecodeCommand, EveryFieldACommandDoesNotTakeIsUnknownField) {
  for (const Expected& expected : kExpected) {
    std::set<std::string> allowed = {"actor", "id", "at"};
    allowed.insert(expected.required.begin(), expected.required.end());
    allowed.insert(expected.optional.begin(), expected.optional.end());
    for (const auto& [name, value] : kSampleValues) {
      if (allowed.contains(name)) continue;
      SCOPED_TRACE(expected.name + " with " + name);
      Fields fields = required_fields(expected);
      fields.emplace_back(name, value);
      const Status status = decode(json_of(expected.name, fields));
      EXPECT_EQ(status.code, ErrorCode::kUnknownField) << status.message;
      EXPECT_NE(status.message.find('"' + name + '"'), std::string::npos) << status.message;
    }
    for (const char* stranger : {"bogus", "Org", "ORG", "org ", "", "credits", "query"}) {
      SCOPED_TRACE(expected.name + " with \"" + stranger + "\"");
      Fields fields = required_fields(expected);
      fields.emplace_back(stranger, "x");
      EXPECT_EQ(decode(json_of(expected.name, fields)).code, ErrorCode::kUnknownField);
    }
  }
}

TEST(DecodeCommand, UnknownCommandIsUnknownCommand) {
  for (const char* cmd : {"create_orgs", "CREATE_ORG", "", "grant", "balance"}) {
    const Status status = decode(json_of(cmd, {{"actor", "alice@acme.io"}, {"org", "acme"}}));
    EXPECT_EQ(status.code, ErrorCode::kUnknownCommand) << cmd;
  }
}

TEST(DecodeCommand, MalformedJsonIsInvalidJson) {
  for (const char* json : {"", " ", "not json", "{", "}", R"({"cmd":"create_org")",
                           R"({"cmd":"create_org","actor":"a@b.c","org":"acme",})", R"({"cmd":"create_org" "org":"x"})",
                           R"({'cmd':'create_org'})", R"({cmd:"create_org"})", R"({"cmd":"create_org","org":"acme"} x)",
                           R"({"cmd":"create_org","org":"ac\qme"})", "[]", "[1,2]", "\"create_org\"", "42", "null",
                           "true", "{\"cmd\":\"create_org\",\"actor\":\"a@b.c\",\"org\":\"acme\",\"name\":\"\xff\"}"}) {
    const Status status = decode(json);
    EXPECT_EQ(status.code, ErrorCode::kInvalidJson) << json << " -> " << error_name(status.code);
  }
}

TEST(DecodeCommand, NonStringValuesAreInvalidArgument) {
  for (const char* value : {"42", "-1", "1.5", "true", "false", "null", "[]", "[\"acme\"]", "{}", "{\"id\":\"acme\"}"}) {
    const std::string org = std::string(R"({"cmd":"delete_org","actor":"alice@acme.io","org":)") + value + "}";
    EXPECT_EQ(decode(org).code, ErrorCode::kInvalidArgument) << org;
    const std::string actor = std::string(R"({"cmd":"delete_org","org":"acme","actor":)") + value + "}";
    EXPECT_EQ(decode(actor).code, ErrorCode::kInvalidArgument) << actor;
    const std::string cmd = std::string(R"({"actor":"alice@acme.io","org":"acme","cmd":)") + value + "}";
    EXPECT_EQ(decode(cmd).code, ErrorCode::kInvalidArgument) << cmd;
    const std::string at = std::string(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme","at":)") + value + "}";
    EXPECT_EQ(decode(at).code, ErrorCode::kInvalidArgument) << at;
  }
}

TEST(DecodeCommand, DuplicateFieldsAreInvalidArgument) {
  for (const char* json : {R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme","org":"acme"})",
                           R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme","org":"other"})",
                           R"({"cmd":"delete_org","actor":"alice@acme.io","actor":"bob@acme.io","org":"acme"})",
                           R"({"cmd":"delete_org","cmd":"delete_org","actor":"alice@acme.io","org":"acme"})",
                           R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme","id":"1","id":"2"})"}) {
    const Status status = decode(json);
    EXPECT_EQ(status.code, ErrorCode::kInvalidArgument) << json;
    EXPECT_NE(status.message.find("twice"), std::string::npos) << status.message;
  }
}

TEST(DecodeCommand, CommandsOverTheSizeLimitAreTooLarge) {
  const std::string base = R"({"cmd":"delete_org","actor":"alice@acme.io","org":"acme"})";
  // JSON whitespace pads a valid command to exactly the limit: still accepted.
  std::string at_limit = base;
  at_limit.insert(1, kCommandBytesMax - base.size(), ' ');
  ASSERT_EQ(at_limit.size(), kCommandBytesMax);
  EXPECT_TRUE(decode(at_limit).ok());
  std::string over = base;
  over.insert(1, kCommandBytesMax + 1 - base.size(), ' ');
  EXPECT_EQ(decode(over).code, ErrorCode::kTooLarge);
  // Size is checked before anything else, even for garbage.
  EXPECT_EQ(decode(std::string(kCommandBytesMax + 1, 'x')).code, ErrorCode::kTooLarge);
  EXPECT_EQ(decode(std::string(10 * kCommandBytesMax, '{')).code, ErrorCode::kTooLarge);
}

// Each (field, bad value) is refused with invalid_argument naming the field; each
// (field, good value) decodes.
struct ValueCase {
  std::string cmd;
  std::string field;
  std::string value;
  bool valid;
};

std::vector<ValueCase> value_cases() {
  const std::string max_id(64, 'i');
  return {
      {"delete_org", "org", "acme", true},
      {"delete_org", "org", max_id, true},
      {"delete_org", "org", "a.b_c-9", true},
      {"delete_org", "org", "", false},
      {"delete_org", "org", max_id + "i", false},
      {"delete_org", "org", "-acme", false},
      {"delete_org", "org", "ac me", false},
      {"delete_org", "org", "ac/me", false},
      {"delete_org", "org", "ac\xc3\xa9", false},
      {"create_workspace", "workspace", "design", true},
      {"create_workspace", "workspace", "", false},
      {"create_workspace", "workspace", "De sign", false},
      {"create_workspace", "workspace", "_design", false},
      {"remove_member", "user", "bob@acme.io", true},
      {"remove_member", "user", "bob", false},
      {"remove_member", "user", "", false},
      {"remove_member", "user", "bob@acme@io", false},
      {"remove_member", "user", "@acme.io", false},
      {"remove_member", "user", "bob @acme.io", false},
      {"delete_org", "actor", "alice@acme.io", true},
      {"delete_org", "actor", "platform", true},
      {"delete_org", "actor", "key:backend", true},
      {"delete_org", "actor", "key:", false},
      {"delete_org", "actor", "key:-x", false},
      {"delete_org", "actor", "key:a b", false},
      {"delete_org", "actor", "Platform", false},
      {"delete_org", "actor", "alice", false},
      {"delete_org", "actor", "", false},
      {"delete_org", "id", "u-1", true},
      {"delete_org", "id", std::string(128, 'u'), true},
      {"delete_org", "id", std::string(129, 'u'), false},
      {"delete_org", "id", "u 1", false},
      {"delete_org", "id", "", false},
      {"delete_org", "at", "2026-11-23T10:00:00.000001Z", true},
      {"delete_org", "at", "2026-13-01T00:00:00Z", false},
      {"delete_org", "at", "yesterday", false},
      {"delete_org", "at", "2026-11-23T10:00:00+02:00", false},
      {"set_budget_mode", "mode", "shared", true},
      {"set_budget_mode", "mode", "budget", true},
      {"set_budget_mode", "mode", "Shared", false},
      {"set_budget_mode", "mode", "", false},
      {"set_budget_mode", "mode", "pooled", false},
      {"change_role", "role", "admin", true},
      {"change_role", "role", "member", true},
      {"change_role", "role", "owner", false},
      {"change_role", "role", "Admin", false},
      {"change_role", "role", "", false},
      {"rename_workspace", "name", "New name, with spaces", true},
      {"rename_workspace", "name", std::string(200, 'n'), true},
      {"rename_workspace", "name", std::string(201, 'n'), false},
      {"rename_workspace", "name", "", false},
      {"rename_workspace", "name", "tab\there", false},
      {"create_service_key", "secret_sha256", std::string(64, 'f'), true},
      {"create_service_key", "secret_sha256", std::string(64, '0'), true},
      {"create_service_key", "secret_sha256", std::string(63, 'f'), false},
      {"create_service_key", "secret_sha256", std::string(65, 'f'), false},
      {"create_service_key", "secret_sha256", std::string(64, 'F'), false},
      {"create_service_key", "secret_sha256", std::string(64, 'g'), false},
      {"create_service_key", "key", "backend-1", true},
      {"create_service_key", "key", "back end", false},
      {"create_org", "owner", "carol@acme.io", true},
      {"create_org", "owner", "carol", false},
  };
}

TEST(DecodeCommand, ChecksEveryValueAgainstItsKind) {
  for (const ValueCase& value_case : value_cases()) {
    SCOPED_TRACE(value_case.cmd + "." + value_case.field + "=\"" + value_case.value + "\"");
    const auto expected = std::find_if(kExpected.begin(), kExpected.end(), [&](const Expected& e) { return e.name == value_case.cmd; });
    ASSERT_NE(expected, kExpected.end());
    Fields fields;
    for (const auto& [name, value] : required_fields(*expected)) {
      if (name != value_case.field) fields.emplace_back(name, value);
    }
    fields.emplace_back(value_case.field, value_case.value);
    Command command;
    const Status status = decode(json_of(value_case.cmd, fields), &command);
    if (value_case.valid) {
      ASSERT_TRUE(status.ok()) << status.message;
      EXPECT_EQ(text_field(command, value_case.field), value_case.value);
    } else {
      EXPECT_EQ(status.code, ErrorCode::kInvalidArgument) << status.message;
      EXPECT_NE(status.message.find('"' + value_case.field + '"'), std::string::npos) << status.message;
    }
  }
}

TEST(DecodeCommand, UnescapesJsonStrings) {
  Command command;
  ASSERT_TRUE(decode(R"({"cmd":"create_org","actor":"alice@acme.io","org":"ac\u006de","name":"A \"quoted\" \\ caf\u00e9"})", &command).ok());
  EXPECT_EQ(command.org, "acme");
  EXPECT_EQ(command.name, "A \"quoted\" \\ caf\xc3\xa9");
  // An escaped control character is still a control character.
  EXPECT_EQ(decode(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"a\nb"})").code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(decode(R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"a\u0000b"})").code, ErrorCode::kInvalidArgument);
}

TEST(DecodeCommand, FieldOrderDoesNotMatterAndCmdMayComeLast) {
  Command a, b;
  ASSERT_TRUE(decode(R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})", &a).ok());
  ASSERT_TRUE(decode(R"({"user":"bob@acme.io","org":"acme","actor":"alice@acme.io","cmd":"remove_member"})", &b).ok());
  expect_same(a, b);
}

TEST(DecodeCommand, ADecodeStartsFromAnEmptyCommand) {
  Command command;
  ASSERT_TRUE(decode(R"({"cmd":"invite_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io","role":"admin","workspace":"design","id":"x","at":"2026-11-23T10:00:00Z"})", &command).ok());
  ASSERT_TRUE(decode(R"({"cmd":"delete_org","actor":"alice@acme.io","org":"other"})", &command).ok());
  EXPECT_EQ(command.type, CommandType::kDeleteOrg);
  EXPECT_EQ(command.org, "other");
  EXPECT_EQ(command.user, "");
  EXPECT_EQ(command.role, "");
  EXPECT_EQ(command.workspace, "");
  EXPECT_EQ(command.id, "");
  EXPECT_FALSE(command.at_us.has_value());
}

// ---- encode_command --------------------------------------------------------------------

TEST(EncodeCommand, RoundTripsEveryCommandWithEveryField) {
  for (const Expected& expected : kExpected) {
    SCOPED_TRACE(expected.name);
    Fields fields = required_fields(expected);
    for (const std::string& name : expected.optional) fields.emplace_back(name, sample(name));
    fields.emplace_back("id", "id-7");
    fields.emplace_back("at", "2030-02-28T23:59:59.000042Z");
    Command original;
    ASSERT_TRUE(decode(json_of(expected.name, fields), &original).ok());
    const std::string line = encode_command(original);
    EXPECT_EQ(line.find('\n'), std::string::npos);
    Command back;
    const Status status = decode(line, &back);
    ASSERT_TRUE(status.ok()) << line << ": " << status.message;
    expect_same(original, back);
    EXPECT_EQ(encode_command(back), line) << "the encoding is canonical";
  }
}

TEST(EncodeCommand, RoundTripsTextThatNeedsEscaping) {
  Command original;
  original.type = CommandType::kCreateOrg;
  original.actor = "o'neil@acme.io";
  original.org = "acme";
  original.name = "\"Acme\" \\ Caf\xc3\xa9 \xf0\x9f\x98\x80 </script>";
  original.id = "{\"x\":[1]}";
  original.at_us = 0;
  const std::string line = encode_command(original);
  Command back;
  ASSERT_TRUE(decode(line, &back).ok()) << line;
  expect_same(original, back);
}

TEST(EncodeCommand, LeavesEmptyFieldsOutAndStartsWithCmd) {
  Command command;
  command.type = CommandType::kAcceptInvite;
  command.actor = "bob@acme.io";
  command.org = "acme";
  EXPECT_EQ(encode_command(command), R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})");
  command.at_us = 1'795'428'000'000'000;
  EXPECT_EQ(encode_command(command), R"({"cmd":"accept_invite","actor":"bob@acme.io","at":"2026-11-23T10:00:00Z","org":"acme"})");
}

// Lines already in catalog field order come back byte for byte.
TEST(EncodeCommand, CanonicalLinesComeBackUnchanged) {
  for (const char* line : {
           R"({"cmd":"create_org","actor":"alice@acme.io","org":"acme","name":"Acme","mode":"budget"})",
           R"({"cmd":"create_workspace","actor":"alice@acme.io","org":"acme","workspace":"design"})",
           R"({"cmd":"accept_invite","actor":"bob@acme.io","org":"acme"})",
           R"({"cmd":"remove_member","actor":"alice@acme.io","org":"acme","user":"bob@acme.io"})",
       }) {
    Command command;
    ASSERT_TRUE(decode(line, &command).ok()) << line;
    EXPECT_EQ(encode_command(command), line);
  }
}

}  // namespace
}  // namespace tally

namespace tally {
namespace {

// The escapes JSON needs, alone, in runs and at either end; other bytes pass as they are.
TEST(JsonWriterTest, EscapesOnlyWhatJsonNeeds) {
  auto quoted = [](std::string_view text) {
    std::string out;
    append_json_string(&out, text);
    return out;
  };
  EXPECT_EQ(quoted(""), R"("")");
  EXPECT_EQ(quoted("plain text"), R"("plain text")");
  EXPECT_EQ(quoted(R"(say "hi")"), R"("say \"hi\"")");
  EXPECT_EQ(quoted("a\\b"), R"("a\\b")");
  EXPECT_EQ(quoted("\n\r\t"), R"("\n\r\t")");
  EXPECT_EQ(quoted(std::string("x\x01y\x1f", 4)), R"("x\u0001y\u001f")");
  EXPECT_EQ(quoted(std::string("\0", 1)), R"("\u0000")");
  EXPECT_EQ(quoted("caf\xc3\xa9 \x7f"), "\"caf\xc3\xa9 \x7f\"");
}

// Well-formed UTF-8 passes as it is; each byte outside a well-formed character becomes
// U+FFFD, so the output is valid UTF-8 (and valid JSON) whatever the input.
TEST(JsonWriterTest, BytesOutsideWellFormedUtf8BecomeReplacementCharacters) {
  auto quoted = [](std::string_view text) {
    std::string out;
    append_json_string(&out, text);
    return out;
  };
  const std::string fffd = "\xEF\xBF\xBD";
  // Two-, three- and four-byte characters, the highest code point, U+FFFD itself.
  for (std::string_view good : {"\xc2\xa2", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xef\xbf\xbd", "\xed\x9f\xbf"}) {
    EXPECT_EQ(quoted(good), "\"" + std::string(good) + "\"") << good;
    EXPECT_EQ(utf8_character_length(good), good.size()) << good;
  }
  EXPECT_EQ(quoted("a\xff" "b"), "\"a" + fffd + "b\"");             // never in UTF-8
  EXPECT_EQ(quoted("\x80"), "\"" + fffd + "\"");                   // a stray continuation byte
  EXPECT_EQ(quoted("x\xe2\x82"), "\"x" + fffd + fffd + "\"");      // cut short at the end
  EXPECT_EQ(quoted("\xe2\x82x"), "\"" + fffd + fffd + "x\"");      // cut short before ASCII
  EXPECT_EQ(quoted("\xc0\xaf"), "\"" + fffd + fffd + "\"");        // overlong '/'
  EXPECT_EQ(quoted("\xe0\x80\xaf"), "\"" + fffd + fffd + fffd + "\"");  // overlong, three bytes
  EXPECT_EQ(quoted("\xed\xa0\x80"), "\"" + fffd + fffd + fffd + "\"");  // a UTF-16 surrogate
  EXPECT_EQ(quoted("\xf4\x90\x80\x80"), "\"" + fffd + fffd + fffd + fffd + "\"");  // past U+10FFFF
  EXPECT_EQ(quoted("\"\xff\""), "\"\\\"" + fffd + "\\\"\"");      // escapes still apply around it
  EXPECT_EQ(utf8_character_length(""), 0u);
  EXPECT_EQ(utf8_character_length("a"), 0u);
}

TEST(JsonWriterTest, NumbersAndCommas) {
  JsonWriter out(16);
  out.begin_object().field("a", int64_t{-1}).field("b", std::numeric_limits<int64_t>::min());
  out.field("c", std::numeric_limits<uint64_t>::max()).key("d").begin_array().number(0).number(7).end_array().end_object();
  EXPECT_EQ(out.str(), R"({"a":-1,"b":-9223372036854775808,"c":18446744073709551615,"d":[0,7]})");
}

}  // namespace
}  // namespace tally
