// Request-target forms (RFC 9112 §3.2) and path normalization (RFC 3986 §5.2.4,
// §6.2.2).
//
// The gateway matches locations on the normalized path and sends that same
// path upstream, so normalization must leave nothing for a backend to decode
// differently: encoded "/" or "\", encoded dot segments and NUL are rejected,
// not repaired.
#pragma once

#include <string>
#include <string_view>

#include "http/http_parse.h"

namespace sluice::http {

struct UriParts {
    std::string_view scheme;     // absolute-form only ("http" or "https", any case)
    std::string_view authority;  // absolute-form and authority-form
    std::string_view path;       // "*" for asterisk-form; "/" if absolute-form has none
    std::string_view query;      // after the first "?", without it
};

// Splits and checks a request-target by its form: origin-form ("/p?q") for any
// method but CONNECT, authority-form ("host:port") only and always for CONNECT,
// asterisk-form ("*") only for OPTIONS, absolute-form ("http://host/p?q",
// without userinfo) otherwise. Every view points into `target`, except the "/"
// that stands in for an absolute-form's empty path. False means 400.
bool split_target(std::string_view target, Method method, UriParts& out);

// host [":" port] where host is a reg-name (unreserved / sub-delims, no
// percent-encoding), an IPv4 address or a bracketed IPv6 address (no IPvFuture,
// no zone), and port is 1 to 5 digits not above 65535. For Host headers and
// target authorities.
bool valid_authority(std::string_view authority, bool require_port = false);

struct NormalizeOptions {
    bool merge_slashes = true;
    bool allow_encoded_slash = false;  // keeps %2F / %5C encoded instead of 400
};

// Normalizes a raw path (starting with "/"; empty means "/") into `out`,
// cleared first: decodes %XX of unreserved characters, uppercases the hex of
// every other %XX, resolves "." and ".." segments, and merges runs of "/" when
// merge_slashes. Returns 0, or 400 for a character outside pchar, a malformed
// escape, %00, an encoded "/" or "\" (unless allow_encoded_slash), a dot
// segment that was even partly percent-encoded, a dot segment with path
// parameters ("..;x", ".%3Bx"), a double-encoded ".", "/", "\" or "%"
// ("%252e"; "/" and "\" allowed with allow_encoded_slash), or ".." above
// the root.
// `out` is at most raw_path.size() bytes (1 for an empty path).
int normalize_path(std::string_view raw_path, const NormalizeOptions& options, std::string& out);

// Fully percent-decodes a normalized path for the filesystem. False when the
// input does not start with "/", holds a malformed escape, or the decoded form
// contains NUL or a "." / ".." segment (which %2F could smuggle in).
bool decode_path_for_fs(std::string_view normalized, std::string& out);

}  // namespace sluice::http
