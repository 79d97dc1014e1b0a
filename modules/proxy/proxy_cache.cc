// The response cache on the request path (see proxy_cache.h for the map):
// looking a request up, serving entries from shared memory, forwarding
// misses with the right request, storing what RFC 9111 allows, revalidating,
// serving stale entries, collapsing concurrent misses, purging and
// invalidating.
#include <event2/event.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "core/cycle.h"
#include "core/http_date.h"
#include "core/log.h"
#include "core/str.h"
#include "event/worker.h"
#include "http/http_connection.h"
#include "proxy.h"

namespace sluice::http {

namespace {

namespace hc = http_cache;
using cache::CacheDecision;
using cache::UpstreamCacheStatus;

constexpr int kWaitFirstMs = 2;
constexpr int kWaitMaxMs = 50;
constexpr int64_t kSweepIntervalMs = 1000;
constexpr size_t kMaxStoredHeaders = 100;
constexpr size_t kMaxVaryKey = 4096;
constexpr uint32_t kStoredMagic = 0x53434832;  // "SCH2": the layout of StoredPrefix (entries of another are misses)

enum class StoredKind : uint32_t { Response = 1, VaryRecord = 2 };

// The start of every entry's head blob. Trivially copyable; read back with
// memcpy (blocks give no alignment guarantee).
struct StoredPrefix {
    uint32_t magic;
    StoredKind kind;
    int32_t status;
    uint32_t text_size;  // header lines ("Name: value\r\n") or, for a Vary record, the field names
    uint32_t line_count;  // header lines in the text
    cache::EntryPolicy policy;
};

// ---- per worker ----

struct WorkerCaches {
    std::vector<std::unique_ptr<hc::Store>> stores;  // by CacheZone::index
    event* sweep = nullptr;
};
WorkerCaches* caches = nullptr;

hc::Store* store_for(const CacheZone& z) {
    if (!caches || z.index >= caches->stores.size()) return nullptr;
    hc::Store* s = caches->stores[z.index].get();
    return s && s->attached() ? s : nullptr;
}

void on_sweep(evutil_socket_t, short, void*) {
    const int64_t now = current_msec();
    for (auto& s : caches->stores)
        if (s && s->attached()) s->sweep(now);
}

int64_t now_sec() {
    timeval tv;
    event_base_gettimeofday_cached(Worker::current().base(), &tv);
    return int64_t(tv.tv_sec);
}

// ---- the lock and use tables after the store ----

uint64_t* lock_slot(const ProxyCacheCtx& c) {
    auto* base = reinterpret_cast<uint64_t*>(static_cast<char*>(c.zone->shm->addr) + c.zone->store_size);
    return base + (c.key_hash & (kCacheLockSlots - 1));
}

uint64_t* use_slot(const ProxyCacheCtx& c) {
    auto* base = reinterpret_cast<uint64_t*>(static_cast<char*>(c.zone->shm->addr) + c.zone->store_size);
    return base + kCacheLockSlots + ((c.key_hash >> 20) & (kCacheUseSlots - 1));
}

// A lock word: the key's hash (high half; its lowest bit set while a fill
// runs) and when the lease ends (monotonic milliseconds / 16, compared with
// wraparound). A word with the bit clear is a "pass" mark: the last fill
// found the response not storable, so for a moment requests for the key go
// upstream side by side instead of queueing behind each other for a
// response that will not be stored (Varnish's hit-for-miss).
uint64_t key_tag(const ProxyCacheCtx& c) { return (c.key_hash >> 32) | 1; }
uint64_t pass_tag(const ProxyCacheCtx& c) { return key_tag(c) & ~uint64_t(1); }
constexpr int64_t kPassMs = 1000;
uint32_t lease_time(int64_t ms) { return uint32_t(uint64_t(ms) >> 4); }
bool lease_over(uint64_t word, int64_t now_ms) { return int32_t(uint32_t(word) - lease_time(now_ms)) <= 0; }

enum class Lock : uint8_t { Acquired, Busy, Unavailable };

// Busy: another request fills this key. Unavailable: the slot is leased
// to another key (a hash collision): forward without collapsing.
Lock lock_acquire(ProxyCacheCtx& c, int64_t now_ms) {
    if (c.holds_lock) return Lock::Acquired;
    std::atomic_ref<uint64_t> slot(*lock_slot(c));
    const uint64_t tag = key_tag(c);
    const uint64_t mine = tag << 32 | lease_time(now_ms + int64_t(*c.conf->lock_age_ms));
    uint64_t w = slot.load(std::memory_order_acquire);
    for (int attempt = 0; attempt < 2; ++attempt) {
        // A live fill of this key: Busy; a pass mark or another key's fill: go on without the lock.
        if (w != 0 && !lease_over(w, now_ms)) return (w >> 32) == tag ? Lock::Busy : Lock::Unavailable;
        if (slot.compare_exchange_strong(w, mine, std::memory_order_acq_rel)) {
            c.holds_lock = true;
            c.lock_word = mine;
            return Lock::Acquired;
        }
    }
    return Lock::Busy;
}

bool lock_busy(const ProxyCacheCtx& c, int64_t now_ms) {
    if (c.holds_lock) return false;
    uint64_t w = std::atomic_ref<uint64_t>(*lock_slot(c)).load(std::memory_order_acquire);
    return w != 0 && (w >> 32) == key_tag(c) && !lease_over(w, now_ms);
}

// `pass`: the response is not stored (see key_tag).
void lock_release(ProxyCacheCtx& c, bool pass = false) {
    if (!c.holds_lock) return;
    c.holds_lock = false;
    uint64_t expected = c.lock_word;
    uint64_t next = pass ? pass_tag(c) << 32 | lease_time(current_msec() + kPassMs) : 0;
    // Fails harmlessly when the lease lapsed and another request took it.
    std::atomic_ref<uint64_t>(*lock_slot(c)).compare_exchange_strong(expected, next, std::memory_order_acq_rel);
}

// proxy_cache_min_uses: requests seen for this key (approximately: a
// colliding key restarts the count, so an entry is never stored early).
uint64_t count_use(const ProxyCacheCtx& c) {
    std::atomic_ref<uint64_t> slot(*use_slot(c));
    const uint64_t tag = key_tag(c);
    uint64_t w = slot.load(std::memory_order_relaxed);
    for (;;) {
        uint64_t n = (w >> 32) == tag ? uint32_t(w) + 1 : 1;
        if (slot.compare_exchange_weak(w, tag << 32 | n, std::memory_order_relaxed)) return n;
    }
}

// ---- predicates (proxy_cache_bypass, proxy_no_cache, proxy_cache_purge) ----

bool any_true(Request& r, const std::shared_ptr<std::vector<ComplexValue>>& list) {
    if (!list) return false;
    for (const ComplexValue& v : *list) {
        std::string_view s = v.eval(r);
        if (!s.empty() && s != "0") return true;
    }
    return false;
}

// ---- stored heads ----

// The entry's head: in place when it lies in one block (the pin keeps the
// bytes until the request releases the hit), else copied into the arena.
std::string_view head_of(Request& r, const hc::Hit& hit) {
    std::string_view first;
    size_t spans = 0;
    hit.head_spans([&](const char* s, size_t n) {
        if (spans++ == 0) first = {s, n};
    });
    if (spans == 1) return first;
    const uint64_t size = hit.head_size();
    char* out = static_cast<char*>(r.arena()->allocate(size ? size : 1, 1));
    char* p = out;
    hit.head_spans([&](const char* s, size_t n) {
        memcpy(p, s, n);
        p += n;
    });
    return {out, size_t(size)};
}

// Splits the `count` "Name: value\r\n" lines of a stored head into headers
// in the arena (views into `text`). False when the text is not such lines.
bool split_lines(Request& r, std::string_view text, size_t count, StoredResponse& out) {
    if (count > kMaxStoredHeaders) return false;
    auto* headers = static_cast<Header*>(r.arena()->allocate(sizeof(Header) * (count ? count : 1), alignof(Header)));
    const char* p = text.data();
    const char* end = p + text.size();
    size_t n = 0;
    while (p < end) {
        if (n == count) return false;
        const char* colon = static_cast<const char*>(memchr(p, ':', size_t(end - p)));
        if (!colon || end - colon < 3 || colon[1] != ' ') return false;
        const char* value = colon + 2;
        const char* cr = static_cast<const char*>(memchr(value, '\r', size_t(end - value)));
        if (!cr || cr + 1 >= end || cr[1] != '\n') return false;
        headers[n++] = Header{{p, size_t(colon - p)}, {value, size_t(cr - value)}};
        p = cr + 2;
    }
    out.headers = headers;
    out.header_count = n;
    return n == count;
}

// Reads an entry's head: false when it is not one of ours (a layout change).
bool read_prefix(Request& r, const hc::Hit& hit, StoredPrefix& prefix, std::string_view& text) {
    std::string_view head = head_of(r, hit);
    if (head.size() < sizeof prefix) return false;
    memcpy(&prefix, head.data(), sizeof prefix);
    if (prefix.magic != kStoredMagic || head.size() - sizeof prefix != prefix.text_size) return false;
    text = head.substr(sizeof prefix);
    return true;
}

std::span<const Header> headers_of(const StoredResponse& s) { return {s.headers, s.header_count}; }

// A head blob: the prefix, then `text`.
std::string_view make_head(Request& r, StoredKind kind, int status, const cache::EntryPolicy& policy,
                           std::string_view text, uint32_t line_count) {
    StoredPrefix prefix{};
    prefix.magic = kStoredMagic;
    prefix.kind = kind;
    prefix.status = status;
    prefix.text_size = uint32_t(text.size());
    prefix.line_count = line_count;
    prefix.policy = policy;
    size_t n = sizeof prefix + text.size();
    char* out = static_cast<char*>(r.arena()->allocate(n, 1));
    memcpy(out, &prefix, sizeof prefix);
    if (!text.empty()) memcpy(out + sizeof prefix, text.data(), text.size());
    return {out, n};
}

// The fields kept with an entry: storable (§3.1), never Set-Cookie (a
// cookie is one client's, even when the response may be shared), never the
// framing (the store knows the body's length).
bool keep_field(std::string_view name, std::span<const Header> all) {
    if (field_name_is(name, "set-cookie") || field_name_is(name, "content-length")) return false;
    return cache::header_storable(name, all);
}

std::string_view header_lines(Request& r, std::span<const Header> headers, int64_t date_if_missing,
                              uint32_t& line_count) {
    size_t total = 0;
    bool has_date = false;
    line_count = 0;
    for (const Header& h : headers) {
        if (!keep_field(h.name, headers)) continue;
        total += h.name.size() + h.value.size() + 4;
        ++line_count;
        if (field_name_is(h.name, "date")) has_date = true;
    }
    char date[kHttpDateLength + 1];
    std::string_view date_value;
    if (!has_date && date_if_missing >= 0) {
        date_value = format_http_date(date_if_missing, date);
        total += 6 + date_value.size() + 2;
        ++line_count;
    }
    char* out = static_cast<char*>(r.arena()->allocate(total ? total : 1, 1));
    char* p = out;
    auto put = [&](std::string_view s) {
        if (s.empty()) return;
        memcpy(p, s.data(), s.size());
        p += s.size();
    };
    if (!date_value.empty()) {
        put("Date: ");
        put(date_value);
        put("\r\n");
    }
    for (const Header& h : headers) {
        if (!keep_field(h.name, headers)) continue;
        put(h.name);
        put(": ");
        put(h.value);
        put("\r\n");
    }
    return {out, size_t(p - out)};
}

// ---- lookup ----

// "KEY\0SUFFIX" in the arena: a variant's key (SUFFIX its vary_key), or with
// an empty SUFFIX the prefix every variant of KEY starts with (no key
// contains a NUL: request targets and header values never do).
std::string_view key_and(Request& r, std::string_view key, std::string_view suffix) {
    size_t total = key.size() + 1 + suffix.size();
    char* out = static_cast<char*>(r.arena()->allocate(total, 1));
    memcpy(out, key.data(), key.size());
    out[key.size()] = '\0';
    if (!suffix.empty()) memcpy(out + key.size() + 1, suffix.data(), suffix.size());
    return {out, total};
}

// The key of the request's variant, or an empty view when it has none.
std::string_view variant_key(Request& r, std::string_view key, const cache::VaryFields& vary) {
    char buf[kMaxVaryKey];
    size_t n = cache::vary_key(vary, r.head().headers, std::span<char>(buf, sizeof buf));
    if (n == SIZE_MAX) return {};
    return key_and(r, key, {buf, n});
}

// The same for a Vary record's text, a Vary field value.
std::string_view variant_key(Request& r, std::string_view key, std::string_view vary_names) {
    Header line{"Vary", vary_names};
    return variant_key(r, key, cache::parse_vary(std::span<const Header>(&line, 1)));
}

// Finds the entry for the request (through its Vary record) and parses it;
// sets entry_key for the fill either way.
void find_entry(ProxyCacheCtx& c, int64_t now_ms) {
    Request& r = *c.proxy->r;
    c.hit.release();
    c.have_stored = false;
    c.entry_key = c.key;
    hc::Hit hit = c.store->lookup(c.key, now_ms);
    if (!hit) return;
    StoredPrefix prefix;
    std::string_view text;
    if (!read_prefix(r, hit, prefix, text)) return;
    if (prefix.kind == StoredKind::VaryRecord) {
        std::string_view vk = variant_key(r, c.key, text);
        if (vk.empty()) return;
        c.entry_key = vk;
        hit = c.store->lookup(vk, now_ms);
        if (!hit || !read_prefix(r, hit, prefix, text) || prefix.kind != StoredKind::Response) return;
    }
    StoredResponse& s = c.stored;
    s.policy = prefix.policy;
    s.status = prefix.status;
    s.text = text;
    if (!split_lines(r, text, prefix.line_count, s)) return;
    c.hit = std::move(hit);
    c.have_stored = true;
}

// ---- serving an entry ----

bool is_not_modified(ProxyCacheCtx& c) {
    const cache::RequestCacheInfo& q = c.req;
    if (c.stored.status != 200 || (!q.has_if_none_match && q.if_modified_since < 0)) return false;
    cache::ResponseCacheInfo info = cache::parse_response_cache_info(c.stored.status, headers_of(c.stored), c.conf->policy);
    return cache::answer_from_cache(q, info, c.stored.policy.response_time) == cache::ClientConditional::NotModified;
}

void map_stored_headers(ProxyCtx& ctx, bool not_modified) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    HeadersOut& out = r.headers_out();
    const ProxyHiddenHeaders& hide = *ctx.conf->hidden;
    bool has_etag = false;
    for (const Header& h : headers_of(c.stored))
        if (field_name_is(h.name, "etag")) has_etag = true;
    for (const Header& h : headers_of(c.stored)) {
        std::string_view n = h.name;
        if (proxy_header_hidden(hide, n)) continue;
        if (not_modified && !cache::header_in_not_modified(n, has_etag)) continue;
        if (field_name_is(n, "content-type") && out.content_type.empty()) out.content_type = h.value;
        else if (field_name_is(n, "location") && out.location.empty()) out.location = h.value;
        else if (field_name_is(n, "etag") && out.etag.empty()) out.etag = h.value;
        else if (field_name_is(n, "last-modified") && out.last_modified < 0 &&
                 (out.last_modified = parse_http_date(h.value)) >= 0) {}
        else out.add(n, h.value);
    }
    char buf[24];
    int64_t age = cache::current_age(c.stored.policy.corrected_initial_age, c.stored.policy.response_time, c.now);
    out.add("Age", r.copy(cache::format_age(age, buf)));
}

// Answers the client from the pinned entry: its head, Age, and the body
// straight from shared memory (the pin lasts until the request is freed,
// after the last byte was written).
void serve_stored(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    const bool not_modified = is_not_modified(c);
    HeadersOut& out = r.headers_out();
    out.status = not_modified ? 304 : c.stored.status;
    map_stored_headers(ctx, not_modified);
    out.content_length = not_modified ? -1 : int64_t(c.hit.body_size());
    if (!r.send_header()) return;
    auto* chain = r.make<BodyChain>(r.arena());
    if (!not_modified)
        c.hit.body_spans(0, c.hit.body_size(), [&](const char* p, size_t n) { chain->bufs.push_back({{p, n}}); });
    chain->last = true;
    chain->stable = true;  // the pin lasts as long as the request
    r.send_body(*chain);
}

// ---- storing ----

cache::RequestCacheInfo fill_request_info(const ProxyCtx& ctx) {
    cache::RequestCacheInfo q = ctx.cache->req;
    // §3.5 is about what the origin saw: a gateway that authenticates the
    // client and does not forward its credentials (proxy_set_header
    // Authorization "") gets a response that cannot depend on them.
    q.has_authorization = ctx.sent_authorization;
    // A HEAD filled with GET is judged as the GET it became.
    q.method = ctx.head_upstream ? Method::Head : (q.method == Method::Head ? Method::Get : q.method);
    return q;
}

// A Vary record at the primary key names the fields that select a variant.
void store_vary_record(ProxyCacheCtx& c, const cache::VaryFields& vary, int64_t now_ms) {
    Request& r = *c.proxy->r;
    size_t total = 0;
    for (size_t i = 0; i < vary.count; ++i) total += vary.names[i].size() + 2;
    char* names = static_cast<char*>(r.arena()->allocate(total ? total : 1, 1));
    char* p = names;
    for (size_t i = 0; i < vary.count; ++i) {
        if (p != names) {
            *p++ = ',';
            *p++ = ' ';
        }
        memcpy(p, vary.names[i].data(), vary.names[i].size());
        p += vary.names[i].size();
    }
    std::string_view head = make_head(r, StoredKind::VaryRecord, 0, {}, {names, size_t(p - names)}, 0);
    hc::Fill f = c.store->begin_fill(c.key, head, 0, now_ms);
    if (f) f.commit({}, now_ms);
}

void begin_storing(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    const ResponseHead& h = *ctx.resp;
    std::span<const Header> headers(h.headers.data(), h.headers.size());
    const cache::CachePolicyConfig& pol = c.conf->policy;
    const int64_t now = now_sec(), now_ms = current_msec();
    cache::ResponseCacheInfo info = cache::parse_response_cache_info(h.status, headers, pol);
    cache::StoreVerdict verdict = cache::storability(fill_request_info(ctx), info, pol, now);
    if (verdict == cache::StoreVerdict::Store && h.body == ResponseHead::Body::UntilClose && ctx.head_upstream)
        verdict = cache::StoreVerdict::HeadResponse;
    if (verdict != cache::StoreVerdict::Store) {
        std::string_view why = cache::store_verdict_name(verdict);
        log_error(LogLevel::Debug, "proxy_cache: not storing \"%.*s\": %.*s", int(c.key.size()), c.key.data(),
                  int(why.size()), why.data());
        return;
    }
    c.entry_key = c.key;
    if (info.has_vary && !(pol.ignore_headers & cache::kIgnoreVary)) {
        cache::VaryFields vary = cache::parse_vary(headers);
        std::string_view vk = variant_key(r, c.key, vary);
        if (vk.empty()) return;
        store_vary_record(c, vary, now_ms);
        c.entry_key = vk;
    }
    const cache::EntryPolicy policy = cache::make_entry_policy(info, pol, c.request_time, now);
    uint32_t lines = 0;
    std::string_view text = header_lines(r, headers, info.date < 0 ? policy.date : -1, lines);
    const uint64_t expected = h.body == ResponseHead::Body::Length ? h.content_length
                              : h.body == ResponseHead::Body::None ? 0
                                                                   : UINT64_MAX;
    c.fill = c.store->begin_fill(c.entry_key, make_head(r, StoredKind::Response, h.status, policy, text, lines),
                                 expected, now_ms);
    c.pending_policy = policy;
    if (!c.fill) {
        log_error(LogLevel::Info, "proxy_cache: \"%.*s\" is not stored (larger than max_object, or no space)",
                  int(c.key.size()), c.key.data());
    }
}

hc::EntryMeta meta_for(const cache::EntryPolicy& p) {
    hc::EntryMeta m;
    m.date_sec = p.date;
    m.fresh_until_sec = p.response_time - p.corrected_initial_age + p.freshness_lifetime;
    m.status = uint32_t(p.status);
    m.flags = p.flags;
    return m;
}

// ---- revalidation ----

// A 304 answered the conditional request: the entry gets the merged head
// and keeps its body; the client gets the refreshed entry.
void revalidated(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    const ResponseHead& h = *ctx.resp;
    const cache::CachePolicyConfig& pol = c.conf->policy;
    std::span<const Header> nm(h.headers.data(), h.headers.size());
    const int64_t now = now_sec(), now_ms = current_msec();
    size_t cap = c.stored.header_count + nm.size();
    auto* merged = static_cast<Header*>(r.arena()->allocate(sizeof(Header) * (cap ? cap : 1), alignof(Header)));
    size_t n = cache::merge_not_modified_headers(headers_of(c.stored), nm, std::span<Header>(merged, cap));
    if (n == SIZE_MAX) n = 0;
    std::span<const Header> fields(merged, n);
    cache::ResponseCacheInfo info = cache::parse_response_cache_info(c.stored.status, fields, pol);
    info.age = cache::parse_age(nm);
    cache::EntryPolicy policy = cache::make_entry_policy(info, pol, c.request_time, now);
    uint32_t lines = 0;
    std::string_view text = header_lines(r, fields, -1, lines);
    c.stored.policy = policy;
    c.stored.text = text;
    c.now = now;
    split_lines(r, text, lines, c.stored);
    if (!ctx.sink) c.status = UpstreamCacheStatus::Revalidated;  // a background refresh logs what the client got
    if (cache::storability(fill_request_info(ctx), info, pol, now) == cache::StoreVerdict::Store) {
        std::string_view head = make_head(r, StoredKind::Response, c.stored.status, policy, text, lines);
        hc::Fill f = c.store->begin_fill(c.entry_key, head, c.hit.body_size(), now_ms);
        if (f && f.append_body_from(c.hit)) f.commit(meta_for(policy), now_ms);
    } else {
        // The 304 made it unstorable (no-store, private...): this client
        // gets it, nobody after.
        c.store->remove(c.entry_key);
    }
    lock_release(c);
    if (!ctx.sink) serve_stored(ctx);
}

// ---- invalidation (§4.4) ----

// The entries removed.
size_t remove_key_and_variants(ProxyCacheCtx& c, std::string_view key) {
    size_t removed = c.store->remove(key) ? 1 : 0;
    return removed + c.store->remove_prefix(key_and(*c.proxy->r, key, {}));
}

void invalidate(ProxyCtx& ctx, int status) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    const ResponseHead& h = *ctx.resp;
    cache::Origin origin{r.scheme(), r.host(), r.server_port()};
    std::string_view target = r.request_uri();
    cache::InvalidationTargets t = cache::invalidation_targets(
        r.method(), status, origin, target, std::span<const Header>(h.headers.data(), h.headers.size()));
    // Other URIs map to keys only when the key ends with the request's URI
    // (the default $scheme$proxy_host$request_uri and its like).
    const bool suffix = c.key.size() >= target.size() && c.key.substr(c.key.size() - target.size()) == target;
    std::string_view base = suffix ? c.key.substr(0, c.key.size() - target.size()) : std::string_view();
    for (size_t i = 0; i < t.count; ++i) {
        std::string_view uri = t.uris[i];
        if (uri == target) {
            remove_key_and_variants(c, c.key);
            continue;
        }
        if (!suffix) continue;
        size_t n = base.size() + uri.size();
        char* k = static_cast<char*>(r.arena()->allocate(n, 1));
        memcpy(k, base.data(), base.size());
        memcpy(k + base.size(), uri.data(), uri.size());
        remove_key_and_variants(c, {k, n});
    }
}

// ---- purge ----

bool purge_request(const Request& r) { return r.method() == Method::Purge; }

void purge(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    size_t removed = 0;
    if (!c.key.empty() && c.key.back() == '*') {
        removed = c.store->remove_prefix(c.key.substr(0, c.key.size() - 1));
    } else {
        removed = remove_key_and_variants(c, c.key);
    }
    log_error(LogLevel::Info, "proxy_cache: PURGE \"%.*s\" removed %zu entries", int(c.key.size()), c.key.data(),
              removed);
    ctx.r->set_status(204);
}

// ---- collapsed forwarding: waiting for another request's fill ----

CacheStart decide(ProxyCtx& ctx);

void on_wait(evutil_socket_t, short, void* arg) {
    auto& ctx = *static_cast<ProxyCtx*>(arg);
    ProxyCacheCtx& c = *ctx.cache;
    c.wait_armed = false;
    if (ctx.finished) return;
    switch (decide(ctx)) {
    case CacheStart::Wait: return;
    case CacheStart::Done: proxy_finish(ctx, ctx.r->status() ? ctx.r->status() : 200); return;
    case CacheStart::Forward:
        if (proxy_forward(ctx) == Next::Finish) proxy_finish(ctx, ctx.r->status() ? ctx.r->status() : 500);
        return;
    }
}

CacheStart wait_for_fill(ProxyCtx& ctx, int64_t now_ms) {
    ProxyCacheCtx& c = *ctx.cache;
    if (!c.wait_started_ms) {
        c.wait_started_ms = now_ms;
        c.wait_delay_ms = kWaitFirstMs;
        evtimer_assign(&c.wait_timer, Worker::current().base(), on_wait, &ctx);
        proxy_watch_client(ctx);
    } else {
        c.wait_delay_ms = std::min(c.wait_delay_ms * 2, kWaitMaxMs);
    }
    timeval tv{0, c.wait_delay_ms * 1000};
    evtimer_add(&c.wait_timer, &tv);
    c.wait_armed = true;
    return CacheStart::Wait;
}

// ---- the decision ----

void serve_now(ProxyCtx& ctx, UpstreamCacheStatus status) {
    ctx.cache->status = status;
    serve_stored(ctx);
}

CacheStart forward(ProxyCtx& ctx, bool may_store) {
    ProxyCacheCtx& c = *ctx.cache;
    c.may_store = may_store && !any_true(*ctx.r, c.conf->no_cache);
    if (c.may_store && *c.conf->min_uses > 1 && count_use(c) < *c.conf->min_uses) c.may_store = false;
    c.forwarding = true;
    c.request_time = now_sec();
    return CacheStart::Forward;
}

CacheStart decide(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    const int64_t now_ms = current_msec();
    const bool bypass = any_true(r, c.conf->bypass);
    if (!bypass) find_entry(c, now_ms);
    cache::ReuseContext rc;
    rc.now = c.now = now_sec();
    rc.bypass = bypass;
    const cache::EntryPolicy* entry = c.have_stored ? &c.stored.policy : nullptr;
    c.decision = cache::decide_reuse(c.req, entry, c.conf->policy, rc);
    // Whether another request updates the entry matters only for a stale
    // one: the shared lock word is read then, not for every fresh hit.
    if (c.decision != CacheDecision::Hit && c.decision != CacheDecision::Miss && (rc.update_in_progress = lock_busy(c, now_ms)))
        c.decision = cache::decide_reuse(c.req, entry, c.conf->policy, rc);
    c.status = cache::cache_status_for(c.decision);
    switch (c.decision) {
    case CacheDecision::Hit:
    case CacheDecision::StaleAllowed:
    case CacheDecision::StaleUpdating:
        serve_now(ctx, c.status);
        return CacheStart::Done;
    case CacheDecision::StaleBackground:
        serve_now(ctx, c.status);
        // One request refreshes the entry; the client has its answer.
        if (lock_acquire(c, now_ms) != Lock::Acquired) return CacheStart::Done;
        c.revalidating = c.conf->policy.revalidate &&
                         (c.stored.policy.flags & (cache::kEntryHasEtag | cache::kEntryHasLastModified));
        ctx.sink = true;
        return forward(ctx, true);
    case CacheDecision::GatewayTimeout: r.set_status(504); return CacheStart::Done;
    case CacheDecision::Revalidate:
    case CacheDecision::Refetch:
    case CacheDecision::Miss:
    case CacheDecision::Bypass: break;
    }
    // A waiter past proxy_cache_lock_timeout forwards and does not store (nginx).
    if (c.wait_started_ms && now_ms - c.wait_started_ms >= int64_t(*c.conf->lock_timeout_ms)) {
        c.revalidating = false;
        return forward(ctx, false);
    }
    Lock lock = lock_acquire(c, now_ms);
    if (lock == Lock::Busy && *c.conf->lock && !bypass) return wait_for_fill(ctx, now_ms);
    // A fill may have been committed (and its lock released) between the
    // lookup above and taking the lock: look again before going upstream.
    if (lock == Lock::Acquired && c.decision == CacheDecision::Miss) {
        find_entry(c, now_ms);
        if (c.have_stored) {
            lock_release(c);
            return decide(ctx);
        }
    }
    c.revalidating = c.decision == CacheDecision::Revalidate;
    return forward(ctx, true);
}

void cleanup(void* arg) {
    auto& c = *static_cast<ProxyCacheCtx*>(arg);
    if (c.wait_armed) event_del(&c.wait_timer);
    c.wait_armed = false;
    c.fill.abandon();
    c.hit.release();
    lock_release(c);
    c.~ProxyCacheCtx();
}

}  // namespace

// ---- the API of proxy_cache.h ----

bool proxy_cache_init_worker(Cycle& cycle) {
    auto* mc = static_cast<ProxyMainConf*>(cycle.main_conf(proxy_module));
    if (!mc || mc->cache_zones.empty()) return true;
    caches = new WorkerCaches;
    for (auto& z : mc->cache_zones) {
        auto store = std::make_unique<hc::Store>();
        hc::Limits limits;
        limits.max_object = z->max_object;
        limits.inactive_ms = z->inactive_ms;
        if (!z->shm || !store->attach(z->shm->addr, z->store_size, limits)) {
            log_error(LogLevel::Alert, "proxy_cache: cannot attach to zone \"%s\" (every client slot is taken): "
                                       "this worker does not cache", z->name.c_str());
        }
        caches->stores.push_back(std::move(store));
    }
    caches->sweep = event_new(Worker::current().base(), -1, EV_PERSIST, on_sweep, nullptr);
    timeval tv{kSweepIntervalMs / 1000, 0};
    event_add(caches->sweep, &tv);
    return true;
}

void proxy_cache_exit_worker(Cycle&) {
    if (!caches) return;
    if (caches->sweep) event_free(caches->sweep);
    caches->sweep = nullptr;
    // The stores stay attached: a request freed after the loop ended may
    // still release a pin through them. The process is exiting; the next
    // sweep by any worker frees this client's slot.
}

CacheStart proxy_cache_start(ProxyCtx& ctx) {
    const ProxyCacheConf& conf = ctx.conf->cache;
    if (!*conf.zone) return CacheStart::Forward;
    hc::Store* store = store_for(**conf.zone);
    if (!store) return CacheStart::Forward;
    Request& r = *ctx.r;
    auto* c = r.make<ProxyCacheCtx>();
    c->proxy = &ctx;
    c->conf = &conf;
    c->zone = *conf.zone;
    c->store = store;
    ctx.cache = c;
    r.add_cleanup(cleanup, c);
    c->key = conf.key->eval(r);
    c->key_hash = hc::hash_key(store->header().secret, c->key);
    if (purge_request(r) && any_true(r, conf.purge)) {
        purge(ctx);
        return CacheStart::Done;
    }
    if (!cache::method_is_cacheable(r.method(), conf.policy)) {
        c->invalidate = cache::method_is_unsafe(r.method());
        return CacheStart::Forward;
    }
    c->req = cache::parse_request_cache_info(r.method(), r.head().headers, conf.policy);
    return decide(ctx);
}

bool proxy_cache_skips_request_header(const ProxyCtx& ctx, std::string_view name) {
    if (!ctx.cache->forwarding) return false;
    if (cache::header_replaced_on_revalidation(name)) return true;
    for (std::string_view risky : cache::kUnkeyedRiskHeaders)
        if (risky.size() == name.size() && field_name_is(name, risky)) return true;
    return false;
}

std::string_view proxy_cache_request_headers(const ProxyCtx& ctx) {
    const ProxyCacheCtx& c = *ctx.cache;
    if (!c.revalidating || !c.have_stored) return {};
    cache::ResponseCacheInfo info =
        cache::parse_response_cache_info(c.stored.status, headers_of(c.stored), c.conf->policy);
    cache::Validators v = cache::conditional_request_validators(info);
    constexpr std::string_view kIfNoneMatch = "If-None-Match: ", kIfModifiedSince = "If-Modified-Since: ";
    auto line_size = [](std::string_view name, std::string_view value) {
        return value.empty() ? 0 : name.size() + value.size() + 2;
    };
    size_t size = line_size(kIfNoneMatch, v.if_none_match) + line_size(kIfModifiedSince, v.if_modified_since);
    if (size == 0) return {};
    char* out = static_cast<char*>(ctx.r->arena()->allocate(size, 1));
    char* p = out;
    auto put = [&](std::string_view name, std::string_view value) {
        if (value.empty()) return;
        memcpy(p, name.data(), name.size());
        p += name.size();
        memcpy(p, value.data(), value.size());
        p += value.size();
        *p++ = '\r';
        *p++ = '\n';
    };
    put(kIfNoneMatch, v.if_none_match);
    put(kIfModifiedSince, v.if_modified_since);
    return {out, size};
}

std::string_view proxy_cache_upstream_method(const ProxyCtx& ctx, std::string_view method) {
    const ProxyCacheCtx& c = *ctx.cache;
    if (!c.forwarding || ctx.r->method() != Method::Head) return method;
    return method_name(cache::cache_fill_method(Method::Head, c.conf->policy));
}

bool proxy_cache_on_head(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    const int status = ctx.resp->status;
    if (c.invalidate) {
        if (status >= 200 && status < 400) invalidate(ctx, status);
        return false;
    }
    if (!c.forwarding) return false;
    if (c.revalidating && status == 304 && c.have_stored) {
        cache::ResponseCacheInfo stored =
            cache::parse_response_cache_info(c.stored.status, headers_of(c.stored), c.conf->policy);
        std::span<const Header> nm(ctx.resp->headers.data(), ctx.resp->headers.size());
        cache::ResponseCacheInfo fresh = cache::parse_response_cache_info(304, nm, c.conf->policy);
        if (cache::not_modified_matches(stored, fresh)) {
            revalidated(ctx);
            return true;
        }
        // §4.3.4: a 304 for another representation updates nothing; the
        // entry goes, and this client gets the error the 304 is to it.
        log_error(LogLevel::Error, "proxy_cache: upstream sent a 304 whose validators do not match the cached "
                                   "response of \"%.*s\"", int(c.key.size()), c.key.data());
        c.store->remove(c.entry_key);
        lock_release(c);
        if (!ctx.sink) ctx.r->set_status(502);
        return true;
    }
    if (c.have_stored && !ctx.sink && status >= 400 && !ctx.r->header_sent()) {
        if (cache::may_serve_stale_on_error(c.req, c.stored.policy, c.conf->policy, cache::UpstreamFailure::Status,
                                            status, now_sec())) {
            lock_release(c);
            serve_now(ctx, UpstreamCacheStatus::Stale);
            return true;
        }
    }
    if (c.may_store && !ctx.head_upstream) begin_storing(ctx);
    if (!c.fill) lock_release(c, true);  // nothing to wait for: the waiters forward
    return false;
}

void proxy_cache_body(ProxyCtx& ctx, std::string_view data) {
    ProxyCacheCtx& c = *ctx.cache;
    if (c.fill && !data.empty() && !c.fill.append(data)) lock_release(c);
}

void proxy_cache_complete(ProxyCtx& ctx) {
    ProxyCacheCtx& c = *ctx.cache;
    if (c.fill) {
        const int64_t now_ms = current_msec();
        if (c.fill.commit(meta_for(c.pending_policy), now_ms))
            log_error(LogLevel::Debug, "proxy_cache: stored \"%.*s\"", int(c.key.size()), c.key.data());
    }
    lock_release(c);
}

bool proxy_cache_on_error(ProxyCtx& ctx, int status) {
    ProxyCacheCtx& c = *ctx.cache;
    Request& r = *ctx.r;
    if (!c.have_stored || ctx.sink || r.header_sent() || !c.failure) return false;
    cache::UpstreamFailure failure = c.failure == kFtTimeout        ? cache::UpstreamFailure::Timeout
                                     : c.failure == kFtInvalidHeader ? cache::UpstreamFailure::InvalidHeader
                                                                     : cache::UpstreamFailure::Error;
    if (!cache::may_serve_stale_on_error(c.req, c.stored.policy, c.conf->policy, failure, status, now_sec()))
        return false;
    c.fill.abandon();
    lock_release(c);
    serve_now(ctx, UpstreamCacheStatus::Stale);
    return r.header_sent();
}

std::string_view proxy_cache_status_name(const ProxyCtx& ctx) {
    if (!ctx.cache) return {};
    return cache::cache_status_name(ctx.cache->status);
}

}  // namespace sluice::http
