// The static module against the real daemon: root, alias, index, directory
// redirects, validators and conditional requests, HEAD, error statuses, and
// URIs that try to leave the document root.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <regex>
#include <string>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kStaticConfig = R"(
events { worker_connections 64; }
http {
    types {
        text/html html;
        text/css css;
        text/plain txt;
        application/json json;
    }
    default_type application/octet-stream;
    access_log off;
    server {
        listen 127.0.0.1:{{PORT}};
        server_name localhost;
        root {{PREFIX}}/html;
        location /files/ { alias {{PREFIX}}/data/; }
        location /al { alias {{PREFIX}}/data/; }
        location /quiet/ { log_not_found off; }
        location = /idx/index.html { root {{PREFIX}}/other; }
        location /multi/ { index missing.html second.html; }
        location /slashroot/ { root {{PREFIX}}/html/; }
        location /vars/ { add_header X-File $request_filename; add_header X-Root $document_root; }
    }
}
)";

constexpr std::string_view kSecret = "TOPSECRET-outside-the-root";

std::string big_body() {
    std::string s;
    s.reserve(1 << 20);
    for (int i = 0; s.size() < (1 << 20) + 123; ++i) s += "line " + std::to_string(i) + "\n";
    return s;
}

void write_tree(const TempDir& d) {
    // Workers started by root run as nobody: they must be able to enter the prefix.
    chmod(d.path().c_str(), 0755);
    d.write("html/index.html", "root index\n");
    d.write("html/a.txt", "alpha\n");
    d.write("html/style.css", "body{}\n");
    d.write("html/data.JSON", "{}\n");
    d.write("html/noext", "no extension\n");
    d.write("html/dir/index.html", "dir index\n");
    d.write("html/empty/other.txt", "not an index\n");
    d.write("html/hello world.txt", "spaced\n");
    d.write("html/multi/second.html", "second index\n");
    d.write("html/idx/index.html", "html idx\n");
    d.write("html/quiet/.keep", "");
    d.write("html/zero.txt", "");
    d.write("html/big.bin", big_body());
    d.write("html/slashroot/x.txt", "slash root\n");
    d.write("html/vars/x.txt", "vars\n");
    d.write("other/idx/index.html", "other idx\n");
    d.write("data/a.txt", "aliased\n");
    d.write("secret.txt", kSecret);
}

class StaticTest : public ::testing::Test {
protected:
    StaticTest() : daemon_(std::string(kMainConfig) + std::string(kStaticConfig)) { write_tree(daemon_.dir()); }

    void SetUp() override { ASSERT_TRUE(daemon_.start()); }

    uint16_t port() const { return daemon_.port(); }

    std::optional<Response> raw(std::string_view request, bool head = false) {
        return http_request(port(), request, kDefaultTimeout, head);
    }

    std::string path(std::string_view rel) const { return daemon_.dir().path(rel); }

    Daemon daemon_;
};

std::string http_date(time_t t) {
    char buf[64];
    tm g;
    gmtime_r(&t, &g);
    strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &g);
    return buf;
}

TEST_F(StaticTest, ServesFileWithTypeLengthAndValidators) {
    auto r = http_get(port(), "/a.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "alpha\n");
    EXPECT_EQ(r->header("Content-Type"), "text/plain");
    EXPECT_EQ(r->header("Content-Length"), "6");

    struct stat st;
    ASSERT_EQ(stat(path("html/a.txt").c_str(), &st), 0);
    char etag[64];
    snprintf(etag, sizeof etag, "\"%llx-%llx\"", static_cast<unsigned long long>(st.st_mtime),
             static_cast<unsigned long long>(st.st_size));
    EXPECT_EQ(r->header("ETag"), etag);
    EXPECT_EQ(r->header("Last-Modified"), http_date(st.st_mtime));
}

TEST_F(StaticTest, ContentTypeFromExtensionOrDefault) {
    EXPECT_EQ(http_get(port(), "/style.css")->header("Content-Type"), "text/css");
    EXPECT_EQ(http_get(port(), "/index.html")->header("Content-Type"), "text/html");
    // Extensions match case-insensitively, as in nginx.
    EXPECT_EQ(http_get(port(), "/data.JSON")->header("Content-Type"), "application/json");
    auto r = http_get(port(), "/noext");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Content-Type"), "application/octet-stream");
}

TEST_F(StaticTest, LargeFileArrivesWhole) {
    auto r = http_get(port(), "/big.bin", "", 10s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    std::string expected = big_body();
    EXPECT_EQ(r->header("Content-Length"), std::to_string(expected.size()));
    EXPECT_TRUE(r->body == expected) << "body of " << r->body.size() << " bytes differs";
}

TEST_F(StaticTest, EmptyFile) {
    auto r = http_get(port(), "/zero.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Content-Length"), "0");
    EXPECT_EQ(r->body, "");
}

TEST_F(StaticTest, FileNameWithEncodedSpace) {
    auto r = http_get(port(), "/hello%20world.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "spaced\n");
}

TEST_F(StaticTest, MissingFileIs404AndLogged) {
    size_t from = daemon_.error_log_size();
    auto r = http_get(port(), "/missing.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    std::string expected = "open() \"" + path("html/missing.txt") + "\" failed (2: No such file or directory)";
    EXPECT_TRUE(daemon_.wait_for_log(expected, kDefaultTimeout, from)) << daemon_.error_log();
}

TEST_F(StaticTest, LogNotFoundOff) {
    auto r = http_get(port(), "/quiet/missing.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    // A request after it that is logged: once its line is there, the first one would be too.
    ASSERT_EQ(http_get(port(), "/loud-missing.txt")->status, 404);
    ASSERT_TRUE(daemon_.wait_for_log("loud-missing.txt"));
    EXPECT_EQ(daemon_.error_log().find("/quiet/missing.txt"), std::string::npos) << daemon_.error_log();
}

TEST_F(StaticTest, IndexFile) {
    auto r = http_get(port(), "/dir/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "dir index\n");
    EXPECT_EQ(r->header("Content-Type"), "text/html");
    EXPECT_EQ(http_get(port(), "/")->body, "root index\n");
}

TEST_F(StaticTest, IndexFilesTriedInOrder) {
    auto r = http_get(port(), "/multi/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "second index\n");
}

TEST_F(StaticTest, IndexIsAnInternalRedirectThatSelectsItsLocation) {
    auto r = http_get(port(), "/idx/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "other idx\n");
}

TEST_F(StaticTest, DirectoryWithoutIndexIs403) {
    size_t from = daemon_.error_log_size();
    auto r = http_get(port(), "/empty/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_TRUE(daemon_.wait_for_log("directory index of \"" + path("html/empty/") + "\" is forbidden",
                                     kDefaultTimeout, from))
        << daemon_.error_log();
}

TEST_F(StaticTest, MissingDirectoryIs404) {
    auto r = http_get(port(), "/nodir/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
}

TEST_F(StaticTest, DirectoryWithoutSlashRedirects) {
    auto r = http_get(port(), "/dir");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 301);
    EXPECT_EQ(r->header("Location"), "http://localhost:" + std::to_string(port()) + "/dir/");

    r = http_get(port(), "/dir?x=1&y=2");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 301);
    EXPECT_EQ(r->header("Location"), "http://localhost:" + std::to_string(port()) + "/dir/?x=1&y=2");
}

TEST_F(StaticTest, HeadSendsHeadersOnly) {
    Conn c(port());
    ASSERT_TRUE(c.connected());
    ASSERT_TRUE(c.send("HEAD /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto r = c.read_head_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Content-Length"), "6");
    EXPECT_EQ(r->header("Content-Type"), "text/plain");
    EXPECT_FALSE(r->header("ETag").empty());
    // Nothing but the head was sent: the next response on the connection parses.
    ASSERT_TRUE(c.send("GET /style.css HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
    auto next = c.read_response();
    ASSERT_TRUE(next) << c.error();
    EXPECT_EQ(next->status, 200);
    EXPECT_EQ(next->body, "body{}\n");
}

TEST_F(StaticTest, NotModifiedByDate) {
    auto first = http_get(port(), "/a.txt");
    ASSERT_TRUE(first);
    std::string lm = first->header("Last-Modified");
    ASSERT_FALSE(lm.empty());
    auto r = http_get(port(), "/a.txt", "If-Modified-Since: " + lm + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 304);
    EXPECT_EQ(r->body, "");
    EXPECT_EQ(r->header("ETag"), first->header("ETag"));
    EXPECT_FALSE(r->has("Content-Length"));

    // nginx's default (if_modified_since exact): another date sends the file.
    r = http_get(port(), "/a.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "alpha\n");
}

TEST_F(StaticTest, NotModifiedByEntityTag) {
    auto first = http_get(port(), "/a.txt");
    ASSERT_TRUE(first);
    std::string etag = first->header("ETag");
    auto r = http_get(port(), "/a.txt", "If-None-Match: " + etag + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 304);
    EXPECT_EQ(r->body, "");

    r = http_get(port(), "/a.txt", "If-None-Match: \"other\", W/" + etag + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 304) << "weak comparison applies to If-None-Match";

    r = http_get(port(), "/a.txt", "If-None-Match: *\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 304);

    r = http_get(port(), "/a.txt", "If-None-Match: \"other\"\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "alpha\n");

    // If-None-Match decides even when If-Modified-Since would match.
    r = http_get(port(), "/a.txt",
                 "If-None-Match: \"other\"\r\nIf-Modified-Since: " + first->header("Last-Modified") + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(StaticTest, IfMatchFailureIs412) {
    auto r = http_get(port(), "/a.txt", "If-Match: \"nope\"\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 412);
    auto first = http_get(port(), "/a.txt");
    r = http_get(port(), "/a.txt", "If-Match: " + first->header("ETag") + "\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
}

TEST_F(StaticTest, Alias) {
    auto r = http_get(port(), "/files/a.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "aliased\n");
    // The alias replaces the location's prefix; the root's file is not served.
    EXPECT_EQ(http_get(port(), "/files/index.html")->status, 404);
}

TEST_F(StaticTest, RootWithTrailingSlash) {
    auto r = http_get(port(), "/slashroot/x.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "slash root\n");
}

// The variables are defined in postconfiguration; directives read before
// that may use them all the same.
TEST_F(StaticTest, Variables) {
    auto r = http_get(port(), "/vars/x.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("X-File"), path("html/vars/x.txt"));
    EXPECT_EQ(r->header("X-Root"), path("html"));
}

TEST_F(StaticTest, AliasWithoutTrailingSlashCannotClimb) {
    // "location /al { alias .../data/; }": "/al../secret.txt" would be
    // ".../data/../secret.txt" if the path were joined blindly.
    auto r = http_get(port(), "/al../secret.txt");
    ASSERT_TRUE(r);
    EXPECT_NE(r->status, 200);
    EXPECT_EQ(r->body.find(kSecret), std::string::npos);
}

TEST_F(StaticTest, DotDotEscapesAreRejected) {
    const char* attempts[] = {
        "/../secret.txt",           "/%2e%2e/secret.txt",   "/.%2E/secret.txt",
        "/a/../../secret.txt",      "/..%2fsecret.txt",     "/dir/..%2F..%2Fsecret.txt",
        "/%2e%2e%2fsecret.txt",     "/dir/%2E%2E/../secret.txt",
    };
    for (const char* target : attempts) {
        auto r = raw("GET " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        ASSERT_TRUE(r) << target;
        EXPECT_EQ(r->status, 400) << target;
        EXPECT_EQ(r->body.find(kSecret), std::string::npos) << target;
    }
}

TEST_F(StaticTest, OtherMethodsAreNotAllowed) {
    auto r = raw("POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(r->header("Allow"), "GET, HEAD");

    r = raw("PUT /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);

    // As nginx: POST to a file that is not there is a 404.
    r = raw("POST /missing.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
}

size_t open_fd_count(pid_t pid) {
    std::error_code ec;
    size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return n;
}

TEST_F(StaticTest, FileDescriptorsAreClosedAfterEachRequest) {
    // The master accepts on the listening socket before its worker is up.
    std::vector<pid_t> workers;
    ASSERT_TRUE(wait_until([&] { return !(workers = daemon_.worker_pids()).empty(); }, kDefaultTimeout));
    Conn c(port());
    ASSERT_TRUE(c.connected());
    auto request = [&](std::string_view target, bool head) {
        std::string req = std::string(head ? "HEAD " : "GET ") + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
        EXPECT_TRUE(c.send(req));
        auto r = c.read_response(kDefaultTimeout, head);
        EXPECT_TRUE(r) << c.error();
        return r ? r->status : 0;
    };
    EXPECT_EQ(request("/a.txt", false), 200);
    size_t before = open_fd_count(workers.front());
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(request("/a.txt", false), 200);
        EXPECT_EQ(request("/a.txt", true), 200);
        EXPECT_EQ(request("/dir", false), 301);
    }
    EXPECT_LE(open_fd_count(workers.front()), before + 1);
}

// A worker that may not read the file: run the workers as nobody when the
// tests run as root (root reads anything).
TEST(StaticPermissions, UnreadableFileIs403) {
    std::string main(kMainConfig);
    if (geteuid() == 0) main += "user nobody nogroup;\n";
    Daemon d(main + std::string(kStaticConfig));
    write_tree(d.dir());
    d.dir().write("html/private.txt", "private\n");
    chmod(d.dir().path("html").c_str(), 0755);
    chmod(d.dir().path("html/private.txt").c_str(), 0600);
    if (geteuid() != 0) chmod(d.dir().path("html/private.txt").c_str(), 0000);
    ASSERT_TRUE(d.start());
    size_t from = d.error_log_size();
    auto r = http_get(d.port(), "/private.txt");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403);
    EXPECT_EQ(r->body.find("private\n"), std::string::npos);
    EXPECT_TRUE(d.wait_for_log("open() \"" + d.dir().path("html/private.txt") + "\" failed (13: Permission denied)",
                               kDefaultTimeout, from))
        << d.error_log();
}

TEST(StaticConfig, RootAndAliasInOneLocationIsAnError) {
    Daemon d(std::string(kMainConfig) +
             "events { }\n"
             "http {\n"
             "    server {\n"
             "        listen 127.0.0.1:{{PORT}};\n"
             "        location /x/ {\n"
             "            root /tmp;\n"
             "            alias /srv/;\n"
             "        }\n"
             "    }\n"
             "}\n");
    auto result = d.run_cli({"-t"});
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.output.find("\"alias\" directive is duplicate, \"root\" directive was specified earlier in " +
                                 d.conf_path() + ":10"),
              std::string::npos)
        << result.output;
}

TEST(StaticConfig, AliasIsNotAllowedOutsideLocations) {
    Daemon d(std::string(kMainConfig) +
             "events { }\n"
             "http {\n"
             "    server {\n"
             "        listen 127.0.0.1:{{PORT}};\n"
             "        alias /srv/;\n"
             "    }\n"
             "}\n");
    auto result = d.run_cli({"-t"});
    EXPECT_NE(result.exit_code, 0);
    EXPECT_NE(result.output.find("\"alias\" directive is not allowed here in " + d.conf_path() + ":8"),
              std::string::npos)
        << result.output;
}

}  // namespace
}  // namespace sluice::test
