// proxy_pass on the request path: the content handler, choosing a server,
// connecting (or reusing a kept-alive connection), the timeouts, and what
// happens when an attempt fails: the next server, or 502/504.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "core/log.h"
#include "core/str.h"
#include "event/worker.h"
#include "http/http_connection.h"
#include "proxy.h"

namespace sluice::http {

namespace {

// ---- per-worker reuse of response windows and body buffers ----

constexpr size_t kMaxIdleBlocksPerSize = 64;
constexpr size_t kMaxBlockSizes = 16;

struct BlockClass {
    size_t size;
    std::vector<char*> idle;
};
std::vector<BlockClass> block_classes;  // one worker per process: no locking

// ---- events ----

void on_write(ProxyCtx& ctx);
void on_timer(ProxyCtx& ctx);

void on_upstream_event(UpstreamConnection& c, short what) {
    auto& ctx = *static_cast<ProxyCtx*>(c.owner);
    if (what & EV_TIMEOUT) on_timer(ctx);
    else if (what & EV_READ) proxy_on_readable(ctx);
    else on_write(ctx);
}

// The connection is the request's now: its events come here.
void take_connection(ProxyCtx& ctx, UpstreamConnection* c) {
    c->handler = on_upstream_event;
    c->owner = &ctx;
    ctx.conn = c;
    ctx.fd = c->fd;
    ctx.ssl = c->ssl;
}

void report_peer(ProxyCtx& ctx, bool failed) {
    if (ctx.peer_reported || !ctx.peer) return;
    ctx.peer_reported = true;
    upstream_peer_done(*ctx.upstream, *ctx.peer, failed);
}

void cleanup(void* arg) {
    auto& ctx = *static_cast<ProxyCtx*>(arg);
    proxy_close_upstream(ctx);
    report_peer(ctx, false);
    proxy_block_put(ctx.block, ctx.block_size);
    ctx.block = nullptr;
    proxy_release_body(ctx);
}

// ---- choosing the target ----

// 0, or the status to answer with.
int resolve_target(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    const ProxyTarget& t = *ctx.conf->target;
    if (!t.has_variables) {
        ctx.upstream = t.upstream;
        ctx.proxy_host = t.proxy_host;
        ctx.proxy_port = t.proxy_port;
        ctx.uri = proxy_request_uri(ctx, {}, false);
        if (t.https) ctx.tls = ctx.conf->ssl.tls;
        return 0;
    }
    std::string_view url = t.url.eval(r);
    ProxyUrl u;
    const char* reason = nullptr;
    if (!proxy_parse_url(url, u, reason)) {
        proxy_log(ctx, LogLevel::Error, 0, "invalid URL \"%.*s\" in \"proxy_pass\": %s", int(url.size()), url.data(), reason);
        return 500;
    }
    const Cycle& cycle = r.connection().worker().cycle();
    std::string_view name = u.has_port ? u.host_port : u.host;
    ctx.upstream = find_upstream(cycle, name);
    if (!ctx.upstream) {
        proxy_log(ctx, LogLevel::Error, 0, "no upstream \"%.*s\" is defined (proxy_pass with variables names an upstream)",
                  int(name.size()), name.data());
        return 502;
    }
    ctx.proxy_host = u.port_number == (u.https ? 443 : 80) ? u.host : u.host_port;
    ctx.proxy_port = u.port;
    ctx.uri = proxy_request_uri(ctx, u.uri, u.has_uri);
    if (u.https) ctx.tls = ctx.conf->ssl.tls;
    return 0;
}

// "host:port" and "[v6]:port" without the port; a bare IPv6 address as it is.
std::string_view without_port(std::string_view name) {
    size_t colon = name.rfind(':');
    if (colon == std::string_view::npos) return name;
    if (!name.empty() && name.front() == '[') {
        size_t bracket = name.rfind(']');
        return bracket != std::string_view::npos && colon > bracket ? name.substr(0, colon) : name;
    }
    return name.find(':') == colon ? name.substr(0, colon) : name;
}

// proxy_ssl_name's value (by default the proxy_pass host), without a port, as nginx's.
std::string_view tls_name(ProxyCtx& ctx) {
    const ComplexValue* configured = ctx.conf->ssl.name_value;
    return without_port(configured ? configured->eval(*ctx.r) : ctx.proxy_host);
}

// ---- the TLS handshake (https upstreams) ----

void connected(ProxyCtx& ctx);

void handshake_step(ProxyCtx& ctx) {
    std::string error;
    switch (upstream_tls_handshake(*ctx.conn, error)) {
    case tls::IoStatus::Done:
        ctx.handshaking = false;
        ctx.conn->handler = on_upstream_event;
        ctx.ssl = ctx.conn->ssl;
        proxy_want_write(ctx, false);
        connected(ctx);
        return;
    case tls::IoStatus::WantRead:
        proxy_want_write(ctx, false);
        proxy_want_read(ctx, true);
        return;
    case tls::IoStatus::WantWrite:
        proxy_want_write(ctx, true);
        return;
    default: {
        char what[600];
        snprintf(what, sizeof what, "SSL_do_handshake() failed (SSL: %s) while SSL handshaking to upstream",
                 error.c_str());
        proxy_fail(ctx, kFtError, what, 0);
        return;
    }
    }
}

void on_handshake_event(UpstreamConnection& c, short what) {
    auto& ctx = *static_cast<ProxyCtx*>(c.owner);
    if (what & EV_TIMEOUT) on_timer(ctx);
    else handshake_step(ctx);
}

// After the TCP connect: TLS first for https upstreams, bounded by what is
// left of proxy_connect_timeout (nginx's).
void transport_ready(ProxyCtx& ctx) {
    if (!ctx.tls) {
        connected(ctx);
        return;
    }
    std::string error;
    const bool sni = *ctx.conf->ssl.server_name;
    if (!upstream_tls_start(*ctx.conn, *ctx.tls, ctx.tls_name, sni, ctx.peer->addr_text, error)) {
        char what[600];
        snprintf(what, sizeof what, "%s while SSL handshaking to upstream", error.c_str());
        proxy_fail(ctx, kFtError, what, 0);
        return;
    }
    ctx.handshaking = true;
    ctx.conn->handler = on_handshake_event;
    if (!ctx.send_deadline_ms) proxy_arm_timer(ctx, ProxyTimer::Send, *ctx.conf->connect_timeout_ms);
    handshake_step(ctx);
}

// ---- connecting ----

void connected(ProxyCtx& ctx) {
    ctx.connected = true;
    ctx.attempt->connect_ms = current_msec();
    proxy_disarm_timer(ctx, ProxyTimer::Send);
    proxy_want_read(ctx, true);
    proxy_send(ctx);
}

void connect_peer(ProxyCtx& ctx, bool allow_pool) {
    Upstream& up = *ctx.upstream;
    Peer& peer = *ctx.peer;
    ctx.connected = false;
    ctx.head_filled = 0;
    ctx.attempt->bytes_received = 0;
    if (allow_pool && up.keepalive) {
        // Its read event is still added from its previous requests.
        if (UpstreamConnection* c = upstream_keepalive_get(up, peer, ctx.tls, ctx.tls_name)) {
            ctx.from_pool = true;
            take_connection(ctx, c);
            connected(ctx);
            return;
        }
    }
    ctx.from_pool = false;
    int fd = ::socket(peer.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        proxy_fail(ctx, kFtError, "socket() failed while connecting to upstream", errno);
        return;
    }
    // Heads and small bodies go out in single writes; Nagle would only delay them.
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    take_connection(ctx, upstream_connection_open(Worker::current().base(), fd, on_upstream_event, &ctx));
    if (::connect(ctx.fd, reinterpret_cast<const sockaddr*>(&peer.addr), peer.addr_len) == 0) {
        transport_ready(ctx);
        return;
    }
    if (errno != EINPROGRESS) {
        proxy_fail(ctx, kFtError, "connect() failed while connecting to upstream", errno);
        return;
    }
    proxy_want_write(ctx, true);
    proxy_arm_timer(ctx, ProxyTimer::Send, *ctx.conf->connect_timeout_ms);
}

void new_attempt(ProxyCtx& ctx) {
    auto* a = ctx.r->make<ProxyAttempt>();
    a->addr = ctx.peer->addr_text;
    a->start_ms = current_msec();
    if (ctx.attempt) ctx.attempt->next = a;
    else ctx.attempts = a;
    ctx.attempt = a;
}

// Connects to a server upstream_select_peer() chose.
void start_attempt(ProxyCtx& ctx, Peer* peer) {
    // proxy_next_upstream_timeout counts from the first try, as nginx's:
    // reading a buffered body before it is no part of it.
    if (ctx.tries == 0) ctx.start_ms = current_msec();
    ctx.peer = peer;
    ctx.peer_reported = false;
    ctx.tried.add(size_t(peer - ctx.upstream->peers.data()));
    ++ctx.tries;
    ctx.stale_retried = false;
    new_attempt(ctx);
    connect_peer(ctx, true);
}

// Picks the next server and connects; answers `last_status` when none is left.
void connect_next(ProxyCtx& ctx, int last_status) {
    Peer* peer = upstream_select_peer(*ctx.upstream, *ctx.r, ctx.tried);
    if (!peer) {
        if (ctx.tries == 0)
            proxy_log(ctx, LogLevel::Error, 0, "no live upstreams while connecting to upstream \"%s\"",
                      ctx.upstream->name.c_str());
        if (ctx.tries == 0 && ctx.cache) ctx.cache->failure = kFtError;  // nginx: an error, for use_stale
        proxy_finish(ctx, last_status);
        return;
    }
    start_attempt(ctx, peer);
}

void on_write(ProxyCtx& ctx) {
    if (ctx.connected) {
        proxy_send(ctx);
        return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(ctx.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) {
        proxy_fail(ctx, kFtError, "connect() failed while connecting to upstream", err);
        return;
    }
    proxy_want_write(ctx, false);
    transport_ready(ctx);
}

// The connection's timer fires by the earlier deadline. With none left it
// stays pending, if it is: it finds nothing due when it fires, which costs
// less than removing it for every request and adding it for the next.
void schedule_timer(ProxyCtx& ctx, int64_t now) {
    int64_t due = ctx.send_deadline_ms;
    if (ctx.read_deadline_ms && (!due || ctx.read_deadline_ms < due)) due = ctx.read_deadline_ms;
    if (due && ctx.conn) upstream_connection_timer(*ctx.conn, due, now);
}

void on_timer(ProxyCtx& ctx) {
    const int64_t now = current_msec();
    if (ctx.send_deadline_ms && now >= ctx.send_deadline_ms) {
        ctx.send_deadline_ms = 0;
        if (ctx.handshaking) proxy_fail(ctx, kFtTimeout, "upstream timed out while SSL handshaking to upstream", ETIMEDOUT);
        else if (!ctx.connected) proxy_fail(ctx, kFtTimeout, "upstream timed out while connecting to upstream", ETIMEDOUT);
        else proxy_fail(ctx, kFtTimeout, "upstream timed out while sending request to upstream", ETIMEDOUT);
        return;
    }
    if (ctx.read_deadline_ms && now >= ctx.read_deadline_ms) {
        ctx.read_deadline_ms = 0;
        if (!ctx.head_done)
            proxy_fail(ctx, kFtTimeout, "upstream timed out while reading response header from upstream", ETIMEDOUT);
        else proxy_fail(ctx, kFtTimeout, "upstream timed out while reading upstream", ETIMEDOUT);
        return;
    }
    schedule_timer(ctx, now);  // early: a deadline moved on since the timer was armed
}

// ---- failures ----

bool replayable(const ProxyCtx& ctx) {
    return ctx.body_mode == ProxyBodyMode::None || ctx.body_mode == ProxyBodyMode::Buffered || !ctx.body_started;
}

bool can_retry(ProxyCtx& ctx, uint32_t ft) {
    const ProxyLocConf& conf = *ctx.conf;
    uint32_t mask = *conf.next_upstream;
    if (!(mask & ft) || ctx.r->header_sent() || !replayable(ctx)) return false;
    if (*conf.next_upstream_tries && ctx.tries >= *conf.next_upstream_tries) return false;
    if (*conf.next_upstream_timeout_ms && current_msec() - ctx.start_ms >= int64_t(*conf.next_upstream_timeout_ms))
        return false;
    // A request the server may have acted on is repeated only when allowed.
    if (ctx.head_sent > 0 && !proxy_method_idempotent(*ctx.r) && !(mask & kFtNonIdempotent)) return false;
    return true;
}

// The response was cut short after its head went to the client: the client
// can only tell if its connection closes.
void abort_response(ProxyCtx& ctx, bool failed) {
    ctx.attempt->end_ms = current_msec();
    report_peer(ctx, failed);
    proxy_close_upstream(ctx);
    if (ctx.sink) {
        // Only the cache's refresh failed: the client has its whole answer.
        proxy_finish(ctx, ctx.r->status());
        return;
    }
    ctx.finished = true;
    ctx.r->set_drain_handler(nullptr, nullptr);
    ctx.r->connection().close();
}

void log_failure(ProxyCtx& ctx, LogLevel level, const char* what, int err) {
    // A TLS read or write failure: OpenSSL's reason, as nginx logs it.
    if (err == EPROTO && ctx.ssl) {
        const std::string& reason = upstream_tls_last_error();
        std::string_view text = what;
        size_t cut = text.find(" while ");
        if (cut == std::string_view::npos) cut = text.size();
        proxy_log(ctx, level, 0, "%.*s (SSL: %s)%s", int(cut), what, reason.c_str(), what + cut);
        return;
    }
    proxy_log(ctx, level, err, "%s", what);
}

// nginx's check_broken_connection: nobody is left to answer, so the upstream
// connection goes (never to the pool: a response may be on its way) and the
// request ends now, logged 499 unless its head was already sent.
void on_client_closed(Request& r, void* arg) {
    auto& ctx = *static_cast<ProxyCtx*>(arg);
    if (ctx.finished) return;
    proxy_log(ctx, LogLevel::Info, 0, "client prematurely closed connection, so upstream connection is closed too");
    if (ctx.attempt && ctx.attempt->end_ms < 0) ctx.attempt->end_ms = current_msec();
    proxy_close_upstream(ctx);
    report_peer(ctx, false);
    proxy_release_body(ctx);
    ctx.finished = true;
    r.set_drain_handler(nullptr, nullptr);
    r.connection().close();
}

}  // namespace

// ---- the API of proxy.h ----

char* proxy_block_get(size_t size) {
    for (BlockClass& c : block_classes) {
        if (c.size != size || c.idle.empty()) continue;
        char* b = c.idle.back();
        c.idle.pop_back();
        return b;
    }
    return new char[size];
}

void proxy_block_put(char* block, size_t size) {
    if (!block) return;
    for (BlockClass& c : block_classes) {
        if (c.size != size) continue;
        if (c.idle.size() < kMaxIdleBlocksPerSize) c.idle.push_back(block);
        else delete[] block;
        return;
    }
    if (block_classes.size() < kMaxBlockSizes) {
        block_classes.push_back({size, {block}});
        return;
    }
    delete[] block;
}

bool proxy_method_idempotent(const Request& r) {
    switch (r.method()) {
    case Method::Post:
    case Method::Patch:
    case Method::Connect: return false;
    case Method::Unknown: return r.method_name() != "LOCK";
    default: return true;
    }
}

void proxy_want_read(ProxyCtx& ctx, bool on) {
    if (ctx.conn) upstream_connection_want_read(*ctx.conn, on);
}

void proxy_want_write(ProxyCtx& ctx, bool on) {
    if (ctx.conn) upstream_connection_want_write(*ctx.conn, on);
}

void proxy_arm_timer(ProxyCtx& ctx, ProxyTimer which, uint64_t ms) {
    int64_t& deadline = which == ProxyTimer::Send ? ctx.send_deadline_ms : ctx.read_deadline_ms;
    const int64_t now = current_msec();
    deadline = ms ? now + int64_t(ms) : 0;
    schedule_timer(ctx, now);
}

void proxy_disarm_timer(ProxyCtx& ctx, ProxyTimer which) {
    int64_t& deadline = which == ProxyTimer::Send ? ctx.send_deadline_ms : ctx.read_deadline_ms;
    deadline = 0;  // the timer, if pending, finds nothing due (schedule_timer)
}

void proxy_disarm_timers(ProxyCtx& ctx) { ctx.send_deadline_ms = ctx.read_deadline_ms = 0; }

void proxy_close_upstream(ProxyCtx& ctx) {
    proxy_disarm_timers(ctx);
    if (ctx.conn) upstream_connection_close(ctx.conn);
    ctx.conn = nullptr;
    ctx.fd = -1;
    ctx.ssl = nullptr;
    ctx.connected = false;
    ctx.handshaking = false;
    ctx.from_pool = false;
}

void proxy_log(ProxyCtx& ctx, LogLevel level, int err, const char* fmt, ...) {
    if (!ErrorLog::instance().enabled(level)) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // nginx's shape: "connect() failed (111: Connection refused) while connecting to upstream".
    std::string_view text = msg;
    size_t cut = err ? text.find(" while ") : std::string_view::npos;
    if (cut == std::string_view::npos) cut = text.size();
    char errtext[128] = "";
    if (err) snprintf(errtext, sizeof errtext, " (%d: %s)", err, strerror(err));
    Request& r = *ctx.r;
    const auto& names = r.server().server_names;
    std::string_view server = names.empty() ? std::string_view() : std::string_view(names[0].name);
    // Before any server was chosen ("no live upstreams"), nginx names the upstream.
    std::string_view addr = ctx.attempt    ? ctx.attempt->addr
                            : ctx.upstream ? std::string_view(ctx.upstream->name)
                                           : std::string_view();
    log_error(level, "*%llu %.*s%s%s, client: %.*s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\", "
                     "upstream: \"%s://%.*s%.*s\", host: \"%.*s\"",
              static_cast<unsigned long long>(r.connection_number()), int(cut), msg, errtext, msg + cut,
              int(r.remote_addr().size()), r.remote_addr().data(), int(server.size()), server.data(),
              int(r.method_name().size()), r.method_name().data(), int(std::min<size_t>(r.request_uri().size(), 1024)),
              r.request_uri().data(), r.head().version_major, r.head().version_minor, ctx.tls ? "https" : "http",
              int(addr.size()), addr.data(),
              int(ctx.uri.size()), ctx.uri.data(), int(r.head().host.size()), r.head().host.data());
}

void proxy_fail(ProxyCtx& ctx, uint32_t ft, const char* what, int err) {
    if (ctx.finished) return;
    if (ctx.head_done) {
        // Past the head: what the client got so far cannot be taken back.
        log_failure(ctx, LogLevel::Error, what, err);
        abort_response(ctx, true);
        return;
    }
    // A kept-alive connection the server closed meanwhile is no failure of
    // the server: once more on a fresh connection to the same server.
    if (ctx.from_pool && !ctx.stale_retried && ft == kFtError && ctx.attempt->bytes_received == 0 &&
        replayable(ctx)) {
        log_failure(ctx, LogLevel::Info, what, err);
        ctx.stale_retried = true;
        proxy_close_upstream(ctx);
        proxy_rewind_request(ctx);
        connect_peer(ctx, false);
        return;
    }
    log_failure(ctx, LogLevel::Error, what, err);
    if (ctx.cache) ctx.cache->failure = ft;
    int status = ft == kFtTimeout ? 504 : 502;
    ctx.attempt->status = status;
    ctx.attempt->end_ms = current_msec();
    report_peer(ctx, true);
    proxy_close_upstream(ctx);
    if (!can_retry(ctx, ft)) {
        proxy_finish(ctx, status);
        return;
    }
    proxy_rewind_request(ctx);
    connect_next(ctx, status);
}

bool proxy_retry_status(ProxyCtx& ctx, uint32_t ft, int status) {
    if (!can_retry(ctx, ft)) return false;
    // With no server left, the client gets this server's answer, not the
    // gateway's error page (nginx retries only while peer.tries > 1).
    Peer* next = upstream_select_peer(*ctx.upstream, *ctx.r, ctx.tried);
    if (!next) return false;
    proxy_log(ctx, LogLevel::Info, 0, "upstream answered %d, trying the next server", status);
    ctx.attempt->end_ms = current_msec();
    report_peer(ctx, proxy_failure_counts(ft));
    proxy_close_upstream(ctx);
    proxy_rewind_request(ctx);
    ctx.head_done = false;
    start_attempt(ctx, next);
    return true;
}

bool proxy_failure_counts(uint32_t ft) { return !(ft & (kFtHttp403 | kFtHttp404)); }

void proxy_finish(ProxyCtx& ctx, int status) {
    if (ctx.finished) return;
    // A gateway error with a stale entry at hand: stale-if-error may answer.
    if (status >= 500 && ctx.cache && proxy_cache_on_error(ctx, status)) status = ctx.r->status();
    ctx.finished = true;
    proxy_close_upstream(ctx);
    report_peer(ctx, false);
    proxy_release_body(ctx);
    Request& r = *ctx.r;
    r.set_drain_handler(nullptr, nullptr);
    r.watch_client_close(nullptr, nullptr);
    if (status) r.finalize(status);
}

void proxy_response_complete(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    ctx.response_done = true;
    ctx.attempt->end_ms = current_msec();
    if (ctx.reusable && ctx.conn) {
        // Its events stay registered: the pool only takes them over.
        proxy_disarm_timers(ctx);
        ++ctx.conn->requests;
        upstream_keepalive_put(*ctx.upstream, *ctx.peer, ctx.conn);
        ctx.conn = nullptr;
        ctx.fd = -1;
        ctx.ssl = nullptr;
    }
    uint32_t ft = proxy_status_failure(ctx.attempt->status);
    report_peer(ctx, ft && (*ctx.conf->next_upstream & ft) && proxy_failure_counts(ft));
    proxy_finish(ctx, r.status());
}

void proxy_body_buffered(ProxyCtx& ctx) {
    if (ctx.finished) return;
    if (!proxy_build_request(ctx)) {
        proxy_finish(ctx, 500);
        return;
    }
    proxy_watch_client(ctx);
    connect_next(ctx, 502);
}

void proxy_watch_client(ProxyCtx& ctx) {
    // A background refresh (sink) runs to its end whatever the client does:
    // it has its answer, and the cache wants the new one.
    if (!*ctx.conf->ignore_client_abort && !ctx.sink) ctx.r->watch_client_close(on_client_closed, &ctx);
}

Next proxy_handler(Request& r) {
    auto& conf = r.loc_conf<ProxyLocConf>(proxy_module);
    auto* ctx = r.make<ProxyCtx>();
    ctx->r = &r;
    ctx->conf = &conf;
    ctx->reader.ctx = ctx;
    ctx->chain = r.make<BodyChain>(r.arena());
    ctx->resp = r.make<ResponseHead>(r.arena());
    r.set_module_ctx(proxy_module, ctx);
    r.add_cleanup(cleanup, ctx);
    if (int status = resolve_target(*ctx)) {
        ctx->finished = true;
        r.set_status(status);
        return Next::Finish;
    }
    if (ctx->tls) ctx->tls_name = tls_name(*ctx);
    switch (proxy_cache_start(*ctx)) {
    case CacheStart::Done:
        ctx->finished = true;
        return Next::Finish;
    case CacheStart::Wait: return Next::Suspend;
    case CacheStart::Forward: break;
    }
    return proxy_forward(*ctx);
}

Next proxy_forward(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    ctx.body_mode = proxy_body_mode(ctx);
    if (ctx.body_mode == ProxyBodyMode::Buffered) {
        r.read_body(&ctx.reader);  // connects once the whole body is here
        return Next::Suspend;
    }
    if (!proxy_build_request(ctx)) {
        ctx.finished = true;
        r.set_status(500);
        return Next::Finish;
    }
    if (ctx.body_mode == ProxyBodyMode::None) proxy_watch_client(ctx);
    connect_next(ctx, 502);
    return Next::Suspend;
}

}  // namespace sluice::http
