// Unit tests of the limit_req zone (modules/limit_req/limit_req_zone.h): the
// GCRA and sliding-window arithmetic, the shared table (insert, find, evict,
// full) and compare-and-swap under threads, over an ordinary buffer.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "../../modules/limit_req/limit_req_zone.h"

namespace sluice::limit_req {
namespace {

constexpr uint64_t kMs = kNsPerMs;
constexpr uint64_t kSec = kNsPerSec;
constexpr uint64_t kMinute = 60 * kSec;
constexpr uint64_t kNoDelay = UINT64_MAX;
// A clock far from zero, as CLOCK_MONOTONIC is on a running machine.
constexpr uint64_t kT0 = 1000 * kSec;

LimitParams gcra(uint64_t rate, uint64_t period, uint64_t burst = 0, uint64_t free_burst = 0) {
    return make_params(Algorithm::Gcra, rate, period, burst, free_burst);
}

LimitParams sliding(uint64_t rate, uint64_t period, uint64_t burst = 0) {
    return make_params(Algorithm::SlidingWindow, rate, period, burst, kNoDelay);
}

// A key's word driven by one client, installing decisions as the zone does.
struct Key {
    LimitParams p;
    uint64_t word = 0;
    Decision request(uint64_t now) {
        Decision d = decide(p, word, now);
        if (d.verdict != Verdict::Reject) word = d.new_state;
        return d;
    }
};

// ---- GCRA ----

TEST(LimitReqGcra, BurstZeroAllowsOneRequestPerInterval) {
    Key k{gcra(10, kSec)};
    EXPECT_EQ(k.request(kT0).verdict, Verdict::Pass);
    EXPECT_EQ(k.request(kT0 + 50 * kMs).verdict, Verdict::Reject);
    EXPECT_EQ(k.request(kT0 + 98 * kMs).verdict, Verdict::Reject);
    EXPECT_EQ(k.request(kT0 + 100 * kMs).verdict, Verdict::Pass);
    EXPECT_EQ(k.request(kT0 + 200 * kMs).verdict, Verdict::Pass);
}

TEST(LimitReqGcra, RejectedRequestsDoNotConsumeQuota) {
    Key k{gcra(10, kSec)};
    k.request(kT0);
    uint64_t before = k.word;
    for (int i = 1; i < 50; ++i) EXPECT_EQ(k.request(kT0 + uint64_t(i) * kMs).verdict, Verdict::Reject);
    EXPECT_EQ(k.word, before);
    EXPECT_EQ(k.request(kT0 + 100 * kMs).verdict, Verdict::Pass);
}

TEST(LimitReqGcra, NodelayServesTheBurstAtOnceAndCountsDown) {
    Key k{gcra(10, kSec, 5, kNoDelay)};
    for (uint64_t i = 0; i < 6; ++i) {
        Decision d = k.request(kT0);
        ASSERT_EQ(d.verdict, Verdict::Pass) << "request " << i;
        EXPECT_EQ(d.delay_ns, 0u);
        EXPECT_EQ(d.remaining, 5 - i);
    }
    Decision d = k.request(kT0);
    EXPECT_EQ(d.verdict, Verdict::Reject);
    EXPECT_EQ(d.remaining, 0u);
    // One interval later exactly one more request fits.
    EXPECT_EQ(k.request(kT0 + 100 * kMs).verdict, Verdict::Pass);
    EXPECT_EQ(k.request(kT0 + 100 * kMs).verdict, Verdict::Reject);
}

TEST(LimitReqGcra, WithoutNodelayTheBurstIsSpacedAtTheRate) {
    Key k{gcra(10, kSec, 5)};
    EXPECT_EQ(k.request(kT0).verdict, Verdict::Pass);
    for (uint64_t i = 1; i <= 5; ++i) {
        Decision d = k.request(kT0);
        ASSERT_EQ(d.verdict, Verdict::Delay) << "request " << i;
        EXPECT_EQ(d.delay_ns, i * 100 * kMs);
    }
    EXPECT_EQ(k.request(kT0).verdict, Verdict::Reject);
}

TEST(LimitReqGcra, DelayParameterLetsTheFirstExcessRequestsThrough) {
    Key k{gcra(10, kSec, 5, 2)};  // burst=5 delay=2
    for (int i = 0; i < 3; ++i) EXPECT_EQ(k.request(kT0).verdict, Verdict::Pass) << i;
    Decision d = k.request(kT0);
    EXPECT_EQ(d.verdict, Verdict::Delay);
    EXPECT_EQ(d.delay_ns, 100 * kMs);
    EXPECT_EQ(k.request(kT0).delay_ns, 200 * kMs);
    EXPECT_EQ(k.request(kT0).delay_ns, 300 * kMs);
    EXPECT_EQ(k.request(kT0).verdict, Verdict::Reject);
}

TEST(LimitReqGcra, RetryAfterAndResetSayWhenRequestsFitAgain) {
    Key k{gcra(2, kSec, 1, kNoDelay)};  // 500 ms interval
    k.request(kT0);
    k.request(kT0);
    Decision d = k.request(kT0);
    ASSERT_EQ(d.verdict, Verdict::Reject);
    EXPECT_EQ(d.retry_after_ns, 500 * kMs);
    EXPECT_EQ(d.reset_ns, kSec);
    EXPECT_EQ(k.request(kT0 + d.retry_after_ns).verdict, Verdict::Pass);
}

TEST(LimitReqGcra, HighRateWithBurstZeroPassesAStreamBelowTheRate) {
    // nginx accounts per millisecond and, at 1,000,000 r/s with burst=0,
    // rejects the second request of every millisecond.
    Key k{gcra(1'000'000, kSec)};
    uint64_t now = kT0, rejected = 0;
    // 500,000 r/s arriving in clumps of 100 at the same nanosecond.
    for (int clump = 0; clump < 2000; ++clump, now += 200'000)
        for (int i = 0; i < 100; ++i) rejected += k.request(now).verdict == Verdict::Reject;
    EXPECT_EQ(rejected, 0u);
}

TEST(LimitReqGcra, HighRateStillLimitsAStreamAboveTheRate) {
    Key k{gcra(1'000'000, kSec)};
    uint64_t passed = 0, now = kT0;
    for (int ms = 0; ms < 100; ++ms, now += kMs)
        for (int i = 0; i < 2000; ++i) passed += k.request(now).verdict != Verdict::Reject;
    // 100 ms at 1,000,000 r/s, plus the millisecond of resolution.
    EXPECT_LE(passed, 100'000u + 1001u);
    EXPECT_GE(passed, 100'000u);
}

TEST(LimitReqGcra, TimeGoingBackAFewMillisecondsIsHarmless) {
    Key k{gcra(1000, kSec, 10, kNoDelay)};  // 1 ms interval
    ASSERT_EQ(k.request(kT0).verdict, Verdict::Pass);
    // Another worker read the clock a moment earlier: it counts, strictly.
    Decision d = k.request(kT0 - 3 * kMs);
    EXPECT_EQ(d.verdict, Verdict::Pass);
    // Seen from 3 ms earlier the key owes 5 intervals of its 10: six more fit.
    EXPECT_EQ(d.remaining, 6u);
    Key slow{gcra(10, kSec)};
    slow.request(kT0);
    EXPECT_EQ(slow.request(kT0 - 5 * kMs).verdict, Verdict::Reject);
    EXPECT_EQ(slow.request(kT0 + 100 * kMs).verdict, Verdict::Pass);
}

TEST(LimitReqGcra, RateChangeKeepsTheDebtInRequests) {
    Key k{gcra(1, kSec, 10, kNoDelay)};
    for (int i = 0; i < 5; ++i) k.request(kT0);
    // 5 requests owed at 1 r/s is 5 s; at 10 r/s it is 500 ms.
    uint64_t faster = rescale_gcra(k.word, kT0, kSec, 100 * kMs);
    EXPECT_EQ(faster - kT0, 500 * kMs);
    EXPECT_EQ(rescale_gcra(faster, kT0, 100 * kMs, kSec), k.word);
    // A word with no debt is left alone.
    EXPECT_EQ(rescale_gcra(kT0 - kSec, kT0, kSec, 100 * kMs), kT0 - kSec);
    Key after{gcra(10, kSec, 10, kNoDelay), faster};
    EXPECT_EQ(after.request(kT0).remaining, 11u - 5 - 1);  // burst=10 holds 11 requests
}

TEST(LimitReqGcra, RefundGivesBackExactlyOneRequest) {
    Key k{gcra(10, kSec)};
    k.request(kT0);
    uint64_t after_one = k.word;
    k.request(kT0 + 100 * kMs);
    EXPECT_EQ(refund(k.p, k.word, kT0 + 100 * kMs), after_one);
    EXPECT_EQ(refund(k.p, 0, kT0), 0u);
}

TEST(LimitReqGcra, RatesPerMinuteHourAndDay) {
    EXPECT_EQ(gcra(60, kMinute).interval_ns, kSec);
    EXPECT_EQ(gcra(1000, 3600 * kSec).interval_ns, 3600 * kMs);
    EXPECT_EQ(gcra(3, kSec).interval_ns, 333'333'334u);  // rounded up: never above the rate
    Key quota{gcra(1000, 3600 * kSec, 999, kNoDelay)};   // 1000 per hour as a quota
    int passed = 0;
    for (int i = 0; i < 1500; ++i) passed += quota.request(kT0 + uint64_t(i) * kMs).verdict == Verdict::Pass;
    EXPECT_EQ(passed, 1000);
}

// ---- sliding window ----

TEST(LimitReqSliding, WindowsPackIntoOneWord) {
    Windows w{(uint64_t(1) << kWindowIdBits) - 1, kMaxWindowCount, 12345};
    Windows back = unpack_windows(pack_windows(w));
    EXPECT_EQ(back.id, w.id);
    EXPECT_EQ(back.previous, w.previous);
    EXPECT_EQ(back.current, w.current);
}

TEST(LimitReqSliding, CountsTheCurrentAndWeighsThePreviousWindow) {
    Key k{sliding(10, kMinute)};
    uint64_t start = 100 * kMinute;  // a window boundary
    for (uint64_t i = 0; i < 10; ++i) {
        Decision d = k.request(start + i * kSec);
        ASSERT_EQ(d.verdict, Verdict::Pass) << i;
        EXPECT_EQ(d.remaining, 9 - i);
    }
    EXPECT_EQ(k.request(start + 30 * kSec).verdict, Verdict::Reject);
    // Half-way through the next window the previous ten weigh five.
    uint64_t half = start + kMinute + 30 * kSec;
    int passed = 0;
    for (int i = 0; i < 10; ++i) passed += k.request(half).verdict == Verdict::Pass;
    EXPECT_EQ(passed, 5);
    // Two windows later nothing is left.
    Decision fresh = k.request(start + 3 * kMinute);
    EXPECT_EQ(fresh.verdict, Verdict::Pass);
    EXPECT_EQ(fresh.remaining, 9u);
}

TEST(LimitReqSliding, BurstRaisesTheLimitAndRejectionsCostNothing) {
    Key k{sliding(5, kSec, 3)};
    int passed = 0;
    for (int i = 0; i < 20; ++i) passed += k.request(kT0).verdict == Verdict::Pass;
    EXPECT_EQ(passed, 8);
    uint64_t word = k.word;
    k.request(kT0);
    EXPECT_EQ(k.word, word);
}

TEST(LimitReqSliding, RetryAfterIsTheFirstMomentARequestFits) {
    for (uint64_t offset : {0 * kMs, 10 * kMs, 400 * kMs, 999 * kMs}) {
        Key k{sliding(4, kSec)};
        uint64_t now = kT0 + offset;
        for (int i = 0; i < 4; ++i) ASSERT_EQ(k.request(now).verdict, Verdict::Pass);
        Decision d = decide(k.p, k.word, now);
        ASSERT_EQ(d.verdict, Verdict::Reject);
        EXPECT_EQ(decide(k.p, k.word, now + d.retry_after_ns).verdict, Verdict::Pass) << offset;
        EXPECT_EQ(decide(k.p, k.word, now + d.retry_after_ns - kMs).verdict, Verdict::Reject) << offset;
    }
}

TEST(LimitReqSliding, TimeGoingBackAcrossABoundaryKeepsTheCounts) {
    Key k{sliding(3, kSec)};
    uint64_t boundary = kT0;  // kT0 is a whole second
    for (int i = 0; i < 3; ++i) ASSERT_EQ(k.request(boundary + kMs).verdict, Verdict::Pass);
    // A worker whose clock read was 2 ms older, in the previous window.
    EXPECT_EQ(k.request(boundary - 2 * kMs).verdict, Verdict::Reject);
    EXPECT_EQ(unpack_windows(k.word).current, 3u);
}

TEST(LimitReqSliding, RefundOnlyInTheSameWindow) {
    Key k{sliding(3, kSec)};
    k.request(kT0);
    k.request(kT0);
    EXPECT_EQ(unpack_windows(refund(k.p, k.word, kT0)).current, 1u);
    EXPECT_EQ(refund(k.p, k.word, kT0 + 5 * kSec), k.word);
}

// ---- keys and the table ----

TEST(LimitReqHash, KeyedByTheZoneSecret) {
    const uint64_t a[2] = {1, 2}, b[2] = {3, 4};
    EXPECT_EQ(hash_key(a, "192.0.2.1"), hash_key(a, "192.0.2.1"));
    EXPECT_NE(hash_key(a, "192.0.2.1"), hash_key(a, "192.0.2.2"));
    EXPECT_NE(hash_key(a, "192.0.2.1"), hash_key(b, "192.0.2.1"));
    EXPECT_NE(hash_key(a, ""), 0u);
    EXPECT_NE(hash_key(a, "12345678"), hash_key(a, "123456789"));
}

// The hash is stored in zones that outlive a binary upgrade: its values are
// pinned (SipHash-1-3 as first written, byte-at-a-time tail).
TEST(LimitReqHash, KnownValues) {
    const uint64_t secret[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    EXPECT_EQ(hash_key(secret, "192.0.2.1"), 0xaa31e51eb220bbacull);
    EXPECT_EQ(hash_key(secret, std::string_view("\xc0\x00\x02\x01", 4)), 0x62f72a7f32dc3ac9ull);
}

// SipHash-1-3 with the reference's byte-at-a-time tail: the overlapping
// loads of hash_key's tail must give the same word for every length.
uint64_t reference_hash(const uint64_t secret[2], std::string_view key) {
    auto rotl = [](uint64_t x, int b) { return (x << b) | (x >> (64 - b)); };
    uint64_t v0 = secret[0] ^ 0x736f6d6570736575ull, v1 = secret[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = secret[0] ^ 0x6c7967656e657261ull, v3 = secret[1] ^ 0x7465646279746573ull;
    auto round = [&] {
        v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);
        v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;
        v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;
        v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);
    };
    auto compress = [&](uint64_t m) {
        v3 ^= m;
        round();
        v0 ^= m;
    };
    size_t full = key.size() / 8 * 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = 0;
        for (size_t j = 0; j < 8; ++j) m |= uint64_t(uint8_t(key[i + j])) << (8 * j);
        compress(m);
    }
    uint64_t b = uint64_t(key.size()) << 56;
    for (size_t j = full; j < key.size(); ++j) b |= uint64_t(uint8_t(key[j])) << (8 * (j - full));
    compress(b);
    v2 ^= 0xff;
    round(), round(), round();
    uint64_t h = v0 ^ v1 ^ v2 ^ v3;
    return h ? h : 1;
}

TEST(LimitReqHash, EveryKeyLengthAsTheReference) {
    const uint64_t secret[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    std::string bytes;
    for (int i = 0; i < 40; ++i) bytes += char(0xf1 - 7 * i);  // high bits set: no sign extension may leak in
    for (size_t n = 0; n <= bytes.size(); ++n) {
        // At an odd offset, so that loads are unaligned as keys in a request are.
        std::string_view key = std::string_view(bytes).substr(1, n > 0 ? n - 1 : 0);
        EXPECT_EQ(hash_key(secret, key), reference_hash(secret, key)) << key.size();
    }
}

// A zone over heap memory, as the master lays it out in shared memory.
struct TestZone {
    std::vector<uint64_t> memory;
    Table table;
    explicit TestZone(size_t slots)
        : memory((sizeof(ZoneHeader) + slots * sizeof(Slot)) / sizeof(uint64_t)),
          table(memory.data(), memory.size() * sizeof(uint64_t)) {
        const uint64_t secret[2] = {7, 11};
        table.format(1, kSec, secret);
    }
};

TEST(LimitReqTable, CapacityComesFromTheSize) {
    EXPECT_EQ(Table::capacity_for(kMinZoneSize), (kMinZoneSize - sizeof(ZoneHeader)) / sizeof(Slot));
    EXPECT_EQ(Table::capacity_for(10), 0u);
    TestZone z(100);
    EXPECT_EQ(z.table.capacity(), 100u);
    EXPECT_TRUE(z.table.formatted());
    Table other(z.memory.data(), z.memory.size() * sizeof(uint64_t) - sizeof(Slot));
    EXPECT_FALSE(other.formatted());  // a different size is not the same zone
}

TEST(LimitReqTable, InsertThenFindTheSameSlot) {
    TestZone z(1024);
    bool evicted = true;
    std::set<Slot*> slots;
    for (uint64_t key = 1; key <= 500; ++key) {
        Slot& s = z.table.acquire(key * 0x9e3779b97f4a7c15ull, 1, evicted);
        EXPECT_FALSE(evicted);
        s.state = key;
        slots.insert(&s);
    }
    EXPECT_EQ(slots.size(), 500u);
    for (uint64_t key = 1; key <= 500; ++key)
        EXPECT_EQ(z.table.acquire(key * 0x9e3779b97f4a7c15ull, 2, evicted).state, key);
    EXPECT_EQ(z.table.header().evictions, 0u);
}

TEST(LimitReqTable, FullWindowEvictsTheLeastRecentlyUsed) {
    TestZone z(kProbeWindow);  // one probe window holds the whole table
    bool evicted = false;
    for (uint64_t key = 1; key <= kProbeWindow; ++key) {
        Slot& s = z.table.acquire(key, 100 + key, evicted);
        ASSERT_FALSE(evicted);
        s.state = 42;
    }
    z.table.acquire(1, 200, evicted);  // key 1 is used again: key 2 is now the oldest
    Slot& fresh = z.table.acquire(1000, 201, evicted);
    EXPECT_TRUE(evicted);
    EXPECT_EQ(fresh.state, 0u);  // a new key starts with a clean word
    EXPECT_EQ(z.table.header().evictions, 1u);
    // Key 1 survived, key 2 did not (coming back evicts someone else).
    z.table.acquire(1, 202, evicted);
    EXPECT_FALSE(evicted);
    z.table.acquire(2, 203, evicted);
    EXPECT_TRUE(evicted);
    EXPECT_EQ(z.table.header().evictions, 2u);
}

TEST(LimitReqTable, EvictionWarningAtMostOncePerInterval) {
    TestZone z(kProbeWindow);
    bool evicted;
    for (uint64_t key = 1; key <= 3 * kProbeWindow; ++key) z.table.acquire(key, key, evicted);
    uint64_t count = 0;
    ASSERT_TRUE(z.table.eviction_warning_due(5000, 1000, count));
    EXPECT_EQ(count, 2 * kProbeWindow);
    z.table.acquire(999, 5001, evicted);
    EXPECT_FALSE(z.table.eviction_warning_due(5500, 1000, count));
    ASSERT_TRUE(z.table.eviction_warning_due(6000, 1000, count));
    EXPECT_EQ(count, 1u);
    EXPECT_FALSE(z.table.eviction_warning_due(9000, 1000, count));  // nothing new
}

// ---- concurrency ----

template <class F>
void run_threads(int n, F f) {
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) threads.emplace_back(f, i);
    for (auto& t : threads) t.join();
}

TEST(LimitReqConcurrency, ExactlyTheBurstPassesUnderFourThreads) {
    TestZone z(64);
    for (Algorithm a : {Algorithm::Gcra, Algorithm::SlidingWindow}) {
        // One request per hour: nothing refills while the threads run.
        LimitParams p = make_params(a, 1, 3600 * kSec, 999, kNoDelay);
        bool evicted;
        Slot& slot = z.table.acquire(a == Algorithm::Gcra ? 77 : 78, 1, evicted);
        std::atomic<uint64_t> passed{0};
        run_threads(4, [&](int) {
            for (int i = 0; i < 2000; ++i)
                if (charge(slot.state, p, [] { return kT0; }).verdict != Verdict::Reject) ++passed;
        });
        EXPECT_EQ(passed.load(), 1000u) << int(a);
    }
}

TEST(LimitReqConcurrency, NoUpdateIsLostAcrossKeysAndThreads) {
    TestZone z(4096);
    constexpr int kKeys = 64, kPerThread = 4000;
    // 1 ms interval, a burst large enough that nothing is rejected: each
    // key's debt must be exactly one interval per request it received.
    LimitParams p = make_params(Algorithm::Gcra, 1000, kSec, 1'000'000, kNoDelay);
    std::atomic<uint64_t> rejected{0};
    run_threads(4, [&](int t) {
        for (int i = 0; i < kPerThread; ++i) {
            bool evicted;
            uint64_t key = uint64_t((i * 7 + t) % kKeys) + 1;
            Slot& s = z.table.acquire(key * 0x9e3779b97f4a7c15ull, 1, evicted);
            if (charge(s.state, p, [] { return kT0; }).verdict == Verdict::Reject) ++rejected;
        }
    });
    EXPECT_EQ(rejected.load(), 0u);
    uint64_t total = 0, keys = 0;
    for (size_t i = 0; i < z.table.capacity(); ++i) {
        if (z.table.slot(i).key == 0) continue;
        ++keys;
        total += (z.table.slot(i).state - kT0) / p.interval_ns;
    }
    EXPECT_EQ(keys, uint64_t(kKeys));  // no key was added twice
    EXPECT_EQ(total, uint64_t(4 * kPerThread));
    EXPECT_EQ(z.table.header().evictions, 0u);
}

}  // namespace
}  // namespace sluice::limit_req
