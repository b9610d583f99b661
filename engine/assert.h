// Assertions that stay on in release builds: they guard invariants that protect money
// and the log, where continuing after a broken invariant would be worse than stopping.
#pragma once

#include <cstdio>
#include <cstdlib>

#define TALLY_ASSERT(condition)                                                              \
  do {                                                                                       \
    if (!(condition)) {                                                                      \
      std::fprintf(stderr, "tally: assertion failed at %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
