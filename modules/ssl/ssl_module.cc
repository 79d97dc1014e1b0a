// The TLS module's runtime: each server's SSL_CTX and the callbacks on it
// (SNI, ALPN, client certificate verification), and the request checks
// nginx makes after the head is read (495, 496, 421).
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "core/log.h"
#include "http/http_connection.h"
#include "http/http_request.h"
#include "session_cache.h"
#include "ssl.h"
#include "ticket_keys.h"

namespace sluice::ssl {

using http::HttpConnection;
using http::Request;

SslSrvConf& srv_conf_of(const CoreSrvConf& server) {
    return *static_cast<SslSrvConf*>(server.srv_confs[size_t(ssl_module.ctx_index)]);
}

namespace {

// ---- callbacks ----

int first_error_index() {
    static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// The handshake always completes; whether a certificate was required and
// good is the request's question (495/496 pages, $ssl_client_verify), as in
// nginx. The result kept is the chain's first error (an unknown CA, not the
// missing CRL that follows from it), so optional_no_ca can tell them apart.
int accept_for_later_check(int ok, X509_STORE_CTX* store) {
    if (ok) return 1;
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    if (!ssl) return 1;
    auto first = reinterpret_cast<intptr_t>(SSL_get_ex_data(ssl, first_error_index()));
    if (first == 0) SSL_set_ex_data(ssl, first_error_index(), reinterpret_cast<void*>(intptr_t(X509_STORE_CTX_get_error(store))));
    else X509_STORE_CTX_set_error(store, int(first));
    return 1;
}

// SNI: the named server's context (certificates, verification, session
// settings), and that server becomes the connection's default for requests
// whose Host names none.
int on_server_name(SSL* ssl, int*, void*) {
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    HttpConnection* c = http::connection_of(ssl);
    if (!name || !c) return SSL_TLSEXT_ERR_NOACK;
    std::string host(name);
    for (char& ch : host) ch = char(tolower(static_cast<unsigned char>(ch)));
    if (!host.empty() && host.back() == '.') host.pop_back();
    auto& address = *static_cast<const AddressServers*>(c->listening().data);
    CoreSrvConf* server = http::find_server(address, host, nullptr);
    SslSrvConf& conf = srv_conf_of(*server);
    c->set_default_server(server);
    if (!conf.ctx || conf.ctx.get() == SSL_get_SSL_CTX(ssl)) return SSL_TLSEXT_ERR_OK;
    SSL_CTX* ctx = conf.ctx.get();
    SSL_set_SSL_CTX(ssl, ctx);
    // SSL_set_SSL_CTX takes the certificates; the rest is copied by hand (nginx does the same).
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    return SSL_TLSEXT_ERR_OK;
}

// ALPN: HTTP/1.1 only; a client offering only other protocols (h2 alone)
// is refused, as nginx refuses it.
int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen, void*) {
    static const unsigned char kHttp11[] = "\x08http/1.1";
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

// ---- building a context ----

bool config_error(ConfContext& cx, const FileRef& where, const std::string& message) {
    return cx.error_in(where.conf_file, where.conf_line, "%s", message.c_str());
}

// Sessions made for one server must not resume on another with different
// certificates or client verification (a session from a server without mTLS
// would skip another's client check): the context id is a digest of them.
void set_session_id_context(SSL_CTX* ctx, const SslSrvConf& conf) {
    std::string material;
    for (const FileRef& f : conf.certificates) material += f.path + '\n';
    for (const auto& f : {conf.client_certificate, conf.trusted_certificate, conf.crl})
        material += (f ? f->path : "") + '\n';
    material += std::to_string(int(*conf.verify_client)) + ',' + std::to_string(*conf.verify_depth);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(material.data(), material.size(), digest, &len, EVP_sha256(), nullptr);
    SSL_CTX_set_session_id_context(ctx, digest, std::min<unsigned>(len, SSL_MAX_SID_CTX_LENGTH));
}

bool set_certificates(ConfContext& cx, SSL_CTX* ctx, const SslSrvConf& conf) {
    for (size_t i = 0; i < conf.certificates.size(); ++i) {
        const FileRef& cert = conf.certificates[i];
        if (i >= conf.certificate_keys.size())
            return config_error(cx, cert, "no \"ssl_certificate_key\" is defined for certificate \"" + cert.path + "\"");
        std::string error;
        if (!tls::add_certificate(ctx, cert.path, conf.certificate_keys[i].path, error))
            return config_error(cx, conf.certificate_keys[i], error);
    }
    return true;
}

bool set_verification(ConfContext& cx, SSL_CTX* ctx, const SslSrvConf& conf) {
    std::string error;
    VerifyClient mode = *conf.verify_client;
    if (mode != VerifyClient::Off) {
        if (!conf.client_certificate && !conf.trusted_certificate && mode != VerifyClient::OptionalNoCa)
            return cx.error_in(conf.server->conf_file, conf.server->conf_line,
                               "no ssl_client_certificate or ssl_trusted_certificate for ssl_verify_client");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_for_later_check);
        SSL_CTX_set_verify_depth(ctx, int(*conf.verify_depth));
    }
    if (conf.client_certificate &&
        !tls::load_trusted_certificates(ctx, conf.client_certificate->path, true, error))
        return config_error(cx, *conf.client_certificate, error);
    if (conf.trusted_certificate &&
        !tls::load_trusted_certificates(ctx, conf.trusted_certificate->path, false, error))
        return config_error(cx, *conf.trusted_certificate, error);
    if (conf.crl && !tls::load_crl(ctx, conf.crl->path, error)) return config_error(cx, *conf.crl, error);
    return true;
}

bool set_sessions(ConfContext& cx, SSL_CTX* ctx, SslSrvConf& conf) {
    SSL_CTX_set_timeout(ctx, long(*conf.session_timeout_sec));
    if (conf.session_cache_off) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    } else {
        long mode = SSL_SESS_CACHE_SERVER;
        if (conf.builtin_cache_size < 0) mode |= SSL_SESS_CACHE_NO_INTERNAL;
        else SSL_CTX_sess_set_cache_size(ctx, conf.builtin_cache_size);
        // Without any cache ("none", nginx's default) OpenSSL's own is kept
        // from filling: resumption needs a cache or a ticket.
        if (conf.builtin_cache_size < 0 && !conf.shared_cache) mode = SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL;
        SSL_CTX_set_session_cache_mode(ctx, mode);
        if (conf.shared_cache) conf.shared_cache->attach(ctx);
    }
    if (!*conf.session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        return true;
    }
    auto* keys = cx.cycle().make<std::vector<TicketKey>>();
    for (const FileRef& file : conf.ticket_key_files) {
        TicketKey key;
        std::string error;
        if (!read_ticket_key(file.path, key, error)) return config_error(cx, file, error);
        keys->push_back(key);
    }
    if (keys->empty()) keys->push_back(process_ticket_key());
    conf.ticket_keys = keys;
    use_ticket_keys(ctx, keys);
    return true;
}

bool set_ciphers(ConfContext& cx, SSL_CTX* ctx, const SslSrvConf& conf) {
    const CoreSrvConf& s = *conf.server;
    if (SSL_CTX_set_cipher_list(ctx, conf.ciphers->c_str()) != 1)
        return cx.error_in(s.conf_file, s.conf_line, "SSL_CTX_set_cipher_list(\"%s\") failed: %s", conf.ciphers->c_str(),
                           tls::drain_errors().c_str());
    if (*conf.prefer_server_ciphers) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (*conf.ecdh_curve != "auto" && SSL_CTX_set1_curves_list(ctx, conf.ecdh_curve->c_str()) != 1)
        return cx.error_in(s.conf_file, s.conf_line, "SSL_CTX_set1_curves_list(\"%s\") failed: %s",
                           conf.ecdh_curve->c_str(), tls::drain_errors().c_str());
    return true;
}

}  // namespace

bool build_server_context(ConfContext& cx, SslSrvConf& conf) {
    tls::clear_errors();
    tls::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) return cx.error("SSL_CTX_new() failed: %s", tls::drain_errors().c_str());
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
    std::string error;
    if (!tls::apply_protocols(ctx.get(), *conf.protocols, error))
        return cx.error_in(conf.server->conf_file, conf.server->conf_line, "%s", error.c_str());
    if (!set_certificates(cx, ctx.get(), conf) || !set_ciphers(cx, ctx.get(), conf) ||
        !set_verification(cx, ctx.get(), conf) || !set_sessions(cx, ctx.get(), conf))
        return false;
    set_session_id_context(ctx.get(), conf);
    SSL_CTX_set_tlsext_servername_callback(ctx.get(), on_server_name);
    SSL_CTX_set_alpn_select_cb(ctx.get(), on_alpn, nullptr);
    conf.ctx = std::move(ctx);
    return true;
}

// ---- the request checks ----

namespace {

// nginx's ngx_ssl_verify_error_optional: with optional_no_ca a chain that
// merely ends at an unknown CA is accepted (the application decides).
bool unknown_ca_error(long result) {
    return result == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT || result == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
           result == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT || result == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
           result == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
}

Next check_client_certificate(Request& r) {
    HttpConnection& c = r.connection();
    SSL* ssl = c.ssl();
    if (!ssl || r.internal()) return Next::Continue;
    SslSrvConf& conf = srv_conf_of(r.server());
    VerifyClient mode = conf.verify_client.value_or(VerifyClient::Off);
    // The Host chose another server than SNI did, and that server verifies
    // clients: its verification never ran on this connection (nginx: 421).
    if (SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) && &r.server() != c.default_server() &&
        mode != VerifyClient::Off) {
        SLUICE_LOG(LogLevel::Info, "*%llu client attempted to request the server name different from the one that was negotiated, client: %s",
                   static_cast<unsigned long long>(r.connection_number()), std::string(r.remote_addr()).c_str());
        r.set_status(421);
        return Next::Finish;
    }
    if (mode == VerifyClient::Off) return Next::Continue;
    long result = SSL_get_verify_result(ssl);
    if (result != X509_V_OK && !(mode == VerifyClient::OptionalNoCa && unknown_ca_error(result))) {
        SLUICE_LOG(LogLevel::Info, "*%llu client SSL certificate verify error: (%ld:%s), client: %s",
                   static_cast<unsigned long long>(r.connection_number()), result, X509_verify_cert_error_string(result),
                   std::string(r.remote_addr()).c_str());
        r.set_status(495);
        return Next::Finish;
    }
    if (mode == VerifyClient::On && !SSL_get0_peer_certificate(ssl)) {
        SLUICE_LOG(LogLevel::Info, "*%llu client sent no required SSL certificate, client: %s",
                   static_cast<unsigned long long>(r.connection_number()), std::string(r.remote_addr()).c_str());
        r.set_status(496);
        return Next::Finish;
    }
    return Next::Continue;
}

}  // namespace

bool install_request_checks(ConfContext&, HttpPhases& phases) {
    phases.add(Phase::PostRead, check_client_certificate);
    return true;
}

}  // namespace sluice::ssl
