// TLS to upstream servers (proxy_pass https://...): a client context with
// the settings of the locations that share it, the per-worker cache of
// sessions to resume, and the steps an UpstreamConnection goes through:
// start (SNI, the name to verify, a session to offer), handshake, reads and
// writes, close_notify. Plain connections never come here: their code path
// stays the plain socket calls.
#pragma once
#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "event/tls.h"

namespace sluice::http {

struct UpstreamConnection;

// One client context and what connections made with it share. Locations
// with identical settings share one, so their connections share the
// keep-alive pool; a pooled connection is only ever reused with the same
// UpstreamTls and the same server name.
struct UpstreamTls {
    tls::SslCtxPtr ctx;
    tls::ClientContextOptions options;  // what made ctx (to share it between locations)
    bool session_reuse = true;          // proxy_ssl_session_reuse

    // Per worker (the object is copied into each worker with the cycle):
    // the last session of each "server name / peer address", offered on the
    // next connection there, as nginx keeps one per peer.
    std::unordered_map<std::string, tls::SslSessionPtr> sessions;
};

// Sessions kept per context and worker; past this, the oldest are dropped.
constexpr size_t kMaxUpstreamTlsSessions = 1024;

// Builds the context for `options`; `error` says why it could not.
bool upstream_tls_init(UpstreamTls& tls, const tls::ClientContextOptions& options, bool session_reuse,
                       std::string& error);

// Puts TLS on a connected socket: `name` is proxy_ssl_name's value (a host
// name, or an IP address, which is never sent as SNI: RFC 6066 3), sent as
// SNI when `send_sni`, checked against the certificate when the context
// verifies. `peer_addr` keys the session cache. False (with `error`) when
// OpenSSL could not make the SSL object.
bool upstream_tls_start(UpstreamConnection& c, UpstreamTls& tls, std::string_view name, bool send_sni,
                        std::string_view peer_addr, std::string& error);

// One handshake step. On Error, `error` is the reason in nginx's words
// ("upstream SSL certificate verify error: (10:certificate has expired)"
// or OpenSSL's error queue).
tls::IoStatus upstream_tls_handshake(UpstreamConnection& c, std::string& error);

// read(2) and writev(2) over TLS: the same results (-1 with errno EAGAIN
// when the socket must be waited for, EPROTO on a TLS failure whose text
// upstream_tls_last_error() holds; 0 at close_notify or EOF).
ssize_t upstream_tls_read(UpstreamConnection& c, char* buf, size_t len);
ssize_t upstream_tls_writev(UpstreamConnection& c, const iovec* iov, int iovcnt);
// The OpenSSL reason of the worker's last TLS read or write failure.
const std::string& upstream_tls_last_error();

// An idle pooled TLS connection turned readable: true when it can stay
// (the bytes were only a TLS record with no data, such as a session
// ticket); false when the peer closed (close_notify, EOF) or sent data.
bool upstream_tls_idle_ok(UpstreamConnection& c);

// Sends close_notify when the session is sound (nginx does, before
// closing) and frees the SSL object. Nothing for a plain connection.
void upstream_tls_close(UpstreamConnection& c);
// Takes the SSL object away from the connection (a tunnel owns it from now on).
SSL* upstream_tls_detach(UpstreamConnection& c);

}  // namespace sluice::http
