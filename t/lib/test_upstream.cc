// test_upstream: a small, real HTTP/1.1 origin server for sluice's integration tests
// and benchmarks. One process, one libevent loop, 127.0.0.1 (or --address) only.
//
// Build: g++ -std=c++20 -O2 -Wall -Wextra -o objs/test_upstream t/lib/test_upstream.cc -levent -levent_openssl -lssl -lcrypto
// Usage: test_upstream --port N [--id NAME] [--fail-status NNN] [--address 127.x.y.z]
//                      [--log FILE] [--tls CERT KEY] [--tls-verify-client CA]
//                      [--tls-protocols TLSv1.2[,TLSv1.3]] [--keepalive-timeout MS]
//
// Every request is answered with 200 and a JSON echo of what arrived:
//   {"method":"GET","uri":"/a?b","version":"HTTP/1.1",
//    "headers":{"host":"x","x-y":"1, 2"},"body_length":0,"body_fnv":"cbf29ce484222325"}
// Header names are lowercased and repeated fields are joined with ", " (RFC 9110
// 5.3), so tests can match `"name":"value"` without caring about case. Bytes outside
// printable ASCII are escaped as \u00XX, so the body is always valid JSON.
// body_fnv is the 64-bit FNV-1a hash of the request body, in hex, so tests
// can check large bodies without the upstream echoing them.
// Special paths (the path is the request-target up to '?'):
//   /status/NNN  answer with status NNN (200..599) and the echo body (none for 204/304)
//   /delay/MS    answer after MS milliseconds (a timer; other connections go on)
//   /size/N      answer with an N-byte body; byte i is "abc...z"[i % 26]
//   /close       answer with Connection: close, then close
//   /chunked     answer with the echo body in 16-byte chunks (until-close for HTTP/1.0)
//   /stats       {"connections":N,"requests":M}: connections accepted and requests
//                answered (this one included) since the start
//   /echo-body   stream the request body back as it arrives: chunked (until-close for
//                HTTP/1.0), with backpressure, the head sent before the body is read
//   /stream/N    N bytes ("abc...z" repeated) chunked, ?chunk=BYTES (default 1024)
//                every ?delay=MS (default 10) milliseconds
//   /ws          an Upgrade: websocket answered with 101; every byte that follows
//                is echoed back (a byte echo: frames come back as they were sent)
//   /reset       close the connection with a TCP reset, without answering
//   /bad/NAME    a malformed response, on a connection kept open: status-line,
//                cl-te (Content-Length and chunked), big-header (20 KiB header),
//                bad-chunk, truncated (Content-Length 100, 10 bytes, close),
//                extra (Content-Length 5, 10 bytes sent), two-cl (two lengths),
//                gzip-chunked (Transfer-Encoding: gzip, chunked)
// With --fail-status NNN every request but /stats is answered with that status.
// --address listens on another IPv4 loopback address (127.0.0.2...: all of 127/8 is
// loopback on Linux), so that origins on one port differ by address (DNS tests).
// Every response carries X-Connection: the number of its connection (1, 2, ...),
// so tests can see which requests shared a connection.
// With --log FILE every request that arrived whole is appended to FILE as it completes,
// one line each, before it is answered, so tests can prove what reached the origin
// (request smuggling tests count these lines):
//   C REQ METHOD TARGET VERSION body=N   a request (C: its connection's number);
//                                        METHOD and TARGET with bytes outside
//                                        printable ASCII as \xHH
//   C BAD STATUS                         a head or chunked body that did not parse
//   C PARTIAL                            the connection ended inside a request
// With --tls CERT KEY the port speaks HTTPS (OpenSSL through libevent's bufferevents):
// every connection is a TLS one, with a server-side session cache and session tickets
// so clients can resume. --tls-verify-client CA asks for a client certificate signed
// by CA and refuses the handshake without one. --tls-protocols limits the versions
// offered. With --log, each TLS connection adds a line once its handshake ends:
//   C TLS sni=NAME resumed=0|1 protocol=TLSv1.3 client=CN   (sni=- without SNI,
//                                                            client=- without a cert)
//   C TLS-FAIL REASON                                       a handshake that failed
// --keepalive-timeout MS closes a connection idle between requests for MS milliseconds
// (with close_notify over TLS), logging "C IDLE-CLOSE", as a backend's keepalive_timeout.
// Every response carries X-Upstream-Id (--id, default: the port). Connections are kept
// alive (HTTP/1.1 unless "Connection: close"; HTTP/1.0 with "Connection: keep-alive"),
// and pipelined requests are answered in order.
//
// For the response cache tests (t/integration/cache_*_test.cc):
//   /cache/...   a resource whose answer the query describes (items may repeat; values
//                are percent-decoded, so "%3D" is '=' and "%2C" is ','):
//                  h=Name:value       add the response header line "Name: value"
//                                     (Date: now is added unless an h=Date: is given)
//                  etag=TAG           ETag: TAG; a GET or HEAD whose If-None-Match
//                                     matches it (weak comparison, or "*") gets 304
//                  lm=HTTP-DATE       Last-Modified; without If-None-Match, a GET or HEAD
//                                     whose If-Modified-Since is not before it gets 304
//                  status=NNN         the status of a GET or HEAD (default 200)
//                  unsafe_status=NNN  the status of other methods (default 200)
//                  delay=MS           answer after MS milliseconds
//                  size=N             pad the body to at least N bytes
//                  pad=C              the padding byte (default 'p')
//                The body is {"count":N,"echo":ECHO,"pad":"..."}: N numbers the requests
//                for this path (the query excluded), this one included, and ECHO is the
//                JSON echo above, so a cached body tells which request made it. Every
//                answer (304 too) carries X-Origin-Count: N.
//   /count/PATH  {"count":N}: how many requests /PATH has had (/count/cache/a counts
//                /cache/a); it is in /stats's requests, in no path's count.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr size_t kMaxHeadBytes = 64 * 1024;
// Stop parsing pipelined requests while this much output is unsent, so a client that
// never reads cannot make us buffer without limit.
constexpr size_t kMaxPendingOutput = 1024 * 1024;
constexpr size_t kMaxInput = 1024 * 1024;
constexpr uint64_t kMaxDelayMs = 3600 * 1000;
constexpr size_t kEchoChunkSize = 16;
constexpr timeval kLingerTime{1, 0};
constexpr std::string_view kAlphabet = "abcdefghijklmnopqrstuvwxyz";

struct Options {
    uint16_t port = 0;
    std::string id;
    int fail_status = 0;
    in_addr address{htonl(INADDR_LOOPBACK)};
    std::string log_path;
    std::string tls_cert, tls_key;   // --tls: HTTPS
    std::string tls_client_ca;       // --tls-verify-client
    int tls_min_version = 0, tls_max_version = 0;  // --tls-protocols (0: OpenSSL's)
    uint64_t keepalive_timeout_ms = 0;             // 0: connections stay open
};

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

uint64_t fnv1a(uint64_t h, const void* data, size_t len) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < len; ++i) h = (h ^ p[i]) * kFnvPrime;
    return h;
}

struct Request {
    std::string method;
    std::string target;
    std::string version;
    std::vector<std::pair<std::string, std::string>> headers;  // lowercased names
    uint64_t body_length = 0;
    uint64_t body_fnv = kFnvOffset;
    bool keep_alive = true;

    const std::string* header(std::string_view name) const {
        for (const auto& [n, v] : headers)
            if (n == name) return &v;
        return nullptr;
    }
};

std::string lowercase(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// True if the comma-separated list `value` holds `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        if (lowercase(trim(value.substr(0, comma))) == token) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

template <typename T>
std::optional<T> parse_number(std::string_view s, int base = 10) {
    T value{};
    if (s.empty()) return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return value;
}

void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c >= 0x7f) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += '"';
}

// For the --log file: one word, whatever bytes it holds.
std::string log_word(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c > 0x20 && c < 0x7f && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
            out += escaped;
        }
    }
    return out;
}

std::string echo_json(const Request& request) {
    std::string out = "{\"method\":";
    append_json_string(out, request.method);
    out += ",\"uri\":";
    append_json_string(out, request.target);
    out += ",\"version\":";
    append_json_string(out, request.version);
    out += ",\"headers\":{";
    for (size_t i = 0; i < request.headers.size(); ++i) {
        if (i > 0) out += ',';
        append_json_string(out, request.headers[i].first);
        out += ':';
        append_json_string(out, request.headers[i].second);
    }
    char fnv[24];
    std::snprintf(fnv, sizeof fnv, "%016llx", static_cast<unsigned long long>(request.body_fnv));
    out += "},\"body_length\":" + std::to_string(request.body_length) + ",\"body_fnv\":\"" + fnv + "\"}";
    return out;
}

std::string_view reason_phrase(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

// The body of /size/N is written from this buffer by reference: chunks start at
// multiples of 26 bytes, so the pattern continues across chunks.
const std::string& size_pattern() {
    static const std::string pattern = [] {
        std::string s;
        for (int i = 0; i < 8192; ++i) s += kAlphabet;
        return s;
    }();
    return pattern;
}

class Server;

// One client connection. It frees itself (`delete this`) when it is done; every
// callback path that may free it returns right after.
class Connection {
public:
    Connection(Server& server, bufferevent* bev);
    ~Connection();

private:
    enum class ReadState { RequestLine, Headers, Body, ChunkSize, ChunkData, ChunkEnd, Trailers };
    enum class Step { Progress, NeedInput, Stop };

    static void on_read(bufferevent*, void* self) { static_cast<Connection*>(self)->drive(); }
    static void on_write(bufferevent*, void* self) { static_cast<Connection*>(self)->written(); }
    static void on_event(bufferevent*, short what, void* self) {
        static_cast<Connection*>(self)->handle_event(what);
    }
    static void on_delay(evutil_socket_t, short, void* self) {
        static_cast<Connection*>(self)->delay_expired();
    }
    static void on_linger_end(evutil_socket_t, short, void* self) {
        delete static_cast<Connection*>(self);
    }
    static void on_stream_tick(evutil_socket_t, short, void* self) {
        static_cast<Connection*>(self)->stream_tick();
    }

    evbuffer* input() { return bufferevent_get_input(bev_); }
    // Some of a request has arrived but not all of it.
    bool inside_request() {
        return state_ != ReadState::RequestLine || evbuffer_get_length(input()) > 0;
    }
    evbuffer* output() { return bufferevent_get_output(bev_); }

    void drive();
    void written();
    void handle_event(short what);
    void delay_expired();
    void close_lingering();
    Step step();
    Step read_line(std::string& line);
    Step parse_request_line(const std::string& line);
    Step parse_header_line(const std::string& line);
    Step headers_done();
    Step read_body();
    Step read_chunk_size();
    Step read_chunk_data();
    Step read_chunk_end();
    Step read_trailer();
    Step request_done();
    Step fail(int status);

    void respond(const Request& request);
    void write_head(int status, const Request& request, std::string_view framing,
                    std::string_view content_type = "application/json");
    void write_echo(int status, const Request& request);
    void write_chunked_echo(const Request& request);
    void start_size_body(const Request& request, uint64_t size);
    void refill_size_body();
    void consume_body_bytes(size_t take);
    void start_echo_body();
    void start_stream(const Request& request, uint64_t size);
    void stream_tick();
    void start_tunnel(const Request& request);
    void reset_connection();
    bool respond_bad(std::string_view name);
    void write_stats(const Request& request);
    void respond_cache(const Request& request);
    void write_cache(const Request& request, uint64_t count);
    void tls_handshake_done();
    void tls_handshake_failed();
    void arm_idle_timer();
    void idle_expired();
    static void on_idle(evutil_socket_t, short, void* self) {
        static_cast<Connection*>(self)->idle_expired();
    }

    Server& server_;
    bufferevent* bev_;
    event* delay_timer_ = nullptr;
    event* linger_timer_ = nullptr;
    ReadState state_ = ReadState::RequestLine;
    Request request_;
    Request delayed_request_;
    size_t head_bytes_ = 0;
    uint64_t body_remaining_ = 0;
    uint64_t size_body_remaining_ = 0;
    bool busy_ = false;         // a delayed or streamed response is in progress
    bool closing_ = false;      // close once the output has drained
    bool peer_eof_ = false;
    bool lingering_ = false;    // our FIN is sent; discarding input until the client's
    bool resetting_ = false;    // /reset: freed from the loop
    uint64_t number_ = 0;       // X-Connection
    bool echo_ = false;         // /echo-body: the body goes back as it arrives
    bool echo_chunked_ = false;
    bool tunnel_ = false;       // after /ws: a byte echo
    event* stream_timer_ = nullptr;
    uint64_t stream_left_ = 0, stream_chunk_ = 1024, stream_delay_ms_ = 10;
    bool stream_chunked_ = false;
    bool delayed_cache_ = false;  // the delayed request is a /cache/ one
    uint64_t delayed_count_ = 0;
    SSL* ssl_ = nullptr;          // --tls: owned by bev_
    bool handshake_done_ = false;
    event* idle_timer_ = nullptr; // --keepalive-timeout
};

class Server {
public:
    explicit Server(Options options) : options_(std::move(options)) {}
    ~Server();
    bool start();
    void run() { event_base_dispatch(base_); }
    event_base* base() const { return base_; }
    const std::string& id() const { return options_.id; }
    int fail_status() const { return options_.fail_status; }
    uint64_t next_connection() { return ++connections_; }
    uint64_t connections() const { return connections_; }
    uint64_t count_request() { return ++requests_; }
    uint64_t requests() const { return requests_; }
    SSL_CTX* tls() const { return tls_; }
    uint64_t keepalive_timeout_ms() const { return options_.keepalive_timeout_ms; }
    uint64_t count_path(const std::string& path) { return ++path_requests_[path]; }
    uint64_t path_requests(const std::string& path) const {
        auto it = path_requests_.find(path);
        return it == path_requests_.end() ? 0 : it->second;
    }
    // One line to the --log file (if any), written whole with O_APPEND.
    void log(const std::string& line) const {
        if (log_fd_ < 0) return;
        std::string out = line + "\n";
        ssize_t n = write(log_fd_, out.data(), out.size());
        (void)n;
    }

private:
    static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self);
    bool make_tls_context();
    static void on_signal(evutil_socket_t, short, void* self) {
        event_base_loopbreak(static_cast<Server*>(self)->base_);
    }

    Options options_;
    event_base* base_ = nullptr;
    evconnlistener* listener_ = nullptr;
    std::vector<event*> signal_events_;
    uint64_t connections_ = 0;
    uint64_t requests_ = 0;
    std::map<std::string, uint64_t> path_requests_;  // /cache/ paths
    int log_fd_ = -1;
    SSL_CTX* tls_ = nullptr;
};

Connection::Connection(Server& server, bufferevent* bev)
    : server_(server), bev_(bev), number_(server.next_connection()) {
    ssl_ = bufferevent_openssl_get_ssl(bev_);
    if (ssl_) {
        // Clients (sluice among them) may close without close_notify: an EOF, not an error.
        bufferevent_openssl_set_allow_dirty_shutdown(bev_, 1);
    }
    bufferevent_setcb(bev_, on_read, on_write, on_event, this);
    bufferevent_setwatermark(bev_, EV_READ, 0, kMaxInput);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    arm_idle_timer();
}

Connection::~Connection() {
    if (idle_timer_) event_free(idle_timer_);
    if (delay_timer_) event_free(delay_timer_);
    if (linger_timer_) event_free(linger_timer_);
    if (stream_timer_) event_free(stream_timer_);
    bufferevent_free(bev_);
}

// Parses and answers as many buffered requests as possible, then frees the
// connection if it has nothing left to do.
void Connection::drive() {
    if (resetting_) return;
    if (lingering_) {
        evbuffer_drain(input(), evbuffer_get_length(input()));
        return;
    }
    if (tunnel_) {
        evbuffer_add_buffer(output(), input());
        if (peer_eof_ && evbuffer_get_length(output()) == 0) delete this;
        return;
    }
    Step last = Step::Progress;
    while (!busy_ && !closing_ && !tunnel_ && evbuffer_get_length(output()) < kMaxPendingOutput) {
        last = step();
        if (last != Step::Progress) break;
    }
    if (tunnel_) {
        evbuffer_add_buffer(output(), input());
        return;
    }
    // After the client's EOF, a partial request can never complete.
    if (peer_eof_ && last == Step::NeedInput) {
        if (!closing_ && inside_request()) server_.log(std::to_string(number_) + " PARTIAL");
        closing_ = true;
    }
    if (closing_ && !busy_ && evbuffer_get_length(output()) == 0) {
        close_lingering();
        return;
    }
    arm_idle_timer();
}

// Between requests only: a request in progress (or a tunnel) is never timed out here.
void Connection::arm_idle_timer() {
    if (!server_.keepalive_timeout_ms()) return;
    if (!idle_timer_) idle_timer_ = evtimer_new(server_.base(), on_idle, this);
    if (busy_ || tunnel_ || closing_ || inside_request()) {
        evtimer_del(idle_timer_);
        return;
    }
    uint64_t ms = server_.keepalive_timeout_ms();
    timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
    evtimer_add(idle_timer_, &tv);
}

void Connection::idle_expired() {
    if (busy_ || tunnel_ || closing_ || lingering_ || inside_request() || evbuffer_get_length(output()) > 0)
        return;
    server_.log(std::to_string(number_) + " IDLE-CLOSE");
    closing_ = true;
    close_lingering();
}

// Once per TLS connection, for the --log file: what the handshake settled.
void Connection::tls_handshake_done() {
    handshake_done_ = true;
    const char* sni = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
    std::string client = "-";
    if (X509* cert = SSL_get1_peer_certificate(ssl_)) {
        char cn[256] = "";
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0)
            client = log_word(cn);
        X509_free(cert);
    }
    server_.log(std::to_string(number_) + " TLS sni=" + (sni ? log_word(sni) : std::string("-")) +
                " resumed=" + (SSL_session_reused(ssl_) ? "1" : "0") + " protocol=" + SSL_get_version(ssl_) +
                " client=" + client);
}

void Connection::tls_handshake_failed() {
    std::string reason;
    while (unsigned long err = bufferevent_get_openssl_error(bev_)) {
        const char* text = ERR_reason_error_string(err);
        if (!reason.empty()) reason += ";";
        reason += text ? log_word(text) : std::to_string(err);
    }
    server_.log(std::to_string(number_) + " TLS-FAIL " + (reason.empty() ? std::string("closed") : reason));
}

// Closing a socket with unread input makes the kernel send a reset, which can destroy
// our last response before the client reads it. So, as nginx's lingering close does:
// send FIN, discard what still arrives, and close on the client's FIN or after a while.
void Connection::close_lingering() {
    if (peer_eof_) {
        delete this;
        return;
    }
    lingering_ = true;
    if (ssl_ && handshake_done_) SSL_shutdown(ssl_);  // close_notify: the output has drained
    shutdown(bufferevent_getfd(bev_), SHUT_WR);
    evbuffer_drain(input(), evbuffer_get_length(input()));
    bufferevent_enable(bev_, EV_READ);
    linger_timer_ = evtimer_new(server_.base(), on_linger_end, this);
    evtimer_add(linger_timer_, &kLingerTime);
}

void Connection::written() {
    if (resetting_) return;
    if (tunnel_) {
        if (peer_eof_) delete this;
        return;
    }
    if (size_body_remaining_ > 0) {
        refill_size_body();
        return;
    }
    drive();
}

void Connection::handle_event(short what) {
    if (resetting_) return;
    if (what & BEV_EVENT_CONNECTED) {  // a TLS handshake ended
        tls_handshake_done();
        return;
    }
    if (ssl_ && !handshake_done_) {
        tls_handshake_failed();
        delete this;
        return;
    }
    if ((what & BEV_EVENT_EOF) && !lingering_) {
        // A half-closed client may still be waiting for answers to what it sent.
        peer_eof_ = true;
        drive();
        return;
    }
    if (!closing_ && !lingering_ && inside_request()) server_.log(std::to_string(number_) + " PARTIAL");
    delete this;
}

void Connection::delay_expired() {
    busy_ = false;
    if (delayed_cache_) {
        delayed_cache_ = false;
        write_cache(delayed_request_, delayed_count_);
    } else {
        write_echo(200, delayed_request_);
    }
    drive();
}

Connection::Step Connection::step() {
    switch (state_) {
    case ReadState::RequestLine:
    case ReadState::Headers: {
        std::string line;
        Step got = read_line(line);
        if (got != Step::Progress) return got;
        return state_ == ReadState::RequestLine ? parse_request_line(line)
                                                : parse_header_line(line);
    }
    case ReadState::Body: return read_body();
    case ReadState::ChunkSize: return read_chunk_size();
    case ReadState::ChunkData: return read_chunk_data();
    case ReadState::ChunkEnd: return read_chunk_end();
    case ReadState::Trailers: return read_trailer();
    }
    return Step::Stop;
}

Connection::Step Connection::read_line(std::string& line) {
    size_t length = 0;
    char* raw = evbuffer_readln(input(), &length, EVBUFFER_EOL_CRLF);
    if (!raw) {
        if (head_bytes_ + evbuffer_get_length(input()) > kMaxHeadBytes) return fail(431);
        return Step::NeedInput;
    }
    line.assign(raw, length);
    std::free(raw);
    head_bytes_ += length + 2;
    if (head_bytes_ > kMaxHeadBytes) return fail(431);
    return Step::Progress;
}

Connection::Step Connection::parse_request_line(const std::string& line) {
    if (line.empty()) return Step::Progress;  // RFC 9112 2.2: ignore a leading empty line
    size_t sp1 = line.find(' ');
    if (sp1 == std::string::npos) return fail(400);
    size_t sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string::npos || line.find(' ', sp2 + 1) != std::string::npos)
        return fail(400);
    request_.method = line.substr(0, sp1);
    request_.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    request_.version = line.substr(sp2 + 1);
    if (request_.method.empty() || request_.target.empty()) return fail(400);
    if (request_.version != "HTTP/1.1" && request_.version != "HTTP/1.0") return fail(400);
    state_ = ReadState::Headers;
    return Step::Progress;
}

Connection::Step Connection::parse_header_line(const std::string& line) {
    if (line.empty()) return headers_done();
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string::npos) return fail(400);
    std::string_view name(line.data(), colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return fail(400);
    std::string key = lowercase(name);
    std::string_view value = trim(std::string_view(line).substr(colon + 1));
    for (auto& [n, v] : request_.headers) {
        if (n == key) {
            v.append(", ").append(value);
            return Step::Progress;
        }
    }
    request_.headers.emplace_back(std::move(key), std::string(value));
    return Step::Progress;
}

Connection::Step Connection::headers_done() {
    const std::string* connection = request_.header("connection");
    if (request_.version == "HTTP/1.1")
        request_.keep_alive = !(connection && has_token(*connection, "close"));
    else
        request_.keep_alive = connection && has_token(*connection, "keep-alive");

    const std::string* transfer_encoding = request_.header("transfer-encoding");
    const std::string* content_length = request_.header("content-length");
    bool chunked = false;
    if (transfer_encoding) {
        std::string codings = lowercase(*transfer_encoding);
        size_t last = codings.rfind(',');
        if (trim(last == std::string::npos ? codings : codings.substr(last + 1)) != "chunked")
            return fail(400);
        chunked = true;
        request_.keep_alive = request_.keep_alive && !content_length;  // RFC 9112 6.3
    } else if (content_length) {
        auto length = parse_number<uint64_t>(*content_length);
        if (!length) return fail(400);
        body_remaining_ = *length;
    }
    const std::string* expect = request_.header("expect");
    if (expect && lowercase(*expect) == "100-continue" && request_.version == "HTTP/1.1" &&
        (chunked || body_remaining_ > 0))
        evbuffer_add_printf(output(), "HTTP/1.1 100 Continue\r\n\r\n");
    state_ = chunked ? ReadState::ChunkSize : ReadState::Body;
    head_bytes_ = 0;
    std::string_view path = std::string_view(request_.target).substr(0, request_.target.find('?'));
    if (path == "/echo-body" && !server_.fail_status()) start_echo_body();
    return Step::Progress;
}

void Connection::start_echo_body() {
    echo_ = true;
    echo_chunked_ = request_.version == "HTTP/1.1";
    if (!echo_chunked_) request_.keep_alive = false;  // HTTP/1.0: the body ends with the connection
    server_.count_request();
    write_head(200, request_, echo_chunked_ ? "Transfer-Encoding: chunked\r\n" : "", "application/octet-stream");
    closing_ = false;  // write_head marks a closing connection; the body is still to come
    bufferevent_enable(bev_, EV_READ);
}

// Hashes (and for /echo-body forwards) the next `take` body bytes of the input.
void Connection::consume_body_bytes(size_t take) {
    request_.body_length += take;
    size_t left = take;
    evbuffer_iovec vec[16];
    while (left > 0) {
        int n = evbuffer_peek(input(), static_cast<ev_ssize_t>(left), nullptr, vec, 16);
        if (n <= 0) break;
        for (int i = 0; i < n && i < 16 && left > 0; ++i) {
            size_t len = std::min(vec[i].iov_len, left);
            request_.body_fnv = fnv1a(request_.body_fnv, vec[i].iov_base, len);
            left -= len;
        }
        if (!echo_) {
            evbuffer_drain(input(), take - left);
        } else {
            if (echo_chunked_) evbuffer_add_printf(output(), "%zx\r\n", take - left);
            evbuffer_remove_buffer(input(), output(), take - left);
            if (echo_chunked_) evbuffer_add(output(), "\r\n", 2);
        }
        take = left;
    }
}

Connection::Step Connection::read_body() {
    size_t available = evbuffer_get_length(input());
    size_t take = static_cast<size_t>(std::min<uint64_t>(available, body_remaining_));
    if (take) consume_body_bytes(take);
    body_remaining_ -= take;
    if (body_remaining_ > 0) return Step::NeedInput;
    return request_done();
}

Connection::Step Connection::read_chunk_size() {
    std::string line;
    Step got = read_line(line);
    if (got != Step::Progress) return got;
    std::string_view size_text = trim(std::string_view(line).substr(0, line.find(';')));
    auto size = size_text.size() <= 15 ? parse_number<uint64_t>(size_text, 16) : std::nullopt;
    if (!size) return fail(400);
    body_remaining_ = *size;
    head_bytes_ = 0;  // the line limit is per chunk line, then for all trailers
    state_ = *size == 0 ? ReadState::Trailers : ReadState::ChunkData;
    return Step::Progress;
}

Connection::Step Connection::read_chunk_data() {
    size_t available = evbuffer_get_length(input());
    size_t take = static_cast<size_t>(std::min<uint64_t>(available, body_remaining_));
    if (take) consume_body_bytes(take);
    body_remaining_ -= take;
    if (body_remaining_ > 0) return Step::NeedInput;
    state_ = ReadState::ChunkEnd;
    return Step::Progress;
}

Connection::Step Connection::read_chunk_end() {
    std::string line;
    Step got = read_line(line);
    if (got != Step::Progress) return got;
    if (!line.empty()) return fail(400);
    state_ = ReadState::ChunkSize;
    return Step::Progress;
}

Connection::Step Connection::read_trailer() {
    std::string line;
    Step got = read_line(line);
    if (got != Step::Progress) return got;
    return line.empty() ? request_done() : Step::Progress;
}

Connection::Step Connection::request_done() {
    server_.log(std::to_string(number_) + " REQ " + log_word(request_.method) + " " +
                log_word(request_.target) + " " + log_word(request_.version) +
                " body=" + std::to_string(request_.body_length));
    Request request = std::move(request_);
    request_ = Request{};
    state_ = ReadState::RequestLine;
    head_bytes_ = 0;
    if (echo_) {
        echo_ = false;
        if (echo_chunked_) evbuffer_add(output(), "0\r\n\r\n", 5);
        if (!request.keep_alive) {
            closing_ = true;
            bufferevent_disable(bev_, EV_READ);
        }
        return Step::Progress;
    }
    respond(request);
    return Step::Progress;
}

// A request we cannot parse gets an error and the connection is closed: the framing
// of whatever follows is unknown.
Connection::Step Connection::fail(int status) {
    server_.log(std::to_string(number_) + " BAD " + std::to_string(status));
    evbuffer_add_printf(output(),
                        "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nX-Upstream-Id: %s\r\n"
                        "Connection: close\r\n\r\n",
                        status, std::string(reason_phrase(status)).c_str(), server_.id().c_str());
    closing_ = true;
    bufferevent_disable(bev_, EV_READ);
    return Step::Stop;
}

void Connection::respond(const Request& request) {
    std::string_view target = request.target;
    std::string_view path = target.substr(0, target.find('?'));
    auto number_after = [&](std::string_view prefix) -> std::optional<uint64_t> {
        if (!path.starts_with(prefix)) return std::nullopt;
        return parse_number<uint64_t>(path.substr(prefix.size()));
    };
    if (path == "/stats") {
        server_.count_request();
        write_stats(request);
        return;
    }
    server_.count_request();
    if (server_.fail_status()) {
        write_echo(server_.fail_status(), request);
        return;
    }
    if (path == "/reset") {
        reset_connection();
        return;
    }
    if (path.starts_with("/bad/") && respond_bad(path.substr(5))) return;
    if (path.starts_with("/cache/") || path.starts_with("/count/")) {
        respond_cache(request);
        return;
    }
    if (path == "/ws") {
        start_tunnel(request);
        return;
    }
    if (auto size = number_after("/stream/")) {
        start_stream(request, *size);
        return;
    }
    if (auto status = number_after("/status/")) {
        write_echo(*status >= 200 && *status <= 599 ? static_cast<int>(*status) : 400, request);
    } else if (auto delay = number_after("/delay/")) {
        busy_ = true;
        delayed_request_ = request;
        if (!delay_timer_) delay_timer_ = evtimer_new(server_.base(), on_delay, this);
        uint64_t ms = std::min(*delay, kMaxDelayMs);
        timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
        evtimer_add(delay_timer_, &tv);
    } else if (auto size = number_after("/size/")) {
        start_size_body(request, *size);
    } else if (path == "/close") {
        Request closing = request;
        closing.keep_alive = false;
        write_echo(200, closing);
    } else if (path == "/chunked") {
        write_chunked_echo(request);
    } else {
        write_echo(200, request);
    }
}

// `framing` is the Content-Length or Transfer-Encoding line, or empty. Decides whether
// the connection stays open and says so in the head.
void Connection::write_head(int status, const Request& request, std::string_view framing,
                            std::string_view content_type) {
    bool close = !request.keep_alive;
    std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                       std::string(reason_phrase(status)) + "\r\n" +
                       "Content-Type: " + std::string(content_type) +
                       "\r\nX-Upstream-Id: " + server_.id() + "\r\nX-Connection: " +
                       std::to_string(number_) + "\r\n" + std::string(framing);
    if (close)
        head += "Connection: close\r\n";
    else if (request.version == "HTTP/1.0")
        head += "Connection: keep-alive\r\n";
    head += "\r\n";
    evbuffer_add(output(), head.data(), head.size());
    if (close) {
        closing_ = true;
        bufferevent_disable(bev_, EV_READ);
    }
}

void Connection::write_echo(int status, const Request& request) {
    if (status == 204 || status == 304) {
        write_head(status, request, "");
        return;
    }
    std::string body = echo_json(request);
    write_head(status, request, "Content-Length: " + std::to_string(body.size()) + "\r\n");
    if (request.method != "HEAD") evbuffer_add(output(), body.data(), body.size());
}

void Connection::write_chunked_echo(const Request& request) {
    std::string body = echo_json(request);
    if (request.version == "HTTP/1.0") {
        // No chunked coding for HTTP/1.0: the body ends when the connection does.
        Request closing = request;
        closing.keep_alive = false;
        write_head(200, closing, "");
        if (request.method != "HEAD") evbuffer_add(output(), body.data(), body.size());
        return;
    }
    write_head(200, request, "Transfer-Encoding: chunked\r\n");
    if (request.method == "HEAD") return;
    for (size_t at = 0; at < body.size(); at += kEchoChunkSize) {
        std::string_view chunk = std::string_view(body).substr(at, kEchoChunkSize);
        evbuffer_add_printf(output(), "%zx\r\n", chunk.size());
        evbuffer_add(output(), chunk.data(), chunk.size());
        evbuffer_add(output(), "\r\n", 2);
    }
    evbuffer_add(output(), "0\r\n\r\n", 5);
}

void Connection::start_size_body(const Request& request, uint64_t size) {
    write_head(200, request, "Content-Length: " + std::to_string(size) + "\r\n", "text/plain");
    if (request.method == "HEAD" || size == 0) return;
    size_body_remaining_ = size;
    busy_ = true;
    refill_size_body();
}

// Called whenever the output has drained, so a large body never sits in memory.
void Connection::refill_size_body() {
    const std::string& pattern = size_pattern();
    size_t take = static_cast<size_t>(std::min<uint64_t>(size_body_remaining_, pattern.size()));
    evbuffer_add_reference(output(), pattern.data(), take, nullptr, nullptr);
    size_body_remaining_ -= take;
    if (size_body_remaining_ == 0) busy_ = false;
}

void Connection::write_stats(const Request& request) {
    std::string body = "{\"connections\":" + std::to_string(server_.connections()) +
                       ",\"requests\":" + std::to_string(server_.requests()) + "}";
    write_head(200, request, "Content-Length: " + std::to_string(body.size()) + "\r\n");
    if (request.method != "HEAD") evbuffer_add(output(), body.data(), body.size());
}

// A value of ?name=N in the target, or `fallback`.
uint64_t query_number(std::string_view target, std::string_view name, uint64_t fallback) {
    size_t q = target.find('?');
    if (q == std::string_view::npos) return fallback;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view item = query.substr(0, amp);
        if (item.starts_with(name) && item.size() > name.size() && item[name.size()] == '=') {
            if (auto v = parse_number<uint64_t>(item.substr(name.size() + 1))) return *v;
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return fallback;
}

void Connection::start_stream(const Request& request, uint64_t size) {
    stream_chunked_ = request.version == "HTTP/1.1";
    Request r = request;
    if (!stream_chunked_) r.keep_alive = false;
    write_head(200, r, stream_chunked_ ? "Transfer-Encoding: chunked\r\n" : "", "text/plain");
    if (request.method == "HEAD") return;
    stream_left_ = size;
    stream_chunk_ = std::max<uint64_t>(1, query_number(request.target, "chunk", 1024));
    stream_delay_ms_ = std::min(query_number(request.target, "delay", 10), kMaxDelayMs);
    busy_ = true;
    if (!stream_timer_) stream_timer_ = evtimer_new(server_.base(), on_stream_tick, this);
    stream_tick();
}

void Connection::stream_tick() {
    const std::string& pattern = size_pattern();
    uint64_t take = std::min<uint64_t>({stream_left_, stream_chunk_, pattern.size()});
    if (take > 0) {
        if (stream_chunked_) evbuffer_add_printf(output(), "%llx\r\n", static_cast<unsigned long long>(take));
        evbuffer_add(output(), pattern.data(), take);
        if (stream_chunked_) evbuffer_add(output(), "\r\n", 2);
        stream_left_ -= take;
    }
    if (stream_left_ > 0) {
        timeval tv{static_cast<time_t>(stream_delay_ms_ / 1000),
                   static_cast<suseconds_t>(stream_delay_ms_ % 1000 * 1000)};
        evtimer_add(stream_timer_, &tv);
        return;
    }
    if (stream_chunked_) evbuffer_add(output(), "0\r\n\r\n", 5);
    busy_ = false;
    drive();
}

void Connection::start_tunnel(const Request& request) {
    const std::string* upgrade = request.header("upgrade");
    const std::string* connection = request.header("connection");
    if (!upgrade || !connection || !has_token(*connection, "upgrade")) {
        write_echo(400, request);
        return;
    }
    const std::string* key = request.header("sec-websocket-key");
    std::string head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + *upgrade +
                       "\r\nConnection: Upgrade\r\nX-Upstream-Id: " + server_.id() +
                       "\r\nSec-WebSocket-Accept: " + (key ? *key : std::string("none")) + "\r\n\r\n";
    evbuffer_add(output(), head.data(), head.size());
    tunnel_ = true;
    evbuffer_add_buffer(output(), input());  // bytes the client sent right after the request
}

void Connection::reset_connection() {
    linger lg{1, 0};
    setsockopt(bufferevent_getfd(bev_), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    // The reset happens in close(); the caller's drive() must not touch us after.
    closing_ = true;
    busy_ = true;
    resetting_ = true;
    bufferevent_disable(bev_, EV_READ | EV_WRITE);
    evbuffer_drain(output(), evbuffer_get_length(output()));
    event_base_once(server_.base(), -1, EV_TIMEOUT, [](evutil_socket_t, short, void* self) {
        delete static_cast<Connection*>(self);
    }, this, nullptr);
}

// ---- /cache/ and /count/ (the response cache tests) ----

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// Every ?name=value of the target, values percent-decoded, in order.
std::vector<std::pair<std::string, std::string>> query_items(std::string_view target) {
    std::vector<std::pair<std::string, std::string>> items;
    size_t q = target.find('?');
    if (q == std::string_view::npos) return items;
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view item = query.substr(0, amp);
        size_t eq = item.find('=');
        if (eq != std::string_view::npos)
            items.emplace_back(std::string(item.substr(0, eq)), percent_decode(item.substr(eq + 1)));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return items;
}

std::string http_date(time_t t) {
    tm parts{};
    gmtime_r(&t, &parts);
    char out[64];
    strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    return out;
}

std::optional<time_t> parse_http_date(const std::string& s) {
    tm parts{};
    const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &parts);
    if (!end || *end != '\0') return std::nullopt;
    return timegm(&parts);
}

// Weak comparison (RFC 9110 8.8.3.2) of one If-None-Match member with a tag.
bool etag_weak_equal(std::string_view a, std::string_view b) {
    if (a.starts_with("W/")) a.remove_prefix(2);
    if (b.starts_with("W/")) b.remove_prefix(2);
    return a == b;
}

bool if_none_match_matches(std::string_view field, std::string_view etag) {
    while (!field.empty()) {
        size_t comma = field.find(',');
        std::string_view member = trim(field.substr(0, comma));
        if (member == "*" || etag_weak_equal(member, etag)) return true;
        if (comma == std::string_view::npos) break;
        field.remove_prefix(comma + 1);
    }
    return false;
}

void Connection::respond_cache(const Request& request) {
    std::string_view target = request.target;
    std::string path(target.substr(0, target.find('?')));
    if (path.starts_with("/count/")) {
        std::string body = "{\"count\":" + std::to_string(server_.path_requests(path.substr(6))) + "}";
        write_head(200, request, "Content-Length: " + std::to_string(body.size()) + "\r\n");
        if (request.method != "HEAD") evbuffer_add(output(), body.data(), body.size());
        return;
    }
    uint64_t count = server_.count_path(path);
    uint64_t delay = std::min(query_number(target, "delay", 0), kMaxDelayMs);
    if (delay == 0) {
        write_cache(request, count);
        return;
    }
    busy_ = true;
    delayed_cache_ = true;
    delayed_count_ = count;
    delayed_request_ = request;
    if (!delay_timer_) delay_timer_ = evtimer_new(server_.base(), on_delay, this);
    timeval tv{static_cast<time_t>(delay / 1000), static_cast<suseconds_t>(delay % 1000 * 1000)};
    evtimer_add(delay_timer_, &tv);
}

void Connection::write_cache(const Request& request, uint64_t count) {
    bool safe = request.method == "GET" || request.method == "HEAD";
    int status = 200;
    std::string etag, last_modified, headers;
    bool has_date = false;
    uint64_t size = 0;
    char pad = 'p';
    for (const auto& [name, value] : query_items(request.target)) {
        if (name == "h") {
            size_t colon = value.find(':');
            if (colon == std::string::npos || colon == 0) continue;
            std::string field = value.substr(0, colon);
            if (lowercase(field) == "date") has_date = true;
            headers += field + ": " + std::string(trim(std::string_view(value).substr(colon + 1))) + "\r\n";
        } else if (name == "etag") {
            etag = value;
        } else if (name == "lm") {
            last_modified = value;
        } else if (name == "status" && safe) {
            if (auto n = parse_number<int>(value); n && *n >= 200 && *n <= 599) status = *n;
        } else if (name == "unsafe_status" && !safe) {
            if (auto n = parse_number<int>(value); n && *n >= 200 && *n <= 599) status = *n;
        } else if (name == "size") {
            size = parse_number<uint64_t>(value).value_or(0);
        } else if (name == "pad" && value.size() == 1 && value[0] != '"' && value[0] != '\\') {
            pad = value[0];
        }
    }
    if (!has_date) headers += "Date: " + http_date(time(nullptr)) + "\r\n";
    if (!etag.empty()) headers += "ETag: " + etag + "\r\n";
    if (!last_modified.empty()) headers += "Last-Modified: " + last_modified + "\r\n";
    headers += "X-Origin-Count: " + std::to_string(count) + "\r\n";

    if (safe && status == 200) {
        const std::string* inm = request.header("if-none-match");
        const std::string* ims = request.header("if-modified-since");
        bool not_modified = false;
        if (inm) {
            not_modified = !etag.empty() && if_none_match_matches(*inm, etag);
        } else if (ims && !last_modified.empty()) {
            auto since = parse_http_date(*ims);
            auto modified = parse_http_date(last_modified);
            not_modified = since && modified && *modified <= *since;
        }
        if (not_modified) status = 304;
    }
    if (status == 204 || status == 304) {
        write_head(status, request, headers);
        return;
    }
    std::string body = "{\"count\":" + std::to_string(count) + ",\"echo\":" + echo_json(request) + ",\"pad\":\"";
    size_t tail = 2;  // "}
    if (body.size() + tail < size) body.append(size - body.size() - tail, pad);
    body += "\"}";
    write_head(status, request, headers + "Content-Length: " + std::to_string(body.size()) + "\r\n");
    if (request.method != "HEAD") evbuffer_add(output(), body.data(), body.size());
}

bool Connection::respond_bad(std::string_view name) {
    std::string id = "X-Upstream-Id: " + server_.id() + "\r\nX-Connection: " + std::to_string(number_) + "\r\n";
    std::string out;
    if (name == "status-line") {
        out = "HTTP/1.1 2000 OK\r\n" + id + "Content-Length: 2\r\n\r\nok";
    } else if (name == "cl-te") {
        out = "HTTP/1.1 200 OK\r\n" + id + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    } else if (name == "big-header") {
        out = "HTTP/1.1 200 OK\r\n" + id + "X-Big: " + std::string(20 * 1024, 'b') + "\r\nContent-Length: 2\r\n\r\nok";
    } else if (name == "bad-chunk") {
        out = "HTTP/1.1 200 OK\r\n" + id + "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n";
    } else if (name == "truncated") {
        out = "HTTP/1.1 200 OK\r\n" + id + "Content-Length: 100\r\n\r\n0123456789";
        closing_ = true;
        bufferevent_disable(bev_, EV_READ);
    } else if (name == "extra") {
        out = "HTTP/1.1 200 OK\r\n" + id + "Content-Length: 5\r\n\r\nhelloworld";
    } else if (name == "two-cl") {
        out = "HTTP/1.1 200 OK\r\n" + id + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nok";
    } else if (name == "gzip-chunked") {
        // A transfer coding besides chunked: de-chunked, the body is still gzip.
        out = "HTTP/1.1 200 OK\r\n" + id + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    } else {
        return false;
    }
    evbuffer_add(output(), out.data(), out.size());
    return true;
}

Server::~Server() {
    if (log_fd_ >= 0) close(log_fd_);
    for (event* ev : signal_events_) event_free(ev);
    if (listener_) evconnlistener_free(listener_);
    if (base_) event_base_free(base_);
    if (tls_) SSL_CTX_free(tls_);
}

bool Server::make_tls_context() {
    auto fail = [](const char* what, const std::string& file) {
        char reason[256] = "";
        ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
        std::fprintf(stderr, "test_upstream: %s %s: %s\n", what, file.c_str(), reason);
        return false;
    };
    tls_ = SSL_CTX_new(TLS_server_method());
    if (!tls_) return fail("SSL_CTX_new", "");
    if (SSL_CTX_use_certificate_chain_file(tls_, options_.tls_cert.c_str()) != 1)
        return fail("cannot load certificate", options_.tls_cert);
    if (SSL_CTX_use_PrivateKey_file(tls_, options_.tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(tls_) != 1)
        return fail("cannot load key", options_.tls_key);
    if (options_.tls_min_version) SSL_CTX_set_min_proto_version(tls_, options_.tls_min_version);
    if (options_.tls_max_version) SSL_CTX_set_max_proto_version(tls_, options_.tls_max_version);
    // Sessions resume from the cache (TLS 1.2 ids) or from tickets; a session id
    // context is required for either once client certificates are verified.
    static const unsigned char kSessionContext[] = "test_upstream";
    SSL_CTX_set_session_id_context(tls_, kSessionContext, sizeof kSessionContext - 1);
    SSL_CTX_set_session_cache_mode(tls_, SSL_SESS_CACHE_SERVER);
    if (!options_.tls_client_ca.empty()) {
        if (SSL_CTX_load_verify_locations(tls_, options_.tls_client_ca.c_str(), nullptr) != 1)
            return fail("cannot load client CA", options_.tls_client_ca);
        SSL_CTX_set_client_CA_list(tls_, SSL_load_client_CA_file(options_.tls_client_ca.c_str()));
        SSL_CTX_set_verify(tls_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    }
    return true;
}

bool Server::start() {
    if (!options_.log_path.empty()) {
        log_fd_ = open(options_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd_ < 0) {
            std::fprintf(stderr, "test_upstream: cannot open %s: %s\n", options_.log_path.c_str(),
                         std::strerror(errno));
            return false;
        }
    }
    if (!options_.tls_cert.empty() && !make_tls_context()) return false;
    base_ = event_base_new();
    if (!base_) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options_.port);
    addr.sin_addr = options_.address;
    listener_ = evconnlistener_new_bind(
        base_, on_accept, this, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (!listener_) {
        char text[INET_ADDRSTRLEN] = "?";
        inet_ntop(AF_INET, &options_.address, text, sizeof text);
        std::fprintf(stderr, "test_upstream: cannot listen on %s:%u: %s\n", text, options_.port,
                     std::strerror(errno));
        return false;
    }
    // QUIT too: the harness stops daemons with QUIT, and a core dump helps nobody.
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP}) {
        event* ev = evsignal_new(base_, sig, on_signal, this);
        evsignal_add(ev, nullptr);
        signal_events_.push_back(ev);
    }
    return true;
}

void Server::on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self) {
    auto* server = static_cast<Server*>(self);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    evutil_make_socket_nonblocking(fd);
    bufferevent* bev = nullptr;
    if (server->tls_) {
        SSL* ssl = SSL_new(server->tls_);
        if (ssl)
            bev = bufferevent_openssl_socket_new(server->base_, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                 BEV_OPT_CLOSE_ON_FREE);
        if (!bev && ssl) SSL_free(ssl);
    } else {
        bev = bufferevent_socket_new(server->base_, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    new Connection(*server, bev);
}

// "TLSv1.2,TLSv1.3": the lowest and highest named become the limits.
bool parse_tls_protocols(std::string_view list, Options& options) {
    constexpr std::pair<std::string_view, int> kVersions[] = {
        {"TLSv1", TLS1_VERSION}, {"TLSv1.1", TLS1_1_VERSION}, {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION}};
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view name = list.substr(0, comma);
        int version = 0;
        for (const auto& [n, v] : kVersions)
            if (n == name) version = v;
        if (!version) return false;
        if (!options.tls_min_version || version < options.tls_min_version) options.tls_min_version = version;
        if (version > options.tls_max_version) options.tls_max_version = version;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return options.tls_min_version != 0;
}

std::optional<Options> parse_options(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (i + 1 >= argc) return std::nullopt;
        if (arg == "--port") {
            auto port = parse_number<uint16_t>(argv[++i]);
            if (!port || *port == 0) return std::nullopt;
            options.port = *port;
        } else if (arg == "--id") {
            options.id = argv[++i];
        } else if (arg == "--fail-status") {
            auto status = parse_number<int>(argv[++i]);
            if (!status || *status < 200 || *status > 599) return std::nullopt;
            options.fail_status = *status;
        } else if (arg == "--address") {
            if (inet_pton(AF_INET, argv[++i], &options.address) != 1) return std::nullopt;
        } else if (arg == "--log") {
            options.log_path = argv[++i];
        } else if (arg == "--tls") {
            if (i + 2 >= argc) return std::nullopt;
            options.tls_cert = argv[++i];
            options.tls_key = argv[++i];
        } else if (arg == "--tls-verify-client") {
            options.tls_client_ca = argv[++i];
        } else if (arg == "--tls-protocols") {
            if (!parse_tls_protocols(argv[++i], options)) return std::nullopt;
        } else if (arg == "--keepalive-timeout") {
            auto ms = parse_number<uint64_t>(argv[++i]);
            if (!ms || *ms == 0) return std::nullopt;
            options.keepalive_timeout_ms = *ms;
        } else {
            return std::nullopt;
        }
    }
    if (options.port == 0) return std::nullopt;
    if (options.tls_cert.empty() && !options.tls_client_ca.empty()) return std::nullopt;
    if (options.id.empty()) options.id = std::to_string(options.port);
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    auto options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr, "usage: test_upstream --port N [--id NAME] [--fail-status NNN] [--address IPV4] [--log FILE]\n"
                             "                     [--tls CERT KEY] [--tls-verify-client CA] [--tls-protocols LIST]\n"
                             "                     [--keepalive-timeout MS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    Server server(std::move(*options));
    if (!server.start()) return 1;
    server.run();
    return 0;
}
