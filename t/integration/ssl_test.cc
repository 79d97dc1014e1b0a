// Client-side TLS against the real daemon: certificates from the test PKI,
// a native OpenSSL client (t/lib/tls_client.*). SNI, RSA and ECDSA side by
// side, protocol limits, ALPN, plain HTTP to a TLS port, keep-alive and
// pipelining, large bodies both ways, mTLS with the variables checked at a
// real upstream, CRLs, session resumption, and `-t` errors.
#include <openssl/ssl.h>

#include <algorithm>
#include <set>
#include <string>

#include "harness.h"
#include "test_pki.h"
#include "tls_client.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

// One PKI for the whole file: making keys is the slow part.
class SslTest : public testing::Test {
protected:
    static void SetUpTestSuite() {
        pki_ = new TestPki();
        a_ec_ = pki_->server("a", {"a.test", "localhost"}, KeyType::Ecdsa);
        a_rsa_ = pki_->server("a", {"a.test", "localhost"}, KeyType::Rsa);
        b_ec_ = pki_->server("b", {"b.test"}, KeyType::Ecdsa);
        alice_ = pki_->client("alice");
        bob_ = pki_->client("bob");
        mallory_ = pki_->client("mallory", false);
        pki_->revoke(bob_);
        crl_ = pki_->crl();
    }
    static void TearDownTestSuite() {
        delete pki_;
        pki_ = nullptr;
    }

    static ConfigVars vars() {
        return {{"A_CERT", a_ec_.cert}, {"A_KEY", a_ec_.key}, {"A_RSA_CERT", a_rsa_.cert},
                {"A_RSA_KEY", a_rsa_.key}, {"B_CERT", b_ec_.cert}, {"B_KEY", b_ec_.key},
                {"CA", pki_->ca_cert()}, {"CRL", crl_}};
    }
    static TlsClientOptions client(std::string sni = "") {
        TlsClientOptions o;
        o.server_name = std::move(sni);
        o.ca_file = pki_->ca_cert();
        return o;
    }

    static TestPki* pki_;
    static CertPair a_ec_, a_rsa_, b_ec_, alice_, bob_, mallory_;
    static std::string crl_;
};

TestPki* SslTest::pki_ = nullptr;
CertPair SslTest::a_ec_, SslTest::a_rsa_, SslTest::b_ec_, SslTest::alice_, SslTest::bob_, SslTest::mallory_;
std::string SslTest::crl_;

std::string config(std::string_view http_body) {
    return std::string(kMainConfig) + "events { worker_connections 64; }\nhttp {\n    access_log off;\n" +
           std::string(http_body) + "}\n";
}

// ---- the handshake, SNI and certificates ----

constexpr std::string_view kTwoServers = R"(
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        server_name a.test localhost;
        ssl_certificate {{A_CERT}};
        ssl_certificate_key {{A_KEY}};
        ssl_certificate {{A_RSA_CERT}};
        ssl_certificate_key {{A_RSA_KEY}};
        return 200 "a $scheme $https $ssl_protocol sni=$ssl_server_name reused=$ssl_session_reused\n";
    }
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        server_name b.test;
        ssl_certificate {{B_CERT}};
        ssl_certificate_key {{B_KEY}};
        location = /abs { return 302 /elsewhere; }
        location / { return 200 "b $scheme sni=$ssl_server_name\n"; }
    }
)";

TEST_F(SslTest, SniChoosesTheServersCertificateAndHostTheServer) {
    Daemon d(config(kTwoServers), vars());
    ASSERT_TRUE(d.start());
    {
        TlsConn c(d.port(), client("a.test"));
        ASSERT_TRUE(c.ok()) << c.error();
        EXPECT_NE(c.peer_subject().find("CN=a.test"), std::string::npos) << c.peer_subject();
    }
    {
        TlsConn c(d.port(), client("b.test"));
        ASSERT_TRUE(c.ok()) << c.error();
        EXPECT_NE(c.peer_subject().find("CN=b.test"), std::string::npos) << c.peer_subject();
    }
    {
        // An unknown name, and no name at all: the default server's certificate.
        TlsClientOptions unknown;
        unknown.server_name = "c.test";
        TlsConn c(d.port(), unknown);
        ASSERT_TRUE(c.ok()) << c.error();
        EXPECT_NE(c.peer_subject().find("CN=a.test"), std::string::npos) << c.peer_subject();
        TlsConn none(d.port(), TlsClientOptions{});
        ASSERT_TRUE(none.ok()) << none.error();
        EXPECT_NE(none.peer_subject().find("CN=a.test"), std::string::npos);
    }
    auto a = https_get(d.port(), client("a.test"), "/");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200);
    EXPECT_EQ(a->body, "a https on TLSv1.3 sni=a.test reused=.\n");
    auto b = https_get(d.port(), client("b.test"), "/");
    ASSERT_TRUE(b);
    EXPECT_EQ(b->body, "b https sni=b.test\n");
    // The Host chooses the server, as nginx does (no client verification here, so no 421).
    auto host_b = https_get(d.port(), client("a.test"), "/", "Host: b.test\r\n");
    ASSERT_TRUE(host_b);
    EXPECT_EQ(host_b->body, "b https sni=a.test\n");
    auto redirect = https_get(d.port(), client("b.test"), "/abs");
    ASSERT_TRUE(redirect);
    EXPECT_EQ(redirect->header("Location"), "https://b.test:" + std::to_string(d.port()) + "/elsewhere");
}

TEST_F(SslTest, RsaOrEcdsaCertificateByTheClientsSignatureAlgorithms) {
    Daemon d(config(kTwoServers), vars());
    ASSERT_TRUE(d.start());
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        TlsClientOptions ec = client("a.test");
        ec.sigalgs = "ECDSA+SHA256";
        ec.max_version = version;
        TlsConn ec_conn(d.port(), ec);
        ASSERT_TRUE(ec_conn.ok()) << ec_conn.error();
        EXPECT_EQ(ec_conn.peer_key_type(), "EC");
        TlsClientOptions rsa = client("a.test");
        rsa.sigalgs = "RSA-PSS+SHA256:RSA+SHA256";
        rsa.max_version = version;
        TlsConn rsa_conn(d.port(), rsa);
        ASSERT_TRUE(rsa_conn.ok()) << rsa_conn.error();
        EXPECT_EQ(rsa_conn.peer_key_type(), "RSA");
    }
}

TEST_F(SslTest, ProtocolLimitsAndAlpn) {
    Daemon d(config(R"(
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        ssl_certificate {{A_CERT}};
        ssl_certificate_key {{A_KEY}};
        ssl_protocols TLSv1.3;
        return 200 "$ssl_protocol $ssl_cipher\n";
    }
)"),
             vars());
    ASSERT_TRUE(d.start());
    TlsClientOptions old = client("a.test");
    old.max_version = TLS1_2_VERSION;
    TlsConn refused(d.port(), old);
    EXPECT_FALSE(refused.ok());
    EXPECT_NE(refused.error().find("protocol version"), std::string::npos) << refused.error();

    TlsClientOptions h1 = client("a.test");
    h1.alpn = std::string("\x02h2\x08http/1.1", 12);
    TlsConn c(d.port(), h1);
    ASSERT_TRUE(c.ok()) << c.error();
    EXPECT_EQ(c.alpn_selected(), "http/1.1");
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->body, "TLSv1.3 TLS_AES_256_GCM_SHA384\n");

    TlsClientOptions h2_only = client("a.test");
    h2_only.alpn = std::string("\x02h2", 3);
    TlsConn no_common(d.port(), h2_only);
    EXPECT_FALSE(no_common.ok());
    EXPECT_NE(no_common.error().find("no application protocol"), std::string::npos) << no_common.error();
}

TEST_F(SslTest, PlainHttpToTheTlsPortIsAnswered400) {
    Daemon d(config(kTwoServers), vars());
    ASSERT_TRUE(d.start());
    auto r = http_get(d.port(), "/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find("The plain HTTP request was sent to HTTPS port"), std::string::npos) << r->body;
    EXPECT_EQ(r->header("Connection"), "close");
    EXPECT_TRUE(d.wait_for_log("client sent plain HTTP request to HTTPS port"));
}

TEST_F(SslTest, HandshakeTimeoutIsClientHeaderTimeout) {
    Daemon d(config(R"(
    client_header_timeout 300ms;
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        ssl_certificate {{A_CERT}};
        ssl_certificate_key {{A_KEY}};
        return 200;
    }
)"),
             vars());
    ASSERT_TRUE(d.start());
    Conn silent(d.port());
    ASSERT_TRUE(silent.send("\x16\x03\x01"));  // the start of a record, and then nothing
    EXPECT_TRUE(silent.is_closed(5000ms));
    EXPECT_TRUE(d.wait_for_log("while SSL handshaking"));
}

// ---- HTTP over TLS ----

constexpr std::string_view kProxied = R"(
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        server_name localhost;
        ssl_certificate {{A_CERT}};
        ssl_certificate_key {{A_KEY}};
        client_max_body_size 10m;
        root {{PREFIX}}/html;
        location /up/ { proxy_pass http://127.0.0.1:{{UP}}/; proxy_http_version 1.1;
                        proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; }
        location /files/ { }
    }
)";

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i) s[i] = char('a' + i % 26);
    return s;
}

TEST_F(SslTest, KeepAlivePipeliningAndLargeBodiesBothWays) {
    UpstreamProcess up;
    ASSERT_TRUE(up.start());
    ConfigVars v = vars();
    v.emplace("UP", up.port());
    Daemon d(config(kProxied), v);
    std::string file = pattern(3 * 1024 * 1024 + 7);
    d.dir().write("html/files/big.bin", file);
    ASSERT_TRUE(d.start());

    TlsConn c(d.port(), client("localhost"));
    ASSERT_TRUE(c.ok()) << c.error();
    // Three pipelined requests in one write.
    std::string three;
    for (int i = 0; i < 3; ++i) three += "GET /up/p" + std::to_string(i) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    ASSERT_TRUE(c.send(three));
    for (int i = 0; i < 3; ++i) {
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 200);
        EXPECT_NE(r->body.find("\"uri\":\"/p" + std::to_string(i) + "\""), std::string::npos) << r->body;
    }
    // A large static file (read and written through the session: no sendfile).
    ASSERT_TRUE(c.send("GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto big = c.read_response();
    ASSERT_TRUE(big) << c.error();
    EXPECT_EQ(big->status, 200);
    EXPECT_TRUE(big->body == file) << big->body.size();
    // A large proxied response.
    ASSERT_TRUE(c.send("GET /up/size/2000003 HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto proxied = c.read_response();
    ASSERT_TRUE(proxied) << c.error();
    EXPECT_TRUE(proxied->body == pattern(2000003)) << proxied->body.size();
    // A request body, in one piece and chunked.
    std::string body = pattern(1500000);
    ASSERT_TRUE(c.send("POST /up/post HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body));
    auto posted = c.read_response();
    ASSERT_TRUE(posted) << c.error();
    EXPECT_NE(posted->body.find("\"body_length\":1500000"), std::string::npos) << posted->body;
    ASSERT_TRUE(c.send("POST /up/chunked-post HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /up/after HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto chunked = c.read_response();
    ASSERT_TRUE(chunked) << c.error();
    EXPECT_NE(chunked->body.find("\"body_length\":11"), std::string::npos) << chunked->body;
    auto after = c.read_response();
    ASSERT_TRUE(after) << c.error();
    EXPECT_NE(after->body.find("\"uri\":\"/after\""), std::string::npos) << after->body;
}

TEST_F(SslTest, UpgradedConnectionTunnelsThroughTheSession) {
    UpstreamProcess up;
    ASSERT_TRUE(up.start());
    ConfigVars v = vars();
    v.emplace("UP", up.port());
    Daemon d(config(kProxied), v);
    ASSERT_TRUE(d.start());
    TlsConn c(d.port(), client("localhost"));
    ASSERT_TRUE(c.ok()) << c.error();
    ASSERT_TRUE(c.send("GET /up/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    auto r = c.read_response(true);
    ASSERT_TRUE(r) << c.error();
    ASSERT_EQ(r->status, 101);
    std::string payload = pattern(100000);
    ASSERT_TRUE(c.send(payload));
    std::string echoed = c.read_bytes(payload.size());
    EXPECT_EQ(echoed.size(), payload.size());
    EXPECT_TRUE(echoed == payload);
}

// ---- client certificates ----

constexpr std::string_view kMtls = R"(
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        server_name localhost;
        ssl_certificate {{A_CERT}};
        ssl_certificate_key {{A_KEY}};
        ssl_client_certificate {{CA}};
        ssl_verify_client {{MODE}};
        ssl_crl {{CRL}};
        location / {
            proxy_pass http://127.0.0.1:{{UP}};
            proxy_set_header X-Verify $ssl_client_verify;
            proxy_set_header X-Subject $ssl_client_s_dn;
            proxy_set_header X-Issuer $ssl_client_i_dn;
            proxy_set_header X-Serial $ssl_client_serial;
            proxy_set_header X-Fingerprint $ssl_client_fingerprint;
        }
    }
    server {
        listen 127.0.0.1:{{PORT}} ssl;
        server_name other.test;
        ssl_certificate {{B_CERT}};
        ssl_certificate_key {{B_KEY}};
        return 200 "other\n";
    }
)";

std::string json_field(const std::string& body, const std::string& name) {
    std::string key = "\"" + name + "\":\"";
    size_t p = body.find(key);
    if (p == std::string::npos) return "<none>";
    p += key.size();
    return body.substr(p, body.find('"', p) - p);
}

class MtlsTest : public SslTest {
protected:
    std::unique_ptr<Daemon> start(std::string_view mode) {
        up_ = std::make_unique<UpstreamProcess>();
        EXPECT_TRUE(up_->start());
        ConfigVars v = vars();
        v.emplace("UP", up_->port());
        v.emplace("MODE", std::string(mode));
        auto d = std::make_unique<Daemon>(config(kMtls), v);
        EXPECT_TRUE(d->start());
        return d;
    }
    static TlsClientOptions with_cert(const CertPair& pair) {
        TlsClientOptions o = client("localhost");
        o.cert_file = pair.cert;
        o.key_file = pair.key;
        return o;
    }
    std::unique_ptr<UpstreamProcess> up_;
};

TEST_F(MtlsTest, OnAcceptsTrustedCertificatesAndForwardsTheirFacts) {
    auto d = start("on");
    auto r = https_get(d->port(), with_cert(alice_), "/");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json_field(r->body, "x-verify"), "SUCCESS");
    EXPECT_EQ(json_field(r->body, "x-subject"), "CN=alice,O=Sluice Tests");
    EXPECT_EQ(json_field(r->body, "x-issuer"), "CN=Sluice Test CA,O=Sluice Tests");
    EXPECT_EQ(json_field(r->body, "x-serial"), alice_.serial);
    std::string fingerprint = pki_->x509_field(alice_.cert, "-fingerprint");  // "SHA1 Fingerprint=AB:CD:..."
    fingerprint = fingerprint.substr(fingerprint.find('=') + 1);
    std::erase(fingerprint, ':');
    std::transform(fingerprint.begin(), fingerprint.end(), fingerprint.begin(), ::tolower);
    EXPECT_EQ(json_field(r->body, "x-fingerprint"), fingerprint);
}

TEST_F(MtlsTest, OnRejectsMissingUntrustedAndRevokedCertificates) {
    auto d = start("on");
    auto none = https_get(d->port(), client("localhost"), "/");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 400);
    EXPECT_NE(none->body.find("No required SSL certificate was sent"), std::string::npos) << none->body;
    auto untrusted = https_get(d->port(), with_cert(mallory_), "/");
    ASSERT_TRUE(untrusted);
    EXPECT_EQ(untrusted->status, 400);
    EXPECT_NE(untrusted->body.find("The SSL certificate error"), std::string::npos) << untrusted->body;
    auto revoked = https_get(d->port(), with_cert(bob_), "/");
    ASSERT_TRUE(revoked);
    EXPECT_EQ(revoked->status, 400);
    EXPECT_NE(revoked->body.find("The SSL certificate error"), std::string::npos);
    EXPECT_TRUE(d->wait_for_log("certificate revoked"));
    EXPECT_NE(up_->port(), 0);
}

TEST_F(MtlsTest, OptionalLetsClientsWithoutCertificatesIn) {
    auto d = start("optional");
    auto none = https_get(d->port(), client("localhost"), "/");
    ASSERT_TRUE(none);
    EXPECT_EQ(none->status, 200);
    EXPECT_EQ(json_field(none->body, "x-verify"), "NONE");
    auto alice = https_get(d->port(), with_cert(alice_), "/");
    ASSERT_TRUE(alice);
    EXPECT_EQ(json_field(alice->body, "x-verify"), "SUCCESS");
    auto untrusted = https_get(d->port(), with_cert(mallory_), "/");
    ASSERT_TRUE(untrusted);
    EXPECT_EQ(untrusted->status, 400);
}

TEST_F(MtlsTest, OptionalNoCaPassesAnUnknownCaOnAsFailed) {
    auto d = start("optional_no_ca");
    auto untrusted = https_get(d->port(), with_cert(mallory_), "/");
    ASSERT_TRUE(untrusted);
    EXPECT_EQ(untrusted->status, 200);
    EXPECT_EQ(json_field(untrusted->body, "x-verify").rfind("FAILED:", 0), 0u) << untrusted->body;
    EXPECT_EQ(json_field(untrusted->body, "x-subject"), "CN=mallory,O=Sluice Tests");
    auto revoked = https_get(d->port(), with_cert(bob_), "/");  // revoked is no CA problem
    ASSERT_TRUE(revoked);
    EXPECT_EQ(revoked->status, 400);
}

TEST_F(MtlsTest, HostOfAnotherServerThanSniIsMisdirected) {
    auto d = start("on");
    // SNI names the server without client verification, the Host the one with it.
    auto r = https_get(d->port(), client("other.test"), "/", "Host: localhost\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 421);
}

// ---- configuration errors ----

TEST_F(SslTest, ConfigurationErrorsNameFileAndLine) {
    struct Case {
        std::string server;
        std::string message;
        int line;  // within the server block below, counted from the config's start
    };
    std::string head = std::string(kMainConfig) + "events { }\nhttp {\n    server {\n";  // lines 1-6
    const Case cases[] = {
        {"        listen 127.0.0.1:{{PORT}} ssl;\n        return 200;\n",
         "no \"ssl_certificate\" is defined for the \"listen ... ssl\" directive", 7},
        {"        listen 127.0.0.1:{{PORT}} ssl;\n        ssl_certificate {{A_CERT}};\n        ssl_certificate_key "
         "{{PREFIX}}/missing.key;\n",
         "cannot open certificate key", 9},
        {"        listen 127.0.0.1:{{PORT}} ssl;\n        ssl_certificate {{A_CERT}};\n        ssl_certificate_key "
         "{{B_KEY}};\n",
         "does not match certificate", 9},
        {"        listen 127.0.0.1:{{PORT}} ssl;\n        ssl_protocols TLSv1.2 SSLv3;\n", "invalid value \"SSLv3\"", 8},
        {"        listen 127.0.0.1:{{PORT}} ssl;\n        ssl_certificate {{A_CERT}};\n        ssl_certificate_key "
         "{{A_KEY}};\n        ssl_session_ticket_key {{PREFIX}}/short.key;\n",
         "must be 48 or 80 bytes", 10},
    };
    for (const Case& c : cases) {
        Daemon d(head + c.server + "    }\n}\n", vars());
        d.dir().write("short.key", "too short");
        CommandResult r = d.run_cli({"-t"});
        EXPECT_NE(r.exit_code, 0) << c.server;
        EXPECT_NE(r.output.find(c.message), std::string::npos) << r.output;
        EXPECT_NE(r.output.find("sluice.conf:" + std::to_string(c.line)), std::string::npos) << r.output;
    }
}

}  // namespace
}  // namespace sluice::test
