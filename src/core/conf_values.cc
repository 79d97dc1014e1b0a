#include "core/conf_values.h"

#include <climits>

namespace sluice::conf {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads the digits at the front of `s`, moving past them; nullopt if there
// are none or their value exceeds kMaxConfValue.
std::optional<uint64_t> take_digits(std::string_view& s) {
    size_t i = 0;
    uint64_t value = 0;
    for (; i < s.size() && is_digit(s[i]); ++i) {
        const unsigned digit = unsigned(s[i] - '0');
        if (value > (kMaxConfValue - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    if (i == 0) return std::nullopt;
    s.remove_prefix(i);
    return value;
}

// The whole of `s` as a number.
std::optional<uint64_t> parse_digits(std::string_view s) {
    auto value = take_digits(s);
    if (!value || !s.empty()) return std::nullopt;
    return value;
}

std::optional<uint64_t> checked_multiply(uint64_t value, uint64_t scale) {
    if (value > kMaxConfValue / scale) return std::nullopt;
    return value * scale;
}

// Time units from the largest down: a component must use a smaller unit than
// the one before it, which is how nginx rejects "1m1h" and "1s1s".
enum TimeRank { kYears, kMonths, kWeeks, kDays, kHours, kMinutes, kSeconds, kMilliseconds };

constexpr uint64_t kMsPerRank[] = {
    365ull * 86400 * 1000, 30ull * 86400 * 1000, 7ull * 86400 * 1000, 86400ull * 1000,
    3600ull * 1000,        60ull * 1000,         1000ull,             1ull,
};

// Reads the unit at the front of `s`, moving past it.
std::optional<TimeRank> take_time_unit(std::string_view& s) {
    if (s.starts_with("ms")) {
        s.remove_prefix(2);
        return kMilliseconds;
    }
    if (s.empty()) return std::nullopt;
    const char unit = s.front();
    s.remove_prefix(1);
    switch (unit) {
    case 'y': return kYears;
    case 'M': return kMonths;
    case 'w': return kWeeks;
    case 'd': return kDays;
    case 'h': return kHours;
    case 'm': return kMinutes;
    case 's': return kSeconds;
    default: return std::nullopt;
    }
}

std::optional<uint64_t> parse_time(std::string_view s, bool in_seconds) {
    uint64_t total = 0;
    int previous = -1;
    do {
        const auto value = take_digits(s);
        if (!value) return std::nullopt;
        // A trailing bare number counts as seconds.
        const auto rank = s.empty() ? std::optional(kSeconds) : take_time_unit(s);
        if (!rank || int(*rank) <= previous) return std::nullopt;
        if (in_seconds && *rank == kMilliseconds) return std::nullopt;
        previous = *rank;
        const uint64_t scale = in_seconds ? kMsPerRank[*rank] / 1000 : kMsPerRank[*rank];
        const auto part = checked_multiply(*value, scale);
        if (!part || *part > kMaxConfValue - total) return std::nullopt;
        total += *part;
        if (!s.empty() && s.front() == ' ') {
            while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
            if (s.empty()) return std::nullopt;  // trailing spaces
        }
    } while (!s.empty());
    return total;
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view s) {
    uint64_t scale = 1;
    if (!s.empty()) {
        switch (s.back()) {
        case 'k':
        case 'K': scale = 1024; break;
        case 'm':
        case 'M': scale = 1024 * 1024; break;
        case 'g':
        case 'G': scale = 1024 * 1024 * 1024; break;
        default: break;
        }
    }
    if (scale != 1) s.remove_suffix(1);
    const auto value = parse_digits(s);
    if (!value) return std::nullopt;
    return checked_multiply(*value, scale);
}

std::optional<uint64_t> parse_time_ms(std::string_view s) { return parse_time(s, false); }

std::optional<uint64_t> parse_time_sec(std::string_view s) { return parse_time(s, true); }

std::optional<int64_t> parse_number(std::string_view s) {
    const auto value = parse_digits(s);
    if (!value) return std::nullopt;
    return int64_t(*value);
}

std::optional<bool> parse_flag(std::string_view s) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c | 0x20) : c; };
    auto equals = [&](std::string_view word) {
        if (s.size() != word.size()) return false;
        for (size_t i = 0; i < s.size(); ++i)
            if (lower(s[i]) != word[i]) return false;
        return true;
    };
    if (equals("on")) return true;
    if (equals("off")) return false;
    return std::nullopt;
}

std::optional<unsigned> parse_rate(std::string_view s, unsigned& per_seconds) {
    struct Window {
        std::string_view suffix;
        unsigned seconds;
    };
    static constexpr Window kWindows[] = {{"r/s", 1}, {"r/m", 60}, {"r/h", 3600}, {"r/d", 86400}};
    for (const Window& window : kWindows) {
        if (!s.ends_with(window.suffix)) continue;
        const auto count = parse_digits(s.substr(0, s.size() - window.suffix.size()));
        // A zero rate would admit nothing; nginx calls it invalid too.
        if (!count || *count == 0 || *count > UINT_MAX) return std::nullopt;
        per_seconds = window.seconds;
        return unsigned(*count);
    }
    return std::nullopt;
}

}  // namespace sluice::conf
