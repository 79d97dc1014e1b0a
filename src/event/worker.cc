#include "event/worker.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "event/loop_clock.h"

#include "core/log.h"

namespace sluice {

Worker* Worker::current_ = nullptr;

int64_t LoopClock::refresh() {
    timeval tv;
    event_base_gettimeofday_cached(Worker::current().base(), &tv);
    msec_ = int64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
    valid_ = in_loop_;
    return msec_;
}

int64_t LoopClock::refresh_monotonic() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    monotonic_msec_ = int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
    monotonic_valid_ = in_loop_;
    return monotonic_msec_;
}

struct Worker::AcceptEvent {
    Worker* worker;
    Listening* listening;
    int fd;
    event* ev = nullptr;
};

Worker::Worker(Cycle& cycle, int index) : cycle_(cycle), index_(index) {
    current_ = this;
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base_ = event_base_new_with_config(cfg);
    event_config_free(cfg);
    max_connections_ = uint64_t(*cycle.events().worker_connections);
}

Worker::~Worker() {
    stop_listening();
    for (event* e : signal_events_) event_free(e);
    if (shutdown_timer_) event_free(shutdown_timer_);
    if (base_) event_base_free(base_);
    if (current_ == this) current_ = nullptr;
}

int Worker::run() {
    if (!base_) {
        SLUICE_LOG(LogLevel::Emerg, "event_base_new() failed");
        return 2;
    }
    for (int sig : {SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGWINCH}) {
        event* e = evsignal_new(base_, sig, on_signal, this);
        evsignal_add(e, nullptr);
        signal_events_.push_back(e);
    }
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; compiled_modules[i]; ++i) {
        Module& m = *compiled_modules[i];
        if (m.init_worker && !m.init_worker(cycle_)) {
            SLUICE_LOG(LogLevel::Emerg, "module \"%.*s\" failed to initialize the worker", int(m.name.size()),
                       m.name.data());
            return 2;
        }
    }
    start_listening();
    // event_base_dispatch, one iteration at a time: LoopClock's time is
    // taken afresh in each.
    LoopClock::in_loop_ = true;
    for (;;) {
        LoopClock::next_iteration();
        if (event_base_loop(base_, EVLOOP_ONCE) != 0 || event_base_got_exit(base_) || event_base_got_break(base_))
            break;
    }
    LoopClock::in_loop_ = false;
    LoopClock::next_iteration();
    for (int i = 0; compiled_modules[i]; ++i)
        if (compiled_modules[i]->exit_worker) compiled_modules[i]->exit_worker(cycle_);
    return 0;
}

void Worker::start_listening() {
    for (auto& l : cycle_.listening()) {
        if (l->fds.empty() || !l->on_accept) continue;
        int fd = l->reuseport && size_t(index_) < l->fds.size() ? l->fds[size_t(index_)] : l->fds[0];
        auto ae = std::make_unique<AcceptEvent>();
        ae->worker = this;
        ae->listening = l.get();
        ae->fd = fd;
        ae->ev = event_new(base_, fd, EV_READ | EV_PERSIST, on_accept, ae.get());
        event_add(ae->ev, nullptr);
        accept_events_.push_back(std::move(ae));
    }
}

void Worker::stop_listening() {
    for (auto& ae : accept_events_) {
        if (ae->ev) event_free(ae->ev);
        ae->ev = nullptr;
    }
    accept_events_.clear();
}

void Worker::on_accept(evutil_socket_t fd, short, void* arg) {
    auto* ae = static_cast<AcceptEvent*>(arg);
    Worker& w = *ae->worker;
    // A bounded batch: fair to the connections already open.
    int batch = *w.cycle_.events().multi_accept ? 64 : 8;
    for (int i = 0; i < batch && !w.shutting_down_; ++i) {
        sockaddr_storage peer;
        socklen_t len = sizeof peer;
        int c = accept4(fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            SLUICE_LOG(LogLevel::Alert, "accept4() failed (%d: %s)", errno, strerror(errno));
            return;
        }
        if (w.at_connection_limit()) {
            SLUICE_LOG(LogLevel::Alert, "%llu worker_connections are not enough",
                       static_cast<unsigned long long>(w.max_connections_));
            ::close(c);
            continue;
        }
        ae->listening->on_accept(w, *ae->listening, c, peer, len);
    }
}

void Worker::on_signal(evutil_socket_t sig, short, void* arg) {
    auto& w = *static_cast<Worker*>(arg);
    switch (sig) {
    case SIGQUIT: w.begin_graceful_shutdown(); break;
    case SIGTERM:
    case SIGINT: w.stop_now(); break;
    case SIGUSR1:
        ErrorLog::instance().reopen();
        for (int i = 0; compiled_modules[i]; ++i)
            if (compiled_modules[i]->reopen_files) compiled_modules[i]->reopen_files(w.cycle_);
        break;
    default: break;  // HUP and WINCH belong to the master
    }
}

void Worker::begin_graceful_shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    SLUICE_LOG(LogLevel::Notice, "gracefully shutting down");
    stop_listening();
    // Close this worker's copies of the listening sockets so the kernel stops
    // queueing connections for a worker that will not accept them (the master
    // and the new workers keep theirs).
    for (auto& l : cycle_.listening()) {
        for (int& fd : l->fds) {
            if (fd >= 0) ::close(fd);
            fd = -1;
        }
    }
    for (Closeable* c = head_; c;) {
        Closeable* next = c->next_;  // on_shutdown may close and unregister c
        c->on_shutdown();
        c = next;
    }
    uint64_t timeout = *cycle_.core().worker_shutdown_timeout_ms;
    if (timeout > 0) {
        shutdown_timer_ = evtimer_new(base_, on_shutdown_timeout, this);
        timeval tv{time_t(timeout / 1000), suseconds_t((timeout % 1000) * 1000)};
        evtimer_add(shutdown_timer_, &tv);
    }
    maybe_finish_shutdown();
}

void Worker::on_shutdown_timeout(evutil_socket_t, short, void* arg) {
    auto& w = *static_cast<Worker*>(arg);
    SLUICE_LOG(LogLevel::Notice, "worker_shutdown_timeout expired, closing %llu connections",
               static_cast<unsigned long long>(w.connections_));
    w.stop_now();
}

void Worker::stop_now() {
    shutting_down_ = true;
    stop_listening();
    for (Closeable* c = head_; c;) {
        Closeable* next = c->next_;
        c->force_close();
        c = next;
    }
    event_base_loopexit(base_, nullptr);
}

void Worker::maybe_finish_shutdown() {
    if (shutting_down_ && connections_ == 0) event_base_loopexit(base_, nullptr);
}

void Worker::register_connection(Closeable* c) {
    c->prev_ = nullptr;
    c->next_ = head_;
    if (head_) head_->prev_ = c;
    head_ = c;
    ++connections_;
}

void Worker::unregister_connection(Closeable* c) {
    if (c->prev_) c->prev_->next_ = c->next_;
    else head_ = c->next_;
    if (c->next_) c->next_->prev_ = c->prev_;
    c->prev_ = c->next_ = nullptr;
    --connections_;
    if (shutting_down_) maybe_finish_shutdown();
}

}  // namespace sluice
