// auth_jwt_key_url against real processes: the identity provider is a
// second sluice serving a static jwks.json from its root (its access log
// counts the fetches), or `openssl s_server -WWW` for HTTPS with a CA and
// certificate made here by the `openssl` command line. Covered: keys from
// the URL verify (RS256); workers share one fetch; key rotation picked up by
// an unknown kid and by the refresh, without reload; the provider down (old
// keys keep working, the failure is logged); an unknown-kid storm costs at
// most one fetch; HTTPS with a trusted CA works and an untrusted one fails.
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kIdpConfig = R"(
events { worker_connections 64; }
http {
    access_log {{PREFIX}}/logs/access.log;
    server {
        listen 127.0.0.1:{{PORT}};
        root {{PREFIX}}/html;
    }
}
)";

// {{URL_ARGS}}: what follows auth_jwt_key_url; {{EXTRA}}: more directives.
constexpr std::string_view kGatewayConfig = R"(
worker_processes 2;
events { worker_connections 256; }
http {
    access_log off;
    server {
        listen 127.0.0.1:{{PORT}};
        location /api/ {
            auth_jwt "api";
            auth_jwt_key_url {{URL_ARGS}};
            {{EXTRA}}
            root {{PREFIX}}/html;
            add_header X-User $jwt_claim_sub;
        }
    }
}
)";

std::string b64url(std::string_view in) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kAlphabet[(acc >> bits) & 63]);
        }
    }
    if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
    return out;
}

std::string hex_to_bytes(std::string_view hex) {
    std::string out;
    auto value = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(char(value(hex[i]) * 16 + value(hex[i + 1])));
    return out;
}

void openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    CommandResult r = run_command(args, Millis{20000});
    ASSERT_EQ(r.exit_code, 0) << r.output;
}

std::string oct_jwk(std::string_view kid, std::string_view secret) {
    return R"({"kty":"oct","kid":")" + std::string(kid) + R"(","k":")" + b64url(secret) + "\"}";
}

std::string jwks(std::vector<std::string> keys) {
    std::string out = R"({"keys":[)";
    for (size_t i = 0; i < keys.size(); ++i) out += (i ? "," : "") + keys[i];
    return out + "]}";
}

std::string secret_of(std::string_view kid) { return "secret of " + std::string(kid) + " .........................."; }

// Makes tokens with the `openssl` command (HS256 with a kid's secret, or
// RS256 with a generated key) in a scratch directory.
class Signer {
public:
    std::string hs256(std::string_view kid, std::string_view sub) {
        std::string input = signing_input("HS256", kid, sub);
        dir_.write("input", input);
        openssl({"dgst", "-sha256", "-hmac", secret_of(kid), "-binary", "-out", dir_.path("sig"), dir_.path("input")});
        return input + "." + b64url(dir_.read("sig"));
    }
    // An RSA key pair; returns its JWK.
    std::string make_rsa(std::string_view kid) {
        openssl({"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", dir_.path("rsa.key")});
        CommandResult m = run_command({"openssl", "rsa", "-in", dir_.path("rsa.key"), "-noout", "-modulus"});
        EXPECT_EQ(m.exit_code, 0) << m.output;
        std::string hex = m.output.substr(m.output.find('=') + 1);
        while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r')) hex.pop_back();
        return R"({"kty":"RSA","kid":")" + std::string(kid) + R"(","n":")" + b64url(hex_to_bytes(hex)) +
               R"(","e":"AQAB"})";
    }
    std::string rs256(std::string_view kid, std::string_view sub) {
        std::string input = signing_input("RS256", kid, sub);
        dir_.write("input", input);
        openssl({"dgst", "-sha256", "-sign", dir_.path("rsa.key"), "-binary", "-out", dir_.path("sig"),
                 dir_.path("input")});
        return input + "." + b64url(dir_.read("sig"));
    }
    const TempDir& dir() const { return dir_; }

private:
    static std::string signing_input(std::string_view alg, std::string_view kid, std::string_view sub) {
        std::string header = R"({"alg":")" + std::string(alg) + R"(","typ":"at+jwt","kid":")" + std::string(kid) + "\"}";
        std::string payload = R"({"sub":")" + std::string(sub) + R"(","exp":)" + std::to_string(time(nullptr) + 600) + "}";
        return b64url(header) + "." + b64url(payload);
    }
    TempDir dir_{"sluice-jwks-signer"};
};

// The identity provider: a sluice serving html/jwks.json.
class Idp {
public:
    Idp() : daemon_(std::string(kMainConfig) + std::string(kIdpConfig)) {}
    void serve(std::string_view document) {
        // Written whole, then renamed: a fetch never sees half a file.
        daemon_.dir().write("html/jwks.json.tmp", document);
        rename(daemon_.dir().path("html/jwks.json.tmp").c_str(), daemon_.dir().path("html/jwks.json").c_str());
    }
    ::testing::AssertionResult start() { return daemon_.start(); }
    void stop() { daemon_.stop(); }
    uint16_t port() const { return daemon_.port(); }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()) + "/jwks.json"; }
    int fetches() const {
        std::string log = daemon_.dir().read("logs/access.log");
        int n = 0;
        for (size_t p = log.find("/jwks.json"); p != std::string::npos; p = log.find("/jwks.json", p + 1)) ++n;
        return n;
    }

private:
    Daemon daemon_;
};

// The gateway: /api/x is a static file behind auth_jwt (a `return` would
// answer before the access phase).
std::unique_ptr<Daemon> gateway(const std::string& url_args, std::string_view extra = "") {
    auto d = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kGatewayConfig),
                                      ConfigVars{{"URL_ARGS", url_args}, {"EXTRA", std::string(extra)}});
    d->dir().write("html/api/x", "protected\n");
    return d;
}

int status_of(uint16_t port, std::string_view token) {
    auto r = http_get(port, "/api/x", "Authorization: Bearer " + std::string(token) + "\r\n", Millis{10000});
    return r ? r->status : -1;
}

TEST(AuthJwtKeyUrlTest, KeysFromTheUrlVerifyAndWorkersShareOneFetch) {
    Signer signer;
    Idp idp;
    idp.serve(jwks({signer.make_rsa("r1")}));
    ASSERT_TRUE(idp.start());
    auto gw = gateway(idp.url());
    ASSERT_TRUE(gw->start());
    std::string token = signer.rs256("r1", "alice");
    // Fresh connections spread over both workers.
    for (int i = 0; i < 20; ++i) {
        auto r = http_get(gw->port(), "/api/x", "Authorization: Bearer " + token + "\r\n");
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << *r;
        EXPECT_EQ(r->header("X-User"), "alice");
    }
    EXPECT_EQ(status_of(gw->port(), token.substr(0, token.size() - 4) + "AAAA"), 401);
    EXPECT_THAT(gw->error_log(), HasSubstr("JWKS from \"" + idp.url() + "\" fetched: 1 keys"));
    // The master's fetch at start served both workers.
    EXPECT_EQ(idp.fetches(), 1);
    EXPECT_EQ(gw->worker_pids().size(), 2u);
}

TEST(AuthJwtKeyUrlTest, RotationIsPickedUpByAnUnknownKidWithoutReload) {
    Signer signer;
    Idp idp;
    idp.serve(jwks({oct_jwk("k1", secret_of("k1"))}));
    ASSERT_TRUE(idp.start());
    auto gw = gateway(idp.url());
    ASSERT_TRUE(gw->start());
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k1", "a")), 200);
    idp.serve(jwks({oct_jwk("k1", secret_of("k1")), oct_jwk("k2", secret_of("k2"))}));
    // The request waits for the refetch its kid caused.
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k2", "b")), 200);
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k1", "a")), 200);
    EXPECT_EQ(idp.fetches(), 2);
}

TEST(AuthJwtKeyUrlTest, RotationIsPickedUpByTheRefresh) {
    Signer signer;
    Idp idp;
    idp.serve(jwks({oct_jwk("k1", secret_of("k1"))}));
    ASSERT_TRUE(idp.start());
    auto gw = gateway(idp.url() + " refresh=1s");
    ASSERT_TRUE(gw->start());
    std::string k3 = signer.hs256("k3", "c");
    idp.serve(jwks({oct_jwk("k3", secret_of("k3"))}));
    // No request asks for it: the background refresh brings the new set.
    ASSERT_TRUE(gw->wait_for_log("fetched: 1 keys", Millis{8000}, gw->error_log().find("fetched: 1 keys") + 1));
    EXPECT_EQ(status_of(gw->port(), k3), 200);
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k1", "a")), 401);  // rotated out
}

TEST(AuthJwtKeyUrlTest, ProviderDownKeepsTheLastGoodKeysAndLogsTheFailure) {
    Signer signer;
    Idp idp;
    idp.serve(jwks({oct_jwk("k1", secret_of("k1"))}));
    ASSERT_TRUE(idp.start());
    auto gw = gateway(idp.url() + " refresh=1s timeout=1s");
    ASSERT_TRUE(gw->start());
    std::string token = signer.hs256("k1", "a");
    EXPECT_EQ(status_of(gw->port(), token), 200);
    idp.stop();
    ASSERT_TRUE(gw->wait_for_log("last fetch failed: connect() to 127.0.0.1:", Millis{8000}));
    EXPECT_THAT(gw->error_log(), HasSubstr("JWKS from \"" + idp.url() + "\" is "));
    EXPECT_THAT(gw->error_log(), HasSubstr(" s old; last fetch failed"));
    EXPECT_EQ(status_of(gw->port(), token), 200);
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k9", "x")), 401);
}

TEST(AuthJwtKeyUrlTest, UnknownKidStormCostsAtMostOneFetch) {
    Signer signer;
    Idp idp;
    idp.serve(jwks({oct_jwk("k1", secret_of("k1"))}));
    ASSERT_TRUE(idp.start());
    auto gw = gateway(idp.url());
    ASSERT_TRUE(gw->start());
    // Made-up kids need no valid signature: the kid alone decides.
    std::string header_prefix = R"({"alg":"HS256","kid":"storm-)";
    std::atomic<int> unauthorized{0}, other{0};
    auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 50; ++i) {
                std::string token = b64url(header_prefix + std::to_string(t * 1000 + i) + "\"}") + "." +
                                    b64url(R"({"sub":"m"})") + ".AAAA";
                (status_of(gw->port(), token) == 401 ? unauthorized : other)++;
            }
        });
    }
    for (auto& th : threads) th.join();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
    EXPECT_EQ(unauthorized.load(), 200);
    EXPECT_EQ(other.load(), 0);
    // The master's fetch, and one per 10 s rate-limit interval that the
    // storm lasted (one, unless the machine is very slow).
    EXPECT_GE(idp.fetches(), 2);
    EXPECT_LE(idp.fetches(), 2 + int(seconds.count() / 10));
    EXPECT_EQ(status_of(gw->port(), signer.hs256("k1", "a")), 200);
}

// openssl s_server -WWW in `dir`, serving its files over TLS.
class TlsIdp {
public:
    explicit TlsIdp(const TempDir& dir) : dir_(dir), port_(free_port()) {}
    ::testing::AssertionResult start() {
        std::string cmd = "cd '" + dir_.path() + "' && exec openssl s_server -quiet -accept 127.0.0.1:" +
                          std::to_string(port_) + " -cert server.crt -key server.key -WWW";
        if (!process_.spawn({"/bin/sh", "-c", cmd}, -1, SIGKILL)) return ::testing::AssertionFailure() << "spawn";
        bool up = wait_until([&] {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(port_);
            sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            bool ok = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
            close(fd);
            return ok;
        }, Millis{10000}, Millis{50});
        return up ? ::testing::AssertionSuccess() : ::testing::AssertionFailure() << "s_server did not start";
    }
    ~TlsIdp() { process_.stop(SIGTERM, Millis{2000}); }
    std::string url() const { return "https://127.0.0.1:" + std::to_string(port_) + "/jwks.json"; }

private:
    const TempDir& dir_;
    uint16_t port_;
    Process process_;
};

TEST(AuthJwtKeyUrlTest, HttpsWithTheTrustedCaWorksAndAnUntrustedCertificateFails) {
    if (run_command({"openssl", "version"}).exit_code != 0) GTEST_SKIP() << "no openssl command";
    Signer signer;
    TempDir tls("sluice-jwks-tls");
    auto p = [&](const char* name) { return tls.path(name); };
    openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.crt"), "-days",
             "2", "-subj", "/CN=sluice test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
             "keyUsage=critical,keyCertSign"});
    openssl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("server.key"), "-out", p("server.csr"), "-subj",
             "/CN=127.0.0.1"});
    tls.write("ext.cnf", "subjectAltName=IP:127.0.0.1\n");
    openssl({"x509", "-req", "-in", p("server.csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial",
             "-out", p("server.crt"), "-days", "2", "-extfile", p("ext.cnf")});
    tls.write("jwks.json", jwks({oct_jwk("t1", secret_of("t1"))}));
    TlsIdp idp(tls);
    ASSERT_TRUE(idp.start());
    std::string token = signer.hs256("t1", "tls");

    auto trusted = gateway(idp.url() + " timeout=3s", "auth_jwt_key_url_trusted_certificate " + p("ca.crt") + ";");
    ASSERT_TRUE(trusted->start());
    EXPECT_EQ(status_of(trusted->port(), token), 200);
    EXPECT_THAT(trusted->error_log(), HasSubstr("fetched: 1 keys"));
    trusted->stop();

    // The system's store does not know the test CA.
    auto untrusted = gateway(idp.url() + " timeout=3s");
    ASSERT_TRUE(untrusted->start());
    EXPECT_EQ(status_of(untrusted->port(), token), 401);
    EXPECT_THAT(untrusted->error_log(), HasSubstr("certificate verify failed"));
}

}  // namespace
}  // namespace sluice::test
