#include "event/timer_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace sluice {
namespace {

struct Timed : TimerNode {
    int id = 0;
};

std::vector<int> fired;

void on_expired(TimerNode& node) { fired.push_back(static_cast<Timed&>(node).id); }

class TimerQueuesTest : public testing::Test {
protected:
    void SetUp() override {
        fired.clear();
        base_ = event_base_new();
    }
    void TearDown() override { event_base_free(base_); }
    // Runs the loop until `count` timers fired (or a generous bound passed:
    // then the count check below fails, no time is asserted).
    void run_until(size_t count) {
        timeval bound{5, 0};
        event_base_loopexit(base_, &bound);
        while (fired.size() < count && event_base_loop(base_, EVLOOP_ONCE) == 0 && !event_base_got_exit(base_)) {}
    }
    event_base* base_ = nullptr;
};

TEST_F(TimerQueuesTest, FireInDeadlineOrderAndNotWhenCancelled) {
    TimerQueues queues(on_expired);
    Timed a, b, c, d;
    a.id = 1, b.id = 2, c.id = 3, d.id = 4;
    queues.arm(base_, a, 30);
    queues.arm(base_, b, 30);
    queues.arm(base_, c, 30);
    queues.arm(base_, d, 10);  // another duration, sooner
    queues.cancel(b);
    EXPECT_FALSE(b.timer_armed());
    EXPECT_TRUE(a.timer_armed());
    run_until(3);
    EXPECT_EQ(fired, (std::vector<int>{4, 1, 3}));
    EXPECT_FALSE(a.timer_armed());
    EXPECT_FALSE(c.timer_armed());
}

TEST_F(TimerQueuesTest, ReArmingMovesATimerBackAndCancellingTheHeadKeepsTheRest) {
    TimerQueues queues(on_expired);
    Timed a, b;
    a.id = 1, b.id = 2;
    queues.arm(base_, a, 20);
    queues.arm(base_, b, 20);
    queues.arm(base_, a, 20);  // now behind b
    run_until(2);
    EXPECT_EQ(fired, (std::vector<int>{2, 1}));

    fired.clear();
    queues.arm(base_, a, 20);
    queues.arm(base_, b, 20);
    queues.cancel(a);  // the head the libevent timer was set for
    run_until(1);
    EXPECT_EQ(fired, (std::vector<int>{2}));
}

TEST_F(TimerQueuesTest, ACallbackMayArmAgain) {
    static TimerQueues* self = nullptr;
    static event_base* base = nullptr;
    static int rounds = 0;
    rounds = 0;
    TimerQueues queues([](TimerNode& n) {
        fired.push_back(static_cast<Timed&>(n).id);
        if (++rounds < 3) self->arm(base, n, 5);
    });
    self = &queues;
    base = base_;
    Timed a;
    a.id = 7;
    queues.arm(base_, a, 5);
    run_until(3);
    EXPECT_EQ(fired, (std::vector<int>{7, 7, 7}));
    EXPECT_FALSE(a.timer_armed());
}

}  // namespace
}  // namespace sluice
