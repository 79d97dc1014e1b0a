// auth_jwt_key_url at run time: the zone's sequence lock and lease, the
// master's first fetch, the per-worker fetcher, and the per-worker copy of
// the keys. Nothing here blocks a worker: fetches run on the worker's loop.
#include "key_url.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <event2/event.h>

#include "core/cycle.h"
#include "core/log.h"
#include "event/worker.h"

namespace sluice::auth_jwt {

namespace {

constexpr uint64_t kZoneMagic = 0x736c4a574b530001ull;  // "slJWKS" v1
// The lease holder looks at the zone this often (a refetch asked for by an
// unknown kid starts within it); the others, to take over a stale lease and
// to pick up new keys while idle.
constexpr uint64_t kHolderTickMs = 100;
constexpr uint64_t kIdleTickMs = 1000;

struct EventFree {
    void operator()(event* e) const { event_free(e); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

bool process_alive(int32_t pid) { return pid > 0 && !(kill(pid_t(pid), 0) == -1 && errno == ESRCH); }

int64_t wall_sec() { return int64_t(time(nullptr)); }

timeval to_timeval(uint64_t ms) { return {time_t(ms / 1000), suseconds_t((ms % 1000) * 1000)}; }

size_t key_count(std::string_view document) {
    KeySet set;
    std::string error;
    return parse_jwks(document, set, error) ? set.keys.size() : 0;
}

// "is 3600 s old" / "is not available": how stale the keys served are.
std::string age_text(const JwksShared& sh) {
    int64_t at = sh.fetched_at_sec.load(std::memory_order_acquire);
    if (at == 0 || sh.sequence.load(std::memory_order_acquire) == 0) return "is not available";
    return "is " + std::to_string(std::max<int64_t>(0, wall_sec() - at)) + " s old";
}

}  // namespace

int64_t monotonic_msec() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// ---- the sequence lock ----

bool read_published(const JwksShared& sh, uint64_t& sequence, std::string& out) {
    uint64_t before = sh.sequence.load(std::memory_order_acquire);
    if (before == 0 || (before & 1)) return false;
    uint32_t length = sh.length.load(std::memory_order_relaxed);
    if (length > kMaxJwksSize) return false;
    // The copy may race with a writer that starts meanwhile; the sequence
    // check after it tells, and a torn copy is thrown away.
    out.assign(sh.document, length);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (sh.sequence.load(std::memory_order_relaxed) != before) return false;
    sequence = before;
    return true;
}

bool publish(JwksShared& sh, int32_t self, std::string_view document) {
    if (document.size() > kMaxJwksSize) return false;
    uint64_t current = sh.sequence.load(std::memory_order_acquire);
    if (current & 1) {
        // Odd: a write is under way, or its writer died in the middle.
        int32_t writer = sh.writer_pid.load(std::memory_order_acquire);
        if (writer != self && process_alive(writer)) return false;
    }
    // Even: take it to odd. Odd (abandoned): move it on to the next odd
    // value, so two takers cannot both claim the same one.
    uint64_t claimed = (current & 1) ? current + 2 : current + 1;
    if (!sh.sequence.compare_exchange_strong(current, claimed, std::memory_order_acq_rel)) return false;
    sh.writer_pid.store(self, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    memcpy(sh.document, document.data(), document.size());
    sh.length.store(uint32_t(document.size()), std::memory_order_relaxed);
    sh.sequence.store(claimed + 1, std::memory_order_release);
    return true;
}

// ---- the lease (as health_check's prober lease) ----

bool hold_fetcher_lease(JwksShared& sh, int32_t self, int64_t now_ms, uint64_t stale_ms) {
    int32_t holder = sh.fetcher_pid.load(std::memory_order_acquire);
    if (holder == self) {
        sh.fetcher_heartbeat_ms.store(now_ms, std::memory_order_release);
        return true;
    }
    if (holder != 0) {
        int64_t heartbeat = sh.fetcher_heartbeat_ms.load(std::memory_order_acquire);
        if (now_ms - heartbeat <= int64_t(stale_ms) && process_alive(holder)) return false;
    }
    // The heartbeat before the pid: whoever sees our pid sees a fresh
    // heartbeat and does not take the lease from us at once.
    sh.fetcher_heartbeat_ms.store(now_ms, std::memory_order_seq_cst);
    return sh.fetcher_pid.compare_exchange_strong(holder, self, std::memory_order_seq_cst);
}

void release_fetcher_lease(JwksShared& sh, int32_t self) {
    int32_t expected = self;
    sh.fetcher_pid.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
}

// ---- the per-worker fetcher ----

class KeyUrlFetcher {
public:
    KeyUrlFetcher(KeyUrlSource& source, event_base* base)
        : source_(source), base_(base), self_(int32_t(getpid())) {}
    ~KeyUrlFetcher() { give_up_lease(); }
    KeyUrlFetcher(const KeyUrlFetcher&) = delete;
    KeyUrlFetcher& operator=(const KeyUrlFetcher&) = delete;

    bool start() {
        timer_.reset(evtimer_new(base_, on_tick, this));
        if (!timer_) return false;
        schedule(0);
        return true;
    }
    bool holding() const { return holding_; }
    // An unknown kid in this worker: no need to wait for the next tick.
    void tick_soon() {
        if (!client_) schedule(0);
    }

private:
    static void on_tick(evutil_socket_t, short, void* self) { static_cast<KeyUrlFetcher*>(self)->tick(); }

    void schedule(uint64_t ms) {
        timeval tv = to_timeval(ms);
        evtimer_add(timer_.get(), &tv);
    }

    void tick() {
        finished_.reset();  // a client is never freed inside its own callback
        JwksShared& sh = *source_.shared();
        if (Worker::current().shutting_down()) return give_up_lease();
        holding_ = hold_fetcher_lease(sh, self_, monotonic_msec(), source_.lease_stale_ms());
        source_.sync();
        if (holding_ && !client_ && fetch_due(sh)) start_fetch();
        schedule(holding_ ? kHolderTickMs : kIdleTickMs);
    }

    bool fetch_due(const JwksShared& sh) const {
        if (sh.refetch_wanted.load(std::memory_order_acquire)) return true;
        return monotonic_msec() >= sh.next_fetch_ms.load(std::memory_order_acquire);
    }

    void start_fetch() {
        client_ = std::make_unique<JwksClient>(base_, source_.url, source_.ssl_ctx.get(), source_.timeout_ms);
        client_->start([this](FetchResult&& r) { fetched(std::move(r)); });
    }

    void fetched(FetchResult&& result) {
        finished_ = std::move(client_);
        JwksShared& sh = *source_.shared();
        // A worker that lost the lease meanwhile leaves the zone to the new holder.
        if (sh.fetcher_pid.load(std::memory_order_acquire) != self_) return;
        KeySet keys;
        std::string error;
        if (result.ok && !parse_jwks(result.body, keys, error)) {
            result.ok = false;
            result.error = "invalid JWKS: " + error;
        }
        bool ok = result.ok && store(sh, result.body);
        if (!ok && result.error.empty()) result.error = "the zone is being written by another process";
        if (!ok) log_failure(sh, result.error);
        sh.next_fetch_ms.store(monotonic_msec() + int64_t(ok ? source_.refresh_ms : source_.retry_ms()),
                               std::memory_order_release);
        // The fetch an unknown kid asked for has ended: its waiters decide now.
        sh.refetch_wanted.store(0, std::memory_order_release);
        source_.sync();
        schedule(kHolderTickMs);
    }

    // Publishes the document unless it is the one already there (then the
    // keys, and the workers' token caches, stay as they are).
    bool store(JwksShared& sh, const std::string& document) {
        uint64_t sequence = 0;
        std::string current;
        bool same = read_published(sh, sequence, current) && current == document;
        if (!same && !publish(sh, self_, document)) return false;
        sh.fetched_at_sec.store(wall_sec(), std::memory_order_release);
        if (!same)
            SLUICE_LOG(LogLevel::Notice, "auth_jwt: JWKS from \"%s\" fetched: %zu keys", source_.url.text.c_str(),
                       key_count(document));
        return true;
    }

    void log_failure(const JwksShared& sh, const std::string& error) {
        bool have_keys = sh.sequence.load(std::memory_order_acquire) != 0;
        SLUICE_LOG(have_keys ? LogLevel::Warn : LogLevel::Error, "auth_jwt: JWKS from \"%s\" %s; last fetch failed: %s",
                   source_.url.text.c_str(), age_text(sh).c_str(), error.c_str());
    }

    void give_up_lease() {
        if (holding_) release_fetcher_lease(*source_.shared(), self_);
        holding_ = false;
    }

    KeyUrlSource& source_;
    event_base* base_;
    int32_t self_;
    bool holding_ = false;
    EventPtr timer_;
    std::unique_ptr<JwksClient> client_;
    std::unique_ptr<JwksClient> finished_;
};

// ---- KeyUrlSource ----

KeyUrlSource::KeyUrlSource() = default;
KeyUrlSource::~KeyUrlSource() = default;

JwksShared* KeyUrlSource::shared() const { return zone ? static_cast<JwksShared*>(zone->addr) : nullptr; }

void KeyUrlSource::sync() {
    JwksShared* sh = shared();
    if (!sh) return;
    uint64_t sequence = sh->sequence.load(std::memory_order_acquire);
    if (sequence == seen_sequence_ || (sequence & 1)) return;
    std::string document;
    if (!read_published(*sh, sequence, document)) return;  // torn: next time
    seen_sequence_ = sequence;
    KeySet keys;
    std::string error;
    // The writer validated it; a failure here means the zone was damaged.
    if (!parse_jwks(document, keys, error)) {
        SLUICE_LOG(LogLevel::Alert, "auth_jwt: the JWKS of \"%s\" in shared memory is invalid: %s", url.text.c_str(),
                   error.c_str());
        return;
    }
    install(keys);
}

void KeyUrlSource::install(const KeySet& url_keys) {
    for (KeyUrlBinding& b : bindings) {
        KeySet set = b.file_keys ? *b.file_keys : KeySet{};
        set.keys.insert(set.keys.end(), url_keys.keys.begin(), url_keys.keys.end());
        install_key_set(*b.slot, std::move(set));
    }
}

bool KeyUrlSource::request_refetch() {
    JwksShared* sh = shared();
    if (!sh) return false;
    if (sh->refetch_wanted.load(std::memory_order_acquire)) return true;
    int64_t now = monotonic_msec();
    int64_t last = sh->last_kid_refetch_ms.load(std::memory_order_acquire);
    if (last != 0 && now - last < int64_t(kid_refetch_interval_ms())) return false;
    if (!sh->last_kid_refetch_ms.compare_exchange_strong(last, now, std::memory_order_acq_rel))
        return sh->refetch_wanted.load(std::memory_order_acquire) != 0;
    sh->refetch_wanted.store(1, std::memory_order_release);
    if (fetcher_ && fetcher_->holding()) fetcher_->tick_soon();
    return true;
}

bool KeyUrlSource::refetch_pending() const {
    JwksShared* sh = shared();
    return sh && sh->refetch_wanted.load(std::memory_order_acquire) != 0;
}

bool KeyUrlSource::init_zone(ShmZone& zone, void* old_data) {
    auto& source = *static_cast<KeyUrlSource*>(zone.data);
    auto* sh = static_cast<JwksShared*>(zone.addr);
    if (old_data && sh->magic == kZoneMagic) {
        // Kept across a reload: the document stays; a new fetcher schedule starts.
        sh->fetcher_pid.store(0, std::memory_order_release);
        sh->refetch_wanted.store(0, std::memory_order_release);
        sh->next_fetch_ms.store(0, std::memory_order_release);
        return true;
    }
    memset(static_cast<void*>(sh), 0, sizeof(JwksShared));
    sh->magic = kZoneMagic;
    // The master serves no traffic: it may wait for the first fetch, so the
    // workers start with keys. A failure is not fatal (the workers retry).
    FetchResult r = fetch_blocking(source.url, source.ssl_ctx.get(), source.timeout_ms);
    KeySet keys;
    std::string error;
    if (r.ok && !parse_jwks(r.body, keys, error)) {
        r.ok = false;
        r.error = "invalid JWKS: " + error;
    }
    if (r.ok && publish(*sh, int32_t(getpid()), r.body)) {
        sh->fetched_at_sec.store(wall_sec(), std::memory_order_release);
        sh->next_fetch_ms.store(monotonic_msec() + int64_t(source.refresh_ms), std::memory_order_release);
        SLUICE_LOG(LogLevel::Notice, "auth_jwt: JWKS from \"%s\" fetched: %zu keys", source.url.text.c_str(),
                   keys.keys.size());
        return true;
    }
    SLUICE_LOG(LogLevel::Warn,
               "auth_jwt: JWKS from \"%s\" is not available; fetch at start failed: %s; the workers keep trying",
               source.url.text.c_str(), r.error.c_str());
    return true;
}

bool KeyUrlSource::start_worker() {
    if (!shared()) return true;
    sync();  // the master's fetch, before the first request
    fetcher_ = std::make_unique<KeyUrlFetcher>(*this, Worker::current().base());
    return fetcher_->start();
}

void KeyUrlSource::stop_worker() { fetcher_.reset(); }

}  // namespace sluice::auth_jwt
