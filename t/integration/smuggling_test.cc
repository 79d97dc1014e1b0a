// Strict HTTP/1.1 at the perimeter: a corpus of raw requests that front and
// back ends have read two ways (CL+TE, duplicate and list Content-Length,
// obfuscated Transfer-Encoding, chunk sizes and extensions, obs-fold, bare CR,
// NUL and control bytes, over-long lines, odd versions, target forms, Host,
// CONNECT, h2c, pipelining after an error), each sent to the real daemon in
// front of a real origin.
//
// Every case names the RFC 9112 / 9110 rule that decides it and the responses
// the client must get; then the origin's request log (test_upstream --log)
// proves what crossed the gateway: exactly the requests listed, whole, and
// nothing that was hidden in a body or after an error. The gateway keeps
// upstream connections alive (keepalive 4, one worker), so each case ends
// with a probe on a fresh client connection: had a poisoned upstream
// connection (a request cut off mid-body) gone back to the pool, the probe's
// bytes would be read as the rest of that body and the probe would not show
// up in the log as itself. A client connection that saw an error must be
// closed after the error response, with nothing after it.
//
// Bodies go to the origin buffered (location /) and streamed (/stream/,
// proxy_request_buffering off, where the origin already has the head when
// the body turns out bad); the chunked cases run against both.
#include <string>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;

// Every case's requests carry this Host unless the case is about Host.
#define HOST "Host: gw.test\r\n"
// What a desynchronized parser would take for a second request.
#define SMUGGLED "GET /smuggled HTTP/1.1\r\n" HOST "\r\n"

constexpr std::string_view kConfig = R"(
worker_processes 1;
events { worker_connections 256; }
http {
    access_log off;
    client_header_timeout 3s;
    client_body_timeout 3s;
    client_max_body_size 0;
    large_client_header_buffers 4 2k;
    upstream backend {
        server 127.0.0.1:{{UPSTREAM}};
        keepalive 4;
    }
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    server {
        listen 127.0.0.1:{{PORT}};
        server_name gw.test;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location / { proxy_pass http://backend; }
        location /big { client_max_body_size 64k; proxy_pass http://backend; }
        location /stream/big { client_max_body_size 64k; proxy_request_buffering off; proxy_pass http://backend; }
        location /stream/ { proxy_request_buffering off; proxy_pass http://backend; }
        # The usual WebSocket location (nginx's documented example).
        location /wsl/ {
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_pass http://backend/ws;
        }
    }
}
)";

struct Case {
    const char* name;
    const char* rule;            // the RFC 9112 / 9110 rule that decides the case
    std::string raw;             // sent as is, at once, on a fresh connection
    std::vector<int> statuses;   // the responses the client gets, in order
    bool closes;                 // the connection is closed after them
    // What the origin receives, in order: "METHOD TARGET body=N".
    std::vector<std::string> forwarded;
    bool partial = false;        // the origin gets a head whose body never completes
    // Substrings the origin's echo (the first response's body) must not hold.
    std::vector<std::string> echo_lacks = {};
};

// The origin's request log: "C REQ METHOD TARGET VERSION body=N", "C BAD S",
// "C PARTIAL" (see t/lib/test_upstream.cc).
struct OriginLog {
    std::vector<std::string> requests;  // "METHOD TARGET body=N"
    int bad = 0;
    int partial = 0;
    std::vector<std::string> lines;
};

OriginLog parse_origin_log(std::string_view text) {
    OriginLog log;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string line(text.substr(0, nl));
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (line.empty()) continue;
        log.lines.push_back(line);
        size_t sp = line.find(' ');
        std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
        if (rest.starts_with("REQ ")) {
            // METHOD TARGET VERSION body=N -> METHOD TARGET body=N
            std::string req = rest.substr(4);
            size_t a = req.find(' ');
            size_t b = a == std::string::npos ? a : req.find(' ', a + 1);
            size_t c = b == std::string::npos ? b : req.find(' ', b + 1);
            log.requests.push_back(c == std::string::npos ? req : req.substr(0, b) + req.substr(c));
        } else if (rest.starts_with("BAD ")) {
            ++log.bad;
        } else if (rest == "PARTIAL") {
            ++log.partial;
        }
    }
    return log;
}

std::string describe(const OriginLog& log) {
    std::string out;
    for (const std::string& line : log.lines) out += "\n    " + line;
    return out.empty() ? " (nothing)" : out;
}

class Smuggling : public ::testing::Test {
protected:
    void SetUp() override {
        log_path_ = dir_.path("origin.log");
        upstream_ = std::make_unique<UpstreamProcess>(std::vector<std::string>{"--log", log_path_});
        ASSERT_TRUE(upstream_->start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kConfig),
                                           ConfigVars{{"UPSTREAM", upstream_->port()}});
        ASSERT_TRUE(daemon_->start());
        port_ = daemon_->port();
    }

    std::string origin_log() const { return read_file(log_path_); }

    // Sends the case, checks the responses and the connection, then probes
    // the upstream pool and checks what the origin received.
    void run(const Case& k) {
        SCOPED_TRACE(std::string(k.name) + " [" + k.rule + "]");
        const std::string tag = std::to_string(++cases_);
        const size_t from = origin_log().size();
        std::vector<std::string> expected = k.forwarded;

        Conn c(port_);
        ASSERT_TRUE(c.connected());
        c.send(k.raw);  // the gateway may close before taking all of it
        std::optional<Response> first;
        for (size_t i = 0; i < k.statuses.size(); ++i) {
            auto r = c.read_response(5s);
            ASSERT_TRUE(r) << "response " << i + 1 << ": " << c.error();
            EXPECT_EQ(r->status, k.statuses[i]) << "response " << i + 1 << ":\n" << *r;
            if (i + 1 == k.statuses.size() && k.closes) {
                EXPECT_EQ(r->header("Connection"), "close");
            }
            if (!first) first = std::move(r);
        }
        if (first) {
            for (const std::string& s : k.echo_lacks)
                EXPECT_THAT(first->body, ::testing::Not(::testing::HasSubstr(s)));
        }
        if (k.closes) {
            EXPECT_TRUE(c.is_closed(5s)) << "the connection stays open";
            EXPECT_EQ(c.buffered(), "") << "bytes after the last response";
        } else {
            // The connection is still in step: the next request is answered as itself.
            const std::string after = "/after-" + tag;
            ASSERT_TRUE(c.send("GET " + after + " HTTP/1.1\r\n" HOST "\r\n"));
            auto r = c.read_response(5s);
            ASSERT_TRUE(r) << "request after the case: " << c.error();
            EXPECT_EQ(r->status, 200);
            EXPECT_THAT(r->body, ::testing::HasSubstr("\"uri\":\"" + after + "\""));
            expected.push_back("GET " + after + " body=0");
        }

        // A fresh client: its request must reach the origin alone and whole,
        // whichever pooled upstream connection carries it.
        const std::string probe = "/probe-" + tag;
        auto p = http_get(port_, probe, HOST);
        ASSERT_TRUE(p) << "probe";
        EXPECT_EQ(p->status, 200) << *p;
        EXPECT_THAT(p->body, ::testing::HasSubstr("\"uri\":\"" + probe + "\""));
        expected.push_back("GET " + probe + " body=0");

        OriginLog log;
        wait_until(
            [&] {
                log = parse_origin_log(origin_log().substr(from));
                return log.requests.size() >= expected.size() && log.partial >= (k.partial ? 1 : 0);
            },
            5s);
        EXPECT_EQ(log.requests, expected) << "the origin's log:" << describe(log);
        EXPECT_EQ(log.bad, 0) << "the origin could not parse what it got:" << describe(log);
        EXPECT_EQ(log.partial, k.partial ? 1 : 0) << "the origin's log:" << describe(log);
    }

    void run_all(const std::vector<Case>& cases) {
        for (const Case& k : cases) run(k);
    }

    TempDir dir_{"sluice-smuggling"};
    std::string log_path_;
    std::unique_ptr<UpstreamProcess> upstream_;
    std::unique_ptr<Daemon> daemon_;
    uint16_t port_ = 0;
    int cases_ = 0;
};

// A chunked request body, sent to the buffered location (/) and to the
// streamed one (/stream/): in the second the origin already has the head
// when a bad body is found, so it must see the request cut off, and the
// upstream connection must not be reused.
struct ChunkCase {
    const char* name;
    const char* rule;
    std::string body;  // after the head "POST ... Transfer-Encoding: chunked"
    int status;        // 200: a good body, then the connection stays open
    uint64_t decoded;  // body bytes the origin receives when good
    std::string extra = {};  // more requests pipelined after the body
    std::vector<int> extra_statuses = {};
    std::vector<std::string> extra_forwarded = {};
};

std::vector<Case> chunk_cases(const std::vector<ChunkCase>& in) {
    std::vector<Case> out;
    for (const char* prefix : {"/chunk", "/stream/chunk"}) {
        const bool streamed = std::string_view(prefix).starts_with("/stream");
        for (const ChunkCase& k : in) {
            Case c{k.name, k.rule,
                   "POST " + std::string(prefix) + " HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n" + k.body + k.extra,
                   {k.status}, k.status != 200, {}};
            if (k.status == 200) {
                c.forwarded.push_back("POST " + std::string(prefix) + " body=" + std::to_string(k.decoded));
                c.statuses.insert(c.statuses.end(), k.extra_statuses.begin(), k.extra_statuses.end());
                c.forwarded.insert(c.forwarded.end(), k.extra_forwarded.begin(), k.extra_forwarded.end());
            } else {
                c.partial = streamed;
            }
            out.push_back(std::move(c));
        }
    }
    return out;
}

// ---- Content-Length and Transfer-Encoding together, and Content-Length alone ----

TEST_F(Smuggling, ContentLengthAndTransferEncoding) {
    const std::string body_request = SMUGGLED;
    const std::string n = std::to_string(body_request.size());
    run_all({
        {"CL.TE: both, the chunked body ends early and hides a request",
         "RFC 9112 6.1: CL with TE may be rejected, and the connection MUST be closed after",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         {400}, true, {}},
        {"TE.CL: TE first, CL covers only the size line",
         "RFC 9112 6.1: CL with TE may be rejected, and the connection MUST be closed after",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" SMUGGLED "\r\n0\r\n\r\n",
         {400}, true, {}},
        {"CL 0 with TE",
         "RFC 9112 6.1: CL with TE may be rejected, and the connection MUST be closed after",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         {400}, true, {}},
        {"CL with TE: identity",
         "RFC 9112 6.1: a transfer coding the server does not understand gets 501; and never with CL",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5\r\nTransfer-Encoding: identity\r\n\r\nhello",
         {501}, true, {}},
        {"duplicate Content-Length, same value",
         "RFC 9110 8.6: identical duplicates may be rejected; some peers take the first, some the last",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
         {400}, true, {}},
        {"duplicate Content-Length, different values",
         "RFC 9112 6.3 (5): differing lengths are unrecoverable: 400 and close",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5\r\nContent-Length: 45\r\n\r\nhello" SMUGGLED,
         {400}, true, {}},
        {"Content-Length list, same values",
         "RFC 9110 8.6: a list of identical values may be rejected as invalid",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5, 5\r\n\r\nhello",
         {400}, true, {}},
        {"Content-Length list, different values",
         "RFC 9112 6.3 (5): an invalid Content-Length is unrecoverable: 400 and close",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5, 45\r\n\r\nhello" SMUGGLED,
         {400}, true, {}},
        {"Content-Length with a sign", "RFC 9110 8.6: Content-Length = 1*DIGIT",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: +5\r\n\r\nhello", {400}, true, {}},
        {"negative Content-Length", "RFC 9110 8.6: Content-Length = 1*DIGIT",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: -1\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"hexadecimal Content-Length", "RFC 9110 8.6: Content-Length = 1*DIGIT",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 0x5\r\n\r\nhello", {400}, true, {}},
        {"Content-Length with a space inside", "RFC 9110 8.6: Content-Length = 1*DIGIT",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 5 0\r\n\r\nhello", {400}, true, {}},
        {"Content-Length of 2^64 + 5", "RFC 9110 8.6: a recipient MUST anticipate overflow and treat it as an error",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: 18446744073709551621\r\n\r\nhello" SMUGGLED, {400}, true, {}},
        {"empty Content-Length", "RFC 9110 8.6: Content-Length = 1*DIGIT",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length: \r\n\r\n" SMUGGLED, {400}, true, {}},
        {"Content-Length with leading zeros", "RFC 9110 8.6: 1*DIGIT, so 005 is 5",
         "POST /zeros HTTP/1.1\r\n" HOST "Content-Length: 005\r\n\r\nhello", {200}, false, {"POST /zeros body=5"}},
        {"a body that holds a request", "RFC 9112 6.2: Content-Length bytes are body, whatever they look like",
         "POST /holder HTTP/1.1\r\n" HOST "Content-Length: " + n + "\r\n\r\n" + body_request,
         {200}, false, {"POST /holder body=" + n}},
        {"a GET with a body that holds a request", "RFC 9110 9.3.1 and RFC 9112 6.2: the length frames a GET's body too",
         "GET /get-body HTTP/1.1\r\n" HOST "Content-Length: " + n + "\r\n\r\n" + body_request,
         {200}, false, {"GET /get-body body=" + n}},
        {"a short body, then a pipelined request", "RFC 9112 9.3.2: pipelined requests are answered in order",
         "POST /short HTTP/1.1\r\n" HOST "Content-Length: 5\r\n\r\nhelloGET /pipelined HTTP/1.1\r\n" HOST "\r\n",
         {200, 200}, false, {"POST /short body=5", "GET /pipelined body=0"}},
        {"a body over client_max_body_size that holds a request",
         "RFC 9110 15.5.14: 413, and the connection is closed (the unread body is not parsed)",
         "POST /big HTTP/1.1\r\n" HOST "Content-Length: 100000\r\n\r\n" SMUGGLED, {413}, true, {}},
        {"a chunk over client_max_body_size", "RFC 9110 15.5.14: 413, and the connection is closed",
         "POST /big HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nfffffffff\r\n" SMUGGLED, {413}, true, {}},
        {"a streamed chunk over client_max_body_size",
         "RFC 9110 15.5.14: 413; the origin's request is cut off",
         "POST /stream/big HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\nfffffffff\r\n" SMUGGLED, {413}, true,
         {}, true},
    });
}

// ---- Transfer-Encoding as obfuscated in smuggling attacks ----

TEST_F(Smuggling, ObfuscatedTransferEncoding) {
    run_all({
        {"xchunked", "RFC 9112 6.1: an unknown transfer coding gets 501",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" SMUGGLED, {501}, true, {}},
        {"chunkedx", "RFC 9112 6.1: an unknown transfer coding gets 501",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n" SMUGGLED, {501}, true, {}},
        {"space before the colon", "RFC 9112 5.1: whitespace between field name and colon MUST get 400",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"tab before the value", "RFC 9110 5.6.3: OWS is SP or HTAB, so this is chunked",
         "POST /tab HTTP/1.1\r\n" HOST "Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         {200}, false, {"POST /tab body=5"}},
        {"upper case", "RFC 9112 7: transfer coding names are case-insensitive",
         "POST /upper HTTP/1.1\r\n" HOST "Transfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         {200}, false, {"POST /upper body=5"}},
        {"chunked on two lines", "RFC 9112 6.1: chunked MUST NOT be applied twice",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         {400}, true, {}},
        {"chunked twice in a list", "RFC 9112 6.1: chunked MUST NOT be applied twice",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"chunked, then another coding", "RFC 9112 6.3 (4): chunked not final: 400 and close",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"a coding the gateway does not decode, then chunked",
         "RFC 9112 6.1: a coding not understood gets 501 (the gateway re-frames bodies as chunked only, "
         "so it could not forward gzip)",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {501}, true, {}},
        {"quoted chunked", "RFC 9112 7: a transfer coding is a token",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"chunked with a parameter", "RFC 9112 7: chunked has no parameters",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"an empty list element before chunked", "RFC 9110 5.6.1: empty list elements are ignored",
         "POST /empty-element HTTP/1.1\r\n" HOST "Transfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
         {200}, false, {"POST /empty-element body=5"}},
        {"empty Transfer-Encoding", "RFC 9112 6.3 (4): chunked is not the final coding: 400 and close",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: \r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"chunked in HTTP/1.0", "RFC 9112 6.1: TE in HTTP/1.0 means faulty framing: close",
         "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"vertical tab before chunked", "RFC 9110 5.5: a control character in a field value is invalid",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding:\x0b" "chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"chunked folded onto the next line", "RFC 9112 5.2: obs-fold is rejected with 400",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"a coding folded after chunked", "RFC 9112 5.2: obs-fold is rejected with 400",
         "POST /a HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n , identity\r\n\r\n0\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"Transfer_Encoding with an underscore",
         "nginx's underscores_in_headers off: the field is dropped, so the request has no body and "
         "what follows is the next request (here an invalid one: 400 and close)",
         "POST /underscore HTTP/1.1\r\n" HOST "Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
         {200, 400}, true, {"POST /underscore body=0"}},
        {"Transfer_Encoding, then a pipelined request",
         "the dropped field leaves a request without a body; the next one is pipelined, not smuggled",
         "POST /underscore HTTP/1.1\r\n" HOST "Transfer_Encoding: chunked\r\n\r\nGET /next HTTP/1.1\r\n" HOST "\r\n",
         {200, 200}, false, {"POST /underscore body=0", "GET /next body=0"}, false, {"transfer_encoding"}},
    });
}

// ---- chunk sizes, extensions, data and trailers ----

TEST_F(Smuggling, ChunkedFraming) {
    run_all(chunk_cases({
        {"0x prefix", "RFC 9112 7.1: chunk-size = 1*HEXDIG", "0x5\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, 0},
        {"leading space", "RFC 9112 7.1: chunk-size = 1*HEXDIG", " 5\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, 0},
        {"trailing space", "RFC 9112 7.1: BWS only before a chunk-ext's ';'", "5 \r\nhello\r\n0\r\n\r\n", 400, 0},
        {"space before an extension",
         "RFC 9112 7.1.1 allows BWS before ';'; refused: lax parsers split \"5 ;x\" differently",
         "5 ;a=b\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"negative size", "RFC 9112 7.1: chunk-size = 1*HEXDIG", "-5\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, 0},
        {"17 hex digits", "RFC 9112 7.1: a recipient MUST anticipate overflow; zero padding hides 5",
         "00000000000000005\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"2^64 + 5", "RFC 9112 7.1: a recipient MUST anticipate overflow", "10000000000000005\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"empty extension", "RFC 9112 7.1.1: chunk-ext-name is a token", "5;\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"bare LF in an extension", "RFC 9112 2.2: a bare LF is not a line end here",
         "5;a\nb\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"bare CR in a quoted extension", "RFC 9110 5.6.4: qdtext has no CR",
         "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n", 400, 0},
        {"data longer than the size", "RFC 9112 7.1: chunk-data is followed by CRLF",
         "5\r\nhelloXX\r\n0\r\n\r\n", 400, 0},
        {"data shorter than the size", "RFC 9112 7.1: chunk-data is followed by CRLF",
         "5\r\nhel\r\n0\r\n\r\n", 400, 0},
        {"LF line ends", "RFC 9112 7.1: chunk lines end with CRLF", "5\nhello\n0\n\n" SMUGGLED, 400, 0},
        {"a request where the trailer section should end",
         "RFC 9112 7.1.2: trailer fields are field lines; a request line is not one",
         "0\r\n" SMUGGLED, 400, 0},
        {"obs-fold in a trailer", "RFC 9112 5.2 and 7.1.2: obs-fold is rejected",
         "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", 400, 0},
        {"a name and value in a chunk size", "RFC 9112 7.1: chunk-size = 1*HEXDIG", "zz\r\n" SMUGGLED, 400, 0},
        {"valid extensions", "RFC 9112 7.1.1: extensions are ignored", "5;name=value;q=\"a b\\\"c\"\r\nhello\r\n0\r\n\r\n",
         200, 5},
        {"upper-case hex", "RFC 9112 7.1: HEXDIG is case-insensitive", "A\r\n0123456789\r\n0\r\n\r\n", 200, 10},
        {"zero-padded size within 16 digits", "RFC 9112 7.1: 1*HEXDIG", "0005\r\nhello\r\n0000\r\n\r\n", 200, 5},
        {"framing fields in the trailer", "RFC 9110 6.5.1: trailers MUST NOT change framing, routing or auth",
         "5\r\nhello\r\n0\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\nHost: evil.test\r\n\r\n", 200, 5},
        {"a pipelined request after the body", "RFC 9112 9.3.2: the body ends at the last chunk; then the next request",
         "5\r\nhello\r\n0\r\n\r\n", 200, 5, "GET /after-chunked HTTP/1.1\r\n" HOST "\r\n", {200},
         {"GET /after-chunked body=0"}},
    }));
}

// ---- field syntax: obs-fold, whitespace, CR, NUL and other control bytes ----

TEST_F(Smuggling, FieldSyntax) {
    run_all({
        {"obs-fold", "RFC 9112 5.2: obs-fold in a request is rejected with 400 (or replaced)",
         "GET /a HTTP/1.1\r\n" HOST "X-A: b\r\n c\r\n\r\n", {400}, true, {}},
        {"obs-fold with a tab", "RFC 9112 5.2: obs-fold in a request is rejected with 400 (or replaced)",
         "GET /a HTTP/1.1\r\n" HOST "X-A: b\r\n\tContent-Length: 45\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"whitespace before the first field", "RFC 9112 2.2: reject, or ignore the indented line",
         "GET /a HTTP/1.1\r\n Content-Length: 45\r\n" HOST "\r\n" SMUGGLED, {400}, true, {}},
        {"space before the colon", "RFC 9112 5.1: MUST get 400",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length : 45\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"tab before the colon", "RFC 9112 5.1: MUST get 400",
         "POST /a HTTP/1.1\r\n" HOST "Content-Length\t: 45\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"bare LF line ends", "RFC 9112 2.2 lets a recipient accept bare LF; refused (front ends disagree on it)",
         "GET /a HTTP/1.1\n" HOST "\n" SMUGGLED, {400}, true, {}},
        {"bare LF after a field", "RFC 9112 2.2: refused",
         "GET /a HTTP/1.1\r\n" HOST "X: a\nContent-Length: 45\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"bare CR inside a value", "RFC 9112 2.2: a bare CR MUST be rejected or replaced by SP",
         "GET /a HTTP/1.1\r\n" HOST "X: a\rContent-Length: 45\r\n\r\n" SMUGGLED, {400}, true, {}},
        {"bare CR before CRLF", "RFC 9112 2.2: a bare CR MUST be rejected or replaced by SP",
         "GET /a HTTP/1.1\r\nHost: gw.test\r\r\n\r\n", {400}, true, {}},
        {"bare CR in the request line", "RFC 9112 2.2: a bare CR MUST be rejected or replaced by SP",
         "GET /a\r HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"NUL in a value", "RFC 9110 5.5: CR, LF or NUL in a value MUST be rejected or replaced",
         "GET /a HTTP/1.1\r\n" HOST "X: a\0b\r\n\r\n"s, {400}, true, {}},
        {"NUL in a name", "RFC 9110 5.1: a field name is a token",
         "GET /a HTTP/1.1\r\n" HOST "X\0Y: a\r\n\r\n"s, {400}, true, {}},
        {"NUL in the target", "RFC 9112 3.2 / RFC 3986: NUL is not a URI character",
         "GET /a\0/b HTTP/1.1\r\n" HOST "\r\n"s, {400}, true, {}},
        {"NUL in the method", "RFC 9110 9.1: a method is a token",
         "GE\0T /a HTTP/1.1\r\n" HOST "\r\n"s, {400}, true, {}},
        {"DEL in a value", "RFC 9110 5.5: field-vchar excludes DEL",
         "GET /a HTTP/1.1\r\n" HOST "X: a\x7f" "b\r\n\r\n", {400}, true, {}},
        {"SOH in a value", "RFC 9110 5.5: field-vchar excludes control characters",
         "GET /a HTTP/1.1\r\n" HOST "X: a\x01" "b\r\n\r\n", {400}, true, {}},
        {"ESC in a Host value", "RFC 9110 7.2: Host is a uri-host",
         "GET /a HTTP/1.1\r\nHost: gw\x1b.test\r\n\r\n", {400}, true, {}},
        {"obs-text in a value", "RFC 9110 5.5: obs-text is allowed in a value and passed on",
         "GET /obs-text HTTP/1.1\r\n" HOST "X-Name: caf\xc3\xa9\r\n\r\n", {200}, false, {"GET /obs-text body=0"}},
        {"empty field name", "RFC 9110 5.1: a field name is a non-empty token",
         "GET /a HTTP/1.1\r\n" HOST ": x\r\n\r\n", {400}, true, {}},
        {"slash in a field name", "RFC 9110 5.1: a field name is a token",
         "GET /a HTTP/1.1\r\n" HOST "X/Y: 1\r\n\r\n", {400}, true, {}},
        {"8-bit byte in a field name", "RFC 9110 5.1: a field name is a token",
         "GET /a HTTP/1.1\r\n" HOST "X\xc3\xa9: 1\r\n\r\n", {400}, true, {}},
        {"tab separators in the request line", "RFC 9112 3: single SP (other whitespace MAY be refused)",
         "GET\t/a\tHTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"two spaces in the request line", "RFC 9112 3: single SP",
         "GET  /a HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"space inside the target", "RFC 9112 3.2: the target has no whitespace",
         "GET /a HTTP/1.1 HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"8-bit bytes in the target", "RFC 9112 3.2 / RFC 3986 2: non-ASCII is percent-encoded",
         "GET /caf\xc3\xa9 HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"a fragment in the target", "RFC 9112 3.2: the target has no fragment",
         "GET /a#frag HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"a method that is not a token", "RFC 9110 9.1: a method is a token",
         "G(ET /a HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
    });
}

// ---- sizes, empty lines, versions ----

TEST_F(Smuggling, LimitsAndVersions) {
    std::string many_headers;
    for (int i = 0; i < 101; ++i) many_headers += "X-H" + std::to_string(i) + ": v\r\n";
    std::string big_head;
    for (int i = 0; i < 50; ++i) big_head += "X-H" + std::to_string(i) + ": " + std::string(200, 'v') + "\r\n";
    run_all({
        {"request line over the limit", "RFC 9112 3: a target longer than the server handles gets 414",
         "GET /" + std::string(2100, 'a') + " HTTP/1.1\r\n" HOST "\r\n" SMUGGLED, {414}, true, {}},
        {"field line over the limit", "RFC 6585 5: 431",
         "GET /a HTTP/1.1\r\n" HOST "X-Big: " + std::string(2100, 'b') + "\r\n\r\n" SMUGGLED, {431}, true, {}},
        {"too many fields", "RFC 6585 5: 431", "GET /a HTTP/1.1\r\n" HOST + many_headers + "\r\n" SMUGGLED, {431},
         true, {}},
        {"head over the limit", "RFC 6585 5: 431", "GET /a HTTP/1.1\r\n" HOST + big_head + "\r\n" SMUGGLED, {431}, true,
         {}},
        {"one empty line before the request", "RFC 9112 2.2: SHOULD ignore at least one empty line",
         "\r\nGET /empty-line HTTP/1.1\r\n" HOST "\r\n", {200}, false, {"GET /empty-line body=0"}},
        {"endless empty lines", "RFC 9112 2.2: ignoring a few is enough",
         "\r\n\r\n\r\n\r\n\r\n\r\nGET /a HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"HTTP/0.9", "RFC 9112 2.3 / 3: a request line has a version; 0.9 is not served",
         "GET /a\r\n\r\n", {400}, true, {}},
        {"HTTP/1.2", "RFC 9110 6.2 lets a server take 1.2 as 1.1; 505 is the stricter answer",
         "GET /a HTTP/1.2\r\n" HOST "\r\n", {505}, true, {}},
        {"HTTP/2.0 in an HTTP/1 request line", "RFC 9110 15.6.6: 505",
         "GET /a HTTP/2.0\r\n" HOST "\r\n", {505}, true, {}},
        {"the HTTP/2 preface", "RFC 9113 3.4: an HTTP/1.1 server sees an unsupported version",
         "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {505}, true, {}},
        {"HTTP/1.10", "RFC 9112 2.3: HTTP-version = HTTP-name \"/\" DIGIT \".\" DIGIT",
         "GET /a HTTP/1.10\r\n" HOST "\r\n", {400}, true, {}},
        {"lower-case http", "RFC 9112 2.3: HTTP-name is case-sensitive",
         "GET /a http/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"no minor version", "RFC 9112 2.3: DIGIT \".\" DIGIT", "GET /a HTTP/1\r\n" HOST "\r\n", {400}, true, {}},
        {"space after the version", "RFC 9112 3: the line ends after the version",
         "GET /a HTTP/1.1 \r\n" HOST "\r\n", {400}, true, {}},
        {"no version", "RFC 9112 3: method SP target SP version", "GET /a \r\n" HOST "\r\n", {400}, true, {}},
        {"HTTP/1.0 without Host", "RFC 9112 3.2: Host is required in HTTP/1.1 only; 1.0 closes",
         "GET /ten HTTP/1.0\r\n\r\n", {200}, true, {"GET /ten body=0"}},
        {"a lower-case method", "RFC 9110 9.1: methods are case-sensitive: \"get\" is another method",
         "get /lower HTTP/1.1\r\n" HOST "\r\n", {200}, false, {"get /lower body=0"}},
    });
}

// ---- request-target forms and Host ----

TEST_F(Smuggling, TargetFormsAndHost) {
    run_all({
        {"absolute-form", "RFC 9112 3.2.2: the target's authority wins over Host; origin-form goes upstream",
         "GET http://gw.test/abs?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", {200}, false, {"GET /abs?x=1 body=0"}},
        {"absolute-form, https", "RFC 9112 3.2.2", "GET https://gw.test/tls HTTP/1.1\r\n" HOST "\r\n", {200}, false,
         {"GET /tls body=0"}},
        {"absolute-form, upper-case scheme", "RFC 3986 3.1: schemes are case-insensitive",
         "GET HTTP://GW.TEST/upper-scheme HTTP/1.1\r\n" HOST "\r\n", {200}, false, {"GET /upper-scheme body=0"}},
        {"absolute-form without a path", "RFC 9112 3.2.1: an empty path is sent as /",
         "GET http://gw.test HTTP/1.1\r\n" HOST "\r\n", {200}, false, {"GET / body=0"}},
        {"absolute-form with userinfo", "RFC 9110 4.2.4: userinfo is an error",
         "GET http://user:pw@gw.test/a HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"absolute-form, another scheme", "RFC 9112 3.2.2: only http and https are served",
         "GET ftp://gw.test/a HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"a path that starts with //", "RFC 9112 3.2.1: origin-form; merge_slashes makes it one path",
         "GET //evil.test/x HTTP/1.1\r\n" HOST "\r\n", {200}, false, {"GET /evil.test/x body=0"}},
        {"asterisk-form with GET", "RFC 9112 3.2.4: asterisk-form is for OPTIONS only",
         "GET * HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"authority-form with GET", "RFC 9112 3.2.3: authority-form is for CONNECT only",
         "GET gw.test:80 HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"no Host", "RFC 9112 3.2: a 1.1 request without Host MUST get 400",
         "GET /a HTTP/1.1\r\n\r\n", {400}, true, {}},
        {"two Hosts", "RFC 9112 3.2: more than one Host line MUST get 400",
         "GET /a HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\n\r\n", {400}, true, {}},
        {"two identical Hosts", "RFC 9112 3.2: more than one Host line MUST get 400",
         "GET /a HTTP/1.1\r\nHost: gw.test\r\nHost: gw.test\r\n\r\n", {400}, true, {}},
        {"a Host list", "RFC 9112 3.2: an invalid Host value MUST get 400",
         "GET /a HTTP/1.1\r\nHost: gw.test, evil.test\r\n\r\n", {400}, true, {}},
        {"Host with userinfo", "RFC 9110 7.2: Host = uri-host [ \":\" port ]",
         "GET /a HTTP/1.1\r\nHost: evil.test@gw.test\r\n\r\n", {400}, true, {}},
        {"Host with a path", "RFC 9110 7.2: Host = uri-host [ \":\" port ]",
         "GET /a HTTP/1.1\r\nHost: gw.test/admin\r\n\r\n", {400}, true, {}},
        {"Host with a space", "RFC 9110 7.2: Host = uri-host [ \":\" port ]",
         "GET /a HTTP/1.1\r\nHost: gw .test\r\n\r\n", {400}, true, {}},
        {"Host with a port over 65535", "RFC 9110 7.2 / RFC 3986 3.2.3",
         "GET /a HTTP/1.1\r\nHost: gw.test:99999\r\n\r\n", {400}, true, {}},
        {"empty Host", "RFC 9110 7.2: an empty Host names no server; refused",
         "GET /a HTTP/1.1\r\nHost: \r\n\r\n", {400}, true, {}},
    });
}

// ---- CONNECT, upgrades and pipelining after an error ----

TEST_F(Smuggling, ConnectUpgradeAndPipelining) {
    const std::string bad = "GET /bad HTTP/1.1\r\n" HOST "X: \x01\r\n\r\n";
    run_all({
        {"CONNECT", "RFC 9110 9.3.6: CONNECT is for proxies; a gateway answers 405 and never tunnels",
         "CONNECT gw.test:443 HTTP/1.1\r\n" HOST "\r\n" SMUGGLED, {405}, true, {}},
        {"CONNECT with origin-form", "RFC 9112 3.2.3: CONNECT takes authority-form only",
         "CONNECT /a HTTP/1.1\r\n" HOST "\r\n" SMUGGLED, {400}, true, {}},
        {"CONNECT without a port", "RFC 9110 9.3.6: host and port", "CONNECT gw.test HTTP/1.1\r\n" HOST "\r\n",
         {400}, true, {}},
        {"h2c upgrade on a plain location", "RFC 9110 7.8: Upgrade and HTTP2-Settings are hop-by-hop; no 101",
         "GET /h2c HTTP/1.1\r\n" HOST "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
         {200}, false, {"GET /h2c body=0"}, false, {"upgrade", "http2-settings"}},
        {"h2c upgrade on a WebSocket location",
         "RFC 9113 3.1: the h2c upgrade is deprecated; tunnelling it would hand the client a raw "
         "connection to the origin past every location check. The proxy sends neither the h2c "
         "Upgrade (proxy_set_header Upgrade $http_upgrade) nor HTTP2-Settings: the origin sees a "
         "plain GET (this one answers 400 to a /ws request that does not upgrade)",
         "GET /wsl/ HTTP/1.1\r\n" HOST "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
         {400}, false, {"GET /ws body=0"}, false, {"h2c", "http2-settings"}},
        {"an error, then a valid request", "RFC 9112 9.6 / 9.3.2: after a framing error nothing on the connection is read",
         bad + "GET /smuggled HTTP/1.1\r\n" HOST "\r\n", {400}, true, {}},
        {"a valid request, an error, a valid request", "RFC 9112 9.3.2: answered in order up to the error, then closed",
         "GET /first HTTP/1.1\r\n" HOST "\r\n" + bad + SMUGGLED, {200, 400}, true, {"GET /first body=0"}},
        {"a slow request, then an error", "RFC 9112 9.3.2: the first response completes before the 400",
         "GET /delay/100 HTTP/1.1\r\n" HOST "\r\n" + bad + SMUGGLED, {200, 400}, true, {"GET /delay/100 body=0"}},
        {"a body, then an error", "RFC 9112 9.3.2",
         "POST /first HTTP/1.1\r\n" HOST "Content-Length: 3\r\n\r\nabc" + bad + SMUGGLED, {200, 400}, true,
         {"POST /first body=3"}},
        {"Expect that is not 100-continue", "RFC 9110 10.1.1: 417; the body after it is not a request",
         "POST /a HTTP/1.1\r\n" HOST "Expect: 200-ok\r\nContent-Length: 45\r\n\r\n" SMUGGLED, {417}, true, {}},
        {"100-continue with the body sent anyway", "RFC 9110 10.1.1: a client need not wait for 100",
         "POST /expect HTTP/1.1\r\n" HOST "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
         {200}, false, {"POST /expect body=5"}},
        {"an error in a streamed body, then a request", "RFC 9112 7.1: 400; the origin's request is cut off",
         "POST /stream/cut HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n" SMUGGLED,
         {400}, true, {}, true},
    });
}

}  // namespace
}  // namespace sluice::test
