// auth_jwt against the real daemon: the 401 challenge (RFC 6750), claims
// forwarded to a real origin (t/lib/test_upstream.cc echoes the request
// head as JSON), a client's copy of a claim header replaced, tokens from a
// cookie, auth_jwt_require with 403, RS256 with a PEM key, the token cache
// (a repeated token keeps working, an expired one stops), and key file
// errors with file:line. Keys and signatures come from the `openssl` command
// line, so this file needs no crypto library of its own.
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

constexpr std::string_view kConfig = R"(
events { worker_connections 64; }
http {
    access_log off;
    auth_jwt_claim_set $jwt_team org team;

    server {
        listen 127.0.0.1:{{PORT}};

        location /api/ {
            auth_jwt "api";
            auth_jwt_key_file secret.key;
            proxy_set_header X-User $jwt_claim_sub;
            proxy_set_header X-Team $jwt_team;
            proxy_set_header X-Groups $jwt_claim_groups;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /rsa/ {
            auth_jwt "rsa";
            auth_jwt_key_file rsa.pub;
            auth_jwt_alg RS256;
            auth_jwt_require_exp on;
            proxy_set_header X-User $jwt_claim_sub;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /cookie/ {
            auth_jwt "cookie" token=$cookie_session;
            auth_jwt_key_file secret.key;
            proxy_set_header X-User $jwt_claim_sub;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /admin/ {
            auth_jwt "admin";
            auth_jwt_key_file secret.key;
            auth_jwt_claim_equals iss https://idp.example;
            auth_jwt_require $jwt_claim_admin error=403;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /small/ {
            auth_jwt "small";
            auth_jwt_key_file secret.key;
            auth_jwt_max_size 1k;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /either/ {
            satisfy any;
            deny all;
            auth_jwt "either";
            auth_jwt_key_file secret.key;
            proxy_pass http://127.0.0.1:{{UP}};
        }
        location /open/ {
            proxy_pass http://127.0.0.1:{{UP}};
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

int64_t now() { return int64_t(time(nullptr)); }

// One origin and one daemon for the whole suite: they start once, and
// every test uses its own locations and tokens.
class AuthJwtTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        upstream_ = new UpstreamProcess();
        daemon_ = new Daemon(std::string(kMainConfig) + std::string(kConfig), {{"UP", upstream_->port()}});
        daemon_->dir().write("conf/secret.key", std::string(kSecret) + "\n");
        openssl({"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path("rsa.key")});
        openssl({"pkey", "-in", path("rsa.key"), "-pubout", "-out", path("conf/rsa.pub")});
        started_ = upstream_->start() && daemon_->start();
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete upstream_;
    }

    void SetUp() override { ASSERT_TRUE(started_); }

    static std::string path(std::string_view rel) { return daemon_->dir().path(rel); }

    static void openssl(std::vector<std::string> args) {
        args.insert(args.begin(), "openssl");
        CommandResult r = run_command(args);
        ASSERT_EQ(r.exit_code, 0) << r.output;
    }

    // HS256 (the secret above) or RS256 (the generated key) over the JSON as given.
    static std::string token(std::string_view payload, std::string_view alg = "HS256") {
        std::string input = b64url(R"({"alg":")" + std::string(alg) + R"(","typ":"JWT"})") + "." + b64url(payload);
        daemon_->dir().write("input", input);
        if (alg == "HS256")
            openssl({"dgst", "-sha256", "-hmac", std::string(kSecret), "-binary", "-out", path("sig"), path("input")});
        else
            openssl({"dgst", "-sha256", "-sign", path("rsa.key"), "-binary", "-out", path("sig"), path("input")});
        return input + "." + b64url(daemon_->dir().read("sig"));
    }

    static std::optional<Response> get(std::string_view uri, std::string_view headers = "") {
        return http_get(daemon_->port(), uri, headers);
    }
    static std::optional<Response> get_with(std::string_view uri, std::string_view token, std::string_view more = "") {
        return get(uri, "Authorization: Bearer " + std::string(token) + "\r\n" + std::string(more));
    }

    static UpstreamProcess* upstream_;
    static Daemon* daemon_;
    static bool started_;
};
UpstreamProcess* AuthJwtTest::upstream_ = nullptr;
Daemon* AuthJwtTest::daemon_ = nullptr;
bool AuthJwtTest::started_ = false;

TEST_F(AuthJwtTest, NoTokenGetsTheBareChallenge) {
    auto r = get("/api/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"api\"");
    // Another scheme is no bearer token either.
    r = get("/api/x", "Authorization: Basic dXNlcjpwYXNz\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"api\"");
    r = get("/open/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(AuthJwtTest, InvalidTokenGetsInvalidTokenError) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"garbage", "not-a-token"},
        {"tampered signature", token(R"({"sub":"a"})") + "x"},
        {"expired", token(R"({"sub":"a","exp":1})")},
        {"truncated", token(R"({"sub":"a"})").substr(0, 40)},
        {"alg none", b64url(R"({"alg":"none"})") + "." + b64url(R"({"sub":"a"})") + "."},
    };
    for (const auto& [what, bad] : cases) {
        auto r = get_with("/api/x", bad);
        ASSERT_TRUE(r) << what;
        EXPECT_EQ(r->status, 401) << what;
        EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"api\", error=\"invalid_token\"") << what;
        EXPECT_THAT(r->body, Not(HasSubstr("\"uri\""))) << what;  // never reached the origin
    }
    EXPECT_TRUE(daemon_->wait_for_log("auth_jwt: token rejected (expired)"));
}

TEST_F(AuthJwtTest, OversizedTokenIs401) {
    std::string big = token(R"({"pad":")" + std::string(1200, 'x') + "\"}");
    auto r = get_with("/small/x", big);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"small\", error=\"invalid_token\"");
    r = get_with("/api/x", big);  // the default limit is 8k
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(AuthJwtTest, ClaimsAreForwardedAndReplaceTheClientsHeaders) {
    std::string t = token(R"({"sub":"alice","org":{"team":"blue"},"groups":["dev","ops"]})");
    auto r = get_with("/api/x", t, "X-User: mallory\r\nx-team: red\r\n");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(r->body, HasSubstr(R"("x-user":"alice")"));
    EXPECT_THAT(r->body, HasSubstr(R"("x-team":"blue")"));
    EXPECT_THAT(r->body, HasSubstr(R"("x-groups":"dev,ops")"));
    EXPECT_THAT(r->body, Not(HasSubstr("mallory")));
    EXPECT_THAT(r->body, Not(HasSubstr("red")));
    // The scheme is case-insensitive.
    r = get("/api/x", "Authorization: bEaReR " + t + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(AuthJwtTest, TwoAuthorizationHeadersAreRefused) {
    std::string t = token(R"({"sub":"alice"})");
    auto r = get_with("/api/x", t, "Authorization: Bearer " + t + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"api\", error=\"invalid_token\"");
}

TEST_F(AuthJwtTest, ClaimWithLineBreaksIsRefused) {
    auto r = get_with("/api/x", token(R"({"sub":"alice\r\nX-Admin: 1"})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_THAT(r->body, Not(HasSubstr("x-admin")));
}

TEST_F(AuthJwtTest, Rs256WithPemKeyAndPinnedAlgorithms) {
    std::string exp = std::to_string(now() + 60);
    auto r = get_with("/rsa/x", token(R"({"sub":"rsa-user","exp":)" + exp + "}", "RS256"));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(r->body, HasSubstr(R"("x-user":"rsa-user")"));
    // auth_jwt_require_exp: no exp, no entry.
    r = get_with("/rsa/x", token(R"({"sub":"rsa-user"})", "RS256"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    // HS256 signed with the public key file's text as the secret.
    std::string pem = daemon_->dir().read("conf/rsa.pub");
    std::string input = b64url(R"({"alg":"HS256","typ":"JWT"})") + "." + b64url(R"({"sub":"x","exp":)" + exp + "}");
    daemon_->dir().write("input", input);
    daemon_->dir().write("pem-secret", pem);
    openssl({"dgst", "-sha256", "-mac", "HMAC", "-macopt", "hexkey:" + [&] {
                 std::string hex;
                 for (unsigned char c : pem) hex += "0123456789abcdef"[c >> 4], hex += "0123456789abcdef"[c & 15];
                 return hex;
             }(), "-binary", "-out", path("sig"), path("input")});
    r = get_with("/rsa/x", input + "." + b64url(daemon_->dir().read("sig")));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
}

TEST_F(AuthJwtTest, TokenFromACookie) {
    std::string t = token(R"({"sub":"cookie-user"})");
    auto r = get("/cookie/x", "Cookie: theme=dark; session=" + t + "\r\n");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(r->body, HasSubstr(R"("x-user":"cookie-user")"));
    // The Authorization header is not where this location looks.
    r = get_with("/cookie/x", t);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"cookie\"");
}

TEST_F(AuthJwtTest, RequireAndClaimEquals) {
    auto r = get_with("/admin/x", token(R"({"iss":"https://idp.example","admin":true})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    r = get_with("/admin/x", token(R"({"iss":"https://idp.example","admin":0})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_FALSE(r->has("WWW-Authenticate"));
    r = get_with("/admin/x", token(R"({"iss":"https://idp.example"})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    r = get_with("/admin/x", token(R"({"iss":"https://evil.example","admin":true})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
}

TEST_F(AuthJwtTest, SatisfyAnyGrantsOnAValidToken) {
    auto r = get_with("/either/x", token(R"({"sub":"a"})"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_FALSE(r->has("WWW-Authenticate"));
    r = get("/either/x");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);  // the last denial wins, as in nginx
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"either\"");
}

TEST_F(AuthJwtTest, CachedTokenWorksUntilItExpires) {
    // Expires two seconds from now (exp is exclusive): the first requests
    // verify it and fill the cache, later ones hit it, and once exp passes
    // the cached entry must not keep it alive.
    int64_t exp = now() + 2;
    std::string t = token(R"({"sub":"short","exp":)" + std::to_string(exp) + "}");
    for (int i = 0; i < 5; ++i) {
        auto r = get_with("/api/x", t);
        ASSERT_TRUE(r);
        ASSERT_EQ(r->status, 200) << "request " << i;
        EXPECT_THAT(r->body, HasSubstr(R"("x-user":"short")"));
    }
    while (now() < exp) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the worker's cached clock
    auto r = get_with("/api/x", t);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->header("WWW-Authenticate"), "Bearer realm=\"api\", error=\"invalid_token\"");
}

TEST(AuthJwtConfigTest, KeyFileErrorsNameFileAndLine) {
    Daemon daemon(std::string(kMainConfig) + R"(
events { worker_connections 64; }
http {
    server {
        listen 127.0.0.1:{{PORT}};
        location / {
            auth_jwt "x";
            auth_jwt_key_file bad.jwks;
        }
    }
}
)");
    daemon.dir().write("conf/bad.jwks", R"({"keys":[{"kty":"RSA","n":"AQAB"}]})");
    CommandResult r = daemon.run_cli({"-t"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.output, HasSubstr("invalid or missing \"e\" in a JWK in key file"));
    EXPECT_THAT(r.output, HasSubstr("sluice.conf:11"));
    daemon.dir().write("conf/bad.jwks", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    r = daemon.run_cli({"-t"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.output, HasSubstr("a private key: give the public key only"));
}

}  // namespace
}  // namespace sluice::test
