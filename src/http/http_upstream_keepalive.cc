// The per-worker pool of idle keep-alive connections to an upstream's
// servers (nginx's ngx_http_upstream_keepalive_module): a fixed array of
// slots made when the worker starts, so caching and reusing a connection
// allocates nothing.
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <cerrno>
#include <cstring>

#include "http/http_upstream.h"

namespace sluice::http {

struct KeepalivePool::Slot {
    KeepalivePool* pool = nullptr;
    event* ev = nullptr;
    int fd = -1;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    uint64_t requests = 0;
    Slot* prev = nullptr;
    Slot* next = nullptr;
};

namespace {

// An idle upstream connection must have nothing to read: a byte is a
// protocol error of the upstream and EOF means it closed; either way the
// connection cannot carry the next request.
bool idle_connection_alive(int fd) {
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

timeval to_timeval(uint64_t ms) {
    timeval tv;
    tv.tv_sec = time_t(ms / 1000);
    tv.tv_usec = suseconds_t((ms % 1000) * 1000);
    return tv;
}

}  // namespace

KeepalivePool::KeepalivePool(event_base* base, size_t capacity, uint64_t idle_timeout_ms, uint64_t max_requests)
    : base_(base), capacity_(capacity), idle_timeout_ms_(idle_timeout_ms), max_requests_(max_requests),
      slots_(new Slot[capacity]) {
    for (size_t i = 0; i < capacity_; ++i) {
        Slot& s = slots_[i];
        s.pool = this;
        s.ev = event_new(base_, -1, 0, on_idle_event, &s);
        s.next = free_;
        free_ = &s;
    }
}

KeepalivePool::~KeepalivePool() {
    while (mru_) close_slot(*mru_);
    for (size_t i = 0; i < capacity_; ++i)
        if (slots_[i].ev) event_free(slots_[i].ev);
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

void KeepalivePool::close_slot(Slot& s) {
    if (s.ev) event_del(s.ev);
    unlink(s);
    close(s.fd);
    s.fd = -1;
    s.next = free_;
    free_ = &s;
}

int KeepalivePool::get(const sockaddr_storage& addr, socklen_t len, uint64_t& requests_served) {
    for (Slot* s = mru_; s;) {
        Slot* next = s->next;
        if (s->addr_len == len && memcmp(&s->addr, &addr, len) == 0) {
            if (!idle_connection_alive(s->fd)) {
                close_slot(*s);
                s = next;
                continue;
            }
            if (s->ev) event_del(s->ev);
            unlink(*s);
            int fd = s->fd;
            requests_served = s->requests;
            s->fd = -1;
            s->next = free_;
            free_ = s;
            return fd;
        }
        s = next;
    }
    return -1;
}

bool KeepalivePool::put(const sockaddr_storage& addr, socklen_t len, int fd, uint64_t requests_served) {
    if (fd < 0) return false;
    if (capacity_ == 0 || requests_served >= max_requests_) {
        close(fd);
        return false;
    }
    // Full: the least recently used connection makes room, as nginx does.
    if (!free_) close_slot(*lru_);
    Slot& s = *free_;
    free_ = s.next;
    s.fd = fd;
    memcpy(&s.addr, &addr, len);
    s.addr_len = len;
    s.requests = requests_served;
    push_front(s);
    if (s.ev && event_assign(s.ev, base_, fd, EV_READ, on_idle_event, &s) == 0) {
        timeval tv = to_timeval(idle_timeout_ms_);
        event_add(s.ev, &tv);
    }
    return true;
}

void KeepalivePool::on_idle_event(int fd, short what, void* arg) {
    auto& s = *static_cast<Slot*>(arg);
    if ((what & EV_READ) && idle_connection_alive(fd)) {
        // A spurious wake-up: keep waiting, with a fresh idle timeout.
        timeval tv = to_timeval(s.pool->idle_timeout_ms_);
        event_add(s.ev, &tv);
        return;
    }
    s.pool->close_slot(s);
}

int upstream_keepalive_get(Upstream& u, const Peer& p, uint64_t& requests_served) {
    if (!u.pool) return -1;
    return u.pool->get(p.addr, p.addr_len, requests_served);
}

void upstream_keepalive_put(Upstream& u, const Peer& p, int fd, uint64_t requests_served) {
    if (!u.pool) {
        if (fd >= 0) close(fd);
        return;
    }
    u.pool->put(p.addr, p.addr_len, fd, requests_served);
}

}  // namespace sluice::http
