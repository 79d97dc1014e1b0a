// The upstream module's configuration: upstream{} blocks and their
// directives, implicit upstreams for proxy_pass hosts, `resolver`, the
// shared zone of each upstream, and the per-worker pools and resolvers.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "core/conf.h"
#include "core/log.h"
#include "core/str.h"
#include "event/worker.h"
#include "http/http_upstream.h"

namespace sluice::http {

namespace {

// Shared slots each `server ... resolve` gets for the addresses it may resolve to.
constexpr size_t kResolveSlotsPerServer = 32;
constexpr size_t kMaxPeers = kMaxUpstreamPeers;
constexpr uint64_t kDefaultResolverTimeoutMs = 30000;

// Zone tags: an implicit upstream's zone never merges with an upstream{}'s.
const char kExplicitZoneTag = 0;
const char kImplicitZoneTag = 0;

// Directives seen in the upstream{} being read, for "is duplicate".
enum SeenBit : unsigned {
    kSeenKeepalive = 1u << 0,
    kSeenKeepaliveTimeout = 1u << 1,
    kSeenKeepaliveRequests = 1u << 2,
    kSeenZone = 1u << 3,
    kSeenResolverTimeout = 1u << 4,
};

UpstreamMainConf& main_conf_of(void* conf) { return *static_cast<UpstreamMainConf*>(conf); }

bool seen_once(ConfContext& cx, UpstreamMainConf& mc, unsigned bit) {
    if (mc.parsing_seen & bit) return cx.duplicate();
    mc.parsing_seen |= bit;
    return true;
}

bool is_numeric_host(const std::string& host) {
    in6_addr a6;
    in_addr a4;
    return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// ---- server ADDRESS [parameters] ----

std::optional<int64_t> number_param(std::string_view arg, std::string_view key) {
    if (arg.substr(0, key.size()) != key) return std::nullopt;
    return conf::parse_number(arg.substr(key.size()));
}

// One `weight=`, `max_fails=`... parameter; false with the error set.
bool parse_server_param(ConfContext& cx, const std::string& arg, UpstreamServerConf& s) {
    auto invalid = [&] { return cx.error("invalid parameter \"%s\"", arg.c_str()); };
    std::string_view a = arg;
    if (a.substr(0, 7) == "weight=") {
        auto v = number_param(a, "weight=");
        if (!v || *v < 1 || *v > 1000000) return invalid();
        s.weight = int(*v);
    } else if (a.substr(0, 10) == "max_fails=") {
        auto v = number_param(a, "max_fails=");
        if (!v || *v > 1000000) return invalid();
        s.max_fails = int(*v);
    } else if (a.substr(0, 10) == "max_conns=") {
        auto v = number_param(a, "max_conns=");
        if (!v || *v > INT32_MAX) return invalid();
        s.max_conns = int(*v);
    } else if (a.substr(0, 13) == "fail_timeout=") {
        auto v = conf::parse_time_ms(a.substr(13));
        if (!v) return invalid();
        s.fail_timeout_ms = *v;
    } else if (a == "backup") {
        s.backup = true;
    } else if (a == "down") {
        s.down = true;
    } else if (a == "resolve") {
        s.resolve = true;
    } else {
        return invalid();
    }
    return true;
}

bool unix_address(std::string_view path, sockaddr_storage& addr, socklen_t& len) {
    sockaddr_un sun{};
    if (path.empty() || path.size() >= sizeof sun.sun_path) return false;
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path.data(), path.size());
    memset(&addr, 0, sizeof addr);
    memcpy(&addr, &sun, sizeof sun);
    len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    return true;
}

// The addresses of a server now; a `resolve` server that does not resolve
// yet starts with none (the worker's resolver fills them in).
bool server_addresses(ConfContext& cx, UpstreamServerConf& s, std::vector<sockaddr_storage>& addrs,
                      std::vector<socklen_t>& lens) {
    if (s.name.substr(0, 5) == "unix:") {
        sockaddr_storage a;
        socklen_t len;
        if (!unix_address(std::string_view(s.name).substr(5), a, len))
            return cx.error("invalid address \"%s\" in upstream", s.name.c_str());
        addrs.push_back(a);
        lens.push_back(len);
        s.resolve = false;
        return true;
    }
    if (is_numeric_host(s.host)) s.resolve = false;  // nothing to re-resolve, as nginx
    if (upstream_resolve_now(s.host, s.port, addrs, lens) || s.resolve) return true;
    return cx.error("host not found in upstream \"%s\"", s.name.c_str());
}

bool set_server(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    Upstream& u = *mc.parsing;
    UpstreamServerConf s;
    s.name = cx.arg(0);
    s.file = cx.statement().file;
    s.line = cx.statement().line;
    for (size_t i = 1; i < cx.arg_count(); ++i)
        if (!parse_server_param(cx, cx.arg(i), s)) return false;
    if (s.name.substr(0, 5) != "unix:") {
        std::string err;
        bool port_given;
        if (!upstream_split_address(s.name, 80, s.host, s.port, port_given, err))
            return cx.error("%s in upstream \"%s\"", err.c_str(), s.name.c_str());
    }
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
    if (!server_addresses(cx, s, addrs, lens)) return false;
    size_t index = u.servers.size();
    for (size_t i = 0; i < addrs.size(); ++i) u.peers.push_back(upstream_make_peer(s, index, addrs[i], lens[i]));
    u.servers.push_back(std::move(s));
    if (u.peers.size() > kMaxPeers) return cx.error("too many servers in upstream \"%s\" (at most %zu addresses)", u.name.c_str(), kMaxPeers);
    return true;
}

// ---- balancing methods ----

void set_balancer(ConfContext& cx, Upstream& u, Balancer b) {
    if (u.balancer_set) cx.warn("load balancing method redefined");
    u.balancer = b;
    u.balancer_set = true;
}

bool set_least_conn(ConfContext& cx, void* conf) {
    set_balancer(cx, *main_conf_of(conf).parsing, Balancer::LeastConn);
    return true;
}

bool set_hash(ConfContext& cx, void* conf) {
    Upstream& u = *main_conf_of(conf).parsing;
    if (cx.arg_count() == 2 && cx.arg(1) != "consistent")
        return cx.error("invalid parameter \"%s\"", cx.arg(1).c_str());
    u.hash_key = ComplexValue();
    if (!u.hash_key.compile(cx, cx.arg(0))) return false;
    u.hash_consistent = cx.arg_count() == 2;
    set_balancer(cx, u, Balancer::Hash);
    return true;
}

bool set_random(ConfContext& cx, void* conf) {
    Upstream& u = *main_conf_of(conf).parsing;
    if (cx.arg_count() >= 1 && cx.arg(0) != "two") return cx.error("invalid parameter \"%s\"", cx.arg(0).c_str());
    if (cx.arg_count() == 2 && cx.arg(1) != "least_conn")
        return cx.error("invalid parameter \"%s\"", cx.arg(1).c_str());
    set_balancer(cx, u, cx.arg_count() == 0 ? Balancer::Random : Balancer::RandomTwo);
    return true;
}

// ---- keepalive, zone ----

bool set_keepalive(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    if (!seen_once(cx, mc, kSeenKeepalive)) return false;
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v < 1) return cx.invalid_value(0);
    mc.parsing->keepalive = uint64_t(*v);
    return true;
}

bool set_keepalive_timeout(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    if (!seen_once(cx, mc, kSeenKeepaliveTimeout)) return false;
    auto v = conf::parse_time_ms(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    mc.parsing->keepalive_timeout_ms = *v;
    return true;
}

bool set_keepalive_requests(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    if (!seen_once(cx, mc, kSeenKeepaliveRequests)) return false;
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v < 1) return cx.invalid_value(0);
    mc.parsing->keepalive_requests = uint64_t(*v);
    return true;
}

bool set_zone(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    if (!seen_once(cx, mc, kSeenZone)) return false;
    Upstream& u = *mc.parsing;
    u.zone_name = cx.arg(0);
    if (u.zone_name.empty()) return cx.invalid_value(0);
    if (cx.arg_count() == 2) {
        auto size = conf::parse_size(cx.arg(1));
        if (!size || *size == 0) return cx.error("invalid zone size \"%s\"", cx.arg(1).c_str());
        u.zone_size = *size;
    }
    return true;
}

// ---- resolver ----

bool add_nameserver(ConfContext& cx, ResolverConf& rc, const std::string& arg) {
    std::string host, err;
    uint16_t port;
    bool port_given;
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
    if (!upstream_split_address(arg, 53, host, port, port_given, err))
        return cx.error("%s in resolver \"%s\"", err.c_str(), arg.c_str());
    if (!upstream_resolve_now(host, port, addrs, lens)) return cx.error("host not found in resolver \"%s\"", arg.c_str());
    for (size_t i = 0; i < addrs.size(); ++i) rc.nameservers.push_back(upstream_address_text(addrs[i], lens[i]));
    return true;
}

bool parse_resolver(ConfContext& cx, std::shared_ptr<const ResolverConf>& out) {
    auto rc = std::make_shared<ResolverConf>();
    rc->file = cx.statement().file;
    rc->line = cx.statement().line;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        std::string_view a = cx.arg(i);
        if (a.substr(0, 6) == "valid=") {
            auto v = conf::parse_time_ms(a.substr(6));
            if (!v) return cx.error("invalid parameter \"%s\"", cx.arg(i).c_str());
            rc->valid_ms = *v;
        } else if (a.substr(0, 5) == "ipv4=" || a.substr(0, 5) == "ipv6=") {
            auto v = conf::parse_flag(a.substr(5));
            if (!v) return cx.error("invalid parameter \"%s\"", cx.arg(i).c_str());
            (a[3] == '4' ? rc->ipv4 : rc->ipv6) = *v;
        } else if (a.substr(0, 12) == "status_zone=") {
            // nginx Plus statistics: accepted, nothing to collect it here.
        } else if (!add_nameserver(cx, *rc, cx.arg(i))) {
            return false;
        }
    }
    if (!rc->ipv4 && !rc->ipv6) return cx.error("\"ipv4\" and \"ipv6\" cannot both be \"off\"");
    if (rc->nameservers.empty()) return cx.error("no name servers defined in \"resolver\"");
    out = std::move(rc);
    return true;
}

bool set_upstream_resolver(ConfContext& cx, void* conf) {
    Upstream& u = *main_conf_of(conf).parsing;
    if (u.resolver) return cx.duplicate();
    return parse_resolver(cx, u.resolver);
}

bool set_loc_resolver(ConfContext& cx, void* conf) {
    auto& lc = *static_cast<UpstreamLocConf*>(conf);
    if (lc.resolver_set) return cx.duplicate();
    lc.resolver_set = true;
    return parse_resolver(cx, lc.resolver);
}

bool set_upstream_resolver_timeout(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    if (!seen_once(cx, mc, kSeenResolverTimeout)) return false;
    auto v = conf::parse_time_ms(cx.arg(0));
    if (!v || *v == 0) return cx.invalid_value(0);
    mc.parsing->resolver_timeout_ms = *v;
    return true;
}

// The resolver with `timeout_ms`, shared when it already has it.
std::shared_ptr<const ResolverConf> with_timeout(std::shared_ptr<const ResolverConf> rc, uint64_t timeout_ms) {
    if (!rc || rc->timeout_ms == timeout_ms) return rc;
    auto copy = std::make_shared<ResolverConf>(*rc);
    copy->timeout_ms = timeout_ms;
    return copy;
}

// ---- upstream NAME { ... } ----

bool may_take_over(ConfContext& cx, Upstream& existing, const std::string& name) {
    if (!existing.implicit) return cx.error("duplicate upstream \"%s\"", name.c_str());
    if (existing.implicit_port_given)
        return cx.error_in(existing.file, existing.line, "upstream \"%s\" may not have port %u", name.c_str(),
                           unsigned(existing.implicit_port));
    return true;
}

// An upstream{} named like an earlier proxy_pass host without a port takes
// over that implicit upstream (the proxy already holds its pointer).
bool upstream_for_block(ConfContext& cx, UpstreamMainConf& mc, const std::string& name, Upstream*& out) {
    out = nullptr;
    for (auto& u : mc.upstreams) {
        bool same = u->implicit ? iequals(u->implicit_host, name) : u->name == name;
        if (!same) continue;
        if (!may_take_over(cx, *u, name)) return false;
        out = u.get();
    }
    if (out) {
        out->implicit = false;
        out->peers.clear();
        out->servers.clear();
        return true;
    }
    mc.upstreams.push_back(std::make_unique<Upstream>());
    out = mc.upstreams.back().get();
    return true;
}

bool check_upstream(ConfContext& cx, Upstream& u) {
    if (u.servers.empty()) return cx.error("no servers are inside upstream \"%s\"", u.name.c_str());
    bool backup_ok = u.balancer == Balancer::RoundRobin || u.balancer == Balancer::LeastConn;
    for (const UpstreamServerConf& s : u.servers)
        if (s.backup && !backup_ok)
            return cx.error_in(s.file, s.line, "balancing method does not support the \"backup\" parameter");
    return true;
}

bool set_upstream_block(ConfContext& cx, void* conf) {
    UpstreamMainConf& mc = main_conf_of(conf);
    const std::string& name = cx.arg(0);
    if (name.empty()) return cx.invalid_value(0);
    Upstream* u;
    if (!upstream_for_block(cx, mc, name, u)) return false;
    u->name = name;
    u->file = cx.statement().file;
    u->line = cx.statement().line;
    mc.parsing = u;
    mc.parsing_seen = 0;
    bool ok = cx.parse_block(cx.statement().children, kUpstreamContext);
    mc.parsing = nullptr;
    if (!ok || !check_upstream(cx, *u)) return false;
    upstream_init_peers(*u);
    return true;
}

// ---- the end of http{}: implicit upstreams, resolvers, zones ----

// An implicit upstream is resolved when the proxy names it, as nginx does.
bool resolve_implicit(Upstream& u, std::string& err) {
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
    if (u.implicit_host.substr(0, 5) == "unix:") {
        sockaddr_storage a;
        socklen_t len;
        if (!unix_address(std::string_view(u.implicit_host).substr(5), a, len)) {
            err = "invalid address";
            return false;
        }
        addrs.push_back(a);
        lens.push_back(len);
    } else if (!upstream_resolve_now(u.implicit_host, u.implicit_port, addrs, lens)) {
        err = "host not found";
        return false;
    }
    u.peers.clear();
    for (size_t i = 0; i < addrs.size() && i < kMaxPeers; ++i)
        u.peers.push_back(upstream_make_peer(u.servers[0], 0, addrs[i], lens[i]));
    upstream_init_peers(u);
    return true;
}

bool attach_resolver(ConfContext& cx, Upstream& u, const UpstreamLocConf& http_level) {
    if (!u.has_resolve()) return true;
    std::shared_ptr<const ResolverConf> rc = u.resolver ? u.resolver : http_level.resolver;
    if (!rc) {
        for (const UpstreamServerConf& s : u.servers)
            if (s.resolve)
                return cx.error_in(s.file, s.line, "no resolver defined to resolve \"%s\" in upstream \"%s\"",
                                   s.host.c_str(), u.name.c_str());
    }
    uint64_t timeout = u.resolver_timeout_ms.value_or(http_level.resolver_timeout_ms.value_or(kDefaultResolverTimeoutMs));
    u.resolver = with_timeout(rc, timeout);
    return true;
}

bool init_upstream_zone(ShmZone& zone, void* old_data) {
    auto& u = *static_cast<Upstream*>(zone.data);
    upstream_attach_shared(u, zone.addr, old_data != nullptr);
    return true;
}

void count_slots(Upstream& u) {
    size_t resolve_servers = 0;
    u.static_slots = 0;
    for (const Peer& p : u.peers)
        if (!(p.server_index < u.servers.size() && u.servers[p.server_index].resolve)) ++u.static_slots;
    for (const UpstreamServerConf& s : u.servers)
        if (s.resolve) ++resolve_servers;
    u.slot_count = std::max<size_t>(u.static_slots + resolve_servers * kResolveSlotsPerServer, 1);
}

bool declare_zone(ConfContext& cx, Upstream& u) {
    count_slots(u);
    std::string err;
    std::string name = "upstream:" + (u.implicit ? u.implicit_host + ":" + std::to_string(u.implicit_port) : u.name);
    const void* tag = u.implicit ? &kImplicitZoneTag : &kExplicitZoneTag;
    ShmZone* zone = cx.cycle().add_shm_zone(name, upstream_shared_size(u.slot_count), tag, err);
    if (!zone) return cx.error_in(u.file, u.line, "%s", err.c_str());
    zone->init = init_upstream_zone;
    zone->data = &u;
    u.zone = zone;
    return true;
}

bool finish_upstreams(ConfContext& cx, HttpPhases&) {
    auto* mc = static_cast<UpstreamMainConf*>(cx.cycle().main_conf(http_upstream_module));
    if (!mc) return true;
    auto& http_level = *static_cast<UpstreamLocConf*>(cx.http->loc[size_t(http_upstream_module.ctx_index)]);
    for (auto& u : mc->upstreams) {
        if (!attach_resolver(cx, *u, http_level)) return false;
        if (!declare_zone(cx, *u)) return false;
    }
    return true;
}

// ---- configuration objects ----

std::unique_ptr<ModuleConf> create_main_conf() { return std::make_unique<UpstreamMainConf>(); }
std::unique_ptr<ModuleConf> create_loc_conf() { return std::make_unique<UpstreamLocConf>(); }

bool merge_loc_conf(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const UpstreamLocConf&>(parent);
    auto& c = static_cast<UpstreamLocConf&>(child);
    merge_value(c.resolver_timeout_ms, p.resolver_timeout_ms, kDefaultResolverTimeoutMs);
    if (!c.resolver_set) c.resolver = p.resolver;
    c.resolver = with_timeout(c.resolver, *c.resolver_timeout_ms);
    return true;
}

// ---- worker ----

bool init_worker(Cycle& cycle) {
    auto* mc = static_cast<UpstreamMainConf*>(cycle.main_conf(http_upstream_module));
    if (!mc) return true;
    event_base* base = Worker::current().base();
    for (auto& u : mc->upstreams) {
        if (u->keepalive > 0)
            u->pool = std::make_unique<KeepalivePool>(base, size_t(u->keepalive), u->keepalive_timeout_ms,
                                                      u->keepalive_requests);
        if (u->has_resolve() && u->shared && !upstream_resolve_start(*u, base)) return false;
    }
    return true;
}

void exit_worker(Cycle& cycle) {
    auto* mc = static_cast<UpstreamMainConf*>(cycle.main_conf(http_upstream_module));
    if (!mc) return;
    for (auto& u : mc->upstreams) {
        u->pool.reset();
        upstream_resolve_stop(*u);
    }
    upstream_resolve_stop_all();
}

constexpr unsigned kUp = kUpstreamContext;

const Directive kDirectives[] = {
    {"upstream", kHttpContext, Block(1, 1), ConfLevel::Main, set_upstream_block},
    {"server", kUp, AnyArgs(1), ConfLevel::Main, set_server},
    {"least_conn", kUp, Args(0), ConfLevel::Main, set_least_conn},
    {"hash", kUp, Args(1, 2), ConfLevel::Main, set_hash},
    {"random", kUp, Args(0, 2), ConfLevel::Main, set_random},
    {"keepalive", kUp, Args(1), ConfLevel::Main, set_keepalive},
    {"keepalive_timeout", kUp, Args(1), ConfLevel::Main, set_keepalive_timeout},
    {"keepalive_requests", kUp, Args(1), ConfLevel::Main, set_keepalive_requests},
    {"zone", kUp, Args(1, 2), ConfLevel::Main, set_zone},
    {"resolver", kUp, AnyArgs(1), ConfLevel::Main, set_upstream_resolver},
    {"resolver", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_loc_resolver},
    {"resolver_timeout", kUp, Args(1), ConfLevel::Main, set_upstream_resolver_timeout},
    {"resolver_timeout", kHttpAnyContext, Args(1), ConfLevel::Location, set_msec<&UpstreamLocConf::resolver_timeout_ms>},
};

}  // namespace

// ---- addresses ----

namespace {

bool split_fail(std::string& err, const char* why) {
    err = why;
    return false;
}

}  // namespace

bool upstream_split_address(std::string_view text, uint16_t default_port, std::string& host, uint16_t& port,
                            bool& port_given, std::string& err) {
    port = default_port;
    port_given = false;
    if (text.substr(0, 5) == "unix:") {
        if (text.size() == 5) return split_fail(err, "invalid host");
        host = text;
        return true;
    }
    std::string_view h = text, p;
    if (!text.empty() && text[0] == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos || close == 1) return split_fail(err, "invalid IPv6 address");
        h = text.substr(1, close - 1);
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':') return split_fail(err, "invalid host");
            p = rest.substr(1);
            port_given = true;
        }
    } else if (size_t colon = text.rfind(':'); colon != std::string_view::npos) {
        // A bare IPv6 address needs brackets, as in nginx.
        if (text.find(':') != colon) return split_fail(err, "invalid host");
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
        port_given = true;
    }
    if (h.empty() || h.find_first_of("/?#@ ") != std::string_view::npos) return split_fail(err, "invalid host");
    if (port_given) {
        auto v = conf::parse_number(p);
        if (!v || *v < 1 || *v > 65535) return split_fail(err, "invalid port");
        port = uint16_t(*v);
    }
    host = h;
    return true;
}

bool upstream_resolve_now(const std::string& host, uint16_t port, std::vector<sockaddr_storage>& out,
                          std::vector<socklen_t>& lens) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    // AI_ADDRCONFIG would refuse "[::1]" on a host whose only IPv6 address is loopback.
    hints.ai_flags = AI_NUMERICSERV | (is_numeric_host(host) ? AI_NUMERICHOST : AI_ADDRCONFIG);
    std::string service = std::to_string(port);
    if (getaddrinfo(host.c_str(), service.c_str(), &hints, &res) != 0 || !res) return false;
    size_t before = out.size();
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        sockaddr_storage a{};
        memcpy(&a, ai->ai_addr, ai->ai_addrlen);
        bool dup = false;
        for (size_t i = before; i < out.size(); ++i)
            dup = dup || (lens[i] == ai->ai_addrlen && memcmp(&out[i], &a, ai->ai_addrlen) == 0);
        if (dup) continue;
        out.push_back(a);
        lens.push_back(socklen_t(ai->ai_addrlen));
    }
    freeaddrinfo(res);
    return out.size() > before;
}

std::string upstream_address_text(const sockaddr_storage& addr, socklen_t len) {
    char buf[INET6_ADDRSTRLEN];
    if (addr.ss_family == AF_INET) {
        auto& sin = reinterpret_cast<const sockaddr_in&>(addr);
        inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
        return std::string(buf) + ":" + std::to_string(ntohs(sin.sin_port));
    }
    if (addr.ss_family == AF_INET6) {
        auto& sin6 = reinterpret_cast<const sockaddr_in6&>(addr);
        inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof buf);
        return std::string("[") + buf + "]:" + std::to_string(ntohs(sin6.sin6_port));
    }
    if (addr.ss_family == AF_UNIX) {
        auto& sun = reinterpret_cast<const sockaddr_un&>(addr);
        size_t n = len > offsetof(sockaddr_un, sun_path) ? strnlen(sun.sun_path, len - offsetof(sockaddr_un, sun_path)) : 0;
        return "unix:" + std::string(sun.sun_path, n);
    }
    return "?";
}

uint64_t upstream_address_key(const sockaddr_storage& addr, socklen_t len) {
    // FNV-1a over the meaningful bytes: family, port and address.
    auto bytes = reinterpret_cast<const unsigned char*>(&addr);
    size_t n = len;
    if (addr.ss_family == AF_INET6) n = offsetof(sockaddr_in6, sin6_flowinfo);  // family + port
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](const unsigned char* p, size_t k) {
        for (size_t i = 0; i < k; ++i) h = (h ^ p[i]) * 1099511628211ull;
    };
    mix(bytes, n);
    if (addr.ss_family == AF_INET6) {
        auto& sin6 = reinterpret_cast<const sockaddr_in6&>(addr);
        mix(reinterpret_cast<const unsigned char*>(&sin6.sin6_addr), sizeof sin6.sin6_addr);
        mix(reinterpret_cast<const unsigned char*>(&sin6.sin6_scope_id), sizeof sin6.sin6_scope_id);
    }
    return h ? h : 1;
}

Peer upstream_make_peer(const UpstreamServerConf& s, size_t server_index, const sockaddr_storage& addr, socklen_t len) {
    Peer p;
    p.addr = addr;
    p.addr_len = len;
    p.addr_text = upstream_address_text(addr, len);
    p.server_name = s.host.empty() ? s.name : s.host;
    p.weight = s.weight;
    p.max_fails = s.max_fails;
    p.fail_timeout_ms = s.fail_timeout_ms;
    p.max_conns = s.max_conns;
    p.backup = s.backup;
    p.down = s.down;
    p.effective_weight = s.weight;
    p.server_index = server_index;
    return p;
}

// ---- lookups ----

bool Upstream::has_resolve() const {
    for (const UpstreamServerConf& s : servers)
        if (s.resolve) return true;
    return false;
}

namespace {
Upstream* find_in(UpstreamMainConf* mc, std::string_view name) {
    if (!mc) return nullptr;
    for (auto& u : mc->upstreams)
        if (!u->implicit && u->name == name) return u.get();
    return nullptr;
}
}  // namespace

Upstream* find_upstream(const Cycle& cycle, std::string_view name) {
    return find_in(static_cast<UpstreamMainConf*>(cycle.main_conf(http_upstream_module)), name);
}

Upstream* find_upstream(ConfContext& cx, std::string_view name) { return find_upstream(cx.cycle(), name); }

Upstream* implicit_upstream(ConfContext& cx, std::string_view host_port, uint16_t default_port, std::string& err) {
    auto* mc = static_cast<UpstreamMainConf*>(cx.cycle().main_conf(http_upstream_module));
    if (!mc) {
        err = "no http block";
        return nullptr;
    }
    std::string host;
    uint16_t port;
    bool port_given;
    if (!upstream_split_address(host_port, default_port, host, port, port_given, err)) return nullptr;
    for (auto& u : mc->upstreams) {
        if (!u->implicit && u->name == host) {
            if (!port_given) return u.get();
            err = "upstream \"" + host + "\" may not have port " + std::to_string(port);
            return nullptr;
        }
        if (u->implicit && iequals(u->implicit_host, host) && u->implicit_port == port) return u.get();
    }
    auto u = std::make_unique<Upstream>();
    u->name = std::string(host_port);
    u->implicit = true;
    u->implicit_host = host;
    u->implicit_port = port;
    u->implicit_port_given = port_given;
    u->file = cx.statement().file;
    u->line = cx.statement().line;
    UpstreamServerConf s;
    s.name = std::string(host_port);
    s.host = host;
    s.port = port;
    s.file = u->file;
    s.line = u->line;
    u->servers.push_back(std::move(s));
    if (!resolve_implicit(*u, err)) return nullptr;
    mc->upstreams.push_back(std::move(u));
    return mc->upstreams.back().get();
}

}  // namespace sluice::http

namespace sluice {

Module http_upstream_module = {
    .name = "http_upstream",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_main_conf = http::create_main_conf,
    .create_loc_conf = http::create_loc_conf,
    .merge_loc_conf = http::merge_loc_conf,
    .postconfiguration = http::finish_upstreams,
    .init_worker = http::init_worker,
    .exit_worker = http::exit_worker,
};

}  // namespace sluice
