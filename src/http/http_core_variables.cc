// The core variables, nginx's names and meanings.
#include "http/http_core_variables.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/str.h"
#include "http/http_connection.h"
#include "http/http_request.h"
#include "sluice_paths.h"

namespace sluice::http {

namespace {

using V = std::string_view;

bool ok(V& out, V v) {
    out = v;
    return true;
}

V number(Request& r, uint64_t n) {
    char buf[24];
    int len = snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
    return r.copy({buf, size_t(len)});
}

// "$http_user_agent" -> User-Agent: underscores match dashes, any case.
bool header_matches(V name, V var) {
    if (name.size() != var.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        char a = ascii_lower(name[i]), b = var[i];
        if (a == '-') a = '_';
        if (a != b) return false;
    }
    return true;
}

bool get_http(Request& r, V& out, uintptr_t data) {
    const std::string& suffix = *reinterpret_cast<const std::string*>(data);
    const char* sep = suffix == "cookie" ? "; " : ", ";
    V first;
    int count = 0;
    std::pmr::string joined(r.arena());
    for (const Header& h : r.head().headers) {
        if (!header_matches(h.name, suffix)) continue;
        if (count++ == 0) first = h.value;
        else {
            if (count == 2) joined.append(first);
            joined.append(sep);
            joined.append(h.value);
        }
    }
    if (count == 0) return false;
    out = count == 1 ? first : r.copy(joined);
    return true;
}

bool get_sent_http(Request& r, V& out, uintptr_t data) {
    const std::string& suffix = *reinterpret_cast<const std::string*>(data);
    HeadersOut& h = r.headers_out();
    if (suffix == "content_type") return !h.content_type.empty() && ok(out, h.content_type);
    if (suffix == "content_length") return h.content_length >= 0 && ok(out, number(r, uint64_t(h.content_length)));
    if (suffix == "location") return !h.location.empty() && ok(out, h.location);
    for (const Header& hd : h.headers)
        if (header_matches(hd.name, suffix)) return ok(out, hd.value);
    return false;
}

// Finds NAME=value in a list separated by `sep` ("&" for args, ";" for cookies).
bool find_pair(V list, V name, char sep, V& out) {
    while (!list.empty()) {
        size_t end = list.find(sep);
        V item = list.substr(0, end);
        while (!item.empty() && item[0] == ' ') item.remove_prefix(1);
        size_t eq = item.find('=');
        V key = item.substr(0, eq);
        if (sep == '&' ? iequals(key, name) : key == name) {
            out = eq == V::npos ? V() : item.substr(eq + 1);
            return true;
        }
        if (end == V::npos) break;
        list.remove_prefix(end + 1);
    }
    return false;
}

bool get_arg(Request& r, V& out, uintptr_t data) {
    return find_pair(r.args(), *reinterpret_cast<const std::string*>(data), '&', out);
}

bool get_cookie(Request& r, V& out, uintptr_t data) {
    bool found = false;
    V cookies = r.header("Cookie", &found);
    return found && find_pair(cookies, *reinterpret_cast<const std::string*>(data), ';', out);
}

V time_string(Request& r, const char* fmt, bool local) {
    time_t now = time_t(current_msec() / 1000);
    tm t;
    if (local) localtime_r(&now, &t);
    else gmtime_r(&now, &t);
    char buf[64];
    size_t n = strftime(buf, sizeof buf, fmt, &t);
    return r.copy({buf, n});
}

bool get_host(Request& r, V& out, uintptr_t) {
    if (!r.host().empty()) return ok(out, r.host());
    const auto& names = r.server().server_names;
    return ok(out, names.empty() || names[0].regex ? V() : V(names[0].name));
}

bool get_request_line(Request& r, V& out, uintptr_t) {
    // The request line as received: method SP target SP version.
    const char* start = r.method_name().data();
    V version = r.http10() ? "HTTP/1.0" : "HTTP/1.1";
    const char* end = r.request_uri().data() + r.request_uri().size() + 1 + version.size();
    return ok(out, V(start, size_t(end - start)));
}

struct Def {
    const char* name;
    VariableGetter get;
    unsigned flags;
};

const Def kDefs[] = {
    {"uri", [](Request& r, V& o, uintptr_t) { return ok(o, r.uri()); }, kVarNoCache},
    {"document_uri", [](Request& r, V& o, uintptr_t) { return ok(o, r.uri()); }, kVarNoCache},
    {"request_uri", [](Request& r, V& o, uintptr_t) { return ok(o, r.request_uri()); }, 0},
    {"args", [](Request& r, V& o, uintptr_t) { return ok(o, r.args()); }, kVarNoCache},
    {"query_string", [](Request& r, V& o, uintptr_t) { return ok(o, r.args()); }, kVarNoCache},
    {"is_args", [](Request& r, V& o, uintptr_t) { return ok(o, r.args().empty() ? "" : "?"); }, kVarNoCache},
    {"request_method", [](Request& r, V& o, uintptr_t) { return ok(o, r.method_name()); }, kVarNoCache},
    {"request", get_request_line, 0},
    {"server_protocol", [](Request& r, V& o, uintptr_t) { return ok(o, r.http10() ? "HTTP/1.0" : "HTTP/1.1"); }, 0},
    {"scheme", [](Request& r, V& o, uintptr_t) { return ok(o, r.scheme()); }, 0},
    {"https", [](Request& r, V& o, uintptr_t) { return ok(o, r.connection().ssl() ? "on" : ""); }, 0},
    {"host", get_host, 0},
    {"remote_addr", [](Request& r, V& o, uintptr_t) { return ok(o, r.remote_addr()); }, 0},
    {"binary_remote_addr", [](Request& r, V& o, uintptr_t) { return ok(o, r.binary_remote_addr()); }, 0},
    {"remote_port", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, r.remote_port())); }, 0},
    {"server_addr", [](Request& r, V& o, uintptr_t) { return ok(o, r.server_addr()); }, 0},
    {"server_port", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, r.server_port())); }, 0},
    {"server_name", [](Request& r, V& o, uintptr_t) {
         const auto& n = r.server().server_names;
         return ok(o, n.empty() ? V() : V(n[0].name));
     }, 0},
    {"hostname", [](Request&, V& o, uintptr_t) {
         static char name[256];
         if (!name[0]) gethostname(name, sizeof name - 1);
         return ok(o, name);
     }, 0},
    {"request_id", [](Request& r, V& o, uintptr_t) { return ok(o, r.request_id()); }, 0},
    {"status", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, uint64_t(r.status() ? r.status() : 0))); }, kVarNoCache},
    {"body_bytes_sent", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, r.body_bytes_sent())); }, kVarNoCache},
    {"content_length", [](Request& r, V& o, uintptr_t) {
         bool f;
         V v = r.header("Content-Length", &f);
         return f && ok(o, v);
     }, 0},
    {"content_type", [](Request& r, V& o, uintptr_t) {
         bool f;
         V v = r.header("Content-Type", &f);
         return f && ok(o, v);
     }, 0},
    {"request_time", [](Request& r, V& o, uintptr_t) {
         int64_t ms = current_msec() - r.start_msec();
         char buf[32];
         int n = snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000));
         return ok(o, r.copy({buf, size_t(n)}));
     }, kVarNoCache},
    {"msec", [](Request& r, V& o, uintptr_t) {
         int64_t ms = current_msec();
         char buf[32];
         int n = snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000));
         return ok(o, r.copy({buf, size_t(n)}));
     }, kVarNoCache},
    {"time_iso8601", [](Request& r, V& o, uintptr_t) {
         // ISO 8601 wants "+00:00"; strftime's %z gives "+0000".
         V t = time_string(r, "%Y-%m-%dT%H:%M:%S%z", true);
         if (t.size() < 5) return ok(o, t);
         char* p = static_cast<char*>(r.arena()->allocate(t.size() + 1, 1));
         memcpy(p, t.data(), t.size() - 2);
         p[t.size() - 2] = ':';
         memcpy(p + t.size() - 1, t.data() + t.size() - 2, 2);
         return ok(o, V(p, t.size() + 1));
     }, kVarNoCache},
    {"time_local", [](Request& r, V& o, uintptr_t) { return ok(o, time_string(r, "%d/%b/%Y:%H:%M:%S %z", true)); }, kVarNoCache},
    {"connection", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, r.connection_number())); }, 0},
    {"connection_requests", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, r.connection_requests())); }, 0},
    {"pid", [](Request& r, V& o, uintptr_t) { return ok(o, number(r, uint64_t(getpid()))); }, 0},
    {"sluice_version", [](Request&, V& o, uintptr_t) { return ok(o, SLUICE_VERSION); }, 0},
    {"remote_user", [](Request&, V&, uintptr_t) { return false; }, kVarChangeable},
};

}  // namespace

void add_core_variables(Variables& vars) {
    for (const Def& d : kDefs) vars.add(d.name, d.get, 0, d.flags);
    vars.add_prefix("http_", get_http);
    vars.add_prefix("sent_http_", get_sent_http, kVarNoCache);
    vars.add_prefix("arg_", get_arg);
    vars.add_prefix("cookie_", get_cookie);
}

}  // namespace sluice::http
