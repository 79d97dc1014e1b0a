// The request: its phases, the response it sends, error pages and internal
// redirects, and the end of its life (log phase, cleanups).
#include "http/http_request.h"

#include <event2/event.h>

#include <cstdio>
#include <cstring>
#include <ctime>

#include "core/log.h"
#include "core/str.h"
#include "http/http_connection.h"
#include "http/http_engine.h"
#include "http/uri.h"
#include "sluice_paths.h"

namespace sluice::http {

namespace {
constexpr uint8_t kMaxRedirects = 10;

}  // namespace

void drop_underscore_headers(RequestHead& head);

// The phase machinery, a friend of Request.
struct RequestEngine {
    static bool find_config(Request& r);
    static bool handle_next(Request& r, Next n);
    static Next access_verdict(Request& r, Next n);
    static bool end_access_phase(Request& r);
    static void run_phases(Request& r);
    static bool setup(Request& r);
};

// ---- small pieces ----

uint64_t BodyChain::size() const {
    uint64_t n = 0;
    for (auto& b : bufs) n += b.file_fd >= 0 ? uint64_t(b.file_size) : b.data.size();
    return n;
}

size_t HeadersOut::remove(std::string_view name) {
    size_t before = headers.size();
    std::erase_if(headers, [&](const Header& h) { return iequals(h.name, name); });
    return before - headers.size();
}

const Header* HeadersOut::find(std::string_view name) const {
    for (auto& h : headers)
        if (iequals(h.name, name)) return &h;
    return nullptr;
}

Request::Request(HttpConnection& conn, Arena* arena)
    : conn_(conn), arena_(arena), head_(arena), out_(arena) {}

Request::~Request() {
    for (Cleanup* c = cleanups_; c; c = c->next) c->fn(c->arg);
}

void Request::add_cleanup(void (*fn)(void*), void* arg) {
    auto* c = make<Cleanup>(Cleanup{fn, arg, cleanups_});
    cleanups_ = c;
}

std::string_view Request::copy(std::string_view s) {
    if (s.empty()) return {};
    char* p = static_cast<char*>(arena_->alloc(s.size(), 1));
    memcpy(p, s.data(), s.size());
    return {p, s.size()};
}

std::string_view Request::header(std::string_view name, bool* found) const {
    for (const Header& h : head_.headers) {
        if (iequals(h.name, name)) {
            if (found) *found = true;
            return h.value;
        }
    }
    if (found) *found = false;
    return {};
}

std::string_view Request::remote_addr() const { return conn_.peer_text(); }
uint16_t Request::remote_port() const { return conn_.peer_port(); }
std::string_view Request::server_addr() const { return conn_.local_text(); }
uint16_t Request::server_port() const { return conn_.local_port(); }
uint64_t Request::connection_number() const { return conn_.number(); }
uint64_t Request::connection_requests() const { return conn_.requests(); }

std::string_view Request::binary_remote_addr() const {
    const sockaddr& a = conn_.peer();
    if (a.sa_family == AF_INET6)
        return {reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr), 16};
    return {reinterpret_cast<const char*>(&reinterpret_cast<const sockaddr_in*>(&a)->sin_addr), 4};
}

std::string_view Request::request_id() {
    if (request_id_.empty()) {
        // 128 random bits as 32 hex digits, like nginx's $request_id.
        static uint64_t state = uint64_t(time(nullptr)) ^ (uint64_t(getpid()) << 32) ^ 0x9e3779b97f4a7c15ull;
        char* p = static_cast<char*>(arena_->alloc(32, 1));
        for (int half = 0; half < 2; ++half) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            snprintf(p + half * 16, 17, "%016llx", static_cast<unsigned long long>(state));
        }
        request_id_ = {p, 32};
    }
    return request_id_;
}

size_t Request::output_pending() const { return conn_.pending(); }

void Request::read_body(BodyReader* reader) { conn_.start_body(reader); }
void Request::resume_body() { conn_.resume_body(); }

void Request::set_drain_handler(void (*fn)(Request&, void*), void* arg) {
    drain_fn_ = fn;
    drain_arg_ = arg;
}

void Request::watch_client_close(void (*fn)(Request&, void*), void* arg) {
    client_close_fn_ = fn;
    client_close_arg_ = arg;
    if (fn) conn_.watch_client_close();
}

// ---- status lines and default pages ----

std::string_view status_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Moved Temporarily";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Time-out";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 414: return "Request-URI Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Requested Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Temporarily Unavailable";
    case 504: return "Gateway Time-out";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "";
    }
}

// "Mon, 23 Nov 2026 10:34:34 GMT", recomputed once per second.
std::string_view http_date_now() {
    static char buf[40];
    static time_t cached = -1;
    const time_t now = time_t(current_msec() / 1000);
    if (now != cached) {
        cached = now;
        tm t;
        gmtime_r(&cached, &t);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &t);
    }
    return buf;
}

std::string_view server_header_value(const Request& r) {
    return *r.core_conf().server_tokens ? "sluice/" SLUICE_VERSION : "sluice";
}

namespace {

std::string_view default_page(Request& r, int status) {
    std::string_view reason = status_reason(status);
    std::string title = std::to_string(status);
    if (!reason.empty()) title += " " + std::string(reason);
    std::string page = "<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
                       "</h1></center>\r\n<hr><center>sluice</center>\r\n</body>\r\n</html>\r\n";
    return r.copy(page);
}

// The gateway's own error pages after which nginx closes the connection
// (ngx_http_special_response_handler). A response a module relays (an
// upstream's 400 or 413) leaves the connection alone: whether it can carry
// another request depends only on the request stream, which the connection
// tracks (a head it could not parse, a body it refused or could not read).
bool closes_connection(int status) {
    return status == 400 || status == 408 || status == 413 || status == 414 || status == 431 || status == 501 ||
           status == 505 || status == 417 || (status >= 495 && status <= 497);
}

// nginx's own codes for TLS client errors, which error_page can catch: the
// client gets a 400 whose page says which.
std::string_view tls_error_detail(int status) {
    switch (status) {
    case 495: return "The SSL certificate error";
    case 496: return "No required SSL certificate was sent";
    case 497: return "The plain HTTP request was sent to HTTPS port";
    default: return {};
    }
}

std::string_view tls_error_page(Request& r, std::string_view detail) {
    std::string page = "<html>\r\n<head><title>400 " + std::string(detail) +
                       "</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>" +
                       std::string(detail) + "</center>\r\n<hr><center>sluice</center>\r\n</body>\r\n</html>\r\n";
    return r.copy(page);
}

bool has_body(Request& r, int status) {
    return r.method() != Method::Head && status != 204 && status != 304 && !(status >= 100 && status < 200);
}

// Writes a response head into memory sized for it beforehand (one arena
// allocation, no growth, no final copy).
class HeadWriter {
public:
    explicit HeadWriter(char* p) : p_(p) {}
    char* end() const { return p_; }
    void put(std::string_view s) {
        if (s.empty()) return;  // an empty view may have a null data()
        memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    void put_uint(uint64_t v) {
        char buf[20];
        char* q = buf + sizeof buf;
        do { *--q = char('0' + v % 10); v /= 10; } while (v);
        put({q, size_t(buf + sizeof buf - q)});
    }
    void field(std::string_view name, std::string_view value) {
        put(name);
        put(": ");
        put(value);
        put("\r\n");
    }
    static size_t field_size(std::string_view name, std::string_view value) { return name.size() + value.size() + 4; }
    static constexpr size_t kUintMax = 20;

private:
    char* p_;
};

std::string_view absolute_location(Request& r, std::string_view loc) {
    if (loc.empty() || loc[0] != '/' || !*r.core_conf().absolute_redirect) return loc;
    std::pmr::string s(r.arena());
    bool https = r.connection().ssl() != nullptr;
    s.append(https ? "https://" : "http://");
    std::string_view host = r.host();
    if (host.empty()) {
        const auto& names = r.server().server_names;
        host = names.empty() || names[0].regex ? r.server_addr() : std::string_view(names[0].name);
    }
    s.append(host);
    uint16_t port = r.server_port();
    if (*r.core_conf().port_in_redirect && port != (https ? 443 : 80)) {
        s.push_back(':');
        s.append(std::to_string(port));
    }
    s.append(loc);
    return r.copy(s);
}

}  // namespace

// ---- sending ----

bool Request::send_header() {
    if (header_sent_) return true;
    header_sent_ = true;
    if (err_status_ && (out_.status == 200 || out_.status == 0)) out_.status = err_status_;
    if (out_.status == 0) out_.status = 200;
    for (HeaderFilter f : main_->phases.header_filters) {
        if (!f(*this)) {
            conn_.close();
            return false;
        }
    }
    int status = out_.status;
    bool body = has_body(*this, status);
    if (!body || status == 204 || status == 304) {
        if (status == 204 || status == 304) out_.content_length = -1;
    }
    chunked_ = false;
    if (out_.content_length < 0 && has_body(*this, status) && status != 204 && status != 304) {
        if (http10()) keep_alive_ = false;  // the end of the body is the end of the connection
        else chunked_ = true;
    }
    // Say "close" on the last request a connection may carry.
    if (conn_.requests() >= *core_conf().keepalive_requests || *core_conf().keepalive_timeout_ms == 0 ||
        conn_.worker().shutting_down())
        keep_alive_ = false;

    conn_.set_nodelay(*core_conf().tcp_nodelay);

    // A Server or Date a module passed on (proxy_pass_header) stands for the
    // gateway's own, as in nginx.
    bool has_server = false, has_date = false;
    for (const Header& hd : out_.headers) {
        if (hd.name.size() == 6 && iequals(hd.name, "server")) has_server = true;
        else if (hd.name.size() == 4 && iequals(hd.name, "date")) has_date = true;
    }
    const std::string_view reason = out_.status_line.empty() ? status_reason(status) : out_.status_line;
    const std::string_view server = has_server ? std::string_view() : server_header_value(*this);
    const std::string_view date = has_date ? std::string_view() : http_date_now();
    char last_modified[40];
    std::string_view lm;
    if (out_.last_modified >= 0) {
        time_t t = out_.last_modified;
        tm g;
        gmtime_r(&t, &g);
        lm = {last_modified, strftime(last_modified, sizeof last_modified, "%a, %d %b %Y %H:%M:%S GMT", &g)};
    }
    const std::string_view location = out_.location.empty() ? std::string_view() : absolute_location(*this, out_.location);
    const std::string_view connection = keep_alive_ ? "keep-alive" : "close";

    using W = HeadWriter;
    size_t size = 9 + W::kUintMax + 1 + reason.size() + 2 + 2;  // status line, final CRLF
    if (!has_server) size += W::field_size("Server", server);
    if (!has_date) size += W::field_size("Date", date);
    if (!out_.content_type.empty()) size += W::field_size("Content-Type", out_.content_type);
    if (out_.content_length >= 0) size += W::field_size("Content-Length", {}) + W::kUintMax;
    else if (chunked_) size += W::field_size("Transfer-Encoding", "chunked");
    if (!lm.empty()) size += W::field_size("Last-Modified", lm);
    if (!out_.etag.empty()) size += W::field_size("ETag", out_.etag);
    if (!location.empty()) size += W::field_size("Location", location);
    size += W::field_size("Connection", connection);
    for (const Header& hd : out_.headers) size += W::field_size(hd.name, hd.value);

    char* head = static_cast<char*>(arena_->alloc(size, 1));
    W w(head);
    w.put("HTTP/1.1 ");
    w.put_uint(uint64_t(status));
    w.put(" ");
    w.put(reason);
    w.put("\r\n");
    if (!has_server) w.field("Server", server);
    if (!has_date) w.field("Date", date);
    if (!out_.content_type.empty()) w.field("Content-Type", out_.content_type);
    if (out_.content_length >= 0) {
        w.put("Content-Length: ");
        w.put_uint(uint64_t(out_.content_length));
        w.put("\r\n");
    } else if (chunked_) {
        w.field("Transfer-Encoding", "chunked");
    }
    if (!lm.empty()) w.field("Last-Modified", lm);
    if (!out_.etag.empty()) w.field("ETag", out_.etag);
    if (!location.empty()) w.field("Location", location);
    w.field("Connection", connection);
    for (const Header& hd : out_.headers) w.field(hd.name, hd.value);
    w.put("\r\n");
    std::string_view bytes(head, size_t(w.end() - head));
    conn_.queue(bytes);
    header_bytes_ = bytes.size();
    if (!has_body(*this, status)) body_done_ = true;
    return true;
}

// Inlined in both callers: it is on the path of every response body.
__attribute__((always_inline)) inline void Request::queue_body(const BodyChain& chain) {
    uint64_t size = chain.size();
    if (chunked_ && size > 0) {
        char* line = static_cast<char*>(arena_->alloc(20, 1));
        int n = snprintf(line, 20, "%llx\r\n", static_cast<unsigned long long>(size));
        conn_.queue({line, size_t(n)});
    }
    for (const BodyBuf& b : chain.bufs) {
        if (b.file_fd >= 0) conn_.queue_file(b.file_fd, b.file_pos, b.file_size, *core_conf().sendfile);
        else conn_.queue(b.data);
    }
    if (chunked_ && size > 0) conn_.queue("\r\n");
    body_bytes_sent_ += size;
    if (chain.last) {
        if (chunked_) conn_.queue("0\r\n\r\n");
        body_done_ = true;
    }
}

bool Request::send_body(BodyChain& chain) {
    if (!header_sent_ && !send_header()) return false;
    if (body_done_) {
        // HEAD, 204, 304: the body is not sent; the producer still finishes.
        return conn_.flush();
    }
    if (filter_body_) return send_filtered_body(chain);
    queue_body(chain);
    return conn_.flush();
}

// A filter holding input is called again at once while the socket takes
// everything (no drain event would come), else from output_drained().
bool Request::send_filtered_body(BodyChain& chain) {
    for (;;) {
        body_held_ = false;
        for (BodyFilter f : main_->phases.body_filters) {
            if (!f(*this, chain)) {
                conn_.close();
                return false;
            }
        }
        queue_body(chain);
        if (!conn_.flush()) return false;
        if (!body_held_ || conn_.pending() > 0) return true;
        chain.bufs.clear();
        chain.last = false;
        chain.flush = false;
    }
}


void Request::send_response(int status, std::string_view content_type, std::string_view body) {
    out_.status = status;
    if (!content_type.empty()) out_.content_type = content_type;
    out_.content_length = int64_t(body.size());
    if (!send_header()) return;
    BodyChain chain(arena_);
    if (!body.empty()) chain.bufs.push_back({body});
    chain.last = true;
    chain.stable = true;  // the caller's body outlives the request's output anyway
    send_body(chain);
}

std::string_view Request::scheme() const { return conn_.ssl() ? "https" : "http"; }

int Request::take_over_connection(std::string& leftover, tls::SslPtr& ssl) {
    if (finalized_ || header_sent_ || conn_.pending() > 0) return -1;
    // Nothing more goes through HTTP: the log phase sees a sent response.
    header_sent_ = true;
    body_done_ = true;
    finalized_ = true;
    keep_alive_ = false;
    return conn_.detach(leftover, ssl);
}

// ---- error pages and redirects ----

namespace {

bool try_error_page(Request& r, int status) {
    const auto* pages = r.core_conf().effective_error_pages();
    if (!pages || r.redirect_count() >= kMaxRedirects) return false;
    if (r.error_page_done() && !*r.core_conf().recursive_error_pages) return false;
    for (const ErrorPage& ep : *pages) {
        if (ep.status != status) continue;
        std::string_view uri = ep.uri.eval(r);
        r.mark_error_page(ep.override_status == 0 ? 0 : ep.override_status > 0 ? ep.override_status : status);
        if (!uri.empty() && uri[0] == '@') {
            LocationConf* named = find_named_location(r.server(), uri);
            if (!named) {
                SLUICE_LOG(LogLevel::Error, "*%llu could not find named location \"%.*s\"",
                           static_cast<unsigned long long>(r.connection_number()), int(uri.size()), uri.data());
                return false;
            }
            r.named_redirect(*named);
            return true;
        }
        if (!uri.empty() && uri[0] == '/') {
            size_t q = uri.find('?');
            r.internal_redirect(uri.substr(0, q), q == std::string_view::npos ? std::string_view() : uri.substr(q + 1));
            return true;
        }
        // A full URL: a redirect to it (302 unless overridden with =301..308).
        int code = ep.override_status >= 301 && ep.override_status <= 308 ? ep.override_status : 302;
        r.headers_out().location = uri;
        r.send_response(code, "text/html", default_page(r, code));
        return true;
    }
    return false;
}

}  // namespace

void Request::send_special_response(int status) {
    if (try_error_page(*this, status)) return;
    // A handler may have set headers for a response it did not send; keep
    // the ones a client needs (Location, WWW-Authenticate, Allow, Retry-After).
    out_.content_length = -1;
    out_.last_modified = -1;
    out_.etag = {};
    if (closes_connection(status)) keep_alive_ = false;
    if (std::string_view detail = tls_error_detail(status); !detail.empty()) {
        send_response(400, "text/html", tls_error_page(*this, detail));
        return;
    }
    if (status == 204 || status == 304) {
        send_response(status, {}, {});
        return;
    }
    send_response(status, "text/html", default_page(*this, status));
}

void Request::finalize(int status) {
    if (finalized_) return;
    if (!header_sent_) {
        if (status == 0) status = out_.status ? out_.status : 200;
        if (status >= 300 || (status >= 200 && out_.status == 0 && false)) {
            send_special_response(status);
            if (!header_sent_) return;  // redirected internally; the new run finalizes
        } else {
            send_response(status, {}, {});
        }
    } else if (!body_done_ && body_held_) {
        // The producer is done; a body filter finishes the body as the
        // client takes it (output_drained), then the request completes.
        finalized_ = true;
        return;
    } else if (!body_done_) {
        // The producer stopped before the end of the body: the client can
        // tell only if the connection closes.
        keep_alive_ = false;
        if (!body_done_ && out_.content_length >= 0) {
            finalized_ = true;
            conn_.close();
            return;
        }
        BodyChain last(arena_);
        last.last = true;
        send_body(last);
    }
    if (finalized_) return;
    finalized_ = true;
    if (conn_.pending() == 0) conn_.post_request_done();
}

void Request::internal_redirect(std::string_view uri, std::string_view args) {
    ++redirects_;
    internal_ = true;
    error_page_done_ = error_page_done_ || err_status_ != 0;
    uri_ = copy(uri);
    args_ = copy(args);
    // nginx's error_page turns any method but HEAD into GET.
    if (err_status_ && head_.method != Method::Head) head_.method = Method::Get;
    memset(ctx_, 0, sizeof(void*) * main_->module_count);
    out_.headers.clear();
    out_.location = {};
    out_.content_type = {};
    out_.content_length = -1;
    phase_ = size_t(Phase::ServerRewrite);
    handler_ = 0;
    RequestEngine::run_phases(*this);
}

void Request::named_redirect(LocationConf& loc) {
    ++redirects_;
    internal_ = true;
    if (err_status_ && head_.method != Method::Head) head_.method = Method::Get;
    memset(ctx_, 0, sizeof(void*) * main_->module_count);
    out_.headers.clear();
    out_.content_type = {};
    out_.content_length = -1;
    loc_ = &loc;
    phase_ = size_t(Phase::Rewrite);
    handler_ = 0;
    RequestEngine::run_phases(*this);
}

// ---- the phases ----

namespace {

bool setup_uri(Request& r, std::string_view target, std::string_view& uri, std::string_view& args, int& status) {
    UriParts parts;
    if (!split_target(target, r.method(), parts)) {
        status = 400;
        return false;
    }
    args = parts.query;
    std::string_view path = parts.path;
    // Fast path: nothing to decode, no dot segment, no double slash.
    bool plain = path.size() > 0 && path[0] == '/';
    // (with merge_slashes off, "//" is normalized by the slow path, which keeps it)
    for (size_t i = 0; plain && i < path.size(); ++i) {
        char c = path[i];
        if (c == '%' || (c == '/' && i + 1 < path.size() && (path[i + 1] == '/' || path[i + 1] == '.'))) plain = false;
    }
    if (plain) {
        uri = path;
        return true;
    }
    if (path == "*") {
        uri = path;
        return true;
    }
    static std::string normalized;
    // Server-level settings: the location is not known yet.
    const CoreLocConf& sc = *r.server().root_location->core;
    NormalizeOptions opts;
    opts.merge_slashes = *sc.merge_slashes;
    opts.allow_encoded_slash = *sc.allow_encoded_slashes;
    int rc = normalize_path(path, opts, normalized);
    if (rc != 0) {
        status = rc;
        return false;
    }
    uri = r.copy(normalized);
    return true;
}

std::string_view normalize_host(Request& r, std::string_view host) {
    if (host.empty()) return host;
    // Strip the port, then a trailing dot; lowercase into the arena only when needed.
    if (host[0] == '[') {
        size_t close = host.find(']');
        if (close != std::string_view::npos) host = host.substr(0, close + 1);
    } else {
        size_t colon = host.rfind(':');
        if (colon != std::string_view::npos) host = host.substr(0, colon);
    }
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    for (char c : host) {
        if (c >= 'A' && c <= 'Z') {
            char* p = static_cast<char*>(r.arena()->allocate(host.size(), 1));
            for (size_t i = 0; i < host.size(); ++i) p[i] = ascii_lower(host[i]);
            return {p, host.size()};
        }
    }
    return host;
}

}  // namespace

void Request::prepare(AddressServers& servers) {
    start_msec_ = current_msec();
    keep_alive_ = head_.keep_alive;
    server_ = conn_.default_server();
    main_ = http_main_conf(conn_.worker().cycle());
    loc_ = server_->root_location;
    size_t nvars = main_->variables.count();
    var_cache = static_cast<std::string_view*>(arena_->alloc(sizeof(std::string_view) * (nvars + 1), alignof(std::string_view)));
    var_state = static_cast<uint8_t*>(arena_->alloc(nvars + 1, 1));
    memset(var_state, 0, nvars + 1);
    ctx_ = static_cast<void**>(arena_->alloc(sizeof(void*) * main_->module_count, alignof(void*)));
    memset(ctx_, 0, sizeof(void*) * main_->module_count);
}

bool RequestEngine::setup(Request& r) {
    HttpConnection& c = r.connection();
    r.prepare(*static_cast<AddressServers*>(c.listening().data));
    r.host_ = normalize_host(r, r.head_.host);
    r.server_ = find_server(*static_cast<AddressServers*>(c.listening().data), r.host_, &r, c.default_server());
    r.loc_ = r.server_->root_location;
    if (!*r.server_->underscores_in_headers) drop_underscore_headers(r.head_);
    if (r.method() == Method::Connect) {
        // RFC 9110 §9.3.6: CONNECT asks a proxy for a tunnel. A gateway has none
        // to give, and what the client sends next is tunnel data, not requests
        // (nginx answers 405 too).
        SLUICE_LOG(LogLevel::Info, "*%llu client sent CONNECT method, client: %s",
                   static_cast<unsigned long long>(r.connection_number()), std::string(r.remote_addr()).c_str());
        r.keep_alive_ = false;
        r.finalize(405);
        return false;
    }
    int status = 0;
    if (!setup_uri(r, r.head_.target, r.uri_, r.args_, status)) {
        SLUICE_LOG(LogLevel::Info, "*%llu client sent invalid request target \"%.*s\", client: %s",
                   static_cast<unsigned long long>(r.connection_number()), int(std::min<size_t>(r.head_.target.size(), 256)),
                   r.head_.target.data(), std::string(r.remote_addr()).c_str());
        r.keep_alive_ = false;
        r.finalize(status);
        return false;
    }
    r.phase_ = 0;
    r.handler_ = 0;
    return true;
}

void run_request(Request& r) {
    if (RequestEngine::setup(r)) RequestEngine::run_phases(r);
}

// nginx ignores header names with "_" unless underscores_in_headers is on: a
// backend that folds "_" into "-" would otherwise see a header the gateway
// never checked (X_Forwarded_For vs X-Forwarded-For).
void drop_underscore_headers(RequestHead& head) {
    std::erase_if(head.headers, [](const Header& h) { return h.name.find('_') != std::string_view::npos; });
}

void reject_request(Request& r, int status) {
    HttpConnection& c = r.connection();
    r.prepare(*static_cast<AddressServers*>(c.listening().data));
    r.keep_alive_ = false;
    r.uri_ = {};
    r.finalize(status);
}

// FindConfig: choose the location; nginx checks the body size here too.
bool RequestEngine::find_config(Request& r) {
    r.loc_ = find_location(*r.server_->root_location, r.uri_, &r);
    CoreLocConf& cl = *r.loc_->core;
    if (*cl.internal && !r.internal_) {
        r.finalize(404);
        return false;
    }
    if (r.head_.body == RequestHead::Body::Length && *cl.client_max_body_size &&
        r.head_.content_length > *cl.client_max_body_size) {
        SLUICE_LOG(LogLevel::Error, "*%llu client intended to send too large body: %llu bytes, client: %s",
                   static_cast<unsigned long long>(r.connection_number()),
                   static_cast<unsigned long long>(r.head_.content_length), std::string(r.remote_addr()).c_str());
        r.keep_alive_ = false;
        r.finalize(413);
        return false;
    }
    return true;
}

// satisfy all|any (nginx's ngx_http_core_access_phase): turns an Access
// handler's verdict (http_phases.h) into the engine's next move.
Next RequestEngine::access_verdict(Request& r, Next n) {
    bool any = *r.core_conf().satisfy == CoreLocConf::Satisfy::Any;
    if (n == Next::NextPhase) {
        if (!any) return Next::Continue;  // granted: the other handlers must grant too
        // One grant is enough: forget earlier denials and their challenges.
        r.access_code_ = 0;
        r.out_.remove("WWW-Authenticate");
        return Next::NextPhase;
    }
    if (n == Next::Finish && any && (r.status() == 401 || r.status() == 403)) {
        r.access_code_ = r.status();  // the last denial wins, as in nginx
        r.out_.status = 0;
        return Next::Continue;
    }
    return n;
}

// After the last Access handler (nginx's post-access phase): with satisfy any
// and no grant, the remembered denial answers. Returns false when it did.
bool RequestEngine::end_access_phase(Request& r) {
    int code = r.access_code_;
    if (code == 0) return true;
    r.access_code_ = 0;  // an error_page redirect runs the phases afresh
    if (code == 403)
        SLUICE_LOG(LogLevel::Error, "*%llu access forbidden by rule, client: %s",
                   static_cast<unsigned long long>(r.connection_number()), std::string(r.remote_addr()).c_str());
    r.finalize(code);
    return false;
}

// Returns true when the request left the phase loop (finished or suspended).
bool RequestEngine::handle_next(Request& r, Next n) {
    if (r.phase_ == size_t(Phase::Access)) n = access_verdict(r, n);
    switch (n) {
    case Next::Continue: ++r.handler_; return false;
    case Next::NextPhase:
        ++r.phase_;
        r.handler_ = 0;
        return false;
    case Next::Suspend: return true;
    case Next::Finish: r.finalize(r.status() ? r.status() : 200); return true;
    }
    return true;
}

void RequestEngine::run_phases(Request& r) {
    const HttpPhases& ph = r.main_->phases;
    while (r.phase_ < size_t(Phase::Log) && !r.finalized_ && !r.header_sent_) {
        Phase p = Phase(r.phase_);
        if (p == Phase::FindConfig) {
            if (!find_config(r)) return;
            ++r.phase_;
            r.handler_ = 0;
            continue;
        }
        if (p == Phase::Content && r.loc_->content_handler) {
            Next n = r.loc_->content_handler(r);
            if (n == Next::Continue || n == Next::NextPhase) {
                r.finalize(404);
                return;
            }
            handle_next(r, n);
            return;
        }
        const auto& hs = ph.handlers[size_t(p)];
        if (r.handler_ >= hs.size()) {
            if (p == Phase::Content) {
                r.finalize(r.method() == Method::Get || r.method() == Method::Head ? 404 : 405);
                return;
            }
            if (p == Phase::Access && !end_access_phase(r)) return;
            ++r.phase_;
            r.handler_ = 0;
            continue;
        }
        if (handle_next(r, hs[r.handler_](r))) return;
    }
}

void Request::resume(Next how) {
    if (finalized_) return;
    if (!RequestEngine::handle_next(*this, how)) RequestEngine::run_phases(*this);
}

// ---- the end ----

void output_drained(Request& r) {
    if (r.body_held_) {
        BodyChain more(r.arena_);
        if (!r.send_filtered_body(more) || r.body_held_) return;
    }
    if (r.finalized_) {
        if (r.connection().pending() > 0) return;  // the filter's last output is still on its way
        r.connection().post_request_done();
        return;
    }
    if (r.drain_fn_) r.drain_fn_(r, r.drain_arg_);
}

void complete_request(Request& r) {
    if (r.logged_) return;
    r.logged_ = true;
    if (!r.main_) return;
    for (PhaseHandler h : r.main_->phases.handlers[size_t(Phase::Log)]) h(r);
}

void abort_request(Request& r) {
    r.finalized_ = true;
    if (!r.logged_ && r.main_ && r.header_sent_) {
        // The client went away mid-response: nginx logs it with 499 only before a response.
        complete_request(r);
    } else if (!r.logged_ && r.main_) {
        r.out_.status = 499;
        complete_request(r);
    }
}

}  // namespace sluice::http
