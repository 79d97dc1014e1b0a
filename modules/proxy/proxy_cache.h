// The proxy's response cache (nginx's proxy_cache_* directives): zones
// declared by proxy_cache_path, the per-location settings, and the request
// path. The storage engine (src/http/http_cache_store) keeps entries in
// shared memory; the policy (src/http/http_cache_policy) decides what RFC
// 9111 allows; this part joins them to a proxied request:
//
//   proxy_handler -> proxy_cache_start: purge, or look the key up
//       hit (fresh, or stale where allowed)  -> served from shared memory
//       another request is filling the key   -> wait (proxy_cache_lock)
//       miss / expired / bypass              -> forwarded, and maybe stored:
//   proxy_build_request   -> proxy_cache_request_header: what goes upstream
//   handle_head           -> proxy_cache_on_head: 304 of a revalidation,
//                            stale on an error status, or begin storing
//   relay_data            -> proxy_cache_body / proxy_cache_complete
//   proxy_finish (error)  -> proxy_cache_on_error: stale-if-error
//
// ENTRIES. An entry's head blob is a StoredPrefix (freshness policy,
// status) and the stored header lines ("Name: value\r\n"). A response with
// Vary is stored under "KEY\0VARY-KEY" (vary_key() of its request), and KEY
// itself holds a small Vary record naming the fields, so a lookup finds the
// record first and then the variant; purging KEY removes every variant.
//
// COLLAPSED FORWARDING. Each zone carries a table of lock words after the
// store (one 64-bit word per slot: a key hash and a lease deadline). The
// request that takes a key's lock forwards; the others poll the store with
// a short backoff until the entry appears, the lock is released without an
// entry (they forward then, and race for the lock again), or
// proxy_cache_lock_timeout passes (they forward, and do not store). A lock
// of a dead worker lapses after proxy_cache_lock_age.
#pragma once
#include <event2/event_struct.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "http/http_cache_policy.h"
#include "http/http_cache_store.h"
#include "http/http_variables.h"

namespace sluice {
struct ShmZone;
class Cycle;
}

namespace sluice::http {

struct ProxyCtx;

// ---- configuration ----

// One proxy_cache_path.
struct CacheZone {
    std::string name;
    std::string path;  // created by the master; entries live in shared memory
    uint64_t keys_size = 0;
    uint64_t max_size = 0;
    uint64_t max_object = 0;
    int64_t inactive_ms = 0;
    http_cache::Geometry geometry;
    size_t store_size = 0;  // the store's part of the zone; the lock table follows it
    ShmZone* shm = nullptr;
    size_t index = 0;  // among the cycle's cache zones: which per-worker Store
    std::string file;  // where proxy_cache_path is
    int line = 0;
    std::string ref_file;  // the first proxy_cache naming it (for "unknown zone")
    int ref_line = 0;
};

// After the store, each zone holds two tables of 64-bit words indexed by
// the key's hash: the fill locks (collapsed forwarding) and the use counts
// (proxy_cache_min_uses).
constexpr size_t kCacheLockSlots = 4096;
constexpr size_t kCacheUseSlots = 4096;
constexpr size_t kCacheLockTableBytes = (kCacheLockSlots + kCacheUseSlots) * sizeof(uint64_t);

// The proxy_cache_* settings of a location (part of ProxyLocConf).
struct ProxyCacheConf {
    std::optional<CacheZone*> zone;  // proxy_cache NAME (nullptr: off)
    std::shared_ptr<ComplexValue> key;
    std::optional<uint32_t> methods;  // method_bit()s; GET and HEAD always
    std::vector<cache::ValidTime> valid;
    bool valid_set = false;
    std::optional<uint64_t> min_uses;
    std::shared_ptr<std::vector<ComplexValue>> bypass, no_cache;
    std::optional<uint16_t> use_stale;
    std::optional<bool> background_update, lock, revalidate, convert_head;
    std::optional<uint64_t> lock_timeout_ms, lock_age_ms;
    std::optional<uint8_t> ignore_headers;
    std::shared_ptr<std::vector<ComplexValue>> purge;  // proxy_cache_purge: on, or nginx Plus's strings

    // After merge.
    cache::CachePolicyConfig policy;
};

// ---- the per-request state ----

// The stored response, parsed back from an entry's head blob.
struct StoredResponse {
    cache::EntryPolicy policy;
    int status = 0;
    Header* headers = nullptr;  // views into `text`, in the arena
    size_t header_count = 0;
    std::string_view text;  // the header lines, copied into the arena
};

struct ProxyCacheCtx {
    ProxyCtx* proxy = nullptr;
    const ProxyCacheConf* conf = nullptr;
    CacheZone* zone = nullptr;
    http_cache::Store* store = nullptr;
    std::string_view key;        // the primary key (proxy_cache_key)
    std::string_view entry_key;  // the key the response is (or would be) stored under
    cache::RequestCacheInfo req;
    cache::CacheDecision decision = cache::CacheDecision::Miss;
    cache::UpstreamCacheStatus status = cache::UpstreamCacheStatus::None;
    int64_t request_time = 0;  // wall-clock seconds when the request went upstream
    int64_t now = 0;           // wall-clock seconds of the lookup

    http_cache::Hit hit;  // the entry served, revalidated, or kept for stale-if-error
    StoredResponse stored;
    bool have_stored = false;
    http_cache::Fill fill;
    cache::EntryPolicy pending_policy;  // of the entry being filled

    bool forwarding = false;      // a cacheable request goes upstream (miss, expired, bypass)
    bool may_store = false;       // proxy_no_cache, min_uses and the lock timeout allow storing
    bool revalidating = false;    // the upstream request carries the entry's validators
    bool background = false;      // the client was answered; the upstream response only fills the cache
    bool invalidate = false;      // an unsafe method: invalidate its URIs after a non-error response
    bool holds_lock = false;
    uint64_t lock_word = 0;
    uint64_t key_hash = 0;
    uint32_t failure = 0;  // the ProxyFailure bit of the last failed attempt

    // Waiting for another request's fill (proxy_cache_lock).
    event wait_timer;
    bool wait_armed = false;
    int64_t wait_started_ms = 0;
    int wait_delay_ms = 0;
};

// ---- directives (cache_directives.cc) ----
bool set_proxy_cache_path(ConfContext& cx, void* conf);
bool set_proxy_cache(ConfContext& cx, void* conf);
bool set_proxy_cache_key(ConfContext& cx, void* conf);
bool set_proxy_cache_methods(ConfContext& cx, void* conf);
bool set_proxy_cache_valid(ConfContext& cx, void* conf);
bool set_proxy_cache_min_uses(ConfContext& cx, void* conf);
bool set_proxy_cache_predicate(ConfContext& cx, void* conf);  // _bypass, proxy_no_cache, _purge
bool set_proxy_cache_use_stale(ConfContext& cx, void* conf);
bool set_proxy_cache_flag(ConfContext& cx, void* conf);  // _background_update, _lock, _revalidate, _convert_head
bool set_proxy_cache_msec(ConfContext& cx, void* conf);  // _lock_timeout, _lock_age
bool set_proxy_ignore_headers(ConfContext& cx, void* conf);
// Merges the cache settings of a location; false with an error reported.
bool proxy_cache_merge(ConfContext& cx, const ProxyCacheConf& parent, ProxyCacheConf& child);
// Every zone a proxy_cache names is declared by a proxy_cache_path.
bool proxy_cache_check_zones(ConfContext& cx);
// Adds each zone's directory to those the master creates for the workers.
void proxy_cache_add_paths(ConfContext& cx, std::vector<std::string>& dirs);

// ---- per worker (proxy_cache.cc) ----
bool proxy_cache_init_worker(Cycle& cycle);
void proxy_cache_exit_worker(Cycle& cycle);

// ---- the request path (proxy_cache.cc) ----

enum class CacheStart : uint8_t {
    Forward,  // go upstream (possibly storing the response)
    Done,     // answered: a hit, a purge, 504 for only-if-cached, or an error (r.status())
    Wait,     // waiting for another request's fill; the cache resumes the request
};

// Called once the target is resolved ($proxy_host is known).
CacheStart proxy_cache_start(ProxyCtx& ctx);

// Whether a client header is withheld from the upstream request: the
// client's conditionals and Range while filling (the cache asks for the
// whole response and answers conditionals itself), and headers that would
// change a cacheable response without being in its key.
bool proxy_cache_skips_request_header(const ProxyCtx& ctx, std::string_view name);
// Validators of a revalidation: up to two header lines (in the arena), or empty.
std::string_view proxy_cache_request_headers(const ProxyCtx& ctx);
// The method sent upstream (GET for a HEAD that fills the cache).
std::string_view proxy_cache_upstream_method(const ProxyCtx& ctx, std::string_view method);

// The upstream's response head arrived (after proxy_next_upstream had its
// say). True when the cache answered the client itself (a revalidated
// entry, a stale entry instead of an error status): the proxy closes or
// pools the connection and ends.
bool proxy_cache_on_head(ProxyCtx& ctx);
// Body bytes as relayed to the client.
void proxy_cache_body(ProxyCtx& ctx, std::string_view data);
// The body ended cleanly: commit the entry.
void proxy_cache_complete(ProxyCtx& ctx);
// Forwarding failed with `status` (502/504) before any response head went
// to the client: true when a stale entry was served instead.
bool proxy_cache_on_error(ProxyCtx& ctx, int status);

// $upstream_cache_status
std::string_view proxy_cache_status_name(const ProxyCtx& ctx);

}  // namespace sluice::http
