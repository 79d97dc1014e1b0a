// Timers of a few fixed durations, as libevent's "common timeouts" and
// nginx's timer tree serve them, but 32 bytes a timer instead of a 128-byte
// struct event: an idle keep-alive connection holds one.
//
// Every timer of a queue was armed with the queue's duration, so the queue is
// a FIFO list sorted by deadline, with one libevent timer for its head.
// Arming and cancelling are list operations; libevent hears of a queue only
// when its first timer is armed or the head expires.
#pragma once
#include <event2/event.h>
#include <event2/event_struct.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace sluice {

class TimerQueues;
struct DurationQueue;

// Embedded in (or a base of) the object it times; its owner's TimerQueues
// call back with it.
class TimerNode {
public:
    TimerNode() = default;
    TimerNode(const TimerNode&) = delete;
    TimerNode& operator=(const TimerNode&) = delete;
    bool timer_armed() const { return queue_ != nullptr; }

private:
    friend class TimerQueues;
    TimerNode* prev_ = nullptr;
    TimerNode* next_ = nullptr;
    DurationQueue* queue_ = nullptr;
    int64_t deadline_ms_ = 0;  // CLOCK_MONOTONIC
};

// One set of duration queues per kind of owner (the callback knows the type).
class TimerQueues {
public:
    using Expired = void (*)(TimerNode&);
    explicit TimerQueues(Expired on_expired);
    ~TimerQueues();
    TimerQueues(const TimerQueues&) = delete;
    TimerQueues& operator=(const TimerQueues&) = delete;

    // (Re)arms the node to expire `ms` from the loop's current time.
    void arm(event_base* base, TimerNode& node, uint64_t ms);
    void cancel(TimerNode& node);

private:
    static void on_queue_timer(evutil_socket_t, short, void* arg);
    DurationQueue& queue_for(event_base* base, uint64_t ms);
    void expire(DurationQueue& q);
    static void schedule(DurationQueue& q, int64_t now_ms);

    Expired on_expired_;
    std::vector<std::unique_ptr<DurationQueue>> queues_;
};

}  // namespace sluice
