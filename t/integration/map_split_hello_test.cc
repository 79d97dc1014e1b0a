// map, split_clients and the example hello module against the real daemon.
// Expected values were checked against nginx 1.22 with the same blocks.
#include <sys/stat.h>

#include <string>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

constexpr std::string_view kConfig = R"(
events { worker_connections 64; }
http {
    access_log off;

    map $http_x_api_version $backend_name {
        default                  v1-backend;
        2                        v2-backend;
        ""                       no-version;
        ~^3\.(?<minor>[0-9]+)$   v3-backend-minor-$minor;
        ~*^beta-(.*)$            beta-$1;
    }

    map $host $site {
        hostnames;
        default          other;
        example.com      exact;
        *.example.com    sub;
        www.example.*    tail;
        .example.org     org;
    }

    split_clients "$http_x_request_id" $bucket {
        20%  canary;
        30%  blue;
        *    stable;
    }

    server {
        listen 127.0.0.1:{{PORT}};
        root {{PREFIX}}/html;

        location = /version { return 200 "$backend_name"; }
        location = /minor   { return 200 "$backend_name:$minor"; }
        location = /twice   { return 200 "$backend_name $backend_name"; }
        location = /site    { return 200 "$site"; }
        location = /bucket  { return 200 "$bucket"; }

        location /hello/ {
            hello_require_header X-Token secret;
            add_header X-Greeting "$hello_greeting";
        }
        location = /greet { return 200 "$hello_greeting"; }
        location = /open  { return 200 "open"; }
    }
}
)";

class MapSplitHelloTest : public ::testing::Test {
protected:
    MapSplitHelloTest() : daemon_(std::string(kMainConfig) + std::string(kConfig)) {
        daemon_.dir().write("html/hello/index.html", "hello page\n");
        // Workers started by root run as nobody and must reach the page.
        for (const char* dir : {"", "html", "html/hello"}) chmod(daemon_.dir().path(dir).c_str(), 0755);
    }

    void SetUp() override { ASSERT_TRUE(daemon_.start()); }

    // The body of a 200 response to GET path, or a failure naming the status.
    std::string body(std::string_view path, std::string_view headers = "") {
        auto response = http_get(daemon_.port(), path, headers);
        if (!response) return "<no response>";
        if (response->status != 200) return "<status " + std::to_string(response->status) + ">";
        return response->body;
    }

    Daemon daemon_;
};

TEST_F(MapSplitHelloTest, MapSelectsTheBackendName) {
    EXPECT_EQ(body("/version", "X-Api-Version: 2\r\n"), "v2-backend");
    EXPECT_EQ(body("/version", "X-Api-Version: 7\r\n"), "v1-backend");
    EXPECT_EQ(body("/version"), "no-version");  // no header: the empty string, an exact key
}

TEST_F(MapSplitHelloTest, MapRegexCapturesInValues) {
    EXPECT_EQ(body("/version", "X-Api-Version: 3.14\r\n"), "v3-backend-minor-14");
    EXPECT_EQ(body("/version", "X-Api-Version: BETA-Green\r\n"), "beta-Green");  // "~*"
    // The named group is a variable the rest of the request can use.
    EXPECT_EQ(body("/minor", "X-Api-Version: 3.5\r\n"), "v3-backend-minor-5:5");
    // A regex that does not match the whole value falls through to the default.
    EXPECT_EQ(body("/version", "X-Api-Version: 3.x\r\n"), "v1-backend");
}

TEST_F(MapSplitHelloTest, MapValueIsCachedPerRequest) {
    EXPECT_EQ(body("/twice", "X-Api-Version: 3.1\r\n"), "v3-backend-minor-1 v3-backend-minor-1");
}

TEST_F(MapSplitHelloTest, MapHostnames) {
    auto site = [&](std::string_view host) { return body("/site", "Host: " + std::string(host) + "\r\n"); };
    EXPECT_EQ(site("example.com"), "exact");
    EXPECT_EQ(site("EXAMPLE.com"), "exact");
    EXPECT_EQ(site("api.example.com"), "sub");
    EXPECT_EQ(site("www.example.com"), "sub");  // "*.example.com" before "www.example.*"
    EXPECT_EQ(site("www.example.net"), "tail");
    EXPECT_EQ(site("example.org"), "org");
    EXPECT_EQ(site("a.b.example.org"), "org");
    EXPECT_EQ(site("example.net"), "other");
    EXPECT_EQ(site("example.com:8080"), "exact");  // $host has no port
}

TEST_F(MapSplitHelloTest, SplitClientsRoutesRequestIdsToTheirBuckets) {
    // nginx puts these ids in these buckets with the same split_clients block.
    const std::vector<std::pair<std::string, std::string>> expected = {
        {"req-0", "stable"}, {"req-1", "canary"},  {"req-2", "canary"}, {"req-3", "blue"},
        {"req-4", "stable"}, {"req-10", "blue"},   {"req-13", "canary"}, {"req-17", "blue"},
        {"req-19", "blue"},  {"req-20", "canary"}, {"req-21", "stable"}, {"req-23", "blue"},
    };
    for (const auto& [id, bucket] : expected)
        EXPECT_EQ(body("/bucket", "X-Request-Id: " + id + "\r\n"), bucket) << id;
}

TEST_F(MapSplitHelloTest, SplitClientsIsStablePerKey) {
    for (int i = 0; i < 3; ++i) EXPECT_EQ(body("/bucket", "X-Request-Id: req-1\r\n"), "canary");
}

TEST_F(MapSplitHelloTest, HelloRefusesWithoutTheHeader) {
    auto missing = http_get(daemon_.port(), "/hello/");
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 403);
    EXPECT_FALSE(missing->has("X-Hello"));

    auto wrong = http_get(daemon_.port(), "/hello/", "X-Token: guess\r\n");
    ASSERT_TRUE(wrong);
    EXPECT_EQ(wrong->status, 403);
}

TEST_F(MapSplitHelloTest, HelloAnswersWithTheHeaderAndGreeting) {
    auto response = http_get(daemon_.port(), "/hello/", "X-Token: secret\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200) << *response;
    EXPECT_EQ(response->header("X-Hello"), "world");
    EXPECT_EQ(response->count("X-Hello"), 1);
    EXPECT_EQ(response->header("X-Greeting"), "hello, 127.0.0.1");
    EXPECT_EQ(response->body, "hello page\n");
}

TEST_F(MapSplitHelloTest, HelloVariableAndUnconfiguredLocations) {
    EXPECT_EQ(body("/greet"), "hello, 127.0.0.1");
    auto open = http_get(daemon_.port(), "/open");
    ASSERT_TRUE(open);
    EXPECT_EQ(open->status, 200);
    EXPECT_FALSE(open->has("X-Hello"));  // the module acts only where it is configured
}

// ---- configuration errors, as `sluice -t` reports them -----------------------

std::string check_config(std::string_view http_body) {
    Daemon daemon(std::string(kMainConfig) + "events {}\nhttp {\n" + std::string(http_body) + "}\n");
    CommandResult result = daemon.run_cli({"-t"});
    if (result.exit_code == 0) return "<accepted>";
    std::string path = daemon.conf_path();
    std::string& out = result.output;
    for (size_t at; (at = out.find(path)) != std::string::npos;) out.replace(at, path.size(), "CONF");
    return out;
}

TEST(MapSplitHelloConfig, ErrorsNameFileAndLine) {
    using ::testing::AllOf;
    using ::testing::HasSubstr;
    EXPECT_THAT(check_config("map $uri $a {\n  x 1;\n  x 2;\n}\n"), HasSubstr("conflicting parameter \"x\" in CONF:8"));
    EXPECT_THAT(check_config("map $uri $a {\n  ~^(x 1;\n}\n"),
                AllOf(HasSubstr("pcre2_compile() failed: missing closing parenthesis in \"^(x\""),
                      HasSubstr(" in CONF:7")));
    EXPECT_THAT(check_config("map $uri $a {\n  x 1 2;\n}\n"),
                HasSubstr("invalid number of the map parameters in CONF:7"));
    EXPECT_THAT(check_config("split_clients $uri $s {\n  60% a;\n  50% b;\n}\n"),
                HasSubstr("percent total is greater than 100% in CONF:6"));
    EXPECT_THAT(check_config("server {\n  location / {\n    hello_require_header X-A;\n  }\n}\n"),
                HasSubstr("invalid number of arguments in \"hello_require_header\" directive in CONF:8"));
    EXPECT_THAT(check_config("hello_require_header X-A b;\n"),
                HasSubstr("\"hello_require_header\" directive is not allowed here in CONF:6"));
}

// As in nginx, a map may come after the directives that use its variable, and
// a variable nothing defines is reported where it is used.
TEST(MapSplitHelloConfig, MapDefinedAfterItsUse) {
    EXPECT_EQ(check_config("server {\n  listen 127.0.0.1:{{PORT}};\n  location / { return 200 $late; }\n}\n"
                           "map $uri $late { default 1; }\n"),
              "<accepted>");
    EXPECT_THAT(check_config("server {\n  listen 127.0.0.1:{{PORT}};\n  location / { return 200 $nosuch; }\n}\n"),
                ::testing::HasSubstr("unknown \"nosuch\" variable in CONF:8"));
}

}  // namespace
}  // namespace sluice::test
