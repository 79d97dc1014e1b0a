// Faults of the process model under load (issue 8, "Faults under load"):
// a reload (HUP) every second for 30 s while clients keep sending, and a
// worker killed with SIGKILL while others serve, with the shared-memory
// zones (rate limits, cache) surviving it. Real daemon, real upstream,
// bounded runs on loopback.
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kGatewayConfig = R"(
worker_processes 2;
events { worker_connections 1024; }
http {
    access_log off;
    proxy_cache_path {{PREFIX}}/cache keys_zone=c:1m max_size=4m;
    limit_req_zone $binary_remote_addr zone=once:1m rate=1r/m;
    upstream be { server 127.0.0.1:{{UP}}; keepalive 8; }
    server {
        listen 127.0.0.1:{{PORT}};
        add_header X-Worker $pid always;
        add_header X-Cache-Status $upstream_cache_status always;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /cached/ {
            proxy_pass http://be/cache/;
            proxy_cache c;
            proxy_cache_valid 200 10m;
        }
        location /limited {
            limit_req zone=once;
            proxy_pass http://be;
        }
    }
}
)";

class FaultsProcessTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(up_.start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kGatewayConfig),
                                           ConfigVars{{"UP", up_.port()}});
        ASSERT_TRUE(daemon_->start());
        ASSERT_TRUE(wait_until([&] { return daemon_->worker_pids().size() == 2; }, kStartTimeout));
    }

    UpstreamProcess up_{{"--id", "origin"}};
    std::unique_ptr<Daemon> daemon_;
};

// One request on `conn`; the response, or nullopt when the connection failed.
std::optional<Response> ask(Conn& conn, std::string_view path) {
    std::string req = "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if (!conn.send(req)) return std::nullopt;
    return conn.read_response();
}

TEST_F(FaultsProcessTest, ReloadEverySecondForThirtySecondsUnderLoadFailsNoRequest) {
    LoadOptions options;
    options.port = daemon_->port();
    options.path = "/api/items";
    options.connections = 8;
    options.max_duration = 60s;
    // An old worker closes its idle keep-alive connections when it leaves; a
    // request crossing that close meets a reset before any byte of its
    // response, which RFC 9112 §9.3.1 lets a client retry.
    options.retry_reset_before_response = true;
    LoadLoop load(options);
    ASSERT_TRUE(load.wait_for_completed(200));

    constexpr int kReloads = 30;
    std::vector<pid_t> seen = daemon_->worker_pids();
    for (int i = 0; i < kReloads; ++i) {
        ASSERT_TRUE(daemon_->signal(SIGHUP));
        std::this_thread::sleep_for(1s);
        for (pid_t p : daemon_->worker_pids())
            if (std::find(seen.begin(), seen.end(), p) == seen.end()) seen.push_back(p);
    }
    uint64_t done = load.completed();
    EXPECT_TRUE(load.wait_for_completed(done + 200));
    LoadResult result = load.stop();
    EXPECT_EQ(result.failed, 0u) << result;
    EXPECT_GT(result.ok, 1000u) << result;
    // Every reload started new workers (2 per generation), and the old ones left.
    EXPECT_GE(seen.size(), size_t(2 * kReloads)) << "worker generations seen: " << seen.size();
    EXPECT_TRUE(wait_until([&] { return daemon_->worker_pids().size() == 2; }, kDefaultTimeout));
    EXPECT_FALSE(daemon_->error_log().find("exited on signal") != std::string::npos) << daemon_->error_log();
}

TEST_F(FaultsProcessTest, AKilledWorkerIsReplacedWhileTheOtherServesAndTheZonesSurvive) {
    // State in the shared zones before the kill: a cache entry, a used-up rate limit.
    auto first = http_get(daemon_->port(), "/cached/kept?h=X:1");
    ASSERT_TRUE(first);
    ASSERT_EQ(first->header("X-Cache-Status"), "MISS") << *first;
    auto limited = http_get(daemon_->port(), "/limited");
    ASSERT_TRUE(limited);
    ASSERT_EQ(limited->status, 200) << *limited;
    auto over = http_get(daemon_->port(), "/limited");
    ASSERT_TRUE(over);
    ASSERT_EQ(over->status, 503) << *over;

    // One kept-alive connection on each worker.
    std::vector<Conn> conns;
    std::vector<std::string> owner;
    for (int i = 0; i < 64 && (owner.size() < 2 || owner[0] == owner[1]); ++i) {
        Conn c(daemon_->port());
        auto r = ask(c, "/api/which");
        ASSERT_TRUE(r);
        std::string w = r->header("X-Worker");
        if (std::find(owner.begin(), owner.end(), w) != owner.end()) continue;
        owner.push_back(w);
        conns.push_back(std::move(c));
    }
    ASSERT_EQ(owner.size(), 2u) << "the connections all went to one worker";
    const pid_t victim = std::stoi(owner[0]);
    const pid_t survivor = std::stoi(owner[1]);

    // Load on fresh connections the whole time.
    LoadOptions options;
    options.port = daemon_->port();
    options.path = "/api/load";
    options.connections = 4;
    options.max_duration = 30s;
    options.retry_reset_before_response = true;
    LoadLoop load(options);
    ASSERT_TRUE(load.wait_for_completed(100));

    ASSERT_EQ(kill(victim, SIGKILL), 0);
    const auto killed_at = std::chrono::steady_clock::now();
    ASSERT_TRUE(wait_until(
        [&] {
            auto w = daemon_->worker_pids();
            return w.size() == 2 && std::find(w.begin(), w.end(), victim) == w.end();
        },
        kDefaultTimeout));
    const auto respawn_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at).count();
    std::cerr << "worker respawned after about " << respawn_ms << " ms\n";

    // The other worker's connection never noticed.
    for (int i = 0; i < 20; ++i) {
        auto r = ask(conns[1], "/api/still");
        ASSERT_TRUE(r) << conns[1].error();
        EXPECT_EQ(r->status, 200);
        EXPECT_EQ(r->header("X-Worker"), std::to_string(survivor));
    }
    // The killed worker's connection is gone, not hung.
    EXPECT_TRUE(conns[0].is_closed(kDefaultTimeout));

    uint64_t done = load.completed();
    EXPECT_TRUE(load.wait_for_completed(done + 200));
    LoadResult result = load.stop();
    // Connections the killed worker held die with it (at most the 4 of the
    // load, each once); everything else is answered.
    EXPECT_LE(result.failed, 4u) << result;
    EXPECT_GT(result.ok, 300u) << result;

    // The zones outlived the worker: the entry is still a hit in every worker,
    // and the spent limit still refuses.
    for (int i = 0; i < 10; ++i) {
        auto again = http_get(daemon_->port(), "/cached/kept?h=X:1");
        ASSERT_TRUE(again);
        EXPECT_EQ(again->header("X-Cache-Status"), "HIT") << *again;
        EXPECT_EQ(again->body, first->body);
    }
    auto still_over = http_get(daemon_->port(), "/limited");
    ASSERT_TRUE(still_over);
    EXPECT_EQ(still_over->status, 503) << *still_over;
    EXPECT_TRUE(daemon_->wait_for_log("worker process " + std::to_string(victim) + " exited on signal 9"));
}

}  // namespace
}  // namespace sluice::test
