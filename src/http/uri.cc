#include "http/uri.h"

#include <cstring>

namespace sluice::http {
namespace {

using chars::kHexValue;

constexpr char kUpperHex[] = "0123456789ABCDEF";

// Path characters copied through unchanged; "/" and "%" need a decision.
constexpr CharClass kPathPlain = chars::make_class("-._~!$&'()*+,;=:@", true);

bool all_of(std::string_view s, const CharClass& cls) {
    for (char c : s)
        if (!cls(c)) return false;
    return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// dec-octet: "0" to "255" without leading zeros (RFC 3986 §3.2.2), so that
// "010.1.1.1" cannot mean octal to one backend and decimal to another.
bool valid_dec_octet(std::string_view s) {
    if (s.empty() || s.size() > 3) return false;
    for (char c : s)
        if (!is_digit(c)) return false;
    if (s.size() > 1 && s[0] == '0') return false;
    return s.size() < 3 || s < "256";
}

bool valid_ipv4(std::string_view s) {
    for (int i = 0; i < 3; ++i) {
        size_t dot = s.find('.');
        if (dot == std::string_view::npos || !valid_dec_octet(s.substr(0, dot))) return false;
        s.remove_prefix(dot + 1);
    }
    return valid_dec_octet(s);
}

// IPv6address of RFC 3986 §3.2.2: eight h16 groups, or fewer with one "::",
// the last two groups possibly written as an IPv4 address.
bool valid_ipv6(std::string_view s) {
    size_t i = 0;
    const size_t n = s.size();
    int groups = 0;
    bool elided = false;
    if (n >= 2 && s[0] == ':' && s[1] == ':') {
        elided = true;
        i = 2;
    } else if (n == 0 || s[0] == ':') {
        return false;
    }
    while (i < n) {
        size_t j = i;
        while (j < n && j - i <= 4 && kHexValue(s[j]) >= 0) ++j;
        if (j < n && s[j] == '.') {
            if (!valid_ipv4(s.substr(i))) return false;
            groups += 2;
            break;
        }
        if (j == i || j - i > 4) return false;
        ++groups;
        if (j == n) break;
        if (s[j] != ':') return false;
        i = j + 1;
        if (i < n && s[i] == ':') {
            if (elided) return false;
            elided = true;
            ++i;
        } else if (i == n) {
            return false;  // a single trailing ":"
        }
    }
    return elided ? groups <= 7 : groups == 8;
}

bool valid_port(std::string_view s) {
    if (s.empty() || s.size() > 5) return false;
    uint32_t port = 0;
    for (char c : s) {
        if (!is_digit(c)) return false;
        port = port * 10 + uint32_t(c - '0');
    }
    return port <= 65535;
}

bool valid_path(std::string_view s) { return all_of(s, chars::kPath); }

bool valid_query(std::string_view s) { return all_of(s, chars::kTarget); }

// Splits "path?query" after checking both character sets.
bool split_path_query(std::string_view s, UriParts& out) {
    size_t q = s.find('?');
    out.path = s.substr(0, q);
    if (q != std::string_view::npos) out.query = s.substr(q + 1);
    return valid_path(out.path) && valid_query(out.query);
}

bool lower_equals(std::string_view s, std::string_view lowercase) {
    if (s.size() != lowercase.size()) return false;
    for (size_t i = 0; i < s.size(); ++i)
        if ((s[i] | 0x20) != lowercase[i]) return false;
    return true;
}

// "http://authority/path?query"; only the schemes a gateway can forward.
bool split_absolute_form(std::string_view target, UriParts& out) {
    size_t colon = target.find("://");
    if (colon == std::string_view::npos) return false;
    std::string_view scheme = target.substr(0, colon);
    if (!lower_equals(scheme, "http") && !lower_equals(scheme, "https")) return false;
    std::string_view rest = target.substr(colon + 3);
    size_t authority_end = rest.find_first_of("/?");
    std::string_view authority = rest.substr(0, authority_end);
    // Userinfo is rejected here too: "@" is not a reg-name character.
    if (!valid_authority(authority)) return false;
    out.scheme = scheme;
    out.authority = authority;
    rest.remove_prefix(authority.size());
    if (!split_path_query(rest, out)) return false;
    if (out.path.empty()) out.path = "/";
    return true;
}

// Does the written segment hold "%25" followed by the hex of ".", "/", "\\"
// or "%"? A backend that decodes twice (or a framework that decodes once
// more after routing) reads "%252e%252e" as "..", so these are as ambiguous
// as "%2e%2e". Checked on the output: "%25%32%65" becomes "%252e" there.
bool double_encoded_delimiter(const char* segment, size_t length, const NormalizeOptions& options) {
    for (size_t i = 0; i + 5 <= length; ++i) {
        if (segment[i] != '%' || segment[i + 1] != '2' || segment[i + 2] != '5') continue;
        int hi = kHexValue(segment[i + 3]);
        int lo = kHexValue(segment[i + 4]);
        if (hi < 0 || lo < 0) continue;
        char c = char(hi * 16 + lo);
        if (c == '.' || c == '%') return true;
        if ((c == '/' || c == '\\') && !options.allow_encoded_slash) return true;
    }
    return false;
}

// Appends the segment starting at `r` (up to "/" or `end`) to `w`, decoding
// what RFC 3986 §6.2.2.2 says is equivalent. Returns the input position
// reached, or nullptr for 400.
const char* copy_segment(const char* r, const char* end, const NormalizeOptions& options,
                         char*& w, bool& encoded_dot) {
    while (r < end) {
        char c = *r;
        if (kPathPlain(c)) {
            *w++ = c;
            ++r;
            continue;
        }
        if (c == '/') break;
        if (c != '%' || end - r < 3) return nullptr;
        int hi = kHexValue(r[1]);
        int lo = kHexValue(r[2]);
        if (hi < 0 || lo < 0) return nullptr;
        char decoded = char(hi * 16 + lo);
        if (decoded == '\0') return nullptr;
        if (chars::kUnreserved(decoded)) {
            *w++ = decoded;
            encoded_dot |= decoded == '.';
        } else {
            if ((decoded == '/' || decoded == '\\') && !options.allow_encoded_slash) return nullptr;
            *w++ = '%';
            *w++ = kUpperHex[hi];
            *w++ = kUpperHex[lo];
        }
        r += 3;
    }
    return r;
}

// "..;x" or ".;x" (also with ";" as %3B): a dot segment to the backends that
// drop path parameters before resolving dots (Tomcat, Jetty, Spring), an
// ordinary segment to RFC 3986. The "/public/..;/admin/" bypass.
bool dot_segment_with_parameters(const char* segment, size_t length) {
    size_t dots = 0;
    while (dots < length && dots < 3 && segment[dots] == '.') ++dots;
    if (dots == 0 || dots > 2 || dots == length) return false;
    const char* rest = segment + dots;
    const size_t left = length - dots;
    return rest[0] == ';' || (left >= 3 && rest[0] == '%' && rest[1] == '3' && (rest[2] | 0x20) == 'b');
}

// 1 for ".", 2 for "..", 0 for any other segment.
int dot_segment(const char* segment, size_t length) {
    if (length == 1 && segment[0] == '.') return 1;
    if (length == 2 && segment[0] == '.' && segment[1] == '.') return 2;
    return 0;
}

}  // namespace

bool valid_authority(std::string_view authority, bool require_port) {
    std::string_view host = authority;
    std::string_view port;
    bool has_port = false;
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string_view::npos) return false;
        if (!valid_ipv6(authority.substr(1, close - 1))) return false;
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest[0] != ':') return false;
            has_port = true;
            port = rest.substr(1);
        }
    } else {
        size_t colon = authority.find(':');
        if (colon != std::string_view::npos) {
            has_port = true;
            port = authority.substr(colon + 1);
            host = authority.substr(0, colon);
        }
        // An IPv4 address is also a reg-name; no separate check is needed.
        if (host.empty() || !all_of(host, chars::kRegName)) return false;
    }
    if (has_port) return valid_port(port);
    return !require_port;
}

bool split_target(std::string_view target, Method method, UriParts& out) {
    out = UriParts{};
    if (target.empty()) return false;
    if (method == Method::Connect) {
        // RFC 9110 §9.3.6: CONNECT names exactly a host and a port.
        if (!valid_authority(target, true)) return false;
        out.authority = target;
        return true;
    }
    if (target[0] == '/') return split_path_query(target, out);
    if (target == "*") {
        if (method != Method::Options) return false;
        out.path = target;
        return true;
    }
    return split_absolute_form(target, out);
}

int normalize_path(std::string_view raw_path, const NormalizeOptions& options, std::string& out) {
    out.clear();
    if (raw_path.empty()) {
        out.push_back('/');
        return 0;
    }
    if (raw_path[0] != '/') return 400;
    // Every step writes at most as many bytes as it reads, so one sizing up
    // front is the only allocation.
    out.resize(raw_path.size());
    char* const base = out.data();
    char* w = base;
    *w++ = '/';
    const char* r = raw_path.data() + 1;
    const char* const end = raw_path.data() + raw_path.size();
    for (;;) {
        char* segment = w;
        bool encoded_dot = false;
        r = copy_segment(r, end, options, w, encoded_dot);
        if (r == nullptr) return 400;
        const bool more = r < end;
        const size_t length = size_t(w - segment);
        const int dots = dot_segment(segment, length);
        if (dots != 0) {
            // "%2e%2e" means ".." to some backends and not to others.
            if (encoded_dot) return 400;
            w = segment;
            if (dots == 2) {
                if (w - base == 1) return 400;
                --w;
                while (w[-1] != '/') --w;
            }
        } else if (dot_segment_with_parameters(segment, length) ||
                   double_encoded_delimiter(segment, length, options)) {
            return 400;
        } else if (length == 0 && options.merge_slashes) {
            // "//": the "/" already written stands for the whole run.
        } else if (more) {
            *w++ = '/';
        }
        if (!more) break;
        ++r;
    }
    out.resize(size_t(w - base));
    return 0;
}

bool decode_path_for_fs(std::string_view normalized, std::string& out) {
    out.clear();
    if (normalized.empty() || normalized[0] != '/') return false;
    out.resize(normalized.size());
    char* w = out.data();
    const char* r = normalized.data();
    const char* const end = r + normalized.size();
    while (r < end) {
        char c = *r++;
        if (c == '%') {
            if (end - r < 2) return false;
            int hi = kHexValue(r[0]);
            int lo = kHexValue(r[1]);
            if (hi < 0 || lo < 0) return false;
            c = char(hi * 16 + lo);
            r += 2;
        }
        if (c == '\0') return false;
        *w++ = c;
    }
    out.resize(size_t(w - out.data()));
    // Segments are checked after decoding: an allowed %2F can hide "/../".
    std::string_view decoded = out;
    size_t start = 1;
    while (start <= decoded.size()) {
        size_t slash = decoded.find('/', start);
        size_t stop = slash == std::string_view::npos ? decoded.size() : slash;
        if (dot_segment(decoded.data() + start, stop - start) != 0) return false;
        start = stop + 1;
    }
    return true;
}

}  // namespace sluice::http
