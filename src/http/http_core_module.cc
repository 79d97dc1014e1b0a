// The http core module: the http{}, server{} and location{} blocks, listen,
// server_name, and the location-level settings every request uses. After the
// http{} block is read, it merges the levels, builds the server and location
// tables, and runs the modules' postconfiguration hooks.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "core/conf.h"
#include "core/cycle.h"
#include "core/str.h"
#include "http/http_connection.h"
#include "http/http_core.h"
#include "http/http_core_variables.h"

namespace sluice::http {

namespace {

CoreMainConf& main_conf_of(ConfContext& cx) {
    return *static_cast<CoreMainConf*>(cx.http->main[size_t(http_core_module.ctx_index)]);
}

std::vector<ModuleConf*> create_confs(ConfContext& cx, std::unique_ptr<ModuleConf> (*Module::*create)()) {
    std::vector<ModuleConf*> confs(size_t(http_module_count()), nullptr);
    for (int i = 0; compiled_modules[i]; ++i) {
        const Module& m = *compiled_modules[i];
        if (m.type != ModuleType::Http) continue;
        auto fn = m.*create;
        if (!fn) continue;
        if (create == &Module::create_main_conf) {
            // One http{} per cycle: its main confs are the cycle's, so workers find them.
            cx.cycle().set_main_conf(m, fn());
            confs[size_t(m.ctx_index)] = cx.cycle().main_conf(m);
        } else {
            confs[size_t(m.ctx_index)] = cx.cycle().keep(fn());
        }
    }
    return confs;
}

// ---- http{} ----

bool merge_locations(ConfContext& cx, LocationConf& parent);
bool build_server_tables(ConfContext& cx, CoreMainConf& mc);
bool run_postconfiguration(ConfContext& cx, CoreMainConf& mc);

bool set_http_block(ConfContext& cx, void*) {
    if (http_main_conf(cx.cycle())) return cx.error("\"http\" directive is duplicate");
    HttpConfs confs;
    confs.main = create_confs(cx, &Module::create_main_conf);
    confs.srv = create_confs(cx, &Module::create_srv_conf);
    confs.loc = create_confs(cx, &Module::create_loc_conf);
    auto& mc = *static_cast<CoreMainConf*>(confs.main[size_t(http_core_module.ctx_index)]);
    mc.main_confs = confs.main;
    mc.module_count = size_t(http_module_count());
    mc.seen = true;
    auto* http_loc = cx.cycle().make<LocationConf>();
    http_loc->confs = confs.loc;
    http_loc->core = static_cast<CoreLocConf*>(confs.loc[size_t(http_core_module.ctx_index)]);
    http_loc->core->location = http_loc;

    HttpConfs* saved = cx.http;
    cx.http = &confs;
    add_core_variables(mc.variables);
    bool ok = cx.parse_block(cx.statement().children, kHttpContext);
    if (ok) {
        // Server-level settings merge from http{}; locations from their parent.
        for (CoreSrvConf* s : mc.servers) {
            LocationConf& root = *s->root_location;
            for (int i = 0; ok && compiled_modules[i]; ++i) {
                const Module& m = *compiled_modules[i];
                if (m.type != ModuleType::Http) continue;
                size_t k = size_t(m.ctx_index);
                if (m.merge_srv_conf && !m.merge_srv_conf(cx, *confs.srv[k], *s->srv_confs[k])) ok = false;
                if (ok && m.merge_loc_conf && !m.merge_loc_conf(cx, *confs.loc[k], *root.confs[k])) ok = false;
            }
            if (ok) ok = merge_locations(cx, root);
        }
    }
    // The tables first: postconfiguration hooks may need the addresses
    // (the TLS module gives each `listen ... ssl` address its context).
    if (ok) ok = build_server_tables(cx, mc);
    if (ok) ok = run_postconfiguration(cx, mc);
    if (ok) {
        std::string name, file;
        int line = 0;
        if (mc.variables.undefined(name, file, line))
            ok = cx.error_in(file, line, "unknown \"%s\" variable", name.c_str());
    }
    cx.http = saved;
    return ok;
}

bool run_postconfiguration(ConfContext& cx, CoreMainConf& mc) {
    for (int i = 0; compiled_modules[i]; ++i) {
        const Module& m = *compiled_modules[i];
        if (m.type == ModuleType::Http && m.postconfiguration && !m.postconfiguration(cx, mc.phases)) return false;
    }
    return true;
}

bool merge_locations(ConfContext& cx, LocationConf& parent) {
    for (auto* list : {&parent.exact, &parent.prefixes, &parent.regexes, &parent.named}) {
        for (LocationConf* child : *list) {
            for (int i = 0; compiled_modules[i]; ++i) {
                const Module& m = *compiled_modules[i];
                if (m.type != ModuleType::Http || !m.merge_loc_conf) continue;
                size_t k = size_t(m.ctx_index);
                if (!m.merge_loc_conf(cx, *parent.confs[k], *child->confs[k])) return false;
            }
            if (!merge_locations(cx, *child)) return false;
        }
    }
    return true;
}

// ---- server{} ----

bool set_server_block(ConfContext& cx, void*) {
    auto& mc = main_conf_of(cx);
    HttpConfs confs;
    confs.main = cx.http->main;
    confs.srv = create_confs(cx, &Module::create_srv_conf);
    confs.loc = create_confs(cx, &Module::create_loc_conf);
    auto* s = static_cast<CoreSrvConf*>(confs.srv[size_t(http_core_module.ctx_index)]);
    s->srv_confs = confs.srv;
    s->conf_file = cx.statement().file;
    s->conf_line = cx.statement().line;
    auto* root = cx.cycle().make<LocationConf>();
    root->confs = confs.loc;
    root->core = static_cast<CoreLocConf*>(confs.loc[size_t(http_core_module.ctx_index)]);
    root->core->location = root;
    s->root_location = root;
    mc.servers.push_back(s);

    HttpConfs* saved = cx.http;
    cx.http = &confs;
    bool ok = cx.parse_block(cx.statement().children, kServerContext);
    cx.http = saved;
    if (!ok) return false;
    if (!s->listen_set) {
        // nginx's default: *:80 when started as root, else *:8000.
        ListenSpec lo;
        auto* sin = reinterpret_cast<sockaddr_in*>(&lo.addr);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(geteuid() == 0 ? 80 : 8000);
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        lo.len = sizeof(sockaddr_in);
        lo.text = geteuid() == 0 ? "0.0.0.0:80" : "0.0.0.0:8000";
        lo.file = s->conf_file;
        lo.line = s->conf_line;
        current_main_conf(cx).listens.push_back({s, lo});
    }
    if (s->server_names.empty()) s->server_names.push_back({"", nullptr});
    return true;
}

// ---- location{} ----

LocationConf* enclosing_location(ConfContext& cx) {
    auto* core = static_cast<CoreLocConf*>(cx.http->loc[size_t(http_core_module.ctx_index)]);
    return core->location;
}

bool add_location(ConfContext& cx, LocationConf& parent, LocationConf& loc) {
    CoreLocConf& c = *loc.core;
    using M = CoreLocConf::Match;
    if (parent.core->match == M::Exact) return cx.error("location \"%s\" cannot be inside the exact location \"%s\"", c.name.c_str(), parent.core->name.c_str());
    if (parent.core->match == M::Named) return cx.error("location \"%s\" cannot be inside the named location \"%s\"", c.name.c_str(), parent.core->name.c_str());
    if (c.match == M::Named) {
        if (parent.parent) return cx.error("named location \"%s\" can be on the server level only", c.name.c_str());
        parent.named.push_back(&loc);
        return true;
    }
    bool parent_is_prefix = parent.core->match == M::Prefix || parent.core->match == M::NoRegexPrefix;
    if (parent_is_prefix && (c.match == M::Prefix || c.match == M::NoRegexPrefix || c.match == M::Exact) &&
        c.name.compare(0, parent.core->name.size(), parent.core->name) != 0)
        return cx.error("location \"%s\" is outside location \"%s\"", c.name.c_str(), parent.core->name.c_str());
    auto duplicate = [&](const std::vector<LocationConf*>& list) {
        for (auto* other : list)
            if (other->core->name == c.name) return true;
        return false;
    };
    switch (c.match) {
    case M::Exact:
        if (duplicate(parent.exact)) return cx.error("duplicate location \"%s\"", c.name.c_str());
        parent.exact.push_back(&loc);
        break;
    case M::Prefix:
    case M::NoRegexPrefix:
        if (duplicate(parent.prefixes)) return cx.error("duplicate location \"%s\"", c.name.c_str());
        parent.prefixes.push_back(&loc);
        // Longest first, so the first prefix that matches is the longest.
        std::stable_sort(parent.prefixes.begin(), parent.prefixes.end(),
                         [](LocationConf* a, LocationConf* b) { return a->core->name.size() > b->core->name.size(); });
        break;
    default: parent.regexes.push_back(&loc); break;
    }
    return true;
}

bool parse_location_args(ConfContext& cx, CoreLocConf& c) {
    using M = CoreLocConf::Match;
    std::string_view mod, uri;
    if (cx.arg_count() == 2) {
        mod = cx.arg(0);
        uri = cx.arg(1);
    } else {
        uri = cx.arg(0);
        // "=/x", "~^x" and "~*x" written without a space, as nginx accepts.
        if (uri.size() > 1 && uri[0] == '=') { mod = "="; uri.remove_prefix(1); }
        else if (uri.size() > 2 && uri.substr(0, 2) == "~*") { mod = "~*"; uri.remove_prefix(2); }
        else if (uri.size() > 1 && uri[0] == '~') { mod = "~"; uri.remove_prefix(1); }
        else if (uri.size() > 2 && uri.substr(0, 2) == "^~") { mod = "^~"; uri.remove_prefix(2); }
    }
    c.name = uri;
    if (mod.empty()) c.match = uri.size() > 0 && uri[0] == '@' ? M::Named : M::Prefix;
    else if (mod == "=") c.match = M::Exact;
    else if (mod == "^~") c.match = M::NoRegexPrefix;
    else if (mod == "~" || mod == "~*") {
        c.match = mod == "~" ? M::Regex : M::RegexCaseless;
        std::string err;
        c.regex = Regex::compile(uri, mod == "~*", err);
        if (!c.regex) return cx.error("%s", err.c_str());
        for (auto& [name, group] : c.regex->named_groups()) current_main_conf(cx).variables.add_indexed(name);
    } else return cx.error("invalid location modifier \"%.*s\"", int(mod.size()), mod.data());
    if (c.name.empty()) return cx.error("invalid location name");
    return true;
}

bool set_location_block(ConfContext& cx, void*) {
    LocationConf* parent = enclosing_location(cx);
    HttpConfs confs;
    confs.main = cx.http->main;
    confs.srv = cx.http->srv;
    confs.loc = create_confs(cx, &Module::create_loc_conf);
    auto* loc = cx.cycle().make<LocationConf>();
    loc->confs = confs.loc;
    loc->core = static_cast<CoreLocConf*>(confs.loc[size_t(http_core_module.ctx_index)]);
    loc->core->location = loc;
    loc->parent = parent;
    if (!parse_location_args(cx, *loc->core)) return false;
    if (!add_location(cx, *parent, *loc)) return false;
    HttpConfs* saved = cx.http;
    cx.http = &confs;
    bool ok = cx.parse_block(cx.statement().children, kLocationContext);
    cx.http = saved;
    return ok;
}

// ---- listen ----

bool parse_listen_address(ConfContext& cx, std::string_view text, ListenSpec& lo) {
    std::string host, port;
    if (text.substr(0, 5) == "unix:") return cx.error("unix domain sockets are not supported in \"listen\"");
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return cx.error("invalid IPv6 address in \"%.*s\"", int(text.size()), text.data());
        host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') return cx.error("invalid host in \"%.*s\" of the \"listen\" directive", int(text.size()), text.data());
            port = text.substr(close + 2);
        } else port = "80";
        lo.text = "[" + host + "]:" + port;
    } else {
        size_t colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            if (text.find_first_not_of("0123456789") == std::string_view::npos) { host = "*"; port = text; }
            else { host = text; port = "80"; }
        } else {
            host = text.substr(0, colon);
            port = text.substr(colon + 1);
        }
        if (host == "*") host = "0.0.0.0";
        lo.text = host + ":" + port;
    }
    auto p = conf::parse_number(port);
    if (!p || *p < 1 || *p > 65535) return cx.error("invalid port in \"%.*s\" of the \"listen\" directive", int(text.size()), text.data());
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res) return cx.error("host not found in \"%.*s\" of the \"listen\" directive", int(text.size()), text.data());
    memcpy(&lo.addr, res->ai_addr, res->ai_addrlen);
    lo.len = socklen_t(res->ai_addrlen);
    freeaddrinfo(res);
    if (lo.addr.ss_family == AF_INET6) {
        char buf[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&lo.addr)->sin6_addr, buf, sizeof buf);
        lo.text = std::string("[") + buf + "]:" + port;
    } else {
        char buf[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&lo.addr)->sin_addr, buf, sizeof buf);
        lo.text = std::string(buf) + ":" + port;
    }
    return true;
}

bool parse_listen_option(ConfContext& cx, std::string_view opt, ListenSpec& lo) {
    auto number_after = [&](std::string_view key, int& out) {
        auto v = key == "backlog" ? conf::parse_number(opt.substr(key.size() + 1))
                                  : std::optional<int64_t>(conf::parse_size(opt.substr(key.size() + 1)));
        if (!v || *v < 1 || *v > INT32_MAX) return cx.error("invalid %.*s \"%.*s\"", int(key.size()), key.data(), int(opt.size()), opt.data());
        out = int(*v);
        return true;
    };
    if (opt == "default_server" || opt == "default") lo.default_server = true;
    else if (opt == "reuseport") lo.reuseport = true;
    else if (opt == "deferred") lo.deferred = true;
    else if (opt == "bind") lo.bind = true;
    else if (opt.substr(0, 8) == "backlog=") return number_after("backlog", lo.backlog);
    else if (opt.substr(0, 7) == "rcvbuf=") return number_after("rcvbuf", lo.rcvbuf);
    else if (opt.substr(0, 7) == "sndbuf=") return number_after("sndbuf", lo.sndbuf);
    else if (opt == "ipv6only=on") lo.ipv6only = 1;
    else if (opt == "ipv6only=off") lo.ipv6only = 0;
    else if (opt == "ssl") lo.ssl = true;
    else if (opt == "http2" || opt == "quic" || opt == "proxy_protocol")
        return cx.error("the \"%.*s\" parameter of \"listen\" is not supported yet", int(opt.size()), opt.data());
    else return cx.error("invalid parameter \"%.*s\"", int(opt.size()), opt.data());
    return true;
}

bool set_listen(ConfContext& cx, void* conf) {
    auto& s = *static_cast<CoreSrvConf*>(conf);
    ListenSpec lo;
    lo.file = cx.statement().file;
    lo.line = cx.statement().line;
    if (!parse_listen_address(cx, cx.arg(0), lo)) return false;
    for (size_t i = 1; i < cx.arg_count(); ++i)
        if (!parse_listen_option(cx, cx.arg(i), lo)) return false;
    auto& listens = current_main_conf(cx).listens;
    for (auto& [srv, other] : listens)
        if (srv == &s && other.len == lo.len && memcmp(&other.addr, &lo.addr, lo.len) == 0)
            return cx.error("duplicate listen %s", lo.text.c_str());
    s.listen_set = true;
    listens.push_back({&s, lo});
    return true;
}

// ---- server_name ----

bool set_server_name(ConfContext& cx, void* conf) {
    auto& s = *static_cast<CoreSrvConf*>(conf);
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        std::string name = cx.arg(i);
        ServerName sn;
        if (!name.empty() && name[0] == '~') {
            std::string err;
            sn.regex = Regex::compile(std::string_view(name).substr(1), true, err);
            if (!sn.regex) return cx.error("%s", err.c_str());
            for (auto& [n, g] : sn.regex->named_groups()) current_main_conf(cx).variables.add_indexed(n);
            sn.name = name;
        } else {
            sn.name = to_lower(name);
            if (sn.name.find('/') != std::string::npos) return cx.error("server name \"%s\" has suspicious symbols", name.c_str());
            size_t stars = std::count(sn.name.begin(), sn.name.end(), '*');
            bool head = sn.name.size() > 2 && sn.name.compare(0, 2, "*.") == 0;
            bool tail = sn.name.size() > 2 && sn.name.compare(sn.name.size() - 2, 2, ".*") == 0;
            if (stars > 1 || (stars == 1 && !head && !tail))
                return cx.error("invalid server name or wildcard \"%s\"", name.c_str());
        }
        s.server_names.push_back(std::move(sn));
    }
    return true;
}

// ---- server tables ----

bool add_server_names(ConfContext& cx, AddressServers& as, CoreSrvConf* s, const std::string& addr) {
    for (auto& sn : s->server_names) {
        if (sn.regex) {
            as.regexes.push_back({sn.regex.get(), s});
            continue;
        }
        const std::string& n = sn.name;
        if (n.size() > 1 && n[0] == '*') as.wildcard_head.push_back({n.substr(1), s});
        else if (n.size() > 1 && n.back() == '*') as.wildcard_tail.push_back({n.substr(0, n.size() - 1), s});
        else if (n.size() > 1 && n[0] == '.') {
            // ".example.com" is both example.com and *.example.com.
            as.exact.emplace(n.substr(1), s);
            as.wildcard_head.push_back({n, s});
        } else if (!as.exact.emplace(n, s).second && as.exact[n] != s)
            cx.warn("conflicting server name \"%s\" on %s, ignored", n.c_str(), addr.c_str());
    }
    return true;
}

bool build_server_tables(ConfContext& cx, CoreMainConf& mc) {
    auto& listens = current_main_conf(cx).listens;
    for (auto& [s, lo] : listens) {
        bool existed = false;
        Listening& l = cx.cycle().add_listening(lo.addr, lo.len, existed);
        if (!existed) {
            l.addr_text = lo.text;
            l.conf_file = lo.file;
            l.conf_line = lo.line;
            mc.addresses.push_back(std::make_unique<AddressServers>());
            l.data = mc.addresses.back().get();
            l.on_accept = accept_http_connection;
        }
        auto& as = *static_cast<AddressServers*>(l.data);
        if (lo.default_server) {
            if (as.default_server_explicit)
                return cx.error_in(lo.file, lo.line, "a duplicate default server for %s", lo.text.c_str());
            as.default_server = s;
            as.default_server_explicit = true;
        }
        bool options = lo.reuseport || lo.deferred || lo.backlog != 511 || lo.rcvbuf != -1 || lo.sndbuf != -1 || lo.ipv6only != -1;
        if (options) {
            if (existed && l.reuseport != lo.reuseport)
                return cx.error_in(lo.file, lo.line, "duplicate listen options for %s", lo.text.c_str());
            l.reuseport = lo.reuseport;
            l.deferred = lo.deferred;
            l.backlog = lo.backlog;
            l.rcvbuf = lo.rcvbuf;
            l.sndbuf = lo.sndbuf;
            if (lo.ipv6only != -1) l.ipv6only = lo.ipv6only == 1;
        }
        if (lo.ssl && !as.ssl) {
            as.ssl = true;
            as.ssl_file = lo.file;
            as.ssl_line = lo.line;
        }
        if (!as.default_server) as.default_server = s;
        if (std::find(as.servers.begin(), as.servers.end(), s) == as.servers.end()) {
            as.servers.push_back(s);
            add_server_names(cx, as, s, lo.text);
        }
    }
    // Longer wildcards are more specific: "*.a.example.com" before "*.example.com".
    for (auto& as : mc.addresses) {
        auto longest = [](auto& a, auto& b) { return a.first.size() > b.first.size(); };
        std::stable_sort(as->wildcard_head.begin(), as->wildcard_head.end(), longest);
        std::stable_sort(as->wildcard_tail.begin(), as->wildcard_tail.end(), longest);
    }
    return true;
}

// ---- types{} and location-level settings ----

bool set_types_block(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreLocConf*>(conf);
    if (!c.types) c.types = std::make_shared<CoreLocConf::TypesMap>();
    for (const conf::Statement& st : cx.statement().children) {
        if (st.block || st.args.size() < 2)
            return cx.error_at(st, "invalid number of arguments in \"types\" directive");
        for (size_t i = 1; i < st.args.size(); ++i) (*c.types)[to_lower(st.args[i].text)] = st.args[0].text;
    }
    return true;
}

bool set_keepalive_timeout(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreLocConf*>(conf);
    if (c.keepalive_timeout_ms) return cx.duplicate();
    auto v = conf::parse_time_ms(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    c.keepalive_timeout_ms = *v;
    return true;
}

bool set_large_client_header_buffers(ConfContext& cx, void* conf) {
    auto& s = *static_cast<CoreSrvConf*>(conf);
    if (s.large_client_header_buffers_num) return cx.duplicate();
    auto n = conf::parse_number(cx.arg(0));
    auto size = conf::parse_size(cx.arg(1));
    if (!n || *n < 1) return cx.invalid_value(0);
    if (!size || *size < 64 || *size > (1u << 20)) return cx.invalid_value(1);
    s.large_client_header_buffers_num = uint64_t(*n);
    s.large_client_header_buffers_size = *size;
    return true;
}

bool set_error_page(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreLocConf*>(conf);
    if (!c.error_pages_set) c.error_pages.clear();
    c.error_pages_set = true;
    size_t n = cx.arg_count();
    std::string uri = cx.arg(n - 1);
    int override_status = -1;
    size_t codes_end = n - 1;
    if (n >= 3 && cx.arg(n - 2)[0] == '=') {
        std::string_view o = std::string_view(cx.arg(n - 2)).substr(1);
        if (o.empty()) override_status = 0;
        else {
            auto v = conf::parse_number(o);
            if (!v || *v < 100 || *v > 599) return cx.error("invalid value \"%s\"", cx.arg(n - 2).c_str());
            override_status = int(*v);
        }
        codes_end = n - 2;
    }
    if (codes_end == 0) return cx.error("invalid number of arguments in \"error_page\" directive");
    for (size_t i = 0; i < codes_end; ++i) {
        auto v = conf::parse_number(cx.arg(i));
        if (!v || *v < 300 || *v > 599) return cx.error("value \"%s\" must be between 300 and 599", cx.arg(i).c_str());
        ErrorPage ep;
        ep.status = int(*v);
        ep.override_status = override_status;
        if (!ep.uri.compile(cx, uri)) return false;
        c.error_pages.push_back(std::move(ep));
    }
    return true;
}

bool set_internal(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreLocConf*>(conf);
    if (c.internal) return cx.duplicate();
    c.internal = true;
    return true;
}

std::unique_ptr<ModuleConf> create_main() { return std::make_unique<CoreMainConf>(); }
std::unique_ptr<ModuleConf> create_srv() { return std::make_unique<CoreSrvConf>(); }
std::unique_ptr<ModuleConf> create_loc() { return std::make_unique<CoreLocConf>(); }

bool merge_srv(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const CoreSrvConf&>(parent);
    auto& c = static_cast<CoreSrvConf&>(child);
    merge_value(c.client_header_timeout_ms, p.client_header_timeout_ms, 60000);
    merge_value(c.client_header_buffer_size, p.client_header_buffer_size, 1024);
    merge_value(c.large_client_header_buffers_num, p.large_client_header_buffers_num, 4);
    merge_value(c.large_client_header_buffers_size, p.large_client_header_buffers_size, 8192);
    merge_value(c.underscores_in_headers, p.underscores_in_headers, false);
    return true;
}

std::shared_ptr<CoreLocConf::TypesMap> default_types() {
    // nginx's built-in default when no types{} is given.
    static auto types = std::make_shared<CoreLocConf::TypesMap>(
        CoreLocConf::TypesMap{{"html", "text/html"}, {"gif", "image/gif"}, {"jpg", "image/jpeg"}});
    return types;
}

bool merge_loc(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const CoreLocConf&>(parent);
    auto& c = static_cast<CoreLocConf&>(child);
    merge_value(c.default_type, p.default_type, "text/plain");
    if (!c.types) c.types = p.types ? p.types : default_types();
    merge_value(c.client_max_body_size, p.client_max_body_size, 1024 * 1024);
    merge_value(c.client_body_timeout_ms, p.client_body_timeout_ms, 60000);
    merge_value(c.send_timeout_ms, p.send_timeout_ms, 60000);
    merge_value(c.keepalive_timeout_ms, p.keepalive_timeout_ms, 75000);
    merge_value(c.keepalive_requests, p.keepalive_requests, 1000);
    merge_value(c.server_tokens, p.server_tokens, true);
    merge_value(c.merge_slashes, p.merge_slashes, true);
    merge_value(c.allow_encoded_slashes, p.allow_encoded_slashes, false);
    merge_value(c.internal, std::optional<bool>(), false);
    merge_value(c.log_not_found, p.log_not_found, true);
    merge_value(c.recursive_error_pages, p.recursive_error_pages, false);
    merge_value(c.absolute_redirect, p.absolute_redirect, true);
    merge_value(c.port_in_redirect, p.port_in_redirect, true);
    merge_value(c.tcp_nodelay, p.tcp_nodelay, true);
    merge_value(c.sendfile, p.sendfile, true);
    merge_value(c.satisfy, p.satisfy, CoreLocConf::Satisfy::All);
    // error_page lists are inherited whole, as nginx does; shared by pointer.
    if (!c.error_pages_set) c.inherited_error_pages = p.error_pages_set ? &p.error_pages : p.inherited_error_pages;
    return true;
}

constexpr unsigned kLoc = kHttpContext | kServerContext | kLocationContext;
constexpr unsigned kSrv = kHttpContext | kServerContext;

constexpr EnumEntry kSatisfyValues[] = {
    {"all", int(CoreLocConf::Satisfy::All)},
    {"any", int(CoreLocConf::Satisfy::Any)},
    {"", 0},
};

const Directive kDirectives[] = {
    {"http", kMainContext, Block(), ConfLevel::Main, set_http_block},
    {"server", kHttpContext, Block(), ConfLevel::Main, set_server_block},
    {"location", kServerContext | kLocationContext, Block(1, 2), ConfLevel::Location, set_location_block},
    {"listen", kServerContext, AnyArgs(1), ConfLevel::Server, set_listen},
    {"server_name", kServerContext, AnyArgs(1), ConfLevel::Server, set_server_name},
    {"types", kLoc, Block(), ConfLevel::Location, set_types_block},
    {"default_type", kLoc, Args(1), ConfLevel::Location, set_string<&CoreLocConf::default_type>},
    {"client_max_body_size", kLoc, Args(1), ConfLevel::Location, set_size<&CoreLocConf::client_max_body_size>},
    {"client_body_timeout", kLoc, Args(1), ConfLevel::Location, set_msec<&CoreLocConf::client_body_timeout_ms>},
    {"send_timeout", kLoc, Args(1), ConfLevel::Location, set_msec<&CoreLocConf::send_timeout_ms>},
    {"keepalive_timeout", kLoc, Args(1, 2), ConfLevel::Location, set_keepalive_timeout},
    {"keepalive_requests", kLoc, Args(1), ConfLevel::Location, set_number<&CoreLocConf::keepalive_requests>},
    {"server_tokens", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::server_tokens>},
    {"merge_slashes", kSrv, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::merge_slashes>},
    {"allow_encoded_slashes", kSrv, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::allow_encoded_slashes>},
    {"internal", kLocationContext, Args(0), ConfLevel::Location, set_internal},
    {"log_not_found", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::log_not_found>},
    {"recursive_error_pages", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::recursive_error_pages>},
    {"absolute_redirect", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::absolute_redirect>},
    {"port_in_redirect", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::port_in_redirect>},
    {"tcp_nodelay", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::tcp_nodelay>},
    {"sendfile", kLoc, Args(1), ConfLevel::Location, set_flag<&CoreLocConf::sendfile>},
    {"error_page", kLoc, AnyArgs(2), ConfLevel::Location, set_error_page},
    {"satisfy", kLoc, Args(1), ConfLevel::Location, set_enum<&CoreLocConf::satisfy, kSatisfyValues>},
    {"client_header_timeout", kSrv, Args(1), ConfLevel::Server, set_msec<&CoreSrvConf::client_header_timeout_ms>},
    {"client_header_buffer_size", kSrv, Args(1), ConfLevel::Server, set_size<&CoreSrvConf::client_header_buffer_size>},
    {"large_client_header_buffers", kSrv, Args(2), ConfLevel::Server, set_large_client_header_buffers},
    {"underscores_in_headers", kSrv, Args(1), ConfLevel::Server, set_flag<&CoreSrvConf::underscores_in_headers>},
};

}  // namespace

CoreMainConf* http_main_conf(const Cycle& cycle) {
    auto* mc = static_cast<CoreMainConf*>(cycle.main_conf(http_core_module));
    return mc && mc->seen ? mc : nullptr;
}

CoreMainConf& current_main_conf(ConfContext& cx) { return main_conf_of(cx); }

LocationConf* current_location(ConfContext& cx) { return enclosing_location(cx); }

}  // namespace sluice::http

namespace sluice {


Module http_core_module = {
    .name = "http_core",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_main_conf = http::create_main,
    .create_srv_conf = http::create_srv,
    .merge_srv_conf = http::merge_srv,
    .create_loc_conf = http::create_loc,
    .merge_loc_conf = http::merge_loc,
};

}  // namespace sluice
