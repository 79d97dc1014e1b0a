#include "accept_encoding.h"

#include "core/str.h"

namespace sluice::http {

namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool is_tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

bool is_token(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_tchar(c)) return false;
    return true;
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
bool parse_qvalue(std::string_view s, int& q) {
    if (s.empty() || (s[0] != '0' && s[0] != '1')) return false;
    int whole = s[0] - '0';
    int frac = 0, digits = 0;
    if (s.size() > 1) {
        if (s[1] != '.' || s.size() > 5) return false;
        for (char c : s.substr(2)) {
            if (c < '0' || c > '9') return false;
            frac = frac * 10 + (c - '0');
            ++digits;
        }
    }
    for (; digits < 3; ++digits) frac *= 10;
    if (whole == 1 && frac != 0) return false;
    q = whole * 1000 + frac;
    return true;
}

// One list element: coding *( OWS ";" OWS name "=" value ). Only q matters;
// other parameters are allowed (token or quoted-string values are not
// interpreted) but must be well formed.
bool parse_element(std::string_view element, std::string_view& coding, int& q) {
    size_t semi = element.find(';');
    coding = trim(element.substr(0, semi));
    if (!is_token(coding)) return false;
    q = 1000;
    while (semi != std::string_view::npos) {
        element.remove_prefix(semi + 1);
        semi = element.find(';');
        std::string_view param = trim(element.substr(0, semi));
        size_t eq = param.find('=');
        if (eq == std::string_view::npos) return false;
        std::string_view name = param.substr(0, eq), value = param.substr(eq + 1);
        if (!is_token(name) || value.empty()) return false;
        if (name.size() == 1 && (name[0] == 'q' || name[0] == 'Q')) {
            if (!parse_qvalue(value, q)) return false;
        }
    }
    return true;
}

void note(int& slot, int q) {
    if (slot == AcceptedCodings::kNotListed) slot = q;
}

}  // namespace

void parse_accept_encoding(std::string_view value, AcceptedCodings& into) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view element = trim(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        std::string_view coding;
        int q;
        if (element.empty() || !parse_element(element, coding, q)) continue;
        if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) note(into.gzip, q);
        else if (coding == "*") note(into.any, q);
        else if (iequals(coding, "identity")) note(into.identity, q);
    }
}

bool gzip_acceptable(const AcceptedCodings& c) {
    int q = c.gzip != AcceptedCodings::kNotListed ? c.gzip : c.any;
    if (q <= 0) return false;
    return c.identity == AcceptedCodings::kNotListed || q >= c.identity;
}

}  // namespace sluice::http
