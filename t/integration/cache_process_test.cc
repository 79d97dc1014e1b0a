// The response cache (issue 6) across processes: entries live in shared memory,
// so a response stored by one worker is a hit in the others, collapsed
// forwarding holds across workers, a reload (HUP) keeps the entries, and
// configuration errors name file and line. See cache_test.cc for the semantics
// against one worker, and cache_test.h for the origin's /cache/ resources.
#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <atomic>
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

constexpr std::string_view kWorkersConfig = R"(
worker_processes 4;
events { worker_connections 1024; }
http {
    proxy_cache_path {{PREFIX}}/cache keys_zone=shared:1m max_size=8m;
    proxy_cache_path {{PREFIX}}/tiny keys_zone=tiny:1m max_size=512k;
    upstream be { server 127.0.0.1:{{UP}}; keepalive 8; }
    server {
        listen 127.0.0.1:{{PORT}} reuseport;
        add_header X-Cache-Status $upstream_cache_status always;
        add_header X-Worker $pid always;
        location /c/ { proxy_cache shared; proxy_pass http://be/cache/; }
        location /lock/ { proxy_cache shared; proxy_cache_lock on; proxy_pass http://be/cache/; }
        location /t/ { proxy_cache tiny; proxy_pass http://be/cache/; }
    }
}
)";

class CacheWorkersTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(up_.start());
        daemon_ = std::make_unique<Daemon>(std::string(kMainConfig) + std::string(kWorkersConfig),
                                           ConfigVars{{"UP", up_.port()}});
        ASSERT_TRUE(daemon_->start());
        ASSERT_TRUE(wait_until([&] { return daemon_->worker_pids().size() >= 4; }, kStartTimeout));
    }
    long count(std::string_view name) { return origin_count(up_.port(), "/cache/" + std::string(name)); }

    UpstreamProcess up_{{"--id", "origin"}};
    std::unique_ptr<Daemon> daemon_;
};

TEST_F(CacheWorkersTest, AnEntryStoredByOneWorkerIsAHitInTheOthers) {
    std::string path = "/c/shared?" + cc("max-age=60");
    Response first = get(daemon_->port(), path);
    ASSERT_EQ(first.status, 200) << first;
    EXPECT_EQ(cache_status(first), "MISS");
    // Once the entry is stored, every worker serves it.
    Response stored;
    ASSERT_TRUE(wait_until(
        [&] {
            stored = get(daemon_->port(), path);
            return cache_status(stored) == "HIT";
        },
        5000ms));
    long origin = count("shared");
    std::set<std::string> workers;
    constexpr int kRequests = 120;
    int hits = 0;
    for (int i = 0; i < kRequests; ++i) {
        Response r = get(daemon_->port(), path);  // a new connection each: reuseport spreads them
        ASSERT_EQ(r.status, 200) << r;
        workers.insert(r.header("X-Worker"));
        hits += cache_status(r) == "HIT";
        EXPECT_EQ(r.body, stored.body) << r;
    }
    ASSERT_GE(workers.size(), 2u) << "the connections all went to one worker: the test proves nothing";
    EXPECT_EQ(hits, kRequests);
    EXPECT_EQ(count("shared"), origin);
}

// The entry is committed before the last byte of the response that fills it
// reaches the client: a client that got the whole response and asks again, in
// whatever worker, gets a hit.
TEST_F(CacheWorkersTest, AResponseIsStoredByTheTimeItsClientHasIt) {
    constexpr int kKeys = 60;
    int misses = 0;
    std::string first_miss;
    for (int i = 0; i < kKeys; ++i) {
        std::string name = "soon-" + std::to_string(i);
        std::string path = "/c/" + name + "?" + cc("max-age=60");
        Response fill = get(daemon_->port(), path);
        ASSERT_EQ(fill.status, 200) << fill;
        Response next = get(daemon_->port(), path);
        if (cache_status(next) != "HIT") {
            if (misses++ == 0) {
                std::ostringstream out;
                out << "key " << name << ": filled by worker " << fill.header("X-Worker") << ", then " << next;
                first_miss = out.str();
            }
        }
    }
    EXPECT_EQ(misses, 0) << first_miss;
}

TEST_F(CacheWorkersTest, HundredConcurrentMissesMakeOneOriginRequest) {
    constexpr int kClients = 100;
    std::string request = "GET /lock/hundred?" + cc("max-age=60") +
                          "&delay=1000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    std::vector<Conn> conns;
    conns.reserve(kClients);
    for (int i = 0; i < kClients; ++i) {
        conns.emplace_back(daemon_->port());
        ASSERT_TRUE(conns.back().connected()) << conns.back().error();
    }
    std::vector<std::optional<Response>> answers(kClients);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < kClients; ++i)
        threads.emplace_back([&, i] {
            while (!go) std::this_thread::yield();
            if (conns[i].send(request)) answers[i] = conns[i].read_response(20000ms);
        });
    go = true;
    for (auto& t : threads) t.join();
    int ok = 0;
    std::set<std::string> bodies, workers;
    for (auto& a : answers)
        if (a && a->status == 200) {
            ++ok;
            bodies.insert(a->body);
            workers.insert(a->header("X-Worker"));
        }
    EXPECT_EQ(ok, kClients);
    EXPECT_EQ(bodies.size(), 1u) << "every client got the one origin response";
    EXPECT_GE(workers.size(), 2u) << "answered by one worker only";
    EXPECT_EQ(count("hundred"), 1);
}

// Four workers store, serve and evict in one small zone at once: every answer is
// the whole object it was asked for, its head and body from the same response.
TEST_F(CacheWorkersTest, ConcurrentFillsAndEvictionsServeIntactObjects) {
    constexpr int kThreads = 8;
    constexpr int kRequestsPerThread = 150;
    constexpr int kKeys = 30;  // 30 objects of 16..45 KiB: about twice the 512k zone
    auto size_of = [](int key) { return size_t(16 * 1024 + key * 1024); };
    auto path_of = [&](int key) {
        return "/t/k" + std::to_string(key) + "?" + cc("max-age=600") + "&size=" + std::to_string(size_of(key));
    };
    std::atomic<int> bad{0}, hits{0};
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            uint32_t x = 2463534242u + uint32_t(t) * 7919u;
            for (int i = 0; i < kRequestsPerThread; ++i) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                int key = int(x % kKeys);
                Response r = cache::get(daemon_->port(), path_of(key), "", 10000ms);
                bool ok = r.status == 200 && r.body.size() == size_of(key) &&
                          r.body.find("\"uri\":\"/cache/k" + std::to_string(key) + "?") != std::string::npos &&
                          r.header("X-Origin-Count") == std::to_string(made_by(r));
                if (!ok) {
                    if (bad++ == 0 || errors[t].empty()) {
                        std::ostringstream out;
                        out << "key " << key << ": " << r;
                        errors[t] = out.str().substr(0, 600);
                    }
                }
                hits += cache_status(r) == "HIT";
            }
        });
    for (auto& t : threads) t.join();
    std::string first_error;
    for (const auto& e : errors)
        if (!e.empty()) first_error = e;
    EXPECT_EQ(bad.load(), 0) << first_error;
    EXPECT_GT(hits.load(), 0);
}

// A worker killed while it holds a key's fill lock: after proxy_cache_lock_age the
// lock lapses and the next request for the key goes upstream instead of waiting for
// proxy_cache_lock_timeout (60 s here).
TEST(CacheLockTest, ALockOfAKilledWorkerLapsesAfterLockAge) {
    UpstreamProcess up({"--id", "origin"});
    ASSERT_TRUE(up.start());
    Daemon daemon(std::string(kMainConfig) + R"(
events { }
http {
    proxy_cache_path {{PREFIX}}/cache keys_zone=z:1m max_size=4m;
    server {
        listen 127.0.0.1:{{PORT}};
        add_header X-Cache-Status $upstream_cache_status always;
        location /la/ {
            proxy_cache z;
            proxy_cache_lock on;
            proxy_cache_lock_age 1s;
            proxy_cache_lock_timeout 60s;
            proxy_pass http://127.0.0.1:{{UP}}/cache/;
        }
    }
}
)",
                  {{"UP", up.port()}});
    ASSERT_TRUE(daemon.start());
    std::vector<pid_t> workers;
    ASSERT_TRUE(wait_until([&] { return (workers = daemon.worker_pids()).size() == 1; }, kStartTimeout));
    std::string path = "/la/dead?" + cc("max-age=60") + "&delay=1500";
    Conn victim(daemon.port());
    ASSERT_TRUE(victim.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    ASSERT_TRUE(wait_until([&] { return origin_count(up.port(), "/cache/dead") == 1; }, 5000ms));
    ASSERT_EQ(kill(workers[0], SIGKILL), 0);
    ASSERT_TRUE(wait_until(
        [&] {
            std::vector<pid_t> now = daemon.worker_pids();
            return now.size() == 1 && now[0] != workers[0];
        },
        kStartTimeout))
        << "no new worker";
    Response r = get(daemon.port(), path, "", 20000ms);
    EXPECT_EQ(r.status, 200) << r;
    EXPECT_EQ(made_by(r), 2) << r;
    EXPECT_EQ(origin_count(up.port(), "/cache/dead"), 2);
}

// ---- reload ---------------------------------------------------------------------------

constexpr std::string_view kReloadConfig = R"(
events { }
http {
    proxy_cache_path {{PREFIX}}/cache keys_zone=kept:1m max_size=4m;
    upstream be { server 127.0.0.1:{{UP}}; }
    server {
        listen 127.0.0.1:{{PORT}};
        add_header X-Cache-Status $upstream_cache_status always;
        location /c/ { proxy_cache kept; proxy_pass http://be/cache/; }
        {{EXTRA}}
    }
}
)";

TEST(CacheReloadTest, AReloadKeepsTheEntries) {
    UpstreamProcess up({"--id", "origin"});
    ASSERT_TRUE(up.start());
    auto config = [](std::string_view extra) {
        std::string c = std::string(kMainConfig) + std::string(kReloadConfig);
        c.replace(c.find("{{EXTRA}}"), 9, extra);
        return c;
    };
    Daemon daemon(config(""), {{"UP", up.port()}});
    ASSERT_TRUE(daemon.start());
    std::string path = "/c/reload?" + cc("max-age=600");
    Response first = get(daemon.port(), path);
    ASSERT_EQ(first.status, 200) << first;
    ASSERT_EQ(cache_status(get(daemon.port(), path)), "HIT");

    std::vector<pid_t> old = daemon.worker_pids();
    daemon.write_config(config("location = /added { return 200 \"new config\\n\"; }"));
    CommandResult reload = daemon.run_cli({"-s", "reload"});
    ASSERT_EQ(reload.exit_code, 0) << reload.output;
    ASSERT_TRUE(wait_until(
        [&] {
            std::vector<pid_t> now = daemon.worker_pids();
            if (now.empty()) return false;
            for (pid_t p : now)
                if (std::count(old.begin(), old.end(), p)) return false;
            return true;
        },
        kStartTimeout))
        << "the old workers are still running";
    ASSERT_EQ(get(daemon.port(), "/added").status, 200) << "the new configuration is not in use";

    Response after = get(daemon.port(), path);
    EXPECT_EQ(after.status, 200) << after;
    EXPECT_EQ(cache_status(after), "HIT") << after;
    EXPECT_EQ(after.body, first.body);
    EXPECT_EQ(origin_count(up.port(), "/cache/reload"), 1);
}

// A zone whose size changes is laid out anew at the reload: the entries go, and
// the cache keeps working.
TEST(CacheReloadTest, AReloadThatResizesTheZoneStartsItEmpty) {
    UpstreamProcess up({"--id", "origin"});
    ASSERT_TRUE(up.start());
    auto config = [](std::string_view max_size) {
        std::string c = std::string(kMainConfig) + std::string(kReloadConfig);
        c.replace(c.find("{{EXTRA}}"), 9, "");
        c.replace(c.find("max_size=4m"), 11, "max_size=" + std::string(max_size));
        return c;
    };
    Daemon daemon(config("4m"), {{"UP", up.port()}});
    ASSERT_TRUE(daemon.start());
    std::string path = "/c/resized?" + cc("max-age=600");
    ASSERT_EQ(get(daemon.port(), path).status, 200);
    ASSERT_EQ(cache_status(get(daemon.port(), path)), "HIT");

    std::vector<pid_t> old = daemon.worker_pids();
    daemon.write_config(config("8m"));
    CommandResult reload = daemon.run_cli({"-s", "reload"});
    ASSERT_EQ(reload.exit_code, 0) << reload.output;
    ASSERT_TRUE(wait_until(
        [&] {
            std::vector<pid_t> now = daemon.worker_pids();
            if (now.empty()) return false;
            for (pid_t p : now)
                if (std::count(old.begin(), old.end(), p)) return false;
            return true;
        },
        kStartTimeout));
    Response after = get(daemon.port(), path);
    EXPECT_EQ(after.status, 200) << after;
    EXPECT_EQ(cache_status(after), "MISS") << after;
    Response again = get(daemon.port(), path);
    EXPECT_EQ(cache_status(again), "HIT") << again;
    EXPECT_EQ(origin_count(up.port(), "/cache/resized"), 2);
}

// ---- configuration errors ------------------------------------------------------------

struct CheckResult {
    bool accepted;
    std::string output;
};

// The http{} body starts on line 6 of the checked config.
CheckResult check_config(std::string_view http_body) {
    Daemon daemon(std::string(kMainConfig) + "events { }\nhttp {\n" + std::string(http_body) + "\n}\n");
    CommandResult result = daemon.run_cli({"-t"});
    return {result.exit_code == 0, result.output};
}

TEST(CacheConfigTest, ErrorsNameTheFileAndLine) {
    struct Case {
        std::string http_body;
        std::string message;
        int line;
    };
    const std::vector<Case> cases = {
        {"server {\n  listen 127.0.0.1:{{PORT}};\n  location / {\n    proxy_cache nosuch;\n    proxy_pass "
         "http://127.0.0.1:9;\n  }\n}",
         "nosuch", 9},
        {"proxy_cache_path {{PREFIX}}/c max_size=1m;", "keys_zone", 6},
        {"\nproxy_cache_path {{PREFIX}}/c keys_zone=z:lots;", "lots", 7},
        {"proxy_cache_path {{PREFIX}}/c keys_zone=z:1m max_size=huge;", "huge", 6},
        {"proxy_cache_path {{PREFIX}}/c keys_zone=z:1m;\nproxy_cache_use_stale error sometimes;", "sometimes", 7},
        {"proxy_cache_path {{PREFIX}}/c keys_zone=z:1m;\nproxy_cache_valid 200 soon;", "soon", 7},
        {"proxy_cache_path {{PREFIX}}/c keys_zone=z:1m;\nproxy_cache_methods GET DELETE;", "DELETE", 7},
    };
    for (const Case& c : cases) {
        CheckResult r = check_config(c.http_body);
        EXPECT_FALSE(r.accepted) << c.http_body;
        EXPECT_THAT(r.output, HasSubstr(c.message)) << c.http_body;
        EXPECT_THAT(r.output, HasSubstr("sluice.conf:" + std::to_string(c.line))) << c.http_body << "\n" << r.output;
    }
}

TEST(CacheConfigTest, AGoodConfigPasses) {
    CheckResult r = check_config(
        "proxy_cache_path {{PREFIX}}/c levels=1:2 keys_zone=z:10m max_size=64m inactive=1h max_object=2m "
        "use_temp_path=off;\n"
        "server {\n  listen 127.0.0.1:{{PORT}};\n  location / {\n"
        "    proxy_cache z;\n    proxy_cache_key $scheme$host$request_uri;\n"
        "    proxy_cache_methods GET HEAD POST;\n    proxy_cache_valid 200 302 10m;\n"
        "    proxy_cache_valid 404 1m;\n    proxy_cache_valid any 5s;\n    proxy_cache_min_uses 2;\n"
        "    proxy_cache_bypass $cookie_nocache $arg_nocache;\n    proxy_no_cache $http_pragma;\n"
        "    proxy_cache_use_stale error timeout invalid_header updating http_500 http_502 http_503 http_504 "
        "http_403 http_404 http_429;\n"
        "    proxy_cache_background_update on;\n    proxy_cache_lock on;\n    proxy_cache_lock_timeout 3s;\n"
        "    proxy_cache_lock_age 2s;\n    proxy_cache_revalidate on;\n    proxy_cache_convert_head off;\n"
        "    proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;\n"
        "    proxy_cache_purge on;\n    proxy_pass http://127.0.0.1:9;\n  }\n"
        "  location /off/ { proxy_cache off; proxy_pass http://127.0.0.1:9; }\n}");
    EXPECT_TRUE(r.accepted) << r.output;
}

}  // namespace
}  // namespace sluice::test
