// A client connection: reads request heads into its buffer, runs requests
// one at a time (pipelined ones in order), writes responses, and keeps the
// connection alive or closes it.
#pragma once
#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memory>
#include <memory_resource>
#include <optional>

#include "event/timer_queue.h"
#include "event/tls.h"
#include "event/worker.h"
#include "http/http_chunked.h"
#include "http/http_core.h"
#include "http/http_request.h"

namespace sluice::http {

void accept_http_connection(Worker&, Listening&, int fd, const sockaddr_storage& peer, socklen_t peer_len);

class HttpConnection;
// The connection an SSL* of a client connection belongs to (SSL ex_data), for
// the TLS module's callbacks (SNI, session cache); null once taken over.
HttpConnection* connection_of(const SSL* ssl);

// A client's address in the room of an IPv6 one rather than
// sockaddr_storage's 128 bytes (every open connection holds one): a unix
// socket's client keeps only its family, as it has no address to show.
union ClientAddress {
    sockaddr sa;
    sockaddr_in in;
    sockaddr_in6 in6;
};

// Its timer (header, body, send, keep-alive, lingering timeouts) is the
// TimerNode base: 32 bytes in queues per duration instead of a struct event.
class HttpConnection final : public Closeable, public TimerNode {
public:
    HttpConnection(Worker&, Listening&, int fd, const sockaddr_storage& peer, socklen_t peer_len);
    ~HttpConnection() override;

    void start();

    // Closeable
    void on_shutdown() override;
    void force_close() override;

    // ---- used by Request ----
    // Queues bytes for the socket; the memory must stay valid until written
    // (the request's arena or configuration).
    void queue(std::string_view data);
    // use_sendfile false (`sendfile off`): the file is read and written instead.
    void queue_file(int fd, off_t pos, off_t size, bool use_sendfile = true);
    // tcp_nodelay of the current location; a syscall only when it changes.
    void set_nodelay(bool on);
    // Writes what is queued; returns false if the connection failed.
    bool flush();
    size_t pending() const { return pending_bytes_; }
    // The request is finished: complete it from the loop (never while one
    // of its handlers is on the stack).
    void post_request_done();
    // Closes the connection (the object is freed from the loop).
    void close();
    // Request::take_over_connection: gives up the descriptor, the TLS state
    // (when the connection is TLS) and the bytes read past the request, then
    // closes without closing the descriptor.
    int detach(std::string& leftover, tls::SslPtr& ssl);

    // The request body (see BodyReader).
    void start_body(BodyReader* reader);
    void resume_body();
    // Request::watch_client_close: reads are watched again if they were
    // given up during processing.
    void watch_client_close();

    Worker& worker() const { return worker_; }
    int fd() const { return fd_; }
    uint64_t number() const { return number_; }
    uint64_t requests() const { return requests_; }
    const sockaddr& peer() const { return peer_.sa; }
    std::string_view peer_text();
    uint16_t peer_port() const;
    const sockaddr_storage& local();
    std::string_view local_text();
    uint16_t local_port();
    Listening& listening() const { return listening_; }

    // The TLS state of a connection to a `listen ... ssl` address; null for
    // plain connections.
    SSL* ssl() const { return ssl_.get(); }
    // The server requests fall back to when the Host names none: the
    // address's default server, or the one the TLS client named (SNI).
    CoreSrvConf* default_server() const { return default_srv_; }
    void set_default_server(CoreSrvConf* s) { default_srv_ = s; }

private:
    enum class State : uint8_t { Handshake, ReadingHead, Processing, DiscardingBody, Idle, Lingering, Closed };

    static void on_read(evutil_socket_t, short, void* arg);
    static void on_write(evutil_socket_t, short, void* arg);
    static void on_timer(TimerNode& node);
    static void on_posted(evutil_socket_t, short, void* arg);

    void read_head();
    // Socket I/O through the TLS layer when the connection has one; the
    // plain path is the system call itself. Results and errno as read(2),
    // writev(2), recv(MSG_PEEK) report them.
    ssize_t recv_bytes(char* buf, size_t len) { return ssl_ ? tls_recv(buf, len, false) : ::read(fd_, buf, len); }
    ssize_t send_iov(const iovec* iov, int cnt) { return ssl_ ? tls_send(iov, cnt) : ::writev(fd_, iov, cnt); }
    ssize_t tls_recv(char* buf, size_t len, bool peek);
    ssize_t tls_send(const iovec* iov, int cnt);
    void tls_failed(const char* what);
    bool start_tls(SSL_CTX* ctx);
    void handshake();
    void watch_handshake(short what);
    bool tls_has_pending() const { return ssl_ && SSL_has_pending(ssl_.get()); }
    bool fill_buffer(bool& eof);
    bool ensure_room();
    void try_parse();
    void begin_request(size_t head_length);
    void reject(int status, const char* reason);
    void request_done();
    void continue_after_request();
    void discard_body();
    enum class BodyStep : uint8_t { NeedData, Paused, Done, Error, Stopped };
    BodyStep feed_body(const char*& p, size_t& n);
    BodyStep feed_buffered_body();
    void pump_body();
    void drop_unread_body_bytes();
    void end_body(int status);
    bool consume_body(const char*& p, size_t& n);
    void start_lingering_close();
    bool body_complete() const { return !body_reader_ && body_left_ == 0 && !body_chunked_; }
    void check_client_closed();
    void arm_timer(uint64_t ms);
    void cancel_timer();
    void want_write(bool on);
    // Per-request memory (see RequestSlot): taken when a request starts,
    // given back when it ends.
    Request& new_request();
    void free_request();
    // The read buffer exists only while bytes are pending or a request
    // holds views into it.
    void acquire_buffer();
    void release_buffer();
    void release_body_buffer();

    Worker& worker_;
    Listening& listening_;
    int fd_;
    ClientAddress peer_;
    tls::SslPtr ssl_;
    // The local address and the addresses as text, out of line: made when
    // first asked for ($server_addr, $remote_addr, a log line), then kept.
    struct AddressCache;
    std::unique_ptr<AddressCache> addresses_;
    AddressCache& addresses();
    uint64_t number_;
    uint64_t requests_ = 0;
    // The flags together: every byte of an idle connection counts.
    State state_ = State::ReadingHead;
    bool closing_ = false;  // close after the current request
    bool write_armed_ = false;
    bool reading_ = false;
    bool posted_ = false;
    bool body_chunked_ = false;
    bool body_paused_ = false;
    bool nodelay_ = true;
    bool handshake_writing_ = false;   // the handshake waits for the socket to take its bytes
    bool plain_on_tls_port_ = false;   // a plain HTTP request came to a TLS address: 497
    uint32_t keepalive_ms_ = 75000;  // keepalive_timeout of the last request's location

    event read_ev_;
    // In the worker's queue of posted connections (post_request_done).
    HttpConnection* posted_next_ = nullptr;

    // The read buffer, from the worker's block pools. Request views point
    // into it, so it is never reallocated while a request lives; between
    // requests the unread tail moves to the front, and an idle connection
    // with nothing pipelined gives it back (nginx's ngx_http_set_keepalive).
    char* buf_ = nullptr;
    size_t buf_size_ = 0, start_ = 0, end_ = 0;
    CoreSrvConf* default_srv_;

    // Remaining request body to skip before the next request.
    uint64_t body_left_ = 0;
    // A chunked body's decoder, from the worker's block pools while such a
    // body is read or skipped (it may outlive its request).
    ChunkedDecoder* chunked_ = nullptr;
    void start_chunked(const ChunkedLimits& limits);
    void release_chunked();
    BodyReader* body_reader_ = nullptr;
    char* body_buf_ = nullptr;  // socket reads of body bytes past the head buffer (pooled)
    // What a reader that paused has not taken yet of the last socket read.
    uint32_t body_buf_start_ = 0, body_buf_end_ = 0;
    std::unique_ptr<std::string> pipelined_;  // bytes read past a chunked body: the next request's
    void keep_pipelined(const char* p, size_t n);

    // Write queue.
    struct OutItem {
        const char* data;
        size_t len;
        int file_fd;
        off_t file_pos;
        bool read_file;  // pread + write instead of sendfile
    };
    ssize_t write_file_item(OutItem& item);
    size_t pending_bytes_ = 0;

    // Everything that lives only while a request is in progress, placed at
    // the start of one pooled block whose rest seeds the request's arena:
    // an idle connection holds none of it.
    struct RequestSlot;
    RequestSlot* slot_ = nullptr;
    Request* request_ = nullptr;  // in slot_
};

}  // namespace sluice::http
