// A worker process: one libevent loop, the listening sockets it accepts on,
// and the registry of open connections used for graceful shutdown.
#pragma once
#include <event2/event.h>

#include <cstdint>
#include <memory>

#include "core/cycle.h"

namespace sluice {

// Anything that holds a client connection open registers here so that a
// graceful shutdown can close idle ones at once and the rest when they
// finish their current request.
class Closeable {
public:
    virtual ~Closeable() = default;
    // Graceful shutdown began: close now if idle, else after the current request.
    virtual void on_shutdown() = 0;
    // The shutdown timeout passed (or fast stop): close at once.
    virtual void force_close() = 0;

private:
    friend class Worker;
    Closeable* prev_ = nullptr;
    Closeable* next_ = nullptr;
};

class Worker {
public:
    Worker(Cycle& cycle, int index);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // The worker of this process (there is one per process).
    static Worker& current() { return *current_; }

    // Runs modules' init_worker, starts accepting, and runs the loop until
    // the worker is stopped. Returns the process exit code.
    int run();

    // QUIT: stop accepting, close idle connections, let the others finish,
    // bounded by worker_shutdown_timeout. TERM/INT: stop now.
    void begin_graceful_shutdown();
    void stop_now();
    bool shutting_down() const { return shutting_down_; }

    event_base* base() const { return base_; }
    Cycle& cycle() const { return cycle_; }
    int index() const { return index_; }

    void register_connection(Closeable*);
    void unregister_connection(Closeable*);
    uint64_t connection_count() const { return connections_; }
    uint64_t next_connection_number() { return ++connection_number_; }
    // Called when a connection closes during shutdown; ends the loop when the last one is gone.
    void maybe_finish_shutdown();

    // The accept loop stops taking new connections above worker_connections.
    bool at_connection_limit() const { return connections_ >= max_connections_; }

private:
    void start_listening();
    void stop_listening();
    static void on_accept(evutil_socket_t fd, short, void* arg);
    static void on_signal(evutil_socket_t sig, short, void* arg);
    static void on_shutdown_timeout(evutil_socket_t, short, void* arg);

    static Worker* current_;
    Cycle& cycle_;
    int index_;
    event_base* base_ = nullptr;
    struct AcceptEvent;
    std::vector<std::unique_ptr<AcceptEvent>> accept_events_;
    std::vector<event*> signal_events_;
    event* shutdown_timer_ = nullptr;
    bool shutting_down_ = false;
    Closeable* head_ = nullptr;
    uint64_t connections_ = 0;
    uint64_t connection_number_ = 0;
    uint64_t max_connections_ = 1024;
    bool exit_requested_ = false;
};

}  // namespace sluice
