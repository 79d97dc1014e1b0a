// g++ -std=c++20 -Wall -Wextra -Isrc t/unit/conf_values_test.cc src/core/conf_values.cc -lgtest -lgtest_main -pthread
#include "core/conf_values.h"

#include <gtest/gtest.h>

namespace sluice::conf {
namespace {

constexpr uint64_t kMs = 1;
constexpr uint64_t kSec = 1000;
constexpr uint64_t kMin = 60 * kSec;
constexpr uint64_t kHour = 60 * kMin;
constexpr uint64_t kDay = 24 * kHour;

TEST(ConfValues, SizePlainAndUnits) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("1024"), 1024u);
    EXPECT_EQ(parse_size("8k"), 8u * 1024);
    EXPECT_EQ(parse_size("8K"), 8u * 1024);
    EXPECT_EQ(parse_size("10m"), 10u * 1024 * 1024);
    EXPECT_EQ(parse_size("10M"), 10u * 1024 * 1024);
    EXPECT_EQ(parse_size("1g"), 1024u * 1024 * 1024);
    EXPECT_EQ(parse_size("1G"), 1024u * 1024 * 1024);
    EXPECT_EQ(parse_size("007"), 7u);
}

TEST(ConfValues, SizeRejectsMalformed) {
    for (const char* bad : {"", "k", "M", "-1", "+1", " 1", "1 ", "1.5k", "1kb", "1KB", "1kk", "8t", "1e3",
                            "0x10", "12a", "a12", "1 k"}) {
        EXPECT_FALSE(parse_size(bad)) << bad;
    }
}

TEST(ConfValues, SizeOverflow) {
    EXPECT_EQ(parse_size("9223372036854775807"), kMaxConfValue);
    EXPECT_FALSE(parse_size("9223372036854775808"));
    EXPECT_FALSE(parse_size("18446744073709551616"));
    EXPECT_FALSE(parse_size("99999999999999999999999999"));
    EXPECT_EQ(parse_size("8589934591G"), 8589934591ull << 30);
    EXPECT_FALSE(parse_size("8589934592G"));  // 2^63 bytes
    EXPECT_FALSE(parse_size("9007199254740992k"));
}

TEST(ConfValues, TimeMsUnits) {
    EXPECT_EQ(parse_time_ms("0"), 0u);
    EXPECT_EQ(parse_time_ms("500ms"), 500 * kMs);
    EXPECT_EQ(parse_time_ms("30"), 30 * kSec);  // a bare number is seconds
    EXPECT_EQ(parse_time_ms("30s"), 30 * kSec);
    EXPECT_EQ(parse_time_ms("5m"), 5 * kMin);
    EXPECT_EQ(parse_time_ms("1h"), kHour);
    EXPECT_EQ(parse_time_ms("1d"), kDay);
    EXPECT_EQ(parse_time_ms("1w"), 7 * kDay);
    EXPECT_EQ(parse_time_ms("1M"), 30 * kDay);
    EXPECT_EQ(parse_time_ms("1y"), 365 * kDay);
}

TEST(ConfValues, TimeMsCombinations) {
    EXPECT_EQ(parse_time_ms("1h 30m"), kHour + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1h30m"), kHour + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1h  30m"), kHour + 30 * kMin);
    EXPECT_EQ(parse_time_ms("1y 1M 1w 1d 1h 1m 1s 1ms"),
              365 * kDay + 30 * kDay + 7 * kDay + kDay + kHour + kMin + kSec + kMs);
    EXPECT_EQ(parse_time_ms("1m30"), kMin + 30 * kSec);  // trailing bare number: seconds, as nginx
    EXPECT_EQ(parse_time_ms("2s500ms"), 2500u);
    EXPECT_EQ(parse_time_ms("1h30m30"), kHour + 30 * kMin + 30 * kSec);
}

TEST(ConfValues, TimeRejectsMalformed) {
    for (const char* bad : {"", " ", "s", "ms", "h1", "-1", "+1", "1.5s", "1x", "1S", "1H", "1D", "1sec",
                            "1mss", " 1s", "1s ", "1h ", "1 h", "30 5m", "1h\t30m", "1m1h", "1s1s", "1ms1s",
                            "1ms 5", "1s 5", "1mm", "1s m", "1h m"}) {
        EXPECT_FALSE(parse_time_ms(bad)) << '"' << bad << '"';
        EXPECT_FALSE(parse_time_sec(bad)) << '"' << bad << '"';
    }
}

TEST(ConfValues, TimeSec) {
    EXPECT_EQ(parse_time_sec("0"), 0u);
    EXPECT_EQ(parse_time_sec("30"), 30u);
    EXPECT_EQ(parse_time_sec("30s"), 30u);
    EXPECT_EQ(parse_time_sec("5m"), 300u);
    EXPECT_EQ(parse_time_sec("1h 30m"), 5400u);
    EXPECT_EQ(parse_time_sec("1d"), 86400u);
    EXPECT_EQ(parse_time_sec("1w"), 7u * 86400);
    EXPECT_EQ(parse_time_sec("1M"), 30u * 86400);
    EXPECT_EQ(parse_time_sec("1y"), 365u * 86400);
    EXPECT_FALSE(parse_time_sec("500ms"));
    EXPECT_FALSE(parse_time_sec("1s 500ms"));
}

TEST(ConfValues, TimeOverflow) {
    EXPECT_EQ(parse_time_ms("9223372036854775807ms"), kMaxConfValue);
    EXPECT_FALSE(parse_time_ms("9223372036854775808ms"));
    EXPECT_EQ(parse_time_sec("9223372036854775807"), kMaxConfValue);
    EXPECT_FALSE(parse_time_sec("9223372036854775808"));
    EXPECT_FALSE(parse_time_ms("9223372036854775807"));  // seconds, in ms
    EXPECT_EQ(parse_time_ms("9223372036854775s"), 9223372036854775000u);
    EXPECT_FALSE(parse_time_ms("9223372036854776s"));
    EXPECT_FALSE(parse_time_ms("292471209y"));
    EXPECT_FALSE(parse_time_ms("9223372036854775s 808ms"));  // each part fits, the sum does not
    EXPECT_EQ(parse_time_ms("9223372036854775s 807ms"), kMaxConfValue);
    EXPECT_FALSE(parse_time_sec("292471208678y"));
}

TEST(ConfValues, Number) {
    EXPECT_EQ(parse_number("0"), 0);
    EXPECT_EQ(parse_number("42"), 42);
    EXPECT_EQ(parse_number("0042"), 42);
    EXPECT_EQ(parse_number("9223372036854775807"), INT64_MAX);
    for (const char* bad : {"", "-1", "+1", " 1", "1 ", "1k", "1.0", "0x1", "9223372036854775808",
                            "18446744073709551616", "abc"}) {
        EXPECT_FALSE(parse_number(bad)) << bad;
    }
}

TEST(ConfValues, Flag) {
    EXPECT_EQ(parse_flag("on"), true);
    EXPECT_EQ(parse_flag("off"), false);
    EXPECT_EQ(parse_flag("ON"), true);  // nginx compares without case
    EXPECT_EQ(parse_flag("Off"), false);
    for (const char* bad : {"", "1", "0", "yes", "no", "true", "false", "o", "onn", " on", "on ", "of"}) {
        EXPECT_FALSE(parse_flag(bad)) << bad;
    }
}

TEST(ConfValues, Rate) {
    unsigned per = 0;
    EXPECT_EQ(parse_rate("10r/s", per), 10u);
    EXPECT_EQ(per, 1u);
    EXPECT_EQ(parse_rate("60r/m", per), 60u);
    EXPECT_EQ(per, 60u);
    EXPECT_EQ(parse_rate("1000r/h", per), 1000u);
    EXPECT_EQ(per, 3600u);
    EXPECT_EQ(parse_rate("5r/d", per), 5u);
    EXPECT_EQ(per, 86400u);
    EXPECT_EQ(parse_rate("4294967295r/s", per), 4294967295u);
}

TEST(ConfValues, RateRejectsMalformed) {
    for (const char* bad : {"", "10", "r/s", "0r/s", "-1r/s", "+1r/s", "10r/x", "10r/S", "10 r/s", "10r/s ",
                            "1.5r/s", "10rs", "10r/", "4294967296r/s", "99999999999999999999r/s", "10/s"}) {
        unsigned per = 7;
        EXPECT_FALSE(parse_rate(bad, per)) << bad;
        EXPECT_EQ(per, 7u) << "per_seconds is left alone on error: " << bad;
    }
}

}  // namespace
}  // namespace sluice::conf
