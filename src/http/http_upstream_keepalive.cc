// Upstream connections whose events are registered once for their life,
// and the per-worker pool of idle keep-alive connections to an upstream's
// servers (nginx's ngx_http_upstream_keepalive_module): a fixed array of
// slots made when the worker starts, so caching and reusing a connection
// allocates nothing, and costs no syscall: the connection's read event
// stays added while it is idle and only its handler changes.
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "http/http_upstream.h"
#include "http/http_upstream_tls.h"

namespace sluice::http {

namespace {

// Closed connections' objects, for the next ones (one worker per process:
// no locking). Past this many, they are freed.
constexpr size_t kMaxSpareConnections = 256;
// Owns the objects: freed at exit, so leak checkers see no lost memory.
struct SpareConnections : std::vector<UpstreamConnection*> {
    ~SpareConnections() {
        for (UpstreamConnection* c : *this) delete c;
    }
};
SpareConnections spare_connections;

void on_connection_event(evutil_socket_t, short what, void* arg) {
    auto& c = *static_cast<UpstreamConnection*>(arg);
    if (what & EV_TIMEOUT) c.timer_fires_ms = 0;  // a timer fires once
    c.handler(c, what);
}

void remove_events(UpstreamConnection& c) {
    if (c.reading) event_del(&c.rev);
    if (c.writing) event_del(&c.wev);
    if (c.timer_fires_ms) event_del(&c.timer);
    c.reading = c.writing = false;
    c.timer_fires_ms = 0;
}

void recycle(UpstreamConnection* c) {
    c->fd = -1;
    c->handler = nullptr;
    c->owner = nullptr;
    if (spare_connections.size() < kMaxSpareConnections) spare_connections.push_back(c);
    else delete c;
}

}  // namespace

// ---- upstream connections ----

UpstreamConnection* upstream_connection_open(event_base* base, int fd, UpstreamConnection::Handler handler,
                                             void* owner) {
    UpstreamConnection* c;
    if (spare_connections.empty()) {
        c = new UpstreamConnection;
    } else {
        c = spare_connections.back();
        spare_connections.pop_back();
    }
    c->fd = fd;
    c->handler = handler;
    c->owner = owner;
    c->requests = 0;
    c->timer_fires_ms = 0;
    c->reading = c->writing = false;
    event_assign(&c->rev, base, fd, EV_READ | EV_PERSIST, on_connection_event, c);
    event_assign(&c->wev, base, fd, EV_WRITE | EV_PERSIST, on_connection_event, c);
    evtimer_assign(&c->timer, base, on_connection_event, c);
    return c;
}

void upstream_connection_close(UpstreamConnection* c) {
    remove_events(*c);
    if (c->ssl) upstream_tls_close(*c);
    ::close(c->fd);
    recycle(c);
}

int upstream_connection_detach(UpstreamConnection* c, ssl_st** ssl) {
    remove_events(*c);
    int fd = c->fd;
    *ssl = upstream_tls_detach(*c);
    recycle(c);
    return fd;
}

void upstream_connection_want_read(UpstreamConnection& c, bool on) {
    if (c.reading == on) return;
    c.reading = on;
    if (on) event_add(&c.rev, nullptr);
    else event_del(&c.rev);
}

void upstream_connection_want_write(UpstreamConnection& c, bool on) {
    if (c.writing == on) return;
    c.writing = on;
    if (on) event_add(&c.wev, nullptr);
    else event_del(&c.wev);
}

void upstream_connection_timer(UpstreamConnection& c, int64_t due_ms, int64_t now_ms) {
    if (c.timer_fires_ms && c.timer_fires_ms <= due_ms) return;
    int64_t ms = std::max<int64_t>(due_ms - now_ms, 1);
    timeval tv{time_t(ms / 1000), suseconds_t((ms % 1000) * 1000)};
    event_add(&c.timer, &tv);
    c.timer_fires_ms = due_ms;
}

// ---- the keep-alive pool ----

struct KeepalivePool::Slot {
    KeepalivePool* pool = nullptr;
    UpstreamConnection* conn = nullptr;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    int64_t idle_deadline_ms = 0;
    Slot* prev = nullptr;
    Slot* next = nullptr;
};

KeepalivePool::KeepalivePool(event_base* base, size_t capacity, uint64_t idle_timeout_ms, uint64_t max_requests)
    : base_(base), capacity_(capacity), idle_timeout_ms_(idle_timeout_ms), max_requests_(max_requests),
      slots_(new Slot[capacity]) {
    for (size_t i = 0; i < capacity_; ++i) {
        Slot& s = slots_[i];
        s.pool = this;
        s.next = free_;
        free_ = &s;
    }
}

KeepalivePool::~KeepalivePool() {
    while (mru_) close_slot(*mru_);
}

// The loop's cached time, as the proxy's current_msec() (same clock).
int64_t KeepalivePool::now_ms() const {
    timeval tv;
    event_base_gettimeofday_cached(base_, &tv);
    return int64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

void KeepalivePool::unlink(Slot& s) {
    (s.prev ? s.prev->next : mru_) = s.next;
    (s.next ? s.next->prev : lru_) = s.prev;
    s.prev = s.next = nullptr;
    --idle_count_;
}

void KeepalivePool::push_front(Slot& s) {
    s.prev = nullptr;
    s.next = mru_;
    (mru_ ? mru_->prev : lru_) = &s;
    mru_ = &s;
    ++idle_count_;
}

void KeepalivePool::release_slot(Slot& s) {
    unlink(s);
    s.conn = nullptr;
    s.next = free_;
    free_ = &s;
}

void KeepalivePool::close_slot(Slot& s) {
    UpstreamConnection* c = s.conn;
    release_slot(s);
    upstream_connection_close(c);
}

UpstreamConnection* KeepalivePool::get(const sockaddr_storage& addr, socklen_t len, const UpstreamTls* tls,
                                       std::string_view tls_name) {
    for (Slot* s = mru_; s; s = s->next) {
        if (s->addr_len != len || memcmp(&s->addr, &addr, len) != 0) continue;
        UpstreamConnection* c = s->conn;
        if (c->tls != tls || (tls && c->tls_name != tls_name)) continue;
        release_slot(*s);
        c->handler = nullptr;
        c->owner = nullptr;
        return c;
    }
    return nullptr;
}

bool KeepalivePool::put(const sockaddr_storage& addr, socklen_t len, UpstreamConnection* c) {
    if (!c) return false;
    if (capacity_ == 0 || c->requests >= max_requests_) {
        upstream_connection_close(c);
        return false;
    }
    // Full: the least recently used connection makes room, as nginx does.
    if (!free_) close_slot(*lru_);
    Slot& s = *free_;
    free_ = s.next;
    s.conn = c;
    memcpy(&s.addr, &addr, len);
    s.addr_len = len;
    push_front(s);
    c->handler = on_idle_event;
    c->owner = &s;
    // Idle, the connection must stay silent: its read event watches that.
    upstream_connection_want_write(*c, false);
    upstream_connection_want_read(*c, true);
    const int64_t now = now_ms();
    s.idle_deadline_ms = now + int64_t(idle_timeout_ms_);
    upstream_connection_timer(*c, s.idle_deadline_ms, now);
    return true;
}

void KeepalivePool::on_idle_event(UpstreamConnection& c, short what) {
    auto& s = *static_cast<Slot*>(c.owner);
    KeepalivePool& pool = *s.pool;
    if (what & EV_TIMEOUT) {
        const int64_t now = pool.now_ms();
        // The timer was pending for an earlier deadline (a request's): wait on.
        if (now < s.idle_deadline_ms) {
            upstream_connection_timer(c, s.idle_deadline_ms, now);
            return;
        }
    }
    // Over TLS, a readable socket may hold a record without data (a session
    // ticket sent late): the connection is still good.
    if (!(what & EV_TIMEOUT) && c.ssl && upstream_tls_idle_ok(c)) return;
    // Idle too long, or readable: a byte is a protocol error of the upstream
    // and EOF (close_notify) means it closed; either way the connection
    // cannot carry the next request.
    pool.close_slot(s);
}

UpstreamConnection* upstream_keepalive_get(Upstream& u, const Peer& p, const UpstreamTls* tls,
                                           std::string_view tls_name) {
    if (!u.pool) return nullptr;
    return u.pool->get(p.addr, p.addr_len, tls, tls_name);
}

void upstream_keepalive_put(Upstream& u, const Peer& p, UpstreamConnection* c) {
    if (!c) return;
    if (!u.pool) {
        upstream_connection_close(c);
        return;
    }
    u.pool->put(p.addr, p.addr_len, c);
}

}  // namespace sluice::http
