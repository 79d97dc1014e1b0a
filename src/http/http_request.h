// An HTTP request and the API modules use on it: configuration lookup,
// variables, response headers, sending the response, suspending and resuming.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory_resource>
#include <string>
#include <string_view>
#include <vector>

#include "core/arena.h"
#include "core/module.h"
#include "event/loop_clock.h"
#include "event/tls.h"
#include "http/http_core.h"
#include "http/http_parse.h"

namespace sluice::http {

class HttpConnection;

// A piece of a response body: memory the request outlives, or a file range.
struct BodyBuf {
    std::string_view data;
    int file_fd = -1;  // when >= 0, send [file_pos, file_pos + file_size) of this file
    off_t file_pos = 0;
    off_t file_size = 0;
};

struct BodyChain {
    std::pmr::vector<BodyBuf> bufs;
    bool last = false;  // the final piece of the body
    // The producer wants these bytes on the wire now (an unbuffered proxied
    // stream): a filter that holds output back (gzip) flushes it.
    bool flush = false;
    // The memory of `bufs` stays valid until the request ends (configuration,
    // a pinned cache entry): a filter may keep views into it and take it
    // piece by piece as the client reads, as it does with files.
    bool stable = false;
    explicit BodyChain(std::pmr::memory_resource* mr) : bufs(mr) {}
    uint64_t size() const;
};

// Response headers. The well-known ones are fields; the rest are in `headers`
// (names and values must live as long as the request: arena or config).
struct HeadersOut {
    int status = 0;
    std::string_view status_line;     // reason phrase override, rarely used
    std::string_view content_type;
    int64_t content_length = -1;      // -1: unknown (chunked for HTTP/1.1)
    std::string_view location;
    int64_t last_modified = -1;       // seconds since the epoch
    std::string_view etag;
    std::pmr::vector<Header> headers;
    explicit HeadersOut(std::pmr::memory_resource* mr) : headers(mr) {}

    void add(std::string_view name, std::string_view value) { headers.push_back({name, value}); }
    // Removes every header of that name (case-insensitive); returns how many.
    size_t remove(std::string_view name);
    const Header* find(std::string_view name) const;
};

// Receives a request body as it arrives, with its framing removed.
class BodyReader {
public:
    virtual ~BodyReader() = default;
    // Body bytes, valid only during the call. Return false to pause until
    // Request::resume_body() (backpressure).
    virtual bool on_body_data(Request&, std::string_view data) = 0;
    // The body ended: 0 when complete, else the status to answer with:
    // 400 bad framing, 408 client_body_timeout, 413 too large, 499 the client closed.
    virtual void on_body_end(Request&, int status) = 0;
};

class Request {
public:
    Request(HttpConnection& conn, Arena* arena);
    ~Request();
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;

    // ---- what was received ----
    const RequestHead& head() const { return head_; }
    Method method() const { return head_.method; }
    std::string_view method_name() const { return head_.method_name; }
    std::string_view request_uri() const { return head_.target; }  // as received
    std::string_view uri() const { return uri_; }                  // normalized path (what is matched and forwarded)
    std::string_view args() const { return args_; }                // query string without '?'
    std::string_view host() const { return host_; }                // lowercase, without port
    bool http10() const { return head_.version_minor == 0; }
    // First request header of that name (case-insensitive), empty if none.
    std::string_view header(std::string_view name, bool* found = nullptr) const;

    // ---- where it is routed ----
    CoreSrvConf& server() const { return *server_; }
    LocationConf& location() const { return *loc_; }
    template <class T> T& loc_conf(const Module& m) const { return loc_->conf<T>(m); }
    template <class T> T& srv_conf(const Module& m) const {
        return *static_cast<T*>(server_->root_location->confs[size_t(m.ctx_index)]);
    }
    template <class T> T& main_conf(const Module& m) const {
        return *static_cast<T*>(main_->main_confs[size_t(m.ctx_index)]);
    }
    CoreLocConf& core_conf() const { return *loc_->core; }

    // Per-request state of a module (nginx's r->ctx).
    void* module_ctx(const Module& m) const { return ctx_[size_t(m.ctx_index)]; }
    void set_module_ctx(const Module& m, void* c) { ctx_[size_t(m.ctx_index)] = c; }

    // ---- memory that lives as long as the request ----
    std::pmr::memory_resource* arena() const { return arena_; }
    std::string_view copy(std::string_view s);  // into the arena
    template <class T, class... A> T* make(A&&... a) {
        void* p = arena_->alloc(sizeof(T), alignof(T));
        return new (p) T(std::forward<A>(a)...);  // arena objects are never destroyed: keep them trivial
    }
    template <class T> T* make_array(size_t n) {
        T* a = static_cast<T*>(arena_->alloc(sizeof(T) * n, alignof(T)));
        for (size_t i = 0; i < n; ++i) new (&a[i]) T();
        return a;
    }

    // Runs fn(arg) when the request is destroyed (close a file, release a
    // zone entry). Cleanups run in reverse order of registration.
    void add_cleanup(void (*fn)(void*), void* arg);

    // ---- variables ----
    std::string_view var(int index, bool* found = nullptr) { return variable_value(*this, index, found); }

    // ---- the response ----
    HeadersOut& headers_out() { return out_; }
    int status() const { return out_.status; }
    void set_status(int s) { out_.status = s; }
    bool header_sent() const { return header_sent_; }
    uint64_t body_bytes_sent() const { return body_bytes_sent_; }

    // Sends status, headers (after the header filters) and a whole body in one go.
    void send_response(int status, std::string_view content_type, std::string_view body);
    // Streaming: send the head, then body pieces. Both run the filters.
    // Return false if the connection failed (the request is being finalized).
    bool send_header();
    bool send_body(BodyChain& chain);
    // A header filter that rewrites the body (gzip) routes it through the
    // body filters; responses no header filter claimed skip them at no cost.
    void filter_body() { filter_body_ = true; }
    // A body filter that keeps input back (a file it compresses as the
    // client takes the output, for bounded memory) says so on each call: it
    // is called again with an empty chain once the output drains, and the
    // response is complete only when it lets the last piece through.
    void hold_body() { body_held_ = true; }
    // Bytes accepted by send_body but not yet written to the socket: a
    // producer (the proxy) pauses above a high watermark and resumes from
    // the drain callback.
    size_t output_pending() const;
    void set_drain_handler(void (*fn)(Request&, void*), void* arg);
    // While the response is awaited or relayed, fn(r, arg) runs once if the
    // client closes its connection or it fails (nginx's
    // check_broken_connection: EOF or an error, never a pipelined request);
    // fn ends the request. Watched only once the request body was read
    // completely; costs no syscall unless the client sends something.
    // nullptr stops watching.
    void watch_client_close(void (*fn)(Request&, void*), void* arg);

    // Ends a suspended request: runs error handling for a status >= 300
    // with nothing sent, the log phase, and keep-alive or close.
    void finalize(int status);
    // Continues the phases after a handler returned Next::Suspend.
    void resume(Next how);

    // Restarts location selection with a new URI (error_page, named locations).
    // The phases run again before these return, so a handler that calls one
    // returns Next::Suspend: the redirected run owns the request from then on.
    void internal_redirect(std::string_view uri, std::string_view args);
    void named_redirect(LocationConf& loc);

    // ---- body of the request ----
    bool body_expected() const { return head_.body != RequestHead::Body::None; }
    // Starts delivering the body to `reader` (sends 100 Continue when the
    // client waits for it). A body the content handler never reads is
    // discarded by the core before the connection is reused.
    void read_body(BodyReader* reader);
    void resume_body();

    // ---- protocol upgrades ----
    // After a 101 (the proxy's WebSocket tunnel): hands the client
    // connection to the caller and ends HTTP processing on it. Returns the
    // descriptor, owned by the caller from now on, the TLS session in `ssl`
    // when the connection has one (every byte then goes through it), and
    // appends to `leftover` the bytes already read past this request (they
    // belong to the new protocol). The request is logged with its status and
    // freed from the loop. -1 when a response was already started or the
    // connection failed.
    int take_over_connection(std::string& leftover, tls::SslPtr& ssl);

    // ---- regex captures ----
    struct Captures {
        std::string_view subject;
        const size_t* ovector = nullptr;
        size_t pairs = 0;
    } captures;
    std::string_view* var_cache = nullptr;  // per variable index; data()==nullptr: not computed
    uint8_t* var_state = nullptr;           // 0 unknown, 1 found, 2 not found

    // ---- connection facts ----
    HttpConnection& connection() const { return conn_; }
    std::string_view remote_addr() const;
    uint16_t remote_port() const;
    std::string_view binary_remote_addr() const;
    std::string_view server_addr() const;
    uint16_t server_port() const;
    std::string_view scheme() const;  // "https" on a TLS connection
    uint64_t connection_number() const;
    uint64_t connection_requests() const;
    int64_t start_msec() const { return start_msec_; }
    std::string_view request_id();
    bool internal() const { return internal_; }
    bool keep_alive() const { return keep_alive_; }
    void set_keep_alive(bool k) { keep_alive_ = k && keep_alive_; }

    // ---- error_page bookkeeping ----
    uint8_t redirect_count() const { return redirects_; }
    bool error_page_done() const { return error_page_done_; }
    // The status the final response of an error page carries (0: the page's own).
    void mark_error_page(int status) {
        error_page_done_ = true;
        err_status_ = status;
    }

private:
    friend class HttpConnection;
    friend struct RequestEngine;
    friend void run_request(Request&);
    friend void reject_request(Request&, int);
    friend void complete_request(Request&);
    friend void abort_request(Request&);
    friend void output_drained(Request&);

    void prepare(AddressServers& servers);
    void send_special_response(int status);
    bool send_filtered_body(BodyChain& chain);
    void queue_body(const BodyChain& chain);

    HttpConnection& conn_;
    Arena* arena_;
    RequestHead head_;
    std::string_view uri_, args_, host_;
    CoreMainConf* main_ = nullptr;
    CoreSrvConf* server_ = nullptr;
    LocationConf* loc_ = nullptr;
    void** ctx_ = nullptr;
    HeadersOut out_;
    size_t phase_ = 0;     // index into the flattened handler array
    size_t handler_ = 0;
    bool header_sent_ = false;
    bool finalized_ = false;
    bool internal_ = false;
    bool keep_alive_ = true;
    bool in_phases_ = false;
    bool error_page_done_ = false;
    bool chunked_ = false;     // response body framed with chunked encoding
    bool body_done_ = false;   // the last body piece is queued (or no body is sent)
    bool filter_body_ = false; // the body goes through the body filters
    bool body_held_ = false;   // a body filter holds input to continue when the output drains
    bool logged_ = false;
    int err_status_ = 0;       // error_page: the status the final response carries
    int access_code_ = 0;      // satisfy any: the last denial (401/403) of the Access phase
    size_t header_bytes_ = 0;
    uint8_t redirects_ = 0;
    uint64_t body_bytes_sent_ = 0;
    int64_t start_msec_ = 0;
    std::string_view request_id_;
    struct Cleanup {
        void (*fn)(void*);
        void* arg;
        Cleanup* next;
    };
    Cleanup* cleanups_ = nullptr;
    void (*drain_fn_)(Request&, void*) = nullptr;
    void* drain_arg_ = nullptr;
    void (*client_close_fn_)(Request&, void*) = nullptr;
    void* client_close_arg_ = nullptr;
};

// Reason phrase for a status ("Not Found"); "" for unknown codes.
std::string_view status_reason(int status);

// Current time in milliseconds, cached per loop iteration.
inline int64_t current_msec() { return LoopClock::msec(); }

// The gateway's own Server and Date header values, as send_header() writes
// them (for a head a module writes itself, such as the proxy's 101).
std::string_view server_header_value(const Request& r);
std::string_view http_date_now();

}  // namespace sluice::http
