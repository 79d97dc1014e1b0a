// The proxy module's directives, its configuration merge and its variables'
// registration.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/conf.h"
#include "core/cycle.h"
#include "core/str.h"
#include "http/http_core.h"
#include "http/uri.h"
#include "proxy.h"
#include "sluice_paths.h"

namespace sluice::http {

namespace {

constexpr uint64_t kDefaultTimeoutMs = 60000;
constexpr uint64_t kDefaultBufferSize = 4096;
constexpr uint64_t kDefaultBuffersNum = 8;
constexpr uint64_t kDefaultClientBodyBufferSize = 16384;
// configure --http-client-body-temp-path: relative to the prefix when under it.
constexpr std::string_view kDefaultClientBodyTempPath = SLUICE_HTTP_CLIENT_BODY_TEMP_PATH;

ProxyMainConf& main_conf(ConfContext& cx) {
    return *static_cast<ProxyMainConf*>(cx.http->main[size_t(proxy_module.ctx_index)]);
}

bool valid_header_name(std::string_view n) {
    if (n.empty()) return false;
    for (char c : n)
        if (!chars::kToken(c)) return false;
    return true;
}

// ---- proxy_pass ----

uint16_t default_port(const ProxyUrl& url) { return url.https ? 443 : 80; }

bool location_allows_uri(const CoreLocConf& loc) {
    using M = CoreLocConf::Match;
    return loc.match == M::Prefix || loc.match == M::NoRegexPrefix || loc.match == M::Exact;
}

bool set_static_target(ConfContext& cx, ProxyTarget& t, const CoreLocConf& loc) {
    ProxyUrl url;
    const char* reason = nullptr;
    if (!proxy_parse_url(cx.arg(0), url, reason)) return cx.error("%s in \"%s\"", reason, cx.arg(0).c_str());
    if (url.has_uri && !location_allows_uri(loc))
        return cx.error("\"proxy_pass\" cannot have URI part in location given by regular expression, "
                        "or inside named location");
    t.https = url.https;
    t.has_uri = url.has_uri;
    t.uri = url.uri;
    t.location_prefix = loc.name;
    t.explicit_port = url.has_port;
    t.name = url.has_port ? url.host_port : url.host;
    t.proxy_host = url.port_number == default_port(url) ? url.host : url.host_port;
    t.proxy_port = std::to_string(url.port_number);
    // With a port it is a server, never an upstream{} (nginx's rule);
    // without, an upstream{} defined further down still counts (see merge).
    if (url.has_port) {
        std::string err;
        t.upstream = implicit_upstream(cx, t.name, default_port(url), err);
        if (!t.upstream) return cx.error("%s in upstream \"%s\"", err.c_str(), t.name.c_str());
    } else {
        t.upstream = find_upstream(cx, t.name);
    }
    return true;
}

bool set_proxy_pass(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (c.target) return cx.duplicate();
    LocationConf* loc = current_location(cx);
    const std::string& url = cx.arg(0);
    auto* t = cx.cycle().make<ProxyTarget>();
    t->file = cx.statement().file;
    t->line = cx.statement().line;
    if (url.find('$') != std::string::npos) {
        // The name is known per request: it must name an upstream{} then.
        t->has_variables = true;
        t->location_prefix = loc->core->name;
        if (!t->url.compile(cx, url)) return false;
    } else {
        if (!istarts_with(url, "http://") && !istarts_with(url, "https://"))
            return cx.error("invalid URL prefix in \"%s\"", url.c_str());
        if (!set_static_target(cx, *t, *loc->core)) return false;
        if (!t->upstream) main_conf(cx).targets.push_back(t);
    }
    c.target = t;
    loc->content_handler = proxy_handler;
    return true;
}

// ---- headers and arguments ----

bool set_proxy_set_header(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    const std::string& name = cx.arg(0);
    if (!valid_header_name(name)) return cx.error("invalid header name \"%s\"", name.c_str());
    std::string lower = to_lower(name);
    if (lower == "content-length" || lower == "transfer-encoding") {
        // The body's framing is the gateway's to choose (canonical framing).
        cx.warn("\"proxy_set_header %s\" is ignored: the proxy frames the body itself", name.c_str());
        c.own_headers_set = true;
        return true;
    }
    if (cx.arg(1).find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
        return cx.error("invalid header value in \"proxy_set_header\" directive");
    ProxyHeader h;
    h.name = name;
    h.lower = std::move(lower);
    if (!h.value.compile(cx, cx.arg(1))) return false;
    c.own_headers.push_back(std::move(h));
    c.own_headers_set = true;
    return true;
}

bool valid_arg_name(std::string_view n) {
    if (n.empty()) return false;
    for (char c : n)
        if (c == '&' || c == '=' || c == '#' || c == '%' || c == '+' || !chars::kTarget(c)) return false;
    return true;
}

bool set_arg_edit(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    ProxyArgEdit e;
    e.name = cx.arg(0);
    if (!valid_arg_name(e.name)) return cx.error("invalid argument name \"%s\"", e.name.c_str());
    e.remove = cx.name() == "proxy_remove_arg";
    if (!e.remove && !e.value.compile(cx, cx.arg(1))) return false;
    c.own_args.push_back(std::move(e));
    c.own_args_set = true;
    return true;
}

bool set_hide_or_pass_header(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (!valid_header_name(cx.arg(0))) return cx.error("invalid header name \"%s\"", cx.arg(0).c_str());
    if (cx.name() == "proxy_hide_header") {
        c.hide_headers.push_back(to_lower(cx.arg(0)));
        c.hide_set = true;
    } else {
        c.pass_headers.push_back(to_lower(cx.arg(0)));
        c.pass_set = true;
    }
    return true;
}

// ---- the rest ----

bool set_http_version(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (c.http_minor) return cx.duplicate();
    if (cx.arg(0) == "1.0") c.http_minor = 0;
    else if (cx.arg(0) == "1.1") c.http_minor = 1;
    else return cx.invalid_value(0);
    return true;
}

bool set_buffers(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (c.buffers_num) return cx.duplicate();
    auto num = conf::parse_number(cx.arg(0));
    if (!num || *num < 1 || *num > 1024) return cx.invalid_value(0);
    auto size = conf::parse_size(cx.arg(1));
    if (!size || *size < 256 || *size > (64u << 20)) return cx.invalid_value(1);
    c.buffers_num = uint64_t(*num);
    c.buffers_size = *size;
    return true;
}

struct FailureName {
    std::string_view name;
    uint32_t bit;
};
constexpr FailureName kFailureNames[] = {
    {"error", kFtError},         {"timeout", kFtTimeout},   {"invalid_header", kFtInvalidHeader},
    {"http_500", kFtHttp500},    {"http_502", kFtHttp502},  {"http_503", kFtHttp503},
    {"http_504", kFtHttp504},    {"http_403", kFtHttp403},  {"http_404", kFtHttp404},
    {"http_429", kFtHttp429},    {"non_idempotent", kFtNonIdempotent}, {"off", kFtOff},
};

bool set_next_upstream(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (c.next_upstream) return cx.duplicate();
    uint32_t mask = 0;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        uint32_t bit = 0;
        for (const FailureName& f : kFailureNames)
            if (cx.arg(i) == f.name) bit = f.bit;
        if (!bit) return cx.invalid_value(i);
        mask |= bit;
    }
    if ((mask & kFtOff) && mask != kFtOff) return cx.error("\"off\" cannot be combined with other values in \"proxy_next_upstream\"");
    c.next_upstream = mask;
    return true;
}

bool set_client_body_temp_path(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ProxyLocConf*>(conf);
    if (c.client_body_temp_path) return cx.duplicate();
    // nginx's directory levels are accepted and unused: the files have no names.
    for (size_t i = 1; i < cx.arg_count(); ++i) {
        auto level = conf::parse_number(cx.arg(i));
        if (!level || *level < 1 || *level > 2) return cx.invalid_value(i);
    }
    c.client_body_temp_path = cx.full_path(cx.arg(0));
    return true;
}

// ---- merge ----

bool compile_defaults(ConfContext& cx, ProxyMainConf& mc) {
    if (mc.defaults_compiled) return true;
    mc.default_host.name = "Host";
    mc.default_host.lower = "host";
    mc.default_connection.name = "Connection";
    mc.default_connection.lower = "connection";
    if (!mc.default_host.value.compile(cx, "$proxy_host")) return false;
    if (!mc.default_connection.value.compile(cx, "close")) return false;
    mc.defaults_compiled = true;
    return true;
}

bool has_header(const std::vector<ProxyHeader>& list, std::string_view lower) {
    for (const ProxyHeader& h : list)
        if (h.lower == lower) return true;
    return false;
}

std::shared_ptr<const std::vector<ProxyHeader>> effective_headers(const std::vector<ProxyHeader>& own,
                                                                   const ProxyMainConf& mc) {
    auto list = std::make_shared<std::vector<ProxyHeader>>(own);
    if (!has_header(own, "host")) list->insert(list->begin(), mc.default_host);
    if (!has_header(own, "connection")) list->push_back(mc.default_connection);
    return list;
}

std::shared_ptr<const ProxyHiddenHeaders> effective_hidden(const std::vector<std::string>& hide,
                                                           const std::vector<std::string>& pass) {
    auto h = std::make_shared<ProxyHiddenHeaders>();
    auto passed = [&](std::string_view n) { return std::find(pass.begin(), pass.end(), n) != pass.end(); };
    for (std::string_view d : {"date", "server", "x-pad"})
        if (!passed(d)) h->names.emplace_back(d);
    for (const std::string& n : hide)
        if (!passed(n)) h->names.push_back(n);
    // X-Accel-* are nginx's instructions to itself: hidden unless passed by name.
    for (const std::string& n : pass)
        if (istarts_with(n, "x-accel-")) h->passed_x_accel.push_back(n);
    return h;
}

bool resolve_target(ConfContext& cx, ProxyTarget& t) {
    if (t.upstream || t.has_variables) return true;
    t.upstream = find_upstream(cx, t.name);
    if (t.upstream) return true;
    std::string err;
    t.upstream = implicit_upstream(cx, t.name, t.https ? 443 : 80, err);
    if (!t.upstream) return cx.error_in(t.file, t.line, "%s in upstream \"%s\"", err.c_str(), t.name.c_str());
    return true;
}

// Health checks of an upstream that a location reaches with https:// speak
// TLS with that location's settings (the first such location's): the
// health_check module sees only the upstream.
void lend_tls_to_health_checks(const ProxyTarget& t, const ProxySslConf& ssl) {
    if (!t.https || !t.upstream || !ssl.tls || t.upstream->probe_tls) return;
    Upstream& u = *t.upstream;
    u.probe_tls = ssl.tls;
    u.probe_tls_sni = *ssl.server_name;
    std::string_view name = ssl.name_value && ssl.name_value->is_constant() ? ssl.name_value->constant()
                                                                           : std::string_view(t.proxy_host);
    size_t colon = name.rfind(':');
    if (colon != std::string_view::npos && name.find(':') == colon) name = name.substr(0, colon);
    u.probe_tls_name = name;
}

bool merge_loc(ConfContext& cx, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const ProxyLocConf&>(parent);
    auto& c = static_cast<ProxyLocConf&>(child);
    merge_value(c.http_minor, p.http_minor, 0);
    merge_value(c.buffering, p.buffering, true);
    merge_value(c.request_buffering, p.request_buffering, true);
    merge_value(c.pass_request_headers, p.pass_request_headers, true);
    merge_value(c.intercept_errors, p.intercept_errors, false);
    merge_value(c.ignore_client_abort, p.ignore_client_abort, false);
    merge_value(c.buffer_size, p.buffer_size, kDefaultBufferSize);
    if (!c.buffers_num) {
        c.buffers_num = p.buffers_num.value_or(kDefaultBuffersNum);
        c.buffers_size = p.buffers_size.value_or(kDefaultBufferSize);
    }
    merge_value(c.client_body_buffer_size, p.client_body_buffer_size, kDefaultClientBodyBufferSize);
    if (!c.client_body_temp_path)
        c.client_body_temp_path = p.client_body_temp_path ? *p.client_body_temp_path
                                                          : cx.full_path(kDefaultClientBodyTempPath);
    merge_value(c.connect_timeout_ms, p.connect_timeout_ms, kDefaultTimeoutMs);
    merge_value(c.send_timeout_ms, p.send_timeout_ms, kDefaultTimeoutMs);
    merge_value(c.read_timeout_ms, p.read_timeout_ms, kDefaultTimeoutMs);
    merge_value(c.next_upstream_timeout_ms, p.next_upstream_timeout_ms, uint64_t(0));
    merge_value(c.next_upstream_tries, p.next_upstream_tries, uint64_t(0));
    merge_value(c.next_upstream, p.next_upstream, uint32_t(kFtError | kFtTimeout));
    if (*c.buffer_size < 256) return cx.error("\"proxy_buffer_size\" must be at least 256 bytes");

    ProxyMainConf& mc = main_conf(cx);
    if (!compile_defaults(cx, mc)) return false;
    if (!c.own_headers_set) {
        c.own_headers_set = p.own_headers_set;
        c.own_headers = p.own_headers;
    }
    c.headers = !c.own_headers_set && p.headers ? p.headers : effective_headers(c.own_headers, mc);
    if (!c.own_args_set) {
        c.own_args_set = p.own_args_set;
        c.own_args = p.own_args;
    }
    c.args = std::make_shared<const std::vector<ProxyArgEdit>>(c.own_args);
    if (!c.hide_set) {
        c.hide_set = p.hide_set;
        c.hide_headers = p.hide_headers;
    }
    if (!c.pass_set) {
        c.pass_set = p.pass_set;
        c.pass_headers = p.pass_headers;
    }
    c.hidden = effective_hidden(c.hide_headers, c.pass_headers);
    if (!proxy_cache_merge(cx, p.cache, c.cache)) return false;
    if (!proxy_ssl_merge(cx, p.ssl, c.ssl, c.target)) return false;
    if (c.target && !resolve_target(cx, *c.target)) return false;
    if (c.target) lend_tls_to_health_checks(*c.target, c.ssl);
    if (c.target && std::find(mc.temp_paths.begin(), mc.temp_paths.end(), *c.client_body_temp_path) == mc.temp_paths.end())
        mc.temp_paths.push_back(*c.client_body_temp_path);
    return true;
}

// nginx's ngx_create_paths: the master creates the body temp and cache directories and
// hands them to the workers' user, who cannot create them in a root-owned
// prefix. A failure is only a warning: `-t` by an unprivileged user on a
// system config must not fail for it; a worker says so again (crit) when a
// body needs the directory.
void create_temp_paths(ConfContext& cx, const ProxyMainConf& mc) {
    // Only a root master changes the workers' identity (the `user` directive).
    const passwd* pw = geteuid() == 0 ? getpwnam(cx.cycle().core().user.value_or("nobody").c_str()) : nullptr;
    const bool give_away = pw != nullptr;
    const uid_t uid = pw ? pw->pw_uid : 0;
    for (const std::string& path : mc.temp_paths) {
        if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
            cx.warn("mkdir(\"%s\") failed (%d: %s)", path.c_str(), errno, strerror(errno));
            continue;
        }
        if (give_away && ::chown(path.c_str(), uid, gid_t(-1)) != 0)
            cx.warn("chown(\"%s\", %d) failed (%d: %s)", path.c_str(), int(uid), errno, strerror(errno));
    }
}

std::unique_ptr<ModuleConf> create_loc() { return std::make_unique<ProxyLocConf>(); }
std::unique_ptr<ModuleConf> create_main() { return std::make_unique<ProxyMainConf>(); }

bool postconfiguration(ConfContext& cx, HttpPhases&) {
    if (!proxy_add_variables(current_main_conf(cx).variables))
        return cx.error("a proxy variable is already defined");
    if (!proxy_cache_check_zones(cx)) return false;
    proxy_cache_add_paths(cx, main_conf(cx).temp_paths);
    create_temp_paths(cx, main_conf(cx));
    return true;
}

constexpr unsigned kLoc = kHttpAnyContext;

const Directive kDirectives[] = {
    {"proxy_pass", kLocationContext, Args(1), ConfLevel::Location, set_proxy_pass},
    {"proxy_http_version", kLoc, Args(1), ConfLevel::Location, set_http_version},
    {"proxy_set_header", kLoc, Args(2), ConfLevel::Location, set_proxy_set_header},
    {"proxy_pass_request_headers", kLoc, Args(1), ConfLevel::Location, set_flag<&ProxyLocConf::pass_request_headers>},
    {"proxy_hide_header", kLoc, Args(1), ConfLevel::Location, set_hide_or_pass_header},
    {"proxy_pass_header", kLoc, Args(1), ConfLevel::Location, set_hide_or_pass_header},
    {"proxy_set_arg", kLoc, Args(2), ConfLevel::Location, set_arg_edit},
    {"proxy_remove_arg", kLoc, Args(1), ConfLevel::Location, set_arg_edit},
    {"proxy_buffering", kLoc, Args(1), ConfLevel::Location, set_flag<&ProxyLocConf::buffering>},
    {"proxy_request_buffering", kLoc, Args(1), ConfLevel::Location, set_flag<&ProxyLocConf::request_buffering>},
    {"proxy_buffer_size", kLoc, Args(1), ConfLevel::Location, set_size<&ProxyLocConf::buffer_size>},
    {"proxy_buffers", kLoc, Args(2), ConfLevel::Location, set_buffers},
    {"proxy_intercept_errors", kLoc, Args(1), ConfLevel::Location, set_flag<&ProxyLocConf::intercept_errors>},
    {"proxy_ignore_client_abort", kLoc, Args(1), ConfLevel::Location,
     set_flag<&ProxyLocConf::ignore_client_abort>},
    {"proxy_connect_timeout", kLoc, Args(1), ConfLevel::Location, set_msec<&ProxyLocConf::connect_timeout_ms>},
    {"proxy_send_timeout", kLoc, Args(1), ConfLevel::Location, set_msec<&ProxyLocConf::send_timeout_ms>},
    {"proxy_read_timeout", kLoc, Args(1), ConfLevel::Location, set_msec<&ProxyLocConf::read_timeout_ms>},
    {"proxy_next_upstream", kLoc, AnyArgs(1), ConfLevel::Location, set_next_upstream},
    {"proxy_next_upstream_tries", kLoc, Args(1), ConfLevel::Location, set_number<&ProxyLocConf::next_upstream_tries>},
    {"proxy_next_upstream_timeout", kLoc, Args(1), ConfLevel::Location,
     set_msec<&ProxyLocConf::next_upstream_timeout_ms>},
    {"client_body_buffer_size", kLoc, Args(1), ConfLevel::Location, set_size<&ProxyLocConf::client_body_buffer_size>},
    {"client_body_temp_path", kLoc, Args(1, 4), ConfLevel::Location, set_client_body_temp_path},
    // The response cache (cache_directives.cc).
    {"proxy_cache_path", kHttpContext, AnyArgs(2), ConfLevel::Main, set_proxy_cache_path},
    {"proxy_cache", kLoc, Args(1), ConfLevel::Location, set_proxy_cache},
    {"proxy_cache_key", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_key},
    {"proxy_cache_methods", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_methods},
    {"proxy_cache_valid", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_valid},
    {"proxy_cache_min_uses", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_min_uses},
    {"proxy_cache_bypass", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_predicate},
    {"proxy_no_cache", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_predicate},
    {"proxy_cache_purge", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_predicate},
    {"proxy_cache_use_stale", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_cache_use_stale},
    {"proxy_cache_background_update", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_flag},
    {"proxy_cache_lock", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_flag},
    {"proxy_cache_revalidate", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_flag},
    {"proxy_cache_convert_head", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_flag},
    {"proxy_cache_lock_timeout", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_msec},
    {"proxy_cache_lock_age", kLoc, Args(1), ConfLevel::Location, set_proxy_cache_msec},
    {"proxy_ignore_headers", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_ignore_headers},
    // TLS to https upstreams (ssl_directives.cc).
    {"proxy_ssl_verify", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_flag},
    {"proxy_ssl_server_name", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_flag},
    {"proxy_ssl_session_reuse", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_flag},
    {"proxy_ssl_verify_depth", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_verify_depth},
    {"proxy_ssl_trusted_certificate", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_file},
    {"proxy_ssl_crl", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_file},
    {"proxy_ssl_certificate", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_file},
    {"proxy_ssl_certificate_key", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_file},
    {"proxy_ssl_protocols", kLoc, AnyArgs(1), ConfLevel::Location, set_proxy_ssl_protocols},
    {"proxy_ssl_ciphers", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_ciphers},
    {"proxy_ssl_name", kLoc, Args(1), ConfLevel::Location, set_proxy_ssl_name},
};

}  // namespace

bool proxy_parse_url(std::string_view url, ProxyUrl& out, const char*& reason) {
    constexpr std::string_view kHttp = "http://", kHttps = "https://";
    out.https = istarts_with(url, kHttps);
    if (!out.https && !istarts_with(url, kHttp)) {
        reason = "invalid URL prefix";
        return false;
    }
    url.remove_prefix(out.https ? kHttps.size() : kHttp.size());
    size_t slash = url.find('/');
    out.host_port = url.substr(0, slash);
    out.has_uri = slash != std::string_view::npos;
    out.uri = out.has_uri ? url.substr(slash) : std::string_view();
    if (out.host_port.empty()) {
        reason = "no host";
        return false;
    }
    if (!valid_authority(out.host_port)) {
        reason = "invalid host";
        return false;
    }
    for (char ch : out.uri) {
        if (!chars::kTarget(ch)) {
            reason = "invalid URI";
            return false;
        }
    }
    size_t colon = out.host_port.rfind(':');
    size_t bracket = out.host_port.rfind(']');
    out.has_port = colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket);
    out.host = out.has_port ? out.host_port.substr(0, colon) : out.host_port;
    out.port = out.has_port ? out.host_port.substr(colon + 1) : std::string_view(out.https ? "443" : "80");
    out.port_number = out.https ? 443 : 80;
    if (out.has_port) {
        unsigned v = 0;
        for (char ch : out.port) v = v * 10 + unsigned(ch - '0');
        if (out.port.empty() || v == 0 || v > 65535) {
            reason = "invalid port";
            return false;
        }
        out.port_number = uint16_t(v);
    }
    return true;
}

}  // namespace sluice::http

namespace sluice {

Module proxy_module = {
    .name = "proxy",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_main_conf = http::create_main,
    .create_loc_conf = http::create_loc,
    .merge_loc_conf = http::merge_loc,
    .postconfiguration = http::postconfiguration,
    .init_worker = http::proxy_cache_init_worker,
    .exit_worker = http::proxy_cache_exit_worker,
};

}  // namespace sluice
