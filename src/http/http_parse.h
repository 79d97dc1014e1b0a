// Strict HTTP/1.1 message-head parsers (RFC 9112, RFC 9110): the request head
// a client sends and the response head an upstream sends.
//
// The request parser is the gateway's perimeter against request smuggling, so
// it rejects rather than repairs: anything two implementations could read two
// ways (bare CR or LF, obs-fold, CL with TE, duplicate Content-Length, ...) is
// an error. Parsing is restartable: call again with the same buffer grown by
// whatever arrived; nothing is kept between calls except what `out` holds.
// All string views point into the caller's buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory_resource>
#include <string_view>
#include <vector>

namespace sluice::http {

enum class Method : uint8_t {
    Unknown, Get, Head, Post, Put, Delete, Options, Patch, Trace, Connect, Purge
};

// Methods are case-sensitive (RFC 9110 §9.1): "get" is an unknown method.
Method method_from_name(std::string_view name);
std::string_view method_name(Method method);

struct Header {
    std::string_view name;
    std::string_view value;  // leading and trailing OWS removed
};

struct ParseLimits {
    size_t max_request_line = 8192;  // also bounds a response's status line
    size_t max_header_line = 8192;
    size_t max_head = 32768;         // whole head incl. leading empty lines and CRLFs
    size_t max_headers = 100;
};

enum class ParseResult { Complete, Incomplete, Error };

struct RequestHead {
    explicit RequestHead(std::pmr::memory_resource* resource = std::pmr::get_default_resource())
        : headers(resource) {}

    std::string_view method_name;
    Method method = Method::Unknown;
    std::string_view target;  // raw request-target, already checked for its form
    uint8_t version_major = 0;
    uint8_t version_minor = 0;
    std::pmr::vector<Header> headers;  // in order received
    size_t head_length = 0;            // bytes consumed incl. the final CRLF CRLF

    enum class Body : uint8_t { None, Length, Chunked } body = Body::None;
    uint64_t content_length = 0;
    bool keep_alive = false;
    bool expect_continue = false;
    // The Host header, or the authority of an absolute-form target (RFC 9112
    // §3.2.2); syntax checked, case not folded. Empty on HTTP/1.0 without Host.
    std::string_view host;
    // HTTP/1.1, Connection: upgrade and an Upgrade header that does not offer
    // h2c (deprecated by RFC 9113; a gateway could only tunnel it past itself).
    bool upgrade = false;

    int error_status = 0;              // on Error: 400, 414, 417, 431, 501 or 505
    const char* error_reason = nullptr;  // static text for the error log

    // Forgets the previous request but keeps the headers' storage.
    void reset();
};

// Complete: `out` describes the head in data[0, out.head_length); a pipelined
// request may follow it. Incomplete: call again once more bytes are in the
// buffer (errors are still reported as early as the bytes allow, and no more
// than limits.max_head bytes are ever needed). Error: see error_status.
ParseResult parse_request_head(const char* data, size_t len, const ParseLimits& limits,
                               RequestHead& out);

struct ResponseHead {
    explicit ResponseHead(std::pmr::memory_resource* resource = std::pmr::get_default_resource())
        : headers(resource) {}

    uint8_t version_major = 0;
    uint8_t version_minor = 0;
    int status = 0;
    std::string_view reason;
    std::pmr::vector<Header> headers;
    size_t head_length = 0;

    enum class Body : uint8_t { None, Length, Chunked, UntilClose } body = Body::None;
    uint64_t content_length = 0;
    bool keep_alive = false;
    // A transfer coding besides chunked (gzip, deflate...): the body is still
    // encoded once chunked is removed. A relay that re-frames the body cannot
    // pass it on as is (nothing would tell the client about the coding).
    bool other_codings = false;
    const char* error_reason = nullptr;

    void reset();
};

// An upstream's reply. 1xx, 204, 304 and replies to HEAD have no body whatever
// their headers say (RFC 9112 §6.3); the caller loops over 1xx heads itself.
ParseResult parse_response_head(const char* data, size_t len, const ParseLimits& limits,
                                bool request_was_head, ResponseHead& out);

// `word` with its ASCII capitals lowercased, 8 bytes at a time: a byte gets
// 0x20 when it is in 'A'..'Z' (below 0x80, at least 'A', below '[').
inline uint64_t ascii_lower_word(uint64_t word) {
    constexpr uint64_t kOnes = 0x0101010101010101ull;
    const uint64_t low7 = word & (kOnes * 0x7f);
    const uint64_t at_least_a = low7 + kOnes * (0x80 - 'A');
    const uint64_t past_z = low7 + kOnes * (0x80 - 'Z' - 1);
    const uint64_t upper = at_least_a & ~past_z & ~word & (kOnes * 0x80);
    return word | (upper >> 2);
}

// Case-insensitive comparison of a field name with a lowercase literal.
// Inline, and the lengths first: most calls compare a name with a literal
// of another length (the proxy's hop-by-hop and known-header checks).
inline bool field_name_is(std::string_view name, std::string_view lowercase) {
    const size_t n = name.size();
    if (n != lowercase.size()) return false;
    const char* a = name.data();
    const char* b = lowercase.data();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        std::memcpy(&x, a + i, 8);
        std::memcpy(&y, b + i, 8);
        if (ascii_lower_word(x) != y) return false;
    }
    for (; i < n; ++i) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = char(c | 0x20);
        if (c != b[i]) return false;
    }
    return true;
}

// Character classes of RFC 9110 / RFC 3986 as 256-entry tables: one load per
// byte on the hot path. Shared by the request, chunked and URI parsers.
struct CharClass {
    bool member[256];
    constexpr bool operator()(char c) const { return member[static_cast<unsigned char>(c)]; }
};

namespace chars {

constexpr bool is_alnum(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

constexpr CharClass make_class(std::string_view extra, bool alnum) {
    CharClass cls{};
    for (int c = 0; c < 256; ++c) cls.member[c] = alnum && is_alnum(c);
    for (char c : extra) cls.member[static_cast<unsigned char>(c)] = true;
    return cls;
}

// field-value octets: VCHAR, obs-text, SP, HTAB (RFC 9110 §5.5).
constexpr CharClass make_field_value_class() {
    CharClass cls{};
    for (int c = 0; c < 256; ++c) cls.member[c] = (c >= 0x20 && c != 0x7f) || c == '\t';
    return cls;
}

inline constexpr CharClass kToken = make_class("!#$%&'*+-.^_`|~", true);
inline constexpr CharClass kFieldValue = make_field_value_class();
inline constexpr CharClass kUnreserved = make_class("-._~", true);
inline constexpr CharClass kRegName = make_class("-._~!$&'()*+,;=", true);
// What may appear in a path (pchar and "/"), and in a request-target's path
// and query (no fragment: "#" never reaches a server).
inline constexpr CharClass kPath = make_class("-._~!$&'()*+,;=:@/%", true);
inline constexpr CharClass kTarget = make_class("-._~!$&'()*+,;=:@/%?", true);

constexpr int8_t hex_digit_value(int c) {
    return c >= '0' && c <= '9'   ? int8_t(c - '0')
           : c >= 'a' && c <= 'f' ? int8_t(c - 'a' + 10)
           : c >= 'A' && c <= 'F' ? int8_t(c - 'A' + 10)
                                  : int8_t(-1);
}

struct HexTable {
    int8_t value[256];
    constexpr int operator()(char c) const { return value[static_cast<unsigned char>(c)]; }
};

constexpr HexTable make_hex_table() {
    HexTable table{};
    for (int c = 0; c < 256; ++c) table.value[c] = hex_digit_value(c);
    return table;
}

// kHexValue(c) is 0..15 for a hex digit, -1 otherwise.
inline constexpr HexTable kHexValue = make_hex_table();

}  // namespace chars
}  // namespace sluice::http
