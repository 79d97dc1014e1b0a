#include "tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace sluice::test {

namespace {

std::string ssl_errors() {
    std::string text;
    char buf[256];
    while (unsigned long e = ERR_get_error()) {
        ERR_error_string_n(e, buf, sizeof buf);
        if (!text.empty()) text += "; ";
        text += buf;
    }
    return text;
}

int connect_loopback(uint16_t port, Millis timeout) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    timeval tv{time_t(timeout.count() / 1000), suseconds_t(timeout.count() % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Keeps the newest session the server gave (as s_client -sess_out does): a
// TLS 1.3 ticket that arrives on a resumed connection is only seen here.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* latest = static_cast<std::shared_ptr<SSL_SESSION>*>(SSL_get_app_data(ssl));
    if (!latest) return 0;
    *latest = std::shared_ptr<SSL_SESSION>(session, SSL_SESSION_free);
    return 1;  // the reference is ours
}

}  // namespace

TlsConn::TlsConn(uint16_t port, const TlsClientOptions& o, Millis timeout) {
    // SSL_write (a close_notify included) to a connection the server closed
    // must be an error here, not the end of the test process.
    static const bool sigpipe_ignored = [] { return signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
    (void)sigpipe_ignored;
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (o.min_version) SSL_CTX_set_min_proto_version(ctx_, o.min_version);
    if (o.max_version) SSL_CTX_set_max_proto_version(ctx_, o.max_version);
    if (!o.sigalgs.empty()) SSL_CTX_set1_sigalgs_list(ctx_, o.sigalgs.c_str());
    if (!o.ca_file.empty()) {
        SSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr);
        SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!o.cert_file.empty() && (SSL_CTX_use_certificate_chain_file(ctx_, o.cert_file.c_str()) != 1 ||
                                 SSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
        error_ = "client certificate: " + ssl_errors();
        return;
    }
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx_, on_new_session);
    fd_ = connect_loopback(port, timeout);
    if (fd_ < 0) {
        error_ = "connect: " + std::string(strerror(errno));
        return;
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_app_data(ssl_, &latest_session_);
    if (!o.server_name.empty()) SSL_set_tlsext_host_name(ssl_, o.server_name.c_str());
    if (!o.alpn.empty())
        SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(o.alpn.data()), unsigned(o.alpn.size()));
    if (o.session) {
        // A copy, as a client that stored the session would have: OpenSSL marks
        // the object itself not resumable once a TLS 1.3 ticket in it was used
        // (single-use on the client side), while the server may accept it again.
        int len = i2d_SSL_SESSION(o.session.get(), nullptr);
        std::string der(size_t(std::max(len, 0)), '\0');
        auto* out = reinterpret_cast<unsigned char*>(der.data());
        i2d_SSL_SESSION(o.session.get(), &out);
        const auto* in = reinterpret_cast<const unsigned char*>(der.data());
        SSL_SESSION* copy = d2i_SSL_SESSION(nullptr, &in, len);
        if (copy) {
            SSL_set_session(ssl_, copy);
            SSL_SESSION_free(copy);
        }
    }
    if (SSL_connect(ssl_) != 1) {
        error_ = "handshake: " + ssl_errors();
        long v = SSL_get_verify_result(ssl_);
        if (v != X509_V_OK) error_ += std::string(" (verify: ") + X509_verify_cert_error_string(v) + ")";
        return;
    }
    ok_ = true;
}

TlsConn::~TlsConn() {
    // A session freed without a shutdown is marked not resumable.
    if (ssl_ && ok_) SSL_shutdown(ssl_);
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
    if (fd_ >= 0) close(fd_);
}

std::shared_ptr<SSL_SESSION> TlsConn::session() const {
    if (latest_session_) return latest_session_;
    SSL_SESSION* s = ssl_ ? SSL_get1_session(ssl_) : nullptr;
    if (!s) return nullptr;
    return std::shared_ptr<SSL_SESSION>(s, SSL_SESSION_free);
}

std::string TlsConn::peer_subject() const {
    X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
    if (!cert) return "";
    char buf[512];
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    return buf;
}

std::string TlsConn::peer_key_type() const {
    X509* cert = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
    if (!cert) return "";
    EVP_PKEY* key = X509_get0_pubkey(cert);
    if (EVP_PKEY_is_a(key, "EC")) return "EC";
    if (EVP_PKEY_is_a(key, "RSA")) return "RSA";
    return "other";
}

std::string TlsConn::alpn_selected() const {
    const unsigned char* p = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &p, &len);
    return p ? std::string(reinterpret_cast<const char*>(p), len) : "";
}

bool TlsConn::send(std::string_view data) {
    while (!data.empty()) {
        size_t written = 0;
        if (SSL_write_ex(ssl_, data.data(), data.size(), &written) != 1) {
            error_ = "write: " + ssl_errors();
            return false;
        }
        data.remove_prefix(written);
    }
    return true;
}

bool TlsConn::fill() {
    if (eof_) return false;
    char buf[16384];
    size_t got = 0;
    if (SSL_read_ex(ssl_, buf, sizeof buf, &got) == 1) {
        buffer_.append(buf, got);
        return true;
    }
    int err = SSL_get_error(ssl_, 0);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {  // the socket's timeout
        error_ = "read: timed out";
        return false;
    }
    eof_ = true;
    if (err != SSL_ERROR_ZERO_RETURN) error_ = "read: " + std::to_string(err) + " " + ssl_errors();
    return false;
}

std::optional<Response> TlsConn::read_response(bool head_request) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos)
        if (!fill()) return std::nullopt;
    Response r;
    r.raw_head = buffer_.substr(0, end + 4);
    size_t line_end = buffer_.find("\r\n");
    std::string status_line = buffer_.substr(0, line_end);
    if (status_line.size() < 12) return std::nullopt;
    r.version = status_line.substr(0, 8);
    r.status = std::stoi(status_line.substr(9, 3));
    r.reason = status_line.size() > 13 ? status_line.substr(13) : "";
    for (size_t pos = line_end + 2; pos < end;) {
        size_t eol = buffer_.find("\r\n", pos);
        std::string line = buffer_.substr(pos, eol - pos);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
            size_t v = line.find_first_not_of(' ', colon + 1);
            r.headers.push_back({line.substr(0, colon), v == std::string::npos ? "" : line.substr(v)});
        }
        pos = eol + 2;
    }
    buffer_.erase(0, end + 4);
    if (head_request || r.status == 204 || r.status == 304 || r.status / 100 == 1) return r;
    if (!read_body(r, 0)) return std::nullopt;
    return r;
}

bool TlsConn::read_body(Response& r, size_t) {
    std::string length = r.header("Content-Length");
    if (!length.empty()) {
        size_t n = std::stoul(length);
        while (buffer_.size() < n)
            if (!fill()) return false;
        r.body = buffer_.substr(0, n);
        buffer_.erase(0, n);
        return true;
    }
    if (r.header("Transfer-Encoding").find("chunked") != std::string::npos) {
        for (;;) {
            size_t eol;
            while ((eol = buffer_.find("\r\n")) == std::string::npos)
                if (!fill()) return false;
            size_t size = std::stoul(buffer_.substr(0, eol), nullptr, 16);
            while (buffer_.size() < eol + 2 + size + 2)
                if (!fill()) return false;
            r.body.append(buffer_, eol + 2, size);
            buffer_.erase(0, eol + 2 + size + 2);
            if (size == 0) return true;  // no trailers from sluice's responses to these tests
        }
    }
    while (fill()) {}
    r.body = std::move(buffer_);
    buffer_.clear();
    return true;
}

std::string TlsConn::read_bytes(size_t n) {
    while (buffer_.size() < n)
        if (!fill()) break;
    std::string out = buffer_.substr(0, n);
    buffer_.erase(0, out.size());
    return out;
}

std::string TlsConn::read_until_close() {
    while (fill()) {}
    std::string all = std::move(buffer_);
    buffer_.clear();
    return all;
}

bool TlsConn::closed_by_peer() {
    while (fill()) {}
    return eof_;
}

std::optional<Response> https_get(uint16_t port, const TlsClientOptions& options, std::string_view path,
                                  std::string_view extra_headers) {
    TlsConn c(port, options);
    if (!c.ok()) {
        fprintf(stderr, "https_get: %s\n", c.error().c_str());
        return std::nullopt;
    }
    std::string host = options.server_name.empty() ? "localhost" : options.server_name;
    std::string request = "GET " + std::string(path) + " HTTP/1.1\r\n";
    if (extra_headers.find("Host:") == std::string_view::npos) request += "Host: " + host + "\r\n";
    if (extra_headers.find("Connection:") == std::string_view::npos) request += "Connection: close\r\n";
    request += std::string(extra_headers) + "\r\n";
    if (!c.send(request)) return std::nullopt;
    auto r = c.read_response();
    if (!r) fprintf(stderr, "https_get: no response: %s\n", c.error().c_str());
    return r;
}

}  // namespace sluice::test
