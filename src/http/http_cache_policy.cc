// HTTP caching semantics (RFC 9111, RFC 5861, RFC 9110 conditionals): see
// http_cache_policy.h for what each function decides and why.
#include "http/http_cache_policy.h"

#include <algorithm>
#include <climits>

#include "core/http_date.h"
#include "core/str.h"

namespace sluice::http::cache {

namespace {

// ---- small helpers ------------------------------------------------------------

bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view v) {
    while (!v.empty() && is_ows(v.front())) v.remove_prefix(1);
    while (!v.empty() && is_ows(v.back())) v.remove_suffix(1);
    return v;
}

int64_t clamp_delta(int64_t v) {
    return v < 0 ? 0 : v > kDeltaSecondsMax ? kDeltaSecondsMax : v;
}

// Saturating a + b for non-negative operands: §1.2.2 caps overflow at 2^31.
int64_t add_capped(int64_t a, int64_t b) {
    return clamp_delta(clamp_delta(a) + clamp_delta(b));
}

// delta-seconds = 1*DIGIT (§1.2.2); -1 when invalid, kDeltaSecondsMax when huge.
int64_t parse_delta_seconds(std::string_view s) {
    if (s.empty()) return -1;
    int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return -1;
        if (v < kDeltaSecondsMax) v = v * 10 + (c - '0');
    }
    return std::min(v, kDeltaSecondsMax);
}

// The first field line of that name, or nullptr.
const Header* find_field(std::span<const Header> headers, std::string_view lowercase) {
    for (const Header& h : headers)
        if (field_name_is(h.name, lowercase)) return &h;
    return nullptr;
}

size_t count_fields(std::span<const Header> headers, std::string_view lowercase) {
    size_t n = 0;
    for (const Header& h : headers) n += field_name_is(h.name, lowercase);
    return n;
}

// Splits a comma-separated list (RFC 9110 §5.6.1) without breaking quoted
// strings; yields members trimmed of OWS, empty ones included.
class ListCursor {
public:
    explicit ListCursor(std::string_view v) : v_(v) {}
    bool next(std::string_view& member) {
        if (done_) return false;
        size_t i = pos_;
        bool quoted = false;
        for (; i < v_.size(); ++i) {
            char c = v_[i];
            if (quoted && c == '\\')
                ++i;
            else if (c == '"')
                quoted = !quoted;
            else if (c == ',' && !quoted)
                break;
        }
        i = std::min(i, v_.size());
        member = trim_ows(v_.substr(pos_, i - pos_));
        if (i >= v_.size()) done_ = true;
        pos_ = i + 1;
        return true;
    }

private:
    std::string_view v_;
    size_t pos_ = 0;
    bool done_ = false;
};

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!chars::kToken(c)) return false;
    return true;
}

// ---- Cache-Control directives -------------------------------------------------

struct Directive {
    std::string_view name;
    std::string_view argument;  // quotes removed, escapes kept
    bool has_argument = false;
    bool well_formed = true;  // token [ "=" ( token / quoted-string ) ] and nothing else
};

Directive split_directive(std::string_view member) {
    Directive d;
    size_t eq = member.find('=');
    d.name = trim_ows(member.substr(0, eq));
    if (!is_token(d.name)) d.well_formed = false;
    if (eq == std::string_view::npos) return d;
    d.has_argument = true;
    std::string_view arg = trim_ows(member.substr(eq + 1));
    if (arg.size() >= 2 && arg.front() == '"' && arg.back() == '"') {
        d.argument = arg.substr(1, arg.size() - 2);
    } else {
        d.argument = arg;
        if (!is_token(arg)) d.well_formed = false;
    }
    return d;
}

// A delta-seconds argument, or -1 when absent or malformed.
int64_t directive_seconds(const Directive& d) {
    return d.has_argument && d.well_formed ? parse_delta_seconds(d.argument) : -1;
}

// max-age / s-maxage: invalid is stale (0); a different repeat is stale (§4.2.1).
void merge_freshness_directive(int64_t& slot, const Directive& d) {
    int64_t v = directive_seconds(d);
    if (v < 0) v = 0;
    slot = (slot == kAbsent || slot == v) ? v : 0;
}

// Optional-argument directives: invalid ones ignored, repeats most restrictive.
void merge_min(int64_t& slot, int64_t v) {
    if (v >= 0) slot = slot == kAbsent ? v : std::min(slot, v);
}
void merge_max(int64_t& slot, int64_t v) {
    if (v >= 0) slot = slot == kAbsent ? v : std::max(slot, v);
}

void apply_directive(CacheControl& cc, const Directive& d) {
    std::string_view n = d.name;
    if (iequals(n, "max-age"))
        merge_freshness_directive(cc.max_age, d);
    else if (iequals(n, "s-maxage"))
        merge_freshness_directive(cc.s_maxage, d);
    else if (iequals(n, "no-cache")) {
        cc.no_cache = true;
        if (d.has_argument && cc.no_cache_fields.empty()) cc.no_cache_fields = d.argument;
    } else if (iequals(n, "private")) {
        cc.private_ = true;
        if (d.has_argument && cc.private_fields.empty()) cc.private_fields = d.argument;
    } else if (iequals(n, "no-store"))
        cc.no_store = true;
    else if (iequals(n, "must-revalidate"))
        cc.must_revalidate = true;
    else if (iequals(n, "proxy-revalidate"))
        cc.proxy_revalidate = true;
    else if (iequals(n, "must-understand"))
        cc.must_understand = true;
    else if (iequals(n, "no-transform"))
        cc.no_transform = true;
    else if (iequals(n, "only-if-cached"))
        cc.only_if_cached = true;
    else if (iequals(n, "public"))
        cc.public_ = cc.public_ || (!d.has_argument && d.well_formed);
    else if (iequals(n, "immutable"))
        cc.immutable = cc.immutable || (!d.has_argument && d.well_formed);
    else if (iequals(n, "max-stale"))
        merge_min(cc.max_stale, d.has_argument ? directive_seconds(d) : kDeltaSecondsMax);
    else if (iequals(n, "min-fresh"))
        merge_max(cc.min_fresh, directive_seconds(d));
    else if (iequals(n, "stale-while-revalidate"))
        merge_min(cc.stale_while_revalidate, directive_seconds(d));
    else if (iequals(n, "stale-if-error"))
        merge_min(cc.stale_if_error, directive_seconds(d));
    // anything else is an extension this cache does not implement (§5.2.3)
}

bool pragma_no_cache(std::span<const Header> headers) {
    for (const Header& h : headers) {
        if (!field_name_is(h.name, "pragma")) continue;
        ListCursor list(h.value);
        std::string_view member;
        while (list.next(member))
            if (iequals(member, "no-cache")) return true;
    }
    return false;
}

// ---- small tables ---------------------------------------------------------------

bool is_hop_by_hop(std::string_view name) {
    static constexpr std::string_view kHop[] = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
    };
    for (std::string_view h : kHop)
        if (field_name_is(name, h)) return true;
    return false;
}

bool listed_in_connection(std::string_view name, std::span<const Header> headers) {
    for (const Header& h : headers) {
        if (!field_name_is(h.name, "connection")) continue;
        ListCursor list(h.value);
        std::string_view member;
        while (list.next(member))
            if (iequals(member, name)) return true;
    }
    return false;
}

bool etag_is_weak(std::string_view tag) {
    return tag.starts_with("W/");
}
std::string_view etag_opaque(std::string_view tag) {
    return etag_is_weak(tag) ? tag.substr(2) : tag;
}

// ---- Vary keys ------------------------------------------------------------------

struct KeyWriter {
    std::span<char> out;
    size_t len = 0;
    bool ok = true;
    void put(std::string_view s) {
        if (!ok || s.size() > out.size() - len) {
            ok = false;
            return;
        }
        std::copy(s.begin(), s.end(), out.begin() + ptrdiff_t(len));
        len += s.size();
    }
    void put_lower(std::string_view s) {
        if (!ok || s.size() > out.size() - len) {
            ok = false;
            return;
        }
        for (char c : s) out[len++] = ascii_lower(c);
    }
};

struct KeyComparer {
    std::string_view expected;
    size_t len = 0;
    bool ok = true;
    void put(std::string_view s) {
        if (!ok || expected.substr(len, s.size()) != s) {
            ok = false;
            return;
        }
        len += s.size();
    }
    void put_lower(std::string_view s) {
        for (char c : s) {
            char lower = ascii_lower(c);
            put(std::string_view(&lower, 1));
        }
    }
};

template <class Sink>
void put_field_value(Sink& sink, std::string_view name, std::span<const Header> request_headers) {
    bool first_member = true;
    for (const Header& h : request_headers) {
        if (!iequals(h.name, name)) continue;
        ListCursor list(h.value);
        std::string_view member;
        while (list.next(member)) {
            if (member.empty()) continue;
            if (!first_member) sink.put(", ");
            sink.put(member);
            first_member = false;
        }
    }
}

template <class Sink>
void build_vary_key(Sink& sink, const VaryFields& vary, std::span<const Header> request_headers) {
    for (size_t i = 0; i < vary.count; ++i) {
        std::string_view name = vary.names[i];
        sink.put_lower(name);
        bool present = false;
        for (const Header& h : request_headers) present = present || iequals(h.name, name);
        if (present) {
            sink.put(":");
            put_field_value(sink, name, request_headers);
        }
        sink.put("\n");
    }
}

// ---- URIs -------------------------------------------------------------------------

uint16_t default_port(std::string_view scheme) {
    return iequals(scheme, "https") ? 443 : iequals(scheme, "http") ? 80 : 0;
}

bool valid_scheme(std::string_view s) {
    if (s.empty() || !chars::is_alnum(s[0]) || (s[0] >= '0' && s[0] <= '9')) return false;
    for (char c : s)
        if (!chars::is_alnum(c) && c != '+' && c != '-' && c != '.') return false;
    return true;
}

// Splits "host[:port]" ("[v6]:port" too); false when malformed or with userinfo.
bool split_authority(std::string_view authority, std::string_view& host, int& port) {
    if (authority.empty() || authority.find('@') != std::string_view::npos) return false;
    size_t colon;
    if (authority.front() == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) return false;
        host = authority.substr(0, close + 1);
        colon = close + 1 < authority.size() ? close + 1 : std::string_view::npos;
        if (colon != std::string_view::npos && authority[colon] != ':') return false;
    } else {
        colon = authority.rfind(':');
        host = authority.substr(0, colon);
    }
    port = -1;
    if (colon == std::string_view::npos || colon + 1 == authority.size()) return !host.empty();
    int64_t p = parse_delta_seconds(authority.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    port = int(p);
    return !host.empty();
}

// The path-and-query of a same-origin reference, or an empty view.
std::string_view same_origin_path(std::string_view uri, const Origin& origin) {
    uri = uri.substr(0, uri.find('#'));
    std::string_view scheme = origin.scheme;
    std::string_view rest;
    if (uri.starts_with("//")) {
        rest = uri.substr(2);
    } else if (uri.starts_with("/")) {
        return uri;
    } else {
        size_t colon = uri.find(':');
        if (colon == std::string_view::npos || !valid_scheme(uri.substr(0, colon))) return {};  // relative-path
        scheme = uri.substr(0, colon);
        if (uri.substr(colon + 1, 2) != "//") return {};
        rest = uri.substr(colon + 3);
    }
    size_t path_at = rest.find_first_of("/?");
    std::string_view host;
    int port;
    if (!split_authority(rest.substr(0, path_at), host, port)) return {};
    if (path_at == std::string_view::npos || rest[path_at] != '/') return {};  // no path: "/" would need a copy
    uint16_t origin_port = origin.port ? origin.port : default_port(origin.scheme);
    uint16_t uri_port = port >= 0 ? uint16_t(port) : default_port(scheme);
    if (!iequals(scheme, origin.scheme) || !iequals(host, origin.host) || uri_port != origin_port) return {};
    return rest.substr(path_at);
}

void add_target(InvalidationTargets& t, std::string_view uri) {
    if (uri.empty() || t.count == t.uris.size()) return;
    for (size_t i = 0; i < t.count; ++i)
        if (t.uris[i] == uri) return;
    t.uris[t.count++] = uri;
}

}  // namespace

// ---- configuration ------------------------------------------------------------------

bool CachePolicyConfig::add_valid(int status, int64_t seconds) {
    if (valid_count == valid.size()) return false;
    valid[valid_count++] = {status, seconds};
    return true;
}

// ---- parsing ----------------------------------------------------------------------

CacheControl parse_cache_control(std::span<const Header> headers) {
    CacheControl cc;
    for (const Header& h : headers) {
        if (!field_name_is(h.name, "cache-control")) continue;
        cc.present = true;
        ListCursor list(h.value);
        std::string_view member;
        while (list.next(member))
            if (!member.empty()) apply_directive(cc, split_directive(member));
    }
    return cc;
}

int64_t parse_age(std::span<const Header> headers) {
    const Header* age = find_field(headers, "age");
    int64_t v = age ? parse_delta_seconds(age->value) : -1;
    return v < 0 ? 0 : v;
}

int64_t parse_expires(std::span<const Header> headers) {
    int64_t first = -1;
    bool seen = false;
    for (const Header& h : headers) {
        if (!field_name_is(h.name, "expires")) continue;
        int64_t t = parse_http_date(h.value);
        if (t < 0) t = 0;                  // §5.3: invalid, "0" included, is already expired
        if (seen && t != first) return 0;  // §4.2.1: conflicting repeats are stale
        first = t, seen = true;
    }
    return first;
}

RequestCacheInfo parse_request_cache_info(Method method, std::span<const Header> headers,
                                          const CachePolicyConfig& cfg) {
    RequestCacheInfo req;
    req.method = method;
    req.headers = headers;
    if (!cfg.ignore_request_cache_control) {
        req.cc = parse_cache_control(headers);
        if (!req.cc.present && pragma_no_cache(headers)) req.cc.no_cache = true;  // §5.4
    }
    req.has_authorization = find_field(headers, "authorization") != nullptr;
    req.has_if_none_match = find_field(headers, "if-none-match") != nullptr;
    req.has_range = find_field(headers, "range") != nullptr;
    // RFC 9110 §13.1.3: ignored when invalid or with more than one member.
    if (count_fields(headers, "if-modified-since") == 1)
        req.if_modified_since = parse_http_date(find_field(headers, "if-modified-since")->value);
    return req;
}

ResponseCacheInfo parse_response_cache_info(int status, std::span<const Header> headers, const CachePolicyConfig& cfg) {
    ResponseCacheInfo resp;
    resp.status = status;
    if (!(cfg.ignore_headers & kIgnoreCacheControl)) resp.cc = parse_cache_control(headers);
    if (const Header* date = find_field(headers, "date")) resp.date = parse_http_date(date->value);
    if (!(cfg.ignore_headers & kIgnoreExpires)) {
        resp.expires = parse_expires(headers);
        resp.has_expires = resp.expires >= 0;
    }
    if (const Header* lm = find_field(headers, "last-modified")) {
        resp.last_modified = parse_http_date(lm->value);
        if (resp.last_modified >= 0) resp.last_modified_value = lm->value;
    }
    resp.age = parse_age(headers);
    if (const Header* etag = find_field(headers, "etag"); etag && etag_valid(etag->value)) resp.etag = etag->value;
    if (!(cfg.ignore_headers & kIgnoreSetCookie)) resp.has_set_cookie = find_field(headers, "set-cookie") != nullptr;
    if (!(cfg.ignore_headers & kIgnoreVary)) {
        resp.has_vary = find_field(headers, "vary") != nullptr;
        resp.vary_star = resp.has_vary && parse_vary(headers).star;
    }
    return resp;
}

// ---- storing ------------------------------------------------------------------------

bool method_is_cacheable(Method method, const CachePolicyConfig& cfg) {
    if (method == Method::Get || method == Method::Head) return true;
    return method != Method::Unknown && (cfg.methods & method_bit(method)) != 0;
}

Method cache_fill_method(Method request_method, const CachePolicyConfig& cfg) {
    return request_method == Method::Head && cfg.convert_head ? Method::Get : request_method;
}

bool method_is_unsafe(Method method) {
    return !(method == Method::Get || method == Method::Head || method == Method::Options || method == Method::Trace);
}

bool status_understood(int status) {
    return (status >= 200 && status <= 206) || (status >= 300 && status <= 305) || status == 307 || status == 308 ||
           (status >= 400 && status <= 417) || status == 421 || status == 422 || status == 426 || status == 429 ||
           (status >= 500 && status <= 505);
}

bool status_heuristically_cacheable(int status) {
    switch (status) {
        case 200:
        case 203:
        case 204:
        case 206:
        case 300:
        case 301:
        case 308:
        case 404:
        case 405:
        case 410:
        case 414:
        case 501:
            return true;
        default:
            return false;
    }
}

bool header_storable(std::string_view name, std::span<const Header> headers) {
    return !is_hop_by_hop(name) && !field_name_is(name, "age") && !listed_in_connection(name, headers);
}

bool authorization_allows_sharing(const CacheControl& cc) {
    return cc.public_ || cc.s_maxage != kAbsent || cc.must_revalidate;
}

namespace {

bool has_explicit_freshness(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg) {
    return resp.has_expires || resp.cc.max_age != kAbsent || (cfg.shared && resp.cc.s_maxage != kAbsent) ||
           resp.cc.public_ || (!cfg.shared && resp.cc.private_);
}

// Whether a stored copy could ever be served: fresh for a while, or
// revalidatable, or allowed to go stale.
bool ever_reusable(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg, int64_t lifetime) {
    // Without proxy_cache_revalidate an expired entry is refetched whole, so a
    // validator alone does not make it reusable.
    if (cfg.revalidate && (!resp.etag.empty() || resp.last_modified >= 0)) return true;
    if (resp.cc.no_cache) return false;
    if (lifetime > 0) return true;
    bool stale_forbidden =
        resp.cc.must_revalidate || resp.cc.proxy_revalidate || (cfg.shared && resp.cc.s_maxage != kAbsent);
    // Only the response's own stale-* make a copy that is stale from the
    // start worth keeping. proxy_cache_use_stale does not (nginx stores
    // nothing without a lifetime): it would let any response without
    // caching headers, a 404 say, replace a good entry and then be served
    // as STALE whenever the upstream fails.
    bool stale_allowed = resp.cc.stale_while_revalidate > 0 || resp.cc.stale_if_error > 0;
    return !stale_forbidden && stale_allowed;
}

}  // namespace

StoreVerdict storability(const RequestCacheInfo& req, const ResponseCacheInfo& resp, const CachePolicyConfig& cfg,
                         int64_t response_time) {
    if (!method_is_cacheable(req.method, cfg)) return StoreVerdict::MethodNotCacheable;
    if (req.method == Method::Head) return StoreVerdict::HeadResponse;
    if (resp.status < 200) return StoreVerdict::StatusNotFinal;
    if (resp.status == 206) return StoreVerdict::PartialContent;
    if (resp.status == 304) return StoreVerdict::NotModified;
    // §5.2.2.3: must-understand stands in for no-store when the status is understood.
    bool understood_override = resp.cc.must_understand && status_understood(resp.status);
    if (resp.cc.must_understand && !understood_override) return StoreVerdict::StatusNotUnderstood;
    if (req.cc.no_store || (resp.cc.no_store && !understood_override)) return StoreVerdict::NoStore;
    if (resp.cc.private_ && cfg.shared) return StoreVerdict::Private;
    if (req.has_authorization && cfg.shared && !authorization_allows_sharing(resp.cc))
        return StoreVerdict::Authorization;
    if (resp.has_set_cookie) return StoreVerdict::SetCookie;
    if (resp.vary_star) return StoreVerdict::VaryStar;
    if (!has_explicit_freshness(resp, cfg) && !status_heuristically_cacheable(resp.status) &&
        configured_valid_time(resp.status, cfg) < 0)
        return StoreVerdict::NoFreshnessInformation;
    if (!ever_reusable(resp, cfg, freshness_lifetime(resp, cfg, response_time).lifetime))
        return StoreVerdict::NeverReusable;
    return StoreVerdict::Store;
}

std::string_view store_verdict_name(StoreVerdict v) {
    switch (v) {
        case StoreVerdict::Store:
            return "store";
        case StoreVerdict::MethodNotCacheable:
            return "method not cacheable";
        case StoreVerdict::HeadResponse:
            return "head response";
        case StoreVerdict::StatusNotFinal:
            return "status not final";
        case StoreVerdict::PartialContent:
            return "partial content";
        case StoreVerdict::NotModified:
            return "not modified";
        case StoreVerdict::StatusNotUnderstood:
            return "must-understand with an unknown status";
        case StoreVerdict::NoStore:
            return "no-store";
        case StoreVerdict::Private:
            return "private";
        case StoreVerdict::Authorization:
            return "authorization";
        case StoreVerdict::SetCookie:
            return "set-cookie";
        case StoreVerdict::VaryStar:
            return "vary *";
        case StoreVerdict::NoFreshnessInformation:
            return "no freshness information";
        case StoreVerdict::NeverReusable:
            return "never reusable";
    }
    return "";
}

// ---- freshness ------------------------------------------------------------------------

int64_t configured_valid_time(int status, const CachePolicyConfig& cfg) {
    int64_t any = -1;
    for (size_t i = 0; i < cfg.valid_count; ++i) {
        if (cfg.valid[i].status == status) return cfg.valid[i].seconds;
        if (cfg.valid[i].status == 0 && any < 0) any = cfg.valid[i].seconds;
    }
    return any;
}

Freshness freshness_lifetime(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg, int64_t response_time) {
    if (cfg.shared && resp.cc.s_maxage != kAbsent) return {clamp_delta(resp.cc.s_maxage), FreshnessSource::SMaxAge};
    if (resp.cc.max_age != kAbsent) return {clamp_delta(resp.cc.max_age), FreshnessSource::MaxAge};
    int64_t date = resp.date >= 0 ? resp.date : response_time;
    if (resp.has_expires) {
        int64_t lifetime = resp.expires == 0 ? 0 : clamp_delta(resp.expires - date);
        return {lifetime, FreshnessSource::Expires};
    }
    if (int64_t valid = configured_valid_time(resp.status, cfg); valid >= 0)
        return {clamp_delta(valid), FreshnessSource::ValidTime};
    bool heuristic_allowed = status_heuristically_cacheable(resp.status) || resp.cc.public_;
    if (cfg.heuristic_percent > 0 && heuristic_allowed && resp.last_modified >= 0 && date >= resp.last_modified) {
        int64_t since = clamp_delta(date - resp.last_modified);
        int64_t lifetime = std::min(since * cfg.heuristic_percent / 100, cfg.heuristic_max);
        return {clamp_delta(lifetime), FreshnessSource::Heuristic};
    }
    return {};
}

// ---- age -----------------------------------------------------------------------------------

int64_t apparent_age(int64_t date_value, int64_t response_time) {
    return clamp_delta(response_time - date_value);
}

int64_t corrected_age_value(int64_t age_value, int64_t request_time, int64_t response_time) {
    return add_capped(age_value, response_time - request_time);
}

int64_t corrected_initial_age(int64_t date_value, int64_t age_value, int64_t request_time, int64_t response_time) {
    return std::max(apparent_age(date_value, response_time),
                    corrected_age_value(age_value, request_time, response_time));
}

int64_t resident_time(int64_t response_time, int64_t now) {
    return clamp_delta(now - response_time);
}

int64_t current_age(int64_t corrected_initial_age, int64_t response_time, int64_t now) {
    return add_capped(corrected_initial_age, resident_time(response_time, now));
}

std::string_view format_age(int64_t age, char* buf) {
    uint64_t v = uint64_t(clamp_delta(age));
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = char('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    return {buf, n};
}

// ---- entries ----------------------------------------------------------------------------------

EntryPolicy make_entry_policy(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg, int64_t request_time,
                              int64_t response_time) {
    EntryPolicy e;
    e.response_time = response_time;
    e.date = resp.date >= 0 ? resp.date : response_time;
    e.corrected_initial_age = corrected_initial_age(e.date, resp.age, request_time, response_time);
    e.freshness_lifetime = freshness_lifetime(resp, cfg, response_time).lifetime;
    e.stale_while_revalidate = resp.cc.stale_while_revalidate;
    e.stale_if_error = resp.cc.stale_if_error;
    e.last_modified = resp.last_modified;
    e.status = resp.status;
    if (resp.cc.no_cache) e.flags |= kEntryNoCache;
    if (resp.cc.must_revalidate || resp.cc.proxy_revalidate || (cfg.shared && resp.cc.s_maxage != kAbsent))
        e.flags |= kEntryNoStaleServing;
    if (!resp.etag.empty()) e.flags |= kEntryHasEtag;
    if (resp.last_modified >= 0) e.flags |= kEntryHasLastModified;
    if (resp.cc.immutable) e.flags |= kEntryImmutable;
    return e;
}

// ---- reuse -----------------------------------------------------------------------------------

namespace {

// §5.2.1.1: the client's max-age bounds the age it accepts.
bool within_request_max_age(const RequestCacheInfo& req, int64_t age) {
    return req.cc.max_age == kAbsent || age <= req.cc.max_age;
}

// §5.2.1.3: min-fresh asks for at least that much freshness left.
bool fresh_enough(const RequestCacheInfo& req, int64_t age, int64_t lifetime) {
    return req.cc.min_fresh == kAbsent || lifetime - age >= req.cc.min_fresh;
}

bool stale_updating_allowed(const EntryPolicy& e, const CachePolicyConfig& cfg, int64_t staleness) {
    return (e.stale_while_revalidate != kAbsent && staleness <= e.stale_while_revalidate) ||
           (cfg.use_stale & kStaleUpdating);
}

CacheDecision forward_decision(const RequestCacheInfo& req, const EntryPolicy& e, const CachePolicyConfig& cfg) {
    if (req.cc.only_if_cached) return CacheDecision::GatewayTimeout;
    bool has_validator = e.flags & (kEntryHasEtag | kEntryHasLastModified);
    return has_validator && cfg.revalidate ? CacheDecision::Revalidate : CacheDecision::Refetch;
}

}  // namespace

CacheDecision decide_reuse(const RequestCacheInfo& req, const EntryPolicy* entry, const CachePolicyConfig& cfg,
                           const ReuseContext& ctx) {
    if (ctx.bypass) return CacheDecision::Bypass;
    if (!entry) return req.cc.only_if_cached ? CacheDecision::GatewayTimeout : CacheDecision::Miss;
    const EntryPolicy& e = *entry;
    int64_t age = current_age(e.corrected_initial_age, e.response_time, ctx.now);
    bool fresh = e.freshness_lifetime > age;  // §4.2
    bool must_validate = (e.flags & kEntryNoCache) || req.cc.no_cache;
    if (must_validate) return forward_decision(req, e, cfg);
    if (fresh) {
        if (within_request_max_age(req, age) && fresh_enough(req, age, e.freshness_lifetime)) return CacheDecision::Hit;
        return forward_decision(req, e, cfg);
    }
    if (e.flags & kEntryNoStaleServing) return forward_decision(req, e, cfg);
    int64_t staleness = age - e.freshness_lifetime;
    if (!within_request_max_age(req, age)) return forward_decision(req, e, cfg);
    if (req.cc.max_stale != kAbsent && staleness <= req.cc.max_stale) return CacheDecision::StaleAllowed;
    if (stale_updating_allowed(e, cfg, staleness)) {
        if (ctx.update_in_progress) return CacheDecision::StaleUpdating;
        if (cfg.background_update) return CacheDecision::StaleBackground;
    }
    return forward_decision(req, e, cfg);
}

UpstreamCacheStatus cache_status_for(CacheDecision d) {
    switch (d) {
        case CacheDecision::Hit:
            return UpstreamCacheStatus::Hit;
        case CacheDecision::StaleUpdating:
            return UpstreamCacheStatus::Updating;
        case CacheDecision::StaleBackground:
        case CacheDecision::StaleAllowed:
            return UpstreamCacheStatus::Stale;
        case CacheDecision::Revalidate:
        case CacheDecision::Refetch:
            return UpstreamCacheStatus::Expired;
        case CacheDecision::Miss:
            return UpstreamCacheStatus::Miss;
        case CacheDecision::Bypass:
            return UpstreamCacheStatus::Bypass;
        case CacheDecision::GatewayTimeout:
            return UpstreamCacheStatus::Miss;
    }
    return UpstreamCacheStatus::None;
}

std::string_view cache_status_name(UpstreamCacheStatus s) {
    switch (s) {
        case UpstreamCacheStatus::None:
            return "";
        case UpstreamCacheStatus::Miss:
            return "MISS";
        case UpstreamCacheStatus::Bypass:
            return "BYPASS";
        case UpstreamCacheStatus::Expired:
            return "EXPIRED";
        case UpstreamCacheStatus::Stale:
            return "STALE";
        case UpstreamCacheStatus::Updating:
            return "UPDATING";
        case UpstreamCacheStatus::Revalidated:
            return "REVALIDATED";
        case UpstreamCacheStatus::Hit:
            return "HIT";
    }
    return "";
}

namespace {

uint16_t use_stale_bit(UpstreamFailure failure, int status) {
    switch (failure) {
        case UpstreamFailure::Error:
            return kStaleError;
        case UpstreamFailure::Timeout:
            return kStaleTimeout;
        case UpstreamFailure::InvalidHeader:
            return kStaleInvalidHeader;
        case UpstreamFailure::Status:
            break;
    }
    switch (status) {
        case 500:
            return kStaleHttp500;
        case 502:
            return kStaleHttp502;
        case 503:
            return kStaleHttp503;
        case 504:
            return kStaleHttp504;
        case 403:
            return kStaleHttp403;
        case 404:
            return kStaleHttp404;
        case 429:
            return kStaleHttp429;
        default:
            return 0;
    }
}

// RFC 5861 §4: "an error is any situation that would result in a 500, 502,
// 503, or 504 HTTP response status code being returned".
bool is_stale_if_error_error(UpstreamFailure failure, int status) {
    return failure != UpstreamFailure::Status || status == 500 || status == 502 || status == 503 || status == 504;
}

}  // namespace

bool may_serve_stale_on_error(const RequestCacheInfo& req, const EntryPolicy& e, const CachePolicyConfig& cfg,
                              UpstreamFailure failure, int status, int64_t now) {
    if (e.flags & (kEntryNoCache | kEntryNoStaleServing)) return false;  // §5.2.2.2, §5.2.2.4
    bool client_allows = req.cc.stale_if_error != kAbsent;
    if (req.cc.no_cache && !client_allows) return false;
    if (cfg.use_stale & use_stale_bit(failure, status)) return true;
    if (!is_stale_if_error_error(failure, status)) return false;
    int64_t age = current_age(e.corrected_initial_age, e.response_time, now);
    int64_t staleness = std::max<int64_t>(0, age - e.freshness_lifetime);
    return (e.stale_if_error != kAbsent && staleness <= e.stale_if_error) ||
           (client_allows && staleness <= req.cc.stale_if_error);
}

// ---- validation --------------------------------------------------------------------------------

Validators conditional_request_validators(const ResponseCacheInfo& stored) {
    return {stored.etag, stored.last_modified >= 0 ? stored.last_modified_value : std::string_view()};
}

bool header_replaced_on_revalidation(std::string_view name) {
    return field_name_is(name, "if-none-match") || field_name_is(name, "if-modified-since") ||
           field_name_is(name, "if-match") || field_name_is(name, "if-unmodified-since") ||
           field_name_is(name, "if-range") || field_name_is(name, "range");
}

bool not_modified_matches(const ResponseCacheInfo& stored, const ResponseCacheInfo& nm) {
    if (!nm.etag.empty()) {
        if (!etag_is_weak(nm.etag)) return etag_strong_match(stored.etag, nm.etag);
        return etag_weak_match(stored.etag, nm.etag);
    }
    if (nm.last_modified >= 0) return stored.last_modified == nm.last_modified;
    return stored.etag.empty() && stored.last_modified < 0;
}

bool header_updated_by_not_modified(std::string_view name, std::span<const Header> not_modified) {
    if (field_name_is(name, "content-length") || field_name_is(name, "content-encoding") ||
        field_name_is(name, "content-range") || field_name_is(name, "transfer-encoding"))
        return false;
    return header_storable(name, not_modified);
}

size_t merge_not_modified_headers(std::span<const Header> stored, std::span<const Header> not_modified,
                                  std::span<Header> out) {
    size_t n = 0;
    auto replaced = [&](std::string_view name) {
        for (const Header& h : not_modified)
            if (iequals(h.name, name) && header_updated_by_not_modified(h.name, not_modified)) return true;
        return false;
    };
    for (const Header& h : stored) {
        if (replaced(h.name)) continue;
        if (n == out.size()) return SIZE_MAX;
        out[n++] = h;
    }
    for (const Header& h : not_modified) {
        if (!header_updated_by_not_modified(h.name, not_modified)) continue;
        if (n == out.size()) return SIZE_MAX;
        out[n++] = h;
    }
    return n;
}

// ---- client conditionals -----------------------------------------------------------------------

bool etag_valid(std::string_view tag) {
    if (etag_is_weak(tag)) tag.remove_prefix(2);
    if (tag.size() < 2 || tag.front() != '"' || tag.back() != '"') return false;
    for (char c : tag.substr(1, tag.size() - 2)) {
        auto u = static_cast<unsigned char>(c);
        if (!(u == 0x21 || (u >= 0x23 && u <= 0x7e) || u >= 0x80)) return false;  // etagc
    }
    return true;
}

bool etag_strong_match(std::string_view a, std::string_view b) {
    return etag_valid(a) && etag_valid(b) && !etag_is_weak(a) && !etag_is_weak(b) && a == b;
}

bool etag_weak_match(std::string_view a, std::string_view b) {
    return etag_valid(a) && etag_valid(b) && etag_opaque(a) == etag_opaque(b);
}

bool if_none_match_matches(std::string_view value, std::string_view etag) {
    value = trim_ows(value);
    if (value == "*") return true;
    if (!etag_valid(etag)) return false;
    ListCursor list(value);
    std::string_view member;
    while (list.next(member))
        if (etag_weak_match(member, etag)) return true;  // RFC 9110 §13.1.2: weak comparison
    return false;
}

ClientConditional answer_from_cache(const RequestCacheInfo& req, const ResponseCacheInfo& stored,
                                    int64_t stored_response_time) {
    if (req.method != Method::Get && req.method != Method::Head) return ClientConditional::Send;
    if (req.has_if_none_match) {
        for (const Header& h : req.headers)
            if (field_name_is(h.name, "if-none-match") && if_none_match_matches(h.value, stored.etag))
                return ClientConditional::NotModified;
        return ClientConditional::Send;
    }
    if (req.if_modified_since < 0) return ClientConditional::Send;
    int64_t modified = stored.last_modified >= 0 ? stored.last_modified
                       : stored.date >= 0        ? stored.date
                                                 : stored_response_time;
    return modified <= req.if_modified_since ? ClientConditional::NotModified : ClientConditional::Send;
}

bool header_in_not_modified(std::string_view name, bool stored_has_etag) {
    return field_name_is(name, "cache-control") || field_name_is(name, "content-location") ||
           field_name_is(name, "date") || field_name_is(name, "etag") || field_name_is(name, "expires") ||
           field_name_is(name, "vary") || (!stored_has_etag && field_name_is(name, "last-modified"));
}

// ---- Vary ------------------------------------------------------------------------------------------

VaryFields parse_vary(std::span<const Header> response_headers) {
    VaryFields vary;
    for (const Header& h : response_headers) {
        if (!field_name_is(h.name, "vary")) continue;
        ListCursor list(h.value);
        std::string_view member;
        while (list.next(member)) {
            if (member.empty()) continue;
            if (member == "*" || !is_token(member) || vary.count == vary.names.size()) {
                vary.star = true;
                continue;
            }
            vary.names[vary.count++] = member;
        }
    }
    return vary;
}

size_t vary_key(const VaryFields& vary, std::span<const Header> request_headers, std::span<char> out) {
    if (vary.star) return SIZE_MAX;
    KeyWriter writer{out};
    build_vary_key(writer, vary, request_headers);
    return writer.ok ? writer.len : SIZE_MAX;
}

bool vary_matches(const VaryFields& vary, std::string_view stored_key, std::span<const Header> request_headers) {
    if (vary.star) return false;
    KeyComparer comparer{stored_key};
    build_vary_key(comparer, vary, request_headers);
    return comparer.ok && comparer.len == stored_key.size();
}

// ---- invalidation -----------------------------------------------------------------------------------

InvalidationTargets invalidation_targets(Method method, int status, const Origin& origin, std::string_view target_path,
                                         std::span<const Header> response_headers) {
    InvalidationTargets t;
    if (!method_is_unsafe(method) || status < 200 || status >= 400) return t;
    add_target(t, same_origin_path(target_path, origin));
    if (const Header* location = find_field(response_headers, "location"))
        add_target(t, same_origin_path(location->value, origin));
    if (const Header* content_location = find_field(response_headers, "content-location"))
        add_target(t, same_origin_path(content_location->value, origin));
    return t;
}

// ---- poisoning ---------------------------------------------------------------------------------------

std::string_view request_has_unkeyed_risk(std::span<const Header> request_headers) {
    for (const Header& h : request_headers)
        for (std::string_view risky : kUnkeyedRiskHeaders)
            if (field_name_is(h.name, risky)) return h.name;
    return {};
}

}  // namespace sluice::http::cache
