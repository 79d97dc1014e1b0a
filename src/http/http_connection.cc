#include "http/http_connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "event/block_pool.h"
#include "http/http_engine.h"

namespace sluice::http {

namespace {
constexpr uint64_t kLingeringTimeoutMs = 2000;
constexpr size_t kMaxIov = 64;
// One pooled block per request in progress: the RequestSlot, then the
// request's first arena block (more arena comes from the heap if needed).
constexpr size_t kRequestBlockSize = 8192;
constexpr size_t kBodyBufSize = 16384;
}  // namespace

struct HttpConnection::RequestSlot {
    Arena arena;
    std::pmr::vector<OutItem> out;  // the write queue: empty when the request ends
    size_t out_head = 0;
    bool write_assigned = false;
    event write_ev;  // assigned when a write first blocks
    Request request;
    RequestSlot(HttpConnection& c, void* mem, size_t size) : arena(mem, size), out(&arena), request(c, &arena) {}
};

struct HttpConnection::AddressCache {
    sockaddr_storage local{};
    bool local_known = false;
    char peer_text[INET6_ADDRSTRLEN] = {0};
    char local_text[INET6_ADDRSTRLEN] = {0};
};

namespace {
int connection_ex_index() {
    static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}
}  // namespace

HttpConnection* connection_of(const SSL* ssl) {
    return static_cast<HttpConnection*>(SSL_get_ex_data(ssl, connection_ex_index()));
}

void accept_http_connection(Worker& w, Listening& l, int fd, const sockaddr_storage& peer, socklen_t len) {
    auto* c = new HttpConnection(w, l, fd, peer, len);
    c->start();
}

HttpConnection::HttpConnection(Worker& w, Listening& l, int fd, const sockaddr_storage& peer, socklen_t len)
    : worker_(w),
      listening_(l),
      fd_(fd),
      peer_{},
      number_(w.next_connection_number()),
      default_srv_(static_cast<AddressServers*>(l.data)->default_server) {
    if (peer.ss_family == AF_INET6 && len >= socklen_t(sizeof peer_.in6)) memcpy(&peer_.in6, &peer, sizeof peer_.in6);
    else if (peer.ss_family == AF_INET && len >= socklen_t(sizeof peer_.in)) memcpy(&peer_.in, &peer, sizeof peer_.in);
    else peer_.sa.sa_family = peer.ss_family;
}

HttpConnection::~HttpConnection() {
    cancel_timer();
    free_request();
    release_buffer();
    release_body_buffer();
    release_chunked();
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
}

// ---- memory taken only while busy ----

Request& HttpConnection::new_request() {
    constexpr size_t kAlign = alignof(std::max_align_t);
    constexpr size_t kSlotSpace = (sizeof(RequestSlot) + kAlign - 1) / kAlign * kAlign;
    static_assert(kSlotSpace + 4096 <= kRequestBlockSize, "the arena's first block is at least the old inline 4 KiB");
    void* block = BlockPools::current().get(kRequestBlockSize);
    slot_ = new (block) RequestSlot(*this, static_cast<char*>(block) + kSlotSpace, kRequestBlockSize - kSlotSpace);
    request_ = &slot_->request;
    return *request_;
}

void HttpConnection::free_request() {
    if (!slot_) return;
    if (slot_->write_assigned) event_del(&slot_->write_ev);
    write_armed_ = false;
    slot_->~RequestSlot();  // the Request first (its cleanups), then the arena's heap blocks
    BlockPools::current().put(slot_, kRequestBlockSize);
    slot_ = nullptr;
    request_ = nullptr;
}

void HttpConnection::acquire_buffer() {
    if (buf_) return;
    buf_size_ = *default_srv_->client_header_buffer_size;
    buf_ = static_cast<char*>(BlockPools::current().get(buf_size_));
    start_ = end_ = 0;
}

void HttpConnection::release_buffer() {
    if (!buf_) return;
    BlockPools::current().put(buf_, buf_size_);
    buf_ = nullptr;
    buf_size_ = start_ = end_ = 0;
}

namespace {
// A pool size class (block_pool.h), shared with 1 KiB header buffers.
constexpr size_t kChunkedBlockSize = 1024;
static_assert(sizeof(ChunkedDecoder) <= kChunkedBlockSize);
}  // namespace

void HttpConnection::start_chunked(const ChunkedLimits& limits) {
    if (!chunked_) chunked_ = static_cast<ChunkedDecoder*>(BlockPools::current().get(kChunkedBlockSize));
    else chunked_->~ChunkedDecoder();
    new (chunked_) ChunkedDecoder(limits);
}

void HttpConnection::release_chunked() {
    if (!chunked_) return;
    chunked_->~ChunkedDecoder();
    BlockPools::current().put(chunked_, kChunkedBlockSize);
    chunked_ = nullptr;
}

void HttpConnection::keep_pipelined(const char* p, size_t n) {
    if (!pipelined_) pipelined_ = std::make_unique<std::string>();
    pipelined_->append(p, n);
}

void HttpConnection::release_body_buffer() {
    if (!body_buf_) return;
    BlockPools::current().put(body_buf_, kBodyBufSize);
    body_buf_ = nullptr;
    body_buf_start_ = body_buf_end_ = 0;
}

void HttpConnection::start() {
    event_base* base = worker_.base();
    event_assign(&read_ev_, base, fd_, EV_READ | EV_PERSIST, on_read, this);
    worker_.register_connection(this);
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL_CTX* ssl_ctx = static_cast<AddressServers*>(listening_.data)->ssl_ctx;
    if (ssl_ctx && !start_tls(ssl_ctx)) return close();
    event_add(&read_ev_, nullptr);
    reading_ = true;
    arm_timer(*default_srv_->client_header_timeout_ms);
}

// ---- TLS ----

bool HttpConnection::start_tls(SSL_CTX* ctx) {
    ssl_.reset(SSL_new(ctx));
    if (!ssl_ || SSL_set_fd(ssl_.get(), fd_) != 1 ||
        SSL_set_ex_data(ssl_.get(), connection_ex_index(), this) != 1) {
        SLUICE_LOG(LogLevel::Alert, "*%llu SSL_new() failed (%s), client: %s", static_cast<unsigned long long>(number_),
                   tls::drain_errors().c_str(), std::string(peer_text()).c_str());
        ssl_.reset();
        return false;
    }
    SSL_set_accept_state(ssl_.get());
    tls::set_io_modes(ssl_.get());
    state_ = State::Handshake;
    return true;
}

// While handshaking, the read event may have to wait for writability instead.
void HttpConnection::watch_handshake(short what) {
    bool writing = what == EV_WRITE;
    if (writing == handshake_writing_) return;
    handshake_writing_ = writing;
    event_del(&read_ev_);
    event_assign(&read_ev_, worker_.base(), fd_, short(what | EV_PERSIST), on_read, this);
    event_add(&read_ev_, nullptr);
}

void HttpConnection::handshake() {
    if (SSL_in_before(ssl_.get())) {
        // The first byte of a TLS connection is a handshake record's type; an
        // HTTP request is read as one and answered with 400 (nginx's 497).
        char byte;
        ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) return close();
        if (byte != 0x16) {
            ssl_.reset();
            plain_on_tls_port_ = true;
            state_ = State::ReadingHead;
            return read_head();
        }
    }
    switch (tls::handshake(ssl_.get())) {
    case tls::IoStatus::Done:
        watch_handshake(EV_READ);
        state_ = State::ReadingHead;
        arm_timer(*default_srv_->client_header_timeout_ms);
        return read_head();  // the request may have come with the client's Finished
    case tls::IoStatus::WantRead: return watch_handshake(EV_READ);
    case tls::IoStatus::WantWrite: return watch_handshake(EV_WRITE);
    default: {
        long verify = SSL_get_verify_result(ssl_.get());
        std::string why = tls::drain_errors();
        if (why.empty()) why = errno ? strerror(errno) : "peer closed connection in SSL handshake";
        SLUICE_LOG(LogLevel::Info, "*%llu SSL_do_handshake() failed (%s%s%s) while SSL handshaking, client: %s",
                   static_cast<unsigned long long>(number_), why.c_str(), verify != X509_V_OK ? ": " : "",
                   verify != X509_V_OK ? X509_verify_cert_error_string(verify) : "", std::string(peer_text()).c_str());
        SSL_set_quiet_shutdown(ssl_.get(), 1);
        return close();
    }
    }
}

// A fatal TLS error: the session can send nothing more (not even close_notify).
void HttpConnection::tls_failed(const char* what) {
    std::string why = tls::drain_errors();
    SLUICE_LOG(LogLevel::Info, "*%llu %s failed (%s), client: %s", static_cast<unsigned long long>(number_), what,
               why.empty() ? (errno ? strerror(errno) : "connection broken") : why.c_str(),
               std::string(peer_text()).c_str());
    SSL_set_quiet_shutdown(ssl_.get(), 1);
}

ssize_t HttpConnection::tls_recv(char* buf, size_t len, bool peek) {
    tls::IoResult r = peek ? tls::peek(ssl_.get(), buf, len) : tls::read(ssl_.get(), buf, len);
    switch (r.status) {
    case tls::IoStatus::Done: return ssize_t(r.bytes);
    case tls::IoStatus::Eof: return 0;
    case tls::IoStatus::WantRead:
    case tls::IoStatus::WantWrite: errno = EAGAIN; return -1;
    case tls::IoStatus::Error: break;
    }
    tls_failed(peek ? "SSL_peek()" : "SSL_read()");
    errno = ECONNRESET;
    return -1;
}

ssize_t HttpConnection::tls_send(const iovec* iov, int cnt) {
    tls::IoResult r = tls::writev(ssl_.get(), iov, cnt);
    if (r.bytes > 0) return ssize_t(r.bytes);  // the next call meets the block again
    switch (r.status) {
    case tls::IoStatus::Done: return 0;
    case tls::IoStatus::WantRead:
    case tls::IoStatus::WantWrite: errno = EAGAIN; return -1;
    case tls::IoStatus::Eof:
    case tls::IoStatus::Error: break;
    }
    tls_failed("SSL_write()");
    errno = EPIPE;
    return -1;
}

// ---- timers and events ----

namespace {
TimerQueues& connection_timers(void (*on_timer)(TimerNode&)) {
    static TimerQueues queues(on_timer);
    return queues;
}
}  // namespace

void HttpConnection::arm_timer(uint64_t ms) {
    connection_timers(on_timer).arm(worker_.base(), *this, ms);
}

void HttpConnection::cancel_timer() {
    if (timer_armed()) connection_timers(on_timer).cancel(*this);
}

void HttpConnection::want_write(bool on) {
    if (on == write_armed_ || !slot_) return;
    write_armed_ = on;
    if (on) {
        if (!slot_->write_assigned) {
            event_assign(&slot_->write_ev, worker_.base(), fd_, EV_WRITE | EV_PERSIST, on_write, this);
            slot_->write_assigned = true;
        }
        event_add(&slot_->write_ev, nullptr);
    } else {
        event_del(&slot_->write_ev);
    }
}

void HttpConnection::on_timer(TimerNode& node) {
    auto& c = static_cast<HttpConnection&>(node);
    switch (c.state_) {
    case State::Handshake:
        SLUICE_LOG(LogLevel::Info, "*%llu client timed out (110: Connection timed out) while SSL handshaking, client: %s",
                   static_cast<unsigned long long>(c.number_), std::string(c.peer_text()).c_str());
        SSL_set_quiet_shutdown(c.ssl_.get(), 1);
        c.close();
        return;
    case State::ReadingHead:
        if (c.end_ > c.start_) {
            SLUICE_LOG(LogLevel::Info, "*%llu client timed out (110: Connection timed out) while reading client request headers, client: %s",
                       static_cast<unsigned long long>(c.number_), std::string(c.peer_text()).c_str());
            c.reject(408, "client timed out");
            return;
        }
        c.close();
        return;
    case State::Processing:
        if (c.body_reader_ && !c.write_armed_) {
            SLUICE_LOG(LogLevel::Info, "*%llu client timed out (110: Connection timed out) while reading client request body, client: %s",
                       static_cast<unsigned long long>(c.number_), std::string(c.peer_text()).c_str());
            c.closing_ = true;  // the rest of the body may still come: the stream is out of step
            c.end_body(408);
            return;
        }
        // Armed while output is blocked: send_timeout.
        SLUICE_LOG(LogLevel::Info, "*%llu client timed out (110: Connection timed out) while sending response to client, client: %s",
                   static_cast<unsigned long long>(c.number_), std::string(c.peer_text()).c_str());
        c.close();
        return;
    default: c.close(); return;
    }
}

void HttpConnection::on_read(evutil_socket_t, short, void* arg) {
    auto& c = *static_cast<HttpConnection*>(arg);
    switch (c.state_) {
    case State::Handshake: c.handshake(); break;
    case State::ReadingHead:
    case State::Idle: c.read_head(); break;
    case State::DiscardingBody: c.discard_body(); break;
    case State::Lingering: {
        char tmp[4096];
        ssize_t n;
        while ((n = c.recv_bytes(tmp, sizeof tmp)) > 0) {}
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) c.close();
        break;
    }
    default:
        if (c.body_reader_ && !c.body_paused_) {
            c.pump_body();
            break;
        }
        if (c.request_ && c.request_->client_close_fn_ && c.body_complete()) {
            c.check_client_closed();
            break;
        }
        // Not reading during processing: level-triggered reads would spin.
        event_del(&c.read_ev_);
        c.reading_ = false;
        break;
    }
}

void HttpConnection::on_write(evutil_socket_t, short, void* arg) {
    auto& c = *static_cast<HttpConnection*>(arg);
    c.flush();
}

// One event per worker for every posted connection (instead of an event in
// each connection): the queue is run in the order of posting.
namespace {
struct PostedQueue {
    event ev;
    event_base* base = nullptr;
    HttpConnection* head = nullptr;
    HttpConnection* tail = nullptr;
};
PostedQueue& posted_queue() {
    static PostedQueue q;
    return q;
}
}  // namespace

void HttpConnection::post_request_done() {
    if (posted_) return;
    posted_ = true;
    PostedQueue& q = posted_queue();
    if (q.base != worker_.base()) {  // the first post of this worker's loop
        q.base = worker_.base();
        q.head = q.tail = nullptr;
        event_assign(&q.ev, q.base, -1, 0, on_posted, nullptr);
    }
    posted_next_ = nullptr;
    if (q.tail) q.tail->posted_next_ = this;
    else q.head = this;
    q.tail = this;
    event_active(&q.ev, 0, 0);
}

void HttpConnection::on_posted(evutil_socket_t, short, void*) {
    PostedQueue& q = posted_queue();
    while (HttpConnection* c = q.head) {
        q.head = c->posted_next_;
        if (!q.head) q.tail = nullptr;
        c->posted_next_ = nullptr;
        c->posted_ = false;
        if (c->state_ == State::Closed) {
            delete c;
            continue;
        }
        c->request_done();
    }
}

// ---- reading the head ----

bool HttpConnection::ensure_room() {
    if (end_ < buf_size_) return true;
    if (start_ > 0) {
        memmove(buf_, buf_ + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
        return true;
    }
    // Grow once to a large buffer, then to the whole allowed head; the
    // parser has already answered 414/431 when a limit was passed.
    size_t large = *default_srv_->large_client_header_buffers_size;
    size_t max = large * *default_srv_->large_client_header_buffers_num;
    size_t next = buf_size_ < large ? large : max;
    if (next <= buf_size_) return false;
    auto* bigger = static_cast<char*>(BlockPools::current().get(next));
    memcpy(bigger, buf_, end_);
    BlockPools::current().put(buf_, buf_size_);
    buf_ = bigger;
    buf_size_ = next;
    return true;
}

bool HttpConnection::fill_buffer(bool& eof) {
    eof = false;
    acquire_buffer();
    if (!ensure_room()) return true;
    ssize_t n = recv_bytes(buf_ + end_, buf_size_ - end_);
    if (n > 0) {
        end_ += size_t(n);
        return true;
    }
    if (n == 0) {
        eof = true;
        return true;
    }
    if (errno == EAGAIN || errno == EINTR) return true;
    SLUICE_LOG(LogLevel::Info, "*%llu recv() failed (%d: %s) while reading client request, client: %s",
               static_cast<unsigned long long>(number_), errno, strerror(errno), std::string(peer_text()).c_str());
    return false;
}

void HttpConnection::read_head() {
    // TLS: what was decrypted beyond the buffer's room stays in the SSL
    // object, and the socket will not signal it again: read until it is taken.
    for (int round = 0; round < 64; ++round) {
        bool eof;
        if (!fill_buffer(eof)) return close();
        if (eof) {
            if (end_ > start_)
                SLUICE_LOG(LogLevel::Info, "*%llu client prematurely closed connection while reading client request headers, client: %s",
                           static_cast<unsigned long long>(number_), std::string(peer_text()).c_str());
            return close();
        }
        if (end_ == start_) {
            // Spurious readiness: an idle connection keeps no buffer.
            if (!request_) release_buffer();
            return;
        }
        if (state_ == State::Idle) {
            state_ = State::ReadingHead;
            arm_timer(*default_srv_->client_header_timeout_ms);
        }
        try_parse();
        if (state_ != State::ReadingHead || !tls_has_pending()) return;
    }
}

void HttpConnection::try_parse() {
    if (!request_) new_request();
    size_t large = *default_srv_->large_client_header_buffers_size;
    ParseLimits limits;
    limits.max_request_line = large;
    limits.max_header_line = large;
    limits.max_head = large * *default_srv_->large_client_header_buffers_num;
    RequestHead& head = request_->head_;
    head.reset();
    switch (parse_request_head(buf_ + start_, end_ - start_, limits, head)) {
    case ParseResult::Complete: begin_request(head.head_length); return;
    case ParseResult::Incomplete: return;
    case ParseResult::Error:
        SLUICE_LOG(LogLevel::Info, "*%llu client sent invalid request: %s, client: %s",
                   static_cast<unsigned long long>(number_), head.error_reason ? head.error_reason : "bad request",
                   std::string(peer_text()).c_str());
        reject(head.error_status ? head.error_status : 400, head.error_reason);
        return;
    }
}

void HttpConnection::begin_request(size_t head_length) {
    if (plain_on_tls_port_) {
        SLUICE_LOG(LogLevel::Info, "*%llu client sent plain HTTP request to HTTPS port while reading client request headers, client: %s",
                   static_cast<unsigned long long>(number_), std::string(peer_text()).c_str());
        return reject(497, "plain HTTP request to HTTPS port");
    }
    ++requests_;
    state_ = State::Processing;
    cancel_timer();
    start_ += head_length;
    Request& r = *request_;
    body_left_ = r.head_.body == RequestHead::Body::Length ? r.head_.content_length : 0;
    body_chunked_ = r.head_.body == RequestHead::Body::Chunked;
    if (body_chunked_) start_chunked({});
    run_request(r);
}

// A head that could not be parsed: answer and close, since the framing of
// whatever follows is in doubt.
void HttpConnection::reject(int status, const char* reason) {
    (void)reason;
    closing_ = true;
    state_ = State::Processing;
    cancel_timer();
    if (!request_) new_request();
    ++requests_;
    start_ = end_;  // nothing after a bad head is trusted
    body_left_ = 0;
    body_chunked_ = false;
    reject_request(*request_, status);
}

// ---- after a request ----

void HttpConnection::request_done() {
    if (!request_) return;
    Request& r = *request_;
    // A reader the request left paused dies with it; the core discards the rest.
    body_reader_ = nullptr;
    body_paused_ = false;
    drop_unread_body_bytes();
    bool keep = r.keep_alive_ && !closing_ && !worker_.shutting_down();
    if (keep && requests_ >= *r.core_conf().keepalive_requests) keep = false;
    bool body_unread = body_left_ > 0 || body_chunked_;
    if (body_unread && r.head_.expect_continue && end_ == start_) keep = false;  // the client waits for 100; don't wait for it
    keepalive_ms_ = uint32_t(std::min<uint64_t>(*r.core_conf().keepalive_timeout_ms, UINT32_MAX));
    uint64_t body_timeout_ms = *r.core_conf().client_body_timeout_ms;
    if (keepalive_ms_ == 0) keep = false;
    complete_request(r);  // log phase
    free_request();
    release_body_buffer();
    if (!keep) {
        closing_ = true;
        if (body_unread || end_ > start_) return start_lingering_close();
        return close();
    }
    if (body_unread) {
        state_ = State::DiscardingBody;
        arm_timer(body_timeout_ms);
        return discard_body();
    }
    continue_after_request();
}

void HttpConnection::continue_after_request() {
    if (pipelined_) {
        // Bytes read past a chunked body belong to the next request.
        std::string& pipelined = *pipelined_;
        size_t have = end_ - start_;
        size_t need = have + pipelined.size();
        if (!buf_) acquire_buffer();  // (start_ == end_ == 0 then)
        if (need > buf_size_) {
            auto* bigger = static_cast<char*>(BlockPools::current().get(need));
            memcpy(bigger, buf_ + start_, have);
            BlockPools::current().put(buf_, buf_size_);
            buf_ = bigger;
            buf_size_ = need;
        } else {
            memmove(buf_, buf_ + start_, have);
        }
        memcpy(buf_ + have, pipelined.data(), pipelined.size());
        start_ = 0;
        end_ = need;
        pipelined_.reset();
    }
    if (start_ < end_) {
        // A pipelined request is already here: it keeps the buffer.
        memmove(buf_, buf_ + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
        state_ = State::ReadingHead;
        arm_timer(*default_srv_->client_header_timeout_ms);
        if (!reading_) {
            event_add(&read_ev_, nullptr);
            reading_ = true;
        }
        return try_parse();
    }
    release_buffer();  // idle with nothing pipelined
    release_chunked();
    state_ = State::Idle;
    if (!reading_) {
        event_add(&read_ev_, nullptr);
        reading_ = true;
    }
    arm_timer(keepalive_ms_);
    // A pipelined request the TLS layer already took from the socket.
    if (tls_has_pending()) read_head();
}

bool HttpConnection::consume_body(const char*& p, size_t& n) {
    if (!body_chunked_) {
        size_t take = size_t(std::min<uint64_t>(body_left_, n));
        p += take;
        n -= take;
        body_left_ -= take;
        return true;
    }
    while (n > 0) {
        size_t used = 0;
        std::string_view data;
        auto st = chunked_->decode(p, n, used, data);
        p += used;
        n -= used;
        if (st == ChunkedDecoder::Status::Done) {
            body_chunked_ = false;
            return true;
        }
        if (st == ChunkedDecoder::Status::Error) return false;
        if (st == ChunkedDecoder::Status::NeedMore && used == 0) break;
    }
    return true;
}

void HttpConnection::discard_body() {
    for (;;) {
        const char* p = buf_ + start_;
        size_t n = end_ - start_;
        if (!consume_body(p, n)) return close();
        start_ = size_t(p - buf_);
        if (body_left_ == 0 && !body_chunked_) {
            cancel_timer();
            return continue_after_request();
        }
        start_ = end_ = 0;
        bool eof;
        if (!fill_buffer(eof) || eof) return close();
        if (end_ == 0) {
            if (!reading_) {
                event_add(&read_ev_, nullptr);
                reading_ = true;
            }
            return;
        }
    }
}

void HttpConnection::start_lingering_close() {
    // Half-close so the client reads the response before any reset caused
    // by the bytes it is still sending. The response is fully written by now.
    if (ssl_) tls::shutdown(ssl_.get());
    ::shutdown(fd_, SHUT_WR);
    state_ = State::Lingering;
    if (!reading_) {
        event_add(&read_ev_, nullptr);
        reading_ = true;
    }
    arm_timer(kLingeringTimeoutMs);
}

void HttpConnection::close() {
    if (state_ == State::Closed) return;
    // close_notify, when the session got that far and nothing failed (best
    // effort: a socket that cannot take it now is not waited for).
    if (ssl_ && state_ != State::Handshake && state_ != State::Lingering) tls::shutdown(ssl_.get());
    state_ = State::Closed;
    event_del(&read_ev_);
    if (slot_ && slot_->write_assigned) event_del(&slot_->write_ev);
    write_armed_ = false;
    cancel_timer();
    if (request_) abort_request(*request_);
    worker_.unregister_connection(this);
    post_request_done();  // deleted from the loop, never under a handler
}

int HttpConnection::detach(std::string& leftover, tls::SslPtr& ssl) {
    if (state_ == State::Closed) return -1;
    if (ssl_) SSL_set_ex_data(ssl_.get(), connection_ex_index(), nullptr);
    ssl = std::move(ssl_);
    if (buf_) leftover.append(buf_ + start_, end_ - start_);
    if (pipelined_) leftover.append(*pipelined_);
    start_ = end_;
    pipelined_.reset();
    int fd = fd_;
    fd_ = -1;
    close();
    return fd;
}

// ---- the request body ----

void HttpConnection::start_body(BodyReader* reader) {
    Request& r = *request_;
    body_reader_ = reader;
    body_paused_ = false;
    if (body_chunked_) {
        ChunkedLimits limits;
        uint64_t max = *r.core_conf().client_max_body_size;
        limits.max_body = max ? max : UINT64_MAX;
        start_chunked(limits);
    }
    if (r.head_.expect_continue && start_ == end_ && (body_left_ > 0 || body_chunked_)) {
        queue("HTTP/1.1 100 Continue\r\n\r\n");
        flush();
    }
    pump_body();
}

void HttpConnection::resume_body() {
    if (!body_reader_ || !body_paused_) return;
    body_paused_ = false;
    pump_body();
}

void HttpConnection::end_body(int status) {
    BodyReader* reader = body_reader_;
    body_reader_ = nullptr;
    cancel_timer();
    if (reader) reader->on_body_end(*request_, status);
}

HttpConnection::BodyStep HttpConnection::feed_body(const char*& p, size_t& n) {
    Request& r = *request_;
    for (;;) {
        if (!body_chunked_) {
            if (body_left_ == 0) return BodyStep::Done;
            if (n == 0) return BodyStep::NeedData;
            size_t take = size_t(std::min<uint64_t>(body_left_, n));
            std::string_view data(p, take);
            p += take;
            n -= take;
            body_left_ -= take;
            bool more = body_reader_->on_body_data(r, data);
            if (!body_reader_) return BodyStep::Stopped;
            if (body_left_ == 0) return BodyStep::Done;
            if (!more) return BodyStep::Paused;
            continue;
        }
        if (n == 0) return BodyStep::NeedData;
        size_t used = 0;
        std::string_view data;
        auto st = chunked_->decode(p, n, used, data);
        p += used;
        n -= used;
        switch (st) {
        case ChunkedDecoder::Status::Data: {
            bool more = body_reader_->on_body_data(r, data);
            if (!body_reader_) return BodyStep::Stopped;
            if (!more) return BodyStep::Paused;
            break;
        }
        case ChunkedDecoder::Status::Done: body_chunked_ = false; return BodyStep::Done;
        case ChunkedDecoder::Status::Error: return BodyStep::Error;
        case ChunkedDecoder::Status::NeedMore: return BodyStep::NeedData;
        }
    }
}

// Feeds the body bytes already read: first what arrived with the head, then
// what a paused reader left of the last socket read.
HttpConnection::BodyStep HttpConnection::feed_buffered_body() {
    if (start_ < end_) {
        const char* p = buf_ + start_;
        size_t n = end_ - start_;
        BodyStep step = feed_body(p, n);
        start_ = size_t(p - buf_);
        return step;
    }
    if (body_buf_start_ < body_buf_end_) {
        const char* p = body_buf_ + body_buf_start_;
        size_t n = body_buf_end_ - body_buf_start_;
        BodyStep step = feed_body(p, n);
        body_buf_start_ = size_t(p - body_buf_);
        if (step == BodyStep::Done && n > 0) keep_pipelined(p, n);  // past a chunked body's end
        if (step == BodyStep::Done || body_buf_start_ == body_buf_end_) body_buf_start_ = body_buf_end_ = 0;
        return step;
    }
    // Content-Length: 0, or a length that the head's buffer held completely.
    if (!body_chunked_ && body_left_ == 0) return BodyStep::Done;
    return BodyStep::NeedData;
}

void HttpConnection::pump_body() {
    Request& r = *request_;
    for (;;) {
        BodyStep step = feed_buffered_body();
        if (step == BodyStep::NeedData) {
            if (!body_buf_) body_buf_ = static_cast<char*>(BlockPools::current().get(kBodyBufSize));
            size_t want = kBodyBufSize;
            if (!body_chunked_) want = size_t(std::min<uint64_t>(body_left_, kBodyBufSize));
            ssize_t got = recv_bytes(body_buf_, want);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (!reading_) {
                    event_add(&read_ev_, nullptr);
                    reading_ = true;
                }
                arm_timer(*r.core_conf().client_body_timeout_ms);
                return;
            }
            if (got <= 0) {
                SLUICE_LOG(LogLevel::Info, "*%llu client prematurely closed connection while reading client request body, client: %s",
                           static_cast<unsigned long long>(number_), std::string(peer_text()).c_str());
                closing_ = true;
                return end_body(499);
            }
            // Kept until fed: a reader that pauses midway resumes from here.
            body_buf_start_ = 0;
            body_buf_end_ = size_t(got);
            continue;
        }
        switch (step) {
        case BodyStep::NeedData: continue;
        case BodyStep::Paused:
            body_paused_ = true;
            if (reading_) {
                event_del(&read_ev_);
                reading_ = false;
            }
            cancel_timer();
            return;
        case BodyStep::Done: return end_body(0);
        case BodyStep::Error:
            closing_ = true;
            return end_body(chunked_ && chunked_->error_status() ? chunked_->error_status() : 400);
        case BodyStep::Stopped: return;
        }
    }
}

// The request ended with part of its body read but not taken: those bytes
// are skipped like the rest of the body (what follows a chunked body's end
// is the next request's).
void HttpConnection::drop_unread_body_bytes() {
    if (body_buf_start_ == body_buf_end_) return;
    const char* p = body_buf_ + body_buf_start_;
    size_t n = body_buf_end_ - body_buf_start_;
    body_buf_start_ = body_buf_end_ = 0;
    if (!consume_body(p, n)) {
        closing_ = true;
        return;
    }
    if (n > 0) keep_pipelined(p, n);
}

// ---- the client closing while its request is processed ----

void HttpConnection::watch_client_close() {
    if (state_ != State::Processing || reading_ || !body_complete()) return;
    event_add(&read_ev_, nullptr);
    reading_ = true;
}

// nginx's ngx_http_upstream_check_broken_connection: a peek tells a client
// that closed (EOF, or an error such as a reset) from one that pipelined
// its next request.
void HttpConnection::check_client_closed() {
    char byte;
    // TLS: the peek goes through the session, so a close_notify reads as
    // the close it is and a pipelined request's records as data.
    ssize_t n = ssl_ ? tls_recv(&byte, 1, true) : ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    // Either way reads stop: the next request waits in the socket (and
    // level-triggered readiness would spin), or there is nothing more.
    event_del(&read_ev_);
    reading_ = false;
    if (n > 0) return;
    closing_ = true;
    Request& r = *request_;
    auto* fn = r.client_close_fn_;
    r.client_close_fn_ = nullptr;
    fn(r, r.client_close_arg_);
}

// ---- graceful shutdown ----

void HttpConnection::on_shutdown() {
    closing_ = true;
    if (state_ == State::Idle || (state_ == State::ReadingHead && end_ == start_)) {
        // A request may already be in the socket: serve it rather than reset it.
        char byte;
        if (tls_has_pending() || ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) return;
        close();
    }
}

void HttpConnection::force_close() { close(); }

// ---- writing ----

void HttpConnection::queue(std::string_view data) {
    if (data.empty()) return;
    slot_->out.push_back({data.data(), data.size(), -1, 0, false});
    pending_bytes_ += data.size();
}

void HttpConnection::queue_file(int fd, off_t pos, off_t size, bool use_sendfile) {
    if (size <= 0) return;
    // No sendfile through TLS: the file is read and written through the session.
    slot_->out.push_back({nullptr, size_t(size), fd, pos, !use_sendfile || ssl_ != nullptr});
    pending_bytes_ += size_t(size);
}

bool HttpConnection::flush() {
    if (state_ == State::Closed) return false;
    if (!slot_) return true;  // nothing can be queued without a request
    auto& out_ = slot_->out;
    size_t& out_head_ = slot_->out_head;
    bool was_blocked = write_armed_;
    while (out_head_ < out_.size()) {
        OutItem& item = out_[out_head_];
        ssize_t n;
        if (item.file_fd >= 0) {
            n = write_file_item(item);
        } else {
            iovec iov[kMaxIov];
            size_t cnt = 0;
            for (size_t i = out_head_; i < out_.size() && cnt < kMaxIov && out_[i].file_fd < 0; ++i)
                iov[cnt++] = {const_cast<char*>(out_[i].data), out_[i].len};
            n = send_iov(iov, int(cnt));
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                want_write(true);
                if (request_) arm_timer(*request_->core_conf().send_timeout_ms);
                return true;
            }
            SLUICE_LOG(LogLevel::Info, "*%llu writev() failed (%d: %s) while sending response to client, client: %s",
                       static_cast<unsigned long long>(number_), errno, strerror(errno),
                       std::string(peer_text()).c_str());
            close();
            return false;
        }
        size_t left = size_t(n);
        pending_bytes_ -= left;
        while (left > 0) {
            OutItem& it = out_[out_head_];
            size_t take = std::min(left, it.len);
            it.len -= take;
            if (it.file_fd >= 0) it.file_pos += off_t(take);
            else it.data += take;
            left -= take;
            if (it.len == 0) ++out_head_;
        }
        if (n == 0) break;
    }
    out_.clear();
    out_head_ = 0;
    want_write(false);
    // Tell the request only when it was waiting for the socket: a producer
    // calling send_body must not be re-entered from inside it.
    if (was_blocked && request_ && state_ == State::Processing) {
        cancel_timer();
        output_drained(*request_);
    }
    return true;
}

ssize_t HttpConnection::write_file_item(OutItem& item) {
    if (!item.read_file) {
        off_t pos = item.file_pos;
        return ::sendfile(fd_, item.file_fd, &pos, item.len);
    }
    char chunk[16384];
    ssize_t got = ::pread(item.file_fd, chunk, std::min(sizeof chunk, item.len), item.file_pos);
    if (got <= 0) {
        errno = got == 0 ? EIO : errno;  // the file shrank under us
        return -1;
    }
    iovec iov{chunk, size_t(got)};
    return send_iov(&iov, 1);
}

void HttpConnection::set_nodelay(bool on) {
    if (on == nodelay_) return;
    int v = on ? 1 : 0;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v);
    nodelay_ = on;
}

// ---- addresses ----

HttpConnection::AddressCache& HttpConnection::addresses() {
    if (!addresses_) addresses_ = std::make_unique<AddressCache>();
    return *addresses_;
}

std::string_view HttpConnection::peer_text() {
    char* text = addresses().peer_text;
    if (!text[0]) {
        if (peer_.sa.sa_family == AF_INET6) inet_ntop(AF_INET6, &peer_.in6.sin6_addr, text, INET6_ADDRSTRLEN);
        else if (peer_.sa.sa_family == AF_UNIX) memcpy(text, "unix:", 6);  // as nginx shows it
        else inet_ntop(AF_INET, &peer_.in.sin_addr, text, INET6_ADDRSTRLEN);
    }
    return text;
}

uint16_t HttpConnection::peer_port() const {
    return ntohs(peer_.sa.sa_family == AF_INET6 ? peer_.in6.sin6_port : peer_.in.sin_port);
}

const sockaddr_storage& HttpConnection::local() {
    AddressCache& a = addresses();
    if (!a.local_known) {
        socklen_t len = sizeof a.local;
        if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a.local), &len) != 0) a.local = listening_.addr;
        a.local_known = true;
    }
    return a.local;
}

std::string_view HttpConnection::local_text() {
    const sockaddr_storage& a = local();
    char* text = addresses_->local_text;
    if (!text[0]) {
        if (a.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr, text, INET6_ADDRSTRLEN);
        else
            inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr, text, INET6_ADDRSTRLEN);
    }
    return text;
}

uint16_t HttpConnection::local_port() {
    const sockaddr_storage& a = local();
    return ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port
                                         : reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
}

}  // namespace sluice::http
