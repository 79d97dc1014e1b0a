// `server NAME resolve` with `resolver`: each worker re-resolves the name in the
// background with a real DNS server (t/lib/test_dns.cc, whose zone file the tests
// rewrite) and proxies to whatever the name resolves to now, without a reload.
//
// The origins all listen on one port, on different loopback addresses (127.0.0.2,
// 127.0.0.3: all of 127/8 is loopback on Linux), so a zone line "backend.test 1 A
// 127.0.0.3" moves the traffic to the origin there; X-Upstream-Id says which answered.
// What the documentation promises (sluice.conf(5), `server ... resolve`): a lookup
// that times out or fails keeps the addresses, a name that no longer exists leaves
// the server with none (nginx does the same with NXDOMAIN), and the worker never
// waits for DNS.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kName = "backend.test";

// The config: `workers` workers, an upstream `backend` with
// `server backend.test:ORIGIN_PORT resolve`, the resolver line given, and a
// server with / proxied to it and /local answered by sluice itself.
std::string resolve_config(int workers, std::string_view resolver_lines, std::string_view server_params = "") {
    std::string c(kMainConfig);
    c += "worker_processes " + std::to_string(workers) + ";\n";
    c += "events { worker_connections 256; }\n"
         "http {\n"
         "    access_log off;\n";
    c += "    " + std::string(resolver_lines) + "\n";
    c += "    upstream backend {\n"
         "        server backend.test:{{ORIGIN_PORT}} resolve" +
         std::string(server_params) +
         ";\n"
         "    }\n"
         "    server {\n"
         "        listen 127.0.0.1:{{PORT}};\n"
         "        add_header X-Upstream-Addr $upstream_addr always;\n"
         "        proxy_connect_timeout 2s;\n"
         "        proxy_read_timeout 5s;\n"
         "        location / { proxy_pass http://backend; }\n"
         "        location /local { return 200 \"local\\n\"; }\n"
         "    }\n"
         "}\n";
    return c;
}

// Who answered GET / : the X-Upstream-Id of a 200, else "status N" or "no answer".
std::string who(uint16_t port, Millis timeout = 3000ms) {
    auto r = http_get(port, "/", "", timeout);
    if (!r) return "no answer";
    if (r->status != 200) return "status " + std::to_string(r->status);
    return r->header("X-Upstream-Id");
}

std::map<std::string, int> spread(uint16_t port, int requests) {
    std::map<std::string, int> counts;
    for (int i = 0; i < requests; ++i) ++counts[who(port)];
    return counts;
}

std::string describe(const std::map<std::string, int>& counts) {
    std::string out;
    for (const auto& [k, v] : counts) out += (out.empty() ? "" : ", ") + k + ": " + std::to_string(v);
    return "{" + out + "}";
}

// Polls until `n` answers in a row come from `id` (each worker has its own
// resolver, so with several workers one may switch a moment before the other).
bool wait_for_only(uint16_t port, std::string_view id, Millis timeout, int n = 8) {
    return wait_until(
        [&] {
            for (int i = 0; i < n; ++i)
                if (who(port) != id) return false;
            return true;
        },
        timeout, 50ms);
}

// A UDP socket on 127.0.0.1:port that never reads: queries sent there time out,
// as with a DNS server that is down behind a firewall.
class SilentUdp {
public:
    explicit SilentUdp(uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bound_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    }
    ~SilentUdp() {
        if (fd_ >= 0) ::close(fd_);
    }
    SilentUdp(const SilentUdp&) = delete;
    SilentUdp& operator=(const SilentUdp&) = delete;
    bool bound() const { return bound_; }
    // The queries that arrived and were not read yet (reads them now).
    int drain() {
        int n = 0;
        char buf[1024];
        while (fd_ >= 0 && ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT) >= 0) ++n;
        return n;
    }

private:
    int fd_ = -1;
    bool bound_ = false;
};

class Resolve : public ::testing::Test {
protected:
    void SetUp() override {
        origin_port_ = free_port();
        a_ = std::make_unique<UpstreamProcess>(
            std::vector<std::string>{"--id", "a", "--address", "127.0.0.2"}, origin_port_);
        b_ = std::make_unique<UpstreamProcess>(
            std::vector<std::string>{"--id", "b", "--address", "127.0.0.3"}, origin_port_);
        ASSERT_TRUE(a_->start());
        ASSERT_TRUE(b_->start());
    }

    void zone(std::string_view records) { dns_.set_zone(records); }

    // Starts the DNS server and the daemon, then waits for the first answer from
    // `first` (a `resolve` name that did not resolve at load starts with no address;
    // the worker's first lookup is at once).
    void start(int workers, std::string_view resolver_lines, std::string_view first = "a",
               std::string_view server_params = "") {
        ASSERT_TRUE(dns_.start());
        std::string resolver(resolver_lines);
        for (size_t at; (at = resolver.find("DNS")) != std::string::npos;)
            resolver.replace(at, 3, dns_.address());
        daemon_ = std::make_unique<Daemon>(resolve_config(workers, resolver, server_params),
                                           ConfigVars{{"ORIGIN_PORT", origin_port_}});
        ASSERT_TRUE(daemon_->start());
        // Empty `first`: any origin's answer will do.
        bool up = first.empty() ? wait_until([&] { return http_get(port(), "/").value_or(Response{}).status == 200; },
                                             5000ms, 50ms)
                                : wait_for_only(port(), first, 5000ms, 4);
        ASSERT_TRUE(up) << describe(spread(port(), 6)) << "\nqueries:\n" << dns_.log();
    }

    uint16_t port() const { return daemon_->port(); }

    uint16_t origin_port_ = 0;
    std::unique_ptr<UpstreamProcess> a_, b_;
    DnsServerProcess dns_;
    std::unique_ptr<Daemon> daemon_;
};

// (a) The name moves to another address: within `valid` and a little, the
// traffic follows, without a reload and without one failed request.
TEST_F(Resolve, FollowsTheNameWithoutReloadOrFailures) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(2, "resolver DNS valid=1s; resolver_timeout 2s;");

    LoadOptions options;
    options.port = port();
    options.connections = 2;
    LoadLoop load(options);
    ASSERT_TRUE(load.wait_for_completed(20));

    // The workers ask again every second (valid=1s), not only at start.
    size_t before = dns_.queries(std::string(kName), "A");
    EXPECT_TRUE(wait_until([&] { return dns_.queries(std::string(kName), "A") >= before + 2; }, 5000ms))
        << dns_.log();

    zone("backend.test 1 A 127.0.0.3\n");
    auto switched = Clock::now();
    EXPECT_TRUE(wait_for_only(port(), "b", 6000ms)) << describe(spread(port(), 6));
    auto took = std::chrono::duration_cast<Millis>(Clock::now() - switched);
    EXPECT_LT(took.count(), 6000);

    uint64_t done = load.completed();
    ASSERT_TRUE(load.wait_for_completed(done + 20));
    LoadResult result = load.stop();
    EXPECT_EQ(result.failed, 0u) << result;
    EXPECT_GE(result.ok, 40u) << result;
    EXPECT_EQ(daemon_->worker_pids().size(), 2u);
    EXPECT_TRUE(daemon_->wait_for_log("\"backend.test\" now resolves to 1 address(es)", 1000ms));
}

// (b) Two addresses for the name: both take traffic; the TTL of the answers
// (no valid=) sets when the name is asked again; an address that leaves the
// answer stops taking traffic.
TEST_F(Resolve, EveryAddressOfTheNameTakesTraffic) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(1, "resolver DNS;");

    zone("backend.test 1 A 127.0.0.2\nbackend.test 1 A 127.0.0.3\n");
    std::map<std::string, int> counts;
    EXPECT_TRUE(wait_until(
        [&] {
            counts = spread(port(), 10);
            return counts["a"] >= 3 && counts["b"] >= 3 && counts["a"] + counts["b"] == 10;
        },
        6000ms, 50ms))
        << describe(counts) << "\nqueries:\n" << dns_.log();
    EXPECT_TRUE(daemon_->wait_for_log("\"backend.test\" now resolves to 2 address(es)", 1000ms));

    zone("backend.test 1 A 127.0.0.3\n");
    EXPECT_TRUE(wait_for_only(port(), "b", 6000ms)) << describe(spread(port(), 6));
}

// (c) The name no longer exists (NXDOMAIN): as documented (and as nginx does),
// the server is left with no address, so requests get 502 at once; when the
// name comes back, so does the traffic. (ipv6=off: no AAAA lookups.)
TEST_F(Resolve, ANameThatNoLongerExistsLeavesNoAddress) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(1, "resolver DNS valid=1s ipv6=off;");

    zone("other.test 1 A 127.0.0.3\n");
    EXPECT_TRUE(wait_until([&] { return who(port()) == "status 502"; }, 6000ms))
        << describe(spread(port(), 6)) << "\nqueries:\n" << dns_.log();
    EXPECT_THAT(dns_.log(), HasSubstr("backend.test A NXDOMAIN"));
    EXPECT_TRUE(daemon_->wait_for_log("\"backend.test\" now resolves to 0 address(es)", 1000ms));
    auto r = http_get(port(), "/local");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);

    zone("backend.test 1 A 127.0.0.3\n");
    EXPECT_TRUE(wait_for_only(port(), "b", 6000ms)) << describe(spread(port(), 6));
    EXPECT_GE(dns_.queries(std::string(kName), "A"), 3u) << dns_.log();
    EXPECT_EQ(dns_.queries(std::string(kName), "AAAA"), 0u) << dns_.log();
}

// (d) The DNS server fails (SERVFAIL), then is down, first with no process, then
// silent (queries time out): the last addresses keep serving. Once it is back,
// the name is followed again.
TEST_F(Resolve, TheLastAddressesServeWhileDnsIsDown) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(1, "resolver DNS valid=1s; resolver_timeout 1s;");
    uint16_t dns_port = dns_.port();

    size_t log_at = daemon_->error_log_size();
    zone("backend.test 1 SERVFAIL\n");
    EXPECT_TRUE(daemon_->wait_for_log("could not resolve \"backend.test\" of upstream \"backend\"", 6000ms,
                                      log_at));
    EXPECT_THAT(dns_.log(), HasSubstr("backend.test A SERVFAIL"));
    auto counts = spread(port(), 6);
    EXPECT_EQ(counts["a"], 6) << describe(counts);

    log_at = daemon_->error_log_size();
    dns_.stop();
    EXPECT_TRUE(daemon_->wait_for_log("could not resolve \"backend.test\" of upstream \"backend\"", 6000ms,
                                      log_at));
    counts = spread(port(), 6);
    EXPECT_EQ(counts["a"], 6) << describe(counts);

    {
        SilentUdp silent(dns_port);
        ASSERT_TRUE(silent.bound());
        log_at = daemon_->error_log_size();
        EXPECT_TRUE(daemon_->wait_for_log("could not resolve \"backend.test\"", 6000ms, log_at));
        counts = spread(port(), 6);
        EXPECT_EQ(counts["a"], 6) << describe(counts);
    }

    zone("backend.test 1 A 127.0.0.3\n");
    ASSERT_TRUE(dns_.start());
    ASSERT_EQ(dns_.port(), dns_port);
    EXPECT_TRUE(wait_for_only(port(), "b", 8000ms)) << describe(spread(port(), 6)) << "\nqueries:\n"
                                                    << dns_.log();
}

// (e) Lookups never block the worker: while every query times out (a long
// resolver_timeout, a lookup always outstanding), requests, proxied or not, are
// answered at once. A worker that waited for DNS would hold some of them for
// seconds; the bound is generous for a loaded machine.
TEST_F(Resolve, TheWorkerNeverWaitsForDns) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(1, "resolver DNS valid=1s; resolver_timeout 6s;");
    uint16_t dns_port = dns_.port();
    dns_.stop();
    SilentUdp silent(dns_port);
    ASSERT_TRUE(silent.bound());

    auto deadline = Clock::now() + 2500ms;  // more than two valid= periods
    int requests = 0;
    Millis slowest{0};
    while (Clock::now() < deadline) {
        for (std::string_view path : {"/local", "/"}) {
            auto t0 = Clock::now();
            auto r = http_get(port(), path, "", 5000ms);
            auto took = std::chrono::duration_cast<Millis>(Clock::now() - t0);
            slowest = std::max(slowest, took);
            ASSERT_TRUE(r) << path;
            EXPECT_EQ(r->status, 200) << path;
            if (path == "/") {
                EXPECT_EQ(r->header("X-Upstream-Id"), "a");
            }
            ++requests;
        }
    }
    EXPECT_LT(slowest.count(), 3000) << requests << " requests";
    EXPECT_GT(requests, 20);
    EXPECT_GE(silent.drain(), 2) << "the workers did not ask meanwhile";
}

// The state of an address is kept when the answer changes: an origin taken out
// by passive health (max_fails=1, fail_timeout=30s, shared by the workers) stays
// out when a new address joins the name, instead of being tried afresh.
TEST_F(Resolve, AnAddressKeepsItsHealthWhenTheAnswerChanges) {
    UpstreamProcess c({"--id", "c", "--address", "127.0.0.4"}, origin_port_);
    ASSERT_TRUE(c.start());
    zone("backend.test 1 A 127.0.0.2\nbackend.test 1 A 127.0.0.3\n");
    start(2, "resolver DNS valid=1s;", "", " max_fails=1 fail_timeout=30s");
    std::string a_addr = "127.0.0.2:" + std::to_string(origin_port_);
    std::map<std::string, int> counts;
    ASSERT_TRUE(wait_until(
        [&] {
            counts = spread(port(), 8);
            return counts["a"] >= 1 && counts["b"] >= 1;
        },
        5000ms, 50ms))
        << describe(counts);

    // A fails once (the request goes on to B) and is out for every worker.
    a_->stop();
    bool tried_a = false;
    for (int i = 0; i < 20 && !tried_a; ++i) {
        auto r = http_get(port(), "/");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->status, 200) << *r;
        tried_a = r->header("X-Upstream-Addr").find(a_addr) != std::string::npos;
    }
    ASSERT_TRUE(tried_a);

    // From the change on, no request may try A again (every answer is checked,
    // those that wait for the change included).
    zone("backend.test 1 A 127.0.0.2\nbackend.test 1 A 127.0.0.3\nbackend.test 1 A 127.0.0.4\n");
    counts.clear();
    int tried_a_again = 0;
    auto get = [&] {
        auto r = http_get(port(), "/");
        std::string id = !r ? "no answer" : r->status != 200 ? "status " + std::to_string(r->status)
                                                             : r->header("X-Upstream-Id");
        if (r && r->header("X-Upstream-Addr").find(a_addr) != std::string::npos) ++tried_a_again;
        ++counts[id];
        return id;
    };
    EXPECT_TRUE(wait_until([&] { return get() == "c"; }, 5000ms));
    EXPECT_TRUE(daemon_->wait_for_log("\"backend.test\" now resolves to 3 address(es)", 1000ms));
    // Both workers have the new list once the zone was read twice more.
    size_t asked = dns_.queries(std::string(kName), "A");
    EXPECT_TRUE(wait_until(
        [&] {
            get();
            return dns_.queries(std::string(kName), "A") >= asked + 2;
        },
        4000ms));
    for (int i = 0; i < 12; ++i) get();
    EXPECT_EQ(tried_a_again, 0) << describe(counts);
    EXPECT_EQ(counts["a"], 0) << describe(counts);
    EXPECT_GE(counts["b"], 1) << describe(counts);
    EXPECT_GE(counts["c"], 1) << describe(counts);
    EXPECT_EQ(counts["b"] + counts["c"], std::accumulate(counts.begin(), counts.end(), 0,
                                                         [](int n, const auto& kv) { return n + kv.second; }))
        << describe(counts);
}

// A reload while a worker waits for an answer that never comes: the old worker
// drops the lookup and exits cleanly, the new one resolves by itself.
TEST_F(Resolve, AReloadWithALookupInFlightIsClean) {
    zone("backend.test 1 A 127.0.0.2\n");
    start(1, "resolver DNS valid=1s; resolver_timeout 3s;");
    std::vector<pid_t> old_workers = daemon_->worker_pids();
    ASSERT_EQ(old_workers.size(), 1u);
    zone("backend.test 0 DROP\n");
    ASSERT_TRUE(wait_until([&] { return dns_.log().find("backend.test A DROP") != std::string::npos; }, 5000ms))
        << dns_.log();

    size_t log_from = daemon_->error_log_size();
    ASSERT_TRUE(daemon_->signal(SIGHUP));
    EXPECT_TRUE(wait_until(
        [&] {
            auto now = daemon_->worker_pids();
            return now.size() == 1 && std::ranges::find(now, old_workers[0]) == now.end();
        },
        8000ms));
    zone("backend.test 1 A 127.0.0.3\n");
    EXPECT_TRUE(wait_for_only(port(), "b", 10000ms)) << describe(spread(port(), 6));
    EXPECT_TRUE(daemon_->wait_for_log("exited with code 0", 2000ms, log_from));
    EXPECT_EQ(daemon_->error_log().find("exited on signal", log_from), std::string::npos);
}

// (f) `resolve` needs a resolver: the error names the server line.
TEST(ResolveConfig, ResolveWithoutResolverIsAnError) {
    std::string body =
        "upstream backend {\n"
        "    server backend.test:8080 resolve;\n"
        "}\n";
    Daemon daemon(std::string(kMainConfig) + "events {}\nhttp {\n" + body + "}\n");
    CommandResult result = daemon.run_cli({"-t"});
    EXPECT_NE(result.exit_code, 0);
    // kMainConfig is 3 lines, then "events {}" and "http {": the server is line 7.
    EXPECT_THAT(result.output, HasSubstr("no resolver defined to resolve \"backend.test\" in upstream \"backend\" in " +
                                         daemon.conf_path() + ":7"));
}

}  // namespace
}  // namespace sluice::test
