// $upstream_* (one value per server tried, joined with ", " as nginx's),
// $proxy_host, $proxy_port and $proxy_add_x_forwarded_for.
#include <cstdio>
#include <cstring>

#include "proxy.h"

namespace sluice::http {

namespace {

using V = std::string_view;

const ProxyCtx* ctx_of(Request& r) { return static_cast<const ProxyCtx*>(r.module_ctx(proxy_module)); }

enum class Field : uintptr_t { Addr, Status, ResponseTime, ConnectTime, HeaderTime, BytesReceived };

// Appends one attempt's value; at most 32 bytes.
size_t format(const ProxyAttempt& a, Field f, char* out) {
    auto millis = [&](int64_t at) -> size_t {
        if (at < 0) return size_t(snprintf(out, 32, "-"));
        int64_t ms = at - a.start_ms;
        if (ms < 0) ms = 0;
        return size_t(snprintf(out, 32, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000)));
    };
    switch (f) {
    case Field::Status: return size_t(snprintf(out, 32, "%d", a.status ? a.status : 502));
    case Field::ResponseTime: return millis(a.end_ms >= 0 ? a.end_ms : current_msec());
    case Field::ConnectTime: return millis(a.connect_ms);
    case Field::HeaderTime: return millis(a.header_ms);
    case Field::BytesReceived:
        return size_t(snprintf(out, 32, "%llu", static_cast<unsigned long long>(a.bytes_received)));
    case Field::Addr: break;
    }
    return 0;
}

bool get_upstream(Request& r, V& value, uintptr_t data) {
    const ProxyCtx* ctx = ctx_of(r);
    if (!ctx || !ctx->attempts) return false;
    Field f = Field(data);
    size_t total = 0;
    for (const ProxyAttempt* a = ctx->attempts; a; a = a->next)
        total += (f == Field::Addr ? a->addr.size() : 32) + 2;
    char* out = static_cast<char*>(r.arena()->allocate(total, 1));
    char* p = out;
    for (const ProxyAttempt* a = ctx->attempts; a; a = a->next) {
        if (p != out) {
            *p++ = ',';
            *p++ = ' ';
        }
        if (f == Field::Addr) {
            memcpy(p, a->addr.data(), a->addr.size());
            p += a->addr.size();
        } else {
            p += format(*a, f, p);
        }
    }
    value = {out, size_t(p - out)};
    return true;
}

bool get_proxy_host(Request& r, V& value, uintptr_t) {
    const ProxyCtx* ctx = ctx_of(r);
    if (!ctx || ctx->proxy_host.empty()) return false;
    value = ctx->proxy_host;
    return true;
}

bool get_proxy_port(Request& r, V& value, uintptr_t) {
    const ProxyCtx* ctx = ctx_of(r);
    if (!ctx || ctx->proxy_port.empty()) return false;
    value = ctx->proxy_port;
    return true;
}

bool get_upstream_cache_status(Request& r, V& value, uintptr_t) {
    const ProxyCtx* ctx = ctx_of(r);
    if (!ctx) return false;
    value = proxy_cache_status_name(*ctx);
    return !value.empty();
}

bool get_x_forwarded_for(Request& r, V& value, uintptr_t) {
    value = proxy_add_x_forwarded_for(r);
    return true;
}

}  // namespace

bool proxy_add_variables(Variables& v) {
    struct Def {
        std::string_view name;
        Field field;
    };
    static constexpr Def kUpstream[] = {
        {"upstream_addr", Field::Addr},
        {"upstream_status", Field::Status},
        {"upstream_response_time", Field::ResponseTime},
        {"upstream_connect_time", Field::ConnectTime},
        {"upstream_header_time", Field::HeaderTime},
        {"upstream_bytes_received", Field::BytesReceived},
    };
    for (const Def& d : kUpstream)
        if (v.add(d.name, get_upstream, uintptr_t(d.field), kVarNoCache) < 0) return false;
    return v.add("proxy_host", get_proxy_host, 0, kVarNoCache) >= 0 &&
           v.add("proxy_port", get_proxy_port, 0, kVarNoCache) >= 0 &&
           v.add("proxy_add_x_forwarded_for", get_x_forwarded_for, 0) >= 0 &&
           v.add("upstream_cache_status", get_upstream_cache_status, 0, kVarNoCache) >= 0;
}

}  // namespace sluice::http
