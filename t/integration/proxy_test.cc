// The proxy module against the real daemon and real origins: proxy_pass's URI
// rules, routing by variables, query and header edits, hop-by-hop headers,
// request and response bodies in every buffering mode, a 1 GiB body both ways
// with the worker's memory bounded, WebSocket tunnels, the failures a client
// sees (502, 504, malformed upstream responses), and the $upstream_* variables.
//
// The origin is t/lib/test_upstream.cc: it answers with a JSON echo of what it
// received (lowercased header names, body_length, body_fnv). Where a test needs
// a response test_upstream cannot produce (hop-by-hop response headers), a
// CannedOrigin thread in this file answers with fixed bytes.
//
// SLUICE_TEST_BIG_BYTES sets the size of the big-body tests (default 1 GiB,
// 256 MiB when this test is built with AddressSanitizer, where the relay is
// several times slower; the whole file then takes about 40 s).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- helpers ----------------------------------------------------------------

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

std::string fnv1a_hex(std::string_view data) {
    uint64_t h = kFnvOffset;
    for (unsigned char c : data) h = (h ^ c) * kFnvPrime;
    char out[17];
    snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return out;
}

// A body whose bytes depend on their position, so a lost or repeated piece shows.
std::string patterned_body(size_t size) {
    std::string s(size, '\0');
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < size; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s[i] = char(x);
    }
    return s;
}

// The string value of "key":"..." in the echo (JSON escapes left as they are),
// or "<none>" when the key is missing. Header names are keys in "headers".
std::string json_string(std::string_view json, std::string_view key) {
    std::string needle = "\"" + std::string(key) + "\":\"";
    size_t at = json.find(needle);
    if (at == std::string_view::npos) return "<none>";
    at += needle.size();
    size_t end = at;
    while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
    return std::string(json.substr(at, end - at));
}

std::string json_number(std::string_view json, std::string_view key) {
    std::string needle = "\"" + std::string(key) + "\":";
    size_t at = json.find(needle);
    if (at == std::string_view::npos) return "<none>";
    at += needle.size();
    size_t end = json.find_first_not_of("0123456789", at);
    return std::string(json.substr(at, end - at));
}

// What the origin saw: the request header (lowercase name) or "<none>".
std::string seen_header(const Response& r, std::string_view lowercase_name) {
    size_t headers = r.body.find("\"headers\":{");
    if (headers == std::string::npos) return "<no echo>";
    size_t end = r.body.find('}', headers);
    return json_string(std::string_view(r.body).substr(headers, end - headers + 1), lowercase_name);
}

std::string seen_uri(const Response& r) { return json_string(r.body, "uri"); }

// ---- raw sockets, for tunnels and the big body ----------------------------------

int connect_to(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool wait_fd(int fd, short events, Millis timeout) {
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, int(timeout.count())) > 0;
}

bool write_all(int fd, std::string_view data, Millis timeout = kDefaultTimeout) {
    while (!data.empty()) {
        if (!wait_fd(fd, POLLOUT, timeout)) return false;
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(size_t(n));
    }
    return true;
}

// Reads until `buffer` holds `needle` (true) or the peer closes or time runs out.
bool read_until(int fd, std::string& buffer, std::string_view needle, Millis timeout = kDefaultTimeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (buffer.find(needle) == std::string::npos) {
        auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !wait_fd(fd, POLLIN, left)) return false;
        char tmp[16384];
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return false;
        buffer.append(tmp, size_t(n));
    }
    return true;
}

// True once the peer closed (EOF or reset) within `timeout`; data meanwhile is dropped.
bool closed_within(int fd, Millis timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !wait_fd(fd, POLLIN, left)) return false;
        char tmp[4096];
        ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) return true;
    }
}

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

// ---- an origin with fixed answers ------------------------------------------------

// Answers each request (its head; GETs only) with reply(head) and closes the
// connection. For responses test_upstream cannot produce.
class CannedOrigin {
public:
    using Reply = std::function<std::string(const std::string& head)>;
    explicit CannedOrigin(Reply reply) : reply_(std::move(reply)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        port_ = free_port();
        addr.sin_port = htons(port_);
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 64) != 0) {
            ::close(listen_fd_);
            listen_fd_ = -1;
            return;
        }
        thread_ = std::thread([this] { serve(); });
    }
    ~CannedOrigin() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        if (listen_fd_ >= 0) ::close(listen_fd_);
    }
    bool ok() const { return listen_fd_ >= 0; }
    uint16_t port() const { return port_; }

private:
    void serve() {
        while (!stop_) {
            if (!wait_fd(listen_fd_, POLLIN, Millis{50})) continue;
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            Fd conn(fd);
            std::string head;
            if (read_until(fd, head, "\r\n\r\n", Millis{2000})) write_all(fd, reply_(head), Millis{2000});
        }
    }

    Reply reply_;
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The bytes of `head` between "GET " and the next space.
std::string request_target(const std::string& head) {
    size_t sp = head.find(' ');
    if (sp == std::string::npos) return "";
    return head.substr(sp + 1, head.find(' ', sp + 1) - sp - 1);
}

std::string canned_reply(const std::string& head) {
    std::string target = request_target(head);
    std::string body = "canned " + target;
    std::string h = "HTTP/1.1 200 OK\r\n"
                    "Server: canned-origin\r\n"
                    "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
                    "X-Powered-By: origin\r\n"
                    "X-Accel-Buffering: no\r\n"
                    "X-Kept: yes\r\n"
                    "Keep-Alive: timeout=5\r\n"
                    "Proxy-Connection: keep-alive\r\n"
                    "Upgrade: h2c\r\n"
                    "Trailer: X-Checksum\r\n"
                    "X-Private: named in Connection\r\n"
                    "Connection: close, X-Private\r\n"
                    "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    return h + body;
}

// Runs `script` on each accepted connection, one at a time, until it returns
// or the origin is destroyed. For upstreams that misbehave over time.
class ScriptedOrigin {
public:
    using Script = std::function<void(int fd, const std::atomic<bool>& stop)>;
    explicit ScriptedOrigin(Script script) : script_(std::move(script)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        // Small buffers: a request body the origin does not read stalls soon.
        int small = 4096;
        setsockopt(listen_fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        port_ = free_port();
        addr.sin_port = htons(port_);
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0) {
            ::close(listen_fd_);
            listen_fd_ = -1;
            return;
        }
        thread_ = std::thread([this] { serve(); });
    }
    ~ScriptedOrigin() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        if (listen_fd_ >= 0) ::close(listen_fd_);
    }
    bool ok() const { return listen_fd_ >= 0; }
    uint16_t port() const { return port_; }

private:
    void serve() {
        while (!stop_) {
            if (!wait_fd(listen_fd_, POLLIN, Millis{50})) continue;
            int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            Fd conn(fd);
            script_(fd, stop_);
        }
    }

    Script script_;
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// ---- the shared daemon ---------------------------------------------------------------

constexpr std::string_view kConfig = R"(
events { worker_connections 512; }
http {
    client_max_body_size 64m;
    log_format upstream '$request_uri|$upstream_addr|$upstream_status|$upstream_response_time|'
                        '$upstream_connect_time|$upstream_header_time|$upstream_bytes_received|$proxy_host';
    access_log {{PREFIX}}/logs/upstream.log upstream;

    upstream be { server 127.0.0.1:{{UP1}}; keepalive 8; }
    upstream v1 { server 127.0.0.1:{{UP1}}; }
    upstream v2 { server 127.0.0.1:{{UP2}}; }
    upstream dead { server 127.0.0.1:{{DEAD}}; }
    upstream reuse { server 127.0.0.1:{{UP3}}; keepalive 4; }
    upstream canned { server 127.0.0.1:{{CANNED}}; }

    map $http_x_api_version $backend {
        default v1;
        2       v2;
    }
    split_clients "$http_x_key" $canary {
        5%  v2;
        *   v1;
    }

    server {
        listen 127.0.0.1:{{PORT}};

        location / { proxy_pass http://be; }
        location /api/ { proxy_pass http://be/v1/; }
        location = /exact { proxy_pass http://be/other; }
        location /direct/ { proxy_pass http://127.0.0.1:{{UP1}}; }
        location /routed/ { proxy_pass http://$backend; }
        location /canary/ { proxy_pass http://$canary; }

        location /args/ {
            proxy_set_arg debug $http_x_debug;
            proxy_set_arg fixed 1;
            proxy_remove_arg secret;
            proxy_pass http://be;
        }
        location /many-args/ {
            # More edits than the 32 the request path once had room for.
            proxy_set_arg a01 1; proxy_set_arg a02 2; proxy_set_arg a03 3; proxy_set_arg a04 4; proxy_set_arg a05 5; proxy_set_arg a06 6;
            proxy_set_arg a07 7; proxy_set_arg a08 8; proxy_set_arg a09 9; proxy_set_arg a10 10; proxy_set_arg a11 11; proxy_set_arg a12 12;
            proxy_set_arg a13 13; proxy_set_arg a14 14; proxy_set_arg a15 15; proxy_set_arg a16 16; proxy_set_arg a17 17; proxy_set_arg a18 18;
            proxy_set_arg a19 19; proxy_set_arg a20 20; proxy_set_arg a21 21; proxy_set_arg a22 22; proxy_set_arg a23 23; proxy_set_arg a24 24;
            proxy_set_arg a25 25; proxy_set_arg a26 26; proxy_set_arg a27 27; proxy_set_arg a28 28; proxy_set_arg a29 29; proxy_set_arg a30 30;
            proxy_set_arg a31 31; proxy_set_arg a32 32; proxy_set_arg a33 33; proxy_set_arg a34 34;
            proxy_remove_arg secret;
            proxy_pass http://be;
        }
        location /hdr/ {
            proxy_set_header X-Client "$remote_addr:$arg_tag";
            proxy_set_header X-Empty "";
            proxy_set_header User-Agent "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://be;
        }
        location /canned/ { proxy_pass http://canned; }
        location /canned-hide/ {
            proxy_hide_header X-Powered-By;
            proxy_pass_header Server;
            proxy_pass_header X-Accel-Buffering;
            proxy_pass http://canned;
        }
        location /always/ {
            add_header X-Always yes always;
            add_header X-Sometimes yes;
            proxy_pass http://be/;
        }
        location /always-dead/ {
            add_header X-Always yes always;
            add_header X-Sometimes yes;
            proxy_pass http://dead;
        }

        location /stream-body/ {
            proxy_request_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://be/;
        }
        location /stream-body-10/ {
            proxy_request_buffering off;
            proxy_pass http://be/;
        }
        location /nobuf/ {
            proxy_buffering off;
            proxy_http_version 1.1;
            proxy_pass http://be/;
        }
        location /v11/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://be/;
        }

        location /ws {
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1s;
            proxy_pass http://be;
        }
        location /plain/ { proxy_http_version 1.1; proxy_pass http://be/; }

        location /dead/ { proxy_pass http://dead; }
        location /slow/ { proxy_read_timeout 300ms; proxy_pass http://be/; }
        location /pretty-dead/ { error_page 502 504 /gateway-error; proxy_pass http://dead; }
        location /pretty-slow/ {
            error_page 502 504 /gateway-error;
            proxy_read_timeout 300ms;
            proxy_pass http://be/;
        }
        location = /gateway-error { internal; return 200 "custom gateway page\n"; }

        location /reuse/ {
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://reuse/;
        }
    }
}
)";

class ProxyTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        up1_ = new UpstreamProcess({"--id", "one"});
        up2_ = new UpstreamProcess({"--id", "two"});
        up3_ = new UpstreamProcess({"--id", "three"});
        canned_ = new CannedOrigin(canned_reply);
        dead_port_ = free_port();  // nothing listens there: connections are refused
        if (!up1_->start() || !up2_->start() || !up3_->start() || !canned_->ok()) return;
        daemon_ = new Daemon(std::string(kMainConfig) + std::string(kConfig),
                             {{"UP1", up1_->port()},
                              {"UP2", up2_->port()},
                              {"UP3", up3_->port()},
                              {"DEAD", dead_port_},
                              {"CANNED", canned_->port()}});
        started_ = bool(daemon_->start());
        if (!started_) fprintf(stderr, "daemon: %s\n", daemon_->stderr_log().c_str());
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete canned_;
        delete up3_;
        delete up2_;
        delete up1_;
        daemon_ = nullptr;
    }
    void SetUp() override {
        ASSERT_TRUE(started_) << "the shared daemon did not start";
        port_ = daemon_->port();
    }

    Response get(std::string_view path, std::string_view headers = "") {
        auto r = http_get(port_, path, headers);
        return r ? *r : Response{};
    }
    Response request(const std::string& raw) {
        auto r = http_request(port_, raw);
        return r ? *r : Response{};
    }

    static UpstreamProcess* up1_;
    static UpstreamProcess* up2_;
    static UpstreamProcess* up3_;
    static CannedOrigin* canned_;
    static Daemon* daemon_;
    static bool started_;
    static uint16_t dead_port_;
    uint16_t port_ = 0;
};

UpstreamProcess* ProxyTest::up1_ = nullptr;
UpstreamProcess* ProxyTest::up2_ = nullptr;
UpstreamProcess* ProxyTest::up3_ = nullptr;
CannedOrigin* ProxyTest::canned_ = nullptr;
Daemon* ProxyTest::daemon_ = nullptr;
bool ProxyTest::started_ = false;
uint16_t ProxyTest::dead_port_ = 0;

// ---- URIs ------------------------------------------------------------------------

TEST_F(ProxyTest, UriPartReplacesTheLocationPrefix) {
    EXPECT_EQ(seen_uri(get("/api/x")), "/v1/x");
    EXPECT_EQ(seen_uri(get("/api/a/b?q=1&r")), "/v1/a/b?q=1&r");
    EXPECT_EQ(seen_uri(get("/api/")), "/v1/");
    EXPECT_EQ(seen_uri(get("/exact?z=9")), "/other?z=9");
    // What replaces the prefix is the normalized path too.
    EXPECT_EQ(seen_uri(get("/api/x/../%7Euser/./y")), "/v1/~user/y");
}

TEST_F(ProxyTest, WithoutUriPartTheNormalizedPathIsSent) {
    EXPECT_EQ(seen_uri(get("/a/./b/../c?k=v")), "/a/c?k=v");
    EXPECT_EQ(seen_uri(get("/a//b///c")), "/a/b/c");
    // Unreserved characters decoded, every other escape kept, hex uppercased:
    // one spelling for what was matched and what the origin decodes.
    EXPECT_EQ(seen_uri(get("/%61%62c/sp%20ace/%e2%82%ac")), "/abc/sp%20ace/%E2%82%AC");
    EXPECT_EQ(seen_uri(get("/direct/p?x=%2F")), "/direct/p?x=%2F");
    auto r = get("/direct/q");
    EXPECT_EQ(seen_header(r, "host"), "127.0.0.1:" + std::to_string(up1_->port()));
    // Ambiguous encodings never reach the origin.
    EXPECT_EQ(get("/a%2Fb").status, 400);
    EXPECT_EQ(get("/a/%2e%2e/b").status, 400);
}

TEST_F(ProxyTest, VariableProxyPassRoutesByHeader) {
    auto r1 = get("/routed/x?a=1");
    EXPECT_EQ(r1.header("X-Upstream-Id"), "one");
    EXPECT_EQ(seen_uri(r1), "/routed/x?a=1");
    EXPECT_EQ(seen_header(r1, "host"), "v1");
    auto r2 = get("/routed/x", "X-Api-Version: 2\r\n");
    EXPECT_EQ(r2.header("X-Upstream-Id"), "two");
    EXPECT_EQ(seen_header(r2, "host"), "v2");
    EXPECT_EQ(get("/routed/x", "X-Api-Version: 3\r\n").header("X-Upstream-Id"), "one");
}

TEST_F(ProxyTest, SplitClientsCanaryTakesAboutFivePercent) {
    constexpr int kKeys = 1000;
    Conn c(port_);
    int canary = 0, answered = 0;
    for (int i = 0; i < kKeys; ++i) {
        ASSERT_TRUE(c.send("GET /canary/ HTTP/1.1\r\nHost: t\r\nX-Key: user-" + std::to_string(i) + "\r\n\r\n"));
        auto r = c.read_response();
        ASSERT_TRUE(r) << i << ": " << c.error();
        ASSERT_EQ(r->status, 200) << i;
        ++answered;
        if (r->header("X-Upstream-Id") == "two") ++canary;
    }
    EXPECT_EQ(answered, kKeys);
    // 5% of 1000 is 50; the hash is fixed, the bounds only guard the split.
    EXPECT_GE(canary, 20);
    EXPECT_LE(canary, 90);
    // One key always goes the same way.
    std::string first = get("/canary/", "X-Key: user-7\r\n").header("X-Upstream-Id");
    for (int i = 0; i < 5; ++i) EXPECT_EQ(get("/canary/", "X-Key: user-7\r\n").header("X-Upstream-Id"), first);
}

// ---- query arguments ---------------------------------------------------------------

TEST_F(ProxyTest, SetArgAndRemoveArg) {
    EXPECT_EQ(seen_uri(get("/args/p?a=1&secret=s&fixed=0&debug=old&b", "X-Debug: on\r\n")),
              "/args/p?a=1&b&debug=on&fixed=1");
    // A value is encoded so that it cannot add or split an argument.
    EXPECT_EQ(seen_uri(get("/args/p?x=1", "X-Debug: a&b=c %\r\n")), "/args/p?x=1&debug=a%26b%3Dc%20%25&fixed=1");
    // An empty value removes the argument; an encoded name is the same name.
    EXPECT_EQ(seen_uri(get("/args/p?%73ecret=1&debug=x")), "/args/p?fixed=1");
    EXPECT_EQ(seen_uri(get("/args/p")), "/args/p?fixed=1");
}

TEST_F(ProxyTest, EveryArgEditIsApplied) {
    std::string uri = seen_uri(get("/many-args/x?keep=1&secret=s&a34=old"));
    EXPECT_THAT(uri, HasSubstr("keep=1")) << uri;
    EXPECT_THAT(uri, Not(HasSubstr("secret"))) << uri;
    EXPECT_THAT(uri, Not(HasSubstr("old"))) << uri;
    for (int i = 1; i <= 34; ++i) {
        char arg[16];
        snprintf(arg, sizeof arg, "a%02d=%d", i, i);
        EXPECT_THAT(uri, HasSubstr(arg)) << uri;
    }
}

// ---- headers ----------------------------------------------------------------------------

TEST_F(ProxyTest, SetHeaderWithVariablesAndEmptyValueRemoves) {
    auto r = get("/hdr/x?tag=t1", "User-Agent: curl/8\r\nX-Empty: from-client\r\nX-Kept: k\r\n");
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(seen_header(r, "x-client"), "127.0.0.1:t1");
    EXPECT_EQ(seen_header(r, "x-empty"), "<none>");
    EXPECT_EQ(seen_header(r, "user-agent"), "<none>");
    EXPECT_EQ(seen_header(r, "x-kept"), "k");
    EXPECT_EQ(seen_header(r, "host"), "be");  // $proxy_host by default
    EXPECT_EQ(seen_header(get("/"), "host"), "be");
}

TEST_F(ProxyTest, GatewayHeadersReplaceSpoofedOnes) {
    auto r = get("/hdr/", "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2, 10.0.0.3\r\n"
                          "X-Real-IP: 6.6.6.6\r\nX-Client: spoofed\r\nHost: evil.example\r\n");
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(seen_header(r, "x-forwarded-for"), "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1");
    EXPECT_EQ(seen_header(r, "x-real-ip"), "127.0.0.1");
    EXPECT_EQ(seen_header(r, "x-client"), "127.0.0.1:");
    EXPECT_EQ(seen_header(r, "host"), "be");
    auto plain = get("/hdr/");
    EXPECT_EQ(seen_header(plain, "x-forwarded-for"), "127.0.0.1");
}

TEST_F(ProxyTest, HopByHopRequestHeadersAreNotForwarded) {
    auto r = request("GET /plain/x HTTP/1.1\r\nHost: t\r\n"
                     "Connection: keep-alive, X-Private, x-other\r\n"
                     "Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\n"
                     "Proxy-Connection: keep-alive\r\nX-Private: p\r\nX-Other: o\r\nX-Kept: yes\r\n\r\n");
    ASSERT_EQ(r.status, 200) << r;
    for (const char* name : {"keep-alive", "te", "trailer", "upgrade", "proxy-connection", "x-private", "x-other"})
        EXPECT_EQ(seen_header(r, name), "<none>") << name;
    EXPECT_EQ(seen_header(r, "connection"), "close");  // the gateway's own
    EXPECT_EQ(seen_header(r, "x-kept"), "yes");
    EXPECT_EQ(seen_header(r, "transfer-encoding"), "<none>");
}

TEST_F(ProxyTest, HopByHopResponseHeadersAreNotForwarded) {
    auto r = get("/canned/x");
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(r.body, "canned /canned/x");
    for (const char* name : {"Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer", "X-Private"})
        EXPECT_FALSE(r.has(name)) << name << "\n" << r;
    EXPECT_EQ(r.count("Connection"), 1) << r;
    EXPECT_EQ(r.header("X-Kept"), "yes");
    // Hidden by default: the gateway's own Server and Date, nginx's X-Accel-*.
    EXPECT_EQ(r.count("Server"), 1) << r;
    EXPECT_NE(r.header("Server"), "canned-origin");
    EXPECT_EQ(r.count("Date"), 1) << r;
    EXPECT_FALSE(r.has("X-Accel-Buffering"));
    EXPECT_EQ(r.header("X-Powered-By"), "origin");
}

TEST_F(ProxyTest, HideHeaderAndPassHeader) {
    auto r = get("/canned-hide/x");
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_FALSE(r.has("X-Powered-By")) << r;
    EXPECT_EQ(r.header("X-Accel-Buffering"), "no");
    EXPECT_EQ(r.count("Date"), 1) << r;
    // The origin's Server replaces the gateway's, as in nginx.
    EXPECT_EQ(r.count("Server"), 1) << r;
    EXPECT_EQ(r.header("Server"), "canned-origin");
}

TEST_F(ProxyTest, AddHeaderAlwaysOnProxiedErrors) {
    auto ok = get("/always/x");
    EXPECT_EQ(ok.status, 200);
    EXPECT_EQ(ok.header("X-Always"), "yes");
    EXPECT_EQ(ok.header("X-Sometimes"), "yes");
    auto upstream_error = get("/always/status/503");
    EXPECT_EQ(upstream_error.status, 503);
    EXPECT_EQ(upstream_error.header("X-Always"), "yes") << upstream_error;
    EXPECT_FALSE(upstream_error.has("X-Sometimes")) << upstream_error;
    auto gateway_error = get("/always-dead/x");
    EXPECT_EQ(gateway_error.status, 502);
    EXPECT_EQ(gateway_error.header("X-Always"), "yes") << gateway_error;
    EXPECT_FALSE(gateway_error.has("X-Sometimes")) << gateway_error;
}

// ---- bodies ---------------------------------------------------------------------------------

std::string post_with_length(std::string_view path, std::string_view body) {
    return "POST " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

std::string post_chunked(std::string_view path, std::string_view body, size_t chunk, bool close = true) {
    std::string out = "POST " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + (close ? "Connection: close\r\n" : "") +
                      "Transfer-Encoding: chunked\r\n\r\n";
    char line[32];
    for (size_t at = 0; at < body.size(); at += chunk) {
        std::string_view piece = body.substr(at, chunk);
        snprintf(line, sizeof line, "%zx\r\n", piece.size());
        out += line;
        out += piece;
        out += "\r\n";
    }
    return out + "0\r\n\r\n";
}

struct BodyCase {
    const char* location;
    const char* framing_seen;  // what the origin got: "length" or "chunked"
};

void expect_body_arrived(const Response& r, std::string_view body, const std::string& what) {
    ASSERT_EQ(r.status, 200) << what << "\n" << r;
    EXPECT_EQ(json_number(r.body, "body_length"), std::to_string(body.size())) << what;
    EXPECT_EQ(json_string(r.body, "body_fnv"), fnv1a_hex(body)) << what;
}

TEST_F(ProxyTest, RequestBodiesArriveIntactInEveryMode) {
    const BodyCase cases[] = {
        {"/", "length"},               // buffered (memory, then a temp file)
        {"/stream-body/", "chunked"},  // streamed, chunked to an HTTP/1.1 origin
        {"/stream-body-10/", "length"},  // HTTP/1.0 origin: a chunked body is buffered first
    };
    for (size_t size : {size_t(0), size_t(1), size_t(1000), size_t(100 * 1024), size_t(3 * 1024 * 1024)}) {
        std::string body = patterned_body(size);
        for (const BodyCase& k : cases) {
            std::string path = std::string(k.location) + "x";
            std::string what = path + " size " + std::to_string(size);
            auto by_length = request(post_with_length(path, body));
            expect_body_arrived(by_length, body, what + " (Content-Length)");
            // A body with a known length keeps it, whatever the mode.
            if (size > 0) {
                EXPECT_EQ(seen_header(by_length, "content-length"), std::to_string(size)) << what;
            }
            EXPECT_EQ(seen_header(by_length, "transfer-encoding"), "<none>") << what;

            auto by_chunks = request(post_chunked(path, body, 7000));
            expect_body_arrived(by_chunks, body, what + " (chunked)");
            if (std::string_view(k.framing_seen) == "chunked") {
                EXPECT_EQ(seen_header(by_chunks, "transfer-encoding"), "chunked") << what;
            } else {
                EXPECT_EQ(seen_header(by_chunks, "content-length"), std::to_string(size)) << what;
                EXPECT_EQ(seen_header(by_chunks, "transfer-encoding"), "<none>") << what;
            }
        }
    }
}

TEST_F(ProxyTest, ResponseBodiesPassThroughWithAndWithoutBuffering) {
    for (const char* prefix : {"/", "/nobuf/"}) {
        std::string p = prefix;
        auto chunked = get(p + "chunked");
        ASSERT_EQ(chunked.status, 200) << p << chunked;
        EXPECT_EQ(seen_uri(chunked), "/chunked") << p;
        EXPECT_THAT(chunked.body, HasSubstr("\"body_length\":0")) << p;

        auto sized = get(p + "size/300000");
        ASSERT_EQ(sized.status, 200) << p;
        EXPECT_EQ(sized.header("Content-Length"), "300000") << p;
        ASSERT_EQ(sized.body.size(), 300000u) << p;
        EXPECT_EQ(sized.body.substr(0, 26), "abcdefghijklmnopqrstuvwxyz");
        EXPECT_EQ(sized.body[299999], "abcdefghijklmnopqrstuvwxyz"[299999 % 26]);

        auto streamed = get(p + "stream/200000?chunk=5000&delay=1");
        ASSERT_EQ(streamed.status, 200) << p;
        EXPECT_EQ(streamed.header("Transfer-Encoding"), "chunked") << p;
        EXPECT_EQ(streamed.body.size(), 200000u) << p;

        // An HTTP/1.0 client gets the same body, ended by the close.
        auto old = request("GET " + p + "chunked HTTP/1.0\r\n\r\n");
        ASSERT_EQ(old.status, 200) << p;
        EXPECT_FALSE(old.has("Transfer-Encoding"));
        EXPECT_EQ(seen_uri(old), "/chunked") << p;
    }
}

TEST_F(ProxyTest, HeadPipeliningAndExpectContinueOnOneConnection) {
    Conn c(port_);
    const std::string body = patterned_body(20000);
    // A chunked body in small chunks, then a request right behind it.
    ASSERT_TRUE(c.send("HEAD /size/100 HTTP/1.1\r\nHost: t\r\n\r\n" +
                       post_chunked("/stream-body/x", body, 333, false) + "GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto head = c.read_head_response();
    ASSERT_TRUE(head) << c.error();
    EXPECT_EQ(head->status, 200);
    EXPECT_EQ(head->header("Content-Length"), "100");
    EXPECT_TRUE(head->body.empty());
    auto posted = c.read_response();
    ASSERT_TRUE(posted) << c.error();
    expect_body_arrived(*posted, body, "pipelined chunked POST");
    auto empty = c.read_response();
    ASSERT_TRUE(empty) << c.error();
    EXPECT_EQ(empty->status, 204);
    EXPECT_TRUE(empty->body.empty());
    // Expect: 100-continue: the client sends its body only after the 100.
    Conn e(port_);
    ASSERT_TRUE(e.send("POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
    std::string got;
    ASSERT_TRUE(read_until(e.fd(), got, "\r\n\r\n")) << got;
    EXPECT_THAT(got, HasSubstr("100 Continue"));
    ASSERT_TRUE(e.send("hello"));
    auto answered = e.read_response();
    ASSERT_TRUE(answered) << e.error();
    expect_body_arrived(*answered, "hello", "after 100-continue");
    EXPECT_EQ(seen_header(*answered, "expect"), "<none>");
}

TEST_F(ProxyTest, ProxyHttpVersion) {
    auto v10 = get("/x");
    EXPECT_EQ(json_string(v10.body, "version"), "HTTP/1.0");
    EXPECT_EQ(seen_header(v10, "connection"), "close");
    auto v11 = get("/v11/x");
    EXPECT_EQ(json_string(v11.body, "version"), "HTTP/1.1");
    EXPECT_EQ(seen_header(v11, "connection"), "<none>");
    // An HTTP/1.0 origin's until-close body reaches an HTTP/1.1 client chunked.
    auto chunked = get("/chunked", "Connection: keep-alive\r\n");
    EXPECT_EQ(chunked.status, 200);
    EXPECT_EQ(seen_uri(chunked), "/chunked");
}

TEST_F(ProxyTest, KeepAliveUpstreamConnectionsAreReused) {
    Conn c(port_);
    std::string first;
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(c.send("GET /reuse/x HTTP/1.1\r\nHost: t\r\n\r\n"));
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        if (i == 0) first = r->header("X-Connection");
        EXPECT_EQ(r->header("X-Connection"), first) << i;
    }
}

// ---- failures --------------------------------------------------------------------------------

TEST_F(ProxyTest, RefusedIs502AndReadTimeoutIs504) {
    EXPECT_EQ(get("/dead/x").status, 502);
    EXPECT_EQ(get("/slow/delay/3000").status, 504);
    EXPECT_EQ(get("/slow/delay/0").status, 200);
    auto pretty502 = get("/pretty-dead/x");
    EXPECT_EQ(pretty502.status, 502);
    EXPECT_EQ(pretty502.body, "custom gateway page\n");
    auto pretty504 = get("/pretty-slow/delay/3000");
    EXPECT_EQ(pretty504.status, 504);
    EXPECT_EQ(pretty504.body, "custom gateway page\n");
}

// An upstream's 400 or 413 is the upstream's answer, not a sign that the
// client's request stream is out of step: the client connection stays open
// (nginx closes only after errors it generates itself).
TEST_F(ProxyTest, RelayedErrorStatusesKeepTheClientConnectionAlive) {
    Conn c(port_);
    for (int status : {400, 408, 413, 414, 417, 431, 501, 505}) {
        SCOPED_TRACE(status);
        ASSERT_TRUE(c.send("GET /status/" + std::to_string(status) + " HTTP/1.1\r\nHost: t\r\n\r\n"));
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, status);
        EXPECT_EQ(r->header("X-Upstream-Id"), "one");
        EXPECT_TRUE(r->keep_alive()) << *r;
    }
    // A body the upstream refused with 413 before reading it: the core
    // discards the rest and the connection goes on.
    std::string body(1000, 'b');
    ASSERT_TRUE(c.send("POST /status/413 HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + body));
    auto posted = c.read_response();
    ASSERT_TRUE(posted) << c.error();
    EXPECT_EQ(posted->status, 413);
    EXPECT_TRUE(posted->keep_alive()) << *posted;
    ASSERT_TRUE(c.send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto after = c.read_response();
    ASSERT_TRUE(after) << c.error();
    EXPECT_EQ(after->status, 200);
    EXPECT_EQ(seen_uri(*after), "/after");
    // The gateway's own 400 (a request it refused) still closes.
    ASSERT_TRUE(c.send("GET /a%2Fb HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto bad = c.read_response();
    ASSERT_TRUE(bad) << c.error();
    EXPECT_EQ(bad->status, 400);
    EXPECT_FALSE(bad->keep_alive()) << *bad;
    EXPECT_TRUE(c.is_closed(5s));
}

// The X-Connection of a good response on the dedicated "reuse" origin.
std::string reuse_connection(uint16_t port) {
    auto r = http_get(port, "/reuse/x");
    return r && r->status == 200 ? r->header("X-Connection") : "<failed>";
}

TEST_F(ProxyTest, MalformedUpstreamHeadsAre502AndNotReused) {
    for (const char* name : {"status-line", "cl-te", "big-header", "two-cl", "gzip-chunked"}) {
        std::string before = reuse_connection(port_);
        ASSERT_EQ(reuse_connection(port_), before) << name << ": the pool keeps the connection";
        auto r = get(std::string("/reuse/bad/") + name);
        EXPECT_EQ(r.status, 502) << name << "\n" << r;
        std::string after = reuse_connection(port_);
        EXPECT_NE(after, "<failed>") << name;
        EXPECT_NE(after, before) << name << ": the connection that carried the bad response was reused";
    }
}

TEST_F(ProxyTest, MalformedUpstreamBodiesCloseTheClientConnection) {
    // The head went to the client before the body turned bad: the response
    // can only be cut short, as nginx does.
    for (const char* name : {"bad-chunk", "truncated"}) {
        std::string before = reuse_connection(port_);
        Conn c(port_);
        ASSERT_TRUE(c.send(std::string("GET /reuse/bad/") + name + " HTTP/1.1\r\nHost: t\r\n\r\n"));
        std::string got = c.read_all_until_close(5s);
        EXPECT_TRUE(c.peer_closed()) << name;
        EXPECT_THAT(got, HasSubstr("HTTP/1.1 200")) << name;
        EXPECT_THAT(got, Not(HasSubstr("\r\n0\r\n\r\n"))) << name << ": a truncated body must not look complete";
        std::string after = reuse_connection(port_);
        EXPECT_NE(after, "<failed>") << name;
        EXPECT_NE(after, before) << name;
    }
    // More bytes than Content-Length: the response is what the length says,
    // and the connection with the surplus is not reused.
    std::string before = reuse_connection(port_);
    auto extra = get("/reuse/bad/extra");
    EXPECT_EQ(extra.status, 200);
    EXPECT_EQ(extra.body, "hello");
    std::string after = reuse_connection(port_);
    EXPECT_NE(after, before);
}

// ---- WebSocket ---------------------------------------------------------------------------

std::string upgrade_request(std::string_view path) {
    return "GET " + std::string(path) +
           " HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

TEST_F(ProxyTest, WebSocketUpgradeTunnelsBytesBothWays) {
    Fd s(connect_to(port_));
    ASSERT_GE(s.fd, 0);
    ASSERT_TRUE(write_all(s.fd, upgrade_request("/ws")));
    std::string in;
    ASSERT_TRUE(read_until(s.fd, in, "\r\n\r\n")) << in;
    EXPECT_THAT(in, HasSubstr("HTTP/1.1 101")) << in;
    EXPECT_THAT(in, HasSubstr("Upgrade: websocket")) << in;
    EXPECT_THAT(in, HasSubstr("Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==")) << in;
    in.erase(0, in.find("\r\n\r\n") + 4);
    // A masked text frame, then a bigger binary one: the byte echo returns them as sent.
    const std::string frame("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    ASSERT_TRUE(write_all(s.fd, frame));
    ASSERT_TRUE(read_until(s.fd, in, frame)) << in.size();
    EXPECT_EQ(in, frame);
    in.clear();
    std::string big = patterned_body(200 * 1024);
    std::thread writer([&] { write_all(s.fd, big); });
    bool echoed = read_until(s.fd, in, big.substr(big.size() - 64), 10s);
    writer.join();
    ASSERT_TRUE(echoed) << in.size();
    EXPECT_EQ(in.size(), big.size());
    EXPECT_TRUE(in == big);
    // proxy_read_timeout 1s: an idle tunnel is closed.
    EXPECT_TRUE(closed_within(s.fd, 6s));
}

// The 101 is the gateway's response like any other: its Server and Date
// (the upstream's are hidden, as on every proxied response).
TEST_F(ProxyTest, SwitchingProtocolsCarriesTheGatewaysServerAndDate) {
    Fd s(connect_to(port_));
    ASSERT_GE(s.fd, 0);
    ASSERT_TRUE(write_all(s.fd, upgrade_request("/ws")));
    std::string in;
    ASSERT_TRUE(read_until(s.fd, in, "\r\n\r\n")) << in;
    std::string head = in.substr(0, in.find("\r\n\r\n") + 2);
    EXPECT_THAT(head, HasSubstr("HTTP/1.1 101")) << head;
    EXPECT_TRUE(std::regex_search(head, std::regex("\r\nServer: sluice(/[0-9.]+)?\r\n"))) << head;
    EXPECT_TRUE(std::regex_search(head, std::regex("\r\nDate: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
                                                   "[0-9]{2}:[0-9]{2}:[0-9]{2} GMT\r\n")))
        << head;
    EXPECT_EQ(std::count(head.begin(), head.end(), '\n'), std::count(head.begin(), head.end(), '\r'));
    size_t servers = 0, dates = 0;
    for (size_t at = 0; (at = head.find("\r\nServer:", at)) != std::string::npos; ++at) ++servers;
    for (size_t at = 0; (at = head.find("\r\nDate:", at)) != std::string::npos; ++at) ++dates;
    EXPECT_EQ(servers, 1u) << head;
    EXPECT_EQ(dates, 1u) << head;
}

TEST_F(ProxyTest, WebSocketTunnelClosesWhenTheClientCloses) {
    Fd s(connect_to(port_));
    ASSERT_TRUE(write_all(s.fd, upgrade_request("/ws") + "early"));
    std::string in;
    ASSERT_TRUE(read_until(s.fd, in, "early")) << in;  // bytes sent with the request are tunneled too
    EXPECT_THAT(in, HasSubstr("HTTP/1.1 101"));
    ::shutdown(s.fd, SHUT_WR);
    EXPECT_TRUE(closed_within(s.fd, 5s));
}

TEST_F(ProxyTest, UpgradeToALocationNotConfiguredForItIsNotUpgraded) {
    Conn c(port_);
    ASSERT_TRUE(c.send(upgrade_request("/plain/ws")));
    auto r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_NE(r->status, 101);
    EXPECT_EQ(r->status, 400);  // the origin's answer to a /ws without Upgrade
    EXPECT_EQ(seen_header(*r, "upgrade"), "<none>");
    EXPECT_FALSE(r->has("Upgrade"));
}

// ---- $upstream_* in the access log --------------------------------------------------------

// The access log line for `request_uri`, waiting for it to be written.
std::string log_line(const Daemon& d, std::string_view request_uri) {
    std::string found;
    wait_until(
        [&] {
            std::string log = d.dir().read("logs/upstream.log");
            size_t at = log.find(std::string(request_uri) + "|");
            if (at == std::string::npos || (at > 0 && log[at - 1] != '\n')) return false;
            found = log.substr(at, log.find('\n', at) - at);
            return true;
        },
        5s);
    return found;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (;;) {
        size_t at = s.find(sep, start);
        out.push_back(s.substr(start, at - start));
        if (at == std::string::npos) return out;
        start = at + 1;
    }
}

TEST_F(ProxyTest, UpstreamVariablesInTheAccessLog) {
    auto r = get("/log-ok?n=1");
    ASSERT_EQ(r.status, 200);
    auto f = split(log_line(*daemon_, "/log-ok?n=1"), '|');
    ASSERT_EQ(f.size(), 8u);
    EXPECT_EQ(f[1], "127.0.0.1:" + std::to_string(up1_->port()));
    EXPECT_EQ(f[2], "200");
    const std::regex seconds(R"(\d+\.\d{3})");
    EXPECT_TRUE(std::regex_match(f[3], seconds)) << f[3];
    EXPECT_TRUE(std::regex_match(f[4], seconds)) << f[4];
    EXPECT_TRUE(std::regex_match(f[5], seconds)) << f[5];
    // Head and body: more than the body alone.
    EXPECT_GT(std::stoull(f[6]), r.body.size()) << f[6];
    EXPECT_EQ(f[7], "be");

    ASSERT_EQ(get("/dead/log-fail").status, 502);
    auto d = split(log_line(*daemon_, "/dead/log-fail"), '|');
    ASSERT_EQ(d.size(), 8u);
    EXPECT_EQ(d[1], "127.0.0.1:" + std::to_string(dead_port_));
    EXPECT_EQ(d[2], "502");
    EXPECT_EQ(d[4], "-");  // never connected
    EXPECT_EQ(d[5], "-");
    EXPECT_EQ(d[6], "0");
    EXPECT_EQ(d[7], "dead");

    ASSERT_EQ(get("/slow/delay/3000?log").status, 504);
    auto t = split(log_line(*daemon_, "/slow/delay/3000?log"), '|');
    ASSERT_EQ(t.size(), 8u);
    EXPECT_EQ(t[2], "504");
    EXPECT_TRUE(std::regex_match(t[4], seconds)) << t[4];
    EXPECT_EQ(t[5], "-");
}

// ---- a 1 GiB body both ways, memory bounded -------------------------------------------------------

constexpr std::string_view kBigConfig = R"(
events { worker_connections 64; }
http {
    access_log off;
    client_max_body_size 0;
    upstream big { server 127.0.0.1:{{UP}}; }
    server {
        listen 127.0.0.1:{{PORT}};
        location / {
            proxy_http_version 1.1;
            proxy_request_buffering off;
            proxy_read_timeout 30s;
            proxy_send_timeout 30s;
            proxy_pass http://big;
        }
        location /unbuffered/ {
            proxy_buffering off;
            proxy_read_timeout 30s;
            proxy_pass http://big/;
        }
    }
}
)";

uint64_t big_body_bytes() {
    if (const char* env = getenv("SLUICE_TEST_BIG_BYTES")) return std::strtoull(env, nullptr, 10);
#if defined(__SANITIZE_ADDRESS__)
    return uint64_t(256) << 20;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return uint64_t(256) << 20;
#endif
#endif
    return uint64_t(1) << 30;
}

// kB of a "VmRSS:" style line of /proc/PID/status, or 0.
uint64_t proc_status_kb(pid_t pid, std::string_view field) {
    std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
    size_t at = status.find(std::string(field) + ":");
    if (at == std::string::npos) return 0;
    return std::strtoull(status.c_str() + at + field.size() + 1, nullptr, 10);
}

// A period that is no power of two, so a misplaced piece cannot line up.
constexpr size_t kPatternPeriod = 65521;

class PatternSource {
public:
    // Two periods back to back: any window of up to one period is contiguous.
    PatternSource() : pattern_(patterned_body(kPatternPeriod) + patterned_body(kPatternPeriod)) {}
    // `len` bytes of the endless pattern from position `pos`.
    std::string_view at(uint64_t pos, size_t len) const {
        return std::string_view(pattern_).substr(size_t(pos % kPatternPeriod), std::min(len, kPatternPeriod));
    }

private:
    std::string pattern_;
};

// Decodes a chunked body incrementally and checks it against the pattern.
class ChunkedChecker {
public:
    explicit ChunkedChecker(const PatternSource& source) : source_(source) {}
    // False on a framing or content error.
    bool feed(const char* p, size_t n) {
        pending_.append(p, n);
        size_t at = 0;
        for (;;) {
            if (chunk_left_ > 0) {
                size_t take = size_t(std::min<uint64_t>(chunk_left_, pending_.size() - at));
                if (take == 0) break;
                if (!matches(pending_.data() + at, take)) return false;
                at += take;
                chunk_left_ -= take;
                if (chunk_left_ == 0) expect_crlf_ = true;
                continue;
            }
            size_t eol = pending_.find("\r\n", at);
            if (eol == std::string::npos) break;
            std::string line = pending_.substr(at, eol - at);
            at = eol + 2;
            if (expect_crlf_) {
                if (!line.empty()) return false;
                expect_crlf_ = false;
                continue;
            }
            if (done_) continue;  // trailer section
            chunk_left_ = std::strtoull(line.c_str(), nullptr, 16);
            if (chunk_left_ == 0) done_ = true;
        }
        pending_.erase(0, at);
        return true;
    }
    bool done() const { return done_; }
    uint64_t received() const { return received_; }

private:
    bool matches(const char* p, size_t n) {
        while (n > 0) {
            std::string_view expect = source_.at(received_, n);
            if (memcmp(p, expect.data(), expect.size()) != 0) return false;
            p += expect.size();
            n -= expect.size();
            received_ += expect.size();
        }
        return true;
    }

    const PatternSource& source_;
    std::string pending_;
    uint64_t chunk_left_ = 0;
    uint64_t received_ = 0;
    bool expect_crlf_ = false;
    bool done_ = false;
};

class BigBodyTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(upstream_.start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kBigConfig),
                                           ConfigVars{{"UP", upstream_.port()}});
        ASSERT_TRUE(daemon_->start());
        ASSERT_TRUE(wait_until([&] { return daemon_->worker_pids().size() == 1; }, 5s));
        worker_ = daemon_->worker_pids()[0];
        // Warm up: the first requests allocate the pools the worker keeps.
        ASSERT_EQ(http_get(daemon_->port(), "/size/100000")->status, 200);
        rss_start_kb_ = proc_status_kb(worker_, "VmRSS");
        ASSERT_GT(rss_start_kb_, 0u);
    }

    // Samples the worker's RSS until `done`; the peak seen.
    void sample_rss_while(const std::atomic<bool>& done) {
        while (!done) {
            peak_kb_ = std::max(peak_kb_, proc_status_kb(worker_, "VmRSS"));
            std::this_thread::sleep_for(50ms);
        }
    }

    void expect_memory_bounded(const char* what) {
        constexpr uint64_t kMaxGrowthKb = 64 * 1024;
        uint64_t hwm = proc_status_kb(worker_, "VmHWM");
        EXPECT_LT(peak_kb_, rss_start_kb_ + kMaxGrowthKb) << what << ": RSS grew from " << rss_start_kb_ << " kB";
        EXPECT_LT(hwm, rss_start_kb_ + kMaxGrowthKb) << what << ": VmHWM " << hwm << " kB, start " << rss_start_kb_;
    }

    UpstreamProcess upstream_;
    std::unique_ptr<Daemon> daemon_;
    pid_t worker_ = 0;
    uint64_t rss_start_kb_ = 0;
    uint64_t peak_kb_ = 0;
};

// The request body as it goes on the wire from `sent` on: raw, or as one chunk
// per piece (and the last-chunk after the final piece).
std::string frame_piece(std::string_view piece, bool chunked, bool last) {
    if (!chunked) return std::string(piece);
    char line[32];
    snprintf(line, sizeof line, "%zx\r\n", piece.size());
    return line + std::string(piece) + "\r\n" + (last ? "0\r\n\r\n" : "");
}

// POSTs `size` pattern bytes to /echo-body while reading the echo from
// another thread, and checks every byte that comes back.
void upload_and_check_echo(uint16_t port, uint64_t size, bool chunked) {
    const PatternSource source;
    Fd s(connect_to(port));
    ASSERT_GE(s.fd, 0);
    std::string framing = chunked ? "Transfer-Encoding: chunked" : "Content-Length: " + std::to_string(size);
    ASSERT_TRUE(write_all(s.fd, "POST /echo-body HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + framing + "\r\n\r\n"));

    std::atomic<bool> wrote_all{false};
    std::thread writer([&] {
        uint64_t sent = 0;
        while (sent < size) {
            std::string_view piece = source.at(sent, size_t(std::min<uint64_t>(size - sent, kPatternPeriod)));
            if (!write_all(s.fd, frame_piece(piece, chunked, sent + piece.size() == size), 20s)) return;
            sent += piece.size();
        }
        wrote_all = true;
    });

    std::string in;
    bool got_head = read_until(s.fd, in, "\r\n\r\n", 20s);
    ChunkedChecker checker(source);
    bool content_ok = true;
    if (got_head) {
        EXPECT_THAT(in.substr(0, in.find("\r\n")), HasSubstr("200"));
        std::string rest = in.substr(in.find("\r\n\r\n") + 4);
        content_ok = checker.feed(rest.data(), rest.size());
        std::vector<char> buf(256 * 1024);
        while (content_ok && !checker.done()) {
            if (!wait_fd(s.fd, POLLIN, 20s)) break;
            ssize_t n = ::recv(s.fd, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            content_ok = checker.feed(buf.data(), size_t(n));
        }
    }
    if (!checker.done()) ::shutdown(s.fd, SHUT_RDWR);  // unblock the writer
    writer.join();
    ASSERT_TRUE(got_head) << in;
    EXPECT_TRUE(wrote_all);
    EXPECT_TRUE(content_ok) << "echo differs at byte " << checker.received();
    EXPECT_TRUE(checker.done()) << "echo ended after " << checker.received() << " of " << size;
    EXPECT_EQ(checker.received(), size);
}

// The upstream answers with its head at once and echoes the body as it
// comes: the gateway must keep sending the request while it relays the
// response (full duplex), with backpressure both ways.
TEST_F(BigBodyTest, EchoedUploadStreamsBothWaysWithBoundedMemory) {
    std::atomic<bool> done{false};
    std::thread sampler([&] { sample_rss_while(done); });
    upload_and_check_echo(daemon_->port(), big_body_bytes(), false);
    done = true;
    sampler.join();
    expect_memory_bounded("upload and echo");
}

// A chunked body that pauses midway (the upstream socket is full) resumes
// where it stopped: no piece of the client's read is lost or reordered.
TEST_F(BigBodyTest, ChunkedUploadWithBackpressureArrivesIntact) {
    upload_and_check_echo(daemon_->port(), std::min<uint64_t>(big_body_bytes() / 8, 64u << 20), true);
}

TEST_F(BigBodyTest, DownloadWithAndWithoutBufferingKeepsMemoryBounded) {
    const uint64_t size = big_body_bytes();
    std::atomic<bool> done{false};
    std::thread sampler([&] { sample_rss_while(done); });
    for (const char* prefix : {"/", "/unbuffered/"}) {
        Fd s(connect_to(daemon_->port()));
        ASSERT_GE(s.fd, 0);
        ASSERT_TRUE(write_all(s.fd, std::string("GET ") + prefix + "size/" + std::to_string(size) +
                                        " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
        std::string in;
        ASSERT_TRUE(read_until(s.fd, in, "\r\n\r\n", 20s));
        EXPECT_THAT(in, HasSubstr("Content-Length: " + std::to_string(size))) << prefix;
        uint64_t body = in.size() - (in.find("\r\n\r\n") + 4);
        uint64_t last_byte_index = 0;
        char last = 0;
        std::vector<char> buf(256 * 1024);
        while (body < size) {
            if (!wait_fd(s.fd, POLLIN, 20s)) break;
            ssize_t n = ::recv(s.fd, buf.data(), buf.size(), 0);
            if (n <= 0) break;
            body += uint64_t(n);
            last = buf[size_t(n) - 1];
            last_byte_index = body - 1;
        }
        EXPECT_EQ(body, size) << prefix;
        EXPECT_EQ(last, "abcdefghijklmnopqrstuvwxyz"[last_byte_index % 26]) << prefix;
    }
    done = true;
    sampler.join();
    expect_memory_bounded("download");
}

// ---- the client going away while the upstream works --------------------------------------------

constexpr std::string_view kAbortConfig = R"(
events { worker_connections 64; }
http {
    log_format status '$request_uri $status';
    access_log {{PREFIX}}/logs/access.log status;
    upstream be { server 127.0.0.1:{{UP}}; keepalive 4; }
    server {
        listen 127.0.0.1:{{PORT}};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / { proxy_pass http://be; }
        location /ignore/ { proxy_ignore_client_abort on; proxy_pass http://be/; }
    }
}
)";

class ProxyClientAbortTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(up_.start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kAbortConfig),
                                           ConfigVars{{"UP", up_.port()}});
        ASSERT_TRUE(daemon_->start());
        gateway_connections();  // the baseline
    }

    // Connections the origin accepted from the gateway since SetUp (its
    // /stats counts the test's own queries too).
    uint64_t gateway_connections() {
        auto r = http_get(up_.port(), "/stats");
        ++queries_;
        std::string n = r ? json_number(r->body, "connections") : "<none>";
        if (n == "<none>" || n.empty()) return 0;
        uint64_t raw = std::stoull(n);
        if (queries_ == 1) baseline_ = raw;
        return raw - baseline_ - (queries_ - 1);
    }

    // The access log line of `uri` ("URI STATUS"), waiting for it.
    std::string logged(std::string_view uri, Millis timeout = 10s) {
        std::string line;
        wait_until(
            [&] {
                std::string log = daemon_->dir().read("logs/access.log");
                size_t at = log.find(std::string(uri) + " ");
                if (at == std::string::npos) return false;
                line = log.substr(at, log.find('\n', at) - at);
                return true;
            },
            timeout);
        return line;
    }

    UpstreamProcess up_{std::vector<std::string>{"--id", "abort"}};
    std::unique_ptr<Daemon> daemon_;
    uint64_t baseline_ = 0, queries_ = 0;
};

// nginx notices a client that closes while the upstream works (EOF on its
// socket once the request is read): 499, the upstream connection closed,
// the request freed, so a graceful stop does not wait for the upstream.
TEST_F(ProxyClientAbortTest, ClientClosingWhileWaitingIs499AndFreesTheRequest) {
    const std::string get = "GET /delay/30000?get HTTP/1.1\r\nHost: t\r\n\r\n";
    const std::string post = "POST /delay/30000?post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    uint64_t expected = 0;
    for (const std::string& request : {get, post}) {
        Conn c(daemon_->port());
        ASSERT_TRUE(c.send(request));
        ++expected;
        ASSERT_TRUE(wait_until([&] { return gateway_connections() >= expected; }, 5s)) << "the request never went upstream";
        c.close();
    }
    EXPECT_EQ(logged("/delay/30000?get"), "/delay/30000?get 499");
    EXPECT_EQ(logged("/delay/30000?post"), "/delay/30000?post 499");
    EXPECT_TRUE(daemon_->wait_for_log("client prematurely closed connection, so upstream connection is closed too"));
    // Nothing is left in flight: a graceful stop is immediate, not 30 s away.
    ASSERT_TRUE(daemon_->signal(SIGQUIT));
    EXPECT_TRUE(daemon_->wait_exit(10s)) << "the worker still waits for the abandoned upstream requests";
}

// A readable client socket is not a closed one: a pipelined request waits.
TEST_F(ProxyClientAbortTest, PipelinedRequestIsNotAnAbort) {
    Conn c(daemon_->port());
    ASSERT_TRUE(c.send("GET /delay/300?first HTTP/1.1\r\nHost: t\r\n\r\n"
                       "POST /second HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /third HTTP/1.1\r\nHost: t\r\n\r\n"));
    for (const char* uri : {"/delay/300?first", "/second", "/third"}) {
        auto r = c.read_response(10s);
        ASSERT_TRUE(r) << uri << ": " << c.error();
        EXPECT_EQ(r->status, 200) << uri;
        EXPECT_EQ(seen_uri(*r), uri);
    }
    EXPECT_EQ(logged("/delay/300?first"), "/delay/300?first 200");
}

// proxy_ignore_client_abort on: the upstream request runs to its end.
TEST_F(ProxyClientAbortTest, IgnoreClientAbortLetsTheUpstreamFinish) {
    {
        Conn c(daemon_->port());
        ASSERT_TRUE(c.send("GET /ignore/delay/500 HTTP/1.1\r\nHost: t\r\n\r\n"));
        ASSERT_TRUE(wait_until([&] { return gateway_connections() >= 1; }, 5s));
    }
    EXPECT_EQ(logged("/ignore/delay/500"), "/ignore/delay/500 200");
    EXPECT_FALSE(daemon_->wait_for_log("client prematurely closed connection, so upstream", 100ms));
}

// ---- send and read timeouts in full duplex ----------------------------------------------------

constexpr std::string_view kDuplexConfig = R"(
events { worker_connections 64; }
http {
    client_max_body_size 0;
    server {
        listen 127.0.0.1:{{PORT}};
        proxy_request_buffering off;
        proxy_http_version 1.1;
        location /stalled-upload/ {
            proxy_send_timeout 500ms;
            proxy_read_timeout 30s;
            proxy_pass http://127.0.0.1:{{UPLOAD_ORIGIN}};
        }
        location /stalled-download/ {
            proxy_send_timeout 30s;
            proxy_read_timeout 500ms;
            proxy_pass http://127.0.0.1:{{DOWNLOAD_ORIGIN}};
        }
    }
}
)";

// Reads the request head, answers with a chunked head, then goes on writing
// chunks and never reads the body: the upload stalls, the download flows.
void stream_without_reading(int fd, const std::atomic<bool>& stop) {
    std::string head;
    if (!read_until(fd, head, "\r\n\r\n", 2s)) return;
    if (!write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1s)) return;
    auto end = std::chrono::steady_clock::now() + 15s;
    while (!stop && std::chrono::steady_clock::now() < end) {
        if (!write_all(fd, "5\r\nhello\r\n", 1s)) return;
        std::this_thread::sleep_for(100ms);
    }
}

// Answers with a chunked head and one chunk, then reads the body and never
// writes again: the download stalls, the upload flows.
void read_without_answering(int fd, const std::atomic<bool>& stop) {
    std::string head;
    if (!read_until(fd, head, "\r\n\r\n", 2s)) return;
    if (!write_all(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 1s)) return;
    auto end = std::chrono::steady_clock::now() + 15s;
    char buf[65536];
    while (!stop && std::chrono::steady_clock::now() < end) {
        if (!wait_fd(fd, POLLIN, 100ms)) continue;
        if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
    }
}

// Uploads on `fd` until it fails, `stop`, or 15 s; `pause` between pieces.
void upload(int fd, const std::atomic<bool>& stop, Millis pause) {
    const std::string piece(16384, 'u');
    auto end = std::chrono::steady_clock::now() + 15s;
    while (!stop && std::chrono::steady_clock::now() < end) {
        if (!wait_fd(fd, POLLOUT, 100ms)) continue;
        if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN) return;
        if (pause.count()) std::this_thread::sleep_for(pause);
    }
}

class ProxyDuplexTimeoutTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(upload_origin_.ok());
        ASSERT_TRUE(download_origin_.ok());
        daemon_ = std::make_unique<Daemon>(
            std::string(kMainConfig) + std::string(kDuplexConfig),
            ConfigVars{{"UPLOAD_ORIGIN", upload_origin_.port()}, {"DOWNLOAD_ORIGIN", download_origin_.port()}});
        ASSERT_TRUE(daemon_->start());
    }

    // Starts a streamed POST of 1 GiB on `path`, uploading from a thread,
    // and waits for the response head and first chunk.
    void start(std::string_view path, Millis pause) {
        fd_ = std::make_unique<Fd>(connect_to(daemon_->port()));
        ASSERT_GE(fd_->fd, 0);
        ASSERT_TRUE(write_all(fd_->fd, "POST " + std::string(path) +
                                           " HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n"));
        uploader_ = std::thread([this, pause] { upload(fd_->fd, stop_, pause); });
        std::string in;
        ASSERT_TRUE(read_until(fd_->fd, in, "hello", 5s)) << in;
        EXPECT_THAT(in, HasSubstr("HTTP/1.1 200")) << in;
    }

    void TearDown() override {
        stop_ = true;
        if (uploader_.joinable()) uploader_.join();
    }

    ScriptedOrigin upload_origin_{stream_without_reading};
    ScriptedOrigin download_origin_{read_without_answering};
    std::unique_ptr<Daemon> daemon_;
    std::unique_ptr<Fd> fd_;
    std::atomic<bool> stop_{false};
    std::thread uploader_;
};

// The response keeps flowing, the request body does not: proxy_send_timeout,
// whatever the reads do to proxy_read_timeout.
TEST_F(ProxyDuplexTimeoutTest, StalledUploadTimesOutWhileTheDownloadFlows) {
    start("/stalled-upload/", 0ms);
    EXPECT_TRUE(daemon_->wait_for_log("upstream timed out (110: Connection timed out) while sending request to upstream", 8s));
    // The head went out: only closing tells the client.
    EXPECT_TRUE(closed_within(fd_->fd, 5s));
}

// The request body keeps flowing, the response does not: proxy_read_timeout,
// whatever the body's progress.
TEST_F(ProxyDuplexTimeoutTest, StalledDownloadTimesOutWhileTheUploadFlows) {
    start("/stalled-download/", 20ms);
    EXPECT_TRUE(daemon_->wait_for_log("upstream timed out (110: Connection timed out) while reading upstream", 8s));
    EXPECT_TRUE(closed_within(fd_->fd, 5s));
}

// ---- the body temp directory's compiled-in default --------------------------------------------

// The value of `#define NAME "..."` in a generated header, or "<none>".
std::string define_value(const std::string& header, std::string_view name) {
    std::string needle = "#define " + std::string(name) + " \"";
    size_t at = header.find(needle);
    if (at == std::string::npos) return "<none>";
    at += needle.size();
    return header.substr(at, header.find('"', at) - at);
}

// configure --http-client-body-temp-path, as nginx's: the default of
// client_body_temp_path, relative to the prefix when under it, in the FHS
// layout /var/lib/sluice/body, and in Makefile.vars for `make install`.
TEST(ProxyConfigure, ClientBodyTempPathIsAConfigureOption) {
    TempDir dir("sluice-configure");
    struct Case {
        std::vector<std::string> args;
        std::string header_value, make_value;
    };
    const Case cases[] = {
        {{"--prefix=/opt/gw"}, "client_body_temp", "/opt/gw/client_body_temp"},
        {{"--prefix=/usr"}, "/var/lib/sluice/body", "/var/lib/sluice/body"},
        {{"--prefix=/opt/gw", "--http-client-body-temp-path=/opt/gw/tmp/body"}, "tmp/body", "/opt/gw/tmp/body"},
        {{"--prefix=/opt/gw", "--http-client-body-temp-path=/srv/body"}, "/srv/body", "/srv/body"},
    };
    int n = 0;
    for (const Case& c : cases) {
        std::string builddir = dir.path("b" + std::to_string(n++));
        std::vector<std::string> argv = {"sh", "./configure", "--builddir=" + builddir};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        CommandResult r = run_command(argv, 60s);
        SCOPED_TRACE(c.args.back());
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(define_value(read_file(builddir + "/sluice_paths.h"), "SLUICE_HTTP_CLIENT_BODY_TEMP_PATH"),
                  c.header_value);
        EXPECT_THAT(read_file(builddir + "/Makefile.vars"), HasSubstr("HTTP_CLIENT_BODY_TEMP_PATH = " + c.make_value + "\n"));
    }
}

}  // namespace
}  // namespace sluice::test
