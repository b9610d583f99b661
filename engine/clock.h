// The engine's only source of time, injected so tests and simulations control it.
#pragma once

#include <chrono>
#include <cstdint>

namespace tally {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch, UTC.
  virtual int64_t now_us() = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t now_us() override {
    using namespace std::chrono;
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
  }
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_us) : now_us_(start_us) {}
  int64_t now_us() override { return now_us_; }
  void set(int64_t time_us) { now_us_ = time_us; }
  void advance(int64_t delta_us) { now_us_ += delta_us; }

 private:
  int64_t now_us_;
};

}  // namespace tally
