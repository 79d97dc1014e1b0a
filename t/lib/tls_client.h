// A TLS client for integration tests: OpenSSL over a loopback socket whose
// every wait is bounded (socket timeouts), with the knobs the TLS tests turn
// (SNI, protocol limits, signature algorithms, ALPN, a client certificate, a
// session to resume) and a response reader for one HTTP/1.1 response at a time.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "harness.h"

namespace sluice::test {

struct TlsClientOptions {
    std::string server_name;  // SNI; none when empty
    std::string ca_file;      // verify the server against it when set
    std::string cert_file, key_file;  // a client certificate
    int min_version = 0, max_version = 0;  // TLS1_2_VERSION ...; 0: OpenSSL's limits
    std::string sigalgs;      // e.g. "ECDSA+SHA256"; OpenSSL's list when empty
    std::string alpn;         // wire format list, e.g. "\x08http/1.1"; none when empty
    std::shared_ptr<SSL_SESSION> session;  // to resume
};

class TlsConn {
public:
    TlsConn(uint16_t port, const TlsClientOptions& options, Millis timeout = kDefaultTimeout);
    ~TlsConn();
    TlsConn(const TlsConn&) = delete;
    TlsConn& operator=(const TlsConn&) = delete;

    bool ok() const { return ok_; }  // connected and handshaken
    const std::string& error() const { return error_; }
    SSL* ssl() const { return ssl_; }
    bool session_reused() const { return SSL_session_reused(ssl_) == 1; }
    // The session to resume with (after a response: TLS 1.3 tickets come after the handshake).
    std::shared_ptr<SSL_SESSION> session() const;
    std::string peer_subject() const;  // the server certificate's subject, one line
    std::string peer_key_type() const; // "EC" or "RSA"
    std::string alpn_selected() const;

    bool send(std::string_view data);
    std::optional<Response> read_response(bool head_request = false);
    // Exactly n bytes (fewer if the server closes or the timeout passes).
    std::string read_bytes(size_t n);
    // Everything until the server closes (or the timeout).
    std::string read_until_close();
    // True once the server has closed the connection (EOF or close_notify).
    bool closed_by_peer();

private:
    bool fill();  // one read into buffer_; false on EOF or error
    bool read_body(Response& response, size_t start);

    int fd_ = -1;
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    bool ok_ = false;
    bool eof_ = false;
    std::string error_;
    std::string buffer_;
    std::shared_ptr<SSL_SESSION> latest_session_;
};

// One request on a fresh TLS connection (Host: the SNI name, or localhost,
// unless `extra_headers` has one); nullopt (and why on stderr) on failure.
std::optional<Response> https_get(uint16_t port, const TlsClientOptions& options, std::string_view path,
                                  std::string_view extra_headers = "");

}  // namespace sluice::test
