// proxy_pass https://: TLS from the gateway to its upstreams, against
// t/lib/test_upstream.cc serving HTTPS with certificates of the test PKI
// (t/lib/test_pki.h, made with the `openssl` command line). test_upstream's --log says, per connection, the SNI
// it received, whether the session was resumed, the protocol and the client
// certificate's CN, so the tests assert on what the backend saw:
// verification (success; a wrong CA, a wrong name, an expired certificate
// are 502 and the next server is tried), SNI per proxy_ssl_server_name and
// proxy_ssl_name, mTLS to the backend, protocol limits, kept-alive TLS
// connections serving many requests, session resumption across connections,
// a backend closing a pooled connection, large bodies both ways, chunked
// responses, WebSocket tunnels, the handshake timeout, and config errors.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"
#include "test_pki.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

// ---- the test PKI (t/lib/test_pki.h) ------------------------------------------------------

// Certificates by role: "backend" for backend.test and 127.0.0.1, "untrusted"
// signed by the CA nobody trusts, "wrong-name" for elsewhere.test, "expired"
// (2020) for backend.test, and "gateway", the client certificate (CN=gateway).
class Pki {
public:
    Pki() {
        try {
            pki_ = std::make_unique<TestPki>();
            pairs_["backend"] = pki_->server("backend", {"backend.test", "127.0.0.1"});
            pairs_["untrusted"] = pki_->client("backend.test", false);
            pairs_["wrong-name"] = pki_->server("wrong-name", {"elsewhere.test"});
            pairs_["expired"] = pki_->expired_server("expired", {"backend.test", "127.0.0.1"});
            pairs_["gateway"] = pki_->client("gateway");
        } catch (const std::exception& e) {
            error_ = e.what();
        }
    }
    std::string ca() const { return pki_ ? pki_->ca_cert() : ""; }
    std::string cert(const std::string& name) const { return pairs_.at(name).cert; }
    std::string key(const std::string& name) const { return pairs_.at(name).key; }
    const std::string& error() const { return error_; }

private:
    std::unique_ptr<TestPki> pki_;
    std::map<std::string, CertPair> pairs_;
    std::string error_;
};

const Pki& pki() {
    static const Pki instance;
    return instance;
}

// ---- helpers ---------------------------------------------------------------------------

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
constexpr uint64_t kFnvPrime = 0x100000001b3ull;

std::string fnv1a_hex(std::string_view data) {
    uint64_t h = kFnvOffset;
    for (unsigned char c : data) h = (h ^ c) * kFnvPrime;
    char out[17];
    snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
    return out;
}

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

// An HTTPS test_upstream with a --log file.
class TlsUpstream {
public:
    TlsUpstream(const std::string& cert_name, std::vector<std::string> extra = {})
        : log_dir_("sluice-tls-upstream") {
        std::vector<std::string> options = {"--tls", pki().cert(cert_name), pki().key(cert_name), "--log",
                                            log_dir_.path("requests.log")};
        options.insert(options.end(), extra.begin(), extra.end());
        process_ = std::make_unique<UpstreamProcess>(options);
    }
    ::testing::AssertionResult start() { return process_->start(); }
    void stop() { process_->stop(); }
    uint16_t port() const { return process_->port(); }
    std::string log() const { return log_dir_.read("requests.log"); }
    // The "C TLS ..." lines: one per handshake that completed.
    std::vector<std::string> handshakes() const { return lines_with(" TLS sni="); }
    std::vector<std::string> requests() const { return lines_with(" REQ "); }
    std::vector<std::string> lines_with(std::string_view needle) const {
        std::vector<std::string> out;
        std::string text = log();
        size_t at = 0;
        while (at < text.size()) {
            size_t end = text.find('\n', at);
            if (end == std::string::npos) end = text.size();
            std::string line = text.substr(at, end - at);
            if (line.find(needle) != std::string::npos) out.push_back(line);
            at = end + 1;
        }
        return out;
    }
    bool wait_for(std::string_view needle, Millis timeout = kDefaultTimeout) const {
        return wait_until([&] { return log().find(needle) != std::string::npos; }, timeout);
    }

private:
    TempDir log_dir_;
    std::unique_ptr<UpstreamProcess> process_;
};

// One worker (the session cache is per worker, as nginx's).
// The connection number a --log line starts with.
std::string connection_of(const std::string& line) { return line.substr(0, line.find(' ')); }

std::string ssl_location(std::string_view directives) {
    return std::string(kMainConfig) +
           "worker_processes 1;\n"
           "events { worker_connections 256; }\n"
           "http {\n"
           "    server {\n"
           "        listen 127.0.0.1:{{PORT}};\n" +
           std::string(directives) +
           "    }\n"
           "}\n";
}

// Verification against the test CA, checking the name backend.test.
constexpr std::string_view kVerify =
    "        proxy_ssl_verify on;\n"
    "        proxy_ssl_trusted_certificate {{CA}};\n"
    "        proxy_ssl_name backend.test;\n";

ConfigVars vars_with(std::initializer_list<std::pair<const std::string, ConfigValue>> more) {
    ConfigVars v{{"CA", pki().ca()}, {"GW_CERT", pki().cert("gateway")}, {"GW_KEY", pki().key("gateway")}};
    for (const auto& [k, val] : more) v.insert_or_assign(k, val);
    return v;
}

class ProxySslTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (run_command({"openssl", "version"}).exit_code != 0) GTEST_SKIP() << "no openssl command";
        ASSERT_EQ(pki().error(), "");
    }
};

// ---- verification ----------------------------------------------------------------------

TEST_F(ProxySslTest, VerifiedUpstreamAnswersThroughTls) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(ssl_location("location / { proxy_pass https://127.0.0.1:{{UP}}; " + std::string(kVerify) + "}\n"),
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto r = http_get(gw.port(), "/hello?x=1");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << gw.error_log();
    EXPECT_THAT(r->body, HasSubstr("\"uri\":\"/hello?x=1\""));
    // The Host header is the proxy_pass host, as for http.
    EXPECT_THAT(r->body, HasSubstr("\"host\":\"127.0.0.1:" + std::to_string(up.port()) + "\""));
    auto hs = up.handshakes();
    ASSERT_EQ(hs.size(), 1u) << up.log();
    EXPECT_THAT(hs[0], HasSubstr("client=-"));  // no client certificate unless configured
}

// Each bad certificate is a handshake failure: logged with the reason, and
// an `error` for proxy_next_upstream, so the next server answers.
TEST_F(ProxySslTest, CertificateFailuresAre502AndTheNextServerIsTried) {
    TlsUpstream good("backend");
    ASSERT_TRUE(good.start());
    struct Case {
        const char* cert;
        const char* reason;
    };
    for (Case c : {Case{"untrusted", "(20:unable to get local issuer certificate)"},
                   Case{"wrong-name", "(62:hostname mismatch)"}, Case{"expired", "(10:certificate has expired)"}}) {
        SCOPED_TRACE(c.cert);
        TlsUpstream bad(c.cert);
        ASSERT_TRUE(bad.start());
        Daemon gw(std::string(kMainConfig) +
                       "worker_processes 1;\n"
                       "events { worker_connections 256; }\n"
                       "http {\n"
                       "    upstream both { server 127.0.0.1:{{BAD}} max_fails=0; server 127.0.0.1:{{GOOD}}; }\n"
                       "    server {\n"
                       "        listen 127.0.0.1:{{PORT}};\n"
                       "        location /only-bad { proxy_pass https://127.0.0.1:{{BAD}}; " +
                       std::string(kVerify) +
                       "}\n"
                       "        location / { proxy_pass https://both; " +
                       std::string(kVerify) +
                       "}\n"
                       "    }\n"
                       "}\n",
                   vars_with({{"BAD", bad.port()}, {"GOOD", good.port()}}));
        ASSERT_TRUE(gw.start());
        auto alone = http_get(gw.port(), "/only-bad");
        ASSERT_TRUE(alone);
        EXPECT_EQ(alone->status, 502);
        EXPECT_THAT(gw.error_log(), HasSubstr(std::string("upstream SSL certificate verify error: ") + c.reason));
        EXPECT_THAT(gw.error_log(), HasSubstr("while SSL handshaking to upstream"));
        // Round robin starts anywhere: every request ends at the good server.
        for (int i = 0; i < 4; ++i) {
            auto r = http_get(gw.port(), "/x");
            ASSERT_TRUE(r);
            EXPECT_EQ(r->status, 200) << gw.error_log();
            EXPECT_EQ(r->header("X-Upstream-Id"), std::to_string(good.port()));
        }
        EXPECT_TRUE(bad.handshakes().empty()) << bad.log();  // no request ever reached it
        EXPECT_TRUE(bad.requests().empty()) << bad.log();
    }
}

// proxy_ssl_verify off (the default, as nginx's): any certificate is accepted.
TEST_F(ProxySslTest, WithoutVerificationAnyCertificateIsAccepted) {
    TlsUpstream up("untrusted");
    ASSERT_TRUE(up.start());
    Daemon gw(ssl_location("location / { proxy_pass https://127.0.0.1:{{UP}}; }\n"), vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto r = http_get(gw.port(), "/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << gw.error_log();
}

// ---- SNI -------------------------------------------------------------------------------

TEST_F(ProxySslTest, SniFollowsServerNameAndSslName) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(std::string(kMainConfig) +
                  "worker_processes 1;\n"
                  "events { worker_connections 256; }\n"
                  "http {\n"
                  "    upstream backend.test { server 127.0.0.1:{{UP}}; }\n"
                  "    server {\n"
                  "        listen 127.0.0.1:{{PORT}};\n"
                  // Off by default: no SNI.
                  "        location /off/ { proxy_pass https://backend.test; }\n"
                  // On: the proxy_pass host (the upstream's name), verified too.
                  "        location /on/ { proxy_pass https://backend.test; proxy_ssl_server_name on;\n"
                  "                        proxy_ssl_verify on; proxy_ssl_trusted_certificate {{CA}}; }\n"
                  // proxy_ssl_name with variables, its port dropped.
                  "        location /named/ { proxy_pass https://backend.test; proxy_ssl_server_name on;\n"
                  "                           proxy_ssl_name $http_x_sni:8443; }\n"
                  // An IP address is never sent as SNI (RFC 6066), and still verified.
                  "        location /ip/ { proxy_pass https://127.0.0.1:{{UP}}; proxy_ssl_server_name on;\n"
                  "                        proxy_ssl_verify on; proxy_ssl_trusted_certificate {{CA}}; }\n"
                  "    }\n"
                  "}\n",
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto expect_sni = [&](const std::string& path, const std::string& extra, const std::string& sni) {
        SCOPED_TRACE(path);
        size_t before = up.handshakes().size();
        auto r = http_get(gw.port(), path, extra);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200) << gw.error_log();
        auto hs = up.handshakes();
        ASSERT_EQ(hs.size(), before + 1) << up.log();
        EXPECT_THAT(hs.back(), HasSubstr(" TLS sni=" + sni + " ")) << hs.back();
    };
    expect_sni("/off/", "", "-");
    expect_sni("/on/", "", "backend.test");
    expect_sni("/named/", "X-Sni: api.internal\r\n", "api.internal");
    expect_sni("/ip/", "", "-");
}

// ---- mTLS to the backend -----------------------------------------------------------------

TEST_F(ProxySslTest, BackendRequiringAClientCertificate) {
    TlsUpstream up("backend", {"--tls-verify-client", pki().ca()});
    ASSERT_TRUE(up.start());
    Daemon gw(ssl_location("location /with { proxy_pass https://127.0.0.1:{{UP}};\n"
                           "    proxy_ssl_certificate {{GW_CERT}}; proxy_ssl_certificate_key {{GW_KEY}}; }\n"
                           "location /without { proxy_pass https://127.0.0.1:{{UP}}; }\n"),
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto with = http_get(gw.port(), "/with");
    ASSERT_TRUE(with);
    EXPECT_EQ(with->status, 200) << gw.error_log();
    auto hs = up.handshakes();
    ASSERT_EQ(hs.size(), 1u) << up.log();
    EXPECT_THAT(hs[0], HasSubstr("client=gateway"));

    auto without = http_get(gw.port(), "/without");
    ASSERT_TRUE(without);
    EXPECT_EQ(without->status, 502);
    EXPECT_TRUE(up.wait_for("TLS-FAIL")) << up.log();
    EXPECT_EQ(up.requests().size(), 1u) << up.log();
    // TLS 1.3 tells the client of the refusal after its handshake ended: the
    // failure shows when the response is read.
    EXPECT_TRUE(wait_until([&] { return gw.error_log().find("(SSL: ") != std::string::npos; }, 5s)) << gw.error_log();
}

// ---- protocols ---------------------------------------------------------------------------

TEST_F(ProxySslTest, ProtocolsLimitWhatIsNegotiated) {
    TlsUpstream up("backend", {"--tls-protocols", "TLSv1.2"});
    ASSERT_TRUE(up.start());
    Daemon gw(ssl_location("location /13 { proxy_pass https://127.0.0.1:{{UP}}; proxy_ssl_protocols TLSv1.3; }\n"
                           "location /12 { proxy_pass https://127.0.0.1:{{UP}}; proxy_ssl_protocols TLSv1.2; }\n"),
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto only13 = http_get(gw.port(), "/13");
    ASSERT_TRUE(only13);
    EXPECT_EQ(only13->status, 502);
    EXPECT_THAT(gw.error_log(), HasSubstr("SSL_do_handshake() failed (SSL: "));
    auto r12 = http_get(gw.port(), "/12");
    ASSERT_TRUE(r12);
    EXPECT_EQ(r12->status, 200) << gw.error_log();
    auto hs = up.handshakes();
    ASSERT_EQ(hs.size(), 1u) << up.log();
    EXPECT_THAT(hs[0], HasSubstr("protocol=TLSv1.2"));
}

// ---- connection reuse --------------------------------------------------------------------

// One worker, and an upstream keeping 4 idle connections per worker.
// `location_extra` goes into `location /`, `server_extra` into the server.
std::string keepalive_config(std::string_view location_extra, std::string_view server_extra = "") {
    return std::string(kMainConfig) +
           "worker_processes 1;\n"
           "events { worker_connections 256; }\n"
           "http {\n"
           "    upstream tls_backend { server 127.0.0.1:{{UP}}; keepalive 4; }\n"
           "    server {\n"
           "        listen 127.0.0.1:{{PORT}};\n"
           "        proxy_http_version 1.1;\n"
           "        proxy_set_header Connection \"\";\n"
           "        location / { proxy_pass https://tls_backend; " +
           std::string(location_extra) +
           "}\n" + std::string(server_extra) +
           "    }\n"
           "}\n";
}

TEST_F(ProxySslTest, OneKeptAliveTlsConnectionServesManyRequests) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(keepalive_config(""), vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    std::vector<std::string> connections;
    for (int i = 0; i < 20; ++i) {
        auto r = http_get(gw.port(), "/n/" + std::to_string(i));
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << gw.error_log();
        connections.push_back(r->header("X-Connection"));
    }
    auto hs = up.handshakes();
    ASSERT_EQ(hs.size(), 1u) << up.log();
    const std::string conn = connection_of(hs[0]);
    for (const std::string& c : connections) EXPECT_EQ(c, conn);
    auto reqs = up.requests();
    ASSERT_EQ(reqs.size(), 20u) << up.log();
    for (const std::string& line : reqs) EXPECT_EQ(connection_of(line), conn) << line;
}

// A pooled connection is only reused for the same TLS settings and name:
// two names on one server make two connections, each reused for its name.
TEST_F(ProxySslTest, PooledConnectionsAreKeptApartByServerName) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(keepalive_config("proxy_ssl_server_name on; proxy_ssl_name $http_x_sni;"), vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    std::map<std::string, std::set<std::string>> connections_of;  // name -> X-Connection values
    for (int i = 0; i < 6; ++i) {
        std::string name = i % 2 ? "a.test" : "b.test";
        auto r = http_get(gw.port(), "/", "X-Sni: " + name + "\r\n");
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << gw.error_log();
        connections_of[name].insert(r->header("X-Connection"));
    }
    auto hs = up.handshakes();
    ASSERT_EQ(hs.size(), 2u) << up.log();
    EXPECT_THAT(hs[0], HasSubstr("sni=b.test"));
    EXPECT_THAT(hs[1], HasSubstr("sni=a.test"));
    EXPECT_EQ(connections_of["b.test"], std::set<std::string>{connection_of(hs[0])});
    EXPECT_EQ(connections_of["a.test"], std::set<std::string>{connection_of(hs[1])});
}

TEST_F(ProxySslTest, SessionsAreResumedOnNewConnections) {
    for (bool reuse : {true, false}) {
        SCOPED_TRACE(reuse ? "proxy_ssl_session_reuse on" : "proxy_ssl_session_reuse off");
        for (const char* protocol : {"TLSv1.2", "TLSv1.3"}) {
            SCOPED_TRACE(protocol);
            TlsUpstream up("backend", {"--tls-protocols", protocol});
            ASSERT_TRUE(up.start());
            // No keepalive: every request is a new connection and a new handshake.
            Daemon gw(ssl_location(std::string("location / { proxy_pass https://127.0.0.1:{{UP}}; ") +
                                   (reuse ? "" : "proxy_ssl_session_reuse off; ") + "}\n"),
                      vars_with({{"UP", up.port()}}));
            ASSERT_TRUE(gw.start());
            // One worker: the cache is per worker, as nginx's.
            for (int i = 0; i < 4; ++i) {
                auto r = http_get(gw.port(), "/");
                ASSERT_TRUE(r);
                ASSERT_EQ(r->status, 200) << gw.error_log();
                ASSERT_TRUE(wait_until([&] { return up.handshakes().size() == size_t(i + 1); }, 5s)) << up.log();
            }
            auto hs = up.handshakes();
            EXPECT_THAT(hs[0], HasSubstr("resumed=0"));
            for (size_t i = 1; i < hs.size(); ++i) EXPECT_THAT(hs[i], HasSubstr(reuse ? "resumed=1" : "resumed=0"));
        }
    }
}

// The backend closes an idle kept-alive connection (close_notify, as its
// keepalive_timeout does), or dies (EOF without close_notify): the next
// request is served on a new connection, and nothing is logged as an error.
TEST_F(ProxySslTest, BackendClosingAPooledConnectionIsNoFailure) {
    TlsUpstream up("backend", {"--keepalive-timeout", "300"});
    ASSERT_TRUE(up.start());
    Daemon gw(keepalive_config(""), vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    auto first = http_get(gw.port(), "/1");
    ASSERT_TRUE(first);
    EXPECT_EQ(first->status, 200);
    const std::string conn = first->header("X-Connection");
    ASSERT_TRUE(up.wait_for("\n" + conn + " IDLE-CLOSE")) << up.log();
    auto second = http_get(gw.port(), "/2");
    ASSERT_TRUE(second);
    EXPECT_EQ(second->status, 200) << gw.error_log();
    EXPECT_NE(second->header("X-Connection"), conn);

    // The backend restarts: the pooled connection sees EOF.
    up.stop();
    ASSERT_TRUE(up.start());
    auto third = http_get(gw.port(), "/3");
    ASSERT_TRUE(third);
    EXPECT_EQ(third->status, 200) << gw.error_log();
    EXPECT_THAT(gw.error_log(), Not(HasSubstr("[error]")));
}

// ---- bodies ------------------------------------------------------------------------------

TEST_F(ProxySslTest, LargeBodiesBothWaysAndChunkedResponses) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(keepalive_config("client_max_body_size 64m;",
                               "        location /streamed/ { proxy_pass https://tls_backend/; proxy_request_buffering off;\n"
                               "                              client_max_body_size 64m; }\n"
                               "        location /in-file/ { proxy_pass https://tls_backend/; client_body_buffer_size 16k;\n"
                               "                             client_max_body_size 64m; }\n"),
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    const std::string body = patterned_body(5 * 1024 * 1024 + 7);
    for (const char* prefix : {"/", "/streamed/", "/in-file/"}) {
        SCOPED_TRACE(prefix);
        Conn c(gw.port(), 30s);
        ASSERT_TRUE(c.send("POST " + std::string(prefix) + "up HTTP/1.1\r\nHost: t\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body,
                           30s));
        auto r = c.read_response(30s);
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 200) << gw.error_log();
        EXPECT_THAT(r->body, HasSubstr("\"body_length\":" + std::to_string(body.size())));
        EXPECT_THAT(r->body, HasSubstr("\"body_fnv\":\"" + fnv1a_hex(body) + "\""));
    }
    // 20 MB down, then chunked responses (small chunks, and a stream).
    auto big = http_get(gw.port(), "/size/20000000", "", 60s);
    ASSERT_TRUE(big);
    EXPECT_EQ(big->status, 200);
    ASSERT_EQ(big->body.size(), 20000000u);
    bool pattern_ok = true;
    for (size_t i = 0; i < big->body.size() && pattern_ok; i += 4093) pattern_ok = big->body[i] == char('a' + i % 26);
    EXPECT_TRUE(pattern_ok);
    auto chunked = http_get(gw.port(), "/chunked");
    ASSERT_TRUE(chunked);
    EXPECT_EQ(chunked->status, 200);
    EXPECT_THAT(chunked->body, HasSubstr("\"uri\":\"/chunked\""));
    auto stream = http_get(gw.port(), "/stream/300000?chunk=7000&delay=0", "", 30s);
    ASSERT_TRUE(stream);
    EXPECT_EQ(stream->status, 200);
    EXPECT_EQ(stream->body.size(), 300000u);
    EXPECT_THAT(gw.error_log(), Not(HasSubstr("[error]")));
}

// ---- upgrade ---------------------------------------------------------------------------

int connect_to(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(size_t(n));
    }
    return true;
}

// Reads until `needle` is in `in`, bounded by `timeout`.
bool read_until(int fd, std::string& in, std::string_view needle, Millis timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (in.find(needle) == std::string::npos) {
        auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()).count();
        if (left <= 0) return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, int(left)) <= 0) return false;
        char buf[65536];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) return false;
        in.append(buf, size_t(n));
    }
    return true;
}

TEST_F(ProxySslTest, WebSocketTunnelOverTls) {
    TlsUpstream up("backend");
    ASSERT_TRUE(up.start());
    Daemon gw(ssl_location("location / { proxy_pass https://127.0.0.1:{{UP}}; proxy_http_version 1.1;\n"
                           "    proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; }\n"),
              vars_with({{"UP", up.port()}}));
    ASSERT_TRUE(gw.start());
    int fd = connect_to(gw.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(write_all(fd, "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    std::string in;
    ASSERT_TRUE(read_until(fd, in, "\r\n\r\n")) << in;
    EXPECT_THAT(in, HasSubstr("HTTP/1.1 101"));
    in.erase(0, in.find("\r\n\r\n") + 4);
    std::string big = patterned_body(300 * 1024);
    std::thread writer([&] { write_all(fd, big); });
    bool echoed = read_until(fd, in, big.substr(big.size() - 64), 15s);
    writer.join();
    ASSERT_TRUE(echoed) << in.size();
    EXPECT_TRUE(in == big);
    ::close(fd);
}

// ---- timeouts ----------------------------------------------------------------------------

// A backend that accepts the connection and never answers the ClientHello:
// the handshake is bounded by proxy_connect_timeout, a timeout for
// proxy_next_upstream.
TEST_F(ProxySslTest, HandshakeIsBoundedByTheConnectTimeout) {
    int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(listener, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    uint16_t silent_port = free_port();
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(silent_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 16), 0);  // the kernel completes connects; nobody speaks
    TlsUpstream good("backend");
    ASSERT_TRUE(good.start());
    Daemon gw(std::string(kMainConfig) +
                  "worker_processes 1;\n"
                  "events { worker_connections 256; }\n"
                  "http {\n"
                  "    upstream pair { server 127.0.0.1:{{SILENT}} max_fails=0; server 127.0.0.1:{{GOOD}}; }\n"
                  "    server {\n"
                  "        listen 127.0.0.1:{{PORT}};\n"
                  "        proxy_connect_timeout 300ms;\n"
                  "        location /only { proxy_pass https://127.0.0.1:{{SILENT}}; }\n"
                  "        location / { proxy_pass https://pair; }\n"
                  "    }\n"
                  "}\n",
              vars_with({{"SILENT", silent_port}, {"GOOD", good.port()}}));
    ASSERT_TRUE(gw.start());
    auto alone = http_get(gw.port(), "/only");
    ASSERT_TRUE(alone);
    EXPECT_EQ(alone->status, 504);
    EXPECT_THAT(gw.error_log(), HasSubstr("upstream timed out (110: Connection timed out) while SSL handshaking to upstream"));
    for (int i = 0; i < 2; ++i) {
        auto r = http_get(gw.port(), "/x");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
    }
    ::close(listener);
}

// ---- configuration -----------------------------------------------------------------------

TEST_F(ProxySslTest, ConfigErrorsNameTheFileAndLine) {
    struct Case {
        std::string directives;
        std::string error;
    };
    const std::vector<Case> cases = {
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify on; }",
         "no proxy_ssl_trusted_certificate for proxy_ssl_verify in "},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_protocols TLSv1.2 SSLv3; }",
         "invalid value \"SSLv3\" in \"proxy_ssl_protocols\" directive in "},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_trusted_certificate /nonexistent/ca.pem; }",
         "cannot read \"/nonexistent/ca.pem\" (2: No such file or directory) in "},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_certificate {{GW_CERT}}; }",
         "no \"proxy_ssl_certificate_key\" is defined for certificate"},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_certificate {{GW_CERT}};\n"
         "             proxy_ssl_certificate_key {{OTHER_KEY}}; }",
         "does not match certificate"},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_ciphers NO-SUCH-CIPHER; }",
         "invalid ciphers \"NO-SUCH-CIPHER\" in \"proxy_ssl_ciphers\" directive in "},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify maybe; }",
         "it must be \"on\" or \"off\" in "},
        {"location / { proxy_pass https://127.0.0.1:1; proxy_ssl_verify_depth deep; }",
         "invalid value \"deep\" in \"proxy_ssl_verify_depth\" directive in "},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.directives);
        Daemon gw(ssl_location("        " + c.directives + "\n"), vars_with({{"OTHER_KEY", pki().key("backend")}}));
        CommandResult r = gw.run_cli({"-t"});
        EXPECT_NE(r.exit_code, 0) << r.output;
        EXPECT_THAT(r.output, HasSubstr(c.error)) << r.output;
        EXPECT_TRUE(std::regex_search(r.output, std::regex("sluice\\.conf:[0-9]+"))) << r.output;
    }
    // The same settings in two locations share one context (and connections);
    // http:// locations need none and check no TLS settings.
    Daemon ok(ssl_location("        proxy_ssl_certificate {{GW_CERT}}; proxy_ssl_certificate_key {{GW_KEY}};\n"
                           "        location /a { proxy_pass https://127.0.0.1:1; }\n"
                           "        location /b { proxy_pass https://127.0.0.1:1; }\n"
                           "        location /c { proxy_pass http://127.0.0.1:1; }\n"),
              vars_with({}));
    CommandResult r = ok.run_cli({"-t"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
}

// ---- health checks ---------------------------------------------------------------------

// The upstream's health checks speak TLS with the settings of the location
// that proxies to it with https://: the good server is probed over TLS and
// stays up; the one whose certificate does not verify is marked unhealthy
// with OpenSSL's reason, so requests never go there.
TEST_F(ProxySslTest, HealthChecksOfAnHttpsUpstreamUseTls) {
    TlsUpstream good("backend");
    TlsUpstream bad("untrusted");
    ASSERT_TRUE(good.start());
    ASSERT_TRUE(bad.start());
    Daemon gw(std::string(kMainConfig) +
                  "worker_processes 1;\n"
                  "events { worker_connections 256; }\n"
                  "http {\n"
                  "    upstream checked { zone checked 64k; server 127.0.0.1:{{GOOD}}; server 127.0.0.1:{{BAD}};\n"
                  "                       health_check interval=100ms fails=1 passes=1 uri=/hc; }\n"
                  "    server {\n"
                  "        listen 127.0.0.1:{{PORT}};\n"
                  "        location / { proxy_pass https://checked; " +
                  std::string(kVerify) +
                  "}\n"
                  "    }\n"
                  "}\n",
              vars_with({{"GOOD", good.port()}, {"BAD", bad.port()}}));
    ASSERT_TRUE(gw.start());
    ASSERT_TRUE(good.wait_for(" REQ GET /hc ")) << good.log();
    EXPECT_FALSE(good.handshakes().empty()) << good.log();
    ASSERT_TRUE(gw.wait_for_log("peer is unhealthy while connecting to upstream (SSL: upstream SSL certificate "
                                "verify error: (20:"))
        << gw.error_log();
    for (int i = 0; i < 4; ++i) {
        auto r = http_get(gw.port(), "/x");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(r->header("X-Upstream-Id"), std::to_string(good.port()));
    }
    EXPECT_TRUE(bad.requests().empty()) << bad.log();
}

}  // namespace
}  // namespace sluice::test
