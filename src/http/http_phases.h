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
