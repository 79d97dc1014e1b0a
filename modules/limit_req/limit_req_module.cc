// The limit_req module's request path: every limit of the location is
// decided against its zone in the Preaccess phase (a limit whose key is
// still empty there is tried again after the Access phase, when
// authentication has set $jwt_claim_* or $api_key_consumer); an excess
// request within the burst waits on a timer, one beyond it is rejected; the
// header filter reports the limits in RateLimit headers. Per request this
// allocates only from the request's arena and makes no system call: the
// clock is the vDSO's.
#include <event2/event.h>
#include <event2/event_struct.h>

#include <algorithm>
#include <cstring>

#include "core/str.h"
#include "event/loop_clock.h"
#include "event/worker.h"
#include "http/http_request.h"
#include "limit_req.h"

namespace sluice::limit_req {

namespace {

using http::Next;
using http::Request;

int status_variable = -1;  // $limit_req_status
int state_variable = -1;   // the RequestState, under a name no configuration can spell

constexpr int64_t kEvictionWarningIntervalMs = 1000;

// One limit's result for this request.
struct LimitResult {
    const Limit* limit = nullptr;
    bool applied = false;   // the key was not empty: the zone was consulted
    bool deferred = false;  // empty before the Access phase: try again after it
    Verdict verdict = Verdict::Pass;
    uint64_t remaining = 0;
    uint64_t reset_ns = 0;
    uint64_t retry_after_ns = 0;
};

// Lives in the request's arena (never destroyed: trivially destructible).
// Only as many results as the location has limits, and the delay's timer
// only for a request that waits: every request initializes all of it.
struct RequestState {
    Request* r = nullptr;
    const LimitLocConf* conf = nullptr;
    Outcome outcome = Outcome::None;
    bool timer_armed = false;
    size_t count = 0;
    size_t deferred = 0;             // results waiting for the Access phase
    LimitResult* results = nullptr;  // [count]
    event* timer = nullptr;          // the delay
};

const char* outcome_text(Outcome o) {
    switch (o) {
        case Outcome::None:
            return "";
        case Outcome::Passed:
            return "PASSED";
        case Outcome::Delayed:
            return "DELAYED";
        case Outcome::Rejected:
            return "REJECTED";
        case Outcome::DelayedDryRun:
            return "DELAYED_DRY_RUN";
        case Outcome::RejectedDryRun:
            return "REJECTED_DRY_RUN";
    }
    return "";
}

// A request that passes two phases keeps its most severe outcome.
int severity(Outcome o) {
    switch (o) {
        case Outcome::None:
            return 0;
        case Outcome::Passed:
            return 1;
        case Outcome::DelayedDryRun:
            return 2;
        case Outcome::Delayed:
            return 3;
        case Outcome::RejectedDryRun:
            return 4;
        case Outcome::Rejected:
            return 5;
    }
    return 0;
}

// $limit_req_status reads it when asked (get_status): nothing is stored
// for the variable on a request that does not log it.
void record_outcome(Request&, RequestState& st, Outcome o) {
    if (severity(o) > severity(st.outcome)) st.outcome = o;
}

// The request's state. An internal redirect (error_page) clears module
// contexts but not variables: the state is found again through its slot,
// so the final response still gets the headers and the limits are not
// applied a second time (nginx applies limit_req once per request).
RequestState* state_of(Request& r) {
    if (state_variable < 0 || r.var_state[state_variable] != 1) return nullptr;
    std::string_view v = r.var_cache[state_variable];
    if (v.size() != sizeof(RequestState)) return nullptr;
    return reinterpret_cast<RequestState*>(const_cast<char*>(v.data()));
}

// $limit_req_status: the most severe outcome so far; not found before the
// limits were applied (or without limits), as when it was stored.
bool get_status(Request& r, std::string_view& value, uintptr_t) {
    RequestState* st = state_of(r);
    if (!st || st->outcome == Outcome::None) return false;
    value = outcome_text(st->outcome);
    return true;
}

RequestState* new_state(Request& r, const LimitLocConf& c) {
    auto* st = r.make<RequestState>();
    st->r = &r;
    st->conf = &c;
    st->count = c.level->limits.size();
    st->results = r.make_array<LimitResult>(st->count);
    for (size_t i = 0; i < st->count; ++i) st->results[i].limit = &c.level->limits[i];
    r.set_module_ctx(limit_req_module, st);
    // As http::set_variable does, without the call (state_of reads it back).
    r.var_cache[state_variable] = {reinterpret_cast<const char*>(st), sizeof(RequestState)};
    r.var_state[state_variable] = 1;
    return st;
}

// ---- logging (the client caused it: the configured level, delays one below) ----

LogLevel delay_level(LogLevel l) {
    return l == LogLevel::Info ? l : LogLevel(int(l) + 1);
}

void log_limit(Request& r, LogLevel level, const char* what, bool dry_run, const Zone& z, uint64_t excess_milli) {
    if (!ErrorLog::instance().enabled(level)) return;
    log_error(level, "*%llu %s%s, excess: %llu.%03llu by zone \"%s\", client: %s",
              static_cast<unsigned long long>(r.connection_number()), what, dry_run ? ", dry run" : "",
              static_cast<unsigned long long>(excess_milli / 1000),
              static_cast<unsigned long long>(excess_milli % 1000), z.name.c_str(),
              std::string(r.remote_addr()).c_str());
}

void warn_evictions(Zone& z, uint64_t now_ms) {
    uint64_t count = 0;
    if (!z.table.eviction_warning_due(int64_t(now_ms), kEvictionWarningIntervalMs, count)) return;
    SLUICE_LOG(LogLevel::Warn,
               "limit_req zone \"%s\" is full: %llu least recently used entries evicted since the last warning; "
               "a larger zone keeps more keys",
               z.name.c_str(), static_cast<unsigned long long>(count));
}

// ---- deciding ----

// The key's word in its zone, or null for an empty key (not limited).
// The slot's age for the LRU needs no more than the loop's millisecond
// (CLOCK_MONOTONIC_COARSE, the clock's own epoch): the decision alone
// reads the clock.
uint64_t* word_of(Request& r, const Limit& l) {
    Zone& z = *l.zone;
    std::string_view key = z.key.eval(r);
    if (key.empty()) return nullptr;
    uint64_t now_ms = uint64_t(LoopClock::monotonic_msec());
    bool evicted = false;
    Slot& slot = z.table.acquire(hash_key(z.secret, key), now_ms, evicted);
    if (evicted) warn_evictions(z, now_ms);
    return &slot.state;
}

void note(LimitResult& res, const Decision& d) {
    res.applied = true;
    res.verdict = d.verdict;
    res.remaining = d.remaining;
    res.reset_ns = d.reset_ns;
    res.retry_after_ns = d.retry_after_ns;
}

struct Pending {
    LimitResult* result;
    uint64_t* word;
};

// The limits to decide now: keys evaluated, each hashed once.
size_t gather(Request& r, RequestState& st, bool after_access, Pending* out) {
    size_t n = 0;
    for (size_t i = 0; i < st.count; ++i) {
        LimitResult& res = st.results[i];
        if (res.applied || (after_access && !res.deferred)) continue;
        res.deferred = false;
        uint64_t* word = word_of(r, *res.limit);
        if (!word) {
            res.deferred = !after_access;
            st.deferred += res.deferred;
            continue;
        }
        out[n++] = {&res, word};
    }
    return n;
}

// Which limit rejects, without touching any word (so that a request
// rejected by one zone consumes nothing in the others); -1 if none.
int first_rejecting(Pending* p, size_t n, uint64_t& excess_milli) {
    for (size_t i = 0; i < n; ++i) {
        uint64_t state = atomic(*p[i].word).load(std::memory_order_acquire);
        Decision d = decide(p[i].result->limit->params, state, monotonic_ns());
        if (d.verdict == Verdict::Reject) {
            note(*p[i].result, d);
            excess_milli = d.excess_milli;
            return int(i);
        }
    }
    return -1;
}

// Charges every limit; if one rejects after all (another worker got there
// first), the ones already charged are given back. Returns the rejecting
// index or -1, and the longest delay.
int charge_all(Pending* p, size_t n, uint64_t& delay_ns, uint64_t& excess_milli) {
    delay_ns = 0;
    for (size_t i = 0; i < n; ++i) {
        const LimitParams& params = p[i].result->limit->params;
        Decision d = charge(*p[i].word, params, monotonic_ns);
        note(*p[i].result, d);
        excess_milli = std::max(excess_milli, d.excess_milli);
        if (d.verdict == Verdict::Reject) {
            for (size_t j = 0; j < i; ++j) give_back(*p[j].word, p[j].result->limit->params, monotonic_ns());
            return int(i);
        }
        delay_ns = std::max(delay_ns, d.delay_ns);
    }
    return -1;
}

Next reject(Request& r, RequestState& st, const Limit& l, uint64_t excess_milli) {
    const LimitLocConf& c = *st.conf;
    log_limit(r, *c.log_level, "limiting requests", *c.dry_run, *l.zone, excess_milli);
    if (*c.dry_run) {
        record_outcome(r, st, Outcome::RejectedDryRun);
        return Next::Continue;
    }
    record_outcome(r, st, Outcome::Rejected);
    r.set_status(int(*c.status));
    return Next::Finish;
}

void on_delay_done(evutil_socket_t, short, void* arg) {
    auto* st = static_cast<RequestState*>(arg);
    st->timer_armed = false;
    st->r->resume(Next::Continue);
}

// The request goes away while it waits (the client closed).
void cancel_delay(void* arg) {
    auto* st = static_cast<RequestState*>(arg);
    if (st->timer_armed) event_del(st->timer);
    st->timer_armed = false;
}

Next delay(Request& r, RequestState& st, uint64_t delay_ns) {
    if (!st.timer) {
        st.timer = r.make<event>();
        evtimer_assign(st.timer, Worker::current().base(), on_delay_done, &st);
        r.add_cleanup(cancel_delay, &st);
    }
    uint64_t us = (delay_ns + 999) / 1000;
    timeval tv{time_t(us / 1'000'000), suseconds_t(us % 1'000'000)};
    event_add(st.timer, &tv);
    st.timer_armed = true;
    return Next::Suspend;
}

Next apply(Request& r, RequestState& st, bool after_access) {
    Pending pending[kMaxLimits];
    size_t n = gather(r, st, after_access, pending);
    if (n == 0) return Next::Continue;
    uint64_t excess = 0, delay_ns = 0;
    int rejecting = n > 1 ? first_rejecting(pending, n, excess) : -1;
    if (rejecting < 0) rejecting = charge_all(pending, n, delay_ns, excess);
    if (rejecting >= 0) return reject(r, st, *pending[rejecting].result->limit, excess);
    const LimitLocConf& c = *st.conf;
    if (delay_ns == 0) {
        record_outcome(r, st, Outcome::Passed);
        return Next::Continue;
    }
    log_limit(r, delay_level(*c.log_level), "delaying request", *c.dry_run, *pending[0].result->limit->zone, excess);
    if (*c.dry_run) {
        record_outcome(r, st, Outcome::DelayedDryRun);
        return Next::Continue;
    }
    record_outcome(r, st, Outcome::Delayed);
    return delay(r, st, delay_ns);
}

// ---- headers ----

uint64_t seconds_up(uint64_t ns) {
    return (ns + kNsPerSec - 1) / kNsPerSec;
}

// The limit closest to rejecting: the one the X-RateLimit-* headers describe.
const LimitResult* binding_result(const RequestState& st) {
    const LimitResult* best = nullptr;
    for (size_t i = 0; i < st.count; ++i) {
        const LimitResult& res = st.results[i];
        if (!res.applied) continue;
        if (!best || res.verdict == Verdict::Reject ||
            (best->verdict != Verdict::Reject && res.remaining < best->remaining))
            best = &res;
        if (res.verdict == Verdict::Reject) break;
    }
    return best;
}

std::string_view number(Request& r, uint64_t v) {
    char buf[24];
    char* p = buf + sizeof buf;
    do {
        *--p = char('0' + v % 10);
        v /= 10;
    } while (v);
    return r.copy({p, size_t(buf + sizeof buf - p)});
}

// Appends to an arena buffer sized by the caller.
struct ArenaText {
    char* data;
    size_t size = 0;
    void add(std::string_view s) {
        memcpy(data + size, s.data(), s.size());
        size += s.size();
    }
    void add(uint64_t v) {
        char buf[24];
        char* p = buf + sizeof buf;
        do {
            *--p = char('0' + v % 10);
            v /= 10;
        } while (v);
        add({p, size_t(buf + sizeof buf - p)});
    }
};

// RateLimit-Policy: "zone";q=10;w=1, ...   RateLimit: "zone";r=4;t=1, ...
// (draft-ietf-httpapi-ratelimit-headers: one list member per policy).
void add_draft_headers(Request& r, const RequestState& st) {
    size_t policy_len = 0, limit_len = 0;
    for (size_t i = 0; i < st.count; ++i) {
        if (!st.results[i].applied) continue;
        policy_len += st.results[i].limit->zone->policy_item.size() + 2;
        limit_len += st.results[i].limit->zone->name.size() + 2 + 4 * 24 + 2;
    }
    ArenaText policy{static_cast<char*>(r.arena()->allocate(policy_len, 1))};
    ArenaText limit{static_cast<char*>(r.arena()->allocate(limit_len, 1))};
    for (size_t i = 0; i < st.count; ++i) {
        const LimitResult& res = st.results[i];
        if (!res.applied) continue;
        if (policy.size) {
            policy.add(", ");
            limit.add(", ");
        }
        policy.add(res.limit->zone->policy_item);
        limit.add("\"");
        limit.add(res.limit->zone->name);
        limit.add("\";r=");
        limit.add(res.verdict == Verdict::Reject ? 0 : res.remaining);
        limit.add(";t=");
        limit.add(seconds_up(res.reset_ns));
    }
    r.headers_out().add("RateLimit-Policy", {policy.data, policy.size});
    r.headers_out().add("RateLimit", {limit.data, limit.size});
}

void remove_upstream_headers(http::HeadersOut& out, bool rejected) {
    for (std::string_view name :
         {"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"})
        out.remove(name);
    if (rejected) out.remove("Retry-After");
}

}  // namespace

bool add_variables(http::Variables& vars) {
    status_variable = vars.add("limit_req_status", get_status, 0, http::kVarNoCache);
    state_variable = vars.add_indexed("limit_req state");
    return status_variable >= 0 && state_variable >= 0;
}

Next preaccess_handler(Request& r) {
    const auto& c = r.loc_conf<LimitLocConf>(limit_req_module);
    if (!c.level || c.level->limits.empty() || state_of(r)) return Next::Continue;
    return apply(r, *new_state(r, c), false);
}

// Precontent: limits whose key was empty before authentication. Variables
// of the key that were "not found" then are computed again.
Next postaccess_handler(Request& r) {
    auto* st = static_cast<RequestState*>(r.module_ctx(limit_req_module));
    if (!st || st->deferred == 0) return Next::Continue;
    st->deferred = 0;
    for (size_t i = 0; i < st->count; ++i) {
        if (!st->results[i].deferred) continue;
        for (int idx : st->results[i].limit->zone->key_variables)
            if (r.var_state[idx] == 2 || (r.var_state[idx] == 1 && r.var_cache[idx].empty())) r.var_state[idx] = 0;
    }
    return apply(r, *st, true);
}

bool add_headers(Request& r) {
    RequestState* st = state_of(r);
    if (!st || !*st->conf->headers) return true;
    const LimitResult* binding = binding_result(*st);
    if (!binding) return true;
    bool rejected = st->outcome == Outcome::Rejected;
    auto& out = r.headers_out();
    remove_upstream_headers(out, rejected);
    add_draft_headers(r, *st);
    out.add("X-RateLimit-Limit", number(r, binding->limit->zone->rate));
    out.add("X-RateLimit-Remaining", number(r, binding->verdict == Verdict::Reject ? 0 : binding->remaining));
    out.add("X-RateLimit-Reset", number(r, seconds_up(binding->reset_ns)));
    if (rejected) out.add("Retry-After", number(r, std::max<uint64_t>(seconds_up(binding->retry_after_ns), 1)));
    return true;
}

}  // namespace sluice::limit_req
