// The upstream core: upstream{} blocks, their peers, load balancing,
// passive and active health state shared by all workers, and the per-worker
// keep-alive pools of idle connections. The proxy module (and any other
// module that talks to backends) uses this API; health checks are a module
// that writes the shared health state.
#pragma once
#include <sys/socket.h>

#include <event2/event_struct.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/cycle.h"
#include "http/http_core.h"
#include "http/http_variables.h"

struct event_base;
struct evdns_base;
struct ssl_st;

namespace sluice {
extern Module http_upstream_module;
}

namespace sluice::http {

// State of one peer shared by every worker (in the upstream's shm zone).
// Trivially copyable, lock-free: a worker killed at any point leaves it usable.
struct PeerShared {
    std::atomic<uint32_t> fails;               // failures in the current fail_timeout window
    std::atomic<int64_t> fail_window_start_ms;
    std::atomic<int64_t> down_until_ms;        // passive health: max_fails reached
    std::atomic<uint32_t> unhealthy;           // active health: 1 = failing checks
    std::atomic<uint32_t> check_passes;        // consecutive, for passes=N
    std::atomic<uint32_t> check_fails;         // consecutive, for fails=N
    std::atomic<int32_t> active_conns;         // requests in flight across workers
    std::atomic<uint64_t> requests;            // for status pages
    // Which address the slot holds (upstream_address_key; 0: free). Workers
    // that resolve names on their own find one address's state here.
    std::atomic<uint64_t> addr_key;
    std::atomic<int64_t> seen_ms;              // last time a worker used the slot (resolve reclaims stale ones)
};

// Header of an upstream's zone: the active-health prober lease, then peers.
struct UpstreamShared {
    std::atomic<int32_t> prober_pid;           // the worker that runs health checks
    std::atomic<int64_t> prober_heartbeat_ms;  // a stale lease is taken over
    std::atomic<uint64_t> generation;          // bumped when the peer list changes (resolve)
    uint32_t slot_count;                       // entries in peers[]
    uint32_t static_slots;                     // [0, static_slots): servers without `resolve`
    PeerShared peers[1];                       // really peer_count entries
};

// One `server` line of an upstream.
struct UpstreamServerConf {
    std::string name;  // as written: "10.0.0.1:8080", "backend.local:80"
    int weight = 1;
    int max_fails = 1;
    uint64_t fail_timeout_ms = 10000;
    int max_conns = 0;  // 0: unlimited
    bool backup = false;
    bool down = false;
    bool resolve = false;  // re-resolved in the background with `resolver`
    std::string file;
    int line = 0;
    std::string host;      // name part of `name` (no brackets); empty for unix:
    uint16_t port = 80;
};

// One address of a server (a name may resolve to several).
struct Peer {
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string addr_text;    // "127.0.0.1:8080", for $upstream_addr and logs
    std::string server_name;  // the `server` name, for the Host header and SNI
    int weight = 1;
    int max_fails = 1;
    uint64_t fail_timeout_ms = 10000;
    int max_conns = 0;
    bool backup = false;
    bool down = false;
    size_t shared_index = 0;  // into UpstreamShared::peers

    // Per worker.
    int current_weight = 0;
    int effective_weight = 1;
    uint32_t worker_conns = 0;
    bool probing = false;     // this worker's request is the one probe after a down period
    size_t server_index = 0;  // into Upstream::servers
};

enum class Balancer : uint8_t { RoundRobin, LeastConn, Hash, Random, RandomTwo };

class KeepalivePool;
struct UpstreamResolveState;
struct UpstreamTls;

// `resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]`.
struct ResolverConf {
    std::vector<std::string> nameservers;  // "IP:port", "[IPv6]:port"
    uint64_t valid_ms = 0;                 // 0: the answers' TTL
    bool ipv4 = true;
    bool ipv6 = true;
    uint64_t timeout_ms = 30000;           // resolver_timeout
    std::string file;
    int line = 0;
};

struct Upstream {
    std::string name;
    std::string file;
    int line = 0;
    bool implicit = false;  // made from a proxy_pass host, not an upstream{} block
    std::vector<UpstreamServerConf> servers;
    std::vector<Peer> peers;         // primary, then backup (backup flag set)
    size_t primary_count = 0;
    Balancer balancer = Balancer::RoundRobin;
    ComplexValue hash_key;           // hash KEY
    bool hash_consistent = false;
    std::vector<std::pair<uint32_t, uint32_t>> ketama;  // (point, peer index), sorted
    uint64_t keepalive = 0;          // idle connections cached per worker
    uint64_t keepalive_timeout_ms = 60000;
    uint64_t keepalive_requests = 1000;
    ShmZone* zone = nullptr;
    UpstreamShared* shared = nullptr;  // zone->addr once mapped
    std::unique_ptr<KeepalivePool> pool;  // per worker, created in init_worker
    void* health = nullptr;            // the health-check module's per-upstream data

    // Derived from `peers` by upstream_init_peers().
    uint64_t primary_weight = 0;       // sum of primary weights (hash)
    uint64_t backup_weight = 0;
    // `zone NAME SIZE`, accepted for nginx compatibility (the zone is always made).
    std::string zone_name;
    uint64_t zone_size = 0;
    std::shared_ptr<const ResolverConf> resolver;  // `resolver` in the block, else http{}'s
    std::optional<uint64_t> resolver_timeout_ms;
    // Implicit upstreams (proxy_pass host[:port]).
    std::string implicit_host;
    uint16_t implicit_port = 80;
    bool implicit_port_given = false;
    bool balancer_set = false;
    size_t slot_count = 0;             // shared slots: one per static peer, then resolve slots
    size_t static_slots = 0;
    // Resolve (per worker): peer lists replaced while requests still hold
    // Peer pointers; freed once none of their peers has a request in flight.
    struct RetiredPeers {
        std::vector<Peer> peers;
        int64_t since_ms = 0;
    };
    std::vector<std::unique_ptr<RetiredPeers>> retired_peers;
    std::unique_ptr<UpstreamResolveState> resolve_state;
    uint64_t random_state = 0;         // per worker, for `random`
    // TLS of the health checks: the settings of the first location that
    // proxies to this upstream with https:// (null: probes in clear text).
    UpstreamTls* probe_tls = nullptr;
    std::string probe_tls_name;        // that location's proxy_ssl_name when constant, else the upstream's name
    bool probe_tls_sni = false;

    PeerShared& shared_state(const Peer& p) const { return shared->peers[p.shared_index]; }
    bool has_resolve() const;

    Upstream();
    ~Upstream();
};

struct UpstreamMainConf : ModuleConf {
    std::vector<std::unique_ptr<Upstream>> upstreams;
    Upstream* parsing = nullptr;  // the upstream{} being read
    unsigned parsing_seen = 0;    // its directives seen so far (duplicates)
};

// The module's location-level configuration: the resolver used for names
// resolved at run time (`server ... resolve`; proxy_pass with variables).
struct UpstreamLocConf : ModuleConf {
    std::shared_ptr<const ResolverConf> resolver;  // null: none
    bool resolver_set = false;
    std::optional<uint64_t> resolver_timeout_ms;
};

// ---- configuration ----

// The upstream{} named `name`, or null.
Upstream* find_upstream(const Cycle&, std::string_view name);
Upstream* find_upstream(ConfContext&, std::string_view name);
// An implicit upstream for "host:port" in a proxy_pass without variables
// (resolved now, like nginx); `err` explains a failure.
Upstream* implicit_upstream(ConfContext&, std::string_view host_port, uint16_t default_port, std::string& err);
// The same host:port gives the same implicit upstream; a host without a port
// that names an upstream{} gives that upstream. `err` is "host not found",
// "invalid port"... (callers add ` in upstream "x"`). An upstream{} later in
// the file with the name of an implicit upstream made without a port takes
// that object over (nginx's rule; pointers stay valid); with a port, it is
// the error `upstream "x" may not have port N`.

// Splits "host", "host:port", "[v6]", "[v6]:port" or "unix:/path".
// On error `err` is the reason ("invalid port", "invalid host").
bool upstream_split_address(std::string_view text, uint16_t default_port, std::string& host, uint16_t& port,
                            bool& port_given, std::string& err);
// Resolves host:port with getaddrinfo (blocking: configuration time only).
bool upstream_resolve_now(const std::string& host, uint16_t port, std::vector<sockaddr_storage>& out,
                          std::vector<socklen_t>& lens);
// "127.0.0.1:8080", "[::1]:8080", "unix:/path".
std::string upstream_address_text(const sockaddr_storage&, socklen_t);
// A stable non-zero key of an address, for shared slots and the keep-alive pool.
uint64_t upstream_address_key(const sockaddr_storage&, socklen_t);

// ---- building peers (configuration, resolve, tests) ----

constexpr size_t kMaxUpstreamPeers = 256;  // TriedPeers' capacity

// A peer for one address of a `server` line (servers[server_index]).
Peer upstream_make_peer(const UpstreamServerConf&, size_t server_index, const sockaddr_storage&, socklen_t);

// Orders primary before backup peers, resets per-worker weights, computes
// primary_count, the weight sums and the ketama ring (hash ... consistent).
void upstream_init_peers(Upstream&, bool reset_weights = true);
// Bytes of an UpstreamShared with `slots` peer entries.
size_t upstream_shared_size(size_t slots);
// Lays the shared state over `mem` (upstream_shared_size(u.slot_count) bytes;
// zeroed unless `keep`, which keeps the state of addresses still present)
// and assigns each peer its slot. slot_count/static_slots 0: one per peer.
void upstream_attach_shared(Upstream&, void* mem, bool keep);
// The slot for an address in the resolve region (claimed on first use).
size_t upstream_claim_slot(Upstream&, uint64_t addr_key, int64_t now_ms);

// ---- choosing a peer ----

// Which peers a request already tried (retries go elsewhere).
struct TriedPeers {
    uint64_t bits[4] = {0, 0, 0, 0};  // up to 256 peers per upstream
    bool has(size_t i) const { return i < 256 && (bits[i / 64] >> (i % 64)) & 1; }
    void add(size_t i) {
        if (i < 256) bits[i / 64] |= uint64_t(1) << (i % 64);
    }
};

// Picks a usable peer (not down, not failed within fail_timeout, not marked
// unhealthy by active checks, under max_conns, not in `tried`), falling back
// to backup peers; null when none is usable (the caller answers 502 at once).
// On success the peer's connection counters are incremented.
Peer* upstream_select_peer(Upstream&, Request&, const TriedPeers& tried);

// Reports the outcome of a request to a peer (decrements the counters; a
// failure counts toward max_fails within fail_timeout for all workers).
// A Peer stays valid until then even when `resolve` replaced the list (the
// old list is retired and freed a minute after its last request is done);
// peer indexes for TriedPeers refer to the list of the time of the choice.
void upstream_peer_done(Upstream&, Peer&, bool failed);

// True when the peer can take traffic now (used by balancers and tests).
bool upstream_peer_usable(const Upstream&, const Peer&, int64_t now_ms);

// The balancer without a request: `key` is the evaluated hash key (unused
// by other methods). upstream_select_peer() is this with the request's key
// and the loop's time. Increments the counters as upstream_select_peer().
Peer* upstream_pick_peer(Upstream&, std::string_view key, const TriedPeers& tried, int64_t now_ms);
// upstream_peer_done() at a given time.
void upstream_peer_done_at(Upstream&, Peer&, bool failed, int64_t now_ms);

// ---- upstream connections and the keep-alive pool (per worker) ----

// An upstream connection: its descriptor and its events, assigned once when
// it opens. The read event stays added from the first request until the
// connection closes, across its idle times in the keep-alive pool; whoever
// holds the connection (a request, the pool) receives its events through
// `handler`. Taking a connection from the pool therefore costs no syscall,
// and one that dies while idle is noticed by its read event. The write
// event is added only while a write would block. The timer is lazy: it is
// re-added only when it would fire too late, and a handler woken early
// checks its own deadlines (and calls upstream_connection_timer again).
// The objects are recycled within the worker.
struct UpstreamConnection {
    // `what`: EV_READ, EV_WRITE or EV_TIMEOUT.
    using Handler = void (*)(UpstreamConnection&, short what);

    int fd = -1;
    Handler handler = nullptr;
    void* owner = nullptr;        // the handler's object
    uint64_t requests = 0;        // requests completed on the connection
    int64_t timer_fires_ms = 0;   // when the pending timer is due (loop time; 0: none pending)
    bool reading = false, writing = false;
    event rev, wev, timer;
    // TLS (http_upstream_tls.h); null on plain connections. A pooled TLS
    // connection keeps its session, and is handed out only for the same
    // context and server name.
    ssl_st* ssl = nullptr;
    UpstreamTls* tls = nullptr;
    bool tls_broken = false;      // a TLS failure or the peer's close: no close_notify
    std::string tls_name;         // proxy_ssl_name it was made for
    std::string tls_session_key;  // "name/address" in tls->sessions
};

// A connection object for `fd` with its events assigned on `base` (none
// added yet), and `handler` receiving them.
UpstreamConnection* upstream_connection_open(event_base* base, int fd, UpstreamConnection::Handler handler, void* owner);
// Removes its events, ends TLS (close_notify), closes the descriptor and
// recycles the object.
void upstream_connection_close(UpstreamConnection* c);
// Removes its events and recycles the object; the descriptor (and the SSL
// object, into `ssl`, when there is one) stays open and is returned (a
// tunnel takes it over).
int upstream_connection_detach(UpstreamConnection* c, ssl_st** ssl);
// Adds or removes the read (write) event; nothing when already so.
void upstream_connection_want_read(UpstreamConnection& c, bool on);
void upstream_connection_want_write(UpstreamConnection& c, bool on);
// Makes the timer fire by `due_ms` (loop time, as now_ms): nothing when it
// is already pending for then or earlier.
void upstream_connection_timer(UpstreamConnection& c, int64_t due_ms, int64_t now_ms);

// An idle connection to the peer, or null. No syscall: a connection that
// the peer closed just now fails on first use, and the caller retries on a
// fresh connection (proxy_fail). `tls` and `tls_name` select TLS
// connections made with that context for that name (null: plain ones).
UpstreamConnection* upstream_keepalive_get(Upstream&, const Peer&, const UpstreamTls* tls = nullptr,
                                           std::string_view tls_name = {});
// Caches a connection whose last response was read completely with valid
// framing (`c->requests` counts the requests it completed); closes it
// instead when there is no pool, or the pool's limits say so.
void upstream_keepalive_put(Upstream&, const Peer&, UpstreamConnection* c);

// The per-worker cache of idle connections of one upstream: at most
// `capacity`, least recently used evicted first. An idle connection that
// becomes readable (unsolicited data or EOF) or stays idle for
// `idle_timeout_ms` is closed.
class KeepalivePool {
public:
    KeepalivePool(event_base* base, size_t capacity, uint64_t idle_timeout_ms, uint64_t max_requests);
    ~KeepalivePool();
    KeepalivePool(const KeepalivePool&) = delete;
    KeepalivePool& operator=(const KeepalivePool&) = delete;

    // An idle connection to this address (with this TLS context and name;
    // plain with null), or null; its handler is the caller's to set.
    UpstreamConnection* get(const sockaddr_storage& addr, socklen_t len, const UpstreamTls* tls = nullptr,
                            std::string_view tls_name = {});
    // Caches c, or closes it (returns false) when it served max_requests.
    bool put(const sockaddr_storage& addr, socklen_t len, UpstreamConnection* c);
    size_t idle_count() const { return idle_count_; }
    size_t capacity() const { return capacity_; }

private:
    struct Slot;
    static void on_idle_event(UpstreamConnection& c, short what);
    int64_t now_ms() const;
    void unlink(Slot&);
    void push_front(Slot&);
    void release_slot(Slot&);
    void close_slot(Slot&);

    event_base* base_;
    size_t capacity_;
    uint64_t idle_timeout_ms_;
    uint64_t max_requests_;
    std::unique_ptr<Slot[]> slots_;
    Slot* mru_ = nullptr;  // idle list, most recently used first
    Slot* lru_ = nullptr;
    Slot* free_ = nullptr;
    size_t idle_count_ = 0;
};

// ---- resolve (per worker) ----

// The worker's DNS resolver for `conf` (one evdns_base per distinct
// resolver configuration and worker); null outside a worker or on failure.
evdns_base* upstream_worker_resolver(const ResolverConf& conf);
// Starts re-resolving the upstream's `resolve` servers on `base` (init_worker).
bool upstream_resolve_start(Upstream&, event_base* base);
// Stops re-resolving the upstream (its timer; lookups in flight are dropped
// by upstream_resolve_stop_all).
void upstream_resolve_stop(Upstream&);
// Frees the worker's resolvers (exit_worker); lookups in flight are dropped
// without their callbacks.
void upstream_resolve_stop_all();
// Replaces the addresses of one `resolve` server (index into servers) with
// `addrs`, keeping per-address state; returns true when the list changed.
bool upstream_apply_resolved(Upstream&, size_t server_index, const std::vector<sockaddr_storage>& addrs,
                             const std::vector<socklen_t>& lens, int64_t now_ms);
// Frees peer lists retired by resolve once no request holds one of their peers.
void upstream_free_retired(Upstream&);

}  // namespace sluice::http
