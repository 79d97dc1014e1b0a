// The proxy_cache_* directives and their merge, and the cache zones'
// shared memory (laid out by the master when first mapped, kept as is
// across a reload when name and sizes are unchanged):
//
//   proxy_cache_path PATH keys_zone=NAME:SIZE [max_size=SIZE] [inactive=TIME]
//                    [max_object=SIZE] [levels=L] [use_temp_path=on|off];   (http)
//   proxy_cache NAME | off;
//   proxy_cache_key STRING;
//   proxy_cache_methods GET | HEAD | POST ...;
//   proxy_cache_valid [CODE ... | any] TIME;
//   proxy_cache_min_uses N;
//   proxy_cache_bypass STRING ...;  proxy_no_cache STRING ...;
//   proxy_cache_use_stale error | timeout | invalid_header | updating | http_NNN ... | off;
//   proxy_cache_background_update | _lock | _revalidate | _convert_head on | off;
//   proxy_cache_lock_timeout TIME;  proxy_cache_lock_age TIME;
//   proxy_ignore_headers FIELD ...;
//   proxy_cache_purge on | off | STRING ...;
#include <algorithm>

#include "core/conf_values.h"
#include "core/cycle.h"
#include "core/str.h"
#include "http/http_core.h"
#include "proxy.h"
#include "proxy_cache.h"

namespace sluice::http {

namespace {

namespace hc = http_cache;

constexpr uint64_t kDefaultMaxSize = uint64_t(256) << 20;
constexpr uint64_t kDefaultMaxObject = uint64_t(1) << 20;
constexpr uint64_t kDefaultInactiveMs = 10 * 60 * 1000;
constexpr uint64_t kMinKeysSize = 8192;
constexpr uint64_t kMaxZoneSize = uint64_t(64) << 30;
constexpr uint64_t kDefaultLockMs = 5000;
constexpr int64_t kDefaultValidStatuses[] = {200, 301, 302};

ProxyMainConf& main_conf(ConfContext& cx) {
    return *static_cast<ProxyMainConf*>(cx.http->main[size_t(proxy_module.ctx_index)]);
}

ProxyCacheConf& cache_conf(void* conf) { return static_cast<ProxyLocConf*>(conf)->cache; }

// The zone of that name, created on first mention: proxy_cache may name a
// zone that a later proxy_cache_path declares, as in nginx.
CacheZone& zone_named(ProxyMainConf& mc, std::string_view name) {
    for (auto& z : mc.cache_zones)
        if (z->name == name) return *z;
    mc.cache_zones.push_back(std::make_unique<CacheZone>());
    CacheZone& z = *mc.cache_zones.back();
    z.name = name;
    z.index = mc.cache_zones.size() - 1;
    return z;
}

bool param(std::string_view arg, std::string_view key, std::string_view& value) {
    if (arg.size() <= key.size() || arg.substr(0, key.size()) != key || arg[key.size()] != '=') return false;
    value = arg.substr(key.size() + 1);
    return true;
}

// The master lays the zone out once; a zone kept across a reload is used
// as it is (its entries survive).
bool init_zone(ShmZone& shm, void* old_data) {
    auto& z = *static_cast<CacheZone*>(shm.data);
    if (old_data && hc::formatted(shm.addr, z.store_size)) return true;
    if (!hc::format(shm.addr, z.store_size, z.geometry)) return false;
    // The lock table after the store is zero (fresh mapping).
    return true;
}

// ---- proxy_cache_path ----

bool parse_keys_zone(ConfContext& cx, std::string_view value, std::string& name, uint64_t& size) {
    size_t colon = value.rfind(':');
    if (colon == 0 || colon == std::string_view::npos)
        return cx.error("invalid keys zone size \"%s\"", std::string(value).c_str());
    name = value.substr(0, colon);
    auto s = conf::parse_size(value.substr(colon + 1));
    if (!s || *s > kMaxZoneSize) return cx.error("invalid keys zone size \"%s\"", std::string(value).c_str());
    if (*s < kMinKeysSize) return cx.error("keys zone \"%s\" is too small (at least 8k)", name.c_str());
    size = *s;
    return true;
}

bool parse_levels(std::string_view v) {
    // nginx's "1", "1:2", "1:2:2": accepted, unused (nothing is stored in files).
    size_t n = 0;
    while (!v.empty()) {
        if (v[0] != '1' && v[0] != '2') return false;
        v.remove_prefix(1);
        ++n;
        if (v.empty()) break;
        if (v[0] != ':') return false;
        v.remove_prefix(1);
        if (v.empty()) return false;
    }
    return n >= 1 && n <= 3;
}

}  // namespace

bool set_proxy_cache_path(ConfContext& cx, void*) {
    ProxyMainConf& mc = main_conf(cx);
    std::string name;
    uint64_t keys = 0, max_size = kDefaultMaxSize, max_object = kDefaultMaxObject, inactive = kDefaultInactiveMs;
    for (size_t i = 1; i < cx.arg_count(); ++i) {
        std::string_view a = cx.arg(i), v;
        if (param(a, "keys_zone", v)) {
            if (!parse_keys_zone(cx, v, name, keys)) return false;
        } else if (param(a, "max_size", v)) {
            auto s = conf::parse_size(v);
            if (!s || *s < 65536 || *s > kMaxZoneSize) return cx.error("invalid max_size value \"%s\"", cx.arg(i).c_str());
            max_size = *s;
        } else if (param(a, "max_object", v)) {
            auto s = conf::parse_size(v);
            if (!s || *s == 0) return cx.error("invalid max_object value \"%s\"", cx.arg(i).c_str());
            max_object = *s;
        } else if (param(a, "inactive", v)) {
            auto t = conf::parse_time_ms(v);
            if (!t || *t == 0) return cx.error("invalid inactive value \"%s\"", cx.arg(i).c_str());
            inactive = *t;
        } else if (param(a, "levels", v)) {
            if (!parse_levels(v)) return cx.error("invalid \"levels\" \"%s\"", cx.arg(i).c_str());
        } else if (param(a, "use_temp_path", v)) {
            if (!conf::parse_flag(v)) return cx.error("invalid use_temp_path value \"%s\"", cx.arg(i).c_str());
        } else {
            return cx.error("invalid parameter \"%s\"", cx.arg(i).c_str());
        }
    }
    if (name.empty()) return cx.error("\"proxy_cache_path\" must have \"keys_zone\" parameter");
    CacheZone& z = zone_named(mc, name);
    if (!z.path.empty()) return cx.error("duplicate zone \"%s\"", name.c_str());
    z.path = cx.full_path(cx.arg(0));
    z.keys_size = keys;
    z.max_size = max_size;
    z.max_object = max_object;
    z.inactive_ms = int64_t(inactive);
    z.file = cx.statement().file;
    z.line = cx.statement().line;
    z.geometry = hc::geometry_for(keys, max_size);
    z.store_size = hc::zone_size_for(z.geometry);
    std::string err;
    ShmZone* shm = cx.cycle().add_shm_zone(name, z.store_size + kCacheLockTableBytes, &proxy_module, err);
    if (!shm) return cx.error("%s", err.c_str());
    shm->data = &z;
    shm->init = init_zone;
    z.shm = shm;
    return true;
}

bool set_proxy_cache(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.zone) return cx.duplicate();
    if (cx.arg(0) == "off") {
        c.zone = nullptr;
        return true;
    }
    if (cx.arg(0).find('$') != std::string::npos)
        return cx.error("\"proxy_cache\" with variables is not supported: name a zone");
    CacheZone& z = zone_named(main_conf(cx), cx.arg(0));
    if (z.file.empty() && z.ref_file.empty()) {
        z.ref_file = cx.statement().file;
        z.ref_line = cx.statement().line;
    }
    c.zone = &z;
    return true;
}

bool set_proxy_cache_key(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.key) return cx.duplicate();
    auto key = std::make_shared<ComplexValue>();
    if (!key->compile(cx, cx.arg(0))) return false;
    c.key = std::move(key);
    return true;
}

bool set_proxy_cache_methods(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.methods) return cx.duplicate();
    uint32_t bits = cache::method_bit(Method::Get) | cache::method_bit(Method::Head);
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        const std::string& m = cx.arg(i);
        if (m == "GET") continue;
        if (m == "HEAD") continue;
        if (m == "POST") bits |= cache::method_bit(Method::Post);
        else return cx.error("invalid value \"%s\" in \"proxy_cache_methods\" (GET, HEAD or POST)", m.c_str());
    }
    c.methods = bits;
    return true;
}

bool set_proxy_cache_valid(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    size_t n = cx.arg_count();
    auto t = conf::parse_time_sec(cx.arg(n - 1));
    if (!t || *t > uint64_t(cache::kDeltaSecondsMax)) return cx.invalid_value(n - 1);
    auto add = [&](int status) {
        if (c.valid.size() >= cache::kMaxValidTimes) return cx.error("too many \"proxy_cache_valid\" statuses");
        c.valid.push_back({status, int64_t(*t)});
        return true;
    };
    c.valid_set = true;
    if (n == 1) {
        for (int64_t s : kDefaultValidStatuses)
            if (!add(int(s))) return false;
        return true;
    }
    for (size_t i = 0; i + 1 < n; ++i) {
        if (cx.arg(i) == "any") {
            if (!add(0)) return false;
            continue;
        }
        auto s = conf::parse_number(cx.arg(i));
        if (!s || *s < 200 || *s > 599) return cx.error("invalid status \"%s\"", cx.arg(i).c_str());
        if (!add(int(*s))) return false;
    }
    return true;
}

bool set_proxy_cache_min_uses(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.min_uses) return cx.duplicate();
    auto n = conf::parse_number(cx.arg(0));
    if (!n || *n < 1 || *n > 65535) return cx.invalid_value(0);
    c.min_uses = uint64_t(*n);
    return true;
}

bool set_proxy_cache_predicate(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    const bool purge = cx.name() == "proxy_cache_purge";
    auto& list = purge ? c.purge : cx.name() == "proxy_no_cache" ? c.no_cache : c.bypass;
    if (purge && list) return cx.duplicate();
    if (!list) list = std::make_shared<std::vector<ComplexValue>>();
    if (purge && cx.arg_count() == 1 && (cx.arg(0) == "on" || cx.arg(0) == "off")) {
        // "on": every PURGE purges (guard the location with allow/deny or
        // auth); "off": an empty list, which never purges.
        if (cx.arg(0) == "on") {
            ComplexValue v;
            if (!v.compile(cx, "1")) return false;
            list->push_back(std::move(v));
        }
        return true;
    }
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        ComplexValue v;
        if (!v.compile(cx, cx.arg(i))) return false;
        list->push_back(std::move(v));
    }
    return true;
}

namespace {

struct StaleName {
    std::string_view name;
    uint16_t bit;
};
constexpr StaleName kStaleNames[] = {
    {"error", cache::kStaleError},         {"timeout", cache::kStaleTimeout},
    {"invalid_header", cache::kStaleInvalidHeader}, {"updating", cache::kStaleUpdating},
    {"http_500", cache::kStaleHttp500},    {"http_502", cache::kStaleHttp502},
    {"http_503", cache::kStaleHttp503},    {"http_504", cache::kStaleHttp504},
    {"http_403", cache::kStaleHttp403},    {"http_404", cache::kStaleHttp404},
    {"http_429", cache::kStaleHttp429},
};

struct IgnoreName {
    std::string_view name;
    uint8_t bit;
};
// nginx's names; the X-Accel-* ones mean nothing here (sluice does not act on them) and are accepted.
constexpr IgnoreName kIgnoreNames[] = {
    {"cache-control", cache::kIgnoreCacheControl}, {"expires", cache::kIgnoreExpires},
    {"set-cookie", cache::kIgnoreSetCookie},       {"vary", cache::kIgnoreVary},
    {"x-accel-expires", 0},  {"x-accel-redirect", 0}, {"x-accel-limit-rate", 0},
    {"x-accel-buffering", 0}, {"x-accel-charset", 0},
};

}  // namespace

bool set_proxy_cache_use_stale(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.use_stale) return cx.duplicate();
    uint16_t bits = 0;
    bool off = false;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        if (cx.arg(i) == "off") {
            off = true;
            continue;
        }
        uint16_t bit = 0;
        for (const StaleName& s : kStaleNames)
            if (cx.arg(i) == s.name) bit = s.bit;
        if (!bit) return cx.invalid_value(i);
        bits |= bit;
    }
    if (off && cx.arg_count() > 1) return cx.error("\"off\" cannot be combined with other values in \"proxy_cache_use_stale\"");
    c.use_stale = bits;
    return true;
}

bool set_proxy_cache_flag(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    std::optional<bool>& field = cx.name() == "proxy_cache_background_update" ? c.background_update
                                 : cx.name() == "proxy_cache_lock"            ? c.lock
                                 : cx.name() == "proxy_cache_revalidate"      ? c.revalidate
                                                                              : c.convert_head;
    if (field) return cx.duplicate();
    auto v = conf::parse_flag(cx.arg(0));
    if (!v) return cx.error("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"", cx.arg(0).c_str(),
                            cx.name().c_str());
    field = *v;
    return true;
}

bool set_proxy_cache_msec(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    std::optional<uint64_t>& field = cx.name() == "proxy_cache_lock_timeout" ? c.lock_timeout_ms : c.lock_age_ms;
    if (field) return cx.duplicate();
    auto t = conf::parse_time_ms(cx.arg(0));
    if (!t) return cx.invalid_value(0);
    field = *t;
    return true;
}

bool set_proxy_ignore_headers(ConfContext& cx, void* conf) {
    ProxyCacheConf& c = cache_conf(conf);
    if (c.ignore_headers) return cx.duplicate();
    uint8_t bits = 0;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        std::string lower = to_lower(cx.arg(i));
        bool known = false;
        for (const IgnoreName& n : kIgnoreNames) {
            if (lower != n.name) continue;
            known = true;
            bits |= n.bit;
        }
        if (!known) return cx.invalid_value(i);
    }
    c.ignore_headers = bits;
    return true;
}

bool proxy_cache_merge(ConfContext& cx, const ProxyCacheConf& p, ProxyCacheConf& c) {
    merge_value(c.zone, p.zone, static_cast<CacheZone*>(nullptr));
    if (!c.key) {
        if (p.key) {
            c.key = p.key;
        } else {
            c.key = std::make_shared<ComplexValue>();
            if (!c.key->compile(cx, "$scheme$proxy_host$request_uri")) return false;
        }
    }
    merge_value(c.methods, p.methods, cache::method_bit(Method::Get) | cache::method_bit(Method::Head));
    if (!c.valid_set) {
        c.valid = p.valid;
        c.valid_set = p.valid_set;
    }
    merge_value(c.min_uses, p.min_uses, uint64_t(1));
    if (!c.bypass) c.bypass = p.bypass;
    if (!c.no_cache) c.no_cache = p.no_cache;
    if (!c.purge) c.purge = p.purge;
    merge_value(c.use_stale, p.use_stale, uint16_t(0));
    merge_value(c.background_update, p.background_update, false);
    merge_value(c.lock, p.lock, false);
    merge_value(c.revalidate, p.revalidate, false);
    merge_value(c.convert_head, p.convert_head, true);
    merge_value(c.lock_timeout_ms, p.lock_timeout_ms, kDefaultLockMs);
    merge_value(c.lock_age_ms, p.lock_age_ms, kDefaultLockMs);
    merge_value(c.ignore_headers, p.ignore_headers, uint8_t(0));

    cache::CachePolicyConfig& pol = c.policy;
    pol = cache::CachePolicyConfig{};
    pol.methods = *c.methods;
    for (const cache::ValidTime& v : c.valid) pol.add_valid(v.status, v.seconds);
    pol.ignore_headers = *c.ignore_headers;
    pol.use_stale = *c.use_stale;
    pol.revalidate = *c.revalidate;
    pol.background_update = *c.background_update;
    pol.convert_head = *c.convert_head;
    return true;
}

bool proxy_cache_check_zones(ConfContext& cx) {
    for (auto& z : main_conf(cx).cache_zones)
        if (z->path.empty())
            return cx.error_in(z->ref_file, z->ref_line, "\"proxy_cache\" zone \"%s\" is unknown", z->name.c_str());
    return true;
}

void proxy_cache_add_paths(ConfContext& cx, std::vector<std::string>& dirs) {
    for (auto& z : main_conf(cx).cache_zones)
        if (!z->path.empty() && std::find(dirs.begin(), dirs.end(), z->path) == dirs.end()) dirs.push_back(z->path);
}

}  // namespace sluice::http
