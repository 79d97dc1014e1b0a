// HTTP-date (RFC 9110 §5.6.7): parsing all three formats a recipient must
// accept, and formatting the one a sender must generate.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice {

// Seconds since the epoch for an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"),
// an obsolete RFC 850 date ("Sunday, 06-Nov-94 08:49:37 GMT") or an asctime
// date ("Sun Nov  6 08:49:37 1994"); -1 if the value is none of them or names
// a day that does not exist (31 April). The weekday name is not checked
// (recipients are to be robust, §5.6.7). A two-digit RFC 850 year below 70
// is 20xx, otherwise 19xx: the §5.6.7 "more than 50 years in the future"
// rule would need the clock, and gives the same answer until 2020+50.
int64_t parse_http_date(std::string_view s);

// Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
int64_t days_from_civil(int64_t year, unsigned month, unsigned day);

// Writes the IMF-fixdate of `t` into buf (at least kHttpDateLength bytes)
// and returns a view of it. Times before the epoch are written as the epoch.
inline constexpr size_t kHttpDateLength = 29;
std::string_view format_http_date(int64_t t, char* buf);

}  // namespace sluice
