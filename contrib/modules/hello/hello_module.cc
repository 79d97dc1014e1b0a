// The hello module's request path. Everything here runs per request, so it
// throws nothing and allocates only from the request's arena.
#include <cstring>

#include "hello.h"
#include "http/http_request.h"

namespace sluice::hello {

namespace {
// Per-request state (nginx's r->ctx): set once the header check passed, so
// the header filter knows to add X-Hello. Its address is the marker.
char passed_marker;
}  // namespace

// Access phase: in a location with hello_require_header, the request must
// carry that header with exactly that value.
http::Next check_header(http::Request& r) {
    const auto& conf = r.loc_conf<HelloLocConf>(hello_module);
    if (!conf.require_header || conf.require_header->empty()) return http::Next::Continue;
    bool found = false;
    std::string_view value = r.header(*conf.require_header, &found);
    if (!found || value != *conf.require_value) {
        r.set_status(403);
        return http::Next::Finish;  // the core sends the 403 (or its error_page)
    }
    r.set_module_ctx(hello_module, &passed_marker);
    return http::Next::Continue;
}

// Header filter: runs for every response, so it acts only on requests the
// access handler let through.
bool add_hello_header(http::Request& r) {
    if (r.module_ctx(hello_module) == &passed_marker) r.headers_out().add("X-Hello", "world");
    return true;
}

// $hello_greeting: "hello, " and the client's address, built in the arena.
bool greeting_variable(http::Request& r, std::string_view& value, uintptr_t) {
    constexpr std::string_view kPrefix = "hello, ";
    std::string_view addr = r.remote_addr();
    char* p = static_cast<char*>(r.arena()->allocate(kPrefix.size() + addr.size(), 1));
    memcpy(p, kPrefix.data(), kPrefix.size());
    memcpy(p + kPrefix.size(), addr.data(), addr.size());
    value = {p, kPrefix.size() + addr.size()};
    return true;
}

}  // namespace sluice::hello
