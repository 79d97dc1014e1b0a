// The proxy_ssl_* directives (TLS to https upstreams) and their merge, which
// builds one client context per distinct set of settings.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/conf.h"
#include "proxy.h"

namespace sluice::http {

namespace {

ProxySslConf& ssl_conf(void* conf) { return static_cast<ProxyLocConf*>(conf)->ssl; }

ProxyMainConf& main_conf(ConfContext& cx) {
    return *static_cast<ProxyMainConf*>(cx.http->main[size_t(proxy_module.ctx_index)]);
}

// A file a TLS setting names: resolved against the prefix, and readable now,
// so that a typo is reported on its own line.
bool set_file(ConfContext& cx, std::optional<std::string>& field) {
    if (field) return cx.duplicate();
    if (cx.arg(0).find('$') != std::string::npos)
        return cx.error("variables are not supported in \"%s\"", cx.name().c_str());
    std::string path = cx.full_path(cx.arg(0));
    if (::access(path.c_str(), R_OK) != 0)
        return cx.error("cannot read \"%s\" (%d: %s)", path.c_str(), errno, strerror(errno));
    field = std::move(path);
    return true;
}

}  // namespace

bool set_proxy_ssl_file(ConfContext& cx, void* conf) {
    ProxySslConf& c = ssl_conf(conf);
    std::string_view n = cx.name();
    if (n == "proxy_ssl_trusted_certificate") return set_file(cx, c.trusted_certificate);
    if (n == "proxy_ssl_crl") return set_file(cx, c.crl);
    if (n == "proxy_ssl_certificate") return set_file(cx, c.certificate);
    return set_file(cx, c.certificate_key);
}

bool set_proxy_ssl_flag(ConfContext& cx, void* conf) {
    ProxySslConf& c = ssl_conf(conf);
    std::string_view n = cx.name();
    std::optional<bool>& field = n == "proxy_ssl_verify"        ? c.verify
                                 : n == "proxy_ssl_server_name" ? c.server_name
                                                                : c.session_reuse;
    if (field) return cx.duplicate();
    auto v = conf::parse_flag(cx.arg(0));
    if (!v) return cx.error("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                            cx.arg(0).c_str(), cx.name().c_str());
    field = *v;
    return true;
}

bool set_proxy_ssl_verify_depth(ConfContext& cx, void* conf) {
    ProxySslConf& c = ssl_conf(conf);
    if (c.verify_depth) return cx.duplicate();
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v > 100) return cx.invalid_value(0);
    c.verify_depth = uint64_t(*v);
    return true;
}

bool set_proxy_ssl_protocols(ConfContext& cx, void* conf) {
    return tls::set_protocols_directive(cx, ssl_conf(conf).protocols);
}

bool set_proxy_ssl_ciphers(ConfContext& cx, void* conf) {
    ProxySslConf& c = ssl_conf(conf);
    if (c.ciphers) return cx.duplicate();
    // Checked now, so the error names this line.
    tls::SslCtxPtr probe(SSL_CTX_new(TLS_client_method()));
    if (!probe || SSL_CTX_set_cipher_list(probe.get(), cx.arg(0).c_str()) != 1) {
        tls::clear_errors();
        return cx.error("invalid ciphers \"%s\" in \"proxy_ssl_ciphers\" directive", cx.arg(0).c_str());
    }
    c.ciphers = cx.arg(0);
    return true;
}

bool set_proxy_ssl_name(ConfContext& cx, void* conf) {
    ProxySslConf& c = ssl_conf(conf);
    if (c.name_set) return cx.duplicate();
    if (cx.arg(0).empty()) return cx.invalid_value(0);
    if (!c.name.compile(cx, cx.arg(0))) return false;
    c.name_set = true;
    return true;
}

namespace {

bool same_options(const tls::ClientContextOptions& a, const tls::ClientContextOptions& b) {
    return a.verify == b.verify && a.trusted_certificate == b.trusted_certificate &&
           a.verify_depth == b.verify_depth && a.crl == b.crl && a.certificate == b.certificate &&
           a.certificate_key == b.certificate_key && a.protocols == b.protocols && a.ciphers == b.ciphers &&
           a.session_cache == b.session_cache;
}

// The context for these settings: an existing one, or a new one.
UpstreamTls* context_for(ConfContext& cx, const tls::ClientContextOptions& options, bool session_reuse,
                         const ProxyTarget& target) {
    ProxyMainConf& mc = main_conf(cx);
    for (auto& t : mc.tls_contexts)
        if (same_options(t->options, options) && t->session_reuse == session_reuse) return t.get();
    auto t = std::make_unique<UpstreamTls>();
    std::string error;
    if (!upstream_tls_init(*t, options, session_reuse, error)) {
        cx.error_in(target.file, target.line, "%s (for \"proxy_pass %s\")", error.c_str(),
                    target.has_variables ? target.url.source().c_str() : target.name.c_str());
        return nullptr;
    }
    mc.tls_contexts.push_back(std::move(t));
    return mc.tls_contexts.back().get();
}

}  // namespace

bool proxy_ssl_merge(ConfContext& cx, const ProxySslConf& p, ProxySslConf& c, const ProxyTarget* target) {
    merge_value(c.verify, p.verify, false);
    merge_value(c.server_name, p.server_name, false);
    merge_value(c.session_reuse, p.session_reuse, true);
    merge_value(c.verify_depth, p.verify_depth, uint64_t(1));
    merge_value(c.protocols, p.protocols, tls::kDefaultProtocols);
    merge_value(c.trusted_certificate, p.trusted_certificate);
    merge_value(c.crl, p.crl);
    merge_value(c.ciphers, p.ciphers);
    // The certificate and its key go together: a level that sets either takes neither from above.
    if (!c.certificate && !c.certificate_key) {
        c.certificate = p.certificate;
        c.certificate_key = p.certificate_key;
    }
    c.name_value = c.name_set ? &c.name : p.name_value;
    // Only a location that may talk to an https upstream needs a context
    // (with variables, the scheme is known per request).
    if (!target || (!target->https && !target->has_variables)) return true;
    if (c.certificate && !c.certificate_key)
        return cx.error_in(target->file, target->line, "no \"proxy_ssl_certificate_key\" is defined for certificate \"%s\"",
                           c.certificate->c_str());
    if (c.certificate_key && !c.certificate)
        return cx.error_in(target->file, target->line, "no \"proxy_ssl_certificate\" is defined for key \"%s\"",
                           c.certificate_key->c_str());
    if (*c.verify && !c.trusted_certificate)
        return cx.error_in(target->file, target->line, "no proxy_ssl_trusted_certificate for proxy_ssl_verify");
    tls::ClientContextOptions o;
    o.verify = *c.verify;
    o.trusted_certificate = c.trusted_certificate.value_or("");
    o.verify_depth = int(*c.verify_depth);
    o.crl = c.crl.value_or("");
    o.certificate = c.certificate.value_or("");
    o.certificate_key = c.certificate_key.value_or("");
    o.protocols = *c.protocols;
    o.ciphers = c.ciphers.value_or("");
    o.session_cache = *c.session_reuse;
    c.tls = context_for(cx, o, *c.session_reuse, *target);
    return c.tls != nullptr;
}

}  // namespace sluice::http
