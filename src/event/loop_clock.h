// The loop's time, taken once per iteration of the worker's loop.
#pragma once
#include <cstdint>

namespace sluice {

// The time of the loop's current iteration in milliseconds (nginx's
// ngx_current_msec): libevent's cached time, read on the first call of an
// iteration of Worker::run's loop and kept until the next iteration, so a
// request's ten or so time stamps cost one library call. Outside that loop
// (the master, tests with a loop of their own) every call reads the time.
class LoopClock {
public:
    static int64_t msec() { return valid_ ? msec_ : refresh(); }
    // CLOCK_MONOTONIC_COARSE in milliseconds (libevent's timer clock), the
    // same way: for deadlines, which the wall clock's steps must not move.
    static int64_t monotonic_msec() { return monotonic_valid_ ? monotonic_msec_ : refresh_monotonic(); }

private:
    friend class Worker;
    static int64_t refresh();
    static int64_t refresh_monotonic();
    static void next_iteration() { valid_ = monotonic_valid_ = false; }
    static inline bool in_loop_ = false;
    static inline bool valid_ = false;
    static inline bool monotonic_valid_ = false;
    static inline int64_t msec_ = 0;
    static inline int64_t monotonic_msec_ = 0;
};

}  // namespace sluice
