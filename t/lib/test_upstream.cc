// test_upstream: a small, real HTTP/1.1 origin server for sluice's integration tests
// and benchmarks. One process, one libevent loop, 127.0.0.1 only.
//
// Build: g++ -std=c++20 -O2 -Wall -Wextra -o objs/test_upstream t/lib/test_upstream.cc -levent
// Usage: test_upstream --port N [--id NAME]
//
// Every request is answered with 200 and a JSON echo of what arrived:
//   {"method":"GET","uri":"/a?b","version":"HTTP/1.1",
//    "headers":{"host":"x","x-y":"1, 2"},"body_length":0}
// Header names are lowercased and repeated fields are joined with ", " (RFC 9110
// 5.3), so tests can match `"name":"value"` without caring about case. Bytes outside
// printable ASCII are escaped as \u00XX, so the body is always valid JSON.
// Special paths (the path is the request-target up to '?'):
//   /status/NNN  answer with status NNN (200..599) and the echo body (none for 204/304)
//   /delay/MS    answer after MS milliseconds (a timer; other connections go on)
//   /size/N      answer with an N-byte body; byte i is "abc...z"[i % 26]
//   /close       answer with Connection: close, then close
//   /chunked     answer with the echo body in 16-byte chunks (until-close for HTTP/1.0)
// Every response carries X-Upstream-Id (--id, default: the port). Connections are kept
// alive (HTTP/1.1 unless "Connection: close"; HTTP/1.0 with "Connection: keep-alive"),
// and pipelined requests are answered in order.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
};

struct Request {
    std::string method;
    std::string target;
    std::string version;
    std::vector<std::pair<std::string, std::string>> headers;  // lowercased names
    uint64_t body_length = 0;
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
    out += "},\"body_length\":" + std::to_string(request.body_length) + "}";
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

    evbuffer* input() { return bufferevent_get_input(bev_); }
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
};

class Server {
public:
    explicit Server(Options options) : options_(std::move(options)) {}
    ~Server();
    bool start();
    void run() { event_base_dispatch(base_); }
    event_base* base() const { return base_; }
    const std::string& id() const { return options_.id; }

private:
    static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* self);
    static void on_signal(evutil_socket_t, short, void* self) {
        event_base_loopbreak(static_cast<Server*>(self)->base_);
    }

    Options options_;
    event_base* base_ = nullptr;
    evconnlistener* listener_ = nullptr;
    std::vector<event*> signal_events_;
};

Connection::Connection(Server& server, bufferevent* bev) : server_(server), bev_(bev) {
    bufferevent_setcb(bev_, on_read, on_write, on_event, this);
    bufferevent_setwatermark(bev_, EV_READ, 0, kMaxInput);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

Connection::~Connection() {
    if (delay_timer_) event_free(delay_timer_);
    if (linger_timer_) event_free(linger_timer_);
    bufferevent_free(bev_);
}

// Parses and answers as many buffered requests as possible, then frees the
// connection if it has nothing left to do.
void Connection::drive() {
    if (lingering_) {
        evbuffer_drain(input(), evbuffer_get_length(input()));
        return;
    }
    Step last = Step::Progress;
    while (!busy_ && !closing_ && evbuffer_get_length(output()) < kMaxPendingOutput) {
        last = step();
        if (last != Step::Progress) break;
    }
    // After the client's EOF, a partial request can never complete.
    if (peer_eof_ && last == Step::NeedInput) closing_ = true;
    if (closing_ && !busy_ && evbuffer_get_length(output()) == 0) close_lingering();
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
    shutdown(bufferevent_getfd(bev_), SHUT_WR);
    evbuffer_drain(input(), evbuffer_get_length(input()));
    bufferevent_enable(bev_, EV_READ);
    linger_timer_ = evtimer_new(server_.base(), on_linger_end, this);
    evtimer_add(linger_timer_, &kLingerTime);
}

void Connection::written() {
    if (size_body_remaining_ > 0) {
        refill_size_body();
        return;
    }
    drive();
}

void Connection::handle_event(short what) {
    if ((what & BEV_EVENT_EOF) && !lingering_) {
        // A half-closed client may still be waiting for answers to what it sent.
        peer_eof_ = true;
        drive();
        return;
    }
    delete this;
}

void Connection::delay_expired() {
    busy_ = false;
    write_echo(200, delayed_request_);
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
    return Step::Progress;
}

Connection::Step Connection::read_body() {
    size_t available = evbuffer_get_length(input());
    size_t take = static_cast<size_t>(std::min<uint64_t>(available, body_remaining_));
    evbuffer_drain(input(), take);
    body_remaining_ -= take;
    request_.body_length += take;
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
    evbuffer_drain(input(), take);
    body_remaining_ -= take;
    request_.body_length += take;
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
    Request request = std::move(request_);
    request_ = Request{};
    state_ = ReadState::RequestLine;
    head_bytes_ = 0;
    respond(request);
    return Step::Progress;
}

// A request we cannot parse gets an error and the connection is closed: the framing
// of whatever follows is unknown.
Connection::Step Connection::fail(int status) {
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
                       "\r\nX-Upstream-Id: " + server_.id() + "\r\n" + std::string(framing);
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

Server::~Server() {
    for (event* ev : signal_events_) event_free(ev);
    if (listener_) evconnlistener_free(listener_);
    if (base_) event_base_free(base_);
}

bool Server::start() {
    base_ = event_base_new();
    if (!base_) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options_.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener_ = evconnlistener_new_bind(
        base_, on_accept, this, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (!listener_) {
        std::fprintf(stderr, "test_upstream: cannot listen on 127.0.0.1:%u: %s\n", options_.port,
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
    bufferevent* bev = bufferevent_socket_new(server->base_, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    new Connection(*server, bev);
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
        } else {
            return std::nullopt;
        }
    }
    if (options.port == 0) return std::nullopt;
    if (options.id.empty()) options.id = std::to_string(options.port);
    return options;
}

}  // namespace

int main(int argc, char** argv) {
    auto options = parse_options(argc, argv);
    if (!options) {
        std::fprintf(stderr, "usage: test_upstream --port N [--id NAME]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    Server server(std::move(*options));
    if (!server.start()) return 1;
    server.run();
    return 0;
}
