// The limit_req zone: a fixed-capacity table in shared memory with one
// 64-bit state word per key, and the arithmetic that decides a request from
// that word (GCRA for the leaky bucket, two fixed windows for the sliding
// window). Nothing here knows about HTTP or the configuration, so the unit
// tests drive it directly over an ordinary buffer.
//
// Every field in the zone is a plain integer, read and written through
// std::atomic_ref: the records stay trivially copyable, and no step of any
// operation needs more than one compare-and-swap, so a worker killed at any
// instant leaves a table that the others keep using as is.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace sluice::limit_req {

constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kNsPerSec = 1'000'000'000;

// nginx accounts in milliseconds: a request up to this much earlier than the
// bucket allows is not distinguished from one on time. Unlike nginx, the
// clock itself is read in nanoseconds, so at 1,000,000 r/s with burst=0 a
// stream below the rate passes (nginx lets one request per millisecond by).
constexpr uint64_t kResolutionNs = kNsPerMs;

enum class Algorithm : uint8_t { Gcra, SlidingWindow };

// What one `limit_req` asks of its zone, with the zone's rate folded in.
struct LimitParams {
    Algorithm algorithm = Algorithm::Gcra;
    uint64_t interval_ns = kNsPerSec;  // GCRA: one request per interval (the rate's inverse, rounded up)
    uint64_t period_ns = kNsPerSec;    // the rate's unit: 1 s, 1 min, 1 h or 1 day (the sliding window)
    uint64_t rate = 1;                 // requests per period
    uint64_t burst = 0;                // requests above the rate that are not rejected
    uint64_t free_burst = 0;           // of those, how many are not delayed (nodelay: all, delay=N: N)
    // GCRA: burst and free_burst as time (intervals), saturated; computed
    // once here instead of with 128-bit products on every request.
    uint64_t burst_ns = 0;
    uint64_t free_burst_ns = 0;
    uint64_t idle_remaining = 0;  // GCRA: what a request of a key that owes nothing leaves
};

// Builds the parameters of `rate` requests per `period_ns`.
LimitParams make_params(Algorithm, uint64_t rate, uint64_t period_ns, uint64_t burst, uint64_t free_burst);

enum class Verdict : uint8_t { Pass, Delay, Reject };

struct Decision {
    Verdict verdict = Verdict::Pass;
    uint64_t new_state = 0;       // the word to install (Pass and Delay)
    uint64_t delay_ns = 0;        // Delay: how long to hold the request
    uint64_t excess_milli = 0;    // requests above the rate, in thousandths (nginx's log value)
    uint64_t remaining = 0;       // requests that would still be served at this instant
    uint64_t reset_ns = 0;        // until the whole allowance is back
    uint64_t retry_after_ns = 0;  // Reject: until a request would be served
};

// Decides a request arriving at `now_ns` (CLOCK_MONOTONIC) against `state`,
// the key's word (0 for a key never seen). Pure: the caller installs
// new_state with compare-and-swap, and only for Pass and Delay, so a
// rejected request never consumes quota.
Decision decide(const LimitParams&, uint64_t state, uint64_t now_ns);

// The word with one request given back: used when a later limit of the same
// request rejected after this one was charged.
uint64_t refund(const LimitParams&, uint64_t state, uint64_t now_ns);

// A GCRA word under a new emission interval (the zone's rate changed across a
// reload): the debt is kept in requests, as nginx keeps its excess.
uint64_t rescale_gcra(uint64_t state, uint64_t now_ns, uint64_t old_interval_ns, uint64_t new_interval_ns);

// ---- sliding-window word: [window id: 22 bits][previous count: 21][current count: 21] ----

constexpr unsigned kCountBits = 21;
constexpr uint64_t kMaxWindowCount = (uint64_t(1) << kCountBits) - 1;
constexpr unsigned kWindowIdBits = 64 - 2 * kCountBits;

struct Windows {
    uint64_t id = 0;  // window number modulo 2^kWindowIdBits
    uint64_t previous = 0;
    uint64_t current = 0;
};
uint64_t pack_windows(const Windows&);
Windows unpack_windows(uint64_t word);

// ---- keys ----

// SipHash-1-3 with the zone's secret: a client cannot choose keys that
// collide into one probe window to evict other clients' entries.
uint64_t hash_key(const uint64_t secret[2], std::string_view key);

// ---- the table ----

// The zone's first bytes. Written by the master when the zone is created or
// kept across a reload; counters are shared by every worker.
struct ZoneHeader {
    uint64_t magic;
    uint64_t capacity;     // slots
    uint64_t key_id;       // hash of the key expression and algorithm: a change makes old entries unreachable
    uint64_t interval_ns;  // GCRA emission interval the words were written with
    uint64_t secret[2];
    uint64_t evictions;         // entries replaced while still in the table
    uint64_t evictions_logged;  // the count at the last warning
    int64_t eviction_log_ms;    // when the last warning was written (CLOCK_MONOTONIC)
    uint64_t reserved[7];
};

// One key. key == 0: never used; a slot never becomes empty again, so a
// lookup stops at the first empty slot of its probe window.
struct Slot {
    uint64_t key;        // the key's hash (never 0)
    uint64_t state;      // the GCRA or sliding-window word
    uint64_t last_seen;  // ms, CLOCK_MONOTONIC: the approximate LRU of eviction
};

static_assert(std::is_trivially_copyable_v<ZoneHeader> && std::is_trivially_copyable_v<Slot>);
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free, "the zone needs lock-free 64-bit atomics");

constexpr uint64_t kZoneMagic = 0x3171'7165'725f'6c72ull;  // "lr_req" and a layout version
constexpr size_t kProbeWindow = 8;
constexpr size_t kMinZoneSize = 4096;

inline std::atomic_ref<uint64_t> atomic(uint64_t& word) {
    return std::atomic_ref<uint64_t>(word);
}
inline std::atomic_ref<int64_t> atomic(int64_t& word) {
    return std::atomic_ref<int64_t>(word);
}

// A view over a zone's memory (the same address in every worker).
class Table {
public:
    Table() = default;
    Table(void* base, size_t bytes);

    static size_t capacity_for(size_t bytes);
    // A fresh zone (all zero, as mmap gives it): lays out the header.
    void format(uint64_t key_id, uint64_t interval_ns, const uint64_t secret[2]);
    // A zone kept across a reload: the header is ours and matches the size.
    bool formatted() const;

    ZoneHeader& header() const { return *header_; }
    size_t capacity() const { return capacity_; }
    Slot& slot(size_t i) const { return slots_[i]; }

    // The key's slot: found, or claimed (an empty slot of the probe window,
    // else the least recently used one, counted as an eviction). Never null.
    // Most keys sit in their home slot: that one is looked at inline.
    Slot& acquire(uint64_t hash, uint64_t now_ms, bool& evicted) {
        Slot& home = slots_[home_of(hash)];
        if (atomic(home.key).load(std::memory_order_acquire) != hash) return probe(hash, now_ms, evicted);
        evicted = false;
        touch(home, now_ms);
        return home;
    }

    // The eviction warning: true for one caller per `interval_ms` when there
    // were evictions since the last warning; `count` is how many.
    bool eviction_warning_due(int64_t now_ms, int64_t interval_ms, uint64_t& count);

private:
    size_t home_of(uint64_t hash) const { return size_t((static_cast<unsigned __int128>(hash) * capacity_) >> 64); }
    static void touch(Slot& s, uint64_t now_ms) {
        auto seen = atomic(s.last_seen);
        if (seen.load(std::memory_order_relaxed) != now_ms) seen.store(now_ms, std::memory_order_relaxed);
    }
    Slot& probe(uint64_t hash, uint64_t now_ms, bool& evicted);
    Slot* find(uint64_t hash, size_t home, size_t& empty, size_t& oldest) const;
    Slot* claim(Slot& slot, uint64_t expected_key, uint64_t hash, uint64_t now_ms);

    ZoneHeader* header_ = nullptr;
    Slot* slots_ = nullptr;
    size_t capacity_ = 0;
};

// Installs the decision for the key's word: loads the word, reads the clock
// with `now_ns()`, decides, and retries on a lost compare-and-swap. Rejected
// requests leave the word alone.
template <class Clock>
Decision charge(uint64_t& word, const LimitParams& p, Clock now_ns) {
    auto ref = atomic(word);
    uint64_t state = ref.load(std::memory_order_acquire);
    for (;;) {
        // The clock is read after the word: a worker descheduled in between
        // meets a changed word and decides again with a fresh time.
        Decision d = decide(p, state, now_ns());
        if (d.verdict == Verdict::Reject) return d;
        if (ref.compare_exchange_weak(state, d.new_state, std::memory_order_acq_rel, std::memory_order_acquire))
            return d;
    }
}

// Gives one request back (see refund()).
void give_back(uint64_t& word, const LimitParams& p, uint64_t now_ns);

}  // namespace sluice::limit_req
