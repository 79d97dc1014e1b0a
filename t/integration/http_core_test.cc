// The HTTP/1.1 core against the real daemon: keep-alive and pipelining,
// strict parsing (status and connection handling per bad-input class),
// timeouts, body discarding, return, error_page, server and location choice.
#include <string>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kCoreConfig = R"(
events { worker_connections 128; }
http {
    access_log off;
    client_header_timeout 1s;
    client_max_body_size 1k;
    keepalive_requests 5;
    large_client_header_buffers 2 1k;
    server {
        listen 127.0.0.1:{{PORT}};
        server_name main.test;
        error_page 404 /custom404;
        location / { return 200 "root $uri $args\n"; }
        location = /custom404 { internal; return 200 "custom not found for $request_uri\n"; }
        location /missing { return 404; }
        location /redirect { return 302 /target; }
        location /full { return https://example.test/x; }
        location /teapot { return 418 "short and stout"; }
        location ~ ^/users/(?<id>[0-9]+)/(\w+)$ { return 200 "user $id $2\n"; }
        location /named { error_page 403 = @fallback; return 403; }
        location @fallback { return 200 "fell back\n"; }
        location /eq { error_page 404 =200 /custom404; return 404; }
        location /hdr { return 200 "[$http_x_thing][$arg_q][$cookie_c][$host]"; }
        location /nested/ {
            location /nested/deep/ { return 200 "deep\n"; }
            return 200 "nested\n";
        }
    }
    server {
        listen 127.0.0.1:{{PORT}};
        server_name other.test *.wild.test;
        location / { return 200 "other $host $server_name\n"; }
    }
}
)";

class HttpCore : public ::testing::Test {
protected:
    void SetUp() override {
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kCoreConfig));
        ASSERT_TRUE(daemon_->start());
        port_ = daemon_->port();
    }
    std::optional<Response> exchange(const std::string& raw) { return http_request(port_, raw); }

    std::unique_ptr<Daemon> daemon_;
    uint16_t port_ = 0;
};

TEST_F(HttpCore, KeepAliveAndPipelining) {
    Conn c(port_);
    ASSERT_TRUE(c.send("GET /a HTTP/1.1\r\nHost: main.test\r\n\r\n"
                       "GET /b?x=1 HTTP/1.1\r\nHost: main.test\r\n\r\n"
                       "HEAD /c HTTP/1.1\r\nHost: main.test\r\n\r\n"));
    auto r1 = c.read_response();
    ASSERT_TRUE(r1);
    EXPECT_EQ(r1->status, 200);
    EXPECT_EQ(r1->body, "root /a \n");
    EXPECT_EQ(r1->header("Connection"), "keep-alive");
    auto r2 = c.read_response();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->body, "root /b x=1\n");
    auto r3 = c.read_head_response();
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->status, 200);
    EXPECT_EQ(r3->header("Content-Length"), "9");
    EXPECT_TRUE(r3->body.empty());
    // The same connection keeps serving.
    ASSERT_TRUE(c.send("GET /d HTTP/1.1\r\nHost: main.test\r\n\r\n"));
    auto r4 = c.read_response();
    ASSERT_TRUE(r4);
    EXPECT_EQ(r4->body, "root /d \n");
}

TEST_F(HttpCore, KeepaliveRequestsLimitClosesAfterTheLast) {
    Conn c(port_);
    for (int i = 1; i <= 5; ++i) {
        ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: main.test\r\n\r\n"));
        auto r = c.read_response();
        ASSERT_TRUE(r) << i;
        EXPECT_EQ(r->header("Connection"), i < 5 ? "keep-alive" : "close") << i;
    }
    EXPECT_TRUE(c.is_closed(2s));
}

TEST_F(HttpCore, Http10ClosesUnlessKeepAlive) {
    Conn c(port_);
    ASSERT_TRUE(c.send("GET / HTTP/1.0\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(c.is_closed(2s));

    Conn k(port_);
    ASSERT_TRUE(k.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r2 = k.read_response();
    ASSERT_TRUE(r2);
    EXPECT_EQ(r2->header("Connection"), "keep-alive");
    ASSERT_TRUE(k.send("GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto r3 = k.read_response();
    ASSERT_TRUE(r3);
    EXPECT_EQ(r3->body, "root /again \n");
}

// Each bad-input class gets its status and the connection is closed: the
// framing of whatever follows cannot be trusted.
TEST_F(HttpCore, BadRequestsGetTheirStatusAndClose) {
    struct Case {
        const char* name;
        std::string raw;
        int status;
    };
    const std::string big(1100, 'a');
    const Case cases[] = {
        {"garbage line", "HELLO\r\n\r\n", 400},
        {"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        {"differing CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
        {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
        {"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400},
        {"NUL in header", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), 400},
        {"no Host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
        {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: rot13, chunked\r\n\r\n", 501},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"request line too long", "GET /" + std::string(1200, 'x') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
        {"header too long", "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\n\r\n", 431},
        {"body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n", 413},
        {"encoded slash", "GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"encoded dot segment", "GET /a/%2e%2e/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"above the root", "GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400},
    };
    for (const Case& k : cases) {
        Conn c(port_);
        ASSERT_TRUE(c.send(k.raw)) << k.name;
        auto r = c.read_response(3s);
        ASSERT_TRUE(r) << k.name << ": " << c.error();
        EXPECT_EQ(r->status, k.status) << k.name;
        EXPECT_EQ(r->header("Connection"), "close") << k.name;
        EXPECT_TRUE(c.is_closed(3s)) << k.name;
    }
}

TEST_F(HttpCore, NormalizedPathIsWhatIsMatched) {
    auto r = exchange("GET /x/./y/../z//w?q=1 HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "root /x/z/w q=1\n");
    auto u = exchange("GET /users/%31%32/profile HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(u);
    EXPECT_EQ(u->body, "user 12 profile\n");
}

TEST_F(HttpCore, ReturnRedirectsAndTextAndErrorPages) {
    auto r = exchange("GET /redirect HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 302);
    EXPECT_EQ(r->header("Location"), "http://main.test:" + std::to_string(port_) + "/target");
    auto f = exchange("GET /full HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->status, 302);
    EXPECT_EQ(f->header("Location"), "https://example.test/x");
    auto t = exchange("GET /teapot HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->status, 418);
    EXPECT_EQ(t->body, "short and stout");
    // error_page 404 /custom404 keeps the 404 status with the page's body.
    auto m = exchange("GET /missing?a=b HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->status, 404);
    EXPECT_EQ(m->body, "custom not found for /missing?a=b\n");
    EXPECT_EQ(m->header("Connection"), "keep-alive");
    // An internal location is not reachable from outside.
    auto i = exchange("GET /custom404 HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(i);
    EXPECT_EQ(i->status, 404);
    // "= @named": the named location's own status.
    auto n = exchange("GET /named HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(n);
    EXPECT_EQ(n->status, 200);
    EXPECT_EQ(n->body, "fell back\n");
    auto e = exchange("GET /eq HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->status, 200);
}

TEST_F(HttpCore, VariablesFromTheRequest) {
    auto r = exchange("GET /hdr?q=42&z=1 HTTP/1.1\r\nHost: MAIN.test:80\r\nX-Thing: yes\r\nCookie: a=1; c=cv\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "[yes][42][cv][main.test]");
}

TEST_F(HttpCore, ServerSelectionByHost) {
    auto a = exchange("GET / HTTP/1.1\r\nHost: other.test\r\n\r\n");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->body, "other other.test other.test\n");
    auto w = exchange("GET / HTTP/1.1\r\nHost: x.wild.test\r\n\r\n");
    ASSERT_TRUE(w);
    EXPECT_EQ(w->body, "other x.wild.test other.test\n");
    auto d = exchange("GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->body, "root / \n");  // the first server is the default
}

TEST_F(HttpCore, NestedLocations) {
    auto a = exchange("GET /nested/deep/x HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->body, "deep\n");
    auto b = exchange("GET /nested/x HTTP/1.1\r\nHost: main.test\r\n\r\n");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->body, "nested\n");
}

TEST_F(HttpCore, UnreadBodyIsDiscardedAndTheConnectionReused) {
    Conn c(port_);
    ASSERT_TRUE(c.send("POST /a HTTP/1.1\r\nHost: main.test\r\nContent-Length: 10\r\n\r\n0123456789"
                       "POST /b HTTP/1.1\r\nHost: main.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\n\r\n"
                       "GET /c HTTP/1.1\r\nHost: main.test\r\n\r\n"));
    for (const char* expect : {"root /a \n", "root /b \n", "root /c \n"}) {
        auto r = c.read_response();
        ASSERT_TRUE(r) << expect << ": " << c.error();
        EXPECT_EQ(r->body, expect);
    }
    // A body that arrives in pieces after the response is still skipped.
    ASSERT_TRUE(c.send("POST /d HTTP/1.1\r\nHost: main.test\r\nContent-Length: 6\r\n\r\nabc"));
    auto d = c.read_response();
    ASSERT_TRUE(d);
    ASSERT_TRUE(c.send("defGET /e HTTP/1.1\r\nHost: main.test\r\n\r\n"));
    auto e = c.read_response();
    ASSERT_TRUE(e) << c.error();
    EXPECT_EQ(e->body, "root /e \n");
}

// A location that never reads the body answers first; the unread body is
// then skipped, and bad chunk framing there closes the connection, so the
// bytes after it are never taken as a request.
TEST_F(HttpCore, BadChunkInAnUnreadBodyClosesTheConnection) {
    Conn c(port_);
    ASSERT_TRUE(c.send("POST /a HTTP/1.1\r\nHost: main.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "zz\r\nGET /smuggled HTTP/1.1\r\nHost: main.test\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "root /a \n");
    EXPECT_TRUE(c.is_closed(3s));
    EXPECT_EQ(c.buffered().find("smuggled"), std::string::npos);
}

TEST_F(HttpCore, ExpectContinueWithoutReadingTheBodyCloses) {
    Conn c(port_);
    ASSERT_TRUE(c.send("POST /a HTTP/1.1\r\nHost: main.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_TRUE(c.is_closed(3s));
}

TEST_F(HttpCore, SlowHeadTimesOutWith408) {
    Conn c(port_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: ma"));
    auto r = c.read_response(5s);
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 408);
    EXPECT_TRUE(c.is_closed(2s));
}

TEST_F(HttpCore, IdleConnectionWithoutBytesIsClosedSilently) {
    Conn c(port_);
    EXPECT_TRUE(c.is_closed(5s));
    EXPECT_TRUE(c.buffered().empty());
}

}  // namespace
}  // namespace sluice::test
