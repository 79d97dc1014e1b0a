// The Accept-Encoding parser of the gzip module (RFC 9110 12.5.3) and the
// window and memory levels nginx picks for short bodies.
#include <gtest/gtest.h>
#include <zlib.h>

#include "../../modules/gzip/accept_encoding.h"
#include "../../modules/gzip/gzip.h"

namespace sluice::http {
namespace {

constexpr int kNot = AcceptedCodings::kNotListed;

AcceptedCodings parse(std::string_view v) {
    AcceptedCodings c;
    parse_accept_encoding(v, c);
    return c;
}

bool takes_gzip(std::string_view v) { return gzip_acceptable(parse(v)); }

TEST(AcceptEncoding, QValuesInThousandths) {
    AcceptedCodings c = parse("gzip;q=0.5, *;q=0.001, identity;q=1.000");
    EXPECT_EQ(c.gzip, 500);
    EXPECT_EQ(c.any, 1);
    EXPECT_EQ(c.identity, 1000);
    c = parse("gzip");
    EXPECT_EQ(c.gzip, 1000);
    EXPECT_EQ(c.any, kNot);
    EXPECT_EQ(c.identity, kNot);
}

TEST(AcceptEncoding, WhoGetsGzip) {
    EXPECT_TRUE(takes_gzip("gzip"));
    EXPECT_TRUE(takes_gzip("gzip, deflate, br"));
    EXPECT_TRUE(takes_gzip("deflate, GZIP"));
    EXPECT_TRUE(takes_gzip("x-gzip"));
    EXPECT_TRUE(takes_gzip("*"));
    EXPECT_TRUE(takes_gzip("br;q=1, *;q=0.1"));
    EXPECT_TRUE(takes_gzip("gzip;q=0.001"));
    EXPECT_TRUE(takes_gzip("gzip ; q=1 , identity ; q=0.5"));
    EXPECT_TRUE(takes_gzip("gzip;level=9;q=0.8"));  // other parameters are allowed

    EXPECT_FALSE(takes_gzip(""));
    EXPECT_FALSE(takes_gzip("identity"));
    EXPECT_FALSE(takes_gzip("deflate, br"));
    EXPECT_FALSE(takes_gzip("gzip;q=0"));
    EXPECT_FALSE(takes_gzip("gzip;q=0.000"));
    EXPECT_FALSE(takes_gzip("*;q=0"));
    EXPECT_FALSE(takes_gzip("gzip;q=0, *"));           // gzip named: "*" does not apply to it
    EXPECT_FALSE(takes_gzip("gzip;q=0.5, identity"));  // the plain body is preferred
    EXPECT_FALSE(takes_gzip("gzipx, xgzip"));
}

TEST(AcceptEncoding, MalformedElementsAreIgnoredNotGuessed) {
    EXPECT_FALSE(takes_gzip("gzip;q=2"));
    EXPECT_FALSE(takes_gzip("gzip;q=1.5"));
    EXPECT_FALSE(takes_gzip("gzip;q=0.5000"));
    EXPECT_FALSE(takes_gzip("gzip;q=-1"));
    EXPECT_FALSE(takes_gzip("gzip;q="));
    EXPECT_FALSE(takes_gzip("gzip;q"));
    EXPECT_FALSE(takes_gzip("gzip;q=1x"));
    EXPECT_FALSE(takes_gzip("gz ip"));
    EXPECT_FALSE(takes_gzip("\"gzip\""));
    // The bad element alone is dropped; the others still count.
    EXPECT_TRUE(takes_gzip("gzip;q=abc, *"));
    EXPECT_TRUE(takes_gzip(",, gzip ,"));
}

TEST(AcceptEncoding, FirstMentionWinsAndFieldsJoin) {
    EXPECT_FALSE(takes_gzip("gzip;q=0, gzip"));
    EXPECT_TRUE(takes_gzip("gzip, gzip;q=0"));
    AcceptedCodings c;
    parse_accept_encoding("br", c);
    parse_accept_encoding("gzip;q=0.3", c);
    EXPECT_EQ(c.gzip, 300);
    EXPECT_TRUE(gzip_acceptable(c));
}

TEST(GzipMemoryLevels, ShortBodiesGetSmallerWindows) {
    int wbits, memlevel;
    gzip_memory_levels(-1, wbits, memlevel);  // unknown length: the defaults
    EXPECT_EQ(wbits, MAX_WBITS);
    EXPECT_EQ(memlevel, MAX_MEM_LEVEL - 1);
    gzip_memory_levels(1 << 20, wbits, memlevel);
    EXPECT_EQ(wbits, MAX_WBITS);
    gzip_memory_levels(1000, wbits, memlevel);  // nginx: 1000 < 2^(w-1) - 262 down to w = 11
    EXPECT_EQ(wbits, 11);
    EXPECT_EQ(memlevel, 4);
    gzip_memory_levels(1, wbits, memlevel);
    EXPECT_EQ(wbits, 9);
    EXPECT_EQ(memlevel, 2);
}

}  // namespace
}  // namespace sluice::http
