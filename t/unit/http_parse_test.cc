// Standalone: g++ -std=c++20 -Wall -Wextra -Isrc t/unit/http_parse_test.cc src/http/http_parse.cc src/http/uri.cc -lgtest -lgtest_main -pthread -o /tmp/http_parse_test && /tmp/http_parse_test
#include "http/http_parse.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::http {
namespace {

using namespace std::string_literals;

// 0 for Complete, -1 for Incomplete, else the error status.
int parse_outcome(std::string_view request, RequestHead& head, const ParseLimits& limits) {
    switch (parse_request_head(request.data(), request.size(), limits, head)) {
    case ParseResult::Complete: return 0;
    case ParseResult::Incomplete: return -1;
    case ParseResult::Error: return head.error_status;
    }
    return -2;
}

class HttpParseRequest : public testing::Test {
protected:
    // Parses a copy that lives as long as the test, as head's views need.
    int outcome(std::string_view request, RequestHead& head, const ParseLimits& limits = {}) {
        buffer_.assign(request);
        return parse_outcome(buffer_, head, limits);
    }

    int outcome(std::string_view request, const ParseLimits& limits = {}) {
        RequestHead head;
        return outcome(request, head, limits);
    }

    std::string buffer_;
};

// A request whose head is `fields` (each ending in CRLF) after a fixed line.
std::string get_with(std::string_view fields, std::string_view version = "HTTP/1.1") {
    return "GET /x "s + std::string(version) + "\r\n" + std::string(fields) + "\r\n";
}

TEST_F(HttpParseRequest, SimpleGet) {
    RequestHead head;
    std::string req = "GET /index.html?a=b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    ASSERT_EQ(outcome(req, head), 0);
    EXPECT_EQ(head.method, Method::Get);
    EXPECT_EQ(head.method_name, "GET");
    EXPECT_EQ(head.target, "/index.html?a=b");
    EXPECT_EQ(head.version_major, 1);
    EXPECT_EQ(head.version_minor, 1);
    ASSERT_EQ(head.headers.size(), 2u);
    EXPECT_EQ(head.headers[0].name, "Host");
    EXPECT_EQ(head.headers[0].value, "example.com");
    EXPECT_EQ(head.headers[1].name, "Accept");
    EXPECT_EQ(head.headers[1].value, "*/*");
    EXPECT_EQ(head.head_length, req.size());
    EXPECT_EQ(head.body, RequestHead::Body::None);
    EXPECT_TRUE(head.keep_alive);
    EXPECT_EQ(head.host, "example.com");
    EXPECT_FALSE(head.expect_continue);
    EXPECT_FALSE(head.upgrade);
    EXPECT_EQ(head.error_status, 0);
}

TEST_F(HttpParseRequest, ViewsPointIntoTheBuffer) {
    RequestHead head;
    std::string req = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    ASSERT_EQ(parse_outcome(req, head, {}), 0);
    EXPECT_EQ(head.target.data(), req.data() + 4);
    EXPECT_EQ(head.headers[0].value.data(), req.data() + 22);
}

TEST_F(HttpParseRequest, KnownAndUnknownMethods) {
    struct Case { const char* name; Method method; };
    const Case cases[] = {
        {"GET", Method::Get},         {"HEAD", Method::Head},   {"POST", Method::Post},
        {"PUT", Method::Put},         {"DELETE", Method::Delete}, {"OPTIONS", Method::Options},
        {"PATCH", Method::Patch},     {"TRACE", Method::Trace}, {"PURGE", Method::Purge},
        {"BREW", Method::Unknown},    {"get", Method::Unknown}, {"M-SEARCH", Method::Unknown},
    };
    for (const Case& c : cases) {
        RequestHead head;
        std::string req = std::string(c.name) + " / HTTP/1.1\r\nHost: h\r\n\r\n";
        ASSERT_EQ(outcome(req, head), 0) << c.name;
        EXPECT_EQ(head.method, c.method) << c.name;
        EXPECT_EQ(head.method_name, c.name);
        if (c.method != Method::Unknown) {
            EXPECT_EQ(method_name(c.method), c.name);
        }
    }
    EXPECT_EQ(method_from_name("CONNECT"), Method::Connect);
    EXPECT_EQ(method_name(Method::Unknown), "");
}

TEST_F(HttpParseRequest, RejectsBadMethods) {
    EXPECT_EQ(outcome(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, TrimsOwsAroundValues) {
    RequestHead head;
    ASSERT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nA:  \t x y \t\r\nB:\r\nC: \t \r\nD:v\r\n\r\n", head), 0);
    ASSERT_EQ(head.headers.size(), 5u);
    EXPECT_EQ(head.headers[1].value, "x y");
    EXPECT_EQ(head.headers[2].value, "");
    EXPECT_EQ(head.headers[3].value, "");
    EXPECT_EQ(head.headers[4].value, "v");
}

TEST_F(HttpParseRequest, ValuesMayHoldHtabAndObsText) {
    RequestHead head;
    ASSERT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX: a\tb \xff\x80 c~!\r\n\r\n", head), 0);
    EXPECT_EQ(head.headers[1].value, "a\tb \xff\x80 c~!");
}

TEST_F(HttpParseRequest, LongValuesAcrossWordBoundaries) {
    // Exercises the 8-bytes-at-a-time scan around a bad byte at every offset.
    for (size_t at = 0; at < 40; ++at) {
        std::string value(40, 'v');
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n"), ParseLimits{}), 0);
        value[at] = '\t';
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n")), 0) << at;
        value[at] = '\x7f';
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n")), 400) << at;
        value[at] = '\0';
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n")), 400) << at;
        value[at] = '\r';
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n")), 400) << at;
        value[at] = '\n';
        EXPECT_EQ(outcome(get_with("Host: h\r\nX: " + value + "\r\n")), 400) << at;
    }
}

TEST_F(HttpParseRequest, IncompleteUntilTheEmptyLine) {
    std::string req = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
    for (size_t n = 0; n < req.size(); ++n)
        EXPECT_EQ(outcome(std::string_view(req).substr(0, n)), -1) << n;
    EXPECT_EQ(outcome(req), 0);
}

TEST_F(HttpParseRequest, PipelinedRequestsFoundByHeadLength) {
    std::string first = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
    std::string second = "GET /b HTTP/1.1\r\nHost: h\r\n\r\n";
    std::string stream = first + "hello" + second + "GET /c HT";
    RequestHead head;
    ASSERT_EQ(outcome(stream, head), 0);
    EXPECT_EQ(head.head_length, first.size());
    EXPECT_EQ(head.content_length, 5u);
    size_t next = head.head_length + head.content_length;
    ASSERT_EQ(outcome(std::string_view(stream).substr(next), head), 0);
    EXPECT_EQ(head.target, "/b");
    EXPECT_EQ(head.head_length, second.size());
    next += head.head_length;
    EXPECT_EQ(outcome(std::string_view(stream).substr(next), head), -1);
}

TEST_F(HttpParseRequest, SkipsAFewLeadingEmptyLines) {
    RequestHead head;
    ASSERT_EQ(outcome("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", head), 0);
    EXPECT_EQ(head.target, "/");
    EXPECT_EQ(head.head_length, 31u);
    EXPECT_EQ(outcome("\r\n"), -1);
    EXPECT_EQ(outcome("\r"), -1);
    EXPECT_EQ(outcome("\r\n\r\n\r\n\r\n\r\n"), 400);
    EXPECT_EQ(outcome("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, RejectsBareLf) {
    EXPECT_EQ(outcome("GET / HTTP/1.1\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX\n: a\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, RejectsBareCr) {
    EXPECT_EQ(outcome("GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\n\rX"), 400);
}

TEST_F(HttpParseRequest, RejectsNulAndControlCharacters) {
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\0b\r\n"s)), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX\0: ab\r\n"s)), 400);
    EXPECT_EQ(outcome("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"s), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\x01z\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\x1b[0m\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\x7f\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: \x0b" "chunked\r\n")), 400);
}

TEST_F(HttpParseRequest, RejectsObsFold) {
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\r\n b\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: a\r\n\tb\r\n")), 400);
    // A first field line starting with whitespace, and " Transfer-Encoding".
    EXPECT_EQ(outcome(get_with(" Host: h\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\n Transfer-Encoding: chunked\r\n")), 400);
}

TEST_F(HttpParseRequest, RejectsBadFieldNames) {
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding : chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host : h\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX\t: a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\n: a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX Y: a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nX(Y): a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nno colon\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nnocolon\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\n\xc3\xa9: a\r\n")), 400);
}

TEST_F(HttpParseRequest, RequestLineSpacing) {
    EXPECT_EQ(outcome("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\n\r\n"), 400);  // no Host, but the line is fine
    EXPECT_EQ(outcome("GET\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, Versions) {
    RequestHead head;
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\n\r\n", head), 0);
    EXPECT_EQ(head.version_minor, 0);
    EXPECT_EQ(outcome("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
    EXPECT_EQ(outcome("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 505);
    EXPECT_EQ(outcome("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), 505);
    EXPECT_EQ(outcome("GET / HTTP/9.9\r\n\r\n"), 505);
    EXPECT_EQ(outcome("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505);
    EXPECT_EQ(outcome("GET /\r\n\r\n"), 400);  // HTTP/0.9 simple request
    EXPECT_EQ(outcome("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/11\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.x\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/2\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTPS/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, ErrorsFoundBeforeTheHeadIsComplete) {
    EXPECT_EQ(outcome("GET / HTTP/2.0\r\nHost: h\r\n"), 505);
    EXPECT_EQ(outcome("GET / HTTQ"), 400);
    EXPECT_EQ(outcome("GET / HTTP/3"), -1);  // could still be a well-formed version
    EXPECT_EQ(outcome("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s), 400);  // TLS hello
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nBad Name"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX: \x01"), 400);
    EXPECT_EQ(outcome("GET /#"), 400);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nX: y"), -1);
}

TEST_F(HttpParseRequest, TargetCharacters) {
    RequestHead head;
    ASSERT_EQ(outcome("GET /a-._~!$&'()*+,;=:@%20/?q=/?&x HTTP/1.1\r\nHost: h\r\n\r\n", head), 0);
    EXPECT_EQ(outcome("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a<b> HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a{b} HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a|b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a^b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /a`b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /[a] HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, TargetForms) {
    RequestHead head;
    ASSERT_EQ(outcome("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", head), 0);
    EXPECT_EQ(head.target, "*");
    EXPECT_EQ(outcome("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    ASSERT_EQ(outcome("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", head), 0);
    EXPECT_EQ(head.method, Method::Connect);
    EXPECT_EQ(head.target, "example.com:443");
    EXPECT_EQ(outcome("CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, AbsoluteFormOverridesHost) {
    RequestHead head;
    ASSERT_EQ(outcome("GET http://real.example:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", head), 0);
    EXPECT_EQ(head.target, "http://real.example:8080/p?q");
    EXPECT_EQ(head.host, "real.example:8080");
    ASSERT_EQ(outcome("GET http://[::1]/ HTTP/1.1\r\nHost: other\r\n\r\n", head), 0);
    EXPECT_EQ(head.host, "[::1]");
    // The Host header is still required and checked (RFC 9112 §3.2).
    EXPECT_EQ(outcome("GET http://a/ HTTP/1.1\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET http://a/ HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET http://a/[x] HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    EXPECT_EQ(outcome("GET gopher://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, HostRules) {
    RequestHead head;
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nX: y\r\n\r\n"), 400);
    EXPECT_EQ(outcome(get_with("Host: a\r\nHost: a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: a\r\nhost: b\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host:\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: a b\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: a/b\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: user@a\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: a:99999\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: a, b\r\n")), 400);
    ASSERT_EQ(outcome(get_with("HOST: Example.COM:8080\r\n"), head), 0);
    EXPECT_EQ(head.host, "Example.COM:8080");
    ASSERT_EQ(outcome(get_with("Host: [2001:db8::1]:443\r\n"), head), 0);
    EXPECT_EQ(head.host, "[2001:db8::1]:443");
    ASSERT_EQ(outcome(get_with("Host: 10.0.0.1\r\n"), head), 0);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\n\r\n", head), 0);
    EXPECT_EQ(head.host, "");
    EXPECT_EQ(outcome("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, ContentLength) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nContent-Length: 42\r\n"), head), 0);
    EXPECT_EQ(head.body, RequestHead::Body::Length);
    EXPECT_EQ(head.content_length, 42u);
    ASSERT_EQ(outcome(get_with("Host: h\r\ncontent-length:  007 \r\n"), head), 0);
    EXPECT_EQ(head.content_length, 7u);
    ASSERT_EQ(outcome(get_with("Host: h\r\nContent-Length: 0\r\n"), head), 0);
    EXPECT_EQ(head.body, RequestHead::Body::Length);
    EXPECT_EQ(head.content_length, 0u);
    ASSERT_EQ(outcome(get_with("Host: h\r\nContent-Length: 9223372036854775807\r\n"), head), 0);
    EXPECT_EQ(head.content_length, 9223372036854775807u);
}

TEST_F(HttpParseRequest, RejectsBadContentLength) {
    const char* bad[] = {"5, 5", "5,5", "+5", "-1", "0x10", "5 5", "5.0", "", "1e3",
                         "9223372036854775808", "18446744073709551616", "99999999999999999999",
                         "00000000000000000005"};
    for (const char* value : bad)
        EXPECT_EQ(outcome(get_with("Host: h\r\nContent-Length: "s + value + "\r\n")), 400) << value;
    EXPECT_EQ(outcome(get_with("Host: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n")), 400);
}

TEST_F(HttpParseRequest, TransferEncodingChunked) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked\r\n"), head), 0);
    EXPECT_EQ(head.body, RequestHead::Body::Chunked);
    ASSERT_EQ(outcome(get_with("Host: h\r\ntransfer-encoding:  CHUNKED \r\n"), head), 0);
    EXPECT_EQ(head.body, RequestHead::Body::Chunked);
    ASSERT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: ,chunked,\r\n"), head), 0);
    EXPECT_EQ(head.body, RequestHead::Body::Chunked);
}

// The gateway re-frames request bodies as chunked or with a length and never
// decodes gzip: a request with another coding would reach the upstream
// without it, so it gets 501 (RFC 9112 §6.1), as in nginx.
TEST_F(HttpParseRequest, TransferCodingsOtherThanChunkedAre501) {
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: gzip, chunked\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: deflate,,chunked\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: identity\r\n")), 501);
}

TEST_F(HttpParseRequest, SmugglingClassics) {
    // CL.TE and TE.CL: never both.
    EXPECT_EQ(outcome(get_with("Host: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked, identity\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked, chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked, gzip\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: gzip\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding:\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: ,\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: chunked;q=1\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: \"chunked\"\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding : chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding\t: chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding:\x0b" "chunked\r\n")), 400);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: xchunked\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: identity\r\n")), 501);
    EXPECT_EQ(outcome(get_with("Host: h\r\nTransfer-Encoding: foo, chunked\r\n")), 501);
    // HTTP/1.0 has no chunked framing to agree on.
    EXPECT_EQ(outcome("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

TEST_F(HttpParseRequest, KeepAlive) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\n"), head), 0);
    EXPECT_TRUE(head.keep_alive);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: close\r\n"), head), 0);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: Keep-Alive, CLOSE\r\n"), head), 0);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: foo\r\nConnection: close\r\n"), head), 0);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: closed\r\n"), head), 0);
    EXPECT_TRUE(head.keep_alive);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\n\r\n", head), 0);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n", head), 0);
    EXPECT_TRUE(head.keep_alive);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", head), 0);
    EXPECT_FALSE(head.keep_alive);
    EXPECT_EQ(outcome(get_with("Host: h\r\nConnection: a b\r\n")), 400);
}

TEST_F(HttpParseRequest, Expect) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nExpect: 100-continue\r\n"), head), 0);
    EXPECT_TRUE(head.expect_continue);
    ASSERT_EQ(outcome(get_with("Host: h\r\nexpect: 100-Continue\r\n"), head), 0);
    EXPECT_TRUE(head.expect_continue);
    EXPECT_EQ(outcome(get_with("Host: h\r\nExpect: 200-ok\r\n")), 417);
    EXPECT_EQ(outcome(get_with("Host: h\r\nExpect: 100-continue, x\r\n")), 417);
    EXPECT_EQ(outcome(get_with("Host: h\r\nExpect:\r\n")), 417);
    ASSERT_EQ(outcome("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", head), 0);
    EXPECT_FALSE(head.expect_continue);
}

TEST_F(HttpParseRequest, Upgrade) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"), head), 0);
    EXPECT_TRUE(head.upgrade);
    ASSERT_EQ(outcome(get_with("Host: h\r\nUpgrade: websocket\r\n"), head), 0);
    EXPECT_FALSE(head.upgrade);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: upgrade\r\n"), head), 0);
    EXPECT_FALSE(head.upgrade);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", head), 0);
    EXPECT_FALSE(head.upgrade);
    // h2c (RFC 9113 §3.1: deprecated): never an upgrade the gateway lets through.
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"), head), 0);
    EXPECT_FALSE(head.upgrade);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: upgrade\r\nUpgrade: websocket, H2C\r\n"), head), 0);
    EXPECT_FALSE(head.upgrade);
    ASSERT_EQ(outcome(get_with("Host: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n"), head), 0);
    EXPECT_FALSE(head.upgrade);
}

TEST_F(HttpParseRequest, RequestLineLimit) {
    ParseLimits limits;
    limits.max_request_line = 32;
    std::string line = "GET /" + std::string(32 - 14, 'a') + " HTTP/1.1";  // exactly 32
    ASSERT_EQ(line.size(), 32u);
    EXPECT_EQ(outcome(line + "\r\nHost: h\r\n\r\n", limits), 0);
    std::string longer = "GET /" + std::string(32 - 13, 'a') + " HTTP/1.1";
    EXPECT_EQ(outcome(longer + "\r\nHost: h\r\n\r\n", limits), 414);
    // No CRLF within the limit: known before the line ends.
    EXPECT_EQ(outcome("GET /" + std::string(40, 'a'), limits), 414);
    EXPECT_EQ(outcome("GET /" + std::string(27, 'a'), limits), -1);
    EXPECT_EQ(outcome(line, limits), -1);
    EXPECT_EQ(outcome(line + "\r", limits), -1);
}

TEST_F(HttpParseRequest, HeaderLineLimit) {
    ParseLimits limits;
    limits.max_header_line = 16;
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: 0123456789abc\r\n"), limits), 0);  // 16 bytes
    EXPECT_EQ(outcome(get_with("Host: h\r\nX: 0123456789abcd\r\n"), limits), 431);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nX: 0123456789abcdef", limits), 431);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nX: 0123456789abc", limits), -1);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nXXXXXXXXXXXXXXXXXXXX", limits), 431);
}

TEST_F(HttpParseRequest, HeadLimit) {
    std::string req = get_with("Host: h\r\nX: 0123456789\r\n");
    ParseLimits limits;
    limits.max_head = req.size();
    EXPECT_EQ(outcome(req, limits), 0);
    EXPECT_EQ(outcome(req + "GET / HTTP/1.1\r\n", limits), 0);  // a pipelined request may follow
    limits.max_head = req.size() - 1;
    EXPECT_EQ(outcome(req, limits), 431);
    // max_head bytes and no end of head yet: it cannot fit any more (the
    // connection's buffer is full, so waiting for more would spin).
    EXPECT_EQ(outcome(req.substr(0, req.size() - 1), limits), 431);
    EXPECT_EQ(outcome(req.substr(0, req.size() - 2), limits), -1);
}

TEST_F(HttpParseRequest, HeaderCountLimit) {
    ParseLimits limits;
    limits.max_headers = 3;
    EXPECT_EQ(outcome(get_with("Host: h\r\nA: 1\r\nB: 2\r\n"), limits), 0);
    EXPECT_EQ(outcome(get_with("Host: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n"), limits), 431);
    EXPECT_EQ(outcome("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n", limits), 431);
}

TEST_F(HttpParseRequest, ErrorReasonIsSet) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n"), head), 400);
    ASSERT_NE(head.error_reason, nullptr);
    EXPECT_STREQ(head.error_reason, "Content-Length with Transfer-Encoding");
}

TEST_F(HttpParseRequest, ReusedHeadIsReset) {
    RequestHead head;
    ASSERT_EQ(outcome(get_with("Host: h\r\nContent-Length: 5\r\nConnection: upgrade\r\nUpgrade: x\r\n"), head), 0);
    ASSERT_EQ(outcome("GET / HTTP/1.0\r\n\r\n", head), 0);
    EXPECT_EQ(head.headers.size(), 0u);
    EXPECT_EQ(head.body, RequestHead::Body::None);
    EXPECT_EQ(head.content_length, 0u);
    EXPECT_FALSE(head.upgrade);
    EXPECT_EQ(head.host, "");
}

TEST_F(HttpParseRequest, UsesTheCallersMemoryResource) {
    char arena[4096];
    std::pmr::monotonic_buffer_resource resource(arena, sizeof arena, std::pmr::null_memory_resource());
    RequestHead head(&resource);
    ASSERT_EQ(outcome(get_with("Host: h\r\nA: 1\r\nB: 2\r\n"), head), 0);
    EXPECT_EQ(head.headers.size(), 3u);
}

TEST_F(HttpParseRequest, FieldNameIs) {
    EXPECT_TRUE(field_name_is("Content-Type", "content-type"));
    EXPECT_TRUE(field_name_is("X-A", "x-a"));
    EXPECT_FALSE(field_name_is("X-Ab", "x-a"));
    EXPECT_FALSE(field_name_is("X\r", "x-"));
    EXPECT_TRUE(field_name_is("Proxy-Authorization", "proxy-authorization"));
    EXPECT_FALSE(field_name_is("Proxy-Authorizatio", "proxy-authorization"));
}

// The 8-bytes-at-a-time comparison folds exactly 'A'..'Z', at every position
// of a long name and a short one.
TEST_F(HttpParseRequest, FieldNameIsFoldsOnlyCapitals) {
    for (size_t len : {3u, 19u}) {
        for (size_t pos = 0; pos < len; ++pos) {
            for (int byte = 0; byte < 256; ++byte) {
                std::string name(len, 'a');
                name[pos] = char(byte);
                for (int lit = 0; lit < 128; ++lit) {
                    std::string lowercase(len, 'a');
                    lowercase[pos] = char(lit);
                    char folded = byte >= 'A' && byte <= 'Z' ? char(byte | 0x20) : char(byte);
                    ASSERT_EQ(field_name_is(name, lowercase), folded == char(lit)) << len << " " << pos << " " << byte << " " << lit;
                }
            }
        }
    }
}

class HttpParseResponse : public testing::Test {
protected:
    // 0 for Complete, -1 for Incomplete, 1 for Error; parses a copy that lives
    // as long as the test.
    int response_outcome(std::string_view response, ResponseHead& head, bool head_request = false,
                         const ParseLimits& limits = {}) {
        buffer_.assign(response);
        switch (parse_response_head(buffer_.data(), buffer_.size(), limits, head_request, head)) {
        case ParseResult::Complete: return 0;
        case ParseResult::Incomplete: return -1;
        case ParseResult::Error: return 1;
        }
        return -2;
    }

    int response_outcome(std::string_view response) {
        ResponseHead head;
        return response_outcome(response, head);
    }

    std::string buffer_;
};

TEST_F(HttpParseResponse, ContentLength) {
    ResponseHead head;
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
    ASSERT_EQ(response_outcome(resp, head), 0);
    EXPECT_EQ(head.version_minor, 1);
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.reason, "OK");
    EXPECT_EQ(head.headers.size(), 2u);
    EXPECT_EQ(head.head_length, resp.size() - 5);
    EXPECT_EQ(head.body, ResponseHead::Body::Length);
    EXPECT_EQ(head.content_length, 5u);
    EXPECT_TRUE(head.keep_alive);
}

TEST_F(HttpParseResponse, Chunked) {
    ResponseHead head;
    ASSERT_EQ(response_outcome("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", head), 0);
    EXPECT_EQ(head.status, 404);
    EXPECT_EQ(head.reason, "Not Found");
    EXPECT_EQ(head.body, ResponseHead::Body::Chunked);
    EXPECT_TRUE(head.keep_alive);
    EXPECT_TRUE(head.other_codings);  // still gzip once de-chunked
    ASSERT_EQ(response_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", head), 0);
    EXPECT_FALSE(head.other_codings);
}

TEST_F(HttpParseResponse, UntilClose) {
    ResponseHead head;
    ASSERT_EQ(response_outcome("HTTP/1.1 200 OK\r\n\r\n", head), 0);
    EXPECT_EQ(head.body, ResponseHead::Body::UntilClose);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(response_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", head), 0);
    EXPECT_EQ(head.body, ResponseHead::Body::UntilClose);
    EXPECT_FALSE(head.keep_alive);
}

TEST_F(HttpParseResponse, NoBody) {
    ResponseHead head;
    ASSERT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head, true), 0);
    EXPECT_EQ(head.body, ResponseHead::Body::None);
    EXPECT_TRUE(head.keep_alive);
    for (const char* status : {"100 Continue", "101 Switching Protocols", "204 No Content", "304 Not Modified"}) {
        ASSERT_EQ(response_outcome("HTTP/1.1 "s + status + "\r\nTransfer-Encoding: chunked\r\n\r\n", head), 0);
        EXPECT_EQ(head.body, ResponseHead::Body::None) << status;
    }
}

TEST_F(HttpParseResponse, KeepAlive) {
    ResponseHead head;
    ASSERT_EQ(response_outcome("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", head), 0);
    EXPECT_FALSE(head.keep_alive);
    ASSERT_EQ(response_outcome("HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", head), 0);
    EXPECT_TRUE(head.keep_alive);
    ASSERT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", head), 0);
    EXPECT_FALSE(head.keep_alive);
}

TEST_F(HttpParseResponse, StatusLine) {
    ResponseHead head;
    ASSERT_EQ(response_outcome("HTTP/1.1 599 \r\nContent-Length: 0\r\n\r\n", head), 0);
    EXPECT_EQ(head.status, 599);
    EXPECT_EQ(head.reason, "");
    ASSERT_EQ(response_outcome("HTTP/1.1 200 A\tB \xe9\r\nContent-Length: 0\r\n\r\n", head), 0);
    EXPECT_EQ(head.reason, "A\tB \xe9");
    const char* bad[] = {"HTTP/1.1 200\r\n",     "HTTP/1.1 20 OK\r\n",   "HTTP/1.1 2000 OK\r\n",
                         "HTTP/1.1 600 X\r\n",   "HTTP/1.1 099 X\r\n",   "HTTP/2 200 OK\r\n",
                         "HTTP/2.0 200 OK\r\n",  "http/1.1 200 OK\r\n",  "HTTP/1.1  200 OK\r\n",
                         "HTTP/1.1 200 OK\n",    "HTTP/1.1 200 O\rK\r\n", "HTTP/1.1 200 O\x01K\r\n",
                         "\r\nHTTP/1.1 200 OK\r\n", "ICY 200 OK\r\n"};
    for (const char* line : bad)
        EXPECT_EQ(response_outcome(line + "Content-Length: 0\r\n\r\n"s), 1) << line;
}

TEST_F(HttpParseResponse, BadFraming) {
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: foo\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nX : a\r\n\r\n"), 1);
    EXPECT_EQ(response_outcome("HTTP/1.1 200 OK\r\nX: a\n\r\n"), 1);
}

TEST_F(HttpParseResponse, IncompleteAndLimits) {
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (size_t n = 0; n < resp.size(); ++n)
        EXPECT_EQ(response_outcome(std::string_view(resp).substr(0, n)), -1) << n;
    ResponseHead head;
    ParseLimits limits;
    limits.max_head = resp.size() - 1;
    EXPECT_EQ(response_outcome(resp, head, false, limits), 1);
    limits = ParseLimits{};
    limits.max_headers = 0;
    EXPECT_EQ(response_outcome(resp, head, false, limits), 1);
}

}  // namespace
}  // namespace sluice::http
