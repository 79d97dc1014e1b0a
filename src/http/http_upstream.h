// The upstream core: upstream{} blocks, their peers, load balancing,
// passive and active health state shared by all workers, and the per-worker
// keep-alive pools of idle connections. The proxy module (and any other
// module that talks to backends) uses this API; health checks are a module
// that writes the shared health state.
#pragma once
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/cycle.h"
#include "http/http_core.h"
#include "http/http_variables.h"

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
};

// Header of an upstream's zone: the active-health prober lease, then peers.
struct UpstreamShared {
    std::atomic<int32_t> prober_pid;           // the worker that runs health checks
    std::atomic<int64_t> prober_heartbeat_ms;  // a stale lease is taken over
    std::atomic<uint64_t> generation;          // bumped when the peer list changes (resolve)
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
};

enum class Balancer : uint8_t { RoundRobin, LeastConn, Hash, Random, RandomTwo };

class KeepalivePool;

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

    PeerShared& shared_state(const Peer& p) const { return shared->peers[p.shared_index]; }
};

struct UpstreamMainConf : ModuleConf {
    std::vector<std::unique_ptr<Upstream>> upstreams;
};

// ---- configuration ----

// The upstream{} named `name`, or null.
Upstream* find_upstream(const Cycle&, std::string_view name);
Upstream* find_upstream(ConfContext&, std::string_view name);
// An implicit upstream for "host:port" in a proxy_pass without variables
// (resolved now, like nginx); `err` explains a failure.
Upstream* implicit_upstream(ConfContext&, std::string_view host_port, uint16_t default_port, std::string& err);

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
void upstream_peer_done(Upstream&, Peer&, bool failed);

// True when the peer can take traffic now (used by balancers and tests).
bool upstream_peer_usable(const Upstream&, const Peer&, int64_t now_ms);

// ---- keep-alive pool (per worker) ----

// An idle connection to a peer, or -1. The fd is non-blocking.
int upstream_keepalive_get(Upstream&, const Peer&, uint64_t& requests_served);
// Caches a connection whose last response was read completely with valid
// framing; closes it instead when the pool is full or limits are reached.
void upstream_keepalive_put(Upstream&, const Peer&, int fd, uint64_t requests_served);

}  // namespace sluice::http
