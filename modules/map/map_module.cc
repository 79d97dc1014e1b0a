// The map module's request path: evaluating a map variable. Nothing here
// allocates outside the request's arena.
#include "map.h"

#include "core/str.h"
#include "http/http_request.h"

namespace sluice::http::map {

size_t CaselessHash::operator()(std::string_view s) const {
    // FNV-1a over the lowercased bytes.
    uint64_t h = 14695981039346656037ull;
    for (char c : s) {
        h ^= uint8_t(ascii_lower(c));
        h *= 1099511628211ull;
    }
    return size_t(h);
}

bool CaselessEqual::operator()(std::string_view a, std::string_view b) const { return iequals(a, b); }

namespace {

int find_key(const KeyTable& table, std::string_view key) {
    auto it = table.find(key);
    return it == table.end() ? -1 : it->second;
}

// "*.example.com" matches any name ending in ".example.com"; the leftmost dot
// gives the longest suffix, which is the most specific mask.
int find_wildcard_head(const KeyTable& table, std::string_view name) {
    if (table.empty()) return -1;
    for (size_t dot = name.find('.', 1); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
        int v = find_key(table, name.substr(dot + 1));
        if (v >= 0) return v;
    }
    return -1;
}

// "www.example.*" matches any name starting with "www.example." followed by
// something; the rightmost dot gives the longest prefix.
int find_wildcard_tail(const KeyTable& table, std::string_view name) {
    if (table.empty() || name.size() < 2) return -1;
    for (size_t dot = name.rfind('.', name.size() - 2); dot != std::string_view::npos && dot > 0;
         dot = name.rfind('.', dot - 1)) {
        int v = find_key(table, name.substr(0, dot));
        if (v >= 0) return v;
    }
    return -1;
}

}  // namespace

std::string_view match_key(const MapTable& t, std::string_view key) {
    if (t.hostnames && !key.empty() && key.back() == '.') key.remove_suffix(1);
    return key;
}

MapMatch find_value(const MapTable& t, std::string_view value, size_t* ovector, size_t ovector_size) {
    std::string_view key = match_key(t, value);
    if (int v = find_key(t.exact, key); v >= 0) return {v, nullptr};
    if (t.hostnames) {
        if (int v = find_wildcard_head(t.wildcard_head, key); v >= 0) return {v, nullptr};
        if (int v = find_wildcard_tail(t.wildcard_tail, key); v >= 0) return {v, nullptr};
    }
    // As nginx: an empty value is looked up among the strings only.
    if (key.empty()) return {};
    for (const RegexKey& r : t.regexes)
        if (r.regex->match(key, ovector, ovector_size)) return {r.value, r.regex.get()};
    return {};
}

bool map_variable(Request& r, std::string_view& value, uintptr_t data) {
    const Map& m = *reinterpret_cast<const Map*>(data);
    const MapTable& t = m.table;
    std::string_view source = m.source.eval(r);

    constexpr size_t kStackOvector = 32;
    size_t stack_ovector[kStackOvector];
    size_t* ovector = stack_ovector;
    if (t.ovector_size > kStackOvector)
        ovector = static_cast<size_t*>(r.arena()->allocate(t.ovector_size * sizeof(size_t), alignof(size_t)));

    MapMatch found = find_value(t, source, ovector, t.ovector_size);
    if (found.regex) {
        // The value may use $1 or named groups, and so may later directives.
        set_regex_captures(r, *found.regex, match_key(t, source), ovector, size_t(found.regex->capture_count()) + 1);
    }
    int index = found.value >= 0 ? found.value : t.default_value;
    // No default: the empty string, found (nginx's behaviour).
    value = index >= 0 ? t.values[size_t(index)].eval(r) : std::string_view();
    return true;
}

}  // namespace sluice::http::map
