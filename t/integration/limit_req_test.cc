// limit_req against the real daemon with four workers: the limit is global
// (shared memory, not per worker), excess requests within the burst are
// delayed, the RateLimit headers, several zones in one location, dry run,
// a full zone, a reload and a killed worker. Content is static files, which
// run after the Preaccess phase (a `return` would answer before it, as in
// nginx). Every loop is bounded in count and time; the bounds asserted are
// the limiter's arithmetic, never the machine's speed.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "harness.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kConfig = R"(
worker_processes 4;
events { worker_connections 512; }
http {
    access_log off;
    limit_req_status 429;
    limit_req_headers on;

    limit_req_zone $http_x_k zone=global:1m rate=20r/s;
    limit_req_zone $http_x_k zone=slow:1m rate=10r/s;
    limit_req_zone $http_x_k zone=minute:1m rate=6r/m;
    limit_req_zone $http_x_a zone=a:1m rate=1r/m;
    limit_req_zone $http_x_b zone=b:1m rate=1r/m;
    limit_req_zone $http_x_k zone=tiny:4k rate=1r/m;
    limit_req_zone $http_x_k zone=window:1m rate=3r/m algorithm=sliding_window;
    limit_req_zone $api_key_consumer zone=consumer:1m rate=1r/m;

    server {
        listen 127.0.0.1:{{PORT}};
        root {{PREFIX}}/html;
        add_header X-Limit-Status $limit_req_status always;

        location /global/ { limit_req zone=global burst=5 nodelay; }
        location /delay/  { limit_req zone=slow burst=5; }
        location /headers/ { limit_req zone=minute burst=1 nodelay; }
        location /multi/  { limit_req zone=a burst=2 nodelay; limit_req zone=b nodelay; }
        location /dry/    { limit_req zone=minute nodelay; limit_req_dry_run on; }
        location /tiny/   { limit_req zone=tiny nodelay; }
        location /window/ { limit_req zone=window; }
        location /consumer/ {
            auth_api_key on;
            auth_api_key_file conf/api_keys;
            limit_req zone=consumer burst=1 nodelay;
        }
    }
}
)";

constexpr int kGlobalRate = 20, kGlobalBurst = 5;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

class LimitReqTest : public ::testing::Test {
protected:
    LimitReqTest() : daemon_(std::string(kMainConfig) + std::string(kConfig)) {
        for (const char* dir : {"global", "delay", "headers", "multi", "dry", "tiny", "window", "consumer"})
            daemon_.dir().write(std::string("html/") + dir + "/index.html", "ok\n");
        // Workers started by root run as nobody and must reach the pages.
        for (const char* dir : {"", "html", "html/global", "html/delay", "html/headers", "html/multi", "html/dry",
                                "html/tiny", "html/window", "html/consumer"})
            chmod(daemon_.dir().path(dir).c_str(), 0755);
        // The consumer billing owns the keys "sekret" and "sekret2" (SHA-256).
        daemon_.dir().write("conf/api_keys",
                            "billing bb757689c39373a6cac9ef6ba55616c6249d7500ca4d443f1130c4766453a412\n"
                            "billing b67e4d27cbc683e95fe06df7695e5952fa9fa0ed6a8386bd16555bfbe517dc3b\n");
    }

    void SetUp() override { ASSERT_TRUE(daemon_.start()); }

    std::optional<Response> get(std::string_view path, std::string_view headers = "") {
        return http_get(daemon_.port(), path, headers);
    }
    int status(std::string_view path, std::string_view headers = "") {
        auto r = get(path, headers);
        return r ? r->status : -1;
    }

    // Keep-alive load on /global/ for one key; returns the 200s over the
    // measured interval and the interval.
    uint64_t global_load(std::string_view key, Millis duration, double& elapsed,
                         const std::function<void()>& midway = {}) {
        LoadOptions options;
        options.port = daemon_.port();
        options.path = "/global/";
        options.extra_headers = "X-K: " + std::string(key) + "\r\n";
        options.connections = 16;
        options.max_requests = 200'000;
        options.max_duration = duration;
        options.retry_reset_before_response = true;
        auto start = Clock::now();
        LoadLoop load(options);
        if (midway) midway();
        std::this_thread::sleep_until(start + duration);
        LoadResult result = load.stop();
        elapsed = seconds_since(start);
        EXPECT_GT(result.by_status[429], 0u) << result;
        return result.by_status[200];
    }

    ::testing::AssertionResult reload() {
        std::vector<pid_t> old = daemon_.worker_pids();
        if (!daemon_.signal(SIGHUP)) return ::testing::AssertionFailure() << "cannot signal the master";
        bool replaced = wait_until(
            [&] {
                std::vector<pid_t> now = daemon_.worker_pids();
                if (now.size() != 4) return false;
                for (pid_t p : now)
                    if (std::count(old.begin(), old.end(), p)) return false;
                return true;
            },
            kStartTimeout);
        if (!replaced) return ::testing::AssertionFailure() << "the old workers are still running";
        return ::testing::AssertionSuccess();
    }

    Daemon daemon_;
};

TEST_F(LimitReqTest, TheLimitIsGlobalAcrossWorkers) {
    double elapsed = 0;
    uint64_t passed = global_load("global", Millis{2000}, elapsed);
    // Per-worker limits would let about four times this through.
    EXPECT_LE(double(passed), kGlobalRate * elapsed + kGlobalBurst + 1) << "over " << elapsed << " s";
    EXPECT_GE(passed, uint64_t(kGlobalBurst + 1));
}

TEST_F(LimitReqTest, AnEmptyKeyIsNotLimited) {
    Conn conn(daemon_.port());
    for (int i = 0; i < 40; ++i) {
        ASSERT_TRUE(conn.send("GET /global/ HTTP/1.1\r\nHost: localhost\r\n\r\n"));
        auto r = conn.read_response();
        ASSERT_TRUE(r) << conn.error();
        ASSERT_EQ(r->status, 200) << "request " << i;
        EXPECT_FALSE(r->has("RateLimit")) << "no limit applied, nothing to report";
    }
}

TEST_F(LimitReqTest, ExcessWithinTheBurstIsDelayedNotRejected) {
    // 10 r/s, burst=5: four requests at once are served 0, 100, 200 and
    // 300 ms apart.
    std::vector<Conn> conns;
    for (int i = 0; i < 4; ++i) conns.emplace_back(daemon_.port());
    auto start = Clock::now();
    for (auto& c : conns) ASSERT_TRUE(c.send("GET /delay/ HTTP/1.1\r\nHost: localhost\r\nX-K: d\r\n\r\n"));
    double slowest = 0;
    int delayed = 0;
    for (auto& c : conns) {
        auto r = c.read_response();
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 200);
        delayed += r->header("X-Limit-Status") == "DELAYED";
        slowest = std::max(slowest, seconds_since(start));
    }
    // Three are delayed, unless the machine is so slow that a request
    // arrived after its turn.
    EXPECT_GE(delayed, 1);
    EXPECT_LE(delayed, 3);
    // The requests reach the workers within a few ms of each other: the
    // last one waits three intervals, less that spread.
    EXPECT_GE(slowest, 0.25);
}

TEST_F(LimitReqTest, HeadersOnPassAndOnReject) {
    auto first = get("/headers/", "X-K: h\r\n");
    ASSERT_TRUE(first);
    EXPECT_EQ(first->status, 200);
    EXPECT_EQ(first->header("X-Limit-Status"), "PASSED");
    EXPECT_EQ(first->header("RateLimit-Policy"), "\"minute\";q=6;w=60");
    EXPECT_EQ(first->header("RateLimit"), "\"minute\";r=1;t=10");
    EXPECT_EQ(first->header("X-RateLimit-Limit"), "6");
    EXPECT_EQ(first->header("X-RateLimit-Remaining"), "1");
    EXPECT_EQ(first->header("X-RateLimit-Reset"), "10");
    EXPECT_FALSE(first->has("Retry-After"));

    auto second = get("/headers/", "X-K: h\r\n");
    ASSERT_TRUE(second);
    EXPECT_EQ(second->status, 200);
    EXPECT_EQ(second->header("X-RateLimit-Remaining"), "0");

    auto third = get("/headers/", "X-K: h\r\n");
    ASSERT_TRUE(third);
    EXPECT_EQ(third->status, 429);
    EXPECT_EQ(third->header("X-Limit-Status"), "REJECTED");
    EXPECT_EQ(third->header("RateLimit"), "\"minute\";r=0;t=20");
    EXPECT_EQ(third->header("X-RateLimit-Remaining"), "0");
    EXPECT_EQ(third->header("Retry-After"), "10");
    EXPECT_EQ(third->count("Retry-After"), 1);
}

TEST_F(LimitReqTest, EveryZoneOfALocationMustPassAndRejectionsCostNothing) {
    // Zone a: 3 requests per key (burst=2); zone b: 1 per key.
    EXPECT_EQ(status("/multi/", "X-A: a1\r\nX-B: b1\r\n"), 200);
    EXPECT_EQ(status("/multi/", "X-A: a1\r\nX-B: b2\r\n"), 200);
    auto rejected = get("/multi/", "X-A: a1\r\nX-B: b1\r\n");  // b1 is used up
    ASSERT_TRUE(rejected);
    EXPECT_EQ(rejected->status, 429);
    EXPECT_EQ(rejected->header("RateLimit"), "\"b\";r=0;t=60") << "the zone that rejected";
    // The rejection did not charge a1: its third request passes, the fourth does not.
    auto third = get("/multi/", "X-A: a1\r\nX-B: b3\r\n");
    ASSERT_TRUE(third);
    EXPECT_EQ(third->status, 200);
    EXPECT_EQ(third->header("RateLimit-Policy"), "\"a\";q=1;w=60, \"b\";q=1;w=60");
    EXPECT_EQ(status("/multi/", "X-A: a1\r\nX-B: b4\r\n"), 429);
}

TEST_F(LimitReqTest, DryRunOnlyReports) {
    std::vector<std::string> seen;
    for (int i = 0; i < 3; ++i) {
        auto r = get("/dry/", "X-K: dry\r\n");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200);
        seen.push_back(r->header("X-Limit-Status"));
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"PASSED", "REJECTED_DRY_RUN", "REJECTED_DRY_RUN"}));
    EXPECT_TRUE(daemon_.wait_for_log("limiting requests, dry run"));
}

TEST_F(LimitReqTest, SlidingWindowQuota) {
    std::vector<int> statuses;
    for (int i = 0; i < 5; ++i) statuses.push_back(status("/window/", "X-K: w\r\n"));
    EXPECT_EQ(statuses, (std::vector<int>{200, 200, 200, 429, 429}));
}

TEST_F(LimitReqTest, AKeyThatAuthenticationSetsIsLimitedAfterAccess) {
    // $api_key_consumer is empty in the Preaccess phase; the limit applies
    // once auth_api_key has named the consumer, whichever key it used.
    EXPECT_EQ(status("/consumer/", "X-API-Key: sekret\r\n"), 200);
    EXPECT_EQ(status("/consumer/", "X-API-Key: sekret2\r\n"), 200);
    auto r = get("/consumer/", "X-API-Key: sekret\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429);
    EXPECT_EQ(r->header("RateLimit"), "\"consumer\";r=0;t=120");
    // Without a key: 401 from auth_api_key, not limited.
    auto anonymous = get("/consumer/");
    ASSERT_TRUE(anonymous);
    EXPECT_EQ(anonymous->status, 401);
    EXPECT_FALSE(anonymous->has("RateLimit"));
}

TEST_F(LimitReqTest, AFullZoneEvictsWithoutErrors) {
    // 4k holds about 160 keys; 600 keys, one request each, all pass.
    Conn conn(daemon_.port());
    for (int i = 0; i < 600; ++i) {
        std::string req = "GET /tiny/ HTTP/1.1\r\nHost: localhost\r\nX-K: key-" + std::to_string(i) + "\r\n\r\n";
        ASSERT_TRUE(conn.send(req));
        auto r = conn.read_response();
        ASSERT_TRUE(r) << conn.error();
        ASSERT_EQ(r->status, 200) << "key " << i;
    }
    EXPECT_TRUE(daemon_.wait_for_log("limit_req zone \"tiny\" is full"));
    // Limiting still works for a key in the table.
    EXPECT_EQ(status("/tiny/", "X-K: key-599\r\n"), 429);
    std::string log = daemon_.error_log();
    EXPECT_EQ(log.find("[alert]"), std::string::npos) << log;
    EXPECT_EQ(log.find("[crit]"), std::string::npos) << log;
}

TEST_F(LimitReqTest, AReloadKeepsTheCounters) {
    EXPECT_EQ(status("/headers/", "X-K: reload\r\n"), 200);
    EXPECT_EQ(status("/headers/", "X-K: reload\r\n"), 200);
    EXPECT_EQ(status("/headers/", "X-K: reload\r\n"), 429);
    ASSERT_TRUE(reload());
    auto r = get("/headers/", "X-K: reload\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429) << "the new workers see the old counters";
    EXPECT_EQ(status("/headers/", "X-K: fresh\r\n"), 200);
}

TEST_F(LimitReqTest, AKilledWorkerLeavesTheLimitCorrect) {
    double elapsed = 0;
    uint64_t passed = global_load("kill", Millis{2500}, elapsed, [&] {
        std::this_thread::sleep_for(Millis{500});
        std::vector<pid_t> workers = daemon_.worker_pids();
        ASSERT_EQ(workers.size(), 4u);
        kill(workers[1], SIGKILL);
        // The master starts a replacement; the others never stop limiting.
        EXPECT_TRUE(wait_until(
            [&] {
                auto now = daemon_.worker_pids();
                return now.size() == 4 && std::count(now.begin(), now.end(), workers[1]) == 0;
            },
            kStartTimeout));
    });
    EXPECT_LE(double(passed), kGlobalRate * elapsed + kGlobalBurst + 1) << "over " << elapsed << " s";
    // And afterwards a quick run of requests still meets the limit.
    Conn conn(daemon_.port());
    int rejected = 0;
    for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(conn.send("GET /global/ HTTP/1.1\r\nHost: localhost\r\nX-K: kill\r\n\r\n"));
        auto r = conn.read_response();
        ASSERT_TRUE(r) << conn.error();
        rejected += r->status == 429;
    }
    EXPECT_GT(rejected, 0);
}

// Configuration errors name the file and line, as `sluice -t` prints them.
TEST(LimitReqConfigTest, ErrorsNameTheLine) {
    struct Case {
        std::string http_body;
        std::string message;
    };
    const std::vector<Case> cases = {
        {"server { listen 127.0.0.1:{{PORT}}; location / { limit_req zone=nope; } }",
         "unknown limit_req_zone \"nope\""},
        {"limit_req_zone $remote_addr zone=z:1m rate=fast;", "invalid rate \"fast\""},
        {"limit_req_zone $remote_addr zone=z:1k rate=1r/s;", "zone \"z\" is too small"},
        {"limit_req_zone $remote_addr zone=z:1m rate=1r/s algorithm=fifo;", "invalid algorithm \"fifo\""},
        {"limit_req_zone $remote_addr zone=z:1m rate=1r/s; limit_req zone=z nodelay delay=2;",
         "\"nodelay\" and \"delay\" are mutually exclusive"},
        {"limit_req_zone $remote_addr zone=z:1m rate=1r/s; limit_req zone=z; limit_req zone=z burst=2;",
         "limit_req \"z\" is duplicate"},
        {"limit_req_status 200;", "value must be between 400 and 599"},
    };
    for (const Case& c : cases) {
        Daemon daemon(std::string(kMainConfig) + "events { }\nhttp {\n" + c.http_body + "\n}\n");
        CommandResult result = daemon.run_cli({"-t"});
        EXPECT_NE(result.exit_code, 0) << c.http_body;
        EXPECT_NE(result.output.find(c.message), std::string::npos) << result.output;
        EXPECT_NE(result.output.find("sluice.conf:"), std::string::npos) << result.output;
    }
}

}  // namespace
}  // namespace sluice::test
