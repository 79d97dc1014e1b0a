// After a 101 Switching Protocols (WebSocket and other upgrades the
// configuration lets through), the client and upstream connections become a
// byte tunnel: each direction has a buffer of proxy_buffer_size, reading
// from one side pauses while the other side has not taken what was read,
// and the tunnel closes both sides when either closes or after
// proxy_read_timeout without traffic. Over an https upstream, the upstream
// side reads and writes through its TLS session; a TLS client connection's
// side through the client's session, taken over with the descriptor.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "core/log.h"
#include "event/worker.h"
#include "http/http_connection.h"
#include "proxy.h"

namespace sluice::http {

namespace {

struct Pipe {
    std::unique_ptr<char[]> buf;
    size_t cap = 0, start = 0, end = 0;
    bool eof = false;  // the reading side closed

    bool empty() const { return start == end; }
    void init(size_t size, std::string_view initial) {
        cap = std::max(size, initial.size());
        buf.reset(new char[cap]);
        memcpy(buf.get(), initial.data(), initial.size());
        start = 0;
        end = initial.size();
    }
};

// One side of the tunnel: a socket, and its TLS session if it has one.
struct Side {
    int fd = -1;
    tls::SslPtr ssl;

    ssize_t read(char* buf, size_t len) {
        if (!ssl) return ::read(fd, buf, len);
        tls::IoResult r = tls::read(ssl.get(), buf, len);
        return transfer_result(r);
    }
    ssize_t write(const char* buf, size_t len) {
        if (!ssl) return ::write(fd, buf, len);
        iovec iov{const_cast<char*>(buf), len};
        return transfer_result(tls::writev(ssl.get(), &iov, 1));
    }

private:
    ssize_t transfer_result(tls::IoResult r) {
        if (r.status == tls::IoStatus::Done || r.bytes > 0) return ssize_t(r.bytes);
        if (r.status == tls::IoStatus::WantRead || r.status == tls::IoStatus::WantWrite) {
            errno = EAGAIN;
            return -1;
        }
        if (r.status == tls::IoStatus::Eof) return 0;
        tls::clear_errors();
        errno = EPROTO;
        return -1;
    }
};

class Tunnel final : public Closeable {
public:
    Tunnel(Worker& w, Upstream& up, Peer& peer, int upstream_fd, SSL* upstream_ssl, uint64_t idle_ms)
        : worker_(w), upstream_(up), peer_(peer), upstream_fd_(upstream_fd), idle_ms_(idle_ms) {
        upstream_side_.fd = upstream_fd;
        upstream_side_.ssl.reset(upstream_ssl);
        worker_.register_connection(this);
    }

    // Takes the client connection; false if the core could not hand it over.
    bool start(Request& r, std::string_view to_client, size_t buffer_size) {
        std::string leftover;
        client_fd_ = r.take_over_connection(leftover, client_side_.ssl);
        if (client_fd_ < 0) return false;
        client_side_.fd = client_fd_;
        to_client_.init(buffer_size, to_client);
        to_upstream_.init(buffer_size, leftover);
        event_base* base = worker_.base();
        event_assign(&client_ev_, base, client_fd_, EV_READ | EV_WRITE | EV_PERSIST, on_event, this);
        event_assign(&upstream_ev_, base, upstream_fd_, EV_READ | EV_WRITE | EV_PERSIST, on_event, this);
        evtimer_assign(&timer_, base, on_timeout, this);
        started_ = true;
        pump();
        return true;
    }

    void on_shutdown() override {}  // an upgraded connection is never idle: it runs until worker_shutdown_timeout
    void force_close() override { close(); }

    void close() {
        if (started_) {
            event_del(&client_ev_);
            event_del(&upstream_ev_);
            event_del(&timer_);
        }
        if (client_side_.ssl) {
            tls::shutdown(client_side_.ssl.get());
            tls::clear_errors();
            client_side_.ssl.reset();
        }
        if (client_fd_ >= 0) ::close(client_fd_);
        if (upstream_side_.ssl) {
            tls::shutdown(upstream_side_.ssl.get());  // close_notify, as for any TLS upstream connection
            tls::clear_errors();
            upstream_side_.ssl.reset();
        }
        if (upstream_fd_ >= 0) ::close(upstream_fd_);
        upstream_peer_done(upstream_, peer_, false);
        worker_.unregister_connection(this);
        delete this;
    }

private:
    static void on_event(evutil_socket_t, short, void* arg) { static_cast<Tunnel*>(arg)->pump(); }
    static void on_timeout(evutil_socket_t, short, void* arg) {
        SLUICE_LOG(LogLevel::Info, "upgraded connection timed out after %llu ms without traffic",
                   static_cast<unsigned long long>(static_cast<Tunnel*>(arg)->idle_ms_));
        static_cast<Tunnel*>(arg)->close();
    }

    // Moves what `from` has to say into `pipe` and on to `to`. False when a side failed.
    static bool move(Side& from, Side& to, Pipe& pipe, bool& progress) {
        for (;;) {
            if (!pipe.empty()) {
                ssize_t n = to.write(pipe.buf.get() + pipe.start, pipe.end - pipe.start);
                if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
                if (n > 0) {
                    pipe.start += size_t(n);
                    progress = true;
                }
                if (!pipe.empty()) return true;  // the receiver is full
            }
            pipe.start = pipe.end = 0;
            if (pipe.eof) return true;
            ssize_t n = from.read(pipe.buf.get(), pipe.cap);
            if (n > 0) {
                pipe.end = size_t(n);
                progress = true;
                continue;
            }
            if (n == 0) pipe.eof = true;
            else if (errno != EAGAIN && errno != EINTR) return false;
            return true;
        }
    }

    void watch(event& ev, int fd, bool read, bool write, short& current) {
        short want = short((read ? EV_READ : 0) | (write ? EV_WRITE : 0));
        if (want == current) return;
        event_del(&ev);
        current = want;
        if (!want) return;
        event_assign(&ev, worker_.base(), fd, short(want | EV_PERSIST), on_event, this);
        event_add(&ev, nullptr);
    }

    void pump() {
        bool progress = false;
        if (!move(client_side_, upstream_side_, to_upstream_, progress) ||
            !move(upstream_side_, client_side_, to_client_, progress)) {
            close();
            return;
        }
        // Either side closing ends the tunnel once what it sent is delivered.
        if ((to_upstream_.eof && to_upstream_.empty()) || (to_client_.eof && to_client_.empty())) {
            close();
            return;
        }
        watch(client_ev_, client_fd_, to_upstream_.empty() && !to_upstream_.eof, !to_client_.empty(), client_watch_);
        watch(upstream_ev_, upstream_fd_, to_client_.empty() && !to_client_.eof, !to_upstream_.empty(), upstream_watch_);
        if (progress || !timer_armed_) {
            timeval tv{time_t(idle_ms_ / 1000), suseconds_t((idle_ms_ % 1000) * 1000)};
            if (idle_ms_) event_add(&timer_, &tv);
            timer_armed_ = true;
        }
    }

    Worker& worker_;
    Upstream& upstream_;
    Peer& peer_;
    int client_fd_ = -1;
    int upstream_fd_;
    Side client_side_, upstream_side_;
    uint64_t idle_ms_;
    Pipe to_client_, to_upstream_;
    event client_ev_, upstream_ev_, timer_;
    short client_watch_ = -1, upstream_watch_ = -1;
    bool started_ = false;
    bool timer_armed_ = false;
};

}  // namespace

void proxy_start_tunnel(ProxyCtx& ctx, std::string_view to_client) {
    Request& r = *ctx.r;
    // The tunnel owns the upstream connection and reports on the server when it ends.
    proxy_disarm_timers(ctx);
    SSL* ssl = nullptr;
    int fd = upstream_connection_detach(ctx.conn, &ssl);
    ctx.conn = nullptr;
    ctx.fd = -1;
    ctx.ssl = nullptr;
    auto* tunnel = new Tunnel(r.connection().worker(), *ctx.upstream, *ctx.peer, fd, ssl, *ctx.conf->read_timeout_ms);
    ctx.peer_reported = true;
    ctx.finished = true;
    ctx.attempt->end_ms = current_msec();
    r.set_status(101);
    if (!tunnel->start(r, to_client, size_t(*ctx.conf->buffer_size))) {
        proxy_log(ctx, LogLevel::Alert, 0, "the client connection could not be taken over for an upgrade");
        tunnel->close();
        r.connection().close();
    }
}

}  // namespace sluice::http
