// `server NAME resolve`: each worker re-resolves the name in the background
// with libevent's evdns (never blocking the loop) and replaces that server's
// peers when the answer changes. The peer list is per worker; the state of
// each address (passive health, connection counts) is kept in the shared
// zone by address, so workers that resolved the same address share it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include <algorithm>
#include <cstring>

#include "core/log.h"
#include "event/worker.h"
#include "http/http_upstream.h"

namespace sluice::http {

struct UpstreamResolveState {
    struct Query {  // one per `resolve` server
        UpstreamResolveState* state = nullptr;
        size_t server_index = 0;
        bool soft_failure = false;  // timeout, SERVFAIL...: keep the addresses we have
        int64_t min_ttl_s = -1;
        std::vector<sockaddr_storage> addrs;
        std::vector<socklen_t> lens;
    };
    Upstream* upstream = nullptr;
    event_base* base = nullptr;
    evdns_base* dns = nullptr;
    event* timer = nullptr;
    std::vector<Query> queries;  // sized once: callbacks hold pointers into it
    int pending = 0;
    uint64_t rounds = 0;

    ~UpstreamResolveState() {
        if (timer) event_free(timer);
    }
};

// Here, where UpstreamResolveState is complete.
Upstream::Upstream() = default;
Upstream::~Upstream() = default;

namespace {

constexpr int64_t kDefaultIntervalMs = 30000;  // no TTL and no valid=
constexpr int64_t kRetryIntervalMs = 5000;     // after a failed lookup
constexpr int64_t kMinIntervalMs = 1000;
constexpr int64_t kRetiredKeepMs = 60000;      // a retired Peer stays readable this long

int64_t wall_msec() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct WorkerResolver {
    event_base* base;
    std::vector<std::string> nameservers;
    uint64_t timeout_ms;
    evdns_base* dns;
};

std::vector<WorkerResolver>& worker_resolvers() {
    static std::vector<WorkerResolver> resolvers;
    return resolvers;
}

void set_timeouts(evdns_base* dns, uint64_t timeout_ms) {
    // resolver_timeout bounds the whole lookup: three attempts share it.
    char buf[32];
    snprintf(buf, sizeof buf, "%.3f", std::max(0.1, double(timeout_ms) / 3000.0));
    evdns_base_set_option(dns, "timeout:", buf);
    evdns_base_set_option(dns, "attempts:", "3");
}

evdns_base* resolver_for(event_base* base, const ResolverConf& conf) {
    for (auto& r : worker_resolvers())
        if (r.base == base && r.nameservers == conf.nameservers && r.timeout_ms == conf.timeout_ms) return r.dns;
    // No resolv.conf and no hosts file: only the configured servers, as nginx.
    evdns_base* dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!dns) return nullptr;
    for (const std::string& ns : conf.nameservers) {
        if (evdns_base_nameserver_ip_add(dns, ns.c_str()) != 0) {
            SLUICE_LOG(LogLevel::Alert, "could not add name server %s (resolver in %s:%d)", ns.c_str(),
                       conf.file.c_str(), conf.line);
            evdns_base_free(dns, 0);
            return nullptr;
        }
    }
    set_timeouts(dns, conf.timeout_ms);
    worker_resolvers().push_back({base, conf.nameservers, conf.timeout_ms, dns});
    return dns;
}

void add_answer(UpstreamResolveState::Query& q, char type, int count, int ttl, const void* addresses) {
    uint16_t port = q.state->upstream->servers[q.server_index].port;
    for (int i = 0; i < count; ++i) {
        sockaddr_storage a{};
        socklen_t len;
        if (type == DNS_IPv4_A) {
            auto& sin = reinterpret_cast<sockaddr_in&>(a);
            sin.sin_family = AF_INET;
            sin.sin_port = htons(port);
            memcpy(&sin.sin_addr, static_cast<const char*>(addresses) + 4 * i, 4);
            len = sizeof(sockaddr_in);
        } else if (type == DNS_IPv6_AAAA) {
            auto& sin6 = reinterpret_cast<sockaddr_in6&>(a);
            sin6.sin6_family = AF_INET6;
            sin6.sin6_port = htons(port);
            memcpy(&sin6.sin6_addr, static_cast<const char*>(addresses) + 16 * i, 16);
            len = sizeof(sockaddr_in6);
        } else {
            continue;
        }
        q.addrs.push_back(a);
        q.lens.push_back(len);
    }
    if (ttl >= 0 && (q.min_ttl_s < 0 || ttl < q.min_ttl_s)) q.min_ttl_s = ttl;
}

void schedule(UpstreamResolveState& st, int64_t delay_ms) {
    timeval tv{time_t(delay_ms / 1000), suseconds_t((delay_ms % 1000) * 1000)};
    evtimer_add(st.timer, &tv);
}

int64_t next_interval(const UpstreamResolveState& st) {
    const ResolverConf& rc = *st.upstream->resolver;
    int64_t ttl_ms = -1;
    bool failed = false;
    for (const auto& q : st.queries) {
        failed = failed || q.soft_failure;
        if (q.min_ttl_s >= 0 && (ttl_ms < 0 || q.min_ttl_s * 1000 < ttl_ms)) ttl_ms = q.min_ttl_s * 1000;
    }
    int64_t delay = rc.valid_ms ? int64_t(rc.valid_ms) : (ttl_ms >= 0 ? ttl_ms : kDefaultIntervalMs);
    if (failed) delay = std::min(delay, kRetryIntervalMs);
    return std::max(delay, kMinIntervalMs);
}

// Keeps this worker's addresses from being taken over as stale slots.
void refresh_slots(Upstream& u, int64_t now) {
    if (!u.shared) return;
    for (const Peer& p : u.peers) u.shared_state(p).seen_ms.store(now, std::memory_order_relaxed);
}

void round_done(UpstreamResolveState& st) {
    Upstream& u = *st.upstream;
    int64_t now = wall_msec();
    for (const auto& q : st.queries) {
        if (q.soft_failure) {
            SLUICE_LOG(LogLevel::Error, "could not resolve \"%s\" of upstream \"%s\", keeping its addresses",
                       u.servers[q.server_index].host.c_str(), u.name.c_str());
            continue;
        }
        upstream_apply_resolved(u, q.server_index, q.addrs, q.lens, now);
    }
    refresh_slots(u, now);
    upstream_free_retired(u);
    ++st.rounds;
    schedule(st, next_interval(st));
}

void finish_one(UpstreamResolveState& st) {
    if (--st.pending == 0) round_done(st);
}

void on_answer(int result, char type, int count, int ttl, void* addresses, void* arg) {
    auto& q = *static_cast<UpstreamResolveState::Query*>(arg);
    if (result == DNS_ERR_NONE) add_answer(q, type, count, ttl, addresses);
    else if (result != DNS_ERR_NOTEXIST && result != DNS_ERR_NODATA) q.soft_failure = true;
    finish_one(*q.state);
}

void send_query(UpstreamResolveState& st, UpstreamResolveState::Query& q, bool ipv6) {
    const std::string& host = st.upstream->servers[q.server_index].host;
    ++st.pending;
    evdns_request* r = ipv6 ? evdns_base_resolve_ipv6(st.dns, host.c_str(), DNS_QUERY_NO_SEARCH, on_answer, &q)
                            : evdns_base_resolve_ipv4(st.dns, host.c_str(), DNS_QUERY_NO_SEARCH, on_answer, &q);
    if (!r) {
        q.soft_failure = true;
        --st.pending;
    }
}

void start_round(evutil_socket_t, short, void* arg) {
    auto& st = *static_cast<UpstreamResolveState*>(arg);
    const ResolverConf& rc = *st.upstream->resolver;
    // Held while queries are sent, in case an answer comes back at once.
    st.pending = 1;
    for (auto& q : st.queries) {
        q.addrs.clear();
        q.lens.clear();
        q.soft_failure = false;
        q.min_ttl_s = -1;
        if (rc.ipv4) send_query(st, q, false);
        if (rc.ipv6) send_query(st, q, true);
    }
    finish_one(st);
}

bool same_addresses(const Upstream& u, size_t server_index, std::vector<uint64_t>& keys) {
    std::vector<uint64_t> current;
    for (const Peer& p : u.peers)
        if (p.server_index == server_index) current.push_back(upstream_address_key(p.addr, p.addr_len));
    std::sort(current.begin(), current.end());
    return current == keys;
}

const Peer* find_peer(const std::vector<Peer>& peers, uint64_t key) {
    for (const Peer& p : peers)
        if (upstream_address_key(p.addr, p.addr_len) == key) return &p;
    return nullptr;
}

}  // namespace

evdns_base* upstream_worker_resolver(const ResolverConf& conf) { return resolver_for(Worker::current().base(), conf); }

bool upstream_resolve_start(Upstream& u, event_base* base) {
    if (!u.has_resolve()) return true;
    if (!u.resolver) return false;
    evdns_base* dns = resolver_for(base, *u.resolver);
    if (!dns) return false;
    auto st = std::make_unique<UpstreamResolveState>();
    st->upstream = &u;
    st->base = base;
    st->dns = dns;
    for (size_t i = 0; i < u.servers.size(); ++i) {
        if (!u.servers[i].resolve) continue;
        st->queries.emplace_back();
        st->queries.back().state = st.get();
        st->queries.back().server_index = i;
    }
    st->timer = evtimer_new(base, start_round, st.get());
    if (!st->timer) return false;
    // At once: a name that did not resolve at load gets its addresses now.
    schedule(*st, 0);
    u.resolve_state = std::move(st);
    return true;
}

void upstream_resolve_stop(Upstream& u) { u.resolve_state.reset(); }

void upstream_resolve_stop_all() {
    // Pending lookups are dropped without their callbacks.
    for (auto& r : worker_resolvers()) evdns_base_free(r.dns, 0);
    worker_resolvers().clear();
}

bool upstream_apply_resolved(Upstream& u, size_t server_index, const std::vector<sockaddr_storage>& addrs,
                             const std::vector<socklen_t>& lens, int64_t now_ms) {
    std::vector<uint64_t> keys;
    std::vector<size_t> order;
    for (size_t i = 0; i < addrs.size(); ++i) {
        uint64_t k = upstream_address_key(addrs[i], lens[i]);
        if (std::find(keys.begin(), keys.end(), k) != keys.end()) continue;
        keys.push_back(k);
        order.push_back(i);
    }
    std::vector<uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    if (same_addresses(u, server_index, sorted)) return false;

    std::vector<Peer> next;
    for (const Peer& p : u.peers) {
        if (p.server_index == server_index) continue;
        next.push_back(p);
        // Requests in flight finish on the retired copy.
        next.back().worker_conns = 0;
        next.back().probing = false;
    }
    const UpstreamServerConf& s = u.servers[server_index];
    for (size_t n = 0; n < order.size() && next.size() < kMaxUpstreamPeers; ++n) {
        size_t i = order[n];
        Peer p = upstream_make_peer(s, server_index, addrs[i], lens[i]);
        if (const Peer* old = find_peer(u.peers, keys[n])) {
            p.current_weight = old->current_weight;
            p.effective_weight = old->effective_weight;
        }
        if (u.shared) p.shared_index = upstream_claim_slot(u, keys[n], now_ms);
        next.push_back(std::move(p));
    }
    if (!u.peers.empty()) {
        auto retired = std::make_unique<Upstream::RetiredPeers>();
        retired->peers = std::move(u.peers);
        retired->since_ms = now_ms;
        u.retired_peers.push_back(std::move(retired));
    }
    u.peers = std::move(next);
    upstream_init_peers(u, false);
    if (u.shared) u.shared->generation.fetch_add(1, std::memory_order_relaxed);
    SLUICE_LOG(LogLevel::Notice, "upstream \"%s\": \"%s\" now resolves to %zu address(es)", u.name.c_str(),
               s.host.c_str(), keys.size());
    return true;
}

void upstream_free_retired(Upstream& u) {
    int64_t now = wall_msec();
    auto done = [now](const std::unique_ptr<Upstream::RetiredPeers>& r) {
        if (now - r->since_ms < kRetiredKeepMs) return false;
        for (const Peer& p : r->peers)
            if (p.worker_conns > 0) return false;
        return true;
    };
    u.retired_peers.erase(std::remove_if(u.retired_peers.begin(), u.retired_peers.end(), done),
                          u.retired_peers.end());
}

}  // namespace sluice::http
