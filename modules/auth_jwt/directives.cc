// The auth_jwt module's configuration: directives, create and merge, and the
// hook that installs the access handler and the $jwt_* variables. Key files
// are read and converted here, at load time, with file:line errors.
#include "auth_jwt.h"
#include "core/conf.h"
#include "core/conf_values.h"
#include "core/cycle.h"
#include "http/http_core.h"

namespace sluice::auth_jwt {

namespace {

constexpr uint64_t kMaxTokenSizeLimit = 1 << 20;

// The realm goes into a quoted-string of WWW-Authenticate: nothing that
// would need escaping or could end the header.
bool valid_realm(std::string_view realm) {
    for (unsigned char c : realm)
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') return false;
    return true;
}

bool set_auth_jwt(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (c.auth) return cx.duplicate();
    AuthSetting s;
    if (cx.arg(0) == "off") {
        if (cx.arg_count() > 1) return cx.invalid_value(1);
        c.auth = std::move(s);
        return true;
    }
    if (!valid_realm(cx.arg(0))) return cx.error("invalid realm \"%s\" in \"auth_jwt\" directive", cx.arg(0).c_str());
    s.enabled = true;
    s.realm = cx.arg(0);
    if (cx.arg_count() == 2) {
        std::string_view token = cx.arg(1);
        if (!token.starts_with("token=") || token.size() == 6) return cx.invalid_value(1);
        s.token = std::make_shared<http::ComplexValue>();
        if (!s.token->compile(cx, token.substr(6))) return false;
    }
    c.auth = std::move(s);
    return true;
}

// A relative key path is relative to the configuration file's directory,
// as nginx resolves auth_jwt_key_file and ssl_certificate.
std::string key_file_path(ConfContext& cx, const std::string& path) {
    if (path.starts_with("/")) return path;
    const std::string& conf = cx.cycle().conf_path;
    size_t slash = conf.rfind('/');
    if (slash == std::string::npos) return cx.full_path(path);
    return conf.substr(0, slash + 1) + path;
}

bool set_key_file(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    std::string error, warning;
    if (!load_key_file(key_file_path(cx, cx.arg(0)), c.own_keys, error, warning)) return cx.error("%s", error.c_str());
    if (!warning.empty()) cx.warn("%s", warning.c_str());
    // Each file adds to this level's set; the slot serves the set so far.
    if (!c.keys) c.keys = std::make_shared<KeySlot>();
    install_key_set(*c.keys, c.own_keys);
    return true;
}

AuthJwtMainConf& main_conf_of(ConfContext& cx) {
    return *static_cast<AuthJwtMainConf*>(cx.cycle().main_conf(auth_jwt_module));
}

// refresh=T and timeout=T of auth_jwt_key_url.
bool key_url_parameters(ConfContext& cx, uint64_t& refresh_ms, uint64_t& timeout_ms) {
    for (size_t i = 1; i < cx.arg_count(); ++i) {
        std::string_view arg = cx.arg(i);
        uint64_t* target = arg.starts_with("refresh=") ? &refresh_ms : arg.starts_with("timeout=") ? &timeout_ms : nullptr;
        if (!target) return cx.invalid_value(i);
        auto ms = conf::parse_time_ms(arg.substr(arg.find('=') + 1));
        if (!ms || *ms == 0) return cx.invalid_value(i);
        *target = *ms;
    }
    if (refresh_ms < 1000 || timeout_ms > 60000)
        return cx.error("\"auth_jwt_key_url\" needs refresh= of at least 1s and timeout= of at most 60s");
    return true;
}

// The source of a URL: one per distinct URL, whose shared zone all workers
// (and every location naming it) use.
KeyUrlSource* key_url_source(ConfContext& cx, const std::string& text, uint64_t refresh_ms, uint64_t timeout_ms) {
    AuthJwtMainConf& mc = main_conf_of(cx);
    for (auto& s : mc.key_urls) {
        if (s->url.text != text) continue;
        if (s->refresh_ms != refresh_ms || s->timeout_ms != timeout_ms) {
            cx.error("\"%s\" is given with other refresh= or timeout= in %s:%d", text.c_str(), s->conf_file.c_str(),
                     s->conf_line);
            return nullptr;
        }
        return s.get();
    }
    auto source = std::make_unique<KeyUrlSource>();
    std::string error;
    if (!parse_key_url(text, source->url, error) || !resolve_key_url(source->url, error)) {
        cx.error("%s in \"auth_jwt_key_url\" directive", error.c_str());
        return nullptr;
    }
    source->refresh_ms = refresh_ms;
    source->timeout_ms = timeout_ms;
    source->conf_file = std::string(cx.statement().file);
    source->conf_line = cx.statement().line;
    ShmZone* zone = cx.cycle().add_shm_zone("auth_jwt_key_url " + text, sizeof(JwksShared), &auth_jwt_module, error);
    if (!zone) {
        cx.error("%s", error.c_str());
        return nullptr;
    }
    zone->init = KeyUrlSource::init_zone;
    zone->data = source.get();
    source->zone = zone;
    mc.key_urls.push_back(std::move(source));
    return mc.key_urls.back().get();
}

// auth_jwt_key_url URL [refresh=T] [timeout=T]: the URL's keys are added to
// this level's key files.
bool set_key_url(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (c.own_key_url) return cx.duplicate();
    uint64_t refresh_ms = kDefaultRefreshMs, timeout_ms = kDefaultFetchTimeoutMs;
    if (!key_url_parameters(cx, refresh_ms, timeout_ms)) return false;
    KeyUrlSource* source = key_url_source(cx, cx.arg(0), refresh_ms, timeout_ms);
    if (!source) return false;
    if (!c.keys) {
        c.keys = std::make_shared<KeySlot>();
        install_key_set(*c.keys, c.own_keys);
    }
    source->bindings.push_back(KeyUrlBinding{c.keys, &c.own_keys});
    c.own_key_url = source;
    c.key_url = source;
    main_conf_of(cx).key_url_levels.emplace_back(source, &c);
    return true;
}

bool set_key_url_trusted_certificate(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (c.key_url_trusted_certificate) return cx.duplicate();
    c.key_url_trusted_certificate = key_file_path(cx, cx.arg(0));
    return true;
}

// After the merge: each URL's TLS context, with the trusted certificate in
// effect where its auth_jwt_key_url is.
bool finish_key_urls(ConfContext& cx) {
    AuthJwtMainConf& mc = main_conf_of(cx);
    for (auto& [source, level] : mc.key_url_levels) {
        std::string ca = level->key_url_trusted_certificate.value_or("");
        if (source->ssl_ctx && source->trusted_certificate != ca)
            return cx.error_in(source->conf_file, source->conf_line,
                               "\"%s\" is used with different auth_jwt_key_url_trusted_certificate files",
                               source->url.text.c_str());
        if (source->ssl_ctx || !source->url.https) continue;
        std::string error;
        source->trusted_certificate = ca;
        source->ssl_ctx = make_client_ssl_ctx(ca, error);
        if (!source->ssl_ctx) return cx.error_in(source->conf_file, source->conf_line, "%s", error.c_str());
    }
    return true;
}

bool set_alg(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (c.algs) return cx.duplicate();
    uint32_t algs = 0;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        Alg alg;
        if (!alg_from_name(cx.arg(i), alg)) return cx.error("unsupported algorithm \"%s\"", cx.arg(i).c_str());
        algs |= alg_bit(alg);
    }
    c.algs = algs;
    return true;
}

bool set_max_size(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (!set_size<&AuthJwtLocConf::max_size>(cx, conf)) return false;
    if (*c.max_size == 0 || *c.max_size > kMaxTokenSizeLimit) return cx.invalid_value(0);
    return true;
}

bool set_claim_equals(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    if (cx.arg(0).empty()) return cx.invalid_value(0);
    ClaimEquals rule{cx.arg(0), {}};
    for (size_t i = 1; i < cx.arg_count(); ++i) rule.values.push_back(cx.arg(i));
    if (!c.claim_equals) c.claim_equals.emplace();
    c.claim_equals->push_back(std::move(rule));
    return true;
}

bool set_require(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AuthJwtLocConf*>(conf);
    RequireRule rule;
    size_t n = cx.arg_count();
    std::string_view last = cx.arg(n - 1);
    if (last.starts_with("error=")) {
        if (last != "error=401" && last != "error=403") return cx.invalid_value(n - 1);
        rule.status = last == "error=403" ? 403 : 401;
        --n;
    }
    if (n == 0) return cx.error("no variables in \"auth_jwt_require\" directive");
    for (size_t i = 0; i < n; ++i) {
        auto value = std::make_shared<http::ComplexValue>();
        if (!value->compile(cx, cx.arg(i))) return false;
        rule.values.push_back(std::move(value));
    }
    if (!c.require) c.require.emplace();
    c.require->push_back(std::move(rule));
    return true;
}

// auth_jwt_claim_set $var NAME... / auth_jwt_header_set $var NAME...
bool define_path_variable(ConfContext& cx, void* conf, bool header) {
    auto& mc = *static_cast<AuthJwtMainConf*>(conf);
    const std::string& var = cx.arg(0);
    if (var.size() < 2 || var[0] != '$') return cx.error("invalid variable name \"%s\"", var.c_str());
    auto pv = std::make_unique<PathVariable>();
    pv->header = header;
    for (size_t i = 1; i < cx.arg_count(); ++i) pv->path.push_back(cx.arg(i));
    auto data = reinterpret_cast<uintptr_t>(pv.get());
    if (http::current_main_conf(cx).variables.add(var.substr(1), path_variable, data, http::kVarNoCache) < 0)
        return cx.error("the duplicate \"%s\" variable", var.substr(1).c_str());
    mc.path_variables.push_back(std::move(pv));
    return true;
}

bool set_claim_set(ConfContext& cx, void* conf) { return define_path_variable(cx, conf, false); }
bool set_header_set(ConfContext& cx, void* conf) { return define_path_variable(cx, conf, true); }

// auth_jwt_cache off | ENTRIES [TTL]
bool set_cache(ConfContext& cx, void* conf) {
    auto& mc = *static_cast<AuthJwtMainConf*>(conf);
    if (mc.cache_entries) return cx.duplicate();
    if (cx.arg(0) == "off") {
        if (cx.arg_count() > 1) return cx.invalid_value(1);
        mc.cache_entries = 0;
        return true;
    }
    auto entries = conf::parse_number(cx.arg(0));
    if (!entries || *entries <= 0) return cx.invalid_value(0);
    mc.cache_entries = uint64_t(*entries);
    if (cx.arg_count() == 2) {
        auto ttl = conf::parse_time_sec(cx.arg(1));
        if (!ttl || *ttl == 0) return cx.invalid_value(1);
        mc.cache_ttl_sec = *ttl;
    }
    return true;
}

const Directive kDirectives[] = {
    {"auth_jwt", kHttpAnyContext, Args(1, 2), ConfLevel::Location, set_auth_jwt},
    {"auth_jwt_key_file", kHttpAnyContext, Args(1), ConfLevel::Location, set_key_file},
    {"auth_jwt_key_url", kHttpAnyContext, Args(1, 3), ConfLevel::Location, set_key_url},
    {"auth_jwt_key_url_trusted_certificate", kHttpAnyContext, Args(1), ConfLevel::Location,
     set_key_url_trusted_certificate},
    {"auth_jwt_alg", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_alg},
    {"auth_jwt_leeway", kHttpAnyContext, Args(1), ConfLevel::Location, set_sec<&AuthJwtLocConf::leeway_sec>},
    {"auth_jwt_require_exp", kHttpAnyContext, Args(1), ConfLevel::Location,
     set_flag<&AuthJwtLocConf::require_exp>},
    {"auth_jwt_max_size", kHttpAnyContext, Args(1), ConfLevel::Location, set_max_size},
    {"auth_jwt_claim_equals", kHttpAnyContext, AnyArgs(2), ConfLevel::Location, set_claim_equals},
    {"auth_jwt_require", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_require},
    {"auth_jwt_claim_set", kHttpContext, AnyArgs(2), ConfLevel::Main, set_claim_set},
    {"auth_jwt_header_set", kHttpContext, AnyArgs(2), ConfLevel::Main, set_header_set},
    {"auth_jwt_cache", kHttpContext, Args(1, 2), ConfLevel::Main, set_cache},
};

std::unique_ptr<ModuleConf> create_main_conf() { return std::make_unique<AuthJwtMainConf>(); }
std::unique_ptr<ModuleConf> create_loc_conf() { return std::make_unique<AuthJwtLocConf>(); }

bool merge_loc_conf(ConfContext& cx, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const AuthJwtLocConf&>(parent);
    auto& c = static_cast<AuthJwtLocConf&>(child);
    merge_value(c.auth, p.auth, AuthSetting{});
    if (!c.keys) {
        c.keys = p.keys;
        c.key_url = p.key_url;
    }
    merge_value(c.key_url_trusted_certificate, p.key_url_trusted_certificate, std::string());
    merge_value(c.algs, p.algs, kAllAlgs);
    merge_value(c.leeway_sec, p.leeway_sec, 0);
    merge_value(c.require_exp, p.require_exp, false);
    merge_value(c.max_size, p.max_size, kDefaultMaxTokenSize);
    merge_value(c.claim_equals, p.claim_equals, std::vector<ClaimEquals>{});
    merge_value(c.require, p.require, std::vector<RequireRule>{});
    if (!c.auth->enabled) return true;
    // No keys at this level (auth_jwt set above the level with the key file,
    // or keys still to be fetched) fails closed, per request: 401.
    c.challenge = "Bearer realm=\"" + c.auth->realm + "\"";
    c.challenge_invalid = c.challenge + ", error=\"invalid_token\"";
    return true;
}

bool postconfiguration(ConfContext& cx, http::HttpPhases& phases) {
    if (!finish_key_urls(cx)) return false;
    phases.add(http::Phase::Access, access_handler);
    auto& vars = http::current_main_conf(cx).variables;
    // The token is verified in the access phase: a value read earlier must
    // not stick, so nothing is cached per request.
    vars.add_prefix("jwt_claim_", claim_variable, http::kVarNoCache);
    vars.add_prefix("jwt_header_", header_variable, http::kVarNoCache);
    if (vars.add("jwt_payload", payload_variable, 0, http::kVarNoCache) < 0)
        return cx.error("the duplicate \"jwt_payload\" variable");
    return true;
}

}  // namespace

}  // namespace sluice::auth_jwt

namespace sluice {

Module auth_jwt_module = {
    .name = "auth_jwt",
    .type = ModuleType::Http,
    .directives = auth_jwt::kDirectives,
    .create_main_conf = auth_jwt::create_main_conf,
    .create_loc_conf = auth_jwt::create_loc_conf,
    .merge_loc_conf = auth_jwt::merge_loc_conf,
    .postconfiguration = auth_jwt::postconfiguration,
    .init_worker = auth_jwt::init_worker,
    .exit_worker = auth_jwt::exit_worker,
};

}  // namespace sluice
