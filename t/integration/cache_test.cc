// The response cache (proxy_cache_*, issue 6) against the real daemon and a real
// origin: RFC 9111 storing and freshness, the request's Cache-Control, Range, Vary,
// client conditionals, HEAD, revalidation, stale-while-revalidate and
// stale-if-error, invalidation by unsafe methods, collapsed forwarding, min_uses,
// bypass, purge, poisoning defences and the zone's limits. Multi-worker, reload and config-error tests are in
// cache_process_test.cc.
//
// The origin's /cache/ resources (t/lib/test_upstream.cc) take their response
// headers from the query (h=Name:value, etag=, lm=, status=, delay=, size=) and
// number their requests per path in the body ("count") and in X-Origin-Count, so a
// test tells a stored body from a fresh one and counts what reached the origin
// (/count/PATH). Every response carries $upstream_cache_status as X-Cache-Status.
//
// Locations whose key is $uri (/uri/, /reval-uri/, /swr/, /bg/, /stale/, /flaky*/) let a
// test change the origin's answer (its query) for one cache entry: an entry filled
// with max-age=1 is refreshed by a request whose query says max-age=60, so that
// the refreshed entry is surely fresh for the checks that follow.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cache_test.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using namespace sluice::test::cache;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kConfig = R"(
events { worker_connections 1024; }
http {
    proxy_cache_path {{PREFIX}}/cache-main keys_zone=main:1m max_size=16m;
    proxy_cache_path {{PREFIX}}/cache-small keys_zone=small:1m max_size=1m max_object=128k;
    proxy_cache_path {{PREFIX}}/cache-brief keys_zone=brief:8k inactive=2s;
    proxy_cache_path {{PREFIX}}/cache-few keys_zone=few:8k max_size=4m;
    proxy_cache_path {{PREFIX}}/cache-big keys_zone=big:1m max_size=12m max_object=8m;

    log_format cache '$request_uri $upstream_cache_status';
    access_log {{PREFIX}}/logs/cache.log cache;

    upstream be { server 127.0.0.1:{{UP}}; keepalive 8; }
    upstream flaky { server 127.0.0.1:{{FLAKY}}; }

    server {
        listen 127.0.0.1:{{PORT}};
        add_header X-Cache-Status $upstream_cache_status always;
        add_header X-Worker $pid always;

        location /nocache/ { proxy_pass http://be/cache/; }
        location /cache/ { proxy_cache main; proxy_pass http://be; }
        location /uri/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_pass http://be/cache/;
        }
        location /reval/ { proxy_cache main; proxy_cache_revalidate on; proxy_pass http://be/cache/; }
        location /reval-uri/ {
            proxy_cache main;
            proxy_cache_revalidate on;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_pass http://be/cache/;
        }
        location /swr/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_background_update on;
            proxy_pass http://be/cache/;
        }
        location /bg/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_use_stale updating;
            proxy_cache_background_update on;
            proxy_pass http://be/cache/;
        }
        location /stale/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_use_stale error timeout http_500 http_503;
            proxy_pass http://be/cache/;
        }
        # The entry of /stale/listed, fetched from an origin path that answers a
        # malformed status line.
        location = /stale-invalid {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host/stale/listed;
            proxy_cache_use_stale invalid_header;
            proxy_pass http://be/bad/status-line;
        }
        location /stale-timeout/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_use_stale timeout;
            proxy_read_timeout 300ms;
            proxy_pass http://be/cache/;
        }
        location /flaky/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_cache_use_stale error timeout;
            proxy_pass http://flaky/cache/;
        }
        location /flaky-plain/ {
            proxy_cache main;
            proxy_cache_key $scheme$proxy_host$uri;
            proxy_pass http://flaky/cache/;
        }
        location /valid/ { proxy_cache main; proxy_cache_valid 200 60s; proxy_pass http://be/cache/; }
        location /valid-default/ { proxy_cache main; proxy_cache_valid 60s; proxy_pass http://be/cache/; }
        location /valid-any/ { proxy_cache main; proxy_cache_valid any 60s; proxy_pass http://be/cache/; }
        location /ignore-cc/ {
            proxy_cache main;
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_valid 60s;
            proxy_pass http://be/cache/;
        }
        location /cookie/ { proxy_cache main; proxy_ignore_headers Set-Cookie; proxy_pass http://be/cache/; }
        location /mu/ { proxy_cache main; proxy_cache_min_uses 3; proxy_pass http://be/cache/; }
        location /bp/ {
            proxy_cache main;
            proxy_cache_bypass $http_x_bypass;
            proxy_no_cache $http_x_nocache;
            proxy_pass http://be/cache/;
        }
        location /lock/ { proxy_cache main; proxy_cache_lock on; proxy_pass http://be/cache/; }
        location /lock-timeout/ {
            proxy_cache main;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 300ms;
            proxy_pass http://be/cache/;
        }
        location /purge/ { proxy_cache main; proxy_cache_purge on; proxy_pass http://be/cache/; }
        location /purge-str/ { proxy_cache main; proxy_cache_purge $http_x_purge; proxy_pass http://be/cache/; }
        location /nohead/ { proxy_cache main; proxy_cache_convert_head off; proxy_pass http://be/cache/; }
        location /pk/ {
            proxy_cache main;
            proxy_cache_key "pk:$arg_id";
            proxy_cache_purge on;
            proxy_pass http://be/cache/;
        }
        location /pk-denied/ {
            deny all;
            proxy_cache main;
            proxy_cache_key "pk:$arg_id";
            proxy_cache_purge on;
            proxy_pass http://be/cache/;
        }
        location /ev/ { proxy_cache small; proxy_pass http://be/cache/; }
        location /brief/ { proxy_cache brief; proxy_pass http://be/cache/; }
        location /few/ { proxy_cache few; proxy_pass http://be/cache/; }
        location /big/ { proxy_cache big; proxy_cache_purge on; proxy_pass http://be/cache/; }
        location = /chunked-valid { proxy_cache main; proxy_cache_valid 60s; proxy_pass http://be/chunked; }
        location = /truncated-valid { proxy_cache main; proxy_cache_valid 60s; proxy_pass http://be/bad/truncated; }
    }

    # Inheritance: the cache set at server level, off or refined in locations.
    server {
        listen 127.0.0.1:{{PORT2}};
        add_header X-Cache-Status $upstream_cache_status always;
        proxy_cache main;
        proxy_cache_valid 200 60s;
        location /inh/ { proxy_pass http://be/cache/; }
        location /inh-off/ { proxy_cache off; proxy_pass http://be/cache/; }
        location /inh-own/ { proxy_cache_valid 404 60s; proxy_pass http://be/cache/; }
    }
}
)";

class CacheTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        up_ = new UpstreamProcess({"--id", "origin"});
        flaky_ = new UpstreamProcess({"--id", "flaky"});
        if (!up_->start() || !flaky_->start()) return;
        daemon_ = new Daemon(std::string(kMainConfig) + std::string(kConfig),
                             {{"UP", up_->port()}, {"FLAKY", flaky_->port()}});
        started_ = bool(daemon_->start());
        if (!started_) fprintf(stderr, "daemon: %s\n", daemon_->stderr_log().c_str());
    }
    static void TearDownTestSuite() {
        delete daemon_;
        delete flaky_;
        delete up_;
        daemon_ = nullptr;
        flaky_ = nullptr;
        up_ = nullptr;
    }
    void SetUp() override {
        ASSERT_TRUE(started_) << "the shared daemon did not start";
        port_ = daemon_->port();
    }

    Response get(std::string_view path, std::string_view headers = "") { return cache::get(port_, path, headers); }
    Response head(std::string_view path, std::string_view headers = "") { return cache::head(port_, path, headers); }
    Response method(std::string_view m, std::string_view path, std::string_view headers = "") {
        return send_method(port_, m, path, headers);
    }
    // Requests the origin had for /cache/NAME.
    long count(std::string_view name) { return origin_count(up_->port(), "/cache/" + std::string(name)); }
    long flaky_count(std::string_view name) { return origin_count(flaky_->port(), "/cache/" + std::string(name)); }

    static UpstreamProcess* up_;
    static UpstreamProcess* flaky_;
    static Daemon* daemon_;
    static bool started_;
    uint16_t port_ = 0;
};

UpstreamProcess* CacheTest::up_ = nullptr;
UpstreamProcess* CacheTest::flaky_ = nullptr;
Daemon* CacheTest::daemon_ = nullptr;
bool CacheTest::started_ = false;

// ---- storing and hits -----------------------------------------------------------

TEST_F(CacheTest, AFreshEntryIsServedWithoutTheOrigin) {
    std::string path = "/cache/basic?" + cc("max-age=60");
    Response first = get(path);
    ASSERT_EQ(first.status, 200) << first;
    EXPECT_EQ(cache_status(first), "MISS") << first;
    EXPECT_EQ(made_by(first), 1);
    for (int i = 0; i < 3; ++i) {
        Response hit = get(path);
        EXPECT_EQ(hit.status, 200) << hit;
        EXPECT_EQ(cache_status(hit), "HIT") << hit;
        EXPECT_EQ(hit.body, first.body);
        EXPECT_EQ(hit.header("X-Origin-Count"), "1") << "the stored headers are served";
        EXPECT_EQ(hit.header("Cache-Control"), "max-age=60");
        EXPECT_TRUE(hit.has("Age")) << hit;
    }
    EXPECT_EQ(count("basic"), 1);
    // The query is part of the default key: another query is another entry.
    Response other = get("/cache/basic?" + cc("max-age=60") + "&x=1");
    EXPECT_EQ(cache_status(other), "MISS") << other;
    EXPECT_EQ(count("basic"), 2);
}

TEST_F(CacheTest, UpstreamCacheStatusIsEmptyWithoutACache) {
    Response r = get("/nocache/plain?" + cc("max-age=60"));
    ASSERT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "") << r;
    EXPECT_EQ(made_by(get("/nocache/plain?" + cc("max-age=60"))), 2);
}

TEST_F(CacheTest, TheAccessLogHasTheCacheStatus) {
    get("/cache/logged?x=1&" + cc("max-age=60"));
    get("/cache/logged?x=1&" + cc("max-age=60"));
    std::string miss = "/cache/logged?x=1&" + cc("max-age=60") + " MISS\n";
    std::string hit = "/cache/logged?x=1&" + cc("max-age=60") + " HIT\n";
    std::string log;
    EXPECT_TRUE(wait_until(
        [&] {
            log = daemon_->dir().read("logs/cache.log");
            return log.find(miss) != std::string::npos && log.find(hit) != std::string::npos;
        },
        5000ms))
        << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
}

TEST_F(CacheTest, AgeCountsTheOriginsAgeAndTheTimeStored) {
    // An Age from the origin is part of the entry's age (RFC 9111 4.2.3).
    std::string aged = "/cache/age-origin?" + cc("max-age=600") + "&" + h("Age", "100");
    ASSERT_EQ(get(aged).status, 200);
    Response hit = get(aged);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    ASSERT_TRUE(hit.has("Age")) << hit;
    EXPECT_GE(std::stol(hit.header("Age")), 100) << hit;
    EXPECT_EQ(hit.count("Age"), 1) << "the cache replaces the stored Age: " << hit;

    std::string plain = "/cache/age-plain?" + cc("max-age=600");
    ASSERT_EQ(get(plain).status, 200);
    std::this_thread::sleep_for(1100ms);
    Response later = get(plain);
    EXPECT_EQ(cache_status(later), "HIT") << later;
    ASSERT_TRUE(later.has("Age")) << later;
    EXPECT_GE(std::stol(later.header("Age")), 1) << later;
}

TEST_F(CacheTest, ExpiresWithDateGivesTheLifetime) {
    time_t now = time(nullptr);
    std::string fresh = "/cache/expires-future?" + h("Date", http_date(now)) + "&" + h("Expires", http_date(now + 120));
    EXPECT_EQ(cache_status(get(fresh)), "MISS");
    Response hit = get(fresh);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 1);

    // Expires equal to Date: already stale, and without a validator not worth storing.
    std::string stale = "/cache/expires-now?" + h("Date", http_date(now)) + "&" + h("Expires", http_date(now));
    EXPECT_EQ(cache_status(get(stale)), "MISS");
    Response again = get(stale);
    EXPECT_NE(cache_status(again), "HIT") << again;
    EXPECT_EQ(made_by(again), 2);
    // An invalid Expires means "already expired" (RFC 9111 5.3).
    std::string invalid = "/cache/expires-invalid?" + h("Expires", "0");
    get(invalid);
    EXPECT_EQ(made_by(get(invalid)), 2);
}

TEST_F(CacheTest, SMaxAgeOverridesMaxAgeInASharedCache) {
    std::string shared = "/cache/smaxage-long?" + cc("max-age=0, s-maxage=60");
    EXPECT_EQ(cache_status(get(shared)), "MISS");
    Response hit = get(shared);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(count("smaxage-long"), 1);

    std::string short_shared = "/cache/smaxage-zero?" + cc("max-age=60, s-maxage=0");
    get(short_shared);
    Response second = get(short_shared);
    EXPECT_NE(cache_status(second), "HIT") << second;
    EXPECT_EQ(made_by(second), 2);
}

TEST_F(CacheTest, AStaleEntryIsFetchedAgainAsExpired) {
    Response first = get("/uri/expire?" + cc("max-age=1"));
    EXPECT_EQ(cache_status(first), "MISS") << first;
    wait_past_one_second_lifetime();
    Response refetched = get("/uri/expire?" + cc("max-age=60"));
    EXPECT_EQ(refetched.status, 200);
    EXPECT_EQ(cache_status(refetched), "EXPIRED") << refetched;
    EXPECT_EQ(made_by(refetched), 2);
    Response hit = get("/uri/expire");
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 2) << "the refetched response replaced the entry";
    EXPECT_EQ(count("expire"), 2);
}

// Responses that must not be stored: each is fetched twice, and the origin sees both.
TEST_F(CacheTest, ResponsesThatMustNotBeStored) {
    struct Case {
        std::string name, query;
    };
    const std::vector<Case> cases = {
        {"no-store", cc("max-age=60, no-store")},
        {"private", cc("private, max-age=60")},
        {"no-freshness", ""},  // no Cache-Control, Expires, validator or proxy_cache_valid
        {"vary-star", cc("max-age=60") + "&" + h("Vary", "*")},
        {"set-cookie", cc("max-age=60") + "&" + h("Set-Cookie", "session=abc")},
    };
    for (const Case& c : cases) {
        std::string path = "/cache/" + c.name + "?" + c.query;
        Response a = get(path);
        Response b = get(path);
        EXPECT_NE(cache_status(b), "HIT") << c.name << ": " << b;
        EXPECT_EQ(made_by(b), 2) << c.name << ": " << b;
        EXPECT_EQ(count(c.name), 2) << c.name;
        if (c.name == "set-cookie") {
            EXPECT_EQ(a.header("Set-Cookie"), "session=abc") << a;
            EXPECT_EQ(b.header("Set-Cookie"), "session=abc") << b;
        }
    }
}

TEST_F(CacheTest, IgnoredSetCookieIsStoredButTheCookieIsNeverServedFromCache) {
    std::string path = "/cookie/c1?" + cc("max-age=60") + "&" + h("Set-Cookie", "session=alice-secret");
    Response first = get(path);
    EXPECT_EQ(cache_status(first), "MISS") << first;
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 1);
    EXPECT_FALSE(hit.has("Set-Cookie")) << "another client got the first client's cookie: " << hit;
    EXPECT_THAT(hit.raw_head, Not(HasSubstr("alice-secret")));
}

// ---- proxy_cache_valid and proxy_ignore_headers -----------------------------------

TEST_F(CacheTest, ProxyCacheValidGivesALifetimeOnlyToListedStatuses) {
    // proxy_cache_valid 200 60s
    get("/valid/v200");
    Response hit = get("/valid/v200");
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 1);
    get("/valid/v404?status=404");
    Response not_found = get("/valid/v404?status=404");
    EXPECT_EQ(not_found.status, 404);
    EXPECT_EQ(made_by(not_found), 2) << "404 has no proxy_cache_valid row here";
    // The response's own freshness wins over proxy_cache_valid.
    get("/valid/vcc?" + cc("max-age=0"));
    Response own = get("/valid/vcc?" + cc("max-age=0"));
    EXPECT_NE(cache_status(own), "HIT") << own;
    EXPECT_EQ(made_by(own), 2);

    // proxy_cache_valid 60s: 200, 301 and 302.
    get("/valid-default/d200");
    EXPECT_EQ(cache_status(get("/valid-default/d200")), "HIT");
    std::string redirect = "/valid-default/d302?status=302&" + h("Location", "/elsewhere");
    get(redirect);
    Response r302 = get(redirect);
    EXPECT_EQ(r302.status, 302);
    EXPECT_EQ(cache_status(r302), "HIT") << r302;
    get("/valid-default/d404?status=404");
    Response d404 = get("/valid-default/d404?status=404");
    EXPECT_EQ(made_by(d404), 2) << d404;

    // proxy_cache_valid any 60s
    get("/valid-any/a404?status=404");
    Response a404 = get("/valid-any/a404?status=404");
    EXPECT_EQ(a404.status, 404);
    EXPECT_EQ(cache_status(a404), "HIT") << a404;
    EXPECT_EQ(count("a404"), 1);
}

TEST_F(CacheTest, IgnoredCacheControlAndExpiresLeaveProxyCacheValid) {
    std::string no_store = "/ignore-cc/i1?" + cc("no-store, max-age=0");
    get(no_store);
    Response hit = get(no_store);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 1);
    std::string expired = "/ignore-cc/i2?" + h("Expires", http_date(time(nullptr) - 3600));
    get(expired);
    EXPECT_EQ(cache_status(get(expired)), "HIT");
    EXPECT_EQ(count("i2"), 1);
}

// ---- poisoning defences ----------------------------------------------------------------

TEST_F(CacheTest, AResponseToAnAuthorizedRequestIsNotShared) {
    std::string path = "/cache/auth-private?" + cc("max-age=60");
    Response owner = get(path, "Authorization: Bearer s3cret-token\r\n");
    ASSERT_EQ(owner.status, 200) << owner;
    EXPECT_THAT(owner.body, HasSubstr("s3cret-token"));
    Response other = get(path);
    EXPECT_NE(cache_status(other), "HIT") << other;
    EXPECT_THAT(other.body, Not(HasSubstr("s3cret-token")));
    EXPECT_EQ(made_by(other), 2);
}

TEST_F(CacheTest, AnAuthorizedResponseIsSharedWhenItSaysSo) {
    for (std::string directive : {"public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"}) {
        std::string name = "auth-shared-" + std::to_string(directive.size());
        std::string path = "/cache/" + name + "?" + cc(directive);
        get(path, "Authorization: Bearer shared-token\r\n");
        Response other = get(path);
        EXPECT_EQ(cache_status(other), "HIT") << directive << ": " << other;
        EXPECT_EQ(count(name), 1) << directive;
    }
}

TEST_F(CacheTest, UnkeyedHeadersNeverReachTheOriginOfACacheableRequest) {
    const std::vector<std::string> risky = {
        "X-Forwarded-Host", "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Forwarded-Proto",      "X-Forwarded-Prefix",
        "X-Host",           "X-Original-URL",     "X-Rewrite-URL",      "X-HTTP-Method-Override", "Forwarded",
    };
    for (size_t i = 0; i < risky.size(); ++i) {
        std::string name = "poison-" + std::to_string(i);
        std::string path = "/cache/" + name + "?" + cc("max-age=60");
        std::string value = risky[i] == "Forwarded" ? "host=evil.example" : "evil.example";
        Response attacker = get(path, risky[i] + ": " + value + "\r\n");
        ASSERT_EQ(attacker.status, 200) << attacker;
        EXPECT_THAT(attacker.body, Not(HasSubstr("evil.example"))) << risky[i] << " was forwarded";
        Response victim = get(path);
        EXPECT_EQ(victim.status, 200);
        EXPECT_THAT(victim.body, Not(HasSubstr("evil.example"))) << risky[i] << " poisoned the entry";
    }
}

// ---- Vary ----------------------------------------------------------------------------------

TEST_F(CacheTest, VaryKeepsOneEntryPerVariant) {
    std::string path = "/cache/vary?" + cc("max-age=60") + "&" + h("Vary", "Accept-Language");
    Response en = get(path, "Accept-Language: en\r\n");
    Response de = get(path, "Accept-Language: de\r\n");
    EXPECT_EQ(cache_status(en), "MISS");
    EXPECT_EQ(cache_status(de), "MISS") << "a variant for another language is another entry";
    Response en2 = get(path, "Accept-Language: en\r\n");
    Response de2 = get(path, "Accept-Language: de\r\n");
    EXPECT_EQ(cache_status(en2), "HIT") << en2;
    EXPECT_EQ(cache_status(de2), "HIT") << de2;
    EXPECT_THAT(en2.body, HasSubstr("\"accept-language\":\"en\""));
    EXPECT_THAT(de2.body, HasSubstr("\"accept-language\":\"de\""));
    EXPECT_EQ(made_by(en2), made_by(en));
    EXPECT_EQ(made_by(de2), made_by(de));
    // A request without the field selects neither variant.
    Response none = get(path);
    EXPECT_NE(cache_status(none), "HIT") << none;
    EXPECT_THAT(none.body, Not(HasSubstr("accept-language")));
    EXPECT_EQ(count("vary"), 3);
}

TEST_F(CacheTest, VaryComparesValuesAfterJoiningAndTrimming) {
    std::string path = "/cache/vary-norm?" + cc("max-age=60") + "&" + h("Vary", "Accept-Language, Accept");
    Response first = get(path, "Accept-Language: en, de\r\nAccept: text/plain\r\n");
    EXPECT_EQ(cache_status(first), "MISS");
    Response spaced = get(path, "Accept-Language: en,   de\r\nAccept: text/plain\r\n");
    EXPECT_EQ(cache_status(spaced), "HIT") << "spaces around list members do not make another variant";
    Response split = get(path, "Accept-Language: en\r\nAccept-Language: de\r\nAccept: text/plain\r\n");
    EXPECT_EQ(cache_status(split), "HIT") << "two field lines are one list";
    Response other = get(path, "Accept-Language: en, de\r\nAccept: text/html\r\n");
    EXPECT_EQ(cache_status(other), "MISS") << "the second Vary field differs";
    EXPECT_EQ(count("vary-norm"), 2);
}

TEST_F(CacheTest, AnUnsafeMethodInvalidatesEveryVariant) {
    std::string path = "/cache/vary-inv?" + cc("max-age=60") + "&" + h("Vary", "Accept-Language");
    for (std::string lang : {"en", "de"}) get(path, "Accept-Language: " + lang + "\r\n");
    ASSERT_EQ(cache_status(get(path, "Accept-Language: en\r\n")), "HIT");
    EXPECT_EQ(method("DELETE", path).status, 200);
    for (std::string lang : {"en", "de"}) {
        Response r = get(path, "Accept-Language: " + lang + "\r\n");
        EXPECT_EQ(cache_status(r), "MISS") << lang << ": " << r;
    }
}

// ---- the request's Cache-Control (RFC 9111 5.2.1; nginx ignores it) --------------------

TEST_F(CacheTest, TheRequestsCacheControlIsHonoured) {
    std::string path = "/cache/req-cc?" + cc("max-age=60");
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    Response no_cache = get(path, "Cache-Control: no-cache\r\n");
    EXPECT_NE(cache_status(no_cache), "HIT") << no_cache;
    EXPECT_EQ(made_by(no_cache), 2) << "the client asked for a validated response";
    Response pragma = get(path, "Pragma: no-cache\r\n");
    EXPECT_EQ(made_by(pragma), 3) << "Pragma: no-cache without Cache-Control counts as no-cache";
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 3) << "the refetched response replaced the entry";

    Response cached_only = get(path, "Cache-Control: only-if-cached\r\n");
    EXPECT_EQ(cached_only.status, 200) << cached_only;
    EXPECT_EQ(made_by(cached_only), 3);
    Response nothing = get("/cache/req-oic?" + cc("max-age=60"), "Cache-Control: only-if-cached\r\n");
    EXPECT_EQ(nothing.status, 504) << nothing;
    EXPECT_EQ(count("req-oic"), 0) << "only-if-cached never goes upstream";
}

TEST_F(CacheTest, MaxStaleAcceptsAStaleEntry) {
    ASSERT_EQ(get("/uri/max-stale?" + cc("max-age=1")).status, 200);
    wait_past_one_second_lifetime();
    Response r = get("/uri/max-stale?" + cc("max-age=60"), "Cache-Control: max-stale=60\r\n");
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "STALE") << r;
    EXPECT_EQ(made_by(r), 1);
    EXPECT_EQ(count("max-stale"), 1);
}

TEST_F(CacheTest, RangeRequestsGetTheWholeResponseAndFillTheCache) {
    std::string path = "/cache/range?" + cc("max-age=60");
    Response miss = get(path, "Range: bytes=0-9\r\n");
    EXPECT_EQ(miss.status, 200) << miss;
    EXPECT_THAT(miss.body, Not(HasSubstr("\"range\""))) << "Range went upstream while filling";
    Response full = get(path);
    EXPECT_EQ(cache_status(full), "HIT") << full;
    EXPECT_EQ(made_by(full), 1);
    Response ranged_hit = get(path, "Range: bytes=0-9\r\n");
    EXPECT_EQ(ranged_hit.status, 200) << ranged_hit;
    EXPECT_EQ(ranged_hit.body, full.body);
    EXPECT_EQ(count("range"), 1);
}

// ---- client conditionals and HEAD ----------------------------------------------------------

TEST_F(CacheTest, ClientConditionalsAreAnsweredFromAFreshEntry) {
    const std::string modified = "Sun, 06 Nov 1994 08:49:37 GMT";
    std::string path = "/cache/cond?" + cc("max-age=60") + "&etag=" + enc("\"c1\"") + "&lm=" + enc(modified);
    Response full = get(path);
    ASSERT_EQ(full.status, 200) << full;

    Response inm = get(path, "If-None-Match: \"c1\"\r\n");
    EXPECT_EQ(inm.status, 304) << inm;
    EXPECT_EQ(cache_status(inm), "HIT") << inm;
    EXPECT_EQ(inm.header("ETag"), "\"c1\"");
    EXPECT_EQ(inm.body, "");

    Response weak_list = get(path, "If-None-Match: \"zz\", W/\"c1\"\r\n");
    EXPECT_EQ(weak_list.status, 304) << weak_list;

    Response other = get(path, "If-None-Match: \"c2\"\r\n");
    EXPECT_EQ(other.status, 200) << other;
    EXPECT_EQ(other.body, full.body);
    EXPECT_EQ(cache_status(other), "HIT");

    Response ims = get(path, "If-Modified-Since: " + modified + "\r\n");
    EXPECT_EQ(ims.status, 304) << ims;
    Response older = get(path, "If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n");
    EXPECT_EQ(older.status, 200) << older;
    EXPECT_EQ(older.body, full.body);

    EXPECT_EQ(count("cond"), 1) << "every conditional was answered by the cache";
}

TEST_F(CacheTest, AConditionalMissStillFillsTheCache) {
    // The cache asks the origin for the whole response, not the client's 304.
    std::string path = "/cache/cond-miss?" + cc("max-age=60") + "&etag=" + enc("\"m1\"");
    Response r = get(path, "If-None-Match: \"m1\"\r\n");
    EXPECT_TRUE(r.status == 304 || r.status == 200) << r;
    Response full = get(path);
    EXPECT_EQ(full.status, 200) << full;
    EXPECT_EQ(cache_status(full), "HIT") << full;
    EXPECT_EQ(made_by(full), 1);
    EXPECT_THAT(full.body, Not(HasSubstr("if-none-match"))) << "the client's conditional went upstream";
}

TEST_F(CacheTest, HeadIsServedFromTheGetEntry) {
    std::string path = "/cache/head-get?" + cc("max-age=60");
    Response full = get(path);
    ASSERT_EQ(full.status, 200) << full;
    Response r = head(path);
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "HIT") << r;
    EXPECT_EQ(r.header("Content-Length"), std::to_string(full.body.size())) << r;
    EXPECT_EQ(r.header("X-Origin-Count"), "1");
    EXPECT_EQ(count("head-get"), 1);

    // A HEAD miss fills the entry with GET (proxy_cache_convert_head on), so a
    // later GET is a hit with the whole body.
    std::string path2 = "/cache/head-first?" + cc("max-age=60");
    Response miss = head(path2);
    EXPECT_EQ(miss.status, 200) << miss;
    Response after = get(path2);
    EXPECT_EQ(cache_status(after), "HIT") << after;
    EXPECT_THAT(after.body, HasSubstr("\"method\":\"GET\""));
    EXPECT_EQ(after.header("Content-Length"), miss.header("Content-Length"));
    EXPECT_EQ(count("head-first"), 1);
}

TEST_F(CacheTest, WithConvertHeadOffAHeadMissIsNotStored) {
    std::string path = "/nohead/nohead?" + cc("max-age=60");
    Response r = head(path);
    EXPECT_EQ(r.status, 200) << r;
    Response after = get(path);
    EXPECT_EQ(after.status, 200);
    EXPECT_NE(cache_status(after), "HIT") << after;
    EXPECT_EQ(made_by(after), 2);
    EXPECT_THAT(after.body, HasSubstr("\"method\":\"GET\""));
}

TEST_F(CacheTest, CachedAnswersKeepAKeptAliveConnectionInStep) {
    std::string path = "/cache/ka?" + cc("max-age=60") + "&etag=" + enc("\"k1\"");
    std::string fresh_path = "/cache/ka-head-miss?" + cc("max-age=60");
    auto line = [](std::string_view m, const std::string& p, std::string_view extra = "") {
        return std::string(m) + " " + p + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra) + "\r\n";
    };
    Conn c(port_);
    ASSERT_TRUE(c.connected());
    // A miss, a hit, a HEAD hit, a HEAD miss (filled with GET), a 304 from the cache,
    // then a hit: one at a time, and then all pipelined. A body where there must be
    // none would be read as the next response's head.
    for (int round = 0; round < 2; ++round) {
        std::vector<std::pair<std::string, bool>> requests = {
            {line("GET", path), false},
            {line("GET", path), false},
            {line("HEAD", path), true},
            {line("HEAD", fresh_path + "&round=" + std::to_string(round)), true},
            {line("GET", path, "If-None-Match: \"k1\"\r\n"), false},
            {line("GET", path), false},
        };
        if (round == 0) {
            for (const auto& [raw, is_head] : requests) {
                ASSERT_TRUE(c.send(raw));
                auto r = c.read_response(kDefaultTimeout, is_head);
                ASSERT_TRUE(r) << c.error();
                EXPECT_TRUE(r->status == 200 || r->status == 304) << *r;
            }
        } else {
            std::string all;
            for (const auto& [raw, is_head] : requests) all += raw;
            ASSERT_TRUE(c.send(all));
            std::vector<int> statuses;
            for (const auto& [raw, is_head] : requests) {
                auto r = c.read_response(kDefaultTimeout, is_head);
                ASSERT_TRUE(r) << c.error();
                statuses.push_back(r->status);
                if (!is_head && r->status == 200) {
                    EXPECT_EQ(made_by(*r), 1) << *r;
                }
            }
            EXPECT_EQ(statuses, (std::vector<int>{200, 200, 200, 200, 304, 200}));
        }
    }
    EXPECT_FALSE(c.peer_closed_now()) << "the connection was closed";
    EXPECT_EQ(count("ka"), 1);
}

TEST_F(CacheTest, AChunkedResponseIsStoredAndServedToHttp10) {
    Response first = get("/chunked-valid");
    ASSERT_EQ(first.status, 200) << first;
    Response hit = get("/chunked-valid");
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(hit.body, first.body);
    auto old = http_request(port_, "GET /chunked-valid HTTP/1.0\r\nHost: localhost\r\n\r\n");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->status, 200) << *old;
    EXPECT_EQ(cache_status(*old), "HIT") << *old;
    EXPECT_FALSE(old->has("Transfer-Encoding")) << "chunked to an HTTP/1.0 client: " << *old;
    EXPECT_EQ(old->body, first.body);
}

TEST_F(CacheTest, ATruncatedResponseIsNotStored) {
    // The origin promises 100 bytes, sends 10 and closes.
    auto origin_requests = [&] {
        auto r = http_get(up_->port(), "/stats");
        return r ? json_count(r->body, "requests") : -1;
    };
    get("/truncated-valid");
    long before = origin_requests();
    Response second = get("/truncated-valid");
    EXPECT_NE(cache_status(second), "HIT") << "an incomplete body was stored: " << second;
    EXPECT_EQ(origin_requests(), before + 2) << "the second request was not forwarded";
}

TEST_F(CacheTest, CacheSettingsAreInheritedAndOverridden) {
    // Origin paths of their own: the origin counts requests per path, and
    // other tests' locations map onto the same /cache/ namespace.
    uint16_t port2 = daemon_->port("PORT2");
    cache::get(port2, "/inh/inherited-1");
    Response inherited = cache::get(port2, "/inh/inherited-1");
    EXPECT_EQ(cache_status(inherited), "HIT") << "proxy_cache and proxy_cache_valid from the server";
    EXPECT_EQ(made_by(inherited), 1);

    cache::get(port2, "/inh-off/inherited-2?" + cc("max-age=60"));
    Response off = cache::get(port2, "/inh-off/inherited-2?" + cc("max-age=60"));
    EXPECT_EQ(cache_status(off), "") << off;
    EXPECT_EQ(made_by(off), 2);

    // A location's own proxy_cache_valid replaces the server's list.
    cache::get(port2, "/inh-own/inherited-3");
    Response own200 = cache::get(port2, "/inh-own/inherited-3");
    EXPECT_NE(cache_status(own200), "HIT") << own200;
    EXPECT_EQ(made_by(own200), 2);
    cache::get(port2, "/inh-own/inherited-4?status=404");
    Response own404 = cache::get(port2, "/inh-own/inherited-4?status=404");
    EXPECT_EQ(own404.status, 404);
    EXPECT_EQ(cache_status(own404), "HIT") << own404;
}

// ---- revalidation -------------------------------------------------------------------------

TEST_F(CacheTest, AStaleEntryIsRevalidatedWithItsETag) {
    std::string etag = "&etag=" + enc("\"r1\"");
    Response first = get("/reval-uri/etag?" + cc("max-age=1") + etag);
    ASSERT_EQ(first.status, 200) << first;
    wait_past_one_second_lifetime();
    Response r = get("/reval-uri/etag?" + cc("max-age=60") + etag);
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "REVALIDATED") << r;
    EXPECT_EQ(r.body, first.body) << "the client gets the stored body";
    EXPECT_EQ(count("etag"), 2) << "one conditional request";
    // The 304's header fields replaced the stored ones, its freshness included.
    EXPECT_EQ(r.header("X-Origin-Count"), "2") << r;
    Response hit = get("/reval-uri/etag");
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(hit.header("X-Origin-Count"), "2") << hit;
    EXPECT_EQ(hit.header("Cache-Control"), "max-age=60") << hit;
    EXPECT_EQ(made_by(hit), 1);
    EXPECT_EQ(count("etag"), 2);
}

TEST_F(CacheTest, AStaleEntryIsRevalidatedWithItsLastModified) {
    std::string lm = "&lm=" + enc("Sun, 06 Nov 1994 08:49:37 GMT");
    Response first = get("/reval-uri/lm?" + cc("max-age=1") + lm);
    ASSERT_EQ(first.status, 200) << first;
    wait_past_one_second_lifetime();
    Response r = get("/reval-uri/lm?" + cc("max-age=60") + lm);
    EXPECT_EQ(cache_status(r), "REVALIDATED") << r;
    EXPECT_EQ(r.body, first.body);
    EXPECT_EQ(count("lm"), 2);
}

TEST_F(CacheTest, AChangedResourceReplacesTheEntryOnRevalidation) {
    Response first = get("/reval-uri/changed?" + cc("max-age=1") + "&etag=" + enc("\"v1\""));
    ASSERT_EQ(first.status, 200);
    wait_past_one_second_lifetime();
    Response r = get("/reval-uri/changed?" + cc("max-age=60") + "&etag=" + enc("\"v2\""));
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "EXPIRED") << r;
    EXPECT_EQ(made_by(r), 2);
    EXPECT_EQ(r.header("ETag"), "\"v2\"");
    Response hit = get("/reval-uri/changed");
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 2);
}

TEST_F(CacheTest, ASetCookieInA304IsNeverServedToAnotherClient) {
    std::string etag = "&etag=" + enc("\"sc1\"");
    ASSERT_EQ(get("/reval-uri/cookie304?" + cc("max-age=1") + etag).status, 200);
    wait_past_one_second_lifetime();
    Response r = get("/reval-uri/cookie304?" + cc("max-age=60") + etag + "&" + h("Set-Cookie", "session=bob-secret"));
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(count("cookie304"), 2);
    Response other = get("/reval-uri/cookie304?" + cc("max-age=60") + etag);
    EXPECT_EQ(other.status, 200) << other;
    EXPECT_FALSE(other.has("Set-Cookie")) << "another client got the cookie of a 304: " << other;
    EXPECT_THAT(other.raw_head, Not(HasSubstr("bob-secret")));
}

TEST_F(CacheTest, AClientsConditionalOnAStaleEntryIsAnsweredAfterRevalidation) {
    std::string etag = "&etag=" + enc("\"cv1\"");
    ASSERT_EQ(get("/reval-uri/client-cond?" + cc("max-age=1") + etag).status, 200);
    wait_past_one_second_lifetime();
    Response r = get("/reval-uri/client-cond?" + cc("max-age=60") + etag, "If-None-Match: \"cv1\"\r\n");
    EXPECT_EQ(r.status, 304) << r;
    EXPECT_EQ(cache_status(r), "REVALIDATED") << r;
    EXPECT_EQ(count("client-cond"), 2);
    Response full = get("/reval-uri/client-cond");
    EXPECT_EQ(full.status, 200);
    EXPECT_EQ(cache_status(full), "HIT") << full;
    EXPECT_EQ(made_by(full), 1);
}

TEST_F(CacheTest, NoCacheIsRevalidatedOnEveryUse) {
    std::string path = "/reval/nocache?" + cc("no-cache") + "&etag=" + enc("\"n1\"");
    Response first = get(path);
    ASSERT_EQ(first.status, 200);
    for (int i = 2; i <= 3; ++i) {
        Response r = get(path);
        EXPECT_EQ(r.status, 200) << r;
        EXPECT_EQ(cache_status(r), "REVALIDATED") << r;
        EXPECT_EQ(made_by(r), 1) << "the stored body";
        EXPECT_EQ(count("nocache"), i) << "a conditional request for every use";
    }
}

TEST_F(CacheTest, MustRevalidateForbidsServingStaleOnError) {
    Response first = get("/stale/mustreval?" + cc("max-age=1, must-revalidate"));
    ASSERT_EQ(first.status, 200);
    wait_past_one_second_lifetime();
    // proxy_cache_use_stale http_500 is configured, but must-revalidate wins.
    Response r = get("/stale/mustreval?status=500");
    EXPECT_EQ(r.status, 500) << r;
    EXPECT_NE(cache_status(r), "STALE") << r;
    EXPECT_NE(r.body, first.body);
}

// ---- stale serving ----------------------------------------------------------------------

TEST_F(CacheTest, StaleWhileRevalidateServesStaleAndRefreshesOnce) {
    Response first = get("/swr/swr?" + cc("max-age=1, stale-while-revalidate=60"));
    ASSERT_EQ(first.status, 200);
    wait_past_one_second_lifetime();
    std::string refresh = "/swr/swr?" + cc("max-age=60") + "&delay=500";
    Response stale = get(refresh);
    EXPECT_EQ(stale.status, 200) << stale;
    EXPECT_EQ(cache_status(stale), "STALE") << stale;
    EXPECT_EQ(made_by(stale), 1);
    // The refresh happens in the background, without another client asking.
    EXPECT_TRUE(wait_until([&] { return count("swr") >= 2; }, 5000ms)) << count("swr");
    Response fresh;
    EXPECT_TRUE(wait_until(
        [&] {
            fresh = get(refresh);
            return cache_status(fresh) == "HIT";
        },
        5000ms, 50ms))
        << fresh;
    EXPECT_EQ(made_by(fresh), 2) << fresh;
    EXPECT_EQ(count("swr"), 2) << "exactly one refresh";
}

TEST_F(CacheTest, BackgroundUpdateServesStaleAndOthersSeeUpdating) {
    Response first = get("/bg/upd?" + cc("max-age=1"));
    ASSERT_EQ(first.status, 200);
    wait_past_one_second_lifetime();
    std::string refresh = "/bg/upd?" + cc("max-age=60") + "&delay=1500";
    Response stale = get(refresh);
    EXPECT_EQ(cache_status(stale), "STALE") << stale;
    EXPECT_EQ(made_by(stale), 1);
    ASSERT_TRUE(wait_until([&] { return count("upd") >= 2; }, 5000ms));
    // The refresh is still waiting for the origin.
    Response during = get(refresh);
    EXPECT_EQ(during.status, 200);
    EXPECT_EQ(cache_status(during), "UPDATING") << during;
    EXPECT_EQ(made_by(during), 1);
    Response fresh;
    EXPECT_TRUE(wait_until(
        [&] {
            fresh = get(refresh);
            return cache_status(fresh) == "HIT";
        },
        6000ms, 50ms))
        << fresh;
    EXPECT_EQ(made_by(fresh), 2);
    EXPECT_EQ(count("upd"), 2) << "exactly one refresh";
}

TEST_F(CacheTest, StaleIfErrorFromTheResponseCoversAnErrorStatus) {
    Response first = get("/uri/sie?" + cc("max-age=1, stale-if-error=60"));
    ASSERT_EQ(first.status, 200);
    Response control = get("/uri/sie-none?" + cc("max-age=1"));
    ASSERT_EQ(control.status, 200);
    wait_past_one_second_lifetime();
    Response r = get("/uri/sie?status=500");
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "STALE") << r;
    EXPECT_EQ(r.body, first.body);
    EXPECT_EQ(count("sie"), 2) << "the origin was asked";
    // Without stale-if-error and without proxy_cache_use_stale, the error goes through.
    Response err = get("/uri/sie-none?status=500");
    EXPECT_EQ(err.status, 500) << err;
    EXPECT_NE(cache_status(err), "STALE");
}

TEST_F(CacheTest, UseStaleServesStaleForTheListedStatusesOnly) {
    Response first = get("/stale/listed?" + cc("max-age=1"));
    ASSERT_EQ(first.status, 200);
    wait_past_one_second_lifetime();
    Response r503 = get("/stale/listed?status=503");
    EXPECT_EQ(r503.status, 200) << r503;
    EXPECT_EQ(cache_status(r503), "STALE") << r503;
    EXPECT_EQ(r503.body, first.body);
    Response invalid = get("/stale-invalid");
    EXPECT_EQ(invalid.status, 200) << invalid;
    EXPECT_EQ(cache_status(invalid), "STALE") << "proxy_cache_use_stale invalid_header: " << invalid;
    EXPECT_EQ(invalid.body, first.body);
    Response r404 = get("/stale/listed?status=404");
    EXPECT_EQ(r404.status, 404) << "http_404 is not in proxy_cache_use_stale: " << r404;
    EXPECT_EQ(count("listed"), 3);
}

// proxy_cache_use_stale says when a stored entry may be served stale; it does not
// make storable a response that has no freshness, no validator and no
// proxy_cache_valid (which must not be stored at all), so there is nothing stale to
// serve when the origin then fails.
TEST_F(CacheTest, UseStaleDoesNotMakeAResponseWithoutFreshnessStorable) {
    for (std::string name : {"no-fresh-200", "no-fresh-404"}) {
        std::string status = name == "no-fresh-404" ? "?status=404" : "";
        Response first = get("/stale/" + name + status);
        ASSERT_EQ(first.status, name == "no-fresh-404" ? 404 : 200) << first;
        Response failed = get("/stale/" + name + "?status=500");
        EXPECT_EQ(failed.status, 500) << name << " was stored: " << failed;
        EXPECT_NE(cache_status(failed), "STALE") << failed;
        EXPECT_EQ(count(name), 2);
    }
}

TEST_F(CacheTest, UseStaleTimeoutServesStaleWhenTheOriginIsSlow) {
    Response first = get("/stale-timeout/slow?" + cc("max-age=1"));
    ASSERT_EQ(first.status, 200) << first;
    wait_past_one_second_lifetime();
    Response r = get("/stale-timeout/slow?delay=2000");  // proxy_read_timeout 300ms
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(cache_status(r), "STALE") << r;
    EXPECT_EQ(r.body, first.body);
}

TEST_F(CacheTest, StaleIsServedWhileTheOriginIsDown) {
    ASSERT_EQ(get("/flaky/down-use?" + cc("max-age=1")).status, 200);
    ASSERT_EQ(get("/flaky-plain/down-sie?" + cc("max-age=1, stale-if-error=60")).status, 200);
    ASSERT_EQ(get("/flaky-plain/down-none?" + cc("max-age=1")).status, 200);
    flaky_->stop();
    wait_past_one_second_lifetime();
    Response use_stale = get("/flaky/down-use");
    EXPECT_EQ(use_stale.status, 200) << use_stale;
    EXPECT_EQ(cache_status(use_stale), "STALE") << use_stale;
    EXPECT_EQ(made_by(use_stale), 1);
    Response sie = get("/flaky-plain/down-sie");
    EXPECT_EQ(sie.status, 200) << sie;
    EXPECT_EQ(cache_status(sie), "STALE") << sie;
    Response none = get("/flaky-plain/down-none");
    EXPECT_EQ(none.status, 502) << none;
    ASSERT_TRUE(flaky_->start());
}

// ---- invalidation by unsafe methods -------------------------------------------------------

TEST_F(CacheTest, SuccessfulUnsafeMethodsInvalidateTheirUri) {
    for (std::string m : {"POST", "PUT", "DELETE", "PATCH"}) {
        std::string name = "inv-" + m;
        std::string path = "/cache/" + name + "?" + cc("max-age=60");
        get(path);
        ASSERT_EQ(cache_status(get(path)), "HIT") << m;
        Response unsafe = method(m, path);
        EXPECT_EQ(unsafe.status, 200) << m << ": " << unsafe;
        EXPECT_THAT(unsafe.body, HasSubstr("\"method\":\"" + m + "\"")) << "forwarded, not served from cache";
        Response after = get(path);
        EXPECT_EQ(cache_status(after), "MISS") << m << ": " << after;
        EXPECT_EQ(count(name), 3) << m;
    }
}

TEST_F(CacheTest, AFailedUnsafeMethodInvalidatesNothing) {
    std::string path = "/cache/inv-failed?" + cc("max-age=60") + "&unsafe_status=500";
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    EXPECT_EQ(method("POST", path).status, 500);
    Response after = get(path);
    EXPECT_EQ(cache_status(after), "HIT") << after;
    EXPECT_EQ(made_by(after), 1);
}

TEST_F(CacheTest, UnsafeMethodsInvalidateSameOriginLocationAndContentLocation) {
    std::string loc_target = "/cache/inv-loc-target?" + cc("max-age=60");
    std::string cl_target = "/cache/inv-cl-target?" + cc("max-age=60");
    std::string foreign_target = "/cache/inv-foreign-target?" + cc("max-age=60");
    for (const std::string& p : {loc_target, cl_target, foreign_target}) {
        get(p);
        ASSERT_EQ(cache_status(get(p)), "HIT") << p;
    }
    // The POST's response names the targets; the test_upstream decodes h= once.
    Response post = method("POST", "/cache/inv-source?" + h("Location", loc_target) + "&" +
                                       h("Content-Location", cl_target));
    EXPECT_EQ(post.status, 200) << post;
    EXPECT_EQ(cache_status(get(loc_target)), "MISS") << "Location";
    EXPECT_EQ(cache_status(get(cl_target)), "MISS") << "Content-Location";
    // Another origin's URI is never invalidated (RFC 9111 4.4).
    Response foreign = method("POST", "/cache/inv-source2?" + h("Location", "http://other.example" + foreign_target));
    EXPECT_EQ(foreign.status, 200) << foreign;
    Response still = get(foreign_target);
    EXPECT_EQ(cache_status(still), "HIT") << still;
}

// ---- min_uses, bypass, no_cache ----------------------------------------------------------

TEST_F(CacheTest, MinUsesStoresOnTheThirdRequest) {
    std::string path = "/mu/three?" + cc("max-age=60");
    for (int i = 1; i <= 3; ++i) {
        Response r = get(path);
        EXPECT_EQ(cache_status(r), "MISS") << i << ": " << r;
        EXPECT_EQ(made_by(r), i);
    }
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 3);
    EXPECT_EQ(count("three"), 3);
}

TEST_F(CacheTest, BypassGoesToTheOriginAndStoresTheResponse) {
    std::string path = "/bp/bypass?" + cc("max-age=60");
    get(path);
    EXPECT_EQ(cache_status(get(path)), "HIT");
    Response bypassed = get(path, "X-Bypass: 1\r\n");
    EXPECT_EQ(cache_status(bypassed), "BYPASS") << bypassed;
    EXPECT_EQ(made_by(bypassed), 2);
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 2) << "the bypassing response replaced the entry";
    // "0" and empty values do not bypass.
    EXPECT_EQ(cache_status(get(path, "X-Bypass: 0\r\n")), "HIT");
}

TEST_F(CacheTest, NoCacheKeepsTheResponseOutOfTheCache) {
    std::string path = "/bp/nostore?" + cc("max-age=60");
    Response first = get(path, "X-Nocache: 1\r\n");
    EXPECT_EQ(cache_status(first), "MISS") << first;
    Response second = get(path);
    EXPECT_EQ(cache_status(second), "MISS") << second;
    EXPECT_EQ(made_by(second), 2);
    Response third = get(path);
    EXPECT_EQ(cache_status(third), "HIT") << third;
    EXPECT_EQ(made_by(third), 2);
}

// ---- collapsed forwarding (one worker here; across workers in cache_process_test) -----

TEST_F(CacheTest, ConcurrentMissesMakeOneOriginRequestWithTheLock) {
    constexpr int kClients = 40;
    std::string path = "/lock/collapse?" + cc("max-age=60") + "&delay=1000";
    std::string request = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    std::vector<Conn> conns;
    for (int i = 0; i < kClients; ++i) {
        conns.emplace_back(port_);
        ASSERT_TRUE(conns.back().connected()) << conns.back().error();
    }
    std::vector<std::optional<Response>> answers(kClients);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i)
        threads.emplace_back([&, i] {
            while (!go) std::this_thread::yield();
            if (conns[i].send(request)) answers[i] = conns[i].read_response(15000ms);
        });
    go = true;
    for (auto& t : threads) t.join();
    int ok = 0;
    std::set<std::string> bodies;
    for (auto& a : answers)
        if (a && a->status == 200) {
            ++ok;
            bodies.insert(a->body);
        }
    EXPECT_EQ(ok, kClients);
    EXPECT_EQ(bodies.size(), 1u) << "every client got the one origin response";
    EXPECT_EQ(count("collapse"), 1);
}

TEST_F(CacheTest, CollapsedWaitersGetTheWholeLargeBody) {
    constexpr int kClients = 10;
    constexpr size_t kSize = 900000;  // under the default max_object (1m)
    std::string path = "/lock/large?" + cc("max-age=60") + "&size=" + std::to_string(kSize) + "&delay=500";
    std::vector<Response> answers(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i)
        threads.emplace_back([&, i] { answers[i] = cache::get(port_, path, "", 15000ms); });
    for (auto& t : threads) t.join();
    for (const Response& a : answers) {
        EXPECT_EQ(a.status, 200);
        EXPECT_EQ(a.body.size(), kSize);
        EXPECT_EQ(a.body, answers[0].body) << "a waiter got different bytes";
    }
    EXPECT_EQ(count("large"), 1);
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(hit.body, answers[0].body);
}

TEST_F(CacheTest, AfterTheLockTimeoutAWaiterForwardsButDoesNotStore) {
    std::string path = "/lock-timeout/lt?" + cc("max-age=60") + "&delay=1500";
    Response first, second;
    std::thread a([&] { first = cache::get(port_, path, "", 10000ms); });
    ASSERT_TRUE(wait_until([&] { return count("lt") >= 1; }, 5000ms));
    std::thread b([&] { second = cache::get(port_, path, "", 10000ms); });
    a.join();
    b.join();
    EXPECT_EQ(first.status, 200) << first;
    EXPECT_EQ(second.status, 200) << second;
    EXPECT_EQ(made_by(first), 1);
    EXPECT_EQ(made_by(second), 2) << "the waiter forwarded after proxy_cache_lock_timeout 300ms";
    Response hit = get(path);
    EXPECT_EQ(cache_status(hit), "HIT") << hit;
    EXPECT_EQ(made_by(hit), 1) << "the response of the request that timed out waiting is not stored";
    EXPECT_EQ(count("lt"), 2);
}

TEST_F(CacheTest, WaitersGoUpstreamWhenTheResponseIsNotStorable) {
    constexpr int kClients = 4;
    std::string path = "/lock/unstorable?" + cc("no-store") + "&delay=500";
    std::vector<Response> answers(kClients);
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i)
        threads.emplace_back([&, i] { answers[i] = cache::get(port_, path, "", 15000ms); });
    for (auto& t : threads) t.join();
    std::set<long> makers;
    for (const Response& a : answers) {
        EXPECT_EQ(a.status, 200) << a;
        makers.insert(made_by(a));
    }
    EXPECT_EQ(makers.size(), size_t(kClients)) << "a no-store response went to more than one client";
    EXPECT_EQ(count("unstorable"), kClients);
}

// ---- purge ----------------------------------------------------------------------------------

TEST_F(CacheTest, PurgeRemovesOneKey) {
    std::string path = "/purge/one?" + cc("max-age=60");
    std::string other = "/purge/one-other?" + cc("max-age=60");
    get(path);
    get(other);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    Response purged = purge(port_, path);
    EXPECT_EQ(purged.status, 204) << purged;
    EXPECT_EQ(count("one"), 1) << "PURGE is answered by the cache";
    Response after = get(path);
    EXPECT_EQ(cache_status(after), "MISS") << after;
    EXPECT_EQ(made_by(after), 2);
    EXPECT_EQ(cache_status(get(other)), "HIT") << "only that key";
}

TEST_F(CacheTest, PurgeRemovesEveryVariant) {
    std::string path = "/purge/variants?" + cc("max-age=60") + "&" + h("Vary", "Accept-Language");
    for (std::string lang : {"en", "de"}) get(path, "Accept-Language: " + lang + "\r\n");
    ASSERT_EQ(cache_status(get(path, "Accept-Language: de\r\n")), "HIT");
    EXPECT_EQ(purge(port_, path).status, 204);
    for (std::string lang : {"en", "de"}) {
        Response r = get(path, "Accept-Language: " + lang + "\r\n");
        EXPECT_EQ(cache_status(r), "MISS") << lang << ": " << r;
    }
    EXPECT_EQ(count("variants"), 4);
}

TEST_F(CacheTest, PurgeWithAStarRemovesEveryKeyWithThePrefix) {
    std::vector<std::string> inside = {"/purge/pre/a?" + cc("max-age=60"), "/purge/pre/b?" + cc("max-age=60"),
                                       "/purge/pre/c/d?" + cc("max-age=60")};
    std::string outside = "/purge/prx?" + cc("max-age=60");
    for (const auto& p : inside) get(p);
    get(outside);
    EXPECT_EQ(cache_status(get(inside[0])), "HIT");
    Response purged = purge(port_, "/purge/pre/*");
    EXPECT_EQ(purged.status, 204) << purged;
    for (const auto& p : inside) EXPECT_NE(cache_status(get(p)), "HIT") << p;
    EXPECT_EQ(cache_status(get(outside)), "HIT") << "outside the prefix";
}

TEST_F(CacheTest, ADeniedPurgeRemovesNothing) {
    std::string path = "/pk/x?id=7&" + cc("max-age=60");
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    Response denied = purge(port_, "/pk-denied/x?id=7");
    EXPECT_EQ(denied.status, 403) << denied;
    EXPECT_EQ(cache_status(get(path)), "HIT") << "the denied PURGE removed the entry";
    Response allowed = purge(port_, "/pk/anything?id=7");
    EXPECT_EQ(allowed.status, 204) << allowed;
    EXPECT_EQ(cache_status(get(path)), "MISS");
}

TEST_F(CacheTest, PurgeOfAnAbsentKeyIs204) {
    Response r = purge(port_, "/purge/never-stored");
    EXPECT_EQ(r.status, 204) << r;
    EXPECT_EQ(count("never-stored"), 0);
}

TEST_F(CacheTest, PurgeWithStringsPurgesOnlyWhenOneIsSet) {
    std::string path = "/purge-str/ps?" + cc("max-age=60");
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    // No X-Purge: the PURGE is proxied like any request.
    Response proxied = purge(port_, path);
    EXPECT_EQ(proxied.status, 200) << proxied;
    EXPECT_THAT(proxied.body, HasSubstr("\"method\":\"PURGE\"")) << proxied;
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    long before = count("ps");
    Response purged = send_method(port_, "PURGE", path, "X-Purge: 1\r\n");
    EXPECT_EQ(purged.status, 204) << purged;
    EXPECT_EQ(count("ps"), before) << "a purge is answered by the cache";
    EXPECT_EQ(cache_status(get(path)), "MISS");
}

// ---- the zone's limits -------------------------------------------------------------------

long vm_rss_kib(pid_t pid) {
    std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

TEST_F(CacheTest, EvictionKeepsTheZoneWithinMaxSize) {
    // keys_zone=small max_size=1m: 40 objects of 64 KiB do not fit.
    constexpr int kObjects = 40;
    constexpr size_t kSize = 64 * 1024;
    auto object = [](int i) { return "/ev/o" + std::to_string(i) + "?" + cc("max-age=600") + "&size=65536"; };
    for (int i = 0; i < kObjects; ++i) {
        Response r = get(object(i));
        ASSERT_EQ(r.status, 200) << i << ": " << r;
        ASSERT_GE(r.body.size(), kSize);
    }
    Response last = get(object(kObjects - 1));
    EXPECT_EQ(cache_status(last), "HIT") << "the most recent object stays";
    Response early = get(object(0));
    EXPECT_EQ(early.status, 200);
    EXPECT_EQ(cache_status(early), "MISS") << "the least recently used object was evicted";
    EXPECT_EQ(made_by(early), 2);

    pid_t worker = std::stoi("0" + early.header("X-Worker"));
    ASSERT_GT(worker, 0) << early;
    long before = vm_rss_kib(worker);
    ASSERT_GT(before, 0);
    for (int pass = 0; pass < 5; ++pass)
        for (int i = 0; i < kObjects; ++i) {
            Response r = get(object(i));
            ASSERT_EQ(r.status, 200) << pass << "/" << i << ": " << r;
            ASSERT_GE(r.body.size(), kSize);
        }
    long after = vm_rss_kib(worker);
    // 5 x 2.5 MiB went through the 1 MiB zone.
    EXPECT_LT(after - before, 6 * 1024) << "RSS " << before << " kB -> " << after << " kB";
}

TEST_F(CacheTest, ObjectsOverMaxObjectAreServedButNotStored) {
    std::string path = "/ev/big?" + cc("max-age=600") + "&size=200000";
    Response a = get(path);
    Response b = get(path);
    EXPECT_EQ(a.status, 200);
    EXPECT_GE(a.body.size(), 200000u);
    EXPECT_EQ(b.body.size(), a.body.size());
    EXPECT_NE(cache_status(b), "HIT") << "max_object=128k";
    EXPECT_EQ(count("big"), 2);
}

TEST_F(CacheTest, MoreKeysThanTheKeysZoneHoldsKeepWorking) {
    // keys_zone=few:8k has records for a few dozen entries; 300 keys go through it.
    constexpr int kKeys = 300;
    auto path = [](int i) { return "/few/f" + std::to_string(i) + "?" + cc("max-age=600"); };
    for (int i = 0; i < kKeys; ++i) {
        Response r = get(path(i));
        ASSERT_EQ(r.status, 200) << i << ": " << r;
        ASSERT_THAT(r.body, HasSubstr("/cache/f" + std::to_string(i) + "?")) << i;
    }
    Response last = get(path(kKeys - 1));
    EXPECT_EQ(cache_status(last), "HIT") << last;
    Response first = get(path(0));
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(cache_status(first), "MISS") << first;
}

TEST_F(CacheTest, A204IsStoredAndServedWithoutABody) {
    std::string path = "/cache/no-content?" + cc("max-age=60") + "&status=204";
    Conn c(port_);
    std::string raw = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(c.send(raw));
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 204) << *r;
        EXPECT_EQ(r->body, "");
        if (i > 0) {
            EXPECT_EQ(cache_status(*r), "HIT") << *r;
        }
    }
    // Nothing stray followed the 204s on the connection.
    ASSERT_TRUE(c.send("GET /cache/after-204?" + cc("max-age=60") + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    auto after = c.read_response();
    ASSERT_TRUE(after) << c.error();
    EXPECT_EQ(after->status, 200) << *after;
    EXPECT_EQ(count("no-content"), 1);
}

// A client reads a large hit slowly while its entry is purged and the zone is
// refilled with other objects: the bytes it gets are still the entry's (an entry
// being served is kept until the last reader is done).
TEST_F(CacheTest, ASlowReaderOfAPurgedEntryGetsItsOwnBytes) {
    constexpr size_t kSize = 6 << 20;  // more than the daemon's socket send buffer takes
    auto object = [](char c) {
        return "/big/" + std::string(1, c) + "?" + cc("max-age=600") + "&size=" + std::to_string(kSize) +
               "&pad=" + std::string(1, c);
    };
    Response a = cache::get(port_, object('a'), "", 30000ms);
    ASSERT_EQ(a.status, 200) << a.status;
    ASSERT_EQ(a.body.size(), kSize);

    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    int small = 16384;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string request = "GET " + object('a') + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), ssize_t(request.size()));
    std::string received;
    auto read_some = [&](Millis timeout) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, int(timeout.count())) <= 0) return false;
        char buf[65536];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return false;
        received.append(buf, size_t(n));
        return true;
    };
    for (int i = 0; i < 500 && received.find("\r\n\r\n") == std::string::npos; ++i)
        if (!read_some(5000ms)) break;
    ASSERT_NE(received.find("\r\n\r\n"), std::string::npos) << "no head";
    EXPECT_THAT(received.substr(0, received.find("\r\n\r\n")), HasSubstr("X-Cache-Status: HIT"));

    EXPECT_EQ(purge(port_, object('a')).status, 204);
    for (char c : {'b', 'c'}) {
        Response other = cache::get(port_, object(c), "", 30000ms);
        EXPECT_EQ(other.status, 200);
        EXPECT_EQ(other.body.size(), kSize);
    }
    for (int i = 0; i < 10000 && read_some(5000ms); ++i) {
    }
    ::close(fd);
    size_t body_at = received.find("\r\n\r\n") + 4;
    std::string body = received.substr(body_at);
    EXPECT_EQ(body.size(), kSize);
    EXPECT_TRUE(body == a.body) << "the slow reader got other bytes: " << std::count(body.begin(), body.end(), 'b')
                                << " b's and " << std::count(body.begin(), body.end(), 'c') << " c's";
}

TEST_F(CacheTest, InactiveEntriesAreDropped) {
    std::string path = "/brief/idle?" + cc("max-age=600");
    get(path);
    ASSERT_EQ(cache_status(get(path)), "HIT");
    std::this_thread::sleep_for(3500ms);  // inactive=2s
    Response r = get(path);
    EXPECT_EQ(cache_status(r), "MISS") << r;
    EXPECT_EQ(made_by(r), 2);
}

}  // namespace
}  // namespace sluice::test
