// The JWKS client. It reads only what it must: a response head of at most
// kMaxHeadSize, then a body of at most kMaxJwksSize (Content-Length,
// chunked, or until close), and everything is bounded by one deadline. The
// identity provider is trusted for its keys only after TLS verified who it
// is; plain http is the configuration's explicit choice.
#include "jwks_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

#include <cerrno>
#include <cstring>

#include "http/http_chunked.h"
#include "http/http_parse.h"

namespace sluice::auth_jwt {

namespace {

constexpr size_t kMaxHeadSize = 16 * 1024;
constexpr size_t kReadChunk = 16 * 1024;

struct BufferEventFree {
    void operator()(bufferevent* b) const { bufferevent_free(b); }
};
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventFree>;
struct EventFree {
    void operator()(event* e) const { event_free(e); }
};
using EventPtr = std::unique_ptr<event, EventFree>;
struct EventBaseFree {
    void operator()(event_base* b) const { event_base_free(b); }
};
struct AddrinfoFree {
    void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

bool valid_host(std::string_view host) {
    if (host.empty()) return false;
    for (unsigned char c : host)
        if (!(isalnum(c) || c == '.' || c == '-' || c == ':' || c == '_')) return false;
    return true;
}

bool is_ip_literal(const std::string& host) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string address_text(const sockaddr* sa, socklen_t len) {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return "?";
    if (sa->sa_family == AF_INET6) return "[" + std::string(host) + "]:" + port;
    return std::string(host) + ":" + port;
}

// The last OpenSSL error, or the certificate verification result, as text.
std::string tls_error_text(SSL* ssl, unsigned long err) {
    if (ssl) {
        long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK)
            return std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    }
    if (err == 0) return "TLS handshake failed";
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    return buf;
}

}  // namespace

bool parse_key_url(std::string_view text, KeyUrl& url, std::string& error) {
    url = KeyUrl{};
    url.text = text;
    std::string_view rest;
    if (text.starts_with("https://")) {
        url.https = true;
        rest = text.substr(8);
    } else if (text.starts_with("http://")) {
        rest = text.substr(7);
    } else {
        error = "the URL must start with \"http://\" or \"https://\"";
        return false;
    }
    size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    if (authority.find('@') != std::string_view::npos || url.target.find('#') != std::string::npos) {
        error = "user info and fragments are not allowed in the URL";
        return false;
    }
    for (unsigned char c : url.target) {
        if (c <= 0x20 || c >= 0x7f) {
            error = "invalid character in the URL path";
            return false;
        }
    }
    std::string_view port_text;
    if (authority.starts_with("[")) {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "invalid IPv6 address in the URL";
            return false;
        }
        url.host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty() && !after.starts_with(":")) {
            error = "invalid host in the URL";
            return false;
        }
        if (!after.empty()) port_text = after.substr(1);
    } else {
        size_t colon = authority.rfind(':');
        url.host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
    }
    if (!valid_host(url.host)) {
        error = "invalid host in the URL";
        return false;
    }
    uint32_t port = url.https ? 443 : 80;
    if (!port_text.empty() || authority.ends_with(":")) {
        port = 0;
        for (char c : port_text) {
            if (c < '0' || c > '9' || port > 65535) break;
            port = port * 10 + uint32_t(c - '0');
        }
        if (port_text.empty() || port == 0 || port > 65535 ||
            port_text.find_first_not_of("0123456789") != std::string_view::npos) {
            error = "invalid port in the URL";
            return false;
        }
    }
    url.port = uint16_t(port);
    url.host_header = std::string(authority);
    return true;
}

bool resolve_key_url(KeyUrl& url, std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* raw = nullptr;
    std::string port = std::to_string(url.port);
    int rc = getaddrinfo(url.host.c_str(), port.c_str(), &hints, &raw);
    std::unique_ptr<addrinfo, AddrinfoFree> list(raw);
    if (rc != 0) {
        error = "host not found in \"" + url.text + "\": " + gai_strerror(rc);
        return false;
    }
    url.addresses.clear();
    for (addrinfo* a = list.get(); a; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(sockaddr_storage)) continue;
        KeyUrl::Address addr;
        memcpy(&addr.addr, a->ai_addr, a->ai_addrlen);
        addr.len = a->ai_addrlen;
        addr.text = address_text(a->ai_addr, a->ai_addrlen);
        url.addresses.push_back(std::move(addr));
    }
    if (url.addresses.empty()) {
        error = "no address for \"" + url.text + "\"";
        return false;
    }
    return true;
}

SslCtxPtr make_client_ssl_ctx(const std::string& ca_file, std::string& error) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        error = "SSL_CTX_new() failed";
        return nullptr;
    }
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    int ok = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                             : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
    if (ok != 1) {
        error = ca_file.empty() ? "cannot load the system's trusted certificates"
                                : "cannot load trusted certificates from \"" + ca_file + "\"";
        return nullptr;
    }
    return ctx;
}

// ---- one fetch ----

struct JwksClient::State {
    event_base* base;
    const KeyUrl& url;
    SSL_CTX* ssl_ctx;
    uint64_t timeout_ms;
    Done done;
    BufferEventPtr bev;
    SSL* ssl = nullptr;  // owned by bev
    EventPtr timer;
    size_t address = 0;  // the one being tried
    bool connected = false;
    bool finished = false;
    FetchResult result;
    std::string request;
    // The head is parsed from head_buf, which never grows past kMaxHeadSize
    // (reserved once, so the parser's views stay valid).
    std::string head_buf;
    http::ResponseHead head;
    bool head_done = false;
    uint64_t body_left = 0;
    http::ChunkedDecoder chunked;

    State(event_base* b, const KeyUrl& u, SSL_CTX* c, uint64_t t) : base(b), url(u), ssl_ctx(c), timeout_ms(t) {}

    void begin();
    bool connect_next();
    void fail(std::string why);
    void succeed();
    void complete();
    void on_connected();
    void on_readable();
    bool read_head();
    void feed_body(const char* p, size_t n);
    bool keep_body(std::string_view data);
    void on_eof();
    void on_error();

    static void read_cb(bufferevent*, void* self) { static_cast<State*>(self)->on_readable(); }
    static void event_cb(bufferevent*, short what, void* self);
    static void timer_cb(evutil_socket_t, short, void* self);
};

void JwksClient::State::begin() {
    request = "GET " + url.target + " HTTP/1.1\r\nHost: " + url.host_header +
              "\r\nAccept: application/jwk-set+json, application/json\r\nUser-Agent: sluice\r\n"
              "Connection: close\r\n\r\n";
    head_buf.reserve(kMaxHeadSize);
    timer.reset(evtimer_new(base, timer_cb, this));
    if (!timer) return fail("cannot create a timer");
    timeval tv = {time_t(timeout_ms / 1000), suseconds_t((timeout_ms % 1000) * 1000)};
    evtimer_add(timer.get(), &tv);
    if (url.addresses.empty()) return fail("no address to connect to");
    connect_next();
}

// Tries the addresses in order; false (after fail()) when none is left.
bool JwksClient::State::connect_next() {
    while (address < url.addresses.size()) {
        const KeyUrl::Address& a = url.addresses[address];
        ssl = nullptr;
        if (url.https) {
            ssl = SSL_new(ssl_ctx);
            if (!ssl) return fail("SSL_new() failed"), false;
            // The certificate must name the host of the URL (or its IP address).
            bool ip = is_ip_literal(url.host);
            if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url.host.c_str()) != 1
                   : (SSL_set1_host(ssl, url.host.c_str()) != 1 || SSL_set_tlsext_host_name(ssl, url.host.c_str()) != 1)) {
                SSL_free(ssl);
                return fail("cannot set the TLS host name"), false;
            }
            bev.reset(bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
            if (!bev) SSL_free(ssl);
        } else {
            bev.reset(bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
        }
        if (!bev) return fail("cannot create a connection"), false;
        if (url.https) bufferevent_openssl_set_allow_dirty_shutdown(bev.get(), 1);
        bufferevent_setcb(bev.get(), read_cb, nullptr, event_cb, this);
        if (bufferevent_socket_connect(bev.get(), reinterpret_cast<const sockaddr*>(&a.addr), int(a.len)) == 0) {
            bufferevent_enable(bev.get(), EV_READ | EV_WRITE);
            return true;
        }
        ++address;
        bev.reset();
    }
    fail("connect() failed");
    return false;
}

void JwksClient::State::event_cb(bufferevent*, short what, void* self) {
    auto& s = *static_cast<State*>(self);
    if (s.finished) return;
    if (what & BEV_EVENT_CONNECTED) return s.on_connected();
    if (what & BEV_EVENT_EOF) return s.on_eof();
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) return s.on_error();
}

void JwksClient::State::timer_cb(evutil_socket_t, short, void* self) {
    auto& s = *static_cast<State*>(self);
    if (s.finished) return s.complete();  // a failure recorded before start() returned
    s.fail("timed out after " + std::to_string(s.timeout_ms) + " ms");
}

void JwksClient::State::on_connected() {
    connected = true;
    bufferevent_write(bev.get(), request.data(), request.size());
}

void JwksClient::State::on_error() {
    int err = EVUTIL_SOCKET_ERROR();
    unsigned long tls_err = url.https ? bufferevent_get_openssl_error(bev.get()) : 0;
    const std::string& where = url.addresses[address].text;
    if (!connected) {
        // A TLS failure during the handshake is about this peer: not retried elsewhere.
        if (url.https && (tls_err != 0 || SSL_get_verify_result(ssl) != X509_V_OK))
            return fail("TLS handshake with " + where + " failed: " + tls_error_text(ssl, tls_err));
        std::string why = "connect() to " + where + " failed (" + std::to_string(err) + ": " + strerror(err) + ")";
        ++address;
        bev.reset();
        if (address < url.addresses.size()) {
            connect_next();
            return;
        }
        return fail(why);
    }
    if (url.https && tls_err != 0) return fail("TLS error from " + where + ": " + tls_error_text(nullptr, tls_err));
    fail("reading from " + where + " failed (" + std::to_string(err) + ": " + strerror(err) + ")");
}

void JwksClient::State::on_eof() {
    on_readable();  // bytes that arrived with the close
    if (finished) return;
    if (head_done && head.body == http::ResponseHead::Body::UntilClose) return succeed();
    fail("the connection to " + url.addresses[address].text + " closed before the response was complete");
}

void JwksClient::State::on_readable() {
    evbuffer* in = bufferevent_get_input(bev.get());
    while (!finished && evbuffer_get_length(in) > 0) {
        if (!head_done) {
            size_t room = kMaxHeadSize - head_buf.size();
            if (room == 0) return fail("response head larger than 16k");
            size_t old = head_buf.size();
            head_buf.resize(old + std::min(room, evbuffer_get_length(in)));
            int n = evbuffer_remove(in, head_buf.data() + old, head_buf.size() - old);
            head_buf.resize(old + size_t(std::max(n, 0)));
            if (!read_head()) return;
            continue;
        }
        char buf[kReadChunk];
        int n = evbuffer_remove(in, buf, sizeof buf);
        if (n <= 0) return;
        feed_body(buf, size_t(n));
    }
}

// Parses the head once it is complete; interim 1xx heads are skipped. The
// bytes after the head start the body. False when more bytes are needed or
// the fetch ended.
bool JwksClient::State::read_head() {
    http::ParseLimits limits;
    limits.max_head = kMaxHeadSize;
    for (;;) {
        head.reset();
        auto r = http::parse_response_head(head_buf.data(), head_buf.size(), limits, false, head);
        if (r == http::ParseResult::Incomplete) return false;
        if (r == http::ParseResult::Error) return fail("invalid response head"), false;
        if (head.status >= 200) break;
        head_buf.erase(0, head.head_length);
    }
    if (head.status != 200) return fail("unexpected status " + std::to_string(head.status)), false;
    if (head.body == http::ResponseHead::Body::Length && head.content_length > kMaxJwksSize)
        return fail("JWKS larger than 256k"), false;
    head_done = true;
    body_left = head.content_length;
    std::string rest = head_buf.substr(head.head_length);
    if (head.body == http::ResponseHead::Body::None) return succeed(), false;
    feed_body(rest.data(), rest.size());
    return !finished;
}

bool JwksClient::State::keep_body(std::string_view data) {
    if (result.body.size() + data.size() > kMaxJwksSize) {
        fail("JWKS larger than 256k");
        return false;
    }
    result.body.append(data);
    return true;
}

void JwksClient::State::feed_body(const char* p, size_t n) {
    using Body = http::ResponseHead::Body;
    switch (head.body) {
    case Body::None: return succeed();
    case Body::Length: {
        size_t take = size_t(std::min<uint64_t>(n, body_left));
        body_left -= take;
        if (keep_body({p, take}) && body_left == 0) succeed();
        return;
    }
    case Body::UntilClose: keep_body({p, n}); return;
    case Body::Chunked:
        while (n > 0 && !finished) {
            size_t used = 0;
            std::string_view data;
            auto status = chunked.decode(p, n, used, data);
            if (status == http::ChunkedDecoder::Status::Error) return fail("invalid chunked body");
            if (status == http::ChunkedDecoder::Status::Data && !keep_body(data)) return;
            if (status == http::ChunkedDecoder::Status::Done) return succeed();
            p += used;
            n -= used;
        }
        return;
    }
}

void JwksClient::State::fail(std::string why) {
    if (finished) return;
    result.ok = false;
    result.body.clear();
    result.error = std::move(why);
    complete();
}

void JwksClient::State::succeed() {
    if (finished) return;
    result.ok = true;
    complete();
}

// Stops the I/O and reports. A result recorded inside start() is reported
// from the loop instead (a zero timer), so `done` never runs within start().
void JwksClient::State::complete() {
    bool was_finished = finished;
    finished = true;
    if (bev) bufferevent_disable(bev.get(), EV_READ | EV_WRITE);
    if (!done) {
        if (timer) {
            timeval zero{0, 0};
            evtimer_add(timer.get(), &zero);
        }
        return;
    }
    (void)was_finished;
    if (timer) evtimer_del(timer.get());
    Done report = std::move(done);
    done = nullptr;
    report(std::move(result));
}

JwksClient::JwksClient(event_base* base, const KeyUrl& url, SSL_CTX* ssl_ctx, uint64_t timeout_ms)
    : state_(std::make_unique<State>(base, url, ssl_ctx, timeout_ms)) {}

JwksClient::~JwksClient() = default;

void JwksClient::start(Done done) {
    state_->begin();  // may record a failure: reported from the loop
    state_->done = std::move(done);
}

bool JwksClient::finished() const { return state_->finished && !state_->done; }

FetchResult fetch_blocking(const KeyUrl& url, SSL_CTX* ssl_ctx, uint64_t timeout_ms) {
    std::unique_ptr<event_base, EventBaseFree> base(event_base_new());
    FetchResult out;
    if (!base) {
        out.error = "event_base_new() failed";
        return out;
    }
    bool reported = false;
    {
        JwksClient client(base.get(), url, ssl_ctx, timeout_ms);
        client.start([&](FetchResult&& r) {
            out = std::move(r);
            reported = true;
            event_base_loopbreak(base.get());
        });
        // The client's own timer bounds this loop.
        while (!reported && event_base_loop(base.get(), EVLOOP_ONCE) == 0) {
        }
    }
    if (!reported) out.error = "the fetch did not complete";
    return out;
}

}  // namespace sluice::auth_jwt
