// RFC 9111 / RFC 5861 / RFC 9110 caching rules of http_cache_policy, table by
// table. Examples quoted from the RFCs are marked with their section.
#include "http/http_cache_policy.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/http_date.h"

namespace sluice::http::cache {
namespace {

// "Name: value\nName: value" -> fields viewing into the (static) literal.
std::vector<Header> fields(std::string_view text) {
    std::vector<Header> out;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        out.push_back({line.substr(0, colon), value});
    }
    return out;
}

constexpr int64_t kT0 = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110 §5.6.7)

// ---- HTTP-date ------------------------------------------------------------------------

TEST(HttpDate, ThreeFormatsOfRfc9110) {
    EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), kT0);
    EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), kT0);
    EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), kT0);
    EXPECT_EQ(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    EXPECT_EQ(parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"), 951782400);
}

TEST(HttpDate, Invalid) {
    for (std::string_view bad :
         {"0", "", "-1", "Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 6 Nov 1994 08:49:37 GMT",
          "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 31 Apr 1994 08:49:37 GMT", "Mon, 29 Feb 1900 00:00:00 GMT",
          "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:49:37 GMT x", "Sun,06 Nov 1994 08:49:37 GMT",
          "tomorrow", "Sun, 06 Foo 1994 08:49:37 GMT"})
        EXPECT_EQ(parse_http_date(bad), -1) << bad;
}

TEST(HttpDate, FormatRoundTrips) {
    char buf[kHttpDateLength];
    EXPECT_EQ(format_http_date(kT0, buf), "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_EQ(format_http_date(0, buf), "Thu, 01 Jan 1970 00:00:00 GMT");
    for (int64_t t : {int64_t(0), kT0, int64_t(951782400), int64_t(1795000000), int64_t(4102444799)})
        EXPECT_EQ(parse_http_date(format_http_date(t, buf)), t) << t;
}

// ---- Cache-Control (§5.2) ----------------------------------------------------------------

int64_t directive(const CacheControl& cc, std::string_view name) {
    if (name == "max-age") return cc.max_age;
    if (name == "s-maxage") return cc.s_maxage;
    if (name == "max-stale") return cc.max_stale;
    if (name == "min-fresh") return cc.min_fresh;
    if (name == "swr") return cc.stale_while_revalidate;
    if (name == "sie") return cc.stale_if_error;
    if (name == "no-store") return cc.no_store;
    if (name == "no-cache") return cc.no_cache;
    if (name == "private") return cc.private_;
    if (name == "public") return cc.public_;
    if (name == "must-revalidate") return cc.must_revalidate;
    if (name == "proxy-revalidate") return cc.proxy_revalidate;
    if (name == "must-understand") return cc.must_understand;
    if (name == "no-transform") return cc.no_transform;
    if (name == "only-if-cached") return cc.only_if_cached;
    if (name == "immutable") return cc.immutable;
    if (name == "present") return cc.present;
    ADD_FAILURE() << "unknown " << name;
    return -99;
}

struct CcCase {
    const char* headers;
    const char* what;
    int64_t expected;
};

constexpr int64_t k2to31 = int64_t(1) << 31;

const CcCase kCacheControlCases[] = {
    {"Cache-Control: max-age=10", "max-age", 10},
    {"Cache-Control: MAX-AGE=10", "max-age", 10},  // directive names are case-insensitive
    {"Cache-Control: Max-Age=10", "max-age", 10},
    {"cache-control: max-age=10", "max-age", 10},      // so are field names
    {"Cache-Control: max-age=\"10\"", "max-age", 10},  // §5.2: recipients accept both forms
    {"Cache-Control: max-age=0", "max-age", 0},
    {"Cache-Control: max-age=007", "max-age", 7},
    {"Cache-Control: max-age=-1", "max-age", 0},  // invalid: stale (§4.2.1)
    {"Cache-Control: max-age=abc", "max-age", 0},
    {"Cache-Control: max-age=10s", "max-age", 0},
    {"Cache-Control: max-age=1.5", "max-age", 0},
    {"Cache-Control: max-age=", "max-age", 0},
    {"Cache-Control: max-age", "max-age", 0},
    {"Cache-Control: max-age=\"\"", "max-age", 0},
    {"Cache-Control: max-age=\"1 0\"", "max-age", 0},
    {"Cache-Control: max-age=2147483648", "max-age", k2to31},  // §1.2.2
    {"Cache-Control: max-age=2147483649", "max-age", k2to31},
    {"Cache-Control: max-age=99999999999999999999999999", "max-age", k2to31},
    {"Cache-Control: max-age=2147483647", "max-age", 2147483647},
    {"Cache-Control: max-age = 10", "max-age", 10},  // tolerated OWS around "="
    {"Cache-Control:   max-age=10  ", "max-age", 10},
    {"Cache-Control: max-age=10, max-age=10", "max-age", 10},  // identical repeat
    {"Cache-Control: max-age=10, max-age=20", "max-age", 0},   // conflicting repeat: stale (§4.2.1)
    {"Cache-Control: max-age=10\nCache-Control: max-age=20", "max-age", 0},
    {"Cache-Control: max-age=10\nCache-Control: max-age=10", "max-age", 10},
    {"Cache-Control: max-age=10, max-age=x", "max-age", 0},
    {"Cache-Control: no-cache", "max-age", kAbsent},
    {"Cache-Control: s-maxage=30", "s-maxage", 30},
    {"Cache-Control: s-maxage=30, s-maxage=40", "s-maxage", 0},
    {"Cache-Control: s-maxage=x", "s-maxage", 0},
    {"Cache-Control: s-maxage=\"30\"", "s-maxage", 30},
    {"Cache-Control: max-stale", "max-stale", k2to31},  // no argument: any staleness
    {"Cache-Control: max-stale=5", "max-stale", 5},
    {"Cache-Control: max-stale=5, max-stale=3", "max-stale", 3},
    {"Cache-Control: max-stale=x", "max-stale", kAbsent},
    {"Cache-Control: min-fresh=5, min-fresh=9", "min-fresh", 9},  // the most restrictive
    {"Cache-Control: min-fresh=-3", "min-fresh", kAbsent},
    {"Cache-Control: max-age=600, stale-while-revalidate=30", "swr", 30},  // RFC 5861 §3
    {"Cache-Control: max-age=600, stale-if-error=1200", "sie", 1200},      // RFC 5861 §4
    {"Cache-Control: stale-if-error=1200, stale-if-error=60", "sie", 60},
    {"Cache-Control: stale-if-error", "sie", kAbsent},
    {"Cache-Control: stale-while-revalidate=\"30\"", "swr", 30},
    {"Cache-Control: no-store", "no-store", 1},
    {"Cache-Control: NO-STORE", "no-store", 1},
    {"Cache-Control: no-store=x", "no-store", 1},  // restrictive even when malformed
    {"Cache-Control: no-storex", "no-store", 0},
    {"Cache-Control: no-cache", "no-cache", 1},
    {"Cache-Control: no-cache=\"Set-Cookie, Set-Cookie2\"", "no-cache", 1},
    {"Cache-Control: no-cache=set-cookie", "no-cache", 1},
    {"Cache-Control: private", "private", 1},
    {"Cache-Control: private=\"x-secret\"", "private", 1},
    {"Cache-Control: public", "public", 1},
    {"Cache-Control: public=yes", "public", 0},  // relaxing and malformed: ignored
    {"Cache-Control: public, private", "private", 1},
    {"Cache-Control: public, private", "public", 1},
    {"Cache-Control: must-revalidate", "must-revalidate", 1},
    {"Cache-Control: proxy-revalidate", "proxy-revalidate", 1},
    {"Cache-Control: must-understand, no-store", "must-understand", 1},
    {"Cache-Control: no-transform", "no-transform", 1},
    {"Cache-Control: only-if-cached", "only-if-cached", 1},
    {"Cache-Control: max-age=31536000, immutable", "immutable", 1},
    {"Cache-Control: community=\"UCI\"", "max-age", kAbsent},  // §5.2.3 extension, ignored
    {"Cache-Control: community=\"UCI\", max-age=5", "max-age", 5},
    {"Cache-Control: foo=\"a,max-age=1\", max-age=5", "max-age", 5},  // commas inside quotes
    {"Cache-Control: ,, max-age=5 ,", "max-age", 5},                  // empty list members
    {"Cache-Control: =5, max-age=5", "max-age", 5},
    {"Cache-Control: max-age=5 6, public", "max-age", 0},
    {"Cache-Control: max-age=5 6, public", "public", 1},
    {"Cache-Control: ", "present", 1},
    {"Expires: 0", "present", 0},
    {"X-Cache-Control: no-store", "no-store", 0},
};

TEST(CacheControl, Table) {
    for (const CcCase& c : kCacheControlCases) {
        auto h = fields(c.headers);
        EXPECT_EQ(directive(parse_cache_control(h), c.what), c.expected) << c.headers << " -> " << c.what;
    }
}

TEST(CacheControl, FieldNamesOfQualifiedForms) {
    auto h = fields("Cache-Control: no-cache=\"Set-Cookie, X-A\", private=\"Authorization\"");
    CacheControl cc = parse_cache_control(h);
    EXPECT_EQ(cc.no_cache_fields, "Set-Cookie, X-A");
    EXPECT_EQ(cc.private_fields, "Authorization");
}

TEST(CacheControl, PragmaOnlyWithoutCacheControl) {
    CachePolicyConfig cfg;
    struct {
        const char* headers;
        bool no_cache;
    } cases[] = {
        {"Pragma: no-cache", true},  // §5.4
        {"Pragma: NO-CACHE", true},
        {"Pragma: foo, no-cache", true},
        {"Pragma: no-cache\nCache-Control: max-age=5", false},  // Cache-Control present
        {"Pragma: no-cache\nCache-Control: no-cache", true},
        {"Pragma: nocache", false},
        {"", false},
    };
    for (const auto& c : cases) {
        auto h = fields(c.headers);
        EXPECT_EQ(parse_request_cache_info(Method::Get, h, cfg).cc.no_cache, c.no_cache) << c.headers;
    }
    cfg.ignore_request_cache_control = true;
    auto h = fields("Pragma: no-cache\nCache-Control: no-cache, max-age=0");
    RequestCacheInfo req = parse_request_cache_info(Method::Get, h, cfg);
    EXPECT_FALSE(req.cc.no_cache);
    EXPECT_EQ(req.cc.max_age, kAbsent);
}

TEST(CacheControl, ResponsePragmaMeansNothing) {
    auto h = fields("Pragma: no-cache\nCache-Control: max-age=60");
    ResponseCacheInfo r = parse_response_cache_info(200, h, {});
    EXPECT_FALSE(r.cc.no_cache);
    EXPECT_EQ(freshness_lifetime(r, {}, kT0).lifetime, 60);
}

// ---- Expires, Age, response facts ------------------------------------------------------------

TEST(Expires, InvalidIsAlreadyExpired) {
    struct {
        const char* headers;
        int64_t expected;
    } cases[] = {
        {"Expires: Thu, 01 Dec 1994 16:00:00 GMT", 786297600},  // §5.3 example
        {"Expires: 0", 0},                                      // §5.3: "especially the value 0"
        {"Expires: -1", 0},
        {"Expires: never", 0},
        {"Expires: ", 0},
        {"Expires: Thursday, 01-Dec-94 16:00:00 GMT", 786297600},
        {"Expires: Thu Dec  1 16:00:00 1994", 786297600},
        {"Expires: Thu, 01 Dec 1994 16:00:00 GMT\nExpires: Thu, 01 Dec 1994 16:00:00 GMT", 786297600},
        {"Expires: Thu, 01 Dec 1994 16:00:00 GMT\nExpires: Fri, 02 Dec 1994 16:00:00 GMT", 0},
        {"Date: Thu, 01 Dec 1994 16:00:00 GMT", -1},
    };
    for (const auto& c : cases) {
        auto h = fields(c.headers);
        EXPECT_EQ(parse_expires(h), c.expected) << c.headers;
    }
}

TEST(Age, Parsing) {
    struct {
        const char* headers;
        int64_t expected;
    } cases[] = {
        {"Age: 60", 60},
        {"Age: 0", 0},
        {"Age: abc", 0},
        {"Age: -5", 0},
        {"Age: 1.5", 0},
        {"Age: ", 0},
        {"", 0},
        {"Age: 99999999999999", k2to31},
        {"Age: 2147483648", k2to31},
        {"Age: 10\nAge: 20", 10},
        {"age: 7", 7},
        {"Age: 5 5", 0},
    };
    for (const auto& c : cases) {
        auto h = fields(c.headers);
        EXPECT_EQ(parse_age(h), c.expected) << c.headers;
    }
}

TEST(ResponseInfo, IgnoreHeadersApply) {
    auto h = fields(
        "Cache-Control: no-store\nExpires: 0\nSet-Cookie: a=b\nVary: *\nETag: \"x\"\n"
        "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT");
    CachePolicyConfig cfg;
    ResponseCacheInfo plain = parse_response_cache_info(200, h, cfg);
    EXPECT_TRUE(plain.cc.no_store);
    EXPECT_TRUE(plain.has_expires);
    EXPECT_TRUE(plain.has_set_cookie);
    EXPECT_TRUE(plain.vary_star);
    EXPECT_EQ(plain.etag, "\"x\"");
    EXPECT_EQ(plain.last_modified, kT0);
    cfg.ignore_headers = kIgnoreCacheControl | kIgnoreExpires | kIgnoreSetCookie | kIgnoreVary;
    ResponseCacheInfo ignored = parse_response_cache_info(200, h, cfg);
    EXPECT_FALSE(ignored.cc.no_store);
    EXPECT_FALSE(ignored.cc.present);
    EXPECT_FALSE(ignored.has_expires);
    EXPECT_FALSE(ignored.has_set_cookie);
    EXPECT_FALSE(ignored.has_vary);
    EXPECT_FALSE(ignored.vary_star);
}

TEST(ResponseInfo, InvalidEtagAndDates) {
    auto h = fields("ETag: unquoted\nDate: yesterday\nLast-Modified: 0");
    ResponseCacheInfo r = parse_response_cache_info(200, h, {});
    EXPECT_EQ(r.etag, "");
    EXPECT_EQ(r.date, -1);
    EXPECT_EQ(r.last_modified, -1);
    EXPECT_EQ(r.last_modified_value, "");
}

// ---- storability (§3) ---------------------------------------------------------------------------

enum CfgTweak : unsigned {
    kNone = 0,
    kPrivateCache = 1,
    kIgnoreCookie = 2,
    kValid200 = 4,  // proxy_cache_valid 200 10m
    kValidAny = 8,  // proxy_cache_valid any 1m
    kPost = 16,     // proxy_cache_methods POST
    kUseStaleError = 32,
    kNoHeuristic = 64,
    kIgnoreReqCc = 128,
    kRevalidateOn = 256,  // proxy_cache_revalidate on
};

CachePolicyConfig make_cfg(unsigned tweaks) {
    CachePolicyConfig cfg;
    if (tweaks & kPrivateCache) cfg.shared = false;
    if (tweaks & kIgnoreCookie) cfg.ignore_headers |= kIgnoreSetCookie;
    if (tweaks & kValid200) cfg.add_valid(200, 600);
    if (tweaks & kValidAny) cfg.add_valid(0, 60);
    if (tweaks & kPost) cfg.methods |= method_bit(Method::Post);
    if (tweaks & kUseStaleError) cfg.use_stale |= kStaleError;
    if (tweaks & kNoHeuristic) cfg.heuristic_percent = 0;
    if (tweaks & kIgnoreReqCc) cfg.ignore_request_cache_control = true;
    if (tweaks & kRevalidateOn) cfg.revalidate = true;
    return cfg;
}

struct StoreCase {
    Method method;
    const char* request;
    int status;
    const char* response;
    unsigned tweaks;
    StoreVerdict expected;
};

using SV = StoreVerdict;
constexpr const char* kLM = "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT";     // = the receipt time kT0
constexpr const char* kLMOld = "Last-Modified: Sat, 26 Oct 1994 19:03:57 GMT";  // kT0 - 1000000

const StoreCase kStoreCases[] = {
    {Method::Get, "", 200, "Cache-Control: max-age=60", kNone, SV::Store},
    {Method::Head, "", 200, "Cache-Control: max-age=60", kNone, SV::HeadResponse},  // no body to store
    {Method::Post, "", 200, "Cache-Control: max-age=60", kNone, SV::MethodNotCacheable},
    {Method::Post, "", 200, "Cache-Control: max-age=60", kPost, SV::Store},
    {Method::Put, "", 200, "Cache-Control: max-age=60", kNone, SV::MethodNotCacheable},
    {Method::Delete, "", 200, "Cache-Control: max-age=60", kNone, SV::MethodNotCacheable},
    {Method::Unknown, "", 200, "Cache-Control: max-age=60", kNone, SV::MethodNotCacheable},
    {Method::Get, "", 100, "Cache-Control: max-age=60", kNone, SV::StatusNotFinal},
    {Method::Get, "", 103, "Cache-Control: max-age=60", kNone, SV::StatusNotFinal},
    {Method::Get, "", 206, "Cache-Control: max-age=60", kNone, SV::PartialContent},
    {Method::Get, "", 304, "Cache-Control: max-age=60", kNone, SV::NotModified},
    // no-store in either message (§5.2.1.5, §5.2.2.5)
    {Method::Get, "", 200, "Cache-Control: no-store", kNone, SV::NoStore},
    {Method::Get, "", 200, "Cache-Control: max-age=60, no-store", kNone, SV::NoStore},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nCache-Control: NO-STORE", kNone, SV::NoStore},
    {Method::Get, "Cache-Control: no-store", 200, "Cache-Control: max-age=60", kNone, SV::NoStore},
    {Method::Get, "Cache-Control: no-store", 200, "Cache-Control: max-age=60", kIgnoreReqCc, SV::Store},
    // must-understand (§5.2.2.3)
    {Method::Get, "", 200, "Cache-Control: must-understand, no-store, max-age=60", kNone, SV::Store},
    {Method::Get, "", 299, "Cache-Control: must-understand, no-store, max-age=60", kNone, SV::StatusNotUnderstood},
    {Method::Get, "", 299, "Cache-Control: max-age=60", kNone, SV::Store},
    // private (§5.2.2.7)
    {Method::Get, "", 200, "Cache-Control: private, max-age=60", kNone, SV::Private},
    {Method::Get, "", 200, "Cache-Control: private=\"X-Secret\", max-age=60", kNone, SV::Private},
    {Method::Get, "", 200, "Cache-Control: public, private", kNone, SV::Private},
    {Method::Get, "", 200, "Cache-Control: private, max-age=60", kPrivateCache, SV::Store},
    {Method::Get, "", 299, "Cache-Control: private\nETag: \"a\"", kPrivateCache | kRevalidateOn,
     SV::Store},  // private is explicit (§3)
    {Method::Get, "", 299, "ETag: \"a\"", kPrivateCache, SV::NoFreshnessInformation},
    // Authorization (§3.5)
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: max-age=60", kNone, SV::Authorization},
    {Method::Get, "authorization: Basic eA==", 200, "Expires: Thu, 01 Dec 2094 16:00:00 GMT", kNone, SV::Authorization},
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: public, max-age=60", kNone, SV::Store},
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: s-maxage=60", kNone, SV::Store},
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: must-revalidate, max-age=60", kNone, SV::Store},
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: max-age=60", kPrivateCache, SV::Store},
    {Method::Get, "Authorization: Bearer x", 200, "Cache-Control: public=1, max-age=60", kNone, SV::Authorization},
    // Set-Cookie (nginx: not cached unless ignored)
    {Method::Get, "", 200, "Cache-Control: max-age=60\nSet-Cookie: s=1", kNone, SV::SetCookie},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nset-cookie: s=1", kNone, SV::SetCookie},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nSet-Cookie: s=1", kIgnoreCookie, SV::Store},
    // Vary: * (§4.1) is never served, so never stored
    {Method::Get, "", 200, "Cache-Control: max-age=60\nVary: *", kNone, SV::VaryStar},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nVary: Accept, *", kNone, SV::VaryStar},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nVary: Accept\nVary: *", kNone, SV::VaryStar},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nVary: Accept-Encoding", kNone, SV::Store},
    {Method::Get, "", 200, "Cache-Control: max-age=60\nVary: bad value", kNone, SV::VaryStar},
    // freshness information (§3): explicit, public, heuristic status, proxy_cache_valid
    {Method::Get, "", 302, "Location: /x", kNone, SV::NoFreshnessInformation},
    {Method::Get, "", 302, "Location: /x\nETag: \"a\"", kNone, SV::NoFreshnessInformation},
    {Method::Get, "", 302, "Cache-Control: max-age=60", kNone, SV::Store},
    {Method::Get, "", 302, "Expires: Thu, 01 Dec 2094 16:00:00 GMT", kNone, SV::Store},
    {Method::Get, "", 302, "Cache-Control: s-maxage=60", kNone, SV::Store},
    {Method::Get, "", 302, "Cache-Control: public\nLast-Modified: Sat, 26 Oct 1994 19:03:57 GMT", kNone, SV::Store},
    {Method::Get, "", 302, "Cache-Control: public\nETag: \"a\"", kRevalidateOn, SV::Store},
    {Method::Get, "", 302, "", kValidAny, SV::Store},
    {Method::Get, "", 302, "", kValid200, SV::NoFreshnessInformation},
    {Method::Get, "", 500, "", kNone, SV::NoFreshnessInformation},
    {Method::Get, "", 500, "", kValidAny, SV::Store},
    {Method::Get, "", 404, kLMOld, kNone, SV::Store},  // heuristically cacheable
    {Method::Get, "", 410, kLMOld, kNone, SV::Store},
    {Method::Get, "", 301, kLMOld, kNone, SV::Store},
    {Method::Get, "", 307, kLMOld, kNone, SV::NoFreshnessInformation},
    {Method::Get, "", 403, kLMOld, kNone, SV::NoFreshnessInformation},
    // worth storing at all
    {Method::Get, "", 200, "", kNone, SV::NeverReusable},              // no lifetime, no validator
    {Method::Get, "", 200, "ETag: \"v1\"", kRevalidateOn, SV::Store},  // revalidatable
    {Method::Get, "", 200, "ETag: \"v1\"", kNone, SV::NeverReusable},  // refetched whole anyway
    {Method::Get, "", 200, kLM, kRevalidateOn, SV::Store},             // heuristic 0, but a validator
    {Method::Get, "", 200, kLM, kNone, SV::NeverReusable},
    {Method::Get, "", 200, kLMOld, kNone, SV::Store},  // heuristic lifetime
    {Method::Get, "", 200, kLMOld, kNoHeuristic, SV::NeverReusable},
    {Method::Get, "", 200, kLMOld, kNoHeuristic | kRevalidateOn, SV::Store},
    {Method::Get, "", 200, "Cache-Control: max-age=0", kNone, SV::NeverReusable},
    {Method::Get, "", 200, "Cache-Control: max-age=0, stale-if-error=60", kNone, SV::Store},
    {Method::Get, "", 200, "Cache-Control: max-age=0, must-revalidate, stale-if-error=60", kNone, SV::NeverReusable},
    {Method::Get, "", 200, "Cache-Control: max-age=0", kUseStaleError, SV::NeverReusable},  // nginx: no lifetime, not stored
    {Method::Get, "", 404, "", kUseStaleError, SV::NeverReusable},  // heuristically cacheable, but no Last-Modified
    {Method::Get, "", 200, "Cache-Control: no-cache, max-age=60", kNone, SV::NeverReusable},
    {Method::Get, "", 200, "Cache-Control: no-cache\nETag: \"v1\"", kRevalidateOn, SV::Store},
    {Method::Get, "", 200, "Cache-Control: no-cache\nETag: \"v1\"", kNone,
     SV::NeverReusable},  // stored, always revalidated
    {Method::Get, "", 200, "Cache-Control: no-cache=\"Set-Cookie\"\nETag: \"v1\"", kRevalidateOn, SV::Store},
    {Method::Get, "", 200, "Expires: 0", kNone, SV::NeverReusable},
    {Method::Get, "", 200, "Expires: 0\nETag: \"v1\"", kRevalidateOn, SV::Store},
    {Method::Get, "", 204, "Cache-Control: max-age=60", kNone, SV::Store},
};

TEST(Storability, Table) {
    for (const StoreCase& c : kStoreCases) {
        CachePolicyConfig cfg = make_cfg(c.tweaks);
        auto rq = fields(c.request);
        auto rs = fields(c.response);
        RequestCacheInfo req = parse_request_cache_info(c.method, rq, cfg);
        ResponseCacheInfo resp = parse_response_cache_info(c.status, rs, cfg);
        EXPECT_EQ(store_verdict_name(storability(req, resp, cfg, kT0)), store_verdict_name(c.expected))
            << method_name(c.method) << " [" << c.request << "] " << c.status << " [" << c.response << "]";
    }
}

TEST(Storability, Methods) {
    CachePolicyConfig cfg;
    cfg.methods = 0;  // "proxy_cache_methods" cannot take GET and HEAD away
    EXPECT_TRUE(method_is_cacheable(Method::Get, cfg));
    EXPECT_TRUE(method_is_cacheable(Method::Head, cfg));
    EXPECT_FALSE(method_is_cacheable(Method::Post, cfg));
    EXPECT_FALSE(method_is_cacheable(Method::Unknown, cfg));
    for (Method m :
         {Method::Post, Method::Put, Method::Delete, Method::Patch, Method::Unknown, Method::Connect, Method::Purge})
        EXPECT_TRUE(method_is_unsafe(m)) << method_name(m);
    for (Method m : {Method::Get, Method::Head, Method::Options, Method::Trace})
        EXPECT_FALSE(method_is_unsafe(m)) << method_name(m);
}

TEST(Storability, HeadIsFilledWithGet) {
    CachePolicyConfig cfg;
    EXPECT_EQ(cache_fill_method(Method::Head, cfg), Method::Get);
    EXPECT_EQ(cache_fill_method(Method::Get, cfg), Method::Get);
    EXPECT_EQ(cache_fill_method(Method::Post, cfg), Method::Post);
    cfg.convert_head = false;
    EXPECT_EQ(cache_fill_method(Method::Head, cfg), Method::Head);
}

TEST(Storability, StatusTables) {
    std::vector<int> heuristic;
    for (int s = 100; s < 600; ++s)
        if (status_heuristically_cacheable(s)) heuristic.push_back(s);
    EXPECT_EQ(heuristic, (std::vector<int>{200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}));
    for (int s : {200, 204, 206, 301, 304, 308, 404, 417, 421, 429, 500, 505}) EXPECT_TRUE(status_understood(s)) << s;
    for (int s : {100, 199, 207, 226, 299, 306, 418, 420, 451, 506, 599}) EXPECT_FALSE(status_understood(s)) << s;
}

TEST(Storability, StoredFields) {
    auto h = fields("Connection: close, X-Hop\nX-Hop: 1\nContent-Type: text/plain\nAge: 5");
    struct {
        const char* name;
        bool storable;
    } cases[] = {
        {"Content-Type", true},
        {"ETag", true},
        {"Set-Cookie", true},
        {"Connection", false},
        {"connection", false},
        {"Keep-Alive", false},
        {"Transfer-Encoding", false},
        {"TE", false},
        {"Upgrade", false},
        {"Trailer", false},
        {"Proxy-Connection", false},
        {"Proxy-Authenticate", false},
        {"Proxy-Authentication-Info", false},
        {"Proxy-Authorization", false},
        {"X-Hop", false},
        {"x-hop", false},
        {"Age", false},
        {"Close", false},
    };
    for (const auto& c : cases) EXPECT_EQ(header_storable(c.name, h), c.storable) << c.name;
}

// ---- freshness lifetime (§4.2.1, §4.2.2) --------------------------------------------------------

struct FreshCase {
    int status;
    const char* response;
    unsigned tweaks;
    int64_t lifetime;
    FreshnessSource source;
};

using FS = FreshnessSource;
// Date is kT0; Last-Modified 1000000 s before it.
#define DATE "Date: Sun, 06 Nov 1994 08:49:37 GMT\n"
#define LM_1M "Last-Modified: Sat, 26 Oct 1994 19:03:57 GMT\n"   // kT0 - 1000000
#define LM_10D "Last-Modified: Sun, 27 Oct 1994 08:49:37 GMT\n"  // kT0 - 864000

const FreshCase kFreshCases[] = {
    {200, DATE "Cache-Control: max-age=60", kNone, 60, FS::MaxAge},
    {200, DATE "Cache-Control: s-maxage=30, max-age=60", kNone, 30, FS::SMaxAge},
    {200, DATE "Cache-Control: max-age=60, s-maxage=300", kNone, 300, FS::SMaxAge},
    {200, DATE "Cache-Control: s-maxage=30, max-age=60", kPrivateCache, 60,
     FS::MaxAge},  // s-maxage is for shared caches
    {200, DATE "Cache-Control: max-age=60\nExpires: Sun, 06 Nov 1994 09:49:37 GMT", kNone, 60, FS::MaxAge},
    {200, DATE "Expires: Sun, 06 Nov 1994 09:49:37 GMT", kNone, 3600, FS::Expires},
    {200, DATE "Expires: Sun, 06 Nov 1994 07:49:37 GMT", kNone, 0, FS::Expires},  // in the past
    {200, DATE "Expires: 0", kNone, 0, FS::Expires},
    {200, DATE "Expires: garbage\n" LM_1M, kNone, 0, FS::Expires},              // no heuristics with explicit expiry
    {200, "Expires: Sun, 06 Nov 1994 09:49:37 GMT", kNone, 3600, FS::Expires},  // no Date: the receipt time
    {200, "Date: nonsense\nExpires: Sun, 06 Nov 1994 09:49:37 GMT", kNone, 3600, FS::Expires},
    {200, DATE "Cache-Control: max-age=x\nExpires: Sun, 06 Nov 1994 09:49:37 GMT", kNone, 0, FS::MaxAge},
    {200, DATE "Cache-Control: max-age=99999999999", kNone, k2to31, FS::MaxAge},
    {200, DATE "Cache-Control: max-age=60", kValid200, 60, FS::MaxAge},  // headers beat proxy_cache_valid
    {200, DATE "Expires: Sun, 06 Nov 1994 09:49:37 GMT", kValid200, 3600, FS::Expires},
    {200, DATE LM_1M, kValid200, 600, FS::ValidTime},  // proxy_cache_valid beats heuristics
    {200, DATE, kValidAny, 60, FS::ValidTime},
    {200, DATE, kValid200 | kValidAny, 600, FS::ValidTime},  // exact code before "any"
    {404, DATE, kValid200 | kValidAny, 60, FS::ValidTime},
    {404, DATE, kValid200, 0, FS::None},
    // heuristic: 10% of Date - Last-Modified, capped at a day
    {200, DATE LM_1M, kNone, 86400, FS::Heuristic},  // 100000 capped
    {200, DATE LM_10D, kNone, 86400, FS::Heuristic},
    {200, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 720, FS::Heuristic},
    {404, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 720, FS::Heuristic},
    {501, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 720, FS::Heuristic},
    {302, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 0, FS::None},  // not heuristic
    {500, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 0, FS::None},
    {302, DATE "Cache-Control: public\nLast-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 720, FS::Heuristic},
    {200, DATE, kNone, 0, FS::None},                                                 // no Last-Modified
    {200, DATE "Last-Modified: Sun, 06 Nov 1994 10:49:37 GMT", kNone, 0, FS::None},  // after Date
    {200, DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNoHeuristic, 0, FS::None},
    {200, "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", kNone, 720, FS::Heuristic},  // Date = receipt
};

TEST(Freshness, Table) {
    for (const FreshCase& c : kFreshCases) {
        CachePolicyConfig cfg = make_cfg(c.tweaks);
        auto h = fields(c.response);
        Freshness f = freshness_lifetime(parse_response_cache_info(c.status, h, cfg), cfg, kT0);
        EXPECT_EQ(f.lifetime, c.lifetime) << c.status << " [" << c.response << "]";
        EXPECT_EQ(int(f.source), int(c.source)) << c.status << " [" << c.response << "]";
    }
}

TEST(Freshness, HeuristicCapAndPercentConfigurable) {
    CachePolicyConfig cfg;
    cfg.heuristic_percent = 50;
    cfg.heuristic_max = 3600 * 24 * 30;
    auto h = fields(DATE LM_10D);
    EXPECT_EQ(freshness_lifetime(parse_response_cache_info(200, h, cfg), cfg, kT0).lifetime, 432000);
    cfg.heuristic_max = 100;
    EXPECT_EQ(freshness_lifetime(parse_response_cache_info(200, h, cfg), cfg, kT0).lifetime, 100);
}

TEST(Freshness, ValidTable) {
    CachePolicyConfig cfg;
    for (size_t i = 0; i < kMaxValidTimes; ++i) EXPECT_TRUE(cfg.add_valid(int(200 + i), int64_t(i)));
    EXPECT_FALSE(cfg.add_valid(500, 1));
    EXPECT_EQ(configured_valid_time(203, cfg), 3);
    EXPECT_EQ(configured_valid_time(500, cfg), -1);
}

// ---- age (§4.2.3) ----------------------------------------------------------------------------------

TEST(AgeCalculation, Formulas) {
    // Date 10 s before receipt, request sent 2 s before receipt, Age 5 from upstream.
    int64_t req_t = kT0 + 8, resp_t = kT0 + 10;
    EXPECT_EQ(apparent_age(kT0, resp_t), 10);
    EXPECT_EQ(corrected_age_value(5, req_t, resp_t), 7);  // age_value + response_delay
    EXPECT_EQ(corrected_initial_age(kT0, 5, req_t, resp_t), 10);
    EXPECT_EQ(corrected_initial_age(kT0, 50, req_t, resp_t), 52);
    EXPECT_EQ(resident_time(resp_t, resp_t + 30), 30);
    EXPECT_EQ(current_age(52, resp_t, resp_t + 30), 82);
    // clock skew: Date in the future, receipt before the request: never negative
    EXPECT_EQ(apparent_age(kT0 + 100, kT0), 0);
    EXPECT_EQ(corrected_age_value(0, kT0 + 5, kT0), 0);
    EXPECT_EQ(corrected_initial_age(kT0 + 100, 0, kT0, kT0), 0);
    EXPECT_EQ(resident_time(kT0, kT0 - 10), 0);
    // overflow caps at 2^31 (§1.2.2)
    EXPECT_EQ(current_age(k2to31, kT0, kT0 + 10), k2to31);
    EXPECT_EQ(corrected_age_value(k2to31, kT0, kT0 + 100), k2to31);
    EXPECT_EQ(apparent_age(0, INT64_MAX / 2), k2to31);
}

TEST(AgeCalculation, FormatAge) {
    char buf[24];
    EXPECT_EQ(format_age(0, buf), "0");
    EXPECT_EQ(format_age(7, buf), "7");
    EXPECT_EQ(format_age(86400, buf), "86400");
    EXPECT_EQ(format_age(-5, buf), "0");
    EXPECT_EQ(format_age(INT64_MAX, buf), "2147483648");
}

TEST(AgeCalculation, EntryPolicy) {
    auto h = fields(DATE
                    "Age: 5\nCache-Control: max-age=60, stale-while-revalidate=30, stale-if-error=90\n"
                    "ETag: \"v\"");
    CachePolicyConfig cfg;
    EntryPolicy e = make_entry_policy(parse_response_cache_info(200, h, cfg), cfg, kT0 + 8, kT0 + 10);
    EXPECT_EQ(e.corrected_initial_age, 10);
    EXPECT_EQ(e.freshness_lifetime, 60);
    EXPECT_EQ(e.stale_while_revalidate, 30);
    EXPECT_EQ(e.stale_if_error, 90);
    EXPECT_EQ(e.date, kT0);
    EXPECT_EQ(e.flags, kEntryHasEtag);
    auto h2 = fields("Cache-Control: s-maxage=5, no-cache, immutable\n" LM_1M);
    EntryPolicy e2 = make_entry_policy(parse_response_cache_info(200, h2, cfg), cfg, kT0, kT0);
    EXPECT_EQ(e2.flags, kEntryNoCache | kEntryNoStaleServing | kEntryHasLastModified | kEntryImmutable);
    EXPECT_EQ(e2.date, kT0);  // no Date: the receipt time
    for (const char* text : {"Cache-Control: must-revalidate", "Cache-Control: proxy-revalidate"}) {
        auto h3 = fields(text);
        EXPECT_TRUE(make_entry_policy(parse_response_cache_info(200, h3, cfg), cfg, kT0, kT0).flags &
                    kEntryNoStaleServing)
            << text;
    }
}

// ---- reuse (§4, §4.2.4, RFC 5861) -------------------------------------------------------------------

struct ReuseCase {
    const char* request;
    const char* response;  // stored at kT0 (Date kT0, no Age)
    int64_t now_offset;    // seconds after storing
    unsigned tweaks;
    bool update_in_progress;
    CacheDecision expected;
};

constexpr unsigned kRevalidate = 1 << 16, kBackground = 1 << 17, kUseStaleUpdating = 1 << 18;

using CD = CacheDecision;
#define ETAG "ETag: \"v1\"\n"

const ReuseCase kReuseCases[] = {
    // fresh / stale (§4.2: fresh while lifetime > current_age)
    {"", "Cache-Control: max-age=60", 0, kNone, false, CD::Hit},
    {"", "Cache-Control: max-age=60", 59, kNone, false, CD::Hit},
    {"", "Cache-Control: max-age=60", 60, kNone, false, CD::Refetch},
    {"", ETAG "Cache-Control: max-age=60", 60, kNone, false, CD::Refetch},  // revalidate off
    {"", ETAG "Cache-Control: max-age=60", 60, kRevalidate, false, CD::Revalidate},
    {"", LM_1M "Cache-Control: max-age=60", 61, kRevalidate, false, CD::Revalidate},
    {"", "Cache-Control: max-age=60", 61, kRevalidate, false, CD::Refetch},  // nothing to validate with
    {"", "Age: 50\nCache-Control: max-age=60", 9, kNone, false, CD::Hit},
    {"", "Age: 50\nCache-Control: max-age=60", 10, kNone, false, CD::Refetch},
    {"", "Age: garbage\nCache-Control: max-age=60", 10, kNone, false, CD::Hit},
    {"", "Cache-Control: max-age=0", 0, kNone, false, CD::Refetch},
    {"", "Cache-Control: max-age=10, max-age=20", 0, kNone, false, CD::Refetch},  // conflicting: stale
    {"", "Expires: 0\n" ETAG, 0, kRevalidate, false, CD::Revalidate},
    // no-cache in the response: validate every time, even when fresh (§5.2.2.4)
    {"", ETAG "Cache-Control: no-cache, max-age=600", 0, kRevalidate, false, CD::Revalidate},
    {"", ETAG "Cache-Control: no-cache=\"Set-Cookie\", max-age=600", 0, kRevalidate, false, CD::Revalidate},
    {"", ETAG "Cache-Control: no-cache, stale-while-revalidate=60", 5, kRevalidate | kBackground, true, CD::Revalidate},
    {"Cache-Control: max-stale", ETAG "Cache-Control: no-cache", 5, kRevalidate, false, CD::Revalidate},
    // request directives (§5.2.1)
    {"Cache-Control: no-cache", ETAG "Cache-Control: max-age=600", 0, kRevalidate, false, CD::Revalidate},
    {"Pragma: no-cache", ETAG "Cache-Control: max-age=600", 0, kRevalidate, false, CD::Revalidate},
    {"Cache-Control: no-cache", ETAG "Cache-Control: max-age=600", 0, kRevalidate | kIgnoreReqCc, false, CD::Hit},
    {"Cache-Control: max-age=0", ETAG "Cache-Control: max-age=600", 1, kRevalidate, false, CD::Revalidate},
    {"Cache-Control: max-age=0", ETAG "Cache-Control: max-age=600", 0, kRevalidate, false, CD::Hit},
    {"Cache-Control: max-age=30", "Cache-Control: max-age=600", 30, kNone, false, CD::Hit},
    {"Cache-Control: max-age=30", "Cache-Control: max-age=600", 31, kNone, false, CD::Refetch},
    {"Cache-Control: min-fresh=20", "Cache-Control: max-age=60", 40, kNone, false, CD::Hit},
    {"Cache-Control: min-fresh=20", "Cache-Control: max-age=60", 41, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale", "Cache-Control: max-age=60", 100000, kNone, false, CD::StaleAllowed},
    {"Cache-Control: max-stale=10", "Cache-Control: max-age=60", 70, kNone, false, CD::StaleAllowed},
    {"Cache-Control: max-stale=10", "Cache-Control: max-age=60", 71, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale=10, max-age=65", "Cache-Control: max-age=60", 66, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale", "Cache-Control: max-age=60, must-revalidate", 61, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale", "Cache-Control: max-age=60, proxy-revalidate", 61, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale", "Cache-Control: s-maxage=60", 61, kNone, false, CD::Refetch},
    {"Cache-Control: max-stale", "Cache-Control: s-maxage=60", 61, kPrivateCache, false, CD::StaleAllowed},
    // only-if-cached (§5.2.1.7)
    {"Cache-Control: only-if-cached", "Cache-Control: max-age=60", 10, kNone, false, CD::Hit},
    {"Cache-Control: only-if-cached", ETAG "Cache-Control: max-age=60", 61, kRevalidate, false, CD::GatewayTimeout},
    {"Cache-Control: only-if-cached, max-stale", "Cache-Control: max-age=60", 61, kNone, false, CD::StaleAllowed},
    // stale-while-revalidate (RFC 5861 §3) and use_stale updating
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 70, kBackground, false, CD::StaleBackground},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 90, kBackground, false, CD::StaleBackground},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 91, kBackground, false, CD::Refetch},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 70, kNone, true, CD::StaleUpdating},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 70, kBackground, true, CD::StaleUpdating},
    {"", ETAG "Cache-Control: max-age=60, stale-while-revalidate=30", 70, kRevalidate, false, CD::Revalidate},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30", 30, kBackground, false, CD::Hit},
    {"", "Cache-Control: max-age=60, stale-while-revalidate=30, must-revalidate", 70, kBackground, true, CD::Refetch},
    {"", "Cache-Control: s-maxage=60, stale-while-revalidate=30", 70, kBackground, true, CD::Refetch},
    {"Cache-Control: max-age=65", "Cache-Control: max-age=60, stale-while-revalidate=30", 70, kBackground, true,
     CD::Refetch},
    {"", "Cache-Control: max-age=60", 100000, kUseStaleUpdating, true, CD::StaleUpdating},
    {"", "Cache-Control: max-age=60", 100000, kUseStaleUpdating | kBackground, false, CD::StaleBackground},
    {"", "Cache-Control: max-age=60", 100000, kUseStaleUpdating, false, CD::Refetch},
    {"", "Cache-Control: max-age=60, must-revalidate", 100, kUseStaleUpdating, true, CD::Refetch},
    // stale-if-error alone allows nothing without an error
    {"", "Cache-Control: max-age=60, stale-if-error=600", 70, kBackground, true, CD::Refetch},
    // proxy_cache_valid and heuristic lifetimes are lifetimes like any other
    {"", "", 599, kValid200, false, CD::Hit},
    {"", "", 600, kValid200, false, CD::Refetch},
    {"", DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", 719, kNone, false, CD::Hit},
    {"", DATE "Last-Modified: Sun, 06 Nov 1994 06:49:37 GMT", 720, kNone, false, CD::Refetch},
};

CachePolicyConfig reuse_cfg(unsigned tweaks) {
    CachePolicyConfig cfg = make_cfg(tweaks & 0xffff);
    cfg.revalidate = tweaks & kRevalidate;
    cfg.background_update = tweaks & kBackground;
    if (tweaks & kUseStaleUpdating) cfg.use_stale |= kStaleUpdating;
    return cfg;
}

EntryPolicy stored_entry(const char* response, const CachePolicyConfig& cfg, int status = 200) {
    auto h = fields(response);
    return make_entry_policy(parse_response_cache_info(status, h, cfg), cfg, kT0, kT0);
}

TEST(Reuse, Table) {
    for (const ReuseCase& c : kReuseCases) {
        CachePolicyConfig cfg = reuse_cfg(c.tweaks);
        auto rq = fields(c.request);
        RequestCacheInfo req = parse_request_cache_info(Method::Get, rq, cfg);
        EntryPolicy e = stored_entry(c.response, cfg);
        ReuseContext ctx{kT0 + c.now_offset, c.update_in_progress, false};
        CacheDecision d = decide_reuse(req, &e, cfg, ctx);
        EXPECT_EQ(int(d), int(c.expected)) << "[" << c.request << "] [" << c.response << "] +" << c.now_offset << " -> "
                                           << cache_status_name(cache_status_for(d));
    }
}

TEST(Reuse, MissBypassAndOnlyIfCached) {
    CachePolicyConfig cfg;
    auto plain = fields("");
    auto oic = fields("Cache-Control: only-if-cached");
    RequestCacheInfo req = parse_request_cache_info(Method::Get, plain, cfg);
    RequestCacheInfo req_oic = parse_request_cache_info(Method::Get, oic, cfg);
    EXPECT_EQ(decide_reuse(req, nullptr, cfg, {kT0}), CD::Miss);
    EXPECT_EQ(decide_reuse(req_oic, nullptr, cfg, {kT0}), CD::GatewayTimeout);
    EntryPolicy e = stored_entry("Cache-Control: max-age=60", cfg);
    EXPECT_EQ(decide_reuse(req, &e, cfg, {kT0, false, true}), CD::Bypass);
    EXPECT_EQ(decide_reuse(req, nullptr, cfg, {kT0, false, true}), CD::Bypass);
}

TEST(Reuse, UpstreamCacheStatusNames) {
    struct {
        CacheDecision d;
        const char* name;
    } cases[] = {
        {CD::Hit, "HIT"},
        {CD::StaleUpdating, "UPDATING"},
        {CD::StaleBackground, "STALE"},
        {CD::StaleAllowed, "STALE"},
        {CD::Revalidate, "EXPIRED"},
        {CD::Refetch, "EXPIRED"},
        {CD::Miss, "MISS"},
        {CD::Bypass, "BYPASS"},
        {CD::GatewayTimeout, "MISS"},
    };
    for (const auto& c : cases) EXPECT_EQ(cache_status_name(cache_status_for(c.d)), c.name);
    EXPECT_EQ(cache_status_name(UpstreamCacheStatus::Revalidated), "REVALIDATED");
    EXPECT_EQ(cache_status_name(UpstreamCacheStatus::None), "");
}

// ---- stale on error (RFC 5861 §4, proxy_cache_use_stale) ---------------------------------------------

struct ErrorCase {
    const char* request;
    const char* response;
    int64_t now_offset;
    uint16_t use_stale;
    UpstreamFailure failure;
    int status;
    bool expected;
};

using UF = UpstreamFailure;

const ErrorCase kErrorCases[] = {
    // RFC 5861 §4: "Cache-Control: max-age=600, stale-if-error=1200"
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Error, 0, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 1800, 0, UF::Timeout, 0, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 1801, 0, UF::Error, 0, false},  // window over
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 500, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 502, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 503, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 504, true},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 501, false},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::Status, 404, false},
    {"", "Cache-Control: max-age=600, stale-if-error=1200", 700, 0, UF::InvalidHeader, 0, true},
    {"", "Cache-Control: max-age=600", 700, 0, UF::Error, 0, false},
    {"Cache-Control: stale-if-error=200", "Cache-Control: max-age=600", 800, 0, UF::Error, 0, true},
    {"Cache-Control: stale-if-error=200", "Cache-Control: max-age=600", 801, 0, UF::Error, 0, false},
    // proxy_cache_use_stale: any staleness, only the listed failures
    {"", "Cache-Control: max-age=600", 100000, kStaleError, UF::Error, 0, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleError, UF::Timeout, 0, false},
    {"", "Cache-Control: max-age=600", 100000, kStaleTimeout, UF::Timeout, 0, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleInvalidHeader, UF::InvalidHeader, 0, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp502, UF::Status, 502, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp502, UF::Status, 503, false},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp500 | kStaleHttp503, UF::Status, 503, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp404, UF::Status, 404, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp429, UF::Status, 429, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleHttp403, UF::Status, 403, true},
    {"", "Cache-Control: max-age=600", 100000, kStaleUpdating, UF::Error, 0, false},
    // never under must-revalidate and friends (§5.2.2.2: "in all circumstances")
    {"", "Cache-Control: max-age=600, must-revalidate, stale-if-error=1200", 700, 0xffff, UF::Error, 0, false},
    {"", "Cache-Control: max-age=600, proxy-revalidate, stale-if-error=1200", 700, 0xffff, UF::Error, 0, false},
    {"", "Cache-Control: s-maxage=600, stale-if-error=1200", 700, 0xffff, UF::Error, 0, false},
    {"", "Cache-Control: no-cache, stale-if-error=1200", 700, 0xffff, UF::Error, 0, false},
    {"Cache-Control: stale-if-error=9999", "Cache-Control: max-age=600, must-revalidate", 700, 0, UF::Error, 0, false},
    // the client's no-cache refuses stale unless it also allows stale-if-error
    {"Cache-Control: no-cache", "Cache-Control: max-age=600, stale-if-error=1200", 700, kStaleError, UF::Error, 0,
     false},
    {"Cache-Control: no-cache, stale-if-error=100", "Cache-Control: max-age=600", 650, 0, UF::Error, 0, true},
};

TEST(StaleOnError, Table) {
    for (const ErrorCase& c : kErrorCases) {
        CachePolicyConfig cfg;
        cfg.use_stale = c.use_stale;
        auto rq = fields(c.request);
        RequestCacheInfo req = parse_request_cache_info(Method::Get, rq, cfg);
        EntryPolicy e = stored_entry(c.response, cfg);
        EXPECT_EQ(may_serve_stale_on_error(req, e, cfg, c.failure, c.status, kT0 + c.now_offset), c.expected)
            << "[" << c.request << "] [" << c.response << "] +" << c.now_offset << " status " << c.status;
    }
}

// ---- validation (§4.3) ------------------------------------------------------------------------------

TEST(Validation, ConditionalRequestValidators) {
    CachePolicyConfig cfg;
    auto both = fields("ETag: W/\"v1\"\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT");
    Validators v = conditional_request_validators(parse_response_cache_info(200, both, cfg));
    EXPECT_EQ(v.if_none_match, "W/\"v1\"");
    EXPECT_EQ(v.if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT");  // exactly as received
    auto rfc850 = fields("Last-Modified: Sunday, 06-Nov-94 08:49:37 GMT");
    v = conditional_request_validators(parse_response_cache_info(200, rfc850, cfg));
    EXPECT_EQ(v.if_none_match, "");
    EXPECT_EQ(v.if_modified_since, "Sunday, 06-Nov-94 08:49:37 GMT");
    auto bad = fields("ETag: v1\nLast-Modified: yesterday");
    v = conditional_request_validators(parse_response_cache_info(200, bad, cfg));
    EXPECT_EQ(v.if_none_match, "");
    EXPECT_EQ(v.if_modified_since, "");
    for (const char* n : {"If-None-Match", "if-modified-since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"})
        EXPECT_TRUE(header_replaced_on_revalidation(n)) << n;
    for (const char* n : {"Host", "Accept", "Cache-Control", "If-Foo"})
        EXPECT_FALSE(header_replaced_on_revalidation(n)) << n;
}

struct NotModifiedCase {
    const char* stored;
    const char* not_modified;
    bool matches;
};

const NotModifiedCase kNotModifiedCases[] = {
    {"ETag: \"v1\"", "ETag: \"v1\"", true},
    {"ETag: \"v1\"", "ETag: \"v2\"", false},
    {"ETag: W/\"v1\"", "ETag: \"v1\"", false},  // a strong 304 tag needs a strong stored tag
    {"ETag: \"v1\"", "ETag: W/\"v1\"", true},   // weak tag: weak comparison
    {"ETag: W/\"v1\"", "ETag: W/\"v1\"", true},
    {"ETag: W/\"v1\"", "ETag: W/\"v2\"", false},
    {"", "ETag: \"v1\"", false},
    {"ETag: \"v1\"\n" LM_1M, "ETag: \"v1\"\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT", true},  // strong tag decides
    {LM_1M, "Last-Modified: Sat, 26 Oct 1994 19:03:57 GMT", true},
    {LM_1M, "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT", false},
    {"ETag: \"v1\"", "Date: Sun, 06 Nov 1994 08:49:37 GMT", false},  // no validator, but the stored has one
    {LM_1M, "", false},
    {"", "Date: Sun, 06 Nov 1994 08:49:37 GMT", true},  // neither has one
    {"ETag: \"v1\"", "ETag: garbage", false},
};

TEST(Validation, NotModifiedSelection) {
    CachePolicyConfig cfg;
    for (const auto& c : kNotModifiedCases) {
        auto s = fields(c.stored);
        auto n = fields(c.not_modified);
        EXPECT_EQ(not_modified_matches(parse_response_cache_info(200, s, cfg), parse_response_cache_info(304, n, cfg)),
                  c.matches)
            << "[" << c.stored << "] [" << c.not_modified << "]";
    }
}

TEST(Validation, MergeNotModifiedHeaders) {
    auto stored = fields(
        "Content-Type: text/html\nContent-Length: 1234\nContent-Encoding: gzip\nETag: \"v1\"\n"
        "Cache-Control: max-age=60\nX-Old: 1\nDate: Sun, 06 Nov 1994 08:49:37 GMT");
    auto nm = fields(
        "Date: Sun, 06 Nov 1994 09:49:37 GMT\nCache-Control: max-age=600\nCache-Control: public\n"
        "Content-Length: 0\nContent-Encoding: identity\nConnection: close, X-Drop\nX-Drop: 1\n"
        "Keep-Alive: timeout=5\nX-New: 2\nETag: \"v1\"\nAge: 3\nTransfer-Encoding: chunked\ncontent-type: text/plain");
    Header out[32];
    size_t n = merge_not_modified_headers(stored, nm, out);
    ASSERT_NE(n, SIZE_MAX);
    std::string got;
    for (size_t i = 0; i < n; ++i) got += std::string(out[i].name) + "=" + std::string(out[i].value) + ";";
    EXPECT_EQ(got,
              "Content-Length=1234;Content-Encoding=gzip;X-Old=1;"
              "Date=Sun, 06 Nov 1994 09:49:37 GMT;Cache-Control=max-age=600;Cache-Control=public;"
              "X-New=2;ETag=\"v1\";content-type=text/plain;");
    Header small[3];
    EXPECT_EQ(merge_not_modified_headers(stored, nm, small), SIZE_MAX);

    // The merged head is judged again: a 304 that adds Set-Cookie makes it unstorable.
    auto cookie = fields("Set-Cookie: s=1\nETag: \"v1\"");
    n = merge_not_modified_headers(stored, cookie, out);
    CachePolicyConfig cfg;
    auto rq = fields("");
    EXPECT_EQ(storability(parse_request_cache_info(Method::Get, rq, cfg),
                          parse_response_cache_info(200, std::span<const Header>(out, n), cfg), cfg, kT0),
              StoreVerdict::SetCookie);
}

TEST(Validation, FieldsUpdatedByNotModified) {
    auto nm = fields("Connection: X-Private");
    for (const char* n : {"Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding", "Connection",
                          "Keep-Alive", "Age", "X-Private", "Proxy-Authenticate"})
        EXPECT_FALSE(header_updated_by_not_modified(n, nm)) << n;
    for (const char* n : {"Cache-Control", "Expires", "Date", "ETag", "Last-Modified", "Content-Type", "Vary", "X-Any"})
        EXPECT_TRUE(header_updated_by_not_modified(n, nm)) << n;
}

// ---- entity tags and client conditionals (RFC 9110 §8.8.3, §13) ------------------------------------------

TEST(Etag, ComparisonTableOfRfc9110) {
    // RFC 9110 §8.8.3.2
    struct {
        const char* a;
        const char* b;
        bool strong;
        bool weak;
    } cases[] = {
        {"W/\"1\"", "W/\"1\"", false, true},
        {"W/\"1\"", "W/\"2\"", false, false},
        {"W/\"1\"", "\"1\"", false, true},
        {"\"1\"", "\"1\"", true, true},
        {"\"1\"", "\"2\"", false, false},
        {"\"\"", "\"\"", true, true},
        {"1", "1", false, false},              // invalid tags never match
        {"w/\"1\"", "\"1\"", false, false},    // "W/" is case-sensitive
        {"\"a b\"", "\"a b\"", false, false},  // SP is not etagc
    };
    for (const auto& c : cases) {
        EXPECT_EQ(etag_strong_match(c.a, c.b), c.strong) << c.a << " " << c.b;
        EXPECT_EQ(etag_weak_match(c.a, c.b), c.weak) << c.a << " " << c.b;
    }
    for (const char* ok : {"\"xyzzy\"", "W/\"xyzzy\"", "\"\"", "\"a,b\"", "\"\x80\""})
        EXPECT_TRUE(etag_valid(ok)) << ok;
    for (const char* bad : {"xyzzy", "\"xyzzy", "W/xyzzy", "\"a\"b\"", "W/", "", "\"", "\"a\" "})
        EXPECT_FALSE(etag_valid(bad)) << bad;
}

TEST(Etag, IfNoneMatchLists) {
    struct {
        const char* field;
        const char* etag;
        bool matches;
    } cases[] = {
        {"\"xyzzy\"", "\"xyzzy\"", true},  // RFC 9110 §13.1.2 examples
        {"W/\"xyzzy\"", "\"xyzzy\"", true},
        {"\"xyzzy\", \"r2d2xxxx\", \"c3piozzzz\"", "\"r2d2xxxx\"", true},
        {"W/\"xyzzy\", W/\"r2d2xxxx\", W/\"c3piozzzz\"", "\"c3piozzzz\"", true},
        {"\"xyzzy\", \"r2d2xxxx\"", "\"c3piozzzz\"", false},
        {"*", "\"anything\"", true},
        {" * ", "W/\"anything\"", true},
        {"*", "", true},               // "*": any stored representation
        {"\"a,b\"", "\"a,b\"", true},  // a comma inside the quotes does not split
        {"\"a,b\"", "\"a\"", false},
        {"\"a\",,\"b\"", "\"b\"", true},
        {"\"a\"\t,\t\"b\"", "\"b\"", true},
        {"xyzzy", "xyzzy", false},
        {"\"xyzzy\"", "", false},
        {"\"xyzzy\"", "W/\"xyzzy\"", true},
        {"", "\"x\"", false},
    };
    for (const auto& c : cases)
        EXPECT_EQ(if_none_match_matches(c.field, c.etag), c.matches) << c.field << " vs " << c.etag;
}

struct ConditionalCase {
    Method method;
    const char* request;
    const char* stored;
    ClientConditional expected;
};

using CC = ClientConditional;

const ConditionalCase kConditionalCases[] = {
    {Method::Get, "If-None-Match: \"v1\"", "ETag: \"v1\"", CC::NotModified},
    {Method::Head, "If-None-Match: \"v1\"", "ETag: \"v1\"", CC::NotModified},
    {Method::Get, "If-None-Match: W/\"v1\"", "ETag: \"v1\"", CC::NotModified},
    {Method::Get, "If-None-Match: \"v0\", \"v1\"", "ETag: \"v1\"", CC::NotModified},
    {Method::Get, "If-None-Match: \"v0\"\nIf-None-Match: \"v1\"", "ETag: \"v1\"", CC::NotModified},
    {Method::Get, "If-None-Match: *", "ETag: \"v1\"", CC::NotModified},
    {Method::Get, "If-None-Match: \"v0\"", "ETag: \"v1\"", CC::Send},
    {Method::Get, "If-None-Match: \"v1\"", LM_1M, CC::Send},
    // If-None-Match takes precedence: If-Modified-Since is not looked at (RFC 9110 §13.2.2)
    {Method::Get, "If-None-Match: \"v0\"\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", "ETag: \"v1\"\n" LM_1M,
     CC::Send},
    {Method::Get, "If-None-Match: \"v1\"\nIf-Modified-Since: Sun, 06 Nov 1990 08:49:37 GMT", "ETag: \"v1\"\n" LM_1M,
     CC::NotModified},
    // If-Modified-Since: not modified when Last-Modified <= the date
    {Method::Get, "If-Modified-Since: Sat, 26 Oct 1994 19:03:57 GMT", LM_1M, CC::NotModified},
    {Method::Get, "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", LM_1M, CC::NotModified},
    {Method::Get, "If-Modified-Since: Sat, 26 Oct 1994 19:03:56 GMT", LM_1M, CC::Send},
    {Method::Get, "If-Modified-Since: Saturday, 26-Oct-94 19:03:57 GMT", LM_1M, CC::NotModified},
    {Method::Get, "If-Modified-Since: Sat Oct 26 19:03:57 1994", LM_1M, CC::NotModified},
    {Method::Get, "If-Modified-Since: yesterday", LM_1M, CC::Send},  // invalid: ignored
    {Method::Get, "If-Modified-Since: 0", LM_1M, CC::Send},
    {Method::Get, "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
     LM_1M, CC::Send},  // more than one member: ignored
    {Method::Get, "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", DATE, CC::NotModified},  // §4.3.2: Date
    {Method::Get, "If-Modified-Since: Sun, 06 Nov 1994 08:49:36 GMT", DATE, CC::Send},
    {Method::Get, "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", "", CC::NotModified},  // receipt time kT0
    {Method::Post, "If-None-Match: \"v1\"", "ETag: \"v1\"", CC::Send},
    {Method::Post, "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT", LM_1M, CC::Send},
    // a cache does not evaluate If-Match / If-Unmodified-Since (RFC 9111 §4.3.2)
    {Method::Get, "If-Match: \"nope\"", "ETag: \"v1\"", CC::Send},
    {Method::Get, "If-Unmodified-Since: Sun, 06 Nov 1980 08:49:37 GMT", LM_1M, CC::Send},
    {Method::Get, "", "ETag: \"v1\"", CC::Send},
};

TEST(ClientConditionals, Table) {
    CachePolicyConfig cfg;
    for (const auto& c : kConditionalCases) {
        auto rq = fields(c.request);
        auto st = fields(c.stored);
        RequestCacheInfo req = parse_request_cache_info(c.method, rq, cfg);
        EXPECT_EQ(answer_from_cache(req, parse_response_cache_info(200, st, cfg), kT0), c.expected)
            << method_name(c.method) << " [" << c.request << "] [" << c.stored << "]";
    }
}

TEST(ClientConditionals, NotModifiedFields) {
    for (const char* n : {"Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Vary", "cache-control"})
        EXPECT_TRUE(header_in_not_modified(n, true)) << n;
    for (const char* n : {"Content-Type", "Content-Length", "Set-Cookie", "Last-Modified", "X-Custom", "Age"})
        EXPECT_FALSE(header_in_not_modified(n, true)) << n;
    EXPECT_TRUE(header_in_not_modified("Last-Modified", false));
}

// ---- Vary (§4.1) ----------------------------------------------------------------------------------------

std::string key_of(const char* vary_response, const char* request) {
    auto rs = fields(vary_response);
    auto rq = fields(request);
    char buf[512];
    size_t n = vary_key(parse_vary(rs), rq, buf);
    return n == SIZE_MAX ? "<none>" : std::string(buf, n);
}

TEST(Vary, Keys) {
    struct {
        const char* vary;
        const char* request;
        const char* key;
    } cases[] = {
        {"Vary: Accept-Encoding", "Accept-Encoding: gzip", "accept-encoding:gzip\n"},
        {"Vary: accept-encoding", "ACCEPT-ENCODING: gzip", "accept-encoding:gzip\n"},
        {"Vary: Accept-Encoding", "", "accept-encoding\n"},                    // absent
        {"Vary: Accept-Encoding", "Accept-Encoding: ", "accept-encoding:\n"},  // present, empty
        {"Vary: Accept-Encoding", "Accept-Encoding: gzip,deflate", "accept-encoding:gzip, deflate\n"},
        {"Vary: Accept-Encoding", "Accept-Encoding: gzip ,  deflate", "accept-encoding:gzip, deflate\n"},
        {"Vary: Accept-Encoding", "Accept-Encoding: gzip\nAccept-Encoding: deflate", "accept-encoding:gzip, deflate\n"},
        {"Vary: Accept-Encoding", "Accept-Encoding: gzip,,deflate,", "accept-encoding:gzip, deflate\n"},
        {"Vary: Accept-Encoding", "Accept-Encoding: GZIP", "accept-encoding:GZIP\n"},  // values byte-exact
        {"Vary: Accept-Encoding, Accept-Language", "Accept-Language: en\nAccept-Encoding: br",
         "accept-encoding:br\naccept-language:en\n"},
        {"Vary:  Accept-Encoding ,Accept-Language ", "Accept-Language: en", "accept-encoding\naccept-language:en\n"},
        {"Vary: Accept-Encoding\nVary: Origin", "Origin: https://a.example",
         "accept-encoding\norigin:https://a.example\n"},
        {"Vary: *", "Accept: x", "<none>"},
        {"Vary: Accept, *", "Accept: x", "<none>"},
        {"Vary: Acc ept", "", "<none>"},
        {"", "Accept: x", ""},
        {"Vary: ,", "", ""},
        {"Vary: X-Quoted", "X-Quoted: \"a, b\", c", "x-quoted:\"a, b\", c\n"},
    };
    for (const auto& c : cases) EXPECT_EQ(key_of(c.vary, c.request), c.key) << c.vary << " / " << c.request;
}

TEST(Vary, Matching) {
    auto rs = fields("Vary: Accept-Encoding, User-Agent");
    VaryFields vary = parse_vary(rs);
    auto original = fields("Accept-Encoding: gzip, deflate\nUser-Agent: curl/8");
    char buf[256];
    size_t n = vary_key(vary, original, buf);
    ASSERT_NE(n, SIZE_MAX);
    std::string_view stored(buf, n);
    struct {
        const char* request;
        bool matches;
    } cases[] = {
        {"Accept-Encoding: gzip, deflate\nUser-Agent: curl/8", true},
        {"accept-encoding: gzip,deflate\nuser-agent: curl/8", true},                    // whitespace, name case
        {"User-Agent: curl/8\nAccept-Encoding: gzip\nAccept-Encoding: deflate", true},  // combined lines
        {"Accept-Encoding: deflate, gzip\nUser-Agent: curl/8", false},                  // no reordering
        {"Accept-Encoding: gzip, deflate\nUser-Agent: curl/9", false},
        {"Accept-Encoding: gzip, deflate", false},                       // absent vs present
        {"Accept-Encoding: gzip, deflate\nUser-Agent: curl/8x", false},  // prefix is not equal
        {"Accept-Encoding: gzip, deflate\nUser-Agent: curl/", false},
        {"", false},
    };
    for (const auto& c : cases) {
        auto rq = fields(c.request);
        EXPECT_EQ(vary_matches(vary, stored, rq), c.matches) << c.request;
    }
    auto star = fields("Vary: *");
    EXPECT_FALSE(vary_matches(parse_vary(star), "", original));  // "*" never matches
    auto none = fields("");
    EXPECT_TRUE(vary_matches(parse_vary(none), "", original));  // no Vary: every request matches
}

TEST(Vary, Bounds) {
    std::string many = "Vary: ";
    for (size_t i = 0; i <= kMaxVaryFields; ++i) many += (i ? ", h" : "h") + std::to_string(i);
    auto h = fields(many);
    EXPECT_TRUE(parse_vary(h).star);  // over the bound: treated as "*", never stored
    std::string exact = "Vary: ";
    for (size_t i = 0; i < kMaxVaryFields; ++i) exact += (i ? ", h" : "h") + std::to_string(i);
    auto h2 = fields(exact);
    VaryFields vary = parse_vary(h2);
    EXPECT_FALSE(vary.star);
    EXPECT_EQ(vary.count, kMaxVaryFields);
    // a key that does not fit is refused, not truncated
    auto rq = fields("h0: 0123456789012345678901234567890123456789");
    char small[16];
    EXPECT_EQ(vary_key(vary, rq, small), SIZE_MAX);
    CachePolicyConfig cfg;
    std::string many_cacheable = many + "\nCache-Control: max-age=60";
    auto resp = fields(many_cacheable);
    auto none = fields("");
    EXPECT_EQ(storability(parse_request_cache_info(Method::Get, none, cfg), parse_response_cache_info(200, resp, cfg),
                          cfg, kT0),
              StoreVerdict::VaryStar);
}

// ---- invalidation (§4.4) ----------------------------------------------------------------------------------

struct InvalidationCase {
    Method method;
    int status;
    const char* target;
    const char* response;
    const char* expected;  // targets joined with " "
};

const InvalidationCase kInvalidationCases[] = {
    {Method::Post, 200, "/items", "", "/items"},
    {Method::Put, 204, "/items/1", "", "/items/1"},
    {Method::Delete, 200, "/items/1?x=1", "", "/items/1?x=1"},
    {Method::Patch, 200, "/items/1", "", "/items/1"},
    {Method::Unknown, 200, "/items/1", "", "/items/1"},  // unknown methods are unsafe
    {Method::Post, 303, "/items", "Location: /items/7", "/items /items/7"},
    {Method::Post, 201, "/items", "Location: http://api.example.com/items/7", "/items /items/7"},
    {Method::Post, 201, "/items", "Location: HTTP://API.EXAMPLE.COM:80/items/7", "/items /items/7"},
    {Method::Post, 201, "/items", "Location: http://api.example.com:8080/items/7", "/items"},  // other port
    {Method::Post, 201, "/items", "Location: https://api.example.com/items/7", "/items"},      // other scheme
    {Method::Post, 201, "/items", "Location: http://evil.example/items/7", "/items"},          // other host
    {Method::Post, 201, "/items", "Location: //api.example.com/items/7", "/items /items/7"},
    {Method::Post, 201, "/items", "Location: //evil.example/items/7", "/items"},
    {Method::Post, 201, "/items", "Location: http://user@api.example.com/items/7", "/items"},
    {Method::Post, 201, "/items", "Location: items/7", "/items"},  // relative-path: skipped
    {Method::Post, 201, "/items", "Location: /items/7#frag", "/items /items/7"},
    {Method::Post, 201, "/items", "Location: http://api.example.com", "/items"},
    {Method::Post, 200, "/items", "Content-Location: /items/7", "/items /items/7"},
    {Method::Post, 200, "/items", "Location: /a\nContent-Location: /b", "/items /a /b"},
    {Method::Post, 200, "/items", "Location: /items\nContent-Location: /items", "/items"},  // no duplicates
    {Method::Post, 200, "http://api.example.com/items", "", "/items"},                      // absolute-form target
    {Method::Post, 200, "http://other.example/items", "", ""},
    {Method::Post, 400, "/items", "Location: /items/7", ""},  // error: nothing
    {Method::Post, 500, "/items", "", ""},
    {Method::Post, 100, "/items", "", ""},
    {Method::Get, 200, "/items", "Location: /items/7", ""},  // safe methods invalidate nothing
    {Method::Head, 200, "/items", "", ""},
    {Method::Options, 200, "/items", "", ""},
};

TEST(Invalidation, Table) {
    Origin origin{"http", "api.example.com", 80};
    for (const auto& c : kInvalidationCases) {
        auto rs = fields(c.response);
        InvalidationTargets t = invalidation_targets(c.method, c.status, origin, c.target, rs);
        std::string got;
        for (size_t i = 0; i < t.count; ++i) got += (i ? " " : "") + std::string(t.uris[i]);
        EXPECT_EQ(got, c.expected) << method_name(c.method) << " " << c.status << " " << c.target << " [" << c.response
                                   << "]";
    }
}

TEST(Invalidation, DefaultPortsAndIpv6) {
    auto rs = fields("Location: https://[::1]/x\nContent-Location: https://[::1]:8443/y");
    InvalidationTargets t = invalidation_targets(Method::Post, 200, {"https", "[::1]", 0}, "/t", rs);
    ASSERT_EQ(t.count, 2u);
    EXPECT_EQ(t.uris[1], "/x");
    InvalidationTargets t2 = invalidation_targets(Method::Post, 200, {"https", "[::1]", 8443}, "/t", rs);
    ASSERT_EQ(t2.count, 2u);
    EXPECT_EQ(t2.uris[1], "/y");
}

// ---- poisoning defences --------------------------------------------------------------------------------------

TEST(Poisoning, UnkeyedHeaders) {
    auto clean = fields("Host: a\nAccept: */*\nX-Forwarded-For: 1.2.3.4");
    EXPECT_EQ(request_has_unkeyed_risk(clean), "");
    for (const char* text : {"X-Forwarded-Host: evil", "x-forwarded-host: evil", "X-Original-URL: /admin",
                             "X-HTTP-Method-Override: DELETE", "Forwarded: host=evil", "X-Forwarded-Proto: http"}) {
        auto h = fields(text);
        EXPECT_NE(request_has_unkeyed_risk(h), "") << text;
    }
}

TEST(Poisoning, AuthorizationSharing) {
    struct {
        const char* cc;
        bool shared;
    } cases[] = {
        {"Cache-Control: max-age=60", false},       {"Cache-Control: public", true},
        {"Cache-Control: s-maxage=0", true},        {"Cache-Control: must-revalidate", true},
        {"Cache-Control: proxy-revalidate", false}, {"", false},
    };
    for (const auto& c : cases) {
        auto h = fields(c.cc);
        EXPECT_EQ(authorization_allows_sharing(parse_cache_control(h)), c.shared) << c.cc;
    }
}

}  // namespace
}  // namespace sluice::http::cache

namespace sluice::http::cache {
namespace {

// The whole revalidation path as the wiring will run it: store, expire,
// revalidate, 304, merge, refreshed entry, hit again (RFC 9111 §4.3).
TEST(Flow, RevalidationRefreshesTheEntry) {
    CachePolicyConfig cfg;
    cfg.revalidate = true;
    auto request = fields("Accept: */*");
    RequestCacheInfo req = parse_request_cache_info(Method::Get, request, cfg);
    auto stored = fields(DATE "Cache-Control: max-age=60\nETag: \"v1\"\nContent-Type: text/plain\nContent-Length: 5");
    ResponseCacheInfo stored_info = parse_response_cache_info(200, stored, cfg);
    ASSERT_EQ(storability(req, stored_info, cfg, kT0), StoreVerdict::Store);
    EntryPolicy entry = make_entry_policy(stored_info, cfg, kT0, kT0);
    EXPECT_EQ(decide_reuse(req, &entry, cfg, {kT0 + 30}), CacheDecision::Hit);
    ASSERT_EQ(decide_reuse(req, &entry, cfg, {kT0 + 60}), CacheDecision::Revalidate);
    EXPECT_EQ(conditional_request_validators(stored_info).if_none_match, "\"v1\"");

    // The upstream answers 304 two seconds later, Age 1, a longer max-age.
    auto not_modified = fields("Date: Sun, 06 Nov 1994 08:50:38 GMT\nAge: 1\nCache-Control: max-age=120\nETag: \"v1\"");
    ResponseCacheInfo nm_info = parse_response_cache_info(304, not_modified, cfg);
    ASSERT_TRUE(not_modified_matches(stored_info, nm_info));
    Header merged[16];
    size_t n = merge_not_modified_headers(stored, not_modified, merged);
    ASSERT_NE(n, SIZE_MAX);
    std::span<const Header> merged_head(merged, n);
    ResponseCacheInfo refreshed = parse_response_cache_info(200, merged_head, cfg);
    ASSERT_EQ(storability(req, refreshed, cfg, kT0 + 62), StoreVerdict::Store);
    refreshed.age = parse_age(not_modified);
    EntryPolicy renewed = make_entry_policy(refreshed, cfg, kT0 + 60, kT0 + 62);
    EXPECT_EQ(renewed.freshness_lifetime, 120);
    EXPECT_EQ(renewed.corrected_initial_age, 3);  // Age 1 + 2 s response delay
    EXPECT_EQ(decide_reuse(req, &renewed, cfg, {kT0 + 62}), CacheDecision::Hit);
    EXPECT_EQ(decide_reuse(req, &renewed, cfg, {kT0 + 62 + 117}), CacheDecision::Revalidate);
    EXPECT_EQ(refreshed.cc.max_age, 120);
    const Header* length = nullptr;
    for (const Header& h : merged_head)
        if (h.name == "Content-Length") length = &h;
    ASSERT_NE(length, nullptr);
    EXPECT_EQ(length->value, "5");  // framing of the stored body stays

    // A client revalidating its own copy gets a 304 from the cache.
    auto conditional = fields("If-None-Match: W/\"v1\"");
    RequestCacheInfo client = parse_request_cache_info(Method::Get, conditional, cfg);
    EXPECT_EQ(answer_from_cache(client, refreshed, kT0 + 62), ClientConditional::NotModified);
    char age[24];
    EXPECT_EQ(format_age(current_age(renewed.corrected_initial_age, renewed.response_time, kT0 + 70), age), "11");
}

}  // namespace
}  // namespace sluice::http::cache
