// name_thread: names a thread as `top -H`, `ps -L`, perf and /proc/<pid>/task/<tid>/comm
// show it. The kernel keeps 15 characters; a longer name is not set. Called by the
// thread that started it, right after: the name is there before anyone can look.
// tally_load reads the names to split the process's CPU time by thread.
#pragma once

#include <pthread.h>

#include <thread>

namespace tally {

// The engine's threads. In-process the writer is the caller's thread and keeps its name.
inline constexpr const char* kCommitThreadName = "tally-commit";    // Committer
inline constexpr const char* kSplitThreadName = "tally-split";      // SplitApplier's helper
inline constexpr const char* kHistoryThreadName = "tally-history";  // HistoryLoader's helper
// tally serve's: its writer, which owns the Engine, and the network (I/O) threads.
inline constexpr const char* kWriterThreadName = "tally-writer";
inline constexpr const char* kIoThreadName = "tally-io";

inline void name_thread(std::thread& thread, const char* name) { pthread_setname_np(thread.native_handle(), name); }

}  // namespace tally
