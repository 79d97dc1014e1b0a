// The auth_jwt request path: the access-phase handler and the $jwt_*
// variables. Per request it throws nothing; what it allocates comes from the
// request's arena, except a verified token, which is shared with the
// worker's cache and released by a request cleanup.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <new>

#include <event2/event.h>

#include "auth_jwt.h"
#include "core/cycle.h"
#include "core/log.h"
#include "core/str.h"
#include "event/worker.h"
#include "http/http_request.h"

namespace sluice::auth_jwt {

namespace {

using http::Next;
using http::Request;

// nginx's r->ctx for this module: the token that passed, kept alive until
// the request ends even if the cache drops it meanwhile.
struct RequestState {
    std::shared_ptr<const VerifiedToken> token;
};

void release_state(void* state) { static_cast<RequestState*>(state)->~RequestState(); }

// One cache per worker process: workers are single-threaded.
TokenCache& worker_cache() {
    static TokenCache cache;
    return cache;
}

int64_t now_sec() { return http::current_msec() / 1000; }

void log_rejected(Request& r, const char* why) {
    SLUICE_LOG(LogLevel::Info, "auth_jwt: token rejected (%s), client: %.*s, request: \"%.*s %.*s\"", why,
               int(r.remote_addr().size()), r.remote_addr().data(), int(r.method_name().size()),
               r.method_name().data(), int(r.request_uri().size()), r.request_uri().data());
}

// 401 with the RFC 6750 challenge; error="invalid_token" when a token was
// given and refused, no error when there was none.
Next reject(Request& r, const AuthJwtLocConf& c, bool token_given) {
    r.headers_out().add("WWW-Authenticate", token_given ? c.challenge_invalid : c.challenge);
    r.set_status(401);
    return Next::Finish;
}

enum class TokenSource { Found, Missing, Ambiguous };

// "Bearer" (any case), one or more spaces, the token. Another scheme is no token.
TokenSource bearer_token(std::string_view value, std::string_view& token) {
    constexpr std::string_view kScheme = "bearer ";
    if (value.size() <= kScheme.size() || !iequals(value.substr(0, kScheme.size()), kScheme))
        return TokenSource::Missing;
    value.remove_prefix(kScheme.size());
    while (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    token = value;
    return token.empty() ? TokenSource::Missing : TokenSource::Found;
}

TokenSource find_token(Request& r, const AuthJwtLocConf& c, std::string_view& token) {
    if (c.auth->token) {
        token = c.auth->token->eval(r);
        return token.empty() ? TokenSource::Missing : TokenSource::Found;
    }
    std::string_view value;
    int count = 0;
    for (const http::Header& h : r.head().headers) {
        if (!iequals(h.name, "Authorization")) continue;
        value = h.value;
        ++count;
    }
    if (count == 0) return TokenSource::Missing;
    // Two credentials: which one a backend or another proxy would read is
    // anyone's guess, so neither is accepted.
    if (count > 1) return TokenSource::Ambiguous;
    return bearer_token(value, token);
}

ClaimPolicy policy_of(const AuthJwtLocConf& c) {
    ClaimPolicy p;
    p.algs = *c.algs;
    p.leeway_sec = int64_t(*c.leeway_sec);
    p.require_exp = *c.require_exp;
    p.claim_equals = &*c.claim_equals;
    return p;
}

constexpr const char* kNoKeys = "no keys for this location";
constexpr const char* kUnknownKid = "unknown kid";  // jwt_token.cc's reason

// The verified token, from the worker's cache or verified now; null with
// `why` set when it is refused. `generation` is the key set's that was used.
std::shared_ptr<const VerifiedToken> verified_token(Request& r, const AuthJwtLocConf& c, std::string_view token,
                                                    const char*& why, uint64_t& generation) {
    // One atomic load per request: new keys from auth_jwt_key_url.
    if (c.key_url) c.key_url->sync();
    std::shared_ptr<const KeySet> keys = c.keys ? c.keys->current : nullptr;
    generation = keys ? keys->generation : 0;
    if (!keys || keys->keys.empty()) {
        why = kNoKeys;
        return nullptr;
    }
    if (token.size() > *c.max_size) {
        why = "token larger than auth_jwt_max_size";
        return nullptr;
    }
    const auto& mc = r.main_conf<AuthJwtMainConf>(auth_jwt_module);
    TokenCache& cache = worker_cache();
    cache.configure(mc.cache_entries.value_or(kDefaultCacheEntries),
                    int64_t(mc.cache_ttl_sec.value_or(kDefaultCacheTtlSec)));
    ClaimPolicy policy = policy_of(c);
    int64_t now = now_sec();
    if (cache.capacity() > 0) {
        if (auto hit = cache.find(token, keys->generation, now))
            return check_claims(*hit, policy, now, why) ? hit : nullptr;
    }
    auto fresh = verify_token(token, *keys, policy.algs, *c.max_size, why);
    if (!fresh || !check_claims(*fresh, policy, now, why)) return nullptr;
    if (cache.capacity() > 0) cache.insert(token, keys->generation, fresh, now);
    return fresh;
}

// auth_jwt_require: every value must be non-empty and not "0"; the status
// of the first rule that fails.
int failed_requirement(Request& r, const AuthJwtLocConf& c) {
    for (const RequireRule& rule : *c.require) {
        for (const auto& value : rule.values) {
            std::string_view v = value->eval(r);
            if (v.empty() || v == "0") return rule.status;
        }
    }
    return 0;
}

const VerifiedToken* request_token(Request& r) {
    auto* state = static_cast<RequestState*>(r.module_ctx(auth_jwt_module));
    return state ? state->token.get() : nullptr;
}

std::string_view arena_number(Request& r, const char* fmt, auto n) {
    char buf[40];
    int len = snprintf(buf, sizeof buf, fmt, n);
    return r.copy({buf, size_t(len)});
}

// Compact JSON, written into the arena.
bool arena_json(Request& r, json_t* v, std::string_view& out) {
    constexpr size_t kFlags = JSON_COMPACT | JSON_ENCODE_ANY;
    size_t size = json_dumpb(v, nullptr, 0, kFlags);
    if (size == 0) return false;
    char* p = static_cast<char*>(r.arena()->allocate(size, 1));
    if (json_dumpb(v, p, size, kFlags) != size) return false;
    out = {p, size};
    return true;
}

bool all_strings(json_t* array) {
    size_t i;
    json_t* item;
    json_array_foreach(array, i, item) if (!json_is_string(item)) return false;
    return true;
}

// Arrays of strings joined with ",", as nginx Plus does.
std::string_view joined_strings(Request& r, json_t* array) {
    std::pmr::string out(r.arena());
    size_t i;
    json_t* item;
    json_array_foreach(array, i, item) {
        if (i > 0) out.push_back(',');
        out.append(json_string_value(item), json_string_length(item));
    }
    return r.copy(out);
}

// A claim as a variable value. Strings were checked at verification for
// control characters, and JSON output escapes them, so no value can carry
// CR or LF into a header.
bool claim_value(Request& r, json_t* v, std::string_view& out) {
    if (!v || json_is_null(v)) return false;
    if (json_is_string(v)) out = {json_string_value(v), json_string_length(v)};
    else if (json_is_integer(v)) out = arena_number(r, "%" PRId64, int64_t(json_integer_value(v)));
    else if (json_is_real(v)) out = arena_number(r, "%.15g", json_real_value(v));
    else if (json_is_boolean(v)) out = json_is_true(v) ? "true" : "false";
    else if (json_is_array(v) && all_strings(v)) out = joined_strings(r, v);
    else return arena_json(r, v, out);
    return true;
}

// A valid token: kept for the $jwt_* variables, then auth_jwt_require.
Next grant(Request& r, const AuthJwtLocConf& c, std::shared_ptr<const VerifiedToken> verified) {
    auto* state = r.make<RequestState>(RequestState{std::move(verified)});
    r.add_cleanup(release_state, state);
    r.set_module_ctx(auth_jwt_module, state);
    if (int status = failed_requirement(r, c)) {
        log_rejected(r, "auth_jwt_require not satisfied");
        if (status == 401) return reject(r, c, true);
        r.set_status(status);
        return Next::Finish;
    }
    return Next::NextPhase;  // granted (http_phases.h: the Access verdicts)
}

// ---- waiting for keys (auth_jwt_key_url) ----

// A request whose token names a kid the key set lacks (or that arrived
// before any key was fetched) waits for the refetch it asked for: its
// timer polls the zone's sequence until new keys arrive, the fetch ends
// without them, or the fetch timeout passes.
constexpr uint64_t kKeyWaitPollMs = 20;

struct KeyWait {
    Request& r;
    const AuthJwtLocConf& c;
    std::string_view token;  // the request's own bytes
    uint64_t generation;     // of the keys the token failed with
    int64_t deadline_ms;
    event* timer = nullptr;
    ~KeyWait() {
        if (timer) event_free(timer);
    }
};

void free_key_wait(void* wait) { delete static_cast<KeyWait*>(wait); }

bool worth_waiting(const AuthJwtLocConf& c, const char* why) {
    return c.key_url && (strcmp(why, kUnknownKid) == 0 || strcmp(why, kNoKeys) == 0) && c.key_url->request_refetch();
}

Next decide(Request& r, const AuthJwtLocConf& c, std::string_view token, bool may_wait);

void poll_key_wait(evutil_socket_t, short, void* arg) {
    auto& w = *static_cast<KeyWait*>(arg);
    w.c.key_url->sync();
    auto keys = w.c.keys->current;
    bool changed = keys && keys->generation != w.generation;
    if (!changed && w.c.key_url->refetch_pending() && monotonic_msec() < w.deadline_ms) {
        timeval tv = {0, suseconds_t(kKeyWaitPollMs * 1000)};
        evtimer_add(w.timer, &tv);
        return;
    }
    Request& r = w.r;
    Next next = decide(r, w.c, w.token, false);
    r.resume(next);  // `w` may be freed from here on (a request cleanup)
}

Next wait_for_keys(Request& r, const AuthJwtLocConf& c, std::string_view token, uint64_t generation) {
    int64_t deadline = monotonic_msec() + int64_t(c.key_url->timeout_ms) + 500;
    auto* wait = new (std::nothrow) KeyWait{r, c, token, generation, deadline};
    if (wait) wait->timer = evtimer_new(Worker::current().base(), poll_key_wait, wait);
    if (!wait || !wait->timer) {
        delete wait;
        log_rejected(r, kUnknownKid);
        return reject(r, c, true);
    }
    r.add_cleanup(free_key_wait, wait);
    timeval tv = {0, suseconds_t(kKeyWaitPollMs * 1000)};
    evtimer_add(wait->timer, &tv);
    return Next::Suspend;
}

// Verifies the token and gives the verdict; with `may_wait`, a kid the keys
// lack suspends the request while a refetch runs.
Next decide(Request& r, const AuthJwtLocConf& c, std::string_view token, bool may_wait) {
    const char* why = "";
    uint64_t generation = 0;
    auto verified = verified_token(r, c, token, why, generation);
    if (verified) return grant(r, c, std::move(verified));
    if (may_wait && worth_waiting(c, why)) return wait_for_keys(r, c, token, generation);
    log_rejected(r, why);
    return reject(r, c, true);
}

}  // namespace

// An Access verdict: declined (Continue) where auth_jwt is off, granted
// (NextPhase) for a valid token, denied (Finish with 401 or 403) otherwise,
// or Suspend while keys are fetched; the engine combines it with the other
// access checks as `satisfy` says.
Next access_handler(Request& r) {
    const auto& c = r.loc_conf<AuthJwtLocConf>(auth_jwt_module);
    if (!c.auth->enabled) return Next::Continue;
    std::string_view token;
    TokenSource source = find_token(r, c, token);
    if (source == TokenSource::Missing) return reject(r, c, false);
    if (source == TokenSource::Ambiguous) {
        log_rejected(r, "more than one Authorization header");
        return reject(r, c, true);
    }
    return decide(r, c, token, true);
}

bool init_worker(Cycle& cycle) {
    auto* mc = static_cast<AuthJwtMainConf*>(cycle.main_conf(auth_jwt_module));
    if (!mc) return true;
    for (auto& source : mc->key_urls)
        if (!source->start_worker()) return false;
    return true;
}

void exit_worker(Cycle& cycle) {
    auto* mc = static_cast<AuthJwtMainConf*>(cycle.main_conf(auth_jwt_module));
    if (!mc) return;
    for (auto& source : mc->key_urls) source->stop_worker();
}

bool claim_variable(Request& r, std::string_view& value, uintptr_t data) {
    const VerifiedToken* t = request_token(r);
    const auto& name = *reinterpret_cast<const std::string*>(data);
    return t && claim_value(r, json_object_get(t->payload.get(), name.c_str()), value);
}

bool header_variable(Request& r, std::string_view& value, uintptr_t data) {
    const VerifiedToken* t = request_token(r);
    const auto& name = *reinterpret_cast<const std::string*>(data);
    return t && claim_value(r, json_object_get(t->header.get(), name.c_str()), value);
}

bool payload_variable(Request& r, std::string_view& value, uintptr_t) {
    const VerifiedToken* t = request_token(r);
    if (!t) return false;
    value = t->payload_text;
    return true;
}

bool path_variable(Request& r, std::string_view& value, uintptr_t data) {
    const VerifiedToken* t = request_token(r);
    const auto& pv = *reinterpret_cast<const PathVariable*>(data);
    return t && claim_value(r, find_member_path(pv.header ? t->header.get() : t->payload.get(), pv.path), value);
}

}  // namespace sluice::auth_jwt
