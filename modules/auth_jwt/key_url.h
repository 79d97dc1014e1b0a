// auth_jwt_key_url: a JWK Set fetched over HTTP(S), shared by all workers
// through a shared-memory zone (one per distinct URL). One worker at a time
// holds the zone's fetcher lease (pid + heartbeat, taken over when the
// holder dies or stops renewing it) and is the only one that fetches and
// writes; every worker reads the last good document from the zone and
// turns it into keys when its sequence changes.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "jwks_client.h"
#include "jwt_keys.h"

namespace sluice {
struct ShmZone;
class Cycle;
}  // namespace sluice

namespace sluice::auth_jwt {

constexpr uint64_t kDefaultRefreshMs = 10 * 60 * 1000;
constexpr uint64_t kDefaultFetchTimeoutMs = 5000;
// A token naming a kid the set does not hold asks for a fetch at most this
// often (or once per refresh interval, when that is shorter): a storm of
// made-up kids costs the identity provider one request per interval.
constexpr uint64_t kUnknownKidRefetchMs = 10 * 1000;
// After a failed fetch the next one is tried this soon (or at the refresh
// interval, when that is shorter).
constexpr uint64_t kRetryAfterFailureMs = 30 * 1000;

// The zone's contents: fixed-size, trivially copyable, no pointers. Times
// ending in _ms are CLOCK_MONOTONIC (the same in every process).
struct JwksShared {
    uint64_t magic;
    // The fetcher lease.
    std::atomic<int32_t> fetcher_pid;
    std::atomic<int64_t> fetcher_heartbeat_ms;
    // Set by a worker that saw an unknown kid, cleared by the fetcher when
    // the fetch it caused has ended (whatever its outcome).
    std::atomic<uint32_t> refetch_wanted;
    std::atomic<int64_t> last_kid_refetch_ms;  // rate limit of the above
    std::atomic<int64_t> next_fetch_ms;        // when the fetcher fetches next
    std::atomic<int64_t> fetched_at_sec;       // wall clock of the last good fetch (0: none)
    // The document, published with a sequence lock: even and non-zero when
    // a complete document is there, odd while it is written. A writer killed
    // mid-write leaves it odd: readers keep what they have, and the next
    // writer (the lease's next holder) claims it and writes it whole.
    std::atomic<uint64_t> sequence;
    std::atomic<int32_t> writer_pid;
    std::atomic<uint32_t> length;
    char document[kMaxJwksSize];
};

// A torn or absent document is false: keep the current keys, retry later.
bool read_published(const JwksShared& sh, uint64_t& sequence, std::string& out);
// False when another live writer is mid-write (try again later).
bool publish(JwksShared& sh, int32_t self, std::string_view document);
// The lease: true if `self` holds it (renewing the heartbeat) or just took
// it over from a holder that died or went stale.
bool hold_fetcher_lease(JwksShared& sh, int32_t self, int64_t now_ms, uint64_t stale_ms);
void release_fetcher_lease(JwksShared& sh, int32_t self);

int64_t monotonic_msec();

class KeyUrlFetcher;

// A location whose keys include this URL's: its slot gets the location's
// own key files plus the fetched keys.
struct KeyUrlBinding {
    std::shared_ptr<KeySlot> slot;
    const KeySet* file_keys = nullptr;  // the location's own (owned by its conf)
};

// One per distinct URL in the configuration.
class KeyUrlSource {
public:
    KeyUrlSource();
    ~KeyUrlSource();

    KeyUrl url;
    uint64_t refresh_ms = kDefaultRefreshMs;
    uint64_t timeout_ms = kDefaultFetchTimeoutMs;
    std::string trusted_certificate;  // "" : the system's store
    SslCtxPtr ssl_ctx;
    ShmZone* zone = nullptr;
    std::vector<KeyUrlBinding> bindings;
    std::string conf_file;
    int conf_line = 0;

    JwksShared* shared() const;
    uint64_t kid_refetch_interval_ms() const { return std::min(refresh_ms, kUnknownKidRefetchMs); }
    uint64_t retry_ms() const { return std::min(refresh_ms, kRetryAfterFailureMs); }
    uint64_t lease_stale_ms() const { return timeout_ms + 5000; }

    // Per request: one atomic load; when the published document changed,
    // parses it and installs the new keys in every bound slot.
    void sync();
    // An unknown kid (or no keys yet): asks the fetcher for a fetch, rate
    // limited. True when a fetch is wanted or under way, so waiting for it
    // makes sense; false when the rate limit says no.
    bool request_refetch();
    // True while a fetch asked for by request_refetch() has not ended.
    bool refetch_pending() const;

    // The zone's init (in the master): a kept zone keeps its document;
    // otherwise the document is fetched now, bounded by the timeout.
    static bool init_zone(ShmZone& zone, void* old_data);

    // Worker hooks.
    bool start_worker();
    void stop_worker();

private:
    void install(const KeySet& url_keys);
    uint64_t seen_sequence_ = 0;
    std::unique_ptr<KeyUrlFetcher> fetcher_;
};

}  // namespace sluice::auth_jwt
