// name_this_thread: names the calling thread as `top -H`, `ps -L`, perf and
// /proc/<pid>/task/<tid>/comm show it. The kernel keeps 15 characters; a longer name is
// not set. tally_load reads the names to split the process's CPU time by thread.
#pragma once

#include <pthread.h>

namespace tally {

// The engine's threads: the writer keeps the process's name.
inline constexpr const char* kCommitThreadName = "tally-commit";  // Committer
inline constexpr const char* kSplitThreadName = "tally-split";    // SplitApplier's helper
inline constexpr const char* kHistoryThreadName = "tally-history";  // HistoryLoader's helper

inline void name_this_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

}  // namespace tally
