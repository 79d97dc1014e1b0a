// The proxy module: proxy_pass and its directives (nginx's
// ngx_http_proxy_module). Shared by the request path (proxy_module.cc: the
// content handler, connecting, retries), the upstream request
// (proxy_request.cc), the upstream response (proxy_response.cc), protocol
// upgrades (proxy_tunnel.cc), the variables (proxy_variables.cc) and the
// directives (directives.cc).
#pragma once
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "core/module.h"
#include "http/http_chunked.h"
#include "http/http_parse.h"
#include "http/http_request.h"
#include "http/http_upstream.h"
#include "http/http_upstream_tls.h"
#include "http/http_variables.h"
#include "proxy_cache.h"

namespace sluice {
extern Module proxy_module;
}

namespace sluice::http {

// proxy_next_upstream conditions, as nginx's NGX_HTTP_UPSTREAM_FT_*.
enum ProxyFailure : uint32_t {
    kFtError = 1u << 0,
    kFtTimeout = 1u << 1,
    kFtInvalidHeader = 1u << 2,
    kFtHttp500 = 1u << 3,
    kFtHttp502 = 1u << 4,
    kFtHttp503 = 1u << 5,
    kFtHttp504 = 1u << 6,
    kFtHttp403 = 1u << 7,
    kFtHttp404 = 1u << 8,
    kFtHttp429 = 1u << 9,
    kFtNonIdempotent = 1u << 10,
    kFtOff = 1u << 11,
};
// Failures that count against a server (max_fails) whether or not they are retried.
constexpr uint32_t kFtAlwaysFailed = kFtError | kFtTimeout | kFtInvalidHeader;

// What `proxy_pass URL` names.
struct ProxyTarget {
    Upstream* upstream = nullptr;  // null while unresolved, and when the URL has variables
    bool https = false;            // "https://": TLS to the upstream
    std::string name;              // the upstream{} name or "host[:port]" looked up
    bool explicit_port = false;
    std::string proxy_host;        // $proxy_host: host, with ":port" unless it is 80
    std::string proxy_port;        // $proxy_port
    bool has_uri = false;          // "http://b/x": the location prefix becomes "/x"
    std::string uri;
    std::string location_prefix;   // what `uri` replaces (prefix and exact locations)
    bool has_variables = false;
    ComplexValue url;              // evaluated per request when has_variables
    std::string file;              // where proxy_pass is, for errors found later
    int line = 0;
};

// proxy_set_header NAME VALUE (and the defaults Host and Connection).
struct ProxyHeader {
    std::string name;
    std::string lower;  // for case-insensitive comparison with client headers
    ComplexValue value;
};

// proxy_set_arg NAME VALUE / proxy_remove_arg NAME.
struct ProxyArgEdit {
    std::string name;
    ComplexValue value;
    bool remove = false;
};

// proxy_ssl_*: TLS to https upstreams (nginx's names and defaults).
struct ProxySslConf {
    std::optional<bool> verify, server_name, session_reuse;
    std::optional<uint64_t> verify_depth;
    std::optional<unsigned> protocols;  // tls::kTls12 | ...
    std::optional<std::string> trusted_certificate, crl, certificate, certificate_key, ciphers;  // full paths
    ComplexValue name;                  // proxy_ssl_name, with variables
    bool name_set = false;
    const ComplexValue* name_value = nullptr;  // after merge: own or inherited, null for the default

    // After merge, for locations that may proxy to https: the context
    // (owned by ProxyMainConf, shared by locations with the same settings).
    UpstreamTls* tls = nullptr;
};

// Response headers not passed to the client (lowercase names).
struct ProxyHiddenHeaders {
    std::vector<std::string> names;
    std::vector<std::string> passed_x_accel;  // every other "X-Accel-*" is hidden
};

struct ProxyLocConf : ModuleConf {
    ProxyTarget* target = nullptr;  // proxy_pass of this very location (owned by the cycle)

    std::optional<int> http_minor;  // proxy_http_version: 0 or 1
    std::optional<bool> buffering;
    std::optional<bool> request_buffering;
    std::optional<bool> pass_request_headers;
    std::optional<bool> intercept_errors;
    std::optional<bool> ignore_client_abort;
    std::optional<uint64_t> buffer_size;
    std::optional<uint64_t> buffers_num, buffers_size;
    std::optional<uint64_t> client_body_buffer_size;
    std::optional<std::string> client_body_temp_path;  // absolute after merge
    std::optional<uint64_t> connect_timeout_ms, send_timeout_ms, read_timeout_ms;
    std::optional<uint64_t> next_upstream_timeout_ms;
    std::optional<uint64_t> next_upstream_tries;
    std::optional<uint32_t> next_upstream;  // ProxyFailure bits

    // Lists that a level inherits only when it has none of its own, as nginx's.
    std::vector<ProxyHeader> own_headers;
    bool own_headers_set = false;
    std::vector<ProxyArgEdit> own_args;
    bool own_args_set = false;
    std::vector<std::string> hide_headers, pass_headers;  // lowercase
    bool hide_set = false, pass_set = false;

    // After merge: what requests use.
    std::shared_ptr<const std::vector<ProxyHeader>> headers;  // own or inherited, plus defaults
    std::shared_ptr<const std::vector<ProxyArgEdit>> args;
    std::shared_ptr<const ProxyHiddenHeaders> hidden;

    ProxyCacheConf cache;  // proxy_cache_* (proxy_cache.h)
    ProxySslConf ssl;      // proxy_ssl_*
};

struct ProxyMainConf : ModuleConf {
    // Targets whose upstream is resolved after the http{} block is read (an
    // upstream{} may follow the proxy_pass that names it, as in nginx).
    std::vector<ProxyTarget*> targets;
    // client_body_temp_path of every proxy_pass location and the
    // proxy_cache_path directories: created by the master.
    std::vector<std::string> temp_paths;
    bool defaults_compiled = false;
    ProxyHeader default_host, default_connection;
    // proxy_cache_path zones, in order (CacheZone::index).
    std::vector<std::unique_ptr<CacheZone>> cache_zones;
    // TLS client contexts, one per distinct proxy_ssl_* settings.
    std::vector<std::unique_ptr<UpstreamTls>> tls_contexts;
};

// ---- the per-request state ----

// One try of one server, for the $upstream_* variables.
struct ProxyAttempt {
    std::string_view addr;
    int status = 0;  // the upstream's, or 502/504 for gateway failures
    int64_t start_ms = 0, connect_ms = -1, header_ms = -1, end_ms = -1;
    uint64_t bytes_received = 0;
    ProxyAttempt* next = nullptr;
};

struct ProxyCtx;

class ProxyBodyReader final : public BodyReader {
public:
    ProxyCtx* ctx = nullptr;
    bool on_body_data(Request&, std::string_view data) override;
    void on_body_end(Request&, int status) override;
};

// How the request body travels to the upstream.
enum class ProxyBodyMode : uint8_t {
    None,      // no body
    Buffered,  // read whole first (memory, then a temp file): replayable on retries
    Stream,    // forwarded as it arrives, with the client's length
    StreamChunked,  // forwarded as it arrives, chunked (HTTP/1.1 upstreams)
};

struct ProxyCtx {
    Request* r = nullptr;
    const ProxyLocConf* conf = nullptr;
    Upstream* upstream = nullptr;
    Peer* peer = nullptr;
    TriedPeers tried;
    uint64_t tries = 0;
    int64_t start_ms = 0;  // the first try (proxy_next_upstream_timeout)
    std::string_view proxy_host, proxy_port;
    std::string_view uri;  // path?query sent upstream

    // The upstream connection (one at a time): its events stay registered
    // while it lives, in the pool too (http_upstream.h).
    UpstreamConnection* conn = nullptr;
    int fd = -1;                // conn->fd, or -1
    ssl_st* ssl = nullptr;      // conn->ssl: TLS I/O instead of the socket calls
    UpstreamTls* tls = nullptr; // https: the location's context (null for http)
    std::string_view tls_name;  // proxy_ssl_name's value for this request
    bool handshaking = false;
    bool from_pool = false;     // a kept-alive connection: a failure before any byte is retried once
    bool stale_retried = false;
    bool connected = false;
    bool peer_reported = true;  // upstream_peer_done already called for `peer`
    // proxy_send_timeout (or the connect timeout) and proxy_read_timeout run
    // independently: while a body streams up and the response streams down,
    // a stalled upload and a stalled download each time out. The
    // connection's timer fires by the earlier deadline (0: none); it is
    // lazy: moving a deadline later, or dropping it, leaves it pending, and
    // when it fires early it re-arms for what is left.
    int64_t send_deadline_ms = 0, read_deadline_ms = 0;

    // The request going out: the head, then the body.
    std::string_view head;
    uint64_t head_sent = 0;
    ProxyBodyMode body_mode = ProxyBodyMode::None;
    bool request_sent = false;     // head and body are all written
    bool body_started = false;     // streaming: body bytes are being forwarded (no retry after)
    bool body_done = false;        // the client's body ended (or there is none)
    bool body_paused = false;      // streaming: the client's body waits for the upstream socket
    bool asked_close = false;      // "Connection: close" went upstream
    bool upgrade_requested = false;
    ProxyBodyReader reader;
    // Buffered body: memory, then an unlinked temp file.
    char* body_mem = nullptr;
    size_t body_mem_cap = 0, body_mem_len = 0;
    bool body_mem_pooled = false;
    int body_file = -1;
    uint64_t body_file_len = 0;
    uint64_t body_sent = 0;        // bytes of mem + file written in this attempt
    // Streaming: bytes the upstream socket did not take yet.
    char* stage = nullptr;
    size_t stage_cap = 0, stage_len = 0, stage_off = 0;

    // The response.
    char* block = nullptr;         // proxy_buffer_size for the head, then the body window
    size_t block_size = 0;
    size_t used = 0;               // bytes at the front the core may still reference
    size_t head_filled = 0;        // response head bytes read so far
    ResponseHead* resp = nullptr;
    bool head_done = false;
    bool paused = false;           // waiting for the client to drain
    bool in_relay = false;
    bool upstream_eof = false;
    bool reusable = false;         // the response ended cleanly and both sides keep alive
    bool response_done = false;
    bool extra_bytes = false;      // the upstream sent more than the response: never reused
    uint64_t body_left = 0;        // Length responses
    ChunkedDecoder decoder;
    BodyChain* chain = nullptr;

    bool finished = false;         // the request was finalized
    // The client has its answer already (a stale entry served while the
    // cache refreshes it): the response only goes to the cache.
    bool sink = false;
    bool head_upstream = false;    // the method sent upstream is HEAD: no response body
    bool sent_authorization = false;  // the upstream request carries Authorization (RFC 9111 §3.5)
    ProxyCacheCtx* cache = nullptr;  // the location caches (proxy_cache.h)
    ProxyAttempt* attempts = nullptr;
    ProxyAttempt* attempt = nullptr;  // the current one
};

// ---- upstream I/O: plain sockets, or TLS (http_upstream_tls.h) ----
inline ssize_t proxy_read(ProxyCtx& ctx, char* buf, size_t len) {
    if (__builtin_expect(ctx.ssl != nullptr, 0)) return upstream_tls_read(*ctx.conn, buf, len);
    return ::read(ctx.fd, buf, len);
}
inline ssize_t proxy_writev(ProxyCtx& ctx, const iovec* iov, int cnt) {
    if (__builtin_expect(ctx.ssl != nullptr, 0)) return upstream_tls_writev(*ctx.conn, iov, cnt);
    return ::writev(ctx.fd, iov, cnt);
}

// ---- proxy_module.cc ----
Next proxy_handler(Request& r);
// After the cache had its say: reads the body if needed, connects, sends.
Next proxy_forward(ProxyCtx& ctx);
// Any failure of the current attempt: retries or answers. `ft` is a ProxyFailure bit.
void proxy_fail(ProxyCtx& ctx, uint32_t ft, const char* what, int err);
// The response reached its end or the client went away: release everything.
void proxy_finish(ProxyCtx& ctx, int status);
// The response was relayed completely.
void proxy_response_complete(ProxyCtx& ctx);
// Closes the current upstream connection (never pooled).
void proxy_close_upstream(ProxyCtx& ctx);
void proxy_want_read(ProxyCtx& ctx, bool on);
void proxy_want_write(ProxyCtx& ctx, bool on);
enum class ProxyTimer : uint8_t { Send, Read };
void proxy_arm_timer(ProxyCtx& ctx, ProxyTimer which, uint64_t ms);
void proxy_disarm_timer(ProxyCtx& ctx, ProxyTimer which);
void proxy_disarm_timers(ProxyCtx& ctx);
void proxy_log(ProxyCtx& ctx, LogLevel level, int err, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
bool proxy_method_idempotent(const Request& r);
// Per-worker reuse of the response windows and body buffers.
char* proxy_block_get(size_t size);
void proxy_block_put(char* block, size_t size);

// The ProxyFailure bit of an upstream status (0 for the others).
uint32_t proxy_status_failure(int status);
// Whether a listed status counts toward max_fails: 403 and 404 never do
// (the server works; what was asked for is missing), as in nginx.
bool proxy_failure_counts(uint32_t ft);
// A response head with a status listed in proxy_next_upstream: true when
// the request went to the next server instead.
bool proxy_retry_status(ProxyCtx& ctx, uint32_t ft, int status);
// The client's body is buffered completely: connect and send.
void proxy_body_buffered(ProxyCtx& ctx);
// The request body was read completely (or there is none): from now on a
// client that closes ends the request with 499 (proxy_ignore_client_abort off).
void proxy_watch_client(ProxyCtx& ctx);

// ---- proxy_request.cc ----
// Serializes the request head into ctx.head; false on an internal failure (500).
bool proxy_build_request(ProxyCtx& ctx);
// The path and query sent upstream.
std::string_view proxy_request_uri(ProxyCtx& ctx, std::string_view url_uri, bool has_url_uri);
// Writes what is due on the upstream socket. Returns false when the
// attempt failed (proxy_fail was called).
bool proxy_send(ProxyCtx& ctx);
// After a retry: send the same head and buffered body again.
void proxy_rewind_request(ProxyCtx& ctx);
void proxy_release_body(ProxyCtx& ctx);
// Chooses how the body goes upstream.
ProxyBodyMode proxy_body_mode(const ProxyCtx& ctx);
// $proxy_add_x_forwarded_for
std::string_view proxy_add_x_forwarded_for(Request& r);

// ---- proxy_response.cc ----
// A response header the location does not pass (proxy_hide_header, Date, Server, X-Accel-*).
bool proxy_header_hidden(const ProxyHiddenHeaders& h, std::string_view name);
// The upstream socket is readable.
void proxy_on_readable(ProxyCtx& ctx);
// The client took everything queued: read more.
void proxy_on_drain(Request& r, void* arg);

// ---- proxy_tunnel.cc ----
// After a 101: hands both connections to a tunnel. `to_client` is the 101
// head and whatever the upstream sent after it.
void proxy_start_tunnel(ProxyCtx& ctx, std::string_view to_client);

// ---- proxy_variables.cc ----
bool proxy_add_variables(Variables& variables);

// ---- ssl_directives.cc ----
bool set_proxy_ssl_file(ConfContext& cx, void* conf);  // certificate, key, trusted, crl
bool set_proxy_ssl_flag(ConfContext& cx, void* conf);  // verify, server_name, session_reuse
bool set_proxy_ssl_verify_depth(ConfContext& cx, void* conf);
bool set_proxy_ssl_protocols(ConfContext& cx, void* conf);
bool set_proxy_ssl_ciphers(ConfContext& cx, void* conf);
bool set_proxy_ssl_name(ConfContext& cx, void* conf);
// Merges proxy_ssl_* and, when `target` may be https, finds or builds its
// context (errors name the proxy_pass line).
bool proxy_ssl_merge(ConfContext& cx, const ProxySslConf& parent, ProxySslConf& child, const ProxyTarget* target);

// ---- directives.cc ----
// "http://host[:port][/uri]" split; false (with a reason) when invalid.
struct ProxyUrl {
    std::string_view host_port, host, port, uri;
    bool has_port = false, has_uri = false;
    bool https = false;
    uint16_t port_number = 80;  // 443 for https without a port
};
bool proxy_parse_url(std::string_view url, ProxyUrl& out, const char*& reason);

}  // namespace sluice::http
