// The TLS transport shared by client connections (listen ... ssl) and upstream
// connections (proxy_pass https://): OpenSSL objects owned by RAII types, the
// error text a config check or log line wants, ssl_protocols parsing, certificate
// loading, and non-blocking I/O steps on an SSL* over a non-blocking socket that
// tell a libevent-driven state machine which event to wait for.
#pragma once
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sluice {
class ConfContext;
}

namespace sluice::tls {

template <auto Free>
struct Deleter {
    template <typename T>
    void operator()(T* p) const { Free(p); }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Deleter<SSL_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509CrlPtr = std::unique_ptr<X509_CRL, Deleter<X509_CRL_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, Deleter<SSL_SESSION_free>>;

// Every error on this thread's OpenSSL error queue, oldest first, joined with
// "; " (the queue is left empty, so a later failure does not report a stale one).
// "" when the queue was empty.
std::string drain_errors();
void clear_errors();

// The set of protocol versions an `ssl_protocols` / `proxy_ssl_protocols` line
// names, as bits of kTls1 ... kTls13.
inline constexpr unsigned kTls1 = 1u << 0, kTls11 = 1u << 1, kTls12 = 1u << 2, kTls13 = 1u << 3;
inline constexpr unsigned kDefaultProtocols = kTls12 | kTls13;  // nginx 1.23.4+

// "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"; anything else (SSLv2, SSLv3
// included: no OpenSSL we link offers them) is an error naming it.
bool parse_protocols(std::span<const std::string_view> names, unsigned& set, std::string& error);
// The setter of `ssl_protocols` and `proxy_ssl_protocols`: every argument of
// the directive, into `field` (a duplicate directive is an error).
bool set_protocols_directive(ConfContext& cx, std::optional<unsigned>& field);
// The lowest and highest version of the set become the context's limits; a
// version left out between them is disabled with its SSL_OP_NO_ option.
bool apply_protocols(SSL_CTX* ctx, unsigned set, std::string& error);
// "TLSv1.2" for TLS1_2_VERSION; "unknown" for anything else.
std::string_view protocol_name(int version);

// Adds a certificate (the leaf first, then its chain) and its key to the
// context; called once per pair, so RSA and ECDSA pairs sit side by side and
// OpenSSL picks the one the client's signature algorithms allow. The error
// names the file and says why: unreadable, not a certificate/key, or a key
// that does not match the certificate.
bool add_certificate(SSL_CTX* ctx, const std::string& cert_file, const std::string& key_file,
                     std::string& error);

// Certificates trusted to sign peer certificates; the CA names are also sent to
// clients in the CertificateRequest when `send_names`.
bool load_trusted_certificates(SSL_CTX* ctx, const std::string& file, bool send_names, std::string& error);
// Revocation lists checked for the whole chain.
bool load_crl(SSL_CTX* ctx, const std::string& file, std::string& error);

// What a client context (the proxy's connection to an https upstream) verifies
// and presents. Empty strings mean "not set".
struct ClientContextOptions {
    bool verify = false;                 // proxy_ssl_verify
    std::string trusted_certificate;     // proxy_ssl_trusted_certificate; system store if empty
    int verify_depth = 1;                // proxy_ssl_verify_depth (nginx's default)
    std::string crl;                     // proxy_ssl_crl
    std::string certificate;             // proxy_ssl_certificate
    std::string certificate_key;         // proxy_ssl_certificate_key
    unsigned protocols = kDefaultProtocols;
    std::string ciphers;                 // TLS 1.2 cipher list; OpenSSL's default if empty
    bool session_cache = true;           // keep sessions for proxy_ssl_session_reuse
};
SslCtxPtr make_client_context(const ClientContextOptions& options, std::string& error);

// ---- non-blocking I/O on an SSL* whose BIO is a non-blocking socket ----

enum class IoStatus : uint8_t {
    Done,       // the step completed (bytes may be 0 only for a zero-length request)
    WantRead,   // wait until the socket is readable, then call again
    WantWrite,  // wait until the socket is writable, then call again with the same data
    Eof,        // the peer closed (close_notify, or a TCP close where one was allowed)
    Error,      // fatal: drain_errors() / SSL_get_verify_result() say why
};

struct IoResult {
    IoStatus status;
    size_t bytes;  // read or written before the status was reached
};

// Reads what is decrypted and available into buf, up to len bytes. Done with
// bytes > 0, or one of the other statuses with bytes == 0.
IoResult read(SSL* ssl, char* buf, size_t len);

// As read(), but the bytes stay to be read again (SSL_peek): tells a client
// that closed (Eof) from one that sent its next request (Done).
IoResult peek(SSL* ssl, char* buf, size_t len);

// Writes the pieces in order. Small pieces are gathered into records of up to
// kRecordSize bytes instead of one SSL_write (and one record) per piece. On
// WantRead/WantWrite `bytes` says how much went out; the caller drops those
// bytes and calls again with the rest (OpenSSL's retry rule is met because the
// same remaining bytes are gathered the same way).
inline constexpr size_t kRecordSize = 16384;
IoResult writev(SSL* ssl, const iovec* iov, int iovcnt);

// One step of the handshake (SSL_do_handshake).
IoStatus handshake(SSL* ssl);

// Sends close_notify without waiting for the peer's (as nginx does before
// closing). Done once it is sent or the connection is already broken.
IoStatus shutdown(SSL* ssl);

// Sets the modes the write path relies on (partial writes, a moving buffer)
// and releases idle buffers; call on every SSL* used with these functions.
void set_io_modes(SSL* ssl);

}  // namespace sluice::tls
