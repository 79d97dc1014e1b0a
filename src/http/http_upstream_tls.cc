// TLS to upstream servers: contexts, the session cache, and the connection
// steps (see http_upstream_tls.h).
#include "http/http_upstream_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>

#include "http/http_upstream.h"

namespace sluice::http {

namespace {

std::string last_error;  // one worker per process

// The connection an SSL object belongs to, for the new-session callback.
int connection_index() {
    static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

UpstreamConnection* connection_of(SSL* ssl) {
    return static_cast<UpstreamConnection*>(SSL_get_ex_data(ssl, connection_index()));
}

// TLS 1.3 sends sessions after the handshake (while the response is read),
// TLS 1.2 at its end: this callback sees both.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
    UpstreamConnection* c = connection_of(ssl);
    if (!c || !c->tls || !c->tls->session_reuse) return 0;
    auto& sessions = c->tls->sessions;
    if (sessions.size() >= kMaxUpstreamTlsSessions && !sessions.count(c->tls_session_key))
        sessions.erase(sessions.begin());
    sessions[c->tls_session_key].reset(session);
    return 1;  // the reference is ours now
}

bool is_ip_address(const std::string& name) {
    unsigned char buf[16];
    return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// The name to verify, without the brackets of an IPv6 literal.
std::string bare_name(std::string_view name) {
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    return std::string(name);
}

ssize_t io_failed(tls::IoStatus status) {
    switch (status) {
    case tls::IoStatus::WantRead:
    case tls::IoStatus::WantWrite: errno = EAGAIN; return -1;
    case tls::IoStatus::Eof: return 0;
    default: break;
    }
    last_error = tls::drain_errors();
    if (last_error.empty()) last_error = errno ? strerror(errno) : "unknown error";
    errno = EPROTO;
    return -1;
}

}  // namespace

bool upstream_tls_init(UpstreamTls& t, const tls::ClientContextOptions& options, bool session_reuse,
                       std::string& error) {
    t.options = options;
    t.session_reuse = session_reuse;
    t.ctx = tls::make_client_context(options, error);
    if (!t.ctx) return false;
    // Renegotiation requested by a server is refused: nothing here needs it,
    // and a read that must write meanwhile is a case the proxy never waits for.
    SSL_CTX_set_options(t.ctx.get(), SSL_OP_NO_RENEGOTIATION);
    if (session_reuse) {
        SSL_CTX_set_session_cache_mode(t.ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(t.ctx.get(), on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(t.ctx.get(), SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(t.ctx.get(), SSL_OP_NO_TICKET);
    }
    return true;
}

bool upstream_tls_start(UpstreamConnection& c, UpstreamTls& t, std::string_view name, bool send_sni,
                        std::string_view peer_addr, std::string& error) {
    tls::clear_errors();
    tls::SslPtr ssl(SSL_new(t.ctx.get()));
    if (!ssl || SSL_set_fd(ssl.get(), c.fd) != 1) {
        error = "SSL_new() failed: " + tls::drain_errors();
        return false;
    }
    tls::set_io_modes(ssl.get());
    SSL_set_connect_state(ssl.get());
    std::string host = bare_name(name);
    const bool ip = is_ip_address(host);
    if (send_sni && !host.empty() && !ip && SSL_set_tlsext_host_name(ssl.get(), host.c_str()) != 1) {
        error = "SSL_set_tlsext_host_name(\"" + host + "\") failed: " + tls::drain_errors();
        return false;
    }
    if (t.options.verify) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
        if (ok != 1) {
            error = "cannot verify the name \"" + host + "\": " + tls::drain_errors();
            return false;
        }
    }
    c.tls = &t;
    c.tls_name.assign(name);
    c.tls_session_key.assign(host).append("/").append(peer_addr);
    if (t.session_reuse) {
        auto it = t.sessions.find(c.tls_session_key);
        if (it != t.sessions.end()) SSL_set_session(ssl.get(), it->second.get());
    }
    SSL_set_ex_data(ssl.get(), connection_index(), &c);
    c.ssl = ssl.release();
    return true;
}

tls::IoStatus upstream_tls_handshake(UpstreamConnection& c, std::string& error) {
    tls::IoStatus status = tls::handshake(c.ssl);
    if (status != tls::IoStatus::Error) return status;
    c.tls_broken = true;
    long verify = SSL_get_verify_result(c.ssl);
    if (verify != X509_V_OK) {
        tls::clear_errors();
        char text[256];
        snprintf(text, sizeof text, "upstream SSL certificate verify error: (%ld:%s)", verify,
                 X509_verify_cert_error_string(verify));
        error = text;
        // A session that failed verification is never offered again.
        if (c.tls) c.tls->sessions.erase(c.tls_session_key);
        return status;
    }
    error = tls::drain_errors();
    if (error.empty()) error = errno ? strerror(errno) : "peer closed connection in SSL handshake";
    if (c.tls) c.tls->sessions.erase(c.tls_session_key);
    return status;
}

ssize_t upstream_tls_read(UpstreamConnection& c, char* buf, size_t len) {
    tls::IoResult r = tls::read(c.ssl, buf, len);
    if (r.status == tls::IoStatus::Done) return ssize_t(r.bytes);
    if (r.status == tls::IoStatus::Error) c.tls_broken = true;
    return io_failed(r.status);
}

ssize_t upstream_tls_writev(UpstreamConnection& c, const iovec* iov, int iovcnt) {
    tls::IoResult r = tls::writev(c.ssl, iov, iovcnt);
    if (r.status == tls::IoStatus::Done || r.bytes > 0) return ssize_t(r.bytes);
    if (r.status == tls::IoStatus::Error || r.status == tls::IoStatus::Eof) c.tls_broken = true;
    if (r.status == tls::IoStatus::Eof) {
        errno = EPIPE;
        return -1;
    }
    return io_failed(r.status);
}

const std::string& upstream_tls_last_error() { return last_error; }

bool upstream_tls_idle_ok(UpstreamConnection& c) {
    char byte;
    tls::IoResult r = tls::read(c.ssl, &byte, 1);
    if (r.status == tls::IoStatus::WantRead) return true;
    tls::clear_errors();
    if (r.status != tls::IoStatus::Done) c.tls_broken = true;  // closed: no close_notify back
    return false;
}

void upstream_tls_close(UpstreamConnection& c) {
    if (!c.ssl) return;
    SSL_set_ex_data(c.ssl, connection_index(), nullptr);
    if (!c.tls_broken) tls::shutdown(c.ssl);
    tls::clear_errors();
    SSL_free(c.ssl);
    c.ssl = nullptr;
    c.tls = nullptr;
    c.tls_broken = false;
}

SSL* upstream_tls_detach(UpstreamConnection& c) {
    SSL* ssl = c.ssl;
    if (ssl) SSL_set_ex_data(ssl, connection_index(), nullptr);
    c.ssl = nullptr;
    c.tls = nullptr;
    c.tls_broken = false;
    return ssl;
}

}  // namespace sluice::http
