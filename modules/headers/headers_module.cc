#include "headers.h"
#include "http/http_request.h"

namespace sluice::http {

namespace {

// nginx adds headers without `always` only to these statuses.
bool status_takes_headers(int s) {
    switch (s) {
    case 200: case 201: case 204: case 206: case 301: case 302: case 303: case 304: case 307: case 308: return true;
    default: return false;
    }
}

bool safe_value(std::string_view v) {
    for (char c : v)
        if (c == '\r' || c == '\n' || c == '\0') return false;
    return true;
}

}  // namespace

bool headers_filter(Request& r) {
    const auto& c = r.loc_conf<HeadersConf>(headers_module);
    if (!c.effective) return true;
    bool ok_status = status_takes_headers(r.status());
    for (const AddHeader& h : *c.effective) {
        if (!h.always && !ok_status) continue;
        std::string_view v = h.value.eval(r);
        // A variable may carry a client's bytes: never let it split the header.
        if (v.empty() || !safe_value(v)) continue;
        r.headers_out().add(h.name, v);
    }
    return true;
}

}  // namespace sluice::http
