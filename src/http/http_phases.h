// The request's phases and output filters: what a module adds in its
// postconfiguration hook. Handlers are flattened once at start-up into one
// array per phase.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace sluice {
class Cycle;
}

namespace sluice::http {

class Request;
class Variables;
struct BodyChain;

enum class Phase : uint8_t {
    PostRead,       // right after the head is parsed (request ids, real ip)
    ServerRewrite,  // rewrite-module directives at server level
    FindConfig,     // location selection (core only)
    Rewrite,        // rewrite-module directives in the location (return)
    Preaccess,      // limit_req
    Access,         // allow/deny, auth_jwt, auth keys
    Precontent,     // try_files, mirror
    Content,        // produce the response (static, proxy, return text)
    Log,            // after the response: access_log, metrics
};
constexpr size_t kPhaseCount = 9;

// What a phase handler returns.
enum class Next : uint8_t {
    Continue,   // run the next handler of this phase
    NextPhase,  // skip the rest of this phase
    Suspend,    // the handler will call Request::resume() later (timer, upstream, key fetch)
    Finish,     // the request is answered: r.status() is set (a status >= 300 with no
                // response sent yet produces the error response / error_page)
};

using PhaseHandler = Next (*)(Request&);

// Access phase handlers (allow/deny, auth_api_key, auth_jwt, ...) give a
// verdict with the same values; the engine, not the handler, combines the
// verdicts according to the location's `satisfy` (nginx's
// ngx_http_core_access_phase):
//
//   Next::Continue   declined: this handler has nothing to say here (not
//                    configured in this location, no rule matched).
//   Next::NextPhase  granted. satisfy all: the next access handler still runs;
//                    satisfy any: the Access phase ends here, a denial an
//                    earlier handler gave is forgotten and the
//                    WWW-Authenticate headers it added are removed.
//   Next::Finish     denied, with r.set_status(401) or r.set_status(403)
//                    (add WWW-Authenticate for 401 yourself). satisfy all: the
//                    request ends with that status; satisfy any: the status is
//                    remembered (the last denial wins, as in nginx), r.status()
//                    is reset to 0 and the next handler runs; if no handler
//                    grants, the request ends with the remembered status once
//                    the phase is over (403 is logged "access forbidden by rule").
//                    Any other status (500...) ends the request in both modes.
//   Next::Suspend    undecided yet (a key fetch); later call
//                    r.resume(Next::NextPhase) to grant, or r.set_status(401 or
//                    403) and r.resume(Next::Finish) to deny, or
//                    r.resume(Next::Continue) to decline: the same rules apply.
//
// A handler that denies logs why itself (at info: the client caused it), except
// the satisfy-any 403 that the engine logs. A handler never assumes it runs
// last: with satisfy any a later handler may still grant.

// A header filter runs once per response before the head is serialized; it
// may change the status and headers. Returning false ends the request with 500.
using HeaderFilter = bool (*)(Request&);

// A body filter sees each piece of the body in order (chain.last on the final
// one) and may replace the chain's contents (e.g. compress). Returning false
// aborts the response (the connection is closed).
using BodyFilter = bool (*)(Request&, BodyChain&);

struct HttpPhases {
    std::vector<PhaseHandler> handlers[kPhaseCount];
    std::vector<HeaderFilter> header_filters;
    std::vector<BodyFilter> body_filters;

    void add(Phase p, PhaseHandler h) { handlers[size_t(p)].push_back(h); }
    void add_header_filter(HeaderFilter f) { header_filters.push_back(f); }
    void add_body_filter(BodyFilter f) { body_filters.push_back(f); }
};

}  // namespace sluice::http
