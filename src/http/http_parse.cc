#include "http/http_parse.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "http/uri.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sluice::http {
namespace {

using chars::kFieldValue;
using chars::kTarget;
using chars::kToken;

// RFC 9112 §2.2 asks servers to skip at least one empty line before a
// request-line (clients used to send CRLF after a POST body); a few more are
// tolerated, an endless stream of them is not.
constexpr int kMaxLeadingEmptyLines = 4;

// Content-Length is capped where off_t and most backends still agree on it.
constexpr uint64_t kMaxContentLength = uint64_t(INT64_MAX);

// Where the parse is, what it may read, and why it stopped.
struct Cursor {
    const char* p;
    const char* end;   // the first min(len, max_head) bytes
    bool head_capped;  // bytes exist past `end`, so running out means too large
    int error_status = 0;
    const char* error_reason = nullptr;

    ParseResult fail(int status, const char* reason) {
        error_status = status;
        error_reason = reason;
        return ParseResult::Error;
    }

    bool reject(int status, const char* reason) {
        fail(status, reason);
        return false;
    }

    ParseResult out_of_bytes() {
        return head_capped ? fail(431, "header section too large") : ParseResult::Incomplete;
    }
};

// A line's content may use bytes up to `limit` (exclusive); its CR must come
// before it. `capped` says the limit is the line's own, not the data's end.
struct LineBounds {
    const char* limit;
    bool capped;
};

LineBounds line_bounds(const char* start, const char* end, size_t max_length) {
    size_t room = size_t(end - start);
    if (room > max_length) return {start + max_length + 1, true};
    return {end, false};
}

// Matches `pattern` at q, with '#' standing for any DIGIT. Returns how many
// bytes matched: pattern.size() on success; otherwise q + result is either
// `limit` (more bytes needed) or the first mismatch.
size_t match_pattern(const char* q, const char* limit, std::string_view pattern) {
    size_t i = 0;
    for (; i < pattern.size() && q + i < limit; ++i) {
        char c = q[i];
        bool ok = pattern[i] == '#' ? (c >= '0' && c <= '9') : c == pattern[i];
        if (!ok) break;
    }
    return i;
}

// Marks (high bit of the byte) the bytes of `word` that are below 0x20 or are
// DEL: the only octets a field value may not hold, apart from HTAB. Borrows
// can only mark bytes above a truly marked one, so the lowest mark is exact.
inline uint64_t control_byte_mask(uint64_t word) {
    constexpr uint64_t kOnes = 0x0101010101010101ull;
    constexpr uint64_t kHighBits = 0x8080808080808080ull;
    uint64_t below_space = (word - kOnes * 0x20) & ~word & kHighBits;
    uint64_t del = word ^ (kOnes * 0x7f);
    uint64_t is_del = (del - kOnes) & ~del & kHighBits;
    return below_space | is_del;
}

// Returns the first byte at or after q that cannot be in a field value, or
// `limit`. Values are most of a head's bytes, so they go 16 or 8 at a time.
const char* scan_field_value(const char* q, const char* limit) {
#if defined(__SSE2__)
    // 16 at a time: bytes <= 0x1F (unsigned) or == 0x7F.
    const __m128i kMaxControl = _mm_set1_epi8(0x1f);
    const __m128i kDel = _mm_set1_epi8(0x7f);
    while (limit - q >= 16) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
        __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(v, kMaxControl), v);
        __m128i del = _mm_cmpeq_epi8(v, kDel);
        unsigned mask = unsigned(_mm_movemask_epi8(_mm_or_si128(control, del)));
        if (mask == 0) {
            q += 16;
            continue;
        }
        q += std::countr_zero(mask);
        if (*q != '\t') return q;
        ++q;
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
        while (limit - q >= 8) {
            uint64_t word;
            std::memcpy(&word, q, sizeof word);
            uint64_t mask = control_byte_mask(word);
            if (mask == 0) {
                q += 8;
                continue;
            }
            q += std::countr_zero(mask) >> 3;
            if (*q != '\t') return q;
            ++q;
        }
    }
    while (q < limit && kFieldValue(*q)) ++q;
    return q;
}

// A table scan unrolled by four: one bounds check per four bytes.
inline const char* scan_class(const char* q, const char* limit, const CharClass& cls) {
    while (limit - q >= 4) {
        if (!cls(q[0])) return q;
        if (!cls(q[1])) return q + 1;
        if (!cls(q[2])) return q + 2;
        if (!cls(q[3])) return q + 3;
        q += 4;
    }
    while (q < limit && cls(*q)) ++q;
    return q;
}

// "[" and "]" only belong in an IPv6 authority, which an origin-form target
// has none of; split_target checks where they stand in the other forms.
const char* scan_target(const char* q, const char* limit) {
    const bool origin_form = q < limit && *q == '/';
    for (;;) {
        q = scan_class(q, limit, kTarget);
        if (origin_form || q == limit || (*q != '[' && *q != ']')) return q;
        ++q;
    }
}

// Case-insensitive equality with a literal of lowercase letters, digits and
// "-", exact for tokens and field values alike: the only other bytes that
// | 0x20 maps onto those are control characters, which neither may hold.
inline bool token_is(std::string_view token, std::string_view lowercase) {
    if (token.size() != lowercase.size()) return false;
    for (size_t i = 0; i < token.size(); ++i)
        if ((token[i] | 0x20) != lowercase[i]) return false;
    return true;
}

enum class Field : uint8_t { Other, Host, ContentLength, TransferEncoding, Connection, Expect, Upgrade };

// Length first: most names are ruled out without reading a byte.
Field classify_field(std::string_view name) {
    switch (name.size()) {
    case 4: return token_is(name, "host") ? Field::Host : Field::Other;
    case 6: return token_is(name, "expect") ? Field::Expect : Field::Other;
    case 7: return token_is(name, "upgrade") ? Field::Upgrade : Field::Other;
    case 10: return token_is(name, "connection") ? Field::Connection : Field::Other;
    case 14: return token_is(name, "content-length") ? Field::ContentLength : Field::Other;
    case 17: return token_is(name, "transfer-encoding") ? Field::TransferEncoding : Field::Other;
    default: return Field::Other;
    }
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!kToken(c)) return false;
    return true;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Calls on_element for each non-empty element of a #list (RFC 9110 §5.6.1,
// which has recipients ignore empty elements); stops at the first false.
template <class OnElement>
bool for_each_element(std::string_view list, OnElement&& on_element) {
    for (;;) {
        size_t comma = list.find(',');
        std::string_view element = trim_ows(list.substr(0, comma));
        if (!element.empty() && !on_element(element)) return false;
        if (comma == std::string_view::npos) return true;
        list.remove_prefix(comma + 1);
    }
}

// 1*DIGIT and nothing else: no sign, no list, no spaces inside.
bool parse_content_length(std::string_view value, uint64_t& out) {
    if (value.empty() || value.size() > 19) return false;  // 19 digits cannot overflow
    uint64_t n = 0;
    for (char c : value) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + uint64_t(c - '0');
    }
    if (n > kMaxContentLength) return false;
    out = n;
    return true;
}

bool is_known_coding(std::string_view coding) {
    return token_is(coding, "gzip") || token_is(coding, "deflate") ||
           token_is(coding, "compress") || token_is(coding, "x-gzip") ||
           token_is(coding, "x-compress");
}

// What the framing-related fields said, collected across all field lines.
struct Framing {
    int host_count = 0;
    std::string_view host;
    bool has_content_length = false;
    uint64_t content_length = 0;
    bool has_transfer_encoding = false;
    bool chunked = false;  // "chunked" seen; nothing may follow it
    bool other_codings = false;  // gzip, deflate... (responses only)
    bool connection_close = false;
    bool connection_keep_alive = false;
    bool connection_upgrade = false;
    bool has_upgrade = false;
    bool h2c_offered = false;
    bool expect_continue = false;
};

// Transfer-Encoding lines add up to one list, in order (RFC 9110 §5.3).
// A request may use chunked only: the gateway re-frames bodies and never
// decodes gzip or deflate, so it could not pass them on (RFC 9112 §6.1: a
// coding not understood gets 501, as in nginx).
bool add_transfer_codings(std::string_view value, bool request, Framing& framing, Cursor& c) {
    framing.has_transfer_encoding = true;
    return for_each_element(value, [&](std::string_view coding) {
        if (!is_token(coding)) return c.reject(400, "invalid transfer coding");
        if (framing.chunked) return c.reject(400, "chunked is not the final transfer coding");
        if (token_is(coding, "chunked")) {
            framing.chunked = true;
            return true;
        }
        if (request || !is_known_coding(coding)) return c.reject(501, "unknown transfer coding");
        framing.other_codings = true;
        return true;
    });
}

bool add_connection_options(std::string_view value, Framing& framing, Cursor& c) {
    // A single option is by far the most common value.
    if (token_is(value, "keep-alive")) {
        framing.connection_keep_alive = true;
        return true;
    }
    if (token_is(value, "close")) {
        framing.connection_close = true;
        return true;
    }
    return for_each_element(value, [&](std::string_view option) {
        if (!is_token(option)) return c.reject(400, "invalid Connection header");
        if (token_is(option, "close")) framing.connection_close = true;
        else if (token_is(option, "keep-alive")) framing.connection_keep_alive = true;
        else if (token_is(option, "upgrade")) framing.connection_upgrade = true;
        return true;
    });
}

bool add_content_length(std::string_view value, Framing& framing, Cursor& c) {
    // Duplicates are refused even when equal: a peer that picks a different
    // one of them is exactly what smuggling needs.
    if (framing.has_content_length) return c.reject(400, "duplicate Content-Length");
    framing.has_content_length = true;
    if (!parse_content_length(value, framing.content_length))
        return c.reject(400, "invalid Content-Length");
    return true;
}

bool add_request_field(const Header& field, uint8_t minor, Framing& framing, Cursor& c) {
    switch (classify_field(field.name)) {
    case Field::Other: return true;
    case Field::Host:
        if (++framing.host_count > 1) return c.reject(400, "duplicate Host");
        if (!valid_authority(field.value)) return c.reject(400, "invalid Host");
        framing.host = field.value;
        return true;
    case Field::ContentLength: return add_content_length(field.value, framing, c);
    case Field::TransferEncoding:
        // RFC 9112 §6.1: an HTTP/1.0 peer cannot be trusted to frame chunked.
        if (minor == 0) return c.reject(400, "Transfer-Encoding in HTTP/1.0");
        return add_transfer_codings(field.value, true, framing, c);
    case Field::Connection: return add_connection_options(field.value, framing, c);
    case Field::Expect:
        if (!token_is(field.value, "100-continue")) return c.reject(417, "unsupported Expect");
        framing.expect_continue = true;
        return true;
    case Field::Upgrade:
        framing.has_upgrade = framing.has_upgrade || !field.value.empty();
        for_each_element(field.value, [&](std::string_view protocol) {
            if (token_is(protocol, "h2c")) framing.h2c_offered = true;
            return true;
        });
        return true;
    }
    return true;
}

bool add_response_field(const Header& field, uint8_t minor, Framing& framing, Cursor& c) {
    switch (classify_field(field.name)) {
    case Field::ContentLength: return add_content_length(field.value, framing, c);
    case Field::TransferEncoding:
        if (minor == 0) return c.reject(502, "Transfer-Encoding in HTTP/1.0");
        return add_transfer_codings(field.value, false, framing, c);
    case Field::Connection: return add_connection_options(field.value, framing, c);
    default: return true;
    }
}

// Parses one field line at c.p into `field`, or the empty line ending the
// head (sets `end_of_head`).
ParseResult parse_field_line(Cursor& c, size_t max_line, Header& field, bool& end_of_head) {
    const char* start = c.p;
    if (start == c.end) return c.out_of_bytes();
    if (*start == '\r') {
        if (start + 1 == c.end) return c.out_of_bytes();
        if (start[1] != '\n') return c.fail(400, "bare CR");
        c.p = start + 2;
        end_of_head = true;
        return ParseResult::Complete;
    }
    // obs-fold (RFC 9112 §5.2): joining lines is where parsers disagree.
    if (*start == ' ' || *start == '\t') return c.fail(400, "obsolete line folding");
    const LineBounds line = line_bounds(start, c.end, max_line);
    auto ran_out = [&] { return line.capped ? c.fail(431, "header line too long") : c.out_of_bytes(); };

    const char* q = scan_class(start, line.limit, kToken);
    if (q == line.limit) return ran_out();
    if (*q != ':') {
        if (*q == ' ' || *q == '\t') return c.fail(400, "whitespace before colon");
        return c.fail(400, "invalid header name");
    }
    if (q == start) return c.fail(400, "empty header name");
    field.name = std::string_view(start, size_t(q - start));

    ++q;
    while (q < line.limit && (*q == ' ' || *q == '\t')) ++q;
    const char* value = q;
    q = scan_field_value(q, line.limit);
    if (q == line.limit) return ran_out();
    if (*q != '\r') return c.fail(400, *q == '\n' ? "bare LF" : "invalid character in header value");
    if (q + 1 == c.end) return c.out_of_bytes();
    if (q[1] != '\n') return c.fail(400, "bare CR");
    const char* value_end = q;
    while (value_end > value && (value_end[-1] == ' ' || value_end[-1] == '\t')) --value_end;
    field.value = std::string_view(value, size_t(value_end - value));
    c.p = q + 2;
    return ParseResult::Complete;
}

// Field lines up to and including the empty line; add_field sees each one
// as soon as it is complete, so framing errors are found early.
template <class AddField>
ParseResult parse_fields(Cursor& c, const ParseLimits& limits, std::pmr::vector<Header>& headers,
                         AddField&& add_field) {
    for (;;) {
        Header field;
        bool end_of_head = false;
        ParseResult r = parse_field_line(c, limits.max_header_line, field, end_of_head);
        if (r != ParseResult::Complete) return r;
        if (end_of_head) return ParseResult::Complete;
        if (headers.size() >= limits.max_headers) return c.fail(431, "too many headers");
        headers.push_back(field);
        if (!add_field(field)) return ParseResult::Error;
    }
}

// Room for the fields of a typical head at once: growing the vector one
// doubling at a time (1, 2, 4, 8, 16) cost an arena allocation and a copy
// each, on every request and every response.
constexpr size_t kInitialHeaderSlots = 16;

void reserve_headers(std::pmr::vector<Header>& headers, const ParseLimits& limits) {
    if (headers.capacity() < kInitialHeaderSlots)
        headers.reserve(std::min(kInitialHeaderSlots, limits.max_headers));
}

ParseResult skip_leading_empty_lines(Cursor& c) {
    for (int lines = 0; c.p < c.end && *c.p == '\r'; c.p += 2) {
        if (c.p + 1 == c.end) return c.out_of_bytes();
        if (c.p[1] != '\n') return c.fail(400, "bare CR");
        if (++lines > kMaxLeadingEmptyLines) return c.fail(400, "too many empty lines");
    }
    return c.p == c.end ? c.out_of_bytes() : ParseResult::Complete;
}

// Checks the target's form against the method (RFC 9112 §3.2). Origin-form,
// by far the most common, was fully checked by scan_target already.
bool check_target_form(RequestHead& out, std::string_view& target_authority) {
    if (out.target[0] == '/') return out.method != Method::Connect;
    UriParts parts;
    if (!split_target(out.target, out.method, parts)) return false;
    if (!parts.scheme.empty()) target_authority = parts.authority;
    return true;
}

ParseResult parse_version_crlf(Cursor& c, const char* v, const LineBounds& line, RequestHead& out) {
    auto ran_out = [&] { return line.capped ? c.fail(414, "request line too long") : c.out_of_bytes(); };
    constexpr std::string_view kPattern = "HTTP/#.#\r";
    size_t matched = match_pattern(v, line.limit, kPattern);
    if (matched < kPattern.size()) {
        if (v + matched == line.limit) return ran_out();
        return c.fail(400, "invalid HTTP version");
    }
    if (v + 9 == c.end) return c.out_of_bytes();
    if (v[9] != '\n') return c.fail(400, "bare CR");
    out.version_major = uint8_t(v[5] - '0');
    out.version_minor = uint8_t(v[7] - '0');
    if (out.version_major != 1 || out.version_minor > 1) return c.fail(505, "HTTP version not supported");
    c.p = v + 10;
    return ParseResult::Complete;
}

// method SP request-target SP HTTP-version CRLF, single spaces only.
ParseResult parse_request_line(Cursor& c, const ParseLimits& limits, RequestHead& out) {
    const char* start = c.p;
    const LineBounds line = line_bounds(start, c.end, limits.max_request_line);
    auto ran_out = [&] { return line.capped ? c.fail(414, "request line too long") : c.out_of_bytes(); };

    const char* q = scan_class(start, line.limit, kToken);
    if (q == line.limit) return ran_out();
    if (*q != ' ' || q == start) return c.fail(400, "invalid method");
    out.method_name = std::string_view(start, size_t(q - start));
    out.method = method_from_name(out.method_name);

    const char* target = ++q;
    q = scan_target(q, line.limit);
    if (q == line.limit) return ran_out();
    if (q == target) return c.fail(400, "invalid request target");
    if (*q != ' ') {
        if (*q == '\r' || *q == '\n') return c.fail(400, "missing HTTP version");
        return c.fail(400, "invalid request target");
    }
    out.target = std::string_view(target, size_t(q - target));
    return parse_version_crlf(c, q + 1, line, out);
}

ParseResult finish_request(Cursor& c, const Framing& framing, std::string_view target_authority,
                           RequestHead& out) {
    const bool http11 = out.version_minor == 1;
    if (framing.has_transfer_encoding) {
        if (framing.has_content_length) return c.fail(400, "Content-Length with Transfer-Encoding");
        // RFC 9112 §6.3: without chunked last the body's end is unknowable.
        if (!framing.chunked) return c.fail(400, "chunked is not the final transfer coding");
        out.body = RequestHead::Body::Chunked;
    } else if (framing.has_content_length) {
        out.body = RequestHead::Body::Length;
        out.content_length = framing.content_length;
    }
    if (http11 && framing.host_count == 0) return c.fail(400, "missing Host");
    out.host = target_authority.empty() ? framing.host : target_authority;
    out.keep_alive = !framing.connection_close && (http11 || framing.connection_keep_alive);
    // RFC 9110 §10.1.1 and §7.8: HTTP/1.0 peers get neither.
    out.expect_continue = http11 && framing.expect_continue;
    // RFC 9113 §3.1 deprecates the h2c upgrade, and a gateway without HTTP/2
    // could only tunnel it to the origin, past its own location checks.
    out.upgrade = http11 && framing.connection_upgrade && framing.has_upgrade && !framing.h2c_offered;
    return ParseResult::Complete;
}

ParseResult parse_request(Cursor& c, const ParseLimits& limits, RequestHead& out) {
    ParseResult r = skip_leading_empty_lines(c);
    if (r != ParseResult::Complete) return r;
    r = parse_request_line(c, limits, out);
    if (r != ParseResult::Complete) return r;
    std::string_view target_authority;
    if (!check_target_form(out, target_authority)) return c.fail(400, "invalid request target");

    Framing framing;
    const uint8_t minor = out.version_minor;
    reserve_headers(out.headers, limits);
    r = parse_fields(c, limits, out.headers,
                     [&](const Header& field) { return add_request_field(field, minor, framing, c); });
    if (r != ParseResult::Complete) return r;
    return finish_request(c, framing, target_authority, out);
}

// "HTTP/1.x SP 3DIGIT SP reason-phrase CRLF" (RFC 9112 §4).
ParseResult parse_status_line(Cursor& c, const ParseLimits& limits, ResponseHead& out) {
    const char* start = c.p;
    const LineBounds line = line_bounds(start, c.end, limits.max_request_line);
    auto ran_out = [&] { return line.capped ? c.fail(502, "status line too long") : c.out_of_bytes(); };
    constexpr std::string_view kPattern = "HTTP/#.# ### ";
    size_t matched = match_pattern(start, line.limit, kPattern);
    if (matched < kPattern.size()) {
        if (start + matched == line.limit) return ran_out();
        return c.fail(502, "invalid status line");
    }
    out.version_major = uint8_t(start[5] - '0');
    out.version_minor = uint8_t(start[7] - '0');
    if (out.version_major != 1 || out.version_minor > 1) return c.fail(502, "unsupported HTTP version");
    if (start[9] < '1' || start[9] > '5') return c.fail(502, "invalid status code");
    out.status = (start[9] - '0') * 100 + (start[10] - '0') * 10 + (start[11] - '0');

    const char* reason = start + kPattern.size();
    const char* q = scan_field_value(reason, line.limit);
    if (q == line.limit) return ran_out();
    if (*q != '\r') return c.fail(502, "invalid reason phrase");
    if (q + 1 == c.end) return c.out_of_bytes();
    if (q[1] != '\n') return c.fail(502, "bare CR");
    out.reason = std::string_view(reason, size_t(q - reason));
    c.p = q + 2;
    return ParseResult::Complete;
}

ParseResult finish_response(Cursor& c, const Framing& framing, bool request_was_head,
                            ResponseHead& out) {
    if (framing.has_transfer_encoding && framing.has_content_length)
        return c.fail(502, "Content-Length with Transfer-Encoding");
    const bool no_body = request_was_head || out.status < 200 || out.status == 204 || out.status == 304;
    using Body = ResponseHead::Body;
    out.other_codings = framing.other_codings;
    if (no_body) {
        out.body = Body::None;
    } else if (framing.has_transfer_encoding) {
        // RFC 9112 §6.3: codings without chunked last run to the close.
        out.body = framing.chunked ? Body::Chunked : Body::UntilClose;
    } else if (framing.has_content_length) {
        out.body = Body::Length;
        out.content_length = framing.content_length;
    } else {
        out.body = Body::UntilClose;
    }
    out.keep_alive = out.body != Body::UntilClose && !framing.connection_close &&
                     (out.version_minor == 1 || framing.connection_keep_alive);
    return ParseResult::Complete;
}

}  // namespace

Method method_from_name(std::string_view name) {
    switch (name.size()) {
    case 3:
        if (name == "GET") return Method::Get;
        if (name == "PUT") return Method::Put;
        break;
    case 4:
        if (name == "POST") return Method::Post;
        if (name == "HEAD") return Method::Head;
        break;
    case 5:
        if (name == "PATCH") return Method::Patch;
        if (name == "TRACE") return Method::Trace;
        if (name == "PURGE") return Method::Purge;
        break;
    case 6:
        if (name == "DELETE") return Method::Delete;
        break;
    case 7:
        if (name == "OPTIONS") return Method::Options;
        if (name == "CONNECT") return Method::Connect;
        break;
    }
    return Method::Unknown;
}

std::string_view method_name(Method method) {
    switch (method) {
    case Method::Get: return "GET";
    case Method::Head: return "HEAD";
    case Method::Post: return "POST";
    case Method::Put: return "PUT";
    case Method::Delete: return "DELETE";
    case Method::Options: return "OPTIONS";
    case Method::Patch: return "PATCH";
    case Method::Trace: return "TRACE";
    case Method::Connect: return "CONNECT";
    case Method::Purge: return "PURGE";
    case Method::Unknown: break;
    }
    return {};
}

void RequestHead::reset() {
    method_name = {};
    method = Method::Unknown;
    target = {};
    version_major = version_minor = 0;
    headers.clear();
    head_length = 0;
    body = Body::None;
    content_length = 0;
    keep_alive = false;
    expect_continue = false;
    host = {};
    upgrade = false;
    error_status = 0;
    error_reason = nullptr;
}

void ResponseHead::reset() {
    version_major = version_minor = 0;
    status = 0;
    reason = {};
    headers.clear();
    head_length = 0;
    body = Body::None;
    content_length = 0;
    keep_alive = false;
    other_codings = false;
    error_reason = nullptr;
}

ParseResult parse_request_head(const char* data, size_t len, const ParseLimits& limits,
                               RequestHead& out) {
    out.reset();
    const size_t usable = len < limits.max_head ? len : limits.max_head;
    // max_head bytes without a complete head can only grow into too large a
    // head: the connection's buffer stops there, so waiting would spin.
    Cursor c{data, data + usable, len >= limits.max_head};
    ParseResult r = parse_request(c, limits, out);
    if (r == ParseResult::Complete) {
        out.head_length = size_t(c.p - data);
    } else if (r == ParseResult::Error) {
        out.error_status = c.error_status;
        out.error_reason = c.error_reason;
    }
    return r;
}

ParseResult parse_response_head(const char* data, size_t len, const ParseLimits& limits,
                                bool request_was_head, ResponseHead& out) {
    out.reset();
    const size_t usable = len < limits.max_head ? len : limits.max_head;
    // max_head bytes without a complete head can only grow into too large a
    // head: the connection's buffer stops there, so waiting would spin.
    Cursor c{data, data + usable, len >= limits.max_head};
    ParseResult r = parse_status_line(c, limits, out);
    Framing framing;
    const uint8_t minor = out.version_minor;
    if (r == ParseResult::Complete) {
        reserve_headers(out.headers, limits);
        r = parse_fields(c, limits, out.headers,
                         [&](const Header& field) { return add_response_field(field, minor, framing, c); });
    }
    if (r == ParseResult::Complete) r = finish_response(c, framing, request_was_head, out);
    if (r == ParseResult::Complete) out.head_length = size_t(c.p - data);
    if (r == ParseResult::Error) out.error_reason = c.error_reason;
    return r;
}

}  // namespace sluice::http
