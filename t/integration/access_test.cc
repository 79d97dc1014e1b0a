// allow/deny, satisfy all|any and API keys against the real daemon, proxying
// to a test upstream that echoes what it received. Key files are written by
// the test with the SHA-256 digests of fixed test keys.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// `printf %s KEY | sha256sum` of the keys the tests present.
constexpr std::string_view kAliceKey = "alice-key";
constexpr std::string_view kBobKey = "bob-key";
constexpr std::string_view kKeyFile =
    "# test consumers\n"
    "alice 72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20\n"
    "\n"
    "bob   9b94dc1a51a38769f135edf04033ad7f2f487b6c25929be7a861cfc1ab10cf98  # second team\n";
// A second file, for a location that replaces the inherited list.
constexpr std::string_view kBobOnlyFile = "bob 9b94dc1a51a38769f135edf04033ad7f2f487b6c25929be7a861cfc1ab10cf98\n";

constexpr std::string_view kConfig = R"(
events { worker_connections 64; }
http {
    log_format consumer '$uri $status [$api_key_consumer]';
    access_log {{PREFIX}}/logs/consumer.log consumer;
    auth_api_key_file {{PREFIX}}/conf/keys;

    server {
        listen 127.0.0.1:{{PORT}};
        proxy_set_header X-Consumer $api_key_consumer;

        location /open/       { proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /allowed/    { deny 127.0.0.2; allow 127.0.0.0/8; deny all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /denied/     { deny 127.0.0.1; allow all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /no-match/   { allow 10.0.0.0/8; deny all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /allow-first/ { allow 127.0.0.1; deny 127.0.0.1; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /deny-first/ { deny 127.0.0.1; allow 127.0.0.1; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /v6-rules-only/ { deny ::1; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }

        location /parent/ {
            deny all;
            proxy_pass http://127.0.0.1:{{UPSTREAM}};
            location /parent/inherits/ { proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
            location /parent/replaces/ { allow 127.0.0.1; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        }

        location /key/ { auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /key-header/ { auth_api_key on header=X-Key; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /key-token/ { auth_api_key on token=$arg_key; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /key-bob-only/ {
            auth_api_key on;
            auth_api_key_file {{PREFIX}}/conf/bob-keys;
            proxy_pass http://127.0.0.1:{{UPSTREAM}};
        }
        location /key-off/ { auth_api_key off; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /key-hidden/ {
            auth_api_key on;
            proxy_set_header X-API-Key "";
            proxy_set_header X-Consumer $api_key_consumer;
            proxy_pass http://127.0.0.1:{{UPSTREAM}};
        }
        # The index file is an internal redirect: the checks run again.
        location /key-static/ { auth_api_key on; root {{PREFIX}}/html; }

        location /all-allow-key/ { allow 127.0.0.1; auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /all-deny-key/  { deny all; auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /any-deny-key/  { satisfy any; deny all; auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /any-allow-key/ { satisfy any; allow 127.0.0.1; auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /any-deny-only/ { satisfy any; deny all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /any-nothing/   { satisfy any; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
    }

    server {
        listen [::]:{{PORT2}} ipv6only=off;
        location /v4-rules/ { allow 127.0.0.1; deny all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /v6-rules/ { allow ::1; deny all; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /mapped-as-v6/ { allow ::ffff:127.0.0.0/104; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
    }
}
)";

std::string key_header(std::string_view key) {
    return "X-API-Key: " + std::string(key) + "\r\n";
}

// GET over IPv6 loopback: the harness's clients speak IPv4 only. Returns the
// status, or 0 when there was no well-formed answer.
int status_over_ipv6(uint16_t port, std::string_view path) {
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    sa.sin6_addr = in6addr_loopback;
    std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    std::string reply;
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
        write(fd, request.data(), request.size()) == ssize_t(request.size())) {
        char buf[4096];
        for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) reply.append(buf, size_t(n));
    }
    close(fd);
    if (reply.size() < 12 || !reply.starts_with("HTTP/1.1 ")) return 0;
    return std::stoi(reply.substr(9, 3));
}

class AccessTest : public ::testing::Test {
protected:
    AccessTest() : daemon_(std::string(kMainConfig) + std::string(kConfig), {{"UPSTREAM", upstream_.port()}}) {
        daemon_.dir().write("conf/keys", kKeyFile);
        daemon_.dir().write("conf/bob-keys", kBobOnlyFile);
        daemon_.dir().write("html/key-static/index.html", "static page\n");
        // Workers started by root run as nobody and must reach the page.
        for (const char* dir : {"", "html", "html/key-static"}) chmod(daemon_.dir().path(dir).c_str(), 0755);
    }

    void SetUp() override {
        ASSERT_TRUE(upstream_.start());
        ASSERT_TRUE(daemon_.start());
    }

    Response get(std::string_view path, std::string_view headers = "") {
        auto response = http_get(daemon_.port(), path, headers);
        return response ? *response : Response{};
    }
    int status(std::string_view path, std::string_view headers = "") { return get(path, headers).status; }

    UpstreamProcess upstream_;
    Daemon daemon_;
};

TEST_F(AccessTest, AllowDenyFirstMatchWins) {
    EXPECT_EQ(status("/open/"), 200);
    EXPECT_EQ(status("/allowed/"), 200);
    EXPECT_EQ(status("/denied/"), 403);
    EXPECT_EQ(status("/no-match/"), 403);
    EXPECT_EQ(status("/allow-first/"), 200);
    EXPECT_EQ(status("/deny-first/"), 403);
    // Only IPv6 rules: nothing to say about an IPv4 client.
    EXPECT_EQ(status("/v6-rules-only/"), 200);
}

TEST_F(AccessTest, DenialIsLoggedAsNginxDoes) {
    size_t from = daemon_.error_log_size();
    Response r = get("/denied/");
    EXPECT_EQ(r.status, 403);
    EXPECT_THAT(r.body, HasSubstr("403 Forbidden"));
    EXPECT_TRUE(daemon_.wait_for_log("access forbidden by rule, client: 127.0.0.1", kDefaultTimeout, from));
}

TEST_F(AccessTest, LocationRulesReplaceInheritedOnes) {
    EXPECT_EQ(status("/parent/"), 403);
    EXPECT_EQ(status("/parent/inherits/"), 403);
    EXPECT_EQ(status("/parent/replaces/"), 200);
}

TEST_F(AccessTest, Ipv4MappedAndIpv6Clients) {
    uint16_t dual = daemon_.port("PORT2");
    // 127.0.0.1 reaches a [::] socket as ::ffff:127.0.0.1: IPv4 rules apply.
    auto mapped = http_get(dual, "/v4-rules/");
    ASSERT_TRUE(mapped);
    EXPECT_EQ(mapped->status, 200);
    EXPECT_EQ(status_over_ipv6(dual, "/v4-rules/"), 403);
    EXPECT_EQ(status_over_ipv6(dual, "/v6-rules/"), 200);
    auto v4_on_v6_rules = http_get(dual, "/v6-rules/");
    ASSERT_TRUE(v4_on_v6_rules);
    EXPECT_EQ(v4_on_v6_rules->status, 403);  // "deny all" is an IPv4 rule too
    // No IPv4 rule at all: the mapped client is matched as the IPv6 address it is.
    auto as_v6 = http_get(dual, "/mapped-as-v6/");
    ASSERT_TRUE(as_v6);
    EXPECT_EQ(as_v6->status, 200);
}

TEST_F(AccessTest, ApiKeyValidMissingWrong) {
    Response ok = get("/key/", key_header(kAliceKey));
    EXPECT_EQ(ok.status, 200) << ok;
    EXPECT_THAT(ok.body, HasSubstr("\"x-consumer\":\"alice\""));
    EXPECT_EQ(get("/key/", key_header(kBobKey)).status, 200);

    Response missing = get("/key/");
    EXPECT_EQ(missing.status, 401);
    EXPECT_EQ(missing.header("WWW-Authenticate"), "APIKey header=\"X-API-Key\"");
    Response wrong = get("/key/", key_header("alice-key2"));
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(wrong.header("WWW-Authenticate"), "APIKey header=\"X-API-Key\"");
    EXPECT_EQ(status("/key/", key_header("")), 401);
    // A digest in place of the key is no key.
    EXPECT_EQ(status("/key/", key_header("72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20")), 401);
    // Two keys: ambiguous, refused even when both are valid.
    EXPECT_EQ(status("/key/", key_header(kAliceKey) + key_header(kBobKey)), 401);
    // Header names are case-insensitive.
    EXPECT_EQ(status("/key/", "x-api-key: alice-key\r\n"), 200);
}

// The key header is forwarded as nginx forwards Authorization; the
// documented proxy_set_header line keeps it from the upstream.
TEST_F(AccessTest, ApiKeyHeaderForwardedUnlessHidden) {
    Response plain = get("/key/", key_header(kAliceKey));
    ASSERT_EQ(plain.status, 200) << plain;
    EXPECT_THAT(plain.body, HasSubstr("\"x-api-key\":\"alice-key\""));
    Response hidden = get("/key-hidden/", key_header(kAliceKey) + "X-Other: kept\r\n");
    ASSERT_EQ(hidden.status, 200) << hidden;
    EXPECT_THAT(hidden.body, AllOf(Not(HasSubstr("x-api-key")), Not(HasSubstr("alice-key")),
                                   HasSubstr("\"x-other\":\"kept\""), HasSubstr("\"x-consumer\":\"alice\"")));
    EXPECT_EQ(status("/key-hidden/"), 401);
}

TEST_F(AccessTest, ApiKeyAcrossAnInternalRedirect) {
    Response page = get("/key-static/", key_header(kBobKey));
    EXPECT_EQ(page.status, 200) << page;
    EXPECT_EQ(page.body, "static page\n");
    EXPECT_EQ(status("/key-static/"), 401);
    EXPECT_EQ(status("/key-static/index.html", key_header("wrong")), 401);
}

TEST_F(AccessTest, ApiKeySources) {
    EXPECT_EQ(status("/key-header/", "X-Key: bob-key\r\n"), 200);
    EXPECT_EQ(status("/key-header/", key_header(kBobKey)), 401);
    EXPECT_EQ(get("/key-header/").header("WWW-Authenticate"), "APIKey header=\"X-Key\"");
    EXPECT_EQ(status("/key-token/?key=alice-key"), 200);
    EXPECT_EQ(status("/key-token/?key=nope"), 401);
    Response none = get("/key-token/", key_header(kAliceKey));
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(none.header("WWW-Authenticate"), "APIKey");
}

TEST_F(AccessTest, ApiKeyFileOfTheLocationReplacesTheInheritedOne) {
    EXPECT_EQ(status("/key-bob-only/", key_header(kBobKey)), 200);
    EXPECT_EQ(status("/key-bob-only/", key_header(kAliceKey)), 401);
}

TEST_F(AccessTest, ConsumerInTheAccessLog) {
    EXPECT_EQ(status("/key/a", key_header(kAliceKey)), 200);
    EXPECT_EQ(status("/key/b", key_header("wrong")), 401);
    EXPECT_EQ(status("/open/c", key_header(kAliceKey)), 200);  // no auth here: no consumer
    std::string log;
    ASSERT_TRUE(wait_until(
        [&] {
            log = daemon_.dir().read("logs/consumer.log");
            return log.find("/open/c") != std::string::npos;
        },
        kDefaultTimeout));
    EXPECT_THAT(log, HasSubstr("/key/a 200 [alice]\n"));
    EXPECT_THAT(log, HasSubstr("/key/b 401 [-]\n"));
    EXPECT_THAT(log, HasSubstr("/open/c 200 [-]\n"));
}

TEST_F(AccessTest, ReloadReadsKeyFilesAgain) {
    ASSERT_EQ(status("/key/", key_header(kAliceKey)), 200);
    // carol replaces alice: sha256("carol-key").
    daemon_.dir().write("conf/keys", "carol 368c3387fc9b5ce6ab156ad952031f52bc9154e89a727020cd314f8910a21823\n");
    ASSERT_TRUE(daemon_.signal(SIGHUP));
    EXPECT_TRUE(wait_until([&] { return status("/key/", key_header("carol-key")) == 200; }, kDefaultTimeout));
    EXPECT_EQ(status("/key/", key_header(kAliceKey)), 401);
}

TEST_F(AccessTest, SatisfyAllNeedsEveryHandler) {
    EXPECT_EQ(status("/all-allow-key/"), 401);
    EXPECT_EQ(status("/all-allow-key/", key_header(kAliceKey)), 200);
    // The address is denied first: a valid key does not help.
    EXPECT_EQ(status("/all-deny-key/", key_header(kAliceKey)), 403);
    EXPECT_EQ(status("/all-deny-key/"), 403);
}

TEST_F(AccessTest, SatisfyAnyNeedsOneHandler) {
    // deny, then a valid key: granted.
    Response granted = get("/any-deny-key/", key_header(kAliceKey));
    EXPECT_EQ(granted.status, 200) << granted;
    EXPECT_THAT(granted.body, HasSubstr("\"x-consumer\":\"alice\""));
    // deny (403), then no key (401): the last denial answers, as in nginx.
    Response neither = get("/any-deny-key/");
    EXPECT_EQ(neither.status, 401);
    EXPECT_EQ(neither.header("WWW-Authenticate"), "APIKey header=\"X-API-Key\"");
    EXPECT_EQ(status("/any-deny-key/", key_header("wrong")), 401);
    // allow grants first: the key is not even looked at.
    EXPECT_EQ(status("/any-allow-key/"), 200);
    EXPECT_EQ(status("/any-allow-key/", key_header("wrong")), 200);
    // Only a denial: it answers, and the engine logs it.
    size_t from = daemon_.error_log_size();
    EXPECT_EQ(status("/any-deny-only/"), 403);
    EXPECT_TRUE(daemon_.wait_for_log("access forbidden by rule", kDefaultTimeout, from));
    // No handler has anything to say: open.
    EXPECT_EQ(status("/any-nothing/"), 200);
}

TEST_F(AccessTest, KeepAliveAfterDenials) {
    Conn c(daemon_.port());
    ASSERT_TRUE(c.connected());
    for (std::string_view path : {"/denied/", "/key/", "/any-deny-key/"}) {
        ASSERT_TRUE(c.send("GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        EXPECT_GE(r->status, 401) << path;
        EXPECT_TRUE(r->keep_alive()) << path;
    }
    ASSERT_TRUE(c.send("GET /key/ HTTP/1.1\r\nHost: localhost\r\nX-API-Key: bob-key\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_THAT(r->body, HasSubstr("\"x-consumer\":\"bob\""));
}

// ---- satisfy with auth_jwt: a grant after a 401 ----------------------------

constexpr std::string_view kJwks =
    R"({"keys":[{"kty":"oct","k":"YWNjZXNzLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmM","alg":"HS256"}]})";
// HS256 over {"sub":"jwt-user"} with the key above.
constexpr std::string_view kJwt =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqd3QtdXNlciJ9.QmoMYTr_UFYsN7p4Ebgblj9kVig9WitTaiNemT1qrgk";

constexpr std::string_view kJwtConfig = R"(
events { worker_connections 64; }
http {
    access_log off;
    auth_api_key_file {{PREFIX}}/conf/keys;
    auth_jwt_key_file {{PREFIX}}/conf/jwks;
    server {
        listen 127.0.0.1:{{PORT}};
        location /any/ { satisfy any; auth_api_key on; auth_jwt "api"; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /all/ { auth_api_key on; auth_jwt "api"; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
    }
}
)";

class SatisfyJwtTest : public ::testing::Test {
protected:
    SatisfyJwtTest() : daemon_(std::string(kMainConfig) + std::string(kJwtConfig), {{"UPSTREAM", upstream_.port()}}) {
        daemon_.dir().write("conf/keys", kKeyFile);
        daemon_.dir().write("conf/jwks", kJwks);
    }
    void SetUp() override {
        ASSERT_TRUE(upstream_.start());
        ASSERT_TRUE(daemon_.start());
    }
    Response get(std::string_view path, std::string_view headers = "") {
        auto response = http_get(daemon_.port(), path, headers);
        return response ? *response : Response{};
    }

    UpstreamProcess upstream_;
    Daemon daemon_;
};

const std::string kBearer = "Authorization: Bearer " + std::string(kJwt) + "\r\n";

TEST_F(SatisfyJwtTest, AnyForgetsTheEarlierChallengeOnAGrant) {
    // auth_api_key denies (401 + challenge), then auth_jwt grants.
    Response jwt_only = get("/any/", kBearer);
    EXPECT_EQ(jwt_only.status, 200) << jwt_only;
    EXPECT_FALSE(jwt_only.has("WWW-Authenticate")) << jwt_only;
    EXPECT_EQ(get("/any/", key_header(kAliceKey)).status, 200);
    // Neither: the last denial (auth_jwt's 401) answers, with both challenges.
    Response neither = get("/any/");
    EXPECT_EQ(neither.status, 401);
    EXPECT_EQ(neither.count("WWW-Authenticate"), 2) << neither;
}

TEST_F(SatisfyJwtTest, AllNeedsBoth) {
    EXPECT_EQ(get("/all/", kBearer).status, 401);
    EXPECT_EQ(get("/all/", key_header(kAliceKey)).status, 401);
    Response both = get("/all/", kBearer + key_header(kAliceKey));
    EXPECT_EQ(both.status, 200) << both;
    EXPECT_FALSE(both.has("WWW-Authenticate"));
}

// ---- configuration errors, as `sluice -t` reports them -----------------------

struct CheckResult {
    bool accepted;
    std::string output;  // the config's path replaced by CONF, the prefix by PREFIX
};

CheckResult check_config(std::string_view http_body, std::string_view key_file = "") {
    Daemon daemon(std::string(kMainConfig) + "events {}\nhttp {\n" + std::string(http_body) + "}\n");
    if (!key_file.empty()) daemon.dir().write("conf/keys", key_file);
    CommandResult result = daemon.run_cli({"-t"});
    std::string out = result.output;
    for (const std::string& s : {daemon.conf_path(), daemon.prefix()})
        for (size_t at; (at = out.find(s)) != std::string::npos;)
            out.replace(at, s.size(), s == daemon.prefix() ? "PREFIX" : "CONF");
    return {result.exit_code == 0, out};
}

// The http{} body starts on line 6 of the checked config.
TEST(AccessConfig, BadRulesNameFileAndLine) {
    for (std::string bad : {"10.0.0.1/33", "::1/129", "10.0.0", "10.0.0.1/", "nobody", "ALL", "10.0.0.0/8/8"}) {
        CheckResult r = check_config("server {\n  location / {\n    allow " + bad + ";\n  }\n}\n");
        EXPECT_FALSE(r.accepted) << bad;
        EXPECT_THAT(r.output, HasSubstr("invalid parameter \"" + bad + "\" in CONF:8")) << bad;
    }
    CheckResult two = check_config("deny 10.0.0.1 10.0.0.2;\n");
    EXPECT_FALSE(two.accepted);
    EXPECT_THAT(two.output, HasSubstr("invalid number of arguments in \"deny\" directive in CONF:6"));
    CheckResult satisfy = check_config("satisfy some;\n");
    EXPECT_FALSE(satisfy.accepted);
    EXPECT_THAT(satisfy.output, HasSubstr("invalid value \"some\" in \"satisfy\" directive, it must be one of \"all\", "
                                          "\"any\" in CONF:6"));
}

TEST(AccessConfig, HostBitsAreAWarning) {
    CheckResult r = check_config("allow 10.0.0.1/8;\ndeny all;\n");
    EXPECT_TRUE(r.accepted) << r.output;
    EXPECT_THAT(r.output, HasSubstr("low address bits of 10.0.0.1/8 are meaningless in CONF:6"));
}

TEST(AccessConfig, KeyFileErrors) {
    CheckResult missing = check_config("auth_api_key_file nosuch/keys;\n");
    EXPECT_FALSE(missing.accepted);
    EXPECT_THAT(missing.output,
                HasSubstr("open() \"PREFIX/nosuch/keys\" failed (2: No such file or directory) in CONF:6"));

    CheckResult bad_line =
        check_config("\nauth_api_key_file conf/keys;\n", "# ok\nalice plain-key-pasted-by-mistake\n");
    EXPECT_FALSE(bad_line.accepted);
    EXPECT_THAT(bad_line.output,
                HasSubstr("invalid API key file \"PREFIX/conf/keys\", line 2: the SHA-256 digest of consumer \"alice\" "
                          "must be 64 hex digits in CONF:7"));
    EXPECT_THAT(bad_line.output, Not(HasSubstr("plain-key-pasted")));

    CheckResult no_file = check_config("server {\n  location / {\n    auth_api_key on;\n  }\n}\n");
    EXPECT_FALSE(no_file.accepted);
    EXPECT_THAT(no_file.output, HasSubstr("\"auth_api_key\" is on but no \"auth_api_key_file\" applies in CONF:8"));

    for (std::string bad :
         {"auth_api_key yes;", "auth_api_key on header=;", "auth_api_key on header=X:Y;",
          "auth_api_key on token=arg_key;", "auth_api_key on realm=x;", "auth_api_key off header=X;"}) {
        CheckResult r = check_config(bad + "\n", std::string(kKeyFile));
        EXPECT_FALSE(r.accepted) << bad;
        EXPECT_THAT(r.output, HasSubstr("in CONF:6")) << bad;
    }
    CheckResult good = check_config("auth_api_key on token=$http_x_key;\nauth_api_key_file conf/keys;\n", kKeyFile);
    EXPECT_TRUE(good.accepted) << good.output;
}

}  // namespace
}  // namespace sluice::test
