#include "event/timer_queue.h"

#include "event/loop_clock.h"

namespace sluice {

struct DurationQueue {
    TimerQueues* owner = nullptr;
    uint64_t ms = 0;
    TimerNode* head = nullptr;
    TimerNode* tail = nullptr;
    event ev{};
    event_base* base = nullptr;
    bool ev_pending = false;
    int64_t ev_deadline_ms = 0;  // when the libevent timer fires, if pending
};

TimerQueues::TimerQueues(Expired on_expired) : on_expired_(on_expired) {}

// No event_del: a worker's queues outlive its event_base (statics), whose
// event_base_free already took their events out.
TimerQueues::~TimerQueues() = default;

DurationQueue& TimerQueues::queue_for(event_base* base, uint64_t ms) {
    for (auto& q : queues_)
        if (q->ms == ms && q->base == base) return *q;
    auto q = std::make_unique<DurationQueue>();
    q->owner = this;
    q->ms = ms;
    q->base = base;
    event_assign(&q->ev, base, -1, 0, on_queue_timer, q.get());
    queues_.push_back(std::move(q));
    return *queues_.back();
}

// The libevent timer fires for the head, unless it already fires earlier
// (the head it was set for was cancelled): then it re-schedules on firing.
void TimerQueues::schedule(DurationQueue& q, int64_t now_ms) {
    if (!q.head) return;
    if (q.ev_pending && q.ev_deadline_ms <= q.head->deadline_ms_) return;
    int64_t wait = q.head->deadline_ms_ - now_ms;
    if (wait < 0) wait = 0;
    timeval tv{time_t(wait / 1000), suseconds_t((wait % 1000) * 1000)};
    event_add(&q.ev, &tv);
    q.ev_pending = true;
    q.ev_deadline_ms = q.head->deadline_ms_;
}

void TimerQueues::arm(event_base* base, TimerNode& node, uint64_t ms) {
    if (node.queue_) cancel(node);
    DurationQueue& q = queue_for(base, ms);
    const int64_t now = LoopClock::monotonic_msec();
    node.deadline_ms_ = now + int64_t(ms);
    node.queue_ = &q;
    node.next_ = nullptr;
    node.prev_ = q.tail;
    if (q.tail) q.tail->next_ = &node;
    else q.head = &node;
    q.tail = &node;
    schedule(q, now);
}

void TimerQueues::cancel(TimerNode& node) {
    DurationQueue* q = node.queue_;
    if (!q) return;
    if (node.prev_) node.prev_->next_ = node.next_;
    else q->head = node.next_;
    if (node.next_) node.next_->prev_ = node.prev_;
    else q->tail = node.prev_;
    node.prev_ = node.next_ = nullptr;
    node.queue_ = nullptr;
}

void TimerQueues::on_queue_timer(evutil_socket_t, short, void* arg) {
    auto& q = *static_cast<DurationQueue*>(arg);
    q.ev_pending = false;
    q.owner->expire(q);
}

void TimerQueues::expire(DurationQueue& q) {
    const int64_t now = LoopClock::monotonic_msec();
    // A callback may arm or cancel timers of this queue: the head is read again each time.
    while (q.head && q.head->deadline_ms_ <= now) {
        TimerNode& node = *q.head;
        cancel(node);
        on_expired_(node);
    }
    schedule(q, now);
}

}  // namespace sluice
