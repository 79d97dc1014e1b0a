// Parsers for the values directives take, with nginx's syntax (ngx_parse.c,
// ngx_conf_set_*_slot). Each rejects empty input, signs, overflow and
// trailing characters, and returns nullopt rather than guessing.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::conf {

// Largest value any parser here returns: results fit in int64_t, off_t and
// std::chrono durations without a cast that could wrap.
constexpr uint64_t kMaxConfValue = INT64_MAX;

// "1024", "8k"/"8K", "10m"/"10M", "1g"/"1G" (powers of 1024), in bytes.
std::optional<uint64_t> parse_size(std::string_view);

// nginx's time syntax: components "500ms", "30s", "5m", "1h", "1d", "1w",
// "1M" (30 days), "1y" (365 days), largest unit first, each unit at most
// once, optionally separated by spaces ("1h 30m", "1h30m"). A bare number is
// seconds and may only come last ("30", "1h30" = 1h 30s).
std::optional<uint64_t> parse_time_ms(std::string_view);
// The same in seconds; "ms" is refused, as by nginx's ngx_conf_set_sec_slot.
std::optional<uint64_t> parse_time_sec(std::string_view);

// A non-negative decimal number.
std::optional<int64_t> parse_number(std::string_view);

// "on" or "off", in any case as nginx accepts.
std::optional<bool> parse_flag(std::string_view);

// "10r/s", "60r/m", "1000r/h", "5r/d": returns the count (at least 1) and sets
// `per_seconds` to the window (1, 60, 3600, 86400); leaves it alone on error.
std::optional<unsigned> parse_rate(std::string_view, unsigned& per_seconds);

}  // namespace sluice::conf
