#include "cli/io.h"

#include <unistd.h>

#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "engine/query.h"
#include "engine/values.h"

namespace tally::cli {

bool read_line(std::istream& in, std::string* line, size_t max_bytes, bool* too_long) {
  line->clear();
  *too_long = false;
  std::streambuf* buffer = in.rdbuf();
  bool any = false;
  for (;;) {
    const int c = buffer->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n') return true;
    if (line->size() < max_bytes) {
      line->push_back(static_cast<char>(c));
    } else {
      *too_long = true;
    }
  }
}

namespace {
bool progress_drawn = false;
}

Progress terminal_progress(std::string label) {
  if (!isatty(STDERR_FILENO)) return {};
  return [label = std::move(label)](uint64_t done, uint64_t total) {
    if (total > 0) {
      std::fprintf(stderr, "\r%s: %llu / %llu events (%.0f%%)", label.c_str(), static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total), 100.0 * static_cast<double>(done) / static_cast<double>(total));
    } else {
      std::fprintf(stderr, "\r%s: %llu", label.c_str(), static_cast<unsigned long long>(done));
    }
    progress_drawn = true;
  };
}

void end_progress() {
  if (progress_drawn) std::fputc('\n', stderr);
  progress_drawn = false;
}

void apply_lines(Engine& engine, std::istream& in, std::ostream& out, ApplyStats* stats) {
  // Each input line gets one answer slot: decode errors fill theirs at once, decoded
  // commands wait for their batch.
  std::vector<std::string> answers;
  std::vector<Command> batch;
  std::vector<size_t> slots;
  auto flush = [&] {
    const std::vector<CommandResult> results = engine.execute(batch);
    for (size_t i = 0; i < results.size(); ++i) {
      answers[slots[i]] = results[i].to_json();
      if (results[i].status.ok()) {
        ++stats->accepted;
      } else {
        ++stats->refused;
      }
    }
    for (const std::string& answer : answers) out << answer << '\n';
    out.flush();
    answers.clear();
    batch.clear();
    slots.clear();
  };
  std::string line;
  bool too_long = false;
  while (read_line(in, &line, kCommandBytesMax, &too_long)) {
    if (!too_long && line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++stats->commands;
    Command command;
    Status decoded = too_long ? Error(ErrorCode::kTooLarge, fmt::format("a command line is at most {} bytes", kCommandBytesMax))
                              : decode_command(line, &command);
    if (decoded.ok()) {
      slots.push_back(answers.size());
      answers.emplace_back();
      batch.push_back(std::move(command));
    } else {
      answers.push_back(error_json(decoded));
      ++stats->refused;
    }
    // Commit when the batch is full or the input has nothing more ready right now, so
    // an interactive client gets its answer without waiting for more input.
    if (batch.size() >= kBatchCommandsMax || in.rdbuf()->in_avail() <= 0) flush();
  }
  flush();
}

}  // namespace tally::cli
