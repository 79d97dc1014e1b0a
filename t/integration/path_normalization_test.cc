// Path normalization at the perimeter: the gateway guards /admin/ with an API
// key and leaves /public/ open, in front of an origin (test_upstream) that
// echoes the path it got. No encoding, case, dot-segment, slash, semicolon,
// backslash or absolute-form trick may bring a request without the key to
// the origin under /admin.
//
// "Under /admin" is judged the way the most lenient backends read a path
// (lenient_view below): percent-decoding repeated until nothing changes, "\"
// as "/", ";parameters" dropped from each segment (Tomcat, Jetty, Spring),
// dot segments resolved, empty segments dropped, case folded (IIS, case-
// insensitive file systems). Every path the origin logs (test_upstream --log)
// is checked that way, not only the ones the test expects.
//
// X-Original-URL and X-Rewrite-URL (honoured by some IIS and Symfony setups)
// never change how the gateway routes a request.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// `printf %s KEY | sha256sum` of the key the tests present.
constexpr std::string_view kKey = "alice-key";
constexpr std::string_view kKeyFile = "alice 72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20\n";

constexpr std::string_view kConfig = R"(
worker_processes 1;
events { worker_connections 64; }
http {
    access_log off;
    auth_api_key_file {{PREFIX}}/conf/keys;
    server {
        listen 127.0.0.1:{{PORT}};
        server_name gw.test;
        location /admin/ { auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location = /admin { auth_api_key on; proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
        location /public/ { proxy_pass http://127.0.0.1:{{UPSTREAM}}; }
    }
}
)";

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = char(std::tolower(static_cast<unsigned char>(c)));
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

std::string percent_decode(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out += char(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

// The path as the most lenient backend reads it (see the top of the file).
std::string lenient_view(std::string_view target) {
    std::string path(target.substr(0, target.find('?')));
    for (int i = 0; i < 8; ++i) {
        std::string decoded = percent_decode(path);
        if (decoded == path) break;
        path = decoded;
    }
    for (char& c : path) {
        if (c == '\\') c = '/';
        c = char(std::tolower(static_cast<unsigned char>(c)));
    }
    std::vector<std::string> segments;
    size_t start = 0;
    while (start <= path.size()) {
        size_t slash = path.find('/', start);
        std::string segment = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        segment = segment.substr(0, segment.find(';'));
        if (segment == "..") {
            if (!segments.empty()) segments.pop_back();
        } else if (!segment.empty() && segment != ".") {
            segments.push_back(segment);
        }
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    std::string out;
    for (const std::string& s : segments) out += "/" + s;
    return out.empty() ? "/" : out;
}

bool under_admin(std::string_view target) {
    std::string view = lenient_view(target);
    return view == "/admin" || view.starts_with("/admin/");
}

// The targets of the requests in the origin's log ("C REQ METHOD TARGET VERSION body=N").
std::vector<std::string> logged_targets(std::string_view log) {
    std::vector<std::string> out;
    while (!log.empty()) {
        size_t nl = log.find('\n');
        std::string_view line = log.substr(0, nl);
        log.remove_prefix(nl == std::string_view::npos ? log.size() : nl + 1);
        size_t req = line.find(" REQ ");
        if (req == std::string_view::npos) continue;
        std::string_view rest = line.substr(req + 5);
        rest.remove_prefix(rest.find(' ') + 1);  // the method
        out.emplace_back(rest.substr(0, rest.find(' ')));
    }
    return out;
}

struct Trick {
    const char* target;  // the request-target, sent as is
    int status;          // what the gateway answers without a key
    const char* forwarded = nullptr;  // with 200: the target the origin gets
};

class PathNormalization : public ::testing::Test {
protected:
    void SetUp() override {
        log_path_ = dir_.path("origin.log");
        upstream_ = std::make_unique<UpstreamProcess>(std::vector<std::string>{"--log", log_path_});
        ASSERT_TRUE(upstream_->start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kConfig),
                                           ConfigVars{{"UPSTREAM", upstream_->port()}});
        daemon_->dir().write("conf/keys", kKeyFile);
        ASSERT_TRUE(daemon_->start());
        port_ = daemon_->port();
    }

    std::optional<Response> get(std::string_view target, std::string_view headers = "") {
        return http_request(port_, "GET " + std::string(target) + " HTTP/1.1\r\nHost: gw.test\r\n" +
                                       std::string(headers) + "Connection: close\r\n\r\n");
    }

    // Every request the origin has logged so far, with a marker request
    // first so that nothing still in flight is missed.
    std::vector<std::string> origin_targets() {
        const std::string marker = "/public/marker-" + std::to_string(++markers_);
        auto r = get(marker);
        EXPECT_TRUE(r && r->status == 200) << "marker";
        std::vector<std::string> targets;
        wait_until(
            [&] {
                targets = logged_targets(read_file(log_path_));
                return !targets.empty() && targets.back() == marker;
            },
            5s);
        return targets;
    }

    TempDir dir_{"sluice-paths"};
    std::string log_path_;
    std::unique_ptr<UpstreamProcess> upstream_;
    std::unique_ptr<Daemon> daemon_;
    uint16_t port_ = 0;
    int markers_ = 0;
};

// The checker itself: what it must call "under /admin", and what not.
TEST(LenientView, ReadsPathsTheWayLenientBackendsDo) {
    for (const char* yes : {"/admin", "/admin/", "/ADMIN/x", "/public/../admin/x", "/public/..;/admin/x",
                            "/public/%252e%252e/admin", "/public/..%5cadmin", "//admin", "/public/..\\admin",
                            "/public/..%3b/admin", "/%61dmin/x", "/x/../../admin?y"})
        EXPECT_TRUE(under_admin(yes)) << yes;
    for (const char* no : {"/public/admin", "/administrator", "/public/x?/../admin", "/", "/public/..admin"})
        EXPECT_FALSE(under_admin(no)) << no;
}

TEST_F(PathNormalization, NoTrickReachesAdminWithoutTheKey) {
    const Trick tricks[] = {
        // The plain ways in: the key is asked for.
        {"/admin/secret", 401},
        {"/admin", 401},
        {"/admin?x=1", 401},
        {"/admin/", 401},
        // Case: locations are case-sensitive, as paths are (RFC 3986 6.2.2.1);
        // no location matches, so nothing is forwarded.
        {"/ADMIN/secret", 404},
        {"/Admin/secret", 404},
        {"/public/../ADMIN/secret", 404},
        // Percent-encoding of unreserved characters is decoded before matching
        // (RFC 3986 6.2.2.2).
        {"/%61dmin/secret", 401},
        {"/%61%64%6d%69%6e/secret", 401},
        {"/%41dmin/secret", 404},
        // Encoded slash, backslash and dots: ambiguous, refused.
        {"/admin%2fsecret", 400},
        {"/admin%2Fsecret", 400},
        {"/%2fadmin/secret", 400},
        {"/public%2f..%2fadmin/secret", 400},
        {"/public/..%2fadmin/secret", 400},
        {"/public/..%5cadmin/secret", 400},
        {"/public/..%5Cadmin/secret", 400},
        {"/public/%2e%2e/admin/secret", 400},
        {"/public/%2E%2E/admin/secret", 400},
        {"/public/.%2e/admin/secret", 400},
        {"/public/%2e./admin/secret", 400},
        {"/public/%2e/../admin/secret", 400},
        // Double encoding: "%25" before an escape of a delimiter is refused.
        {"/public/%252e%252e/admin/secret", 400},
        {"/public/%252E%252E/admin/secret", 400},
        {"/public/..%252fadmin/secret", 400},
        {"/public/..%255cadmin/secret", 400},
        {"/public/%25252e%25252e/admin/secret", 400},
        {"/public/%25%32%65%25%32%65/admin/secret", 400},
        {"/%2561dmin/secret", 404},
        // Malformed and overlong escapes.
        {"/public/%%32%65%%32%65/admin/secret", 400},
        {"/public/%u002e%u002e/admin/secret", 400},
        {"/public/%c0%ae%c0%ae/admin/secret", 200, "/public/%C0%AE%C0%AE/admin/secret"},
        {"/public/..%00/admin/secret", 400},
        // Dot segments are resolved before matching (RFC 3986 5.2.4).
        {"/public/../admin/secret", 401},
        {"/./admin/secret", 401},
        {"/admin/./secret", 401},
        {"/public/x/../../admin/secret", 401},
        {"/public/../../admin/secret", 400},
        {"/PUBLIC/../admin/secret", 401},
        {"/public/.../admin/secret", 200, "/public/.../admin/secret"},
        // Slashes are merged before matching.
        {"//admin/secret", 401},
        {"///admin///secret", 401},
        {"/public//../admin/secret", 401},
        // Path parameters: dot segments with parameters are refused; others
        // are segment bytes and match no /admin location.
        {"/public/..;/admin/secret", 400},
        {"/public/..;jsessionid=x/admin/secret", 400},
        {"/public/.;/admin/secret", 400},
        {"/public/..%3b/admin/secret", 400},
        {"/public/..%3B/admin/secret", 400},
        {"/admin;x/secret", 404},
        {"/admin;/secret", 404},
        {"/public;x/../admin/secret", 401},
        {"/public/;/../../admin/secret", 401},
        // Backslash, raw: not a URI character.
        {"/public/..\\admin\\secret", 400},
        {"/admin\\secret", 400},
        // The query never takes part in the path.
        {"/public/x?/../../admin/secret", 200, "/public/x?/../../admin/secret"},
        {"/public/x%3f/../../admin/secret", 401},
        {"/public/x%23/../../admin/secret", 401},
        // Absolute-form: the same normalization applies to its path.
        {"http://gw.test/admin/secret", 401},
        {"http://gw.test/public/../admin/secret", 401},
        {"http://gw.test/public/..;/admin/secret", 400},
        {"http://gw.test//admin/secret", 401},
        {"http://gw.test/%61dmin/secret", 401},
        {"http://gw.test\\admin", 400},
        {"http://evil.test/admin/secret", 401},
        // Whitespace and fragments.
        {"/admin/secret#x", 400},
        {"/public/..%09/admin/secret", 200, "/public/..%09/admin/secret"},
        {"/public/..%20/admin/secret", 200, "/public/..%20/admin/secret"},
    };
    for (const Trick& t : tricks) {
        auto r = get(t.target);
        ASSERT_TRUE(r) << t.target;
        EXPECT_EQ(r->status, t.status) << t.target << "\n" << *r;
        if (t.forwarded) {
            EXPECT_THAT(r->body, HasSubstr("\"uri\":\"" + std::string(t.forwarded) + "\"")) << t.target;
        }
    }
    // Whatever the answers were, nothing under /admin reached the origin.
    const std::vector<std::string> seen = origin_targets();
    for (const std::string& target : seen) EXPECT_FALSE(under_admin(target)) << target;
    // And the forwarded ones did arrive (the log is not simply empty).
    for (const Trick& t : tricks) {
        if (t.forwarded) {
            EXPECT_THAT(seen, ::testing::Contains(std::string(t.forwarded)));
        }
    }
}

TEST_F(PathNormalization, WithTheKeyAdminIsReachedAndTheCheckerSeesIt) {
    const std::string key = "X-API-Key: " + std::string(kKey) + "\r\n";
    for (const char* target : {"/admin/secret", "/public/../admin/secret", "/%61dmin/secret", "//admin/secret"}) {
        auto r = get(target, key);
        ASSERT_TRUE(r) << target;
        EXPECT_EQ(r->status, 200) << target;
        EXPECT_THAT(r->body, HasSubstr("\"uri\":\"/admin/secret\"")) << target;
    }
    const std::vector<std::string> seen = origin_targets();
    EXPECT_EQ(std::count_if(seen.begin(), seen.end(), under_admin), 4);
}

// Routing uses the request-target only: headers that some backends take for
// the URL change nothing at the gateway. (The proxy still forwards them to
// the origin unchanged; a backend that honours them would route by them.
// The cache wiring strips them on cacheable requests: kUnkeyedRiskHeaders.)
TEST_F(PathNormalization, OriginalUrlHeadersNeverRoute) {
    for (const char* name : {"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Path"}) {
        const std::string to_admin = std::string(name) + ": /admin/secret\r\n";
        auto open = get("/public/page", to_admin);
        ASSERT_TRUE(open) << name;
        EXPECT_EQ(open->status, 200) << name;
        EXPECT_THAT(open->body, HasSubstr("\"uri\":\"/public/page\"")) << name;

        const std::string to_public = std::string(name) + ": /public/page\r\n";
        auto locked = get("/admin/secret", to_public);
        ASSERT_TRUE(locked) << name;
        EXPECT_EQ(locked->status, 401) << name;
    }
    const std::vector<std::string> seen = origin_targets();
    for (const std::string& target : seen) EXPECT_FALSE(under_admin(target)) << target;
}

}  // namespace
}  // namespace sluice::test
