// The limit_req table and its arithmetic (see limit_req_zone.h).
#include "limit_req_zone.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace sluice::limit_req {

namespace {

using u128 = unsigned __int128;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kWindowIdMask = (uint64_t(1) << kWindowIdBits) - 1;

uint64_t saturating_mul(uint64_t a, uint64_t b) {
    u128 r = u128(a) * b;
    return r > kMax ? kMax : uint64_t(r);
}

uint64_t saturating_add(uint64_t a, uint64_t b) {
    return a > kMax - b ? kMax : a + b;
}

uint64_t ceil_div(u128 a, u128 b) {
    return uint64_t((a + b - 1) / b);
}

// ---- GCRA: the word is the theoretical arrival time (TAT) in ns ----
//
// A key owes `debt = TAT - now` of time. A request is served while the debt
// is at most `burst` intervals (plus the millisecond nginx cannot tell
// apart); it moves TAT one interval on. That is nginx's leaky bucket with
// the excess kept as time: excess = debt / interval.

Decision decide_gcra(const LimitParams& p, uint64_t tat, uint64_t now) {
    const uint64_t t = p.interval_ns;
    Decision d;
    if (tat <= now) {
        // Owes nothing (most requests): served at once, no division.
        d.new_state = saturating_add(now, t);
        d.remaining = p.idle_remaining;
        d.reset_ns = t;
        return d;
    }
    uint64_t debt = tat - now;
    const uint64_t burst_ns = p.burst_ns;
    // (a 128-bit division is a library call: most requests owe nothing)
    d.excess_milli = debt == 0 ? 0 : debt <= kMax / 1000 ? debt * 1000 / t : uint64_t(u128(debt) * 1000 / t);
    if (debt > saturating_add(burst_ns, kResolutionNs)) {
        d.verdict = Verdict::Reject;
        d.retry_after_ns = debt - burst_ns;
        d.reset_ns = debt;
        return d;
    }
    d.new_state = saturating_add(std::max(tat, now), t);
    uint64_t delay = debt > p.free_burst_ns ? debt - p.free_burst_ns : 0;
    // Below the accounting resolution a timer would cost more than it shapes.
    if (delay >= kResolutionNs) {
        d.verdict = Verdict::Delay;
        d.delay_ns = delay;
    }
    uint64_t after = debt + t;
    d.remaining = after <= burst_ns ? (burst_ns - after) / t + 1 : 0;
    d.reset_ns = after;
    return d;
}

// ---- sliding window: two fixed windows, the previous one weighted by how
// much of it still overlaps the sliding window ----

struct WindowView {
    Windows w;
    uint64_t elapsed = 0;  // ns into the current window
};

// The word as seen from `now`: the windows shifted to the current one.
WindowView current_windows(uint64_t state, uint64_t now, uint64_t period) {
    WindowView v;
    uint64_t id = (now / period) & kWindowIdMask;
    v.elapsed = now % period;
    Windows w = unpack_windows(state);
    uint64_t behind = (id - w.id) & kWindowIdMask;
    if (state != 0 && behind == 0) {
        v.w = w;
    } else if (state != 0 && behind > kWindowIdMask / 2) {
        // The clock is behind the word (another worker read it a moment
        // later, across a window boundary): count as in the word's window.
        v.w = w;
        v.elapsed = 0;
    } else if (state != 0 && behind == 1) {
        v.w = {id, w.current, 0};
    } else {
        v.w = {id, 0, 0};
    }
    return v;
}

// Requests counted in the sliding window, times the period (exact integers).
u128 weighted_count(const WindowView& v, uint64_t period) {
    return u128(v.w.previous) * (period - v.elapsed) + u128(v.w.current) * period;
}

// How long until one more request fits under `limit`.
uint64_t sliding_wait(const WindowView& v, uint64_t period, uint64_t limit) {
    const uint64_t left = period - v.elapsed;  // of the current window
    if (v.w.current + 1 <= limit) {
        if (v.w.previous == 0) return 0;
        // previous * (left - x) + (current + 1) * period <= limit * period
        u128 room = u128(limit - v.w.current - 1) * period;
        u128 need = u128(v.w.previous) * left;
        if (need <= room) return 0;
        uint64_t x = ceil_div(need - room, v.w.previous);
        if (x < left) return x;
    }
    // In the next window the current count becomes the previous one.
    if (limit == 0) return kMax;
    if (v.w.current == 0) return left;
    u128 room = u128(limit - 1) * period;
    u128 need = u128(v.w.current) * period;
    if (need <= room) return left;
    uint64_t y = ceil_div(need - room, v.w.current);
    return y < period ? left + y : left + period;
}

// Not inlined into decide(): its 128-bit arithmetic would make every GCRA
// decision save and restore registers it never uses.
[[gnu::noinline]] Decision decide_sliding(const LimitParams& p, uint64_t state, uint64_t now) {
    const uint64_t period = p.period_ns;
    const uint64_t limit = std::min(saturating_add(p.rate, p.burst), kMaxWindowCount);
    Decision d;
    WindowView v = current_windows(state, now, period);
    u128 counted = weighted_count(v, period);
    u128 rate_scaled = u128(p.rate) * period;
    u128 with_this = counted + period;
    d.excess_milli = with_this > rate_scaled ? uint64_t((with_this - rate_scaled) * 1000 / period) : 0;
    if (with_this > u128(limit) * period) {
        d.verdict = Verdict::Reject;
        d.retry_after_ns = sliding_wait(v, period, limit);
        d.reset_ns = (period - v.elapsed) + (v.w.current ? period : 0);
        return d;
    }
    Windows next = v.w;
    next.current = v.w.current + 1;
    d.new_state = pack_windows(next);
    d.remaining = uint64_t((u128(limit) * period - with_this) / period);
    d.reset_ns = (period - v.elapsed) + period;  // the request just counted ages out of the next window
    return d;
}

// Inlined: four to six rounds hash a key, and as calls they cost twice as much.
[[gnu::always_inline]] inline uint64_t sip_rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

[[gnu::always_inline]] inline void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
    v0 += v1;
    v1 = sip_rotl(v1, 13);
    v1 ^= v0;
    v0 = sip_rotl(v0, 32);
    v2 += v3;
    v3 = sip_rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = sip_rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = sip_rotl(v1, 17);
    v1 ^= v2;
    v2 = sip_rotl(v2, 32);
}

// The last n < 8 bytes as a little-endian word (SipHash's tail) in a few
// loads that may overlap instead of one load per byte: keys are short
// ($binary_remote_addr is 4 bytes), so the tail is most of the input.
[[gnu::always_inline]] inline uint64_t tail_word(const char* p, size_t n) {
    if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + n - 4, 4);
        return uint64_t(lo) | (uint64_t(hi) << (8 * (n - 4)));
    }
    if (n == 0) return 0;
    const auto* b = reinterpret_cast<const uint8_t*>(p);
    return uint64_t(b[0]) | (uint64_t(b[n / 2]) << (8 * (n / 2))) | (uint64_t(b[n - 1]) << (8 * (n - 1)));
}

}  // namespace

LimitParams make_params(Algorithm a, uint64_t rate, uint64_t period_ns, uint64_t burst, uint64_t free_burst) {
    LimitParams p;
    p.algorithm = a;
    p.rate = std::max<uint64_t>(rate, 1);
    p.period_ns = period_ns;
    // Rounded up: the limit errs by a fraction of a nanosecond per request
    // on the strict side, never the lenient one.
    p.interval_ns = std::max<uint64_t>(ceil_div(period_ns, p.rate), 1);
    p.burst = burst;
    p.free_burst = free_burst;
    p.burst_ns = saturating_mul(burst, p.interval_ns);
    p.free_burst_ns = saturating_mul(free_burst, p.interval_ns);
    p.idle_remaining = p.interval_ns <= p.burst_ns ? (p.burst_ns - p.interval_ns) / p.interval_ns + 1 : 0;
    return p;
}

Decision decide(const LimitParams& p, uint64_t state, uint64_t now_ns) {
    return p.algorithm == Algorithm::Gcra ? decide_gcra(p, state, now_ns) : decide_sliding(p, state, now_ns);
}

uint64_t refund(const LimitParams& p, uint64_t state, uint64_t now_ns) {
    if (p.algorithm == Algorithm::Gcra) return state >= p.interval_ns ? state - p.interval_ns : 0;
    WindowView v = current_windows(state, now_ns, p.period_ns);
    if (v.w.id != unpack_windows(state).id || v.w.current == 0) return state;
    --v.w.current;
    return pack_windows(v.w);
}

uint64_t rescale_gcra(uint64_t tat, uint64_t now_ns, uint64_t old_interval_ns, uint64_t new_interval_ns) {
    if (tat <= now_ns || old_interval_ns == 0 || old_interval_ns == new_interval_ns) return tat;
    u128 debt = u128(tat - now_ns) * new_interval_ns / old_interval_ns;
    return debt > kMax - now_ns ? kMax : now_ns + uint64_t(debt);
}

uint64_t pack_windows(const Windows& w) {
    return ((w.id & kWindowIdMask) << (2 * kCountBits)) | (std::min(w.previous, kMaxWindowCount) << kCountBits) |
           std::min(w.current, kMaxWindowCount);
}

Windows unpack_windows(uint64_t word) {
    return {word >> (2 * kCountBits), (word >> kCountBits) & kMaxWindowCount, word & kMaxWindowCount};
}

uint64_t hash_key(const uint64_t secret[2], std::string_view key) {
    uint64_t v0 = secret[0] ^ 0x736f6d6570736575ull, v1 = secret[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = secret[0] ^ 0x6c7967656e657261ull, v3 = secret[1] ^ 0x7465646279746573ull;
    const size_t n = key.size();
    const char* p = key.data();
    size_t full = n & ~size_t(7);
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);  // little-endian hosts; the hash never leaves the machine
        v3 ^= m;
        sip_round(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = (uint64_t(n) << 56) | tail_word(p + full, n & 7);
    v3 ^= b;
    sip_round(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 3; ++i) sip_round(v0, v1, v2, v3);
    uint64_t h = v0 ^ v1 ^ v2 ^ v3;
    return h ? h : 1;  // 0 marks an empty slot
}

// ---- the table ----

Table::Table(void* base, size_t bytes)
    : header_(static_cast<ZoneHeader*>(base)),
      slots_(reinterpret_cast<Slot*>(static_cast<char*>(base) + sizeof(ZoneHeader))),
      capacity_(capacity_for(bytes)) {}

size_t Table::capacity_for(size_t bytes) {
    return bytes > sizeof(ZoneHeader) ? (bytes - sizeof(ZoneHeader)) / sizeof(Slot) : 0;
}

void Table::format(uint64_t key_id, uint64_t interval_ns, const uint64_t secret[2]) {
    memset(static_cast<void*>(header_), 0, sizeof(ZoneHeader) + capacity_ * sizeof(Slot));
    header_->capacity = capacity_;
    header_->key_id = key_id;
    header_->interval_ns = interval_ns;
    header_->secret[0] = secret[0];
    header_->secret[1] = secret[1];
    atomic(header_->magic).store(kZoneMagic, std::memory_order_release);
}

bool Table::formatted() const {
    return atomic(header_->magic).load(std::memory_order_acquire) == kZoneMagic && header_->capacity == capacity_;
}

Slot* Table::find(uint64_t hash, size_t home, size_t& empty, size_t& oldest) const {
    const size_t window = std::min(kProbeWindow, capacity_);
    uint64_t oldest_seen = kMax;
    empty = capacity_;
    oldest = home;
    for (size_t i = 0; i < window; ++i) {
        size_t idx = (home + i) % capacity_;
        Slot& s = slots_[idx];
        uint64_t key = atomic(s.key).load(std::memory_order_acquire);
        if (key == hash) return &s;
        if (key == 0) {
            // Slots are claimed in probe order and never emptied: the key
            // cannot be further on.
            empty = idx;
            return nullptr;
        }
        uint64_t seen = atomic(s.last_seen).load(std::memory_order_relaxed);
        if (seen < oldest_seen) {
            oldest_seen = seen;
            oldest = idx;
        }
    }
    return nullptr;
}

// One compare-and-swap makes the slot the key's. An evicted entry's word is
// cleared only if nobody wrote it meanwhile: a word written in that instant
// is kept, which can only make the new key stricter, never looser.
Slot* Table::claim(Slot& s, uint64_t expected_key, uint64_t hash, uint64_t now_ms) {
    uint64_t state = atomic(s.state).load(std::memory_order_acquire);
    if (!atomic(s.key).compare_exchange_strong(expected_key, hash, std::memory_order_acq_rel)) return nullptr;
    if (expected_key != 0) {
        atomic(s.state).compare_exchange_strong(state, 0, std::memory_order_acq_rel);
        atomic(header_->evictions).fetch_add(1, std::memory_order_relaxed);
    }
    atomic(s.last_seen).store(now_ms, std::memory_order_relaxed);
    return &s;
}

Slot& Table::probe(uint64_t hash, uint64_t now_ms, bool& evicted) {
    evicted = false;
    const size_t home = home_of(hash);
    // Each failed attempt means another worker claimed a slot of this window.
    for (int attempt = 0; attempt < 16; ++attempt) {
        size_t empty, oldest;
        if (Slot* s = find(hash, home, empty, oldest)) {
            touch(*s, now_ms);
            return *s;
        }
        size_t idx = empty < capacity_ ? empty : oldest;
        uint64_t expected = empty < capacity_ ? 0 : atomic(slots_[idx].key).load(std::memory_order_acquire);
        if (expected == hash) continue;  // another worker has just added this key there
        if (Slot* s = claim(slots_[idx], expected, hash, now_ms)) {
            evicted = expected != 0;
            return *s;
        }
    }
    // Unreachable in practice; sharing a word errs on the strict side.
    return slots_[home];
}

bool Table::eviction_warning_due(int64_t now_ms, int64_t interval_ms, uint64_t& count) {
    uint64_t total = atomic(header_->evictions).load(std::memory_order_relaxed);
    if (total == atomic(header_->evictions_logged).load(std::memory_order_relaxed)) return false;
    auto last_ref = atomic(header_->eviction_log_ms);
    int64_t last = last_ref.load(std::memory_order_relaxed);
    if (last != 0 && now_ms - last < interval_ms) return false;
    if (!last_ref.compare_exchange_strong(last, now_ms, std::memory_order_acq_rel)) return false;
    count = total - atomic(header_->evictions_logged).exchange(total, std::memory_order_acq_rel);
    return count != 0;
}

void give_back(uint64_t& word, const LimitParams& p, uint64_t now_ns) {
    auto ref = atomic(word);
    uint64_t state = ref.load(std::memory_order_acquire);
    while (!ref.compare_exchange_weak(state, refund(p, state, now_ns), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
    }
}

}  // namespace sluice::limit_req
