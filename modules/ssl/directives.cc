// The ssl_* directives (http and server level), their merge, and the
// contexts built for every server reachable on a `listen ... ssl` address.
#include "core/conf.h"
#include "http/http_core.h"
#include "session_cache.h"
#include "ssl.h"

namespace sluice::ssl {

namespace {

constexpr const char* kDefaultCiphers = "HIGH:!aNULL:!MD5";  // nginx's
constexpr uint64_t kDefaultSessionTimeoutSec = 300;
constexpr int64_t kBuiltinCacheDefault = 20480;  // sessions, OpenSSL's default

SslSrvConf& conf_of(void* conf) { return *static_cast<SslSrvConf*>(conf); }

FileRef file_ref(ConfContext& cx, size_t arg) {
    return {cx.full_path(cx.arg(arg)), std::string(cx.statement().file), cx.statement().line};
}

bool set_certificate(ConfContext& cx, void* conf) {
    auto& c = conf_of(conf);
    c.certificates_set = true;
    c.certificates.push_back(file_ref(cx, 0));
    return true;
}

bool set_certificate_key(ConfContext& cx, void* conf) {
    auto& c = conf_of(conf);
    c.certificates_set = true;
    c.certificate_keys.push_back(file_ref(cx, 0));
    return true;
}

template <std::optional<FileRef> SslSrvConf::*Field>
bool set_file(ConfContext& cx, void* conf) {
    auto& f = conf_of(conf).*Field;
    if (f) return cx.duplicate();
    f = file_ref(cx, 0);
    return true;
}

bool set_protocols(ConfContext& cx, void* conf) {
    return tls::set_protocols_directive(cx, conf_of(conf).protocols);
}

bool declare_shared_cache(ConfContext& cx, SslSrvConf& c, std::string_view spec) {
    // shared:NAME:SIZE
    std::string_view rest = spec.substr(7);
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos || colon == 0) return cx.error("invalid session cache \"%.*s\"", int(spec.size()), spec.data());
    std::string name(rest.substr(0, colon));
    auto size = conf::parse_size(rest.substr(colon + 1));
    if (!size || *size < SessionCache::min_zone_size())
        return cx.error("session cache \"%.*s\" is too small (at least %zu bytes)", int(spec.size()), spec.data(),
                        SessionCache::min_zone_size());
    std::string err;
    ShmZone* zone = cx.cycle().add_shm_zone(name, *size, &ssl_module, err);
    if (!zone) return cx.error("%s", err.c_str());
    if (!zone->data) {
        zone->data = cx.cycle().make<SessionCache>(name);
        zone->init = SessionCache::init_zone;
    }
    auto* cache = static_cast<SessionCache*>(zone->data);
    cache->set_zone(zone);
    c.shared_cache = cache;
    return true;
}

bool set_session_cache(ConfContext& cx, void* conf) {
    auto& c = conf_of(conf);
    if (c.session_cache_set) return cx.duplicate();
    c.session_cache_set = true;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        std::string_view a = cx.arg(i);
        if (a == "off" || a == "none") {
            if (cx.arg_count() != 1) return cx.invalid_value(i);
            c.session_cache_off = a == "off";
        } else if (a == "builtin") {
            c.builtin_cache_size = kBuiltinCacheDefault;
        } else if (a.starts_with("builtin:")) {
            auto n = conf::parse_number(a.substr(8));
            if (!n || *n < 1) return cx.invalid_value(i);
            c.builtin_cache_size = *n;
        } else if (a.starts_with("shared:")) {
            if (!declare_shared_cache(cx, c, a)) return false;
        } else {
            return cx.invalid_value(i);
        }
    }
    return true;
}

bool set_ticket_key(ConfContext& cx, void* conf) {
    auto& c = conf_of(conf);
    c.ticket_key_files_set = true;
    c.ticket_key_files.push_back(file_ref(cx, 0));
    return true;
}

constexpr EnumEntry kVerifyClient[] = {{"off", int(VerifyClient::Off)},
                                       {"on", int(VerifyClient::On)},
                                       {"optional", int(VerifyClient::Optional)},
                                       {"optional_no_ca", int(VerifyClient::OptionalNoCa)},
                                       {{}, 0}};

bool set_verify_depth(ConfContext& cx, void* conf) {
    auto& c = conf_of(conf);
    if (c.verify_depth) return cx.duplicate();
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v < 0 || *v > 100) return cx.invalid_value(0);
    c.verify_depth = *v;
    return true;
}

std::unique_ptr<ModuleConf> create_srv() { return std::make_unique<SslSrvConf>(); }

bool merge_srv(ConfContext&, const ModuleConf& parent_conf, ModuleConf& child_conf) {
    auto& p = static_cast<const SslSrvConf&>(parent_conf);
    auto& c = static_cast<SslSrvConf&>(child_conf);
    if (!c.certificates_set) {
        c.certificates = p.certificates;
        c.certificate_keys = p.certificate_keys;
    }
    merge_value(c.protocols, p.protocols, tls::kDefaultProtocols);
    merge_value(c.ciphers, p.ciphers, kDefaultCiphers);
    merge_value(c.prefer_server_ciphers, p.prefer_server_ciphers, false);
    merge_value(c.ecdh_curve, p.ecdh_curve, "auto");
    if (!c.session_cache_set) {
        c.session_cache_off = p.session_cache_off;
        c.builtin_cache_size = p.builtin_cache_size;
        c.shared_cache = p.shared_cache;
    }
    merge_value(c.session_timeout_sec, p.session_timeout_sec, kDefaultSessionTimeoutSec);
    merge_value(c.session_tickets, p.session_tickets, true);
    if (!c.ticket_key_files_set) c.ticket_key_files = p.ticket_key_files;
    merge_value(c.client_certificate, p.client_certificate);
    merge_value(c.trusted_certificate, p.trusted_certificate);
    merge_value(c.crl, p.crl);
    merge_value(c.verify_client, p.verify_client, VerifyClient::Off);
    merge_value(c.verify_depth, p.verify_depth, int64_t(1));
    return true;
}

// Every server on a TLS address gets its context (SNI may choose any of
// them); the address starts handshakes with its default server's.
bool build_contexts(ConfContext& cx) {
    http::CoreMainConf& mc = http::current_main_conf(cx);
    for (auto& address : mc.addresses) {
        if (!address->ssl) continue;
        for (CoreSrvConf* server : address->servers) {
            SslSrvConf& conf = srv_conf_of(*server);
            conf.server = server;
            if (conf.ctx) continue;  // on an earlier address too
            if (conf.certificates.empty())
                return cx.error_in(address->ssl_file, address->ssl_line,
                                   "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive");
            if (!build_server_context(cx, conf)) return false;
        }
        address->ssl_ctx = srv_conf_of(*address->default_server).ctx.get();
    }
    return true;
}

bool postconfiguration(ConfContext& cx, HttpPhases& phases) {
    if (!add_variables(http::current_main_conf(cx).variables)) return cx.error("an ssl variable is already defined");
    return build_contexts(cx) && install_request_checks(cx, phases);
}

constexpr unsigned kSrv = kHttpContext | kServerContext;

const Directive kDirectives[] = {
    {"ssl_certificate", kSrv, Args(1), ConfLevel::Server, set_certificate},
    {"ssl_certificate_key", kSrv, Args(1), ConfLevel::Server, set_certificate_key},
    {"ssl_protocols", kSrv, AnyArgs(1), ConfLevel::Server, set_protocols},
    {"ssl_ciphers", kSrv, Args(1), ConfLevel::Server, set_string<&SslSrvConf::ciphers>},
    {"ssl_prefer_server_ciphers", kSrv, Args(1), ConfLevel::Server, set_flag<&SslSrvConf::prefer_server_ciphers>},
    {"ssl_ecdh_curve", kSrv, Args(1), ConfLevel::Server, set_string<&SslSrvConf::ecdh_curve>},
    {"ssl_session_cache", kSrv, Args(1, 2), ConfLevel::Server, set_session_cache},
    {"ssl_session_timeout", kSrv, Args(1), ConfLevel::Server, set_sec<&SslSrvConf::session_timeout_sec>},
    {"ssl_session_tickets", kSrv, Args(1), ConfLevel::Server, set_flag<&SslSrvConf::session_tickets>},
    {"ssl_session_ticket_key", kSrv, Args(1), ConfLevel::Server, set_ticket_key},
    {"ssl_client_certificate", kSrv, Args(1), ConfLevel::Server, set_file<&SslSrvConf::client_certificate>},
    {"ssl_trusted_certificate", kSrv, Args(1), ConfLevel::Server, set_file<&SslSrvConf::trusted_certificate>},
    {"ssl_crl", kSrv, Args(1), ConfLevel::Server, set_file<&SslSrvConf::crl>},
    {"ssl_verify_client", kSrv, Args(1), ConfLevel::Server,
     set_enum<&SslSrvConf::verify_client, kVerifyClient>, kVerifyClient},
    {"ssl_verify_depth", kSrv, Args(1), ConfLevel::Server, set_verify_depth},
};

}  // namespace
}  // namespace sluice::ssl

namespace sluice {

Module ssl_module = {
    .name = "ssl",
    .type = ModuleType::Http,
    .directives = ssl::kDirectives,
    .create_srv_conf = ssl::create_srv,
    .merge_srv_conf = ssl::merge_srv,
    .postconfiguration = ssl::postconfiguration,
};

}  // namespace sluice
