// gzip (issue 9) against the real daemon and a real origin: on and off per
// type, length, client (Accept-Encoding q-values), gzip_proxied with Via,
// gzip_disable, gzip_http_version; responses that must stay as they are
// (already encoded, no-transform, HEAD, 304, 206-less statuses); Vary and ETag;
// chunked and streamed upstream bodies; static files larger than the output
// buffers; keep-alive after a compressed response; and the cache, which stores
// the upstream's bytes and compresses a hit only for clients that take gzip.
// Every compressed body is inflated with zlib here and compared with the original.
#include <sys/stat.h>
#include <zlib.h>

#include <cstdio>
#include <string>

#include "cache_test.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using namespace sluice::test::cache;

constexpr std::string_view kConfig = R"(
events { worker_connections 256; }
http {
    types {
        text/html html;
        text/plain txt;
        image/png png;
    }
    default_type application/octet-stream;
    log_format ratio '$uri $gzip_ratio';
    access_log {{PREFIX}}/logs/ratio.log ratio;
    proxy_cache_path {{PREFIX}}/cache keys_zone=gz:1m max_size=16m;
    upstream origin { server 127.0.0.1:{{UP}}; keepalive 8; }

    gzip on;
    gzip_types application/json text/plain;
    gzip_vary on;
    gzip_proxied any;

    server {
        listen 127.0.0.1:{{PORT}};
        root {{PREFIX}}/html;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /static/ { gzip_buffers 2 4k; }
        location /cache/ { proxy_pass http://origin; }
        location /cache/off/ { gzip off; proxy_pass http://origin; }
        location /cache/min/ { gzip_min_length 1000; proxy_pass http://origin; }
        location /cache/html-only/ { gzip_types text/html; proxy_pass http://origin; }
        location /cache/any-type/ { gzip_types *; proxy_pass http://origin; }
        location /size/ { proxy_pass http://origin; }
        location /level9/ { gzip_comp_level 9; gzip_buffers 1 64; proxy_pass http://origin/size/; }
        location /cache/p-off/ { gzip_proxied off; proxy_pass http://origin; }
        location /cache/p-expired/ { gzip_proxied expired; proxy_pass http://origin; }
        location /cache/p-nocache/ { gzip_proxied no-cache no-store; proxy_pass http://origin; }
        location /cache/p-auth/ { gzip_proxied auth; proxy_pass http://origin; }
        location /cache/p-nolm/ { gzip_proxied no_last_modified; proxy_pass http://origin; }
        location /cache/disable/ { gzip_disable msie6 "BadBot/\d"; proxy_pass http://origin; }
        location /cache/v10/ { gzip_http_version 1.0; proxy_pass http://origin; }
        location /cache/stored/ {
            proxy_pass http://origin;
            proxy_cache gz;
            proxy_cache_valid 200 10m;
            add_header X-Cache-Status $upstream_cache_status;
            gzip_buffers 2 4k;
        }
        location /chunked { proxy_pass http://origin; }
        location /stream/ { proxy_pass http://origin; proxy_buffering off; }
        location /echo-body {
            proxy_pass http://origin;
            proxy_buffering off;
            proxy_request_buffering off;
            gzip_types application/octet-stream;
        }
        location = /text { default_type text/plain; return 200 "returned text, returned text, returned text, returned text\n"; }
    }
}
)";

constexpr std::string_view kGzip = "Accept-Encoding: gzip\r\n";

// The body inflated (gzip wrapper), or "<not gzip>" when it is not one whole gzip stream.
std::string gunzip(std::string_view in) {
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) return "<inflateInit failed>";
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = uInt(in.size());
    std::string out;
    int rc = Z_OK;
    for (int rounds = 0; rc == Z_OK && rounds < 100000; ++rounds) {
        char buf[16384];
        zs.next_out = reinterpret_cast<Bytef*>(buf);
        zs.avail_out = sizeof buf;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(buf, sizeof buf - zs.avail_out);
        if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) break;
    }
    bool whole = rc == Z_STREAM_END && zs.avail_in == 0;
    inflateEnd(&zs);
    return whole ? out : "<not gzip>";
}

bool compressed(const Response& r) { return r.header("Content-Encoding") == "gzip"; }

std::string big_text() {
    std::string s;
    for (int i = 0; s.size() < 300 * 1024; ++i) s += "static line " + std::to_string(i) + " of a large text file\n";
    return s;
}

class GzipTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        up_ = new UpstreamProcess({"--id", "origin"});
        if (!up_->start()) return;
        daemon_ = new Daemon(std::string(kMainConfig) + std::string(kConfig), {{"UP", up_->port()}});
        const TempDir& d = daemon_->dir();
        chmod(d.path().c_str(), 0755);
        d.write("html/static/big.txt", big_text());
        d.write("html/static/page.html", "<html>" + std::string(2000, 'x') + "</html>\n");
        d.write("html/static/image.png", std::string(2000, 'p'));
        started_ = bool(daemon_->start());
        if (!started_) fprintf(stderr, "daemon: %s\n", daemon_->stderr_log().c_str());
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete up_;
        daemon_ = nullptr;
        up_ = nullptr;
    }
    void SetUp() override {
        ASSERT_TRUE(started_) << "the shared daemon did not start";
        port_ = daemon_->port();
    }

    Response get(std::string_view path, std::string_view headers = "") { return cache::get(port_, path, headers); }
    long count(std::string_view path) { return origin_count(up_->port(), path); }

    static UpstreamProcess* up_;
    static Daemon* daemon_;
    static bool started_;
    uint16_t port_ = 0;
};

UpstreamProcess* GzipTest::up_ = nullptr;
Daemon* GzipTest::daemon_ = nullptr;
bool GzipTest::started_ = false;

// The same /cache/ resource for an identity client and a gzip client: the
// inflated body is a whole answer of the same size (the origin's echo of the
// request differs by Accept-Encoding, and the padding makes up for it).
void expect_same_json(const Response& plain, const Response& zipped) {
    std::string inflated = gunzip(zipped.body);
    ASSERT_NE(inflated, "<not gzip>");
    EXPECT_EQ(inflated.size(), plain.body.size());
    EXPECT_EQ(inflated.substr(0, 9), "{\"count\":");
    EXPECT_NE(inflated.find("\"accept-encoding\":\"gzip\""), std::string::npos);
    EXPECT_EQ(inflated.substr(inflated.size() - 3), "p\"}");
}

TEST_F(GzipTest, ProxiedJsonIsCompressedForGzipClientsOnly) {
    Response plain = get("/cache/a?size=5000");
    ASSERT_EQ(plain.status, 200);
    EXPECT_FALSE(plain.has("Content-Encoding"));
    EXPECT_FALSE(plain.header("Content-Length").empty());
    EXPECT_EQ(plain.header("Vary"), "Accept-Encoding");  // the identity answer varies too

    Response z = get("/cache/a?size=5000", kGzip);
    ASSERT_EQ(z.status, 200);
    EXPECT_TRUE(compressed(z));
    EXPECT_FALSE(z.has("Content-Length"));
    EXPECT_EQ(z.header("Transfer-Encoding"), "chunked");
    EXPECT_EQ(z.header("Vary"), "Accept-Encoding");
    EXPECT_LT(z.body.size(), plain.body.size() / 4);
    expect_same_json(plain, z);
}

TEST_F(GzipTest, AcceptEncodingQValuesDecide) {
    struct Case {
        const char* accept;
        bool gzip;
    } cases[] = {
        {"gzip", true},           {"deflate, gzip;q=0.5", true}, {"*", true},
        {"br, *;q=0.2", true},    {"x-gzip", true},              {"gzip;q=0", false},
        {"gzip;q=0, *", false},   {"*;q=0", false},              {"identity", false},
        {"br, deflate", false},   {"gzip;q=0.5, identity", false},
    };
    for (const Case& c : cases) {
        Response r = get("/cache/q?size=3000", std::string("Accept-Encoding: ") + c.accept + "\r\n");
        ASSERT_EQ(r.status, 200) << c.accept;
        EXPECT_EQ(compressed(r), c.gzip) << c.accept;
        if (c.gzip) {
            EXPECT_NE(gunzip(r.body), "<not gzip>") << c.accept;
        }
    }
    Response none = get("/cache/q?size=3000");
    EXPECT_FALSE(none.has("Content-Encoding"));
    // Two Accept-Encoding fields are one list.
    Response two = get("/cache/q?size=3000", "Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n");
    EXPECT_TRUE(compressed(two));
}

TEST_F(GzipTest, OnOffPerLocationTypeAndLength) {
    EXPECT_FALSE(get("/cache/off/x?size=5000", kGzip).has("Content-Encoding"));
    EXPECT_FALSE(get("/cache/off/x?size=5000", kGzip).has("Vary"));
    // gzip_types: application/json is not listed there; text/html always is.
    EXPECT_FALSE(get("/cache/html-only/x?size=5000", kGzip).has("Content-Encoding"));
    EXPECT_TRUE(compressed(get("/static/page.html", kGzip)));
    EXPECT_TRUE(compressed(get("/cache/any-type/x?size=5000", kGzip)));
    EXPECT_FALSE(get("/static/image.png", kGzip).has("Content-Encoding"));
    // gzip_min_length is judged on Content-Length.
    Response small = get("/cache/min/x?size=100", kGzip);
    EXPECT_FALSE(small.has("Content-Encoding"));
    EXPECT_FALSE(small.has("Vary"));
    EXPECT_TRUE(compressed(get("/cache/min/x?size=3000", kGzip)));
    // `return` bodies go through the filter too.
    Response text = get("/text", kGzip);
    EXPECT_TRUE(compressed(text));
    EXPECT_EQ(gunzip(text.body), "returned text, returned text, returned text, returned text\n");
}

TEST_F(GzipTest, CompressionLevelAndOneSmallBuffer) {
    // /size/N: N bytes of "abc...z" with Content-Length, through one 64-byte buffer.
    Response plain = get("/size/200000");
    ASSERT_EQ(plain.body.size(), 200000u);
    Response z = get("/level9/200000", kGzip);
    ASSERT_TRUE(compressed(z));
    EXPECT_TRUE(gunzip(z.body) == plain.body);
    Response z1 = get("/size/200000", kGzip);
    EXPECT_TRUE(gunzip(z1.body) == plain.body);
    EXPECT_LE(z.body.size(), z1.body.size());
}

TEST_F(GzipTest, AlreadyEncodedAndNoTransformPassUntouched) {
    Response enc = get("/cache/enc?size=3000&" + h("Content-Encoding", "br"), kGzip);
    ASSERT_EQ(enc.status, 200);
    EXPECT_EQ(enc.header("Content-Encoding"), "br");
    EXPECT_EQ(enc.count("Content-Encoding"), 1);
    EXPECT_NE(enc.body.find("\"pad\""), std::string::npos);  // the origin's bytes as they were

    Response nt = get("/cache/nt?size=3000&" + cc("public, no-transform"), kGzip);
    EXPECT_FALSE(nt.has("Content-Encoding"));
    EXPECT_FALSE(nt.header("Content-Length").empty());
}

TEST_F(GzipTest, VaryIsMergedOnceAndStrongEtagsWeakened) {
    Response v = get("/cache/vary?size=3000&" + h("Vary", "Cookie"), kGzip);
    EXPECT_EQ(v.count("Vary"), 1);
    EXPECT_EQ(v.header("Vary"), "Cookie, Accept-Encoding");
    Response already = get("/cache/vary2?size=3000&" + h("Vary", "accept-encoding"), kGzip);
    EXPECT_EQ(already.count("Vary"), 1);
    EXPECT_EQ(already.header("Vary"), "accept-encoding");

    Response strong = get("/cache/etag?size=3000&etag=%22v1%22", kGzip);
    EXPECT_TRUE(compressed(strong));
    EXPECT_EQ(strong.header("ETag"), "W/\"v1\"");
    Response weak = get("/cache/etag2?size=3000&etag=W/%22v2%22", kGzip);
    EXPECT_EQ(weak.header("ETag"), "W/\"v2\"");
    Response plain = get("/cache/etag?size=3000&etag=%22v1%22");
    EXPECT_EQ(plain.header("ETag"), "\"v1\"");
}

TEST_F(GzipTest, ProxiedRulesFollowTheViaHeader) {
    const std::string via = std::string(kGzip) + "Via: 1.1 frontcache\r\n";
    // Without Via gzip_proxied plays no part.
    EXPECT_TRUE(compressed(get("/cache/p-off/x?size=3000", kGzip)));
    EXPECT_FALSE(get("/cache/p-off/x?size=3000", via).has("Content-Encoding"));
    EXPECT_TRUE(compressed(get("/cache/x?size=3000", via)));  // gzip_proxied any

    time_t now = time(nullptr);
    EXPECT_TRUE(compressed(get("/cache/p-expired/x?size=3000&" + h("Expires", http_date(now - 3600)), via)));
    EXPECT_FALSE(get("/cache/p-expired/x?size=3000&" + h("Expires", http_date(now + 3600)), via).has("Content-Encoding"));

    EXPECT_TRUE(compressed(get("/cache/p-nocache/x?size=3000&" + cc("no-cache"), via)));
    EXPECT_TRUE(compressed(get("/cache/p-nocache/x?size=3000&" + cc("private, no-store"), via)));
    EXPECT_FALSE(get("/cache/p-nocache/x?size=3000&" + cc("max-age=60"), via).has("Content-Encoding"));

    EXPECT_TRUE(compressed(get("/cache/p-auth/x?size=3000&" + cc("max-age=60"), via + "Authorization: Basic eDp5\r\n")));
    EXPECT_FALSE(get("/cache/p-auth/x?size=3000&" + cc("max-age=60"), via).has("Content-Encoding"));

    EXPECT_TRUE(compressed(get("/cache/p-nolm/x?size=3000", via)));
    EXPECT_FALSE(get("/cache/p-nolm/x?size=3000&lm=" + enc(http_date(now - 60)), via).has("Content-Encoding"));
}

TEST_F(GzipTest, DisabledForListedUserAgents) {
    auto ua = [](std::string_view agent) { return std::string(kGzip) + "User-Agent: " + std::string(agent) + "\r\n"; };
    EXPECT_FALSE(get("/cache/disable/x?size=3000", ua("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.0)"))
                     .has("Content-Encoding"));
    EXPECT_TRUE(compressed(get("/cache/disable/x?size=3000", ua("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)"))));
    EXPECT_FALSE(get("/cache/disable/x?size=3000", ua("badbot/2.0")).has("Content-Encoding"));  // caseless
    EXPECT_TRUE(compressed(get("/cache/disable/x?size=3000", ua("curl/8.0"))));
}

TEST_F(GzipTest, Http10ClientsOnlyWithGzipHttpVersion10) {
    std::string req = "GET /cache/v10/x?size=4000 HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n";
    auto r = http_request(port_, req);
    ASSERT_TRUE(r);
    EXPECT_TRUE(compressed(*r));
    EXPECT_FALSE(r->has("Content-Length"));  // the end of the connection ends the body
    EXPECT_FALSE(r->has("Transfer-Encoding"));
    EXPECT_NE(gunzip(r->body).find("\"pad\""), std::string::npos);
    auto d = http_request(port_, "GET /cache/x?size=4000 HTTP/1.0\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n");
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->has("Content-Encoding"));  // gzip_http_version 1.1 (the default)
}

TEST_F(GzipTest, HeadAnd304AreNotCompressed) {
    Response h = cache::head(port_, "/static/big.txt", kGzip);
    EXPECT_EQ(h.status, 200);
    EXPECT_FALSE(h.has("Content-Encoding"));
    EXPECT_EQ(h.header("Content-Length"), std::to_string(big_text().size()));

    Response full = get("/static/big.txt");
    Response nm = get("/static/big.txt", std::string(kGzip) + "If-None-Match: " + full.header("ETag") + "\r\n");
    EXPECT_EQ(nm.status, 304);
    EXPECT_FALSE(nm.has("Content-Encoding"));
    EXPECT_TRUE(nm.body.empty());

    Response st = get("/cache/st?status=404&size=3000", kGzip);  // 404 is compressed, as in nginx
    EXPECT_EQ(st.status, 404);
    EXPECT_TRUE(compressed(st));
    Response other = get("/cache/st2?status=410&size=3000", kGzip);
    EXPECT_EQ(other.status, 410);
    EXPECT_FALSE(other.has("Content-Encoding"));
}

TEST_F(GzipTest, LargeStaticFileThroughSmallBuffers) {
    Response z = get("/static/big.txt", kGzip);
    ASSERT_EQ(z.status, 200);
    ASSERT_TRUE(compressed(z));
    EXPECT_FALSE(z.has("Content-Length"));
    EXPECT_EQ(z.header("ETag").substr(0, 2), "W/");
    std::string inflated = gunzip(z.body);
    EXPECT_TRUE(inflated == big_text()) << "inflated " << inflated.size() << " bytes";
}

TEST_F(GzipTest, SlowReaderOfALargeFileGetsItWhole) {
    // The client reads nothing until the response is queued: the filter waits
    // for the socket between rounds of its two 4k buffers.
    Conn c(port_);
    ASSERT_TRUE(c.send("GET /static/big.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"));
    std::this_thread::sleep_for(200ms);
    auto r = c.read_response(10s);
    ASSERT_TRUE(r) << c.error();
    EXPECT_TRUE(gunzip(r->body) == big_text());
}

TEST_F(GzipTest, KeepAliveAfterACompressedResponse) {
    Conn c(port_);
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(c.send("GET /static/big.txt HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"));
        auto z = c.read_response(10s);
        ASSERT_TRUE(z) << c.error();
        EXPECT_TRUE(compressed(*z));
        EXPECT_TRUE(z->keep_alive());
        ASSERT_TRUE(c.send("GET /cache/ka?size=3000 HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"));
        auto p = c.read_response();
        ASSERT_TRUE(p) << c.error();
        EXPECT_EQ(p->status, 200);
        EXPECT_NE(gunzip(p->body).find("\"pad\""), std::string::npos);
        ASSERT_TRUE(c.send("GET /static/page.html HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        auto plain = c.read_response();
        ASSERT_TRUE(plain) << c.error();
        EXPECT_EQ(plain->body, "<html>" + std::string(2000, 'x') + "</html>\n");
    }
}

TEST_F(GzipTest, ChunkedUpstreamBody) {
    Response z = get("/chunked", kGzip);
    ASSERT_EQ(z.status, 200);
    ASSERT_TRUE(compressed(z));
    std::string inflated = gunzip(z.body);
    EXPECT_EQ(inflated.substr(0, 16), "{\"method\":\"GET\",");
    EXPECT_NE(inflated.find("\"uri\":\"/chunked\""), std::string::npos);
    EXPECT_EQ(inflated.back(), '}');
}

TEST_F(GzipTest, StreamedUpstreamBodyWholeAndInOrder) {
    Response plain = get("/stream/50000?chunk=700&delay=1");
    ASSERT_EQ(plain.body.size(), 50000u);
    Response z = get("/stream/50000?chunk=700&delay=1", kGzip);
    ASSERT_EQ(z.status, 200);
    ASSERT_TRUE(compressed(z));
    EXPECT_TRUE(gunzip(z.body) == plain.body);
}

// Inflates what the raw bytes of a chunked response hold so far (the head
// skipped, chunks decoded as far as they are complete), without requiring the end.
std::string inflate_so_far(std::string_view raw) {
    size_t p = raw.find("\r\n\r\n");
    if (p == std::string_view::npos) return {};
    p += 4;
    std::string body;
    for (int chunks = 0; chunks < 100000; ++chunks) {
        size_t eol = raw.find("\r\n", p);
        if (eol == std::string_view::npos) break;
        size_t size = std::stoul(std::string(raw.substr(p, eol - p)), nullptr, 16);
        if (size == 0 || eol + 2 + size > raw.size()) break;
        body.append(raw.substr(eol + 2, size));
        p = eol + 2 + size + 2;
    }
    z_stream zs{};
    inflateInit2(&zs, 15 + 16);
    zs.next_in = reinterpret_cast<Bytef*>(body.data());
    zs.avail_in = uInt(body.size());
    std::string out(1 << 20, '\0');
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = uInt(out.size());
    inflate(&zs, Z_SYNC_FLUSH);
    out.resize(out.size() - zs.avail_out);
    inflateEnd(&zs);
    return out;
}

TEST_F(GzipTest, UnbufferedProxyFlushesEachPiece) {
    // The origin echoes the request body as it arrives; with proxy_buffering
    // off each piece must reach the client compressed before the next is sent.
    Conn c(port_);
    ASSERT_TRUE(c.send("POST /echo-body HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n"
                       "Content-Length: 20\r\n\r\nfirst-ten."));
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
        c.is_closed(50ms);  // takes in what arrived
        seen = inflate_so_far(c.buffered()) == "first-ten.";
    }
    EXPECT_TRUE(seen) << "received so far: " << c.buffered().size() << " bytes";
    ASSERT_TRUE(c.send("second-10."));
    auto r = c.read_response();
    ASSERT_TRUE(r) << c.error();
    EXPECT_TRUE(compressed(*r));
    EXPECT_EQ(gunzip(r->body), "first-ten.second-10.");
}

TEST_F(GzipTest, CacheStoresUncompressedAndServesBothFromOneEntry) {
    // A gzip client fills the entry: it is stored as the origin sent it.
    Response miss = get("/cache/stored/a?size=6000&" + cc("max-age=600"), kGzip);
    ASSERT_EQ(miss.status, 200);
    EXPECT_EQ(miss.header("X-Cache-Status"), "MISS");
    ASSERT_TRUE(compressed(miss));
    std::string original = gunzip(miss.body);

    Response plain_hit = get("/cache/stored/a?size=6000&" + cc("max-age=600"));
    EXPECT_EQ(plain_hit.header("X-Cache-Status"), "HIT");
    EXPECT_FALSE(plain_hit.has("Content-Encoding"));
    EXPECT_EQ(plain_hit.header("Content-Length"), std::to_string(original.size()));
    EXPECT_TRUE(plain_hit.body == original);

    Response gzip_hit = get("/cache/stored/a?size=6000&" + cc("max-age=600"), kGzip);
    EXPECT_EQ(gzip_hit.header("X-Cache-Status"), "HIT");
    ASSERT_TRUE(compressed(gzip_hit));
    EXPECT_EQ(gzip_hit.header("Vary"), "Accept-Encoding");
    EXPECT_TRUE(gunzip(gzip_hit.body) == original);
    EXPECT_EQ(count("/cache/stored/a"), 1);

    // And the other way round: an identity client fills, a gzip client hits.
    Response plain_miss = get("/cache/stored/b?size=6000&" + cc("max-age=600"));
    EXPECT_EQ(plain_miss.header("X-Cache-Status"), "MISS");
    Response z = get("/cache/stored/b?size=6000&" + cc("max-age=600"), kGzip);
    EXPECT_EQ(z.header("X-Cache-Status"), "HIT");
    EXPECT_TRUE(gunzip(z.body) == plain_miss.body);
    EXPECT_EQ(count("/cache/stored/b"), 1);
    Response again = get("/cache/stored/b?size=6000&" + cc("max-age=600"));
    EXPECT_TRUE(again.body == plain_miss.body);
}

TEST_F(GzipTest, LargeCacheHitThroughSmallBuffers) {
    // The hit's body is read from shared memory as the client takes the
    // output (two 4k buffers), not compressed all at once.
    const std::string path = "/cache/stored/large?size=400000&" + cc("max-age=600");
    Response plain_miss = get(path);
    ASSERT_EQ(plain_miss.status, 200);
    ASSERT_GE(plain_miss.body.size(), 400000u);
    Conn c(port_);
    ASSERT_TRUE(c.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n"));
    std::this_thread::sleep_for(100ms);  // let the socket fill before reading
    auto hit = c.read_response(10s);
    ASSERT_TRUE(hit) << c.error();
    EXPECT_EQ(hit->header("X-Cache-Status"), "HIT");
    ASSERT_TRUE(compressed(*hit));
    EXPECT_TRUE(gunzip(hit->body) == plain_miss.body);
    // The connection is still good for the next request.
    ASSERT_TRUE(c.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto again = c.read_response(10s);
    ASSERT_TRUE(again) << c.error();
    EXPECT_TRUE(again->body == plain_miss.body);
    EXPECT_EQ(count("/cache/stored/large"), 1);
}

TEST_F(GzipTest, GzipRatioVariable) {
    Response z = get("/static/page.html", kGzip);
    ASSERT_TRUE(compressed(z));
    get("/static/image.png", kGzip);
    std::string log;
    // The log line is written after the response; wait for it, bounded.
    for (int i = 0; i < 100 && log.find("/static/image.png") == std::string::npos; ++i) {
        std::this_thread::sleep_for(20ms);
        log = daemon_->dir().read("logs/ratio.log");
    }
    // nginx's figure: two decimals, the third rounded half up.
    uint64_t zin = 2014, zout = z.body.size();
    uint64_t whole = zin / zout, frac = (zin * 100 / zout) % 100;
    if ((zin * 1000 / zout) % 10 > 4 && ++frac > 99) {
        ++whole;
        frac = 0;
    }
    char expected[64];
    snprintf(expected, sizeof expected, "/static/page.html %llu.%02llu", static_cast<unsigned long long>(whole),
             static_cast<unsigned long long>(frac));
    EXPECT_NE(log.find(expected), std::string::npos) << log;
    EXPECT_NE(log.find("/static/image.png -"), std::string::npos) << log;
}

TEST(GzipConfig, BadValuesAreConfigErrors) {
    struct Case {
        const char* directive;
        const char* message;
    } cases[] = {
        {"gzip_comp_level 10;", "it must be between 1 and 9"},
        {"gzip_comp_level 0;", "it must be between 1 and 9"},
        {"gzip_buffers 0 4k;", "invalid number of buffers"},
        {"gzip_buffers 4 1;", "invalid buffer size"},
        {"gzip_proxied off any;", "\"off\" cannot be combined"},
        {"gzip_proxied sometimes;", "invalid value \"sometimes\""},
        {"gzip_http_version 2.0;", "invalid value \"2.0\""},
        {"gzip_disable \"(\";", "pcre2_compile() failed"},
        {"gzip maybe;", "it must be \"on\" or \"off\""},
        {"gzip_types html;", "invalid value \"html\""},
    };
    for (const Case& c : cases) {
        Daemon d(std::string(kMainConfig) + "events {}\nhttp {\n    server {\n        listen 127.0.0.1:{{PORT}};\n        " +
                 c.directive + "\n    }\n}\n");
        CommandResult r = d.run_cli({"-t"});
        EXPECT_NE(r.exit_code, 0) << c.directive;
        EXPECT_NE(r.output.find(c.message), std::string::npos) << c.directive << ": " << r.output;
        EXPECT_NE(r.output.find("sluice.conf:8"), std::string::npos) << c.directive << ": " << r.output;
    }
}

}  // namespace
}  // namespace sluice::test
