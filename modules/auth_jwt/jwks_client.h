// The HTTP(S) client that fetches a JWK Set for auth_jwt_key_url: one GET,
// non-blocking on an event_base (a worker's loop, or a private loop in the
// master at configuration load), with a deadline, a bounded response, status
// 200 only, and for https the certificate chain and host name verified.
#pragma once
#include "event/tls.h"

#include <openssl/types.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct event_base;

namespace sluice::auth_jwt {

// A JWKS document larger than this is a failed fetch.
constexpr size_t kMaxJwksSize = 256 * 1024;

struct KeyUrl {
    std::string text;  // as configured, for logs
    bool https = false;
    std::string host;    // without brackets
    uint16_t port = 0;
    std::string target;  // path and query: "/jwks.json"
    std::string host_header;
    // Resolved when the configuration is loaded (a blocking lookup is fine
    // there, never in a worker).
    struct Address {
        sockaddr_storage addr{};
        socklen_t len = 0;
        std::string text;  // "127.0.0.1:8443"
    };
    std::vector<Address> addresses;
};

// "http://host[:port]/path" or "https://...". No user info, no fragment.
bool parse_key_url(std::string_view text, KeyUrl& url, std::string& error);
// getaddrinfo(): configuration time only.
bool resolve_key_url(KeyUrl& url, std::string& error);

using SslCtxPtr = tls::SslCtxPtr;

// A client context that verifies the peer: against `ca_file` when given,
// else the system's default trust store.
SslCtxPtr make_client_ssl_ctx(const std::string& ca_file, std::string& error);

struct FetchResult {
    bool ok = false;
    std::string body;   // the document, when ok
    std::string error;  // why not, for the log
};

// One fetch. `done` is called exactly once, never from within start(); the
// owner may destroy the client after `done` returns (not inside it), and
// destroying it earlier cancels the fetch without calling `done`.
class JwksClient {
public:
    using Done = std::function<void(FetchResult&&)>;
    JwksClient(event_base* base, const KeyUrl& url, SSL_CTX* ssl_ctx, uint64_t timeout_ms);
    ~JwksClient();
    JwksClient(const JwksClient&) = delete;
    JwksClient& operator=(const JwksClient&) = delete;

    void start(Done done);
    bool finished() const;

    struct State;

private:
    std::unique_ptr<State> state_;
};

// Runs one fetch to completion on a private event loop: what the master
// does at configuration load, where blocking up to the timeout is fine.
FetchResult fetch_blocking(const KeyUrl& url, SSL_CTX* ssl_ctx, uint64_t timeout_ms);

}  // namespace sluice::auth_jwt
