// The health_check module's configuration:
//   match NAME { status 200-399; header Content-Type ~ json; body !~ "maintenance"; }   (http)
//   health_check [interval=T] [jitter=T] [fails=N] [passes=N] [uri=PATH] [port=N]
//                [match=NAME] [mandatory] [persistent];                              (upstream)
// nginx Plus puts health_check in a location that proxies to the upstream;
// here it belongs to the upstream{} itself, which is where its results go.
#include "core/cycle.h"
#include "http/http_core.h"
#include "health_check.h"

namespace sluice::http::health_check {

namespace {

constexpr int64_t kMaxCount = 1000000;  // fails=, passes=

using ZoneInit = bool (*)(ShmZone&, void* old_data);

// The upstream core's zone init for upstreams without health_check; the
// same function for every upstream zone, so one copy serves them all.
ZoneInit unchecked_zone_init = nullptr;

HealthMainConf& main_conf_of(void* conf) { return *static_cast<HealthMainConf*>(conf); }

UpstreamMainConf* upstream_main_conf(ConfContext& cx) {
    if (!cx.http) return nullptr;
    return static_cast<UpstreamMainConf*>(cx.http->main[size_t(http_upstream_module.ctx_index)]);
}

// ---- match NAME { ... } ----

bool set_match_block(ConfContext& cx, void* conf) {
    HealthMainConf& mc = main_conf_of(conf);
    const std::string& name = cx.arg(0);
    if (name.empty()) return cx.invalid_value(0);
    for (const auto& m : mc.matches)
        if (m->name == name) return cx.error("duplicate match \"%s\"", name.c_str());
    auto m = std::make_unique<Match>();
    m->name = name;
    m->file = cx.statement().file;
    m->line = cx.statement().line;
    if (!parse_match_block(cx, cx.statement(), *m)) return false;
    mc.matches.push_back(std::move(m));
    return true;
}

// ---- health_check [parameters] ----

std::optional<int64_t> count_param(std::string_view value) {
    auto v = conf::parse_number(value);
    if (!v || *v < 1 || *v > kMaxCount) return std::nullopt;
    return v;
}

bool valid_uri(std::string_view uri) {
    if (uri.empty() || uri[0] != '/') return false;
    for (char c : uri)
        if (!chars::kTarget(c)) return false;
    return true;
}

// One key=value parameter; false when the key is unknown or the value bad.
bool parse_keyed_param(std::string_view key, std::string_view value, HealthCheck& hc) {
    if (key == "interval" || key == "jitter") {
        auto v = conf::parse_time_ms(value);
        if (!v || (key == "interval" && *v == 0)) return false;
        (key == "interval" ? hc.interval_ms : hc.jitter_ms) = *v;
    } else if (key == "fails" || key == "passes") {
        auto v = count_param(value);
        if (!v) return false;
        (key == "fails" ? hc.fails : hc.passes) = uint32_t(*v);
    } else if (key == "uri") {
        if (!valid_uri(value)) return false;
        hc.uri = value;
    } else if (key == "port") {
        auto v = conf::parse_number(value);
        if (!v || *v < 1 || *v > 65535) return false;
        hc.port = uint16_t(*v);
    } else if (key == "match") {
        if (value.empty()) return false;
        hc.match_name = value;
    } else {
        return false;
    }
    return true;
}

bool parse_param(ConfContext& cx, const std::string& arg, HealthCheck& hc) {
    if (arg == "mandatory") {
        hc.mandatory = true;
        return true;
    }
    // Results always survive a reload that keeps the upstream's zone.
    if (arg == "persistent") return true;
    size_t eq = arg.find('=');
    if (eq != std::string::npos &&
        parse_keyed_param(std::string_view(arg).substr(0, eq), std::string_view(arg).substr(eq + 1), hc))
        return true;
    return cx.error("invalid parameter \"%s\"", arg.c_str());
}

bool set_health_check(ConfContext& cx, void* conf) {
    UpstreamMainConf* um = upstream_main_conf(cx);
    Upstream* u = um ? um->parsing : nullptr;
    if (!u) return cx.error("\"health_check\" directive is not allowed here");
    if (u->health) return cx.duplicate();
    auto hc = std::make_unique<HealthCheck>();
    hc->upstream = u;
    hc->file = cx.statement().file;
    hc->line = cx.statement().line;
    for (size_t i = 0; i < cx.arg_count(); ++i)
        if (!parse_param(cx, cx.arg(i), *hc)) return false;
    u->health = hc.get();
    main_conf_of(conf).checks.push_back(std::move(hc));
    return true;
}

// ---- the end of http{}: matches by name, zone hooks ----

bool resolve_match(ConfContext& cx, const HealthMainConf& mc, HealthCheck& hc) {
    if (hc.match_name.empty()) return true;
    for (const auto& m : mc.matches)
        if (m->name == hc.match_name) {
            hc.match = m.get();
            return true;
        }
    return cx.error_in(hc.file, hc.line, "match \"%s\" not found", hc.match_name.c_str());
}

// The zone of a checked upstream: laid out by the upstream core, then the
// peers' initial health.
bool init_checked_zone(ShmZone& zone, void* old_data) {
    auto& u = *static_cast<Upstream*>(zone.data);
    const HealthCheck& hc = *health_of(u);
    if (hc.upstream_zone_init && !hc.upstream_zone_init(zone, old_data)) return false;
    apply_initial_state(hc, u);
    return true;
}

// A kept zone of an upstream whose health_check was removed must not keep
// its peers out of service.
bool init_unchecked_zone(ShmZone& zone, void* old_data) {
    if (unchecked_zone_init && !unchecked_zone_init(zone, old_data)) return false;
    if (old_data) clear_health_state(*static_cast<Upstream*>(zone.data));
    return true;
}

void hook_zone(Upstream& u) {
    if (!u.zone || u.zone->data != &u) return;
    if (HealthCheck* hc = health_of(u)) {
        hc->upstream_zone_init = u.zone->init;
        u.zone->init = init_checked_zone;
    } else if (!u.implicit) {
        unchecked_zone_init = u.zone->init;
        u.zone->init = init_unchecked_zone;
    }
}

// Runs after the upstream core's hook (module order), which declares the zones.
bool postconfiguration(ConfContext& cx, HttpPhases&) {
    auto* mc = static_cast<HealthMainConf*>(cx.http->main[size_t(health_check_module.ctx_index)]);
    for (auto& hc : mc->checks)
        if (!resolve_match(cx, *mc, *hc)) return false;
    if (UpstreamMainConf* um = upstream_main_conf(cx))
        for (auto& u : um->upstreams) hook_zone(*u);
    return true;
}

std::unique_ptr<ModuleConf> create_main_conf() { return std::make_unique<HealthMainConf>(); }

const Directive kDirectives[] = {
    {"match", kHttpContext, Block(1, 1), ConfLevel::Main, set_match_block},
    {"health_check", kUpstreamContext, AnyArgs(0), ConfLevel::Main, set_health_check},
};

}  // namespace

}  // namespace sluice::http::health_check

namespace sluice {

Module health_check_module = {
    .name = "health_check",
    .type = ModuleType::Http,
    .directives = http::health_check::kDirectives,
    .create_main_conf = http::health_check::create_main_conf,
    .postconfiguration = http::health_check::postconfiguration,
    .init_worker = http::health_check::init_worker,
    .exit_worker = http::health_check::exit_worker,
};

}  // namespace sluice
