// Small string helpers shared by every part of sluice.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {

inline char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c | 0x20) : c; }

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

inline bool istarts_with(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

inline std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// Appends the decimal form of v; used where snprintf would be too slow.
inline void append_uint(std::string& out, uint64_t v) {
    char buf[24];
    char* p = buf + sizeof buf;
    do { *--p = char('0' + v % 10); v /= 10; } while (v);
    out.append(p, size_t(buf + sizeof buf - p));
}

}  // namespace sluice
