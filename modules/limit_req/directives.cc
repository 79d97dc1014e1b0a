// The limit_req module's configuration, and the zones' shared memory (laid
// out when first mapped, kept with a new rate applied across a reload):
//
//   limit_req_zone KEY zone=NAME:SIZE rate=N(r/s|r/m|r/h|r/d)
//                  [algorithm=gcra|sliding_window];        (http)
//   limit_req zone=NAME [burst=N] [nodelay | delay=N];     (http, server, location)
//   limit_req_status CODE;
//   limit_req_log_level info|notice|warn|error;
//   limit_req_dry_run on|off;
//   limit_req_headers on|off;
#include <sys/random.h>

#include <cctype>
#include <cstring>

#include "core/conf.h"
#include "core/cycle.h"
#include "core/str.h"
#include "http/http_core.h"
#include "limit_req.h"

namespace sluice::limit_req {

namespace {

LimitMainConf& main_conf(ConfContext& cx) {
    return *static_cast<LimitMainConf*>(cx.http->main[size_t(limit_req_module.ctx_index)]);
}

// The zone of that name, created on first mention.
Zone& zone_named(LimitMainConf& mc, std::string_view name) {
    for (auto& z : mc.zones)
        if (z->name == name) return *z;
    mc.zones.push_back(std::make_unique<Zone>());
    mc.zones.back()->name = name;
    return *mc.zones.back();
}

// Splits "key=value"; false when `arg` does not start with `key=`.
bool param(std::string_view arg, std::string_view key, std::string_view& value) {
    if (arg.size() <= key.size() || arg.substr(0, key.size()) != key || arg[key.size()] != '=') return false;
    value = arg.substr(key.size() + 1);
    return true;
}

// ---- limit_req_zone ----

bool parse_zone_param(ConfContext& cx, std::string_view value, std::string& name, uint64_t& size) {
    size_t colon = value.rfind(':');
    if (colon == 0 || colon == std::string_view::npos)
        return cx.error("invalid zone size \"%s\"", std::string(value).c_str());
    name = value.substr(0, colon);
    auto s = conf::parse_size(value.substr(colon + 1));
    if (!s) return cx.error("invalid zone size \"%s\"", std::string(value).c_str());
    if (*s < kMinZoneSize) return cx.error("zone \"%s\" is too small", name.c_str());
    size = *s;
    return true;
}

bool parse_rate_param(ConfContext& cx, std::string_view value, Zone& z) {
    unsigned per = 0;
    auto rate = conf::parse_rate(value, per);
    if (!rate) return cx.error("invalid rate \"%s\"", std::string(value).c_str());
    z.rate = *rate;
    z.period_sec = per;
    z.period_ns = uint64_t(per) * kNsPerSec;
    return true;
}

bool parse_algorithm_param(ConfContext& cx, std::string_view value, Zone& z) {
    if (value == "gcra")
        z.algorithm = Algorithm::Gcra;
    else if (value == "sliding_window")
        z.algorithm = Algorithm::SlidingWindow;
    else
        return cx.error("invalid algorithm \"%s\"", std::string(value).c_str());
    return true;
}

bool declare_zone(ConfContext& cx, Zone& z, uint64_t size) {
    std::string err;
    ShmZone* shm = cx.cycle().add_shm_zone(z.name, size, &limit_req_module, err);
    if (!shm) return cx.error("%s", err.c_str());
    shm->data = &z;
    shm->init = init_zone;
    z.shm = shm;
    z.declared = true;
    return true;
}

bool set_limit_req_zone(ConfContext& cx, void*) {
    LimitMainConf& mc = main_conf(cx);
    Zone scratch;
    if (!scratch.key.compile(cx, cx.arg(0))) return false;
    std::string name;
    uint64_t size = 0;
    bool has_rate = false;
    for (size_t i = 1; i < cx.arg_count(); ++i) {
        std::string_view arg = cx.arg(i), value;
        if (param(arg, "zone", value)) {
            if (!parse_zone_param(cx, value, name, size)) return false;
        } else if (param(arg, "rate", value)) {
            if (!parse_rate_param(cx, value, scratch)) return false;
            has_rate = true;
        } else if (param(arg, "algorithm", value)) {
            if (!parse_algorithm_param(cx, value, scratch)) return false;
        } else {
            return cx.error("invalid parameter \"%s\"", std::string(arg).c_str());
        }
    }
    if (name.empty()) return cx.error("\"%s\" must have \"zone\" parameter", cx.name().c_str());
    if (!has_rate) return cx.error("\"%s\" must have \"rate\" parameter", cx.name().c_str());
    if (scratch.algorithm == Algorithm::SlidingWindow && scratch.rate > kMaxWindowCount)
        return cx.error("rate is too high for algorithm=sliding_window (at most %llu requests per window)",
                        static_cast<unsigned long long>(kMaxWindowCount));
    Zone& z = zone_named(mc, name);
    if (z.declared) return cx.error("limit_req_zone \"%s\" is duplicate", name.c_str());
    z.key = std::move(scratch.key);
    z.algorithm = scratch.algorithm;
    z.rate = scratch.rate;
    z.period_sec = scratch.period_sec;
    z.period_ns = scratch.period_ns;
    return declare_zone(cx, z, size);
}

// ---- limit_req ----

LimitLevel& level_of(ConfContext& cx, LimitLocConf& lc) {
    if (!lc.level) {
        LimitMainConf& mc = main_conf(cx);
        mc.levels.push_back(std::make_unique<LimitLevel>());
        lc.level = mc.levels.back().get();
    }
    return *lc.level;
}

std::optional<uint64_t> count_value(std::string_view v) {
    auto n = conf::parse_number(v);
    if (!n || uint64_t(*n) > kMaxWindowCount * 1024) return std::nullopt;
    return uint64_t(*n);
}

bool parse_limit_param(ConfContext& cx, std::string_view arg, Limit& limit, std::string& zone) {
    std::string_view value;
    if (param(arg, "zone", value) && !value.empty()) {
        zone = value;
    } else if (param(arg, "burst", value)) {
        auto n = count_value(value);
        if (!n) return cx.error("invalid burst value \"%s\"", std::string(arg).c_str());
        limit.burst = *n;
    } else if (param(arg, "delay", value)) {
        auto n = count_value(value);
        if (!n) return cx.error("invalid delay value \"%s\"", std::string(arg).c_str());
        limit.delay = *n;
    } else if (arg == "nodelay") {
        limit.nodelay = true;
    } else {
        return cx.error("invalid parameter \"%s\"", std::string(arg).c_str());
    }
    return true;
}

bool set_limit_req(ConfContext& cx, void* conf) {
    auto& lc = *static_cast<LimitLocConf*>(conf);
    Limit limit;
    std::string zone;
    for (size_t i = 0; i < cx.arg_count(); ++i)
        if (!parse_limit_param(cx, cx.arg(i), limit, zone)) return false;
    if (zone.empty()) return cx.error("\"%s\" must have \"zone\" parameter", cx.name().c_str());
    if (limit.nodelay && limit.delay) return cx.error("\"nodelay\" and \"delay\" are mutually exclusive");
    LimitLevel& level = level_of(cx, lc);
    if (level.limits.size() >= kMaxLimits)
        return cx.error("too many \"limit_req\" directives (at most %zu)", kMaxLimits);
    Zone& z = zone_named(main_conf(cx), zone);
    for (const Limit& l : level.limits)
        if (l.zone == &z) return cx.error("limit_req \"%s\" is duplicate", zone.c_str());
    if (z.first_use_file.empty()) {
        z.first_use_file = cx.statement().file;
        z.first_use_line = cx.statement().line;
    }
    limit.zone = &z;
    level.limits.push_back(limit);
    return true;
}

bool set_status(ConfContext& cx, void* conf) {
    auto& lc = *static_cast<LimitLocConf*>(conf);
    if (lc.status) return cx.duplicate();
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v < 400 || *v > 599) return cx.error("value must be between 400 and 599");
    lc.status = *v;
    return true;
}

// Notes whether any level turns the headers on: without it, responses
// skip the module's header filter.
bool set_headers(ConfContext& cx, void* conf) {
    if (!set_flag<&LimitLocConf::headers>(cx, conf)) return false;
    if (*static_cast<LimitLocConf*>(conf)->headers) main_conf(cx).headers_used = true;
    return true;
}

const EnumEntry kLogLevels[] = {
    {"info", int(LogLevel::Info)},
    {"notice", int(LogLevel::Notice)},
    {"warn", int(LogLevel::Warn)},
    {"error", int(LogLevel::Error)},
    {{}, 0},
};

const Directive kDirectives[] = {
    {"limit_req_zone", kHttpContext, Args(3, 4), ConfLevel::Main, set_limit_req_zone},
    {"limit_req", kHttpAnyContext, Args(1, 3), ConfLevel::Location, set_limit_req},
    {"limit_req_status", kHttpAnyContext, Args(1), ConfLevel::Location, set_status},
    {"limit_req_log_level", kHttpAnyContext, Args(1), ConfLevel::Location,
     set_enum<&LimitLocConf::log_level, kLogLevels>, kLogLevels},
    {"limit_req_dry_run", kHttpAnyContext, Args(1), ConfLevel::Location, set_flag<&LimitLocConf::dry_run>},
    {"limit_req_headers", kHttpAnyContext, Args(1), ConfLevel::Location, set_headers},
};

std::unique_ptr<ModuleConf> create_main_conf() {
    return std::make_unique<LimitMainConf>();
}
std::unique_ptr<ModuleConf> create_loc_conf() {
    return std::make_unique<LimitLocConf>();
}

// The limits are nginx's: a level with limit_req directives of its own
// replaces its parent's, one without inherits them.
bool merge_loc_conf(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const LimitLocConf&>(parent);
    auto& c = static_cast<LimitLocConf&>(child);
    if (!c.level) c.level = p.level;
    merge_value(c.status, p.status, 503);
    merge_value(c.log_level, p.log_level, LogLevel::Error);
    merge_value(c.dry_run, p.dry_run, false);
    merge_value(c.headers, p.headers, false);
    return true;
}

// ---- the end of http{} ----

// Variables the key uses, so that a key that was empty before the Access
// phase can be evaluated again after it (see postaccess_handler).
void collect_key_variables(ConfContext& cx, Zone& z) {
    auto& vars = http::current_main_conf(cx).variables;
    const std::string& src = z.key.source();
    for (size_t i = 0; i < src.size(); ++i) {
        if (src[i] != '$') continue;
        bool braced = i + 1 < src.size() && src[i + 1] == '{';
        size_t start = i + 1 + braced, end = start;
        while (end < src.size() && (isalnum(static_cast<unsigned char>(src[end])) || src[end] == '_')) ++end;
        if (end == start) continue;
        int idx = vars.lookup(std::string_view(src).substr(start, end - start));
        if (idx >= 0 && !(vars.def(idx).flags & http::kVarIndexed)) z.key_variables.push_back(idx);
        i = end - 1;
    }
}

std::string policy_item(const Zone& z) {
    std::string s = "\"" + z.name + "\";q=";
    append_uint(s, z.rate);
    s += ";w=";
    append_uint(s, z.period_sec);
    return s;
}

void resolve_limit(Limit& l) {
    const Zone& z = *l.zone;
    // nodelay lets the whole burst through at once; sliding windows never delay.
    uint64_t free_burst = l.nodelay || z.algorithm == Algorithm::SlidingWindow ? UINT64_MAX : l.delay.value_or(0);
    l.params = make_params(z.algorithm, z.rate, z.period_ns, l.burst, free_burst);
}

bool postconfiguration(ConfContext& cx, http::HttpPhases& phases) {
    LimitMainConf& mc = main_conf(cx);
    for (auto& z : mc.zones) {
        if (!z->declared)
            return cx.error_in(z->first_use_file, z->first_use_line, "unknown limit_req_zone \"%s\"", z->name.c_str());
        collect_key_variables(cx, *z);
        z->policy_item = policy_item(*z);
    }
    for (auto& level : mc.levels)
        for (Limit& l : level->limits) resolve_limit(l);
    if (!add_variables(http::current_main_conf(cx).variables))
        return cx.error("the duplicate \"limit_req_status\" variable");
    phases.add(http::Phase::Preaccess, preaccess_handler);
    phases.add(http::Phase::Precontent, postaccess_handler);
    if (mc.headers_used) phases.add_header_filter(add_headers);
    return true;
}

// ---- the shared memory ----

// What the words of a zone mean: a change of key or algorithm (or of a
// sliding window's period) makes the old entries unreachable.
uint64_t key_id(const Zone& z) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](std::string_view s) {
        for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    };
    mix(z.key.source());
    std::string tail = "|" + std::to_string(int(z.algorithm));
    if (z.algorithm == Algorithm::SlidingWindow) tail += "|" + std::to_string(z.period_ns);
    mix(tail);
    return h;
}

bool new_secret(uint64_t secret[2]) {
    return getrandom(secret, 2 * sizeof(uint64_t), 0) == ssize_t(2 * sizeof(uint64_t));
}

// The rate changed across a reload: every key keeps its debt in requests.
void rescale_table(Table& t, uint64_t old_interval, uint64_t new_interval) {
    uint64_t now = monotonic_ns();
    for (size_t i = 0; i < t.capacity(); ++i) {
        auto word = atomic(t.slot(i).state);
        uint64_t s = word.load(std::memory_order_acquire);
        while (!word.compare_exchange_weak(s, rescale_gcra(s, now, old_interval, new_interval))) {
        }
    }
}

bool keep_table(Zone& z, uint64_t id, uint64_t interval) {
    ZoneHeader& h = z.table.header();
    if (h.key_id != id) {
        uint64_t secret[2];
        if (!new_secret(secret)) return false;
        h.secret[0] = secret[0];
        h.secret[1] = secret[1];
        h.key_id = id;
        SLUICE_LOG(LogLevel::Notice, "limit_req zone \"%s\": the key or algorithm changed, old entries are dropped",
                   z.name.c_str());
    } else if (z.algorithm == Algorithm::Gcra && h.interval_ns != interval) {
        rescale_table(z.table, h.interval_ns, interval);
    }
    h.interval_ns = interval;
    return true;
}

}  // namespace

bool init_zone(ShmZone& shm, void* old_data) {
    Zone& z = *static_cast<Zone*>(shm.data);
    z.table = Table(shm.addr, shm.size);
    uint64_t id = key_id(z);
    uint64_t interval = make_params(z.algorithm, z.rate, z.period_ns, 0, 0).interval_ns;
    if (old_data && z.table.formatted()) {
        if (!keep_table(z, id, interval)) return false;
    } else {
        uint64_t secret[2];
        if (!new_secret(secret)) return false;
        z.table.format(id, interval, secret);
    }
    // Each generation of workers hashes with the secret of its own
    // configuration, so old workers finishing after a reload stay consistent.
    z.secret[0] = z.table.header().secret[0];
    z.secret[1] = z.table.header().secret[1];
    return true;
}

}  // namespace sluice::limit_req

namespace sluice {

Module limit_req_module = {
    .name = "limit_req",
    .type = ModuleType::Http,
    .directives = limit_req::kDirectives,
    .create_main_conf = limit_req::create_main_conf,
    .create_loc_conf = limit_req::create_loc_conf,
    .merge_loc_conf = limit_req::merge_loc_conf,
    .postconfiguration = limit_req::postconfiguration,
};

}  // namespace sluice
