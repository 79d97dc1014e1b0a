// Choosing a peer: smooth weighted round robin, least_conn, hash (plain and
// ketama-consistent), random and random two; passive health (max_fails /
// fail_timeout) in shared memory; the layout of an upstream's shared zone.
// The algorithms are nginx's (ngx_http_upstream_round_robin.c,
// ngx_http_upstream_least_conn_module.c, ngx_http_upstream_hash_module.c,
// ngx_http_upstream_random_module.c), so a configuration balances the same.
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "core/log.h"
#include "http/http_request.h"
#include "http/http_upstream.h"

namespace sluice::http {

namespace {

// nginx gives up rehashing (and random picks) after this many tries and
// falls back to round robin.
constexpr int kMaxHashTries = 20;
constexpr int kKetamaPointsPerWeight = 160;
// A resolve slot unused by every worker this long may hold another address.
constexpr int64_t kStaleSlotMs = 10 * 60 * 1000;

int64_t wall_msec() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

PeerShared& slot(UpstreamShared& s, size_t i) { return (&s.peers[0])[i]; }

uint32_t crc32_update(uint32_t crc, std::string_view s) {
    return uint32_t(::crc32(crc, reinterpret_cast<const Bytef*>(s.data()), uInt(s.size())));
}

// nginx's exception: a lone server is never considered unavailable by
// passive health (max_fails and fail_timeout are ignored).
bool passive_health_applies(const Upstream& u, const Peer& p) {
    return p.max_fails > 0 && u.peers.size() > 1;
}

bool is_resolved_peer(const Upstream& u, const Peer& p) {
    return p.server_index < u.servers.size() && u.servers[p.server_index].resolve;
}

void reset_slot(PeerShared& s, uint64_t key, int64_t now) {
    s.fails.store(0, std::memory_order_relaxed);
    s.fail_window_start_ms.store(0, std::memory_order_relaxed);
    s.down_until_ms.store(0, std::memory_order_relaxed);
    s.unhealthy.store(0, std::memory_order_relaxed);
    s.check_passes.store(0, std::memory_order_relaxed);
    s.check_fails.store(0, std::memory_order_relaxed);
    s.active_conns.store(0, std::memory_order_relaxed);
    s.requests.store(0, std::memory_order_relaxed);
    s.seen_ms.store(now, std::memory_order_relaxed);
    s.addr_key.store(key, std::memory_order_release);
}

// ---- ketama ----

// nginx hashes the server as written ("host:port"); we hash the address
// ("127.0.0.1:8080"), the same for servers given as IP:port, and distinct
// for the several addresses of one name.
void add_ketama_points(Upstream& u, size_t peer_index) {
    const Peer& p = u.peers[peer_index];
    std::string_view text = p.addr_text, host = text, port;
    if (text.substr(0, 5) == "unix:") {
        host = text.substr(5);
    } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    uint32_t base = crc32_update(0, host);
    base = crc32_update(base, std::string_view("\0", 1));
    base = crc32_update(base, port);
    uint32_t prev = 0;
    int points = p.weight * kKetamaPointsPerWeight;
    for (int j = 0; j < points; ++j) {
        // The previous point, little-endian, as nginx's prev_hash.byte[].
        char bytes[4] = {char(prev & 0xff), char((prev >> 8) & 0xff), char((prev >> 16) & 0xff),
                         char((prev >> 24) & 0xff)};
        uint32_t h = crc32_update(base, std::string_view(bytes, 4));
        u.ketama.emplace_back(h, uint32_t(peer_index));
        prev = h;
    }
}

void build_ketama(Upstream& u) {
    u.ketama.clear();
    for (size_t i = 0; i < u.primary_count; ++i) add_ketama_points(u, i);
    std::stable_sort(u.ketama.begin(), u.ketama.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    // Equal points keep the first, as nginx does.
    auto last = std::unique(u.ketama.begin(), u.ketama.end(),
                            [](const auto& a, const auto& b) { return a.first == b.first; });
    u.ketama.erase(last, u.ketama.end());
}

// ---- committing a choice ----

void log_disabled(const Upstream& u, const Peer& p) {
    SLUICE_LOG(LogLevel::Warn, "upstream server temporarily disabled while proxying to upstream \"%s\", upstream: \"%s\"",
               u.name.c_str(), p.addr_text.c_str());
}

// Takes a connection slot under max_conns (across workers).
bool reserve_conn(const Peer& p, PeerShared& s) {
    if (p.max_conns <= 0) {
        s.active_conns.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    int32_t c = s.active_conns.load(std::memory_order_relaxed);
    do {
        if (c >= p.max_conns) return false;
    } while (!s.active_conns.compare_exchange_weak(c, c + 1, std::memory_order_relaxed));
    return true;
}

// After a down period, and until a request succeeds, one request at a time
// (across workers) may try the peer, as nginx lets one through per fail_timeout.
bool take_probe(const Upstream& u, Peer& p, PeerShared& s, int64_t now) {
    if (!passive_health_applies(u, p)) return true;
    int64_t d = s.down_until_ms.load(std::memory_order_acquire);
    if (d == 0) return true;
    if (d > now) return false;
    if (!s.down_until_ms.compare_exchange_strong(d, now + int64_t(p.fail_timeout_ms))) return false;
    p.probing = true;
    return true;
}

bool commit(Upstream& u, Peer& p, int64_t now) {
    PeerShared& s = u.shared_state(p);
    if (!reserve_conn(p, s)) return false;
    if (!take_probe(u, p, s, now)) {
        s.active_conns.fetch_sub(1, std::memory_order_relaxed);
        return false;
    }
    ++p.worker_conns;
    s.requests.fetch_add(1, std::memory_order_relaxed);
    return true;
}

// ---- the methods, over peers [begin, end) ----

struct Range {
    size_t begin, end;
};

bool candidate(const Upstream& u, size_t i, const TriedPeers& skip, int64_t now) {
    return !skip.has(i) && upstream_peer_usable(u, u.peers[i], now);
}

// nginx's ngx_http_upstream_get_peer: each usable peer gains its effective
// weight, the largest wins and loses the total.
Peer* round_robin(Upstream& u, Range r, const TriedPeers& skip, int64_t now) {
    Peer* best = nullptr;
    int total = 0;
    for (size_t i = r.begin; i < r.end; ++i) {
        if (!candidate(u, i, skip, now)) continue;
        Peer& p = u.peers[i];
        p.current_weight += p.effective_weight;
        total += p.effective_weight;
        if (p.effective_weight < p.weight) ++p.effective_weight;
        if (!best || p.current_weight > best->current_weight) best = &p;
    }
    if (best) best->current_weight -= total;
    return best;
}

int32_t conns_of(const Upstream& u, const Peer& p) {
    return u.shared_state(p).active_conns.load(std::memory_order_relaxed);
}

// a/wa < b/wb without division.
bool fewer_conns(int64_t a, int64_t wa, int64_t b, int64_t wb) { return a * wb < b * wa; }

// nginx's least_conn: the fewest connections per weight; ties go round robin.
Peer* least_conn(Upstream& u, Range r, const TriedPeers& skip, int64_t now) {
    Peer* best = nullptr;
    int32_t best_conns = 0;
    size_t first = r.begin;
    bool many = false;
    for (size_t i = r.begin; i < r.end; ++i) {
        if (!candidate(u, i, skip, now)) continue;
        Peer& p = u.peers[i];
        int32_t c = conns_of(u, p);
        if (!best || fewer_conns(c, p.weight, best_conns, best->weight)) {
            best = &p;
            best_conns = c;
            first = i;
            many = false;
        } else if (int64_t(c) * best->weight == int64_t(best_conns) * p.weight) {
            many = true;
        }
    }
    if (!best || !many) return best;
    Peer* chosen = nullptr;
    int total = 0;
    for (size_t i = first; i < r.end; ++i) {
        if (!candidate(u, i, skip, now)) continue;
        Peer& p = u.peers[i];
        if (int64_t(conns_of(u, p)) * best->weight != int64_t(best_conns) * p.weight) continue;
        p.current_weight += p.effective_weight;
        total += p.effective_weight;
        if (p.effective_weight < p.weight) ++p.effective_weight;
        if (!chosen || p.current_weight > chosen->current_weight) chosen = &p;
    }
    chosen->current_weight -= total;
    return chosen;
}

// The peer that owns weight unit `w` among [0, primary_count).
size_t peer_at_weight(const Upstream& u, uint64_t w) {
    size_t i = 0;
    while (i + 1 < u.primary_count && w >= uint64_t(u.peers[i].weight)) w -= uint64_t(u.peers[i++].weight);
    return i;
}

// nginx's hash: ((crc32([REHASH] KEY) >> 16) & 0x7fff) accumulated, modulo
// the total weight (of usable and unusable peers alike, so keys stay put).
Peer* hash_peer(Upstream& u, std::string_view key, const TriedPeers& skip, int64_t now) {
    if (u.primary_weight == 0) return nullptr;
    uint64_t acc = 0;
    for (int rehash = 0; rehash <= kMaxHashTries; ++rehash) {
        uint32_t crc = 0;
        if (rehash > 0) {
            char buf[16];
            int n = snprintf(buf, sizeof buf, "%d", rehash);
            crc = crc32_update(crc, std::string_view(buf, size_t(n)));
        }
        crc = crc32_update(crc, key);
        acc += (crc >> 16) & 0x7fff;
        size_t i = peer_at_weight(u, acc % u.primary_weight);
        if (candidate(u, i, skip, now)) return &u.peers[i];
    }
    return round_robin(u, {0, u.primary_count}, skip, now);
}

// ketama: the first point at or after crc32(KEY), walking on past unusable
// peers; round robin after 20 tries, as nginx.
Peer* consistent_hash_peer(Upstream& u, std::string_view key, const TriedPeers& skip, int64_t now) {
    if (u.ketama.empty()) return nullptr;
    uint32_t h = crc32_update(0, key);
    auto it = std::lower_bound(u.ketama.begin(), u.ketama.end(), h,
                               [](const auto& point, uint32_t v) { return point.first < v; });
    size_t at = size_t(it - u.ketama.begin());
    for (int tries = 0; tries <= kMaxHashTries; ++tries) {
        size_t i = u.ketama[(at + size_t(tries)) % u.ketama.size()].second;
        if (candidate(u, i, skip, now)) return &u.peers[i];
    }
    return round_robin(u, {0, u.primary_count}, skip, now);
}

uint64_t next_random(Upstream& u) {
    uint64_t& x = u.random_state;
    if (x == 0) x = (uint64_t(getpid()) << 32) ^ uint64_t(wall_msec()) ^ reinterpret_cast<uintptr_t>(&u) ^ 0x9e3779b97f4a7c15ull;
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545f4914f6cdd1dull;
}

// A usable peer picked at random in proportion to weight; -1 after 20 misses.
ptrdiff_t random_index(Upstream& u, const TriedPeers& skip, int64_t now, ptrdiff_t except) {
    if (u.primary_weight == 0) return -1;
    for (int tries = 0; tries < kMaxHashTries; ++tries) {
        size_t i = peer_at_weight(u, next_random(u) % u.primary_weight);
        if (ptrdiff_t(i) != except && candidate(u, i, skip, now)) return ptrdiff_t(i);
    }
    return -1;
}

Peer* random_peer(Upstream& u, const TriedPeers& skip, int64_t now) {
    ptrdiff_t i = random_index(u, skip, now, -1);
    return i < 0 ? round_robin(u, {0, u.primary_count}, skip, now) : &u.peers[size_t(i)];
}

// Power of two choices: two distinct random peers, the one with fewer
// connections per weight wins.
Peer* random_two_peer(Upstream& u, const TriedPeers& skip, int64_t now) {
    ptrdiff_t a = random_index(u, skip, now, -1);
    if (a < 0) return round_robin(u, {0, u.primary_count}, skip, now);
    ptrdiff_t b = u.primary_count > 1 ? random_index(u, skip, now, a) : -1;
    if (b < 0) return &u.peers[size_t(a)];
    Peer& pa = u.peers[size_t(a)];
    Peer& pb = u.peers[size_t(b)];
    return fewer_conns(conns_of(u, pb), pb.weight, conns_of(u, pa), pa.weight) ? &pb : &pa;
}

Peer* choose_in(Upstream& u, Range r, std::string_view key, const TriedPeers& skip, int64_t now) {
    switch (u.balancer) {
    case Balancer::RoundRobin: return round_robin(u, r, skip, now);
    case Balancer::LeastConn: return least_conn(u, r, skip, now);
    case Balancer::Hash:
        if (r.begin != 0) return round_robin(u, r, skip, now);
        return u.hash_consistent ? consistent_hash_peer(u, key, skip, now) : hash_peer(u, key, skip, now);
    case Balancer::Random:
    case Balancer::RandomTwo:
        if (r.begin != 0) return round_robin(u, r, skip, now);
        return u.balancer == Balancer::Random ? random_peer(u, skip, now) : random_two_peer(u, skip, now);
    }
    return nullptr;
}

// Chooses in the range and commits; a peer that cannot be committed (lost
// a race for max_conns or for the probe) is skipped and the choice redone.
Peer* choose_and_commit(Upstream& u, Range r, std::string_view key, const TriedPeers& tried, int64_t now) {
    TriedPeers skip = tried;
    for (size_t attempt = r.begin; attempt < r.end; ++attempt) {
        Peer* p = choose_in(u, r, key, skip, now);
        if (!p) return nullptr;
        if (commit(u, *p, now)) return p;
        skip.add(size_t(p - u.peers.data()));
    }
    return nullptr;
}

// ---- passive health ----

uint32_t count_failure(const Peer& p, PeerShared& s, int64_t now) {
    int64_t start = s.fail_window_start_ms.load(std::memory_order_acquire);
    if (now - start >= int64_t(p.fail_timeout_ms) &&
        s.fail_window_start_ms.compare_exchange_strong(start, now)) {
        s.fails.store(1, std::memory_order_release);
        return 1;
    }
    return s.fails.fetch_add(1, std::memory_order_acq_rel) + 1;
}

// Sets down_until to now + fail_timeout unless another worker already did;
// true for the one that did.
bool mark_down(const Peer& p, PeerShared& s, int64_t now) {
    int64_t until = now + int64_t(p.fail_timeout_ms);
    int64_t d = s.down_until_ms.load(std::memory_order_acquire);
    while (d < until) {
        if (s.down_until_ms.compare_exchange_weak(d, until)) return d <= now;
    }
    return false;
}

void record_failure(const Upstream& u, Peer& p, PeerShared& s, int64_t now) {
    bool was_probe = p.probing;
    p.probing = false;
    if (!passive_health_applies(u, p)) return;
    uint32_t fails = count_failure(p, s, now);
    p.effective_weight = std::max(0, p.effective_weight - p.weight / p.max_fails);
    int64_t d = s.down_until_ms.load(std::memory_order_acquire);
    bool on_probation = d != 0 && d <= now;
    if (!was_probe && !on_probation && fails < uint32_t(p.max_fails)) return;
    if (mark_down(p, s, now) || was_probe) log_disabled(u, p);
}

void record_success(const Upstream& u, Peer& p, PeerShared& s, int64_t now) {
    if (p.probing) {
        // The down period is over and the peer answered: back in service.
        p.probing = false;
        s.fails.store(0, std::memory_order_relaxed);
        s.down_until_ms.store(0, std::memory_order_release);
        return;
    }
    if (s.fails.load(std::memory_order_relaxed) != 0 && s.down_until_ms.load(std::memory_order_relaxed) == 0 &&
        now - s.fail_window_start_ms.load(std::memory_order_relaxed) >= int64_t(p.fail_timeout_ms))
        s.fails.store(0, std::memory_order_relaxed);
}

}  // namespace

// ---- building peers and the shared zone ----

void upstream_init_peers(Upstream& u, bool reset_weights) {
    std::stable_partition(u.peers.begin(), u.peers.end(), [](const Peer& p) { return !p.backup; });
    u.primary_count = 0;
    u.primary_weight = u.backup_weight = 0;
    for (Peer& p : u.peers) {
        if (reset_weights) {
            p.current_weight = 0;
            p.effective_weight = p.weight;
        }
        (p.backup ? u.backup_weight : u.primary_weight) += uint64_t(p.weight);
        if (!p.backup) ++u.primary_count;
    }
    if (u.balancer == Balancer::Hash && u.hash_consistent) build_ketama(u);
}

size_t upstream_shared_size(size_t slots) {
    return sizeof(UpstreamShared) + (std::max<size_t>(slots, 1) - 1) * sizeof(PeerShared);
}

void upstream_attach_shared(Upstream& u, void* mem, bool keep) {
    if (u.slot_count == 0) u.slot_count = u.static_slots = std::max<size_t>(u.peers.size(), 1);
    auto* sh = static_cast<UpstreamShared*>(mem);
    int64_t now = wall_msec();
    if (!keep) {
        memset(mem, 0, upstream_shared_size(u.slot_count));
        new (mem) UpstreamShared();
        for (size_t i = 1; i < u.slot_count; ++i) new (&slot(*sh, i)) PeerShared();
    }
    sh->slot_count = uint32_t(u.slot_count);
    sh->static_slots = uint32_t(u.static_slots);
    u.shared = sh;
    size_t next_static = 0;
    for (Peer& p : u.peers) {
        uint64_t key = upstream_address_key(p.addr, p.addr_len);
        if (is_resolved_peer(u, p)) {
            p.shared_index = upstream_claim_slot(u, key, now);
            continue;
        }
        p.shared_index = std::min(next_static++, u.slot_count - 1);
        PeerShared& s = slot(*sh, p.shared_index);
        // A kept zone whose server moved to another address starts afresh.
        if (s.addr_key.load(std::memory_order_acquire) != key) reset_slot(s, key, now);
    }
}

size_t upstream_claim_slot(Upstream& u, uint64_t key, int64_t now) {
    UpstreamShared& sh = *u.shared;
    size_t begin = std::min(u.static_slots, u.slot_count - 1), end = u.slot_count;
    for (size_t i = begin; i < end; ++i) {
        PeerShared& s = slot(sh, i);
        uint64_t k = s.addr_key.load(std::memory_order_acquire);
        // Slots are claimed in order, so a worker that loses the race for a
        // free slot sees the winner's key there and goes on.
        if (k == 0 && s.addr_key.compare_exchange_strong(k, key)) {
            s.seen_ms.store(now, std::memory_order_relaxed);
            return i;
        }
        if (k == key) {
            s.seen_ms.store(now, std::memory_order_relaxed);
            return i;
        }
    }
    for (size_t i = begin; i < end; ++i) {
        PeerShared& s = slot(sh, i);
        int64_t seen = s.seen_ms.load(std::memory_order_relaxed);
        if (now - seen > kStaleSlotMs && s.active_conns.load(std::memory_order_relaxed) <= 0 &&
            s.seen_ms.compare_exchange_strong(seen, now)) {
            reset_slot(s, key, now);
            return i;
        }
    }
    // Every slot is in use: share one (its health state too) rather than fail.
    static bool warned = false;
    if (!warned) {
        warned = true;
        SLUICE_LOG(LogLevel::Warn, "upstream \"%s\" has more resolved addresses than shared slots; some share state",
                   u.name.c_str());
    }
    return begin + key % (end - begin);
}

// ---- choosing ----

bool upstream_peer_usable(const Upstream& u, const Peer& p, int64_t now_ms) {
    if (p.down) return false;
    const PeerShared& s = u.shared_state(p);
    if (passive_health_applies(u, p) && s.down_until_ms.load(std::memory_order_acquire) > now_ms) return false;
    if (s.unhealthy.load(std::memory_order_acquire)) return false;
    if (p.max_conns > 0 && s.active_conns.load(std::memory_order_relaxed) >= p.max_conns) return false;
    return true;
}

Peer* upstream_pick_peer(Upstream& u, std::string_view key, const TriedPeers& tried, int64_t now_ms) {
    if (!u.shared || u.peers.empty()) return nullptr;
    if (Peer* p = choose_and_commit(u, {0, u.primary_count}, key, tried, now_ms)) return p;
    if (u.primary_count == u.peers.size()) return nullptr;
    return choose_and_commit(u, {u.primary_count, u.peers.size()}, key, tried, now_ms);
}

Peer* upstream_select_peer(Upstream& u, Request& r, const TriedPeers& tried) {
    std::string_view key;
    if (u.balancer == Balancer::Hash) key = u.hash_key.eval(r);
    return upstream_pick_peer(u, key, tried, current_msec());
}

void upstream_peer_done_at(Upstream& u, Peer& p, bool failed, int64_t now_ms) {
    if (!u.shared) return;
    PeerShared& s = u.shared_state(p);
    s.active_conns.fetch_sub(1, std::memory_order_relaxed);
    if (p.worker_conns > 0) --p.worker_conns;
    if (failed) record_failure(u, p, s, now_ms);
    else record_success(u, p, s, now_ms);
}

void upstream_peer_done(Upstream& u, Peer& p, bool failed) { upstream_peer_done_at(u, p, failed, current_msec()); }

}  // namespace sluice::http
