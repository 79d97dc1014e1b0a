// The upstream side of proxy_pass against the real daemon and real origins
// (t/lib/test_upstream.cc): keep-alive pools, the balancers (round robin with
// weights, backup and down, least_conn, hash and consistent hash, random two),
// failover with proxy_next_upstream, passive health shared by all workers,
// active health checks with `match`, and upstream configuration errors.
//
// Which server answered is X-Upstream-Id; which upstream connection carried
// it is X-Connection; what an origin saw in total is its /stats, minus the
// /stats queries the test made itself.
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <iostream>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// ---- origins ----------------------------------------------------------------

struct OriginStats {
    uint64_t connections = 0;
    uint64_t requests = 0;
};

// The number after `"key":` in a flat JSON object, or nullopt.
std::optional<uint64_t> json_number(std::string_view json, std::string_view key) {
    std::string needle = "\"" + std::string(key) + "\":";
    size_t at = json.find(needle);
    if (at == std::string_view::npos) return std::nullopt;
    at += needle.size();
    size_t end = json.find_first_not_of("0123456789", at);
    if (end == at) return std::nullopt;
    return std::stoull(std::string(json.substr(at, end - at)));
}

// A test_upstream process with an id, and what it served apart from the
// test's own /stats queries (each of which is one connection and one request).
class Origin {
public:
    explicit Origin(std::string id, std::vector<std::string> options = {})
        : id_(std::move(id)), process_(with_id(id_, std::move(options))) {}

    // A new process counts from zero; its readiness probe was a connection.
    ::testing::AssertionResult start() {
        auto started = process_.start();
        running_ = bool(started);
        if (started) baseline_ = raw_stats().value_or(OriginStats{});
        stats_queries_ = 0;  // the baseline counts its own query
        return started;
    }
    void stop() {
        process_.stop();
        running_ = false;
    }
    bool running() const { return running_; }
    uint16_t port() const { return process_.port(); }
    const std::string& id() const { return id_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port()); }

    // Since start(), without the test's own /stats queries.
    std::optional<OriginStats> stats() {
        auto raw = raw_stats();
        if (!raw) return std::nullopt;
        return OriginStats{raw->connections - baseline_.connections - stats_queries_,
                           raw->requests - baseline_.requests - stats_queries_};
    }
    // Requests other than the test's /stats; ~0 when the origin does not answer.
    uint64_t served() {
        auto s = stats();
        return s ? s->requests : ~uint64_t(0);
    }

private:
    std::optional<OriginStats> raw_stats() {
        auto r = http_get(port(), "/stats");
        ++stats_queries_;
        if (!r || r->status != 200) return std::nullopt;
        auto connections = json_number(r->body, "connections");
        auto requests = json_number(r->body, "requests");
        if (!connections || !requests) return std::nullopt;
        return OriginStats{*connections, *requests};
    }
    static std::vector<std::string> with_id(const std::string& id, std::vector<std::string> options) {
        options.insert(options.begin(), {"--id", id});
        return options;
    }

    std::string id_;
    UpstreamProcess process_;
    OriginStats baseline_;
    uint64_t stats_queries_ = 0;  // since the baseline
    bool running_ = false;
};

// A port where nothing listens: connecting is refused.
uint16_t refused_port() { return free_port(); }

// A listening socket that never accepts: connects complete (the kernel's
// backlog) and requests are never answered, so only timeouts end them.
class SilentListener {
public:
    SilentListener() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 128) != 0 ||
            ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            return;
        port_ = ntohs(addr.sin_port);
    }
    ~SilentListener() {
        if (fd_ >= 0) ::close(fd_);
    }
    SilentListener(const SilentListener&) = delete;
    SilentListener& operator=(const SilentListener&) = delete;
    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

protected:
    int fd_ = -1;
    uint16_t port_ = 0;
};

// Accepts, waits for the request, and resets the connection without a reply.
class ResettingListener : public SilentListener {
public:
    ResettingListener() : thread_([this] { run(); }) {}
    ~ResettingListener() {
        stop_ = true;
        thread_.join();
    }
    int accepted() const { return accepted_; }

private:
    void run() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            ++accepted_;
            pollfd q{c, POLLIN, 0};
            ::poll(&q, 1, 2000);
            char buf[4096];
            (void)::recv(c, buf, sizeof buf, MSG_DONTWAIT);
            linger l{1, 0};
            ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
            ::close(c);
        }
    }
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread thread_;
};

// ---- the daemon ---------------------------------------------------------------

// A config with `workers` worker processes, the given upstream{} and match{}
// blocks, and one server whose locations proxy to them. Every response says
// which worker served it (X-Worker); `reuseport` spreads new connections over
// all workers.
std::string gateway_config(int workers, std::string_view http_blocks, std::string_view locations) {
    std::string c(kMainConfig);
    c += "worker_processes " + std::to_string(workers) + ";\n";
    c += "events { worker_connections 256; }\n"
         "http {\n"
         "    access_log off;\n";
    c += http_blocks;
    c += "    server {\n"
         "        listen 127.0.0.1:{{PORT}} reuseport;\n"
         "        add_header X-Worker $pid always;\n"
         "        proxy_connect_timeout 2s;\n"
         "        proxy_read_timeout 5s;\n";
    c += locations;
    c += "    }\n"
         "}\n";
    return c;
}

// `upstream NAME { LINES server ADDRESS PARAMS; ... }`.
std::string upstream_block(std::string_view name, std::string_view directives,
                           const std::vector<std::string>& servers) {
    std::string c = "    upstream " + std::string(name) + " {\n";
    if (!directives.empty()) c += "        " + std::string(directives) + "\n";
    for (const std::string& s : servers) c += "        server " + s + ";\n";
    c += "    }\n";
    return c;
}

// Reloads with `config` and waits until only new workers run.
::testing::AssertionResult reload(Daemon& daemon, const std::string& config) {
    std::vector<pid_t> old = daemon.worker_pids();
    daemon.write_config(config);
    if (!daemon.signal(SIGHUP)) return ::testing::AssertionFailure() << "cannot signal the master";
    bool replaced = wait_until(
        [&] {
            std::vector<pid_t> now = daemon.worker_pids();
            if (now.empty()) return false;
            for (pid_t p : now)
                if (std::count(old.begin(), old.end(), p)) return false;
            return true;
        },
        kStartTimeout);
    if (!replaced) return ::testing::AssertionFailure() << "the old workers are still running";
    return ::testing::AssertionSuccess();
}

// ---- requests -----------------------------------------------------------------

// One request on a fresh client connection; status 0 when there was no answer.
Response get(uint16_t port, std::string_view path, std::string_view headers = "", Millis timeout = kDefaultTimeout) {
    auto r = http_get(port, path, headers, timeout);
    return r ? *r : Response{};
}

Response post(uint16_t port, std::string_view path, std::string_view body) {
    std::string raw = "POST " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                      "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
    auto r = http_request(port, raw);
    return r ? *r : Response{};
}

// Which origin answered each of `count` GETs of `path`, by X-Upstream-Id
// ("" for an answer without one; "status NNN" when it was not 200).
std::map<std::string, int> spread(uint16_t port, std::string_view path, int count) {
    std::map<std::string, int> by_id;
    for (int i = 0; i < count; ++i) {
        Response r = get(port, path);
        ++by_id[r.status == 200 ? r.header("X-Upstream-Id") : "status " + std::to_string(r.status)];
    }
    return by_id;
}

std::string describe(const std::map<std::string, int>& counts) {
    std::string out;
    for (const auto& [k, n] : counts) out += (out.empty() ? "" : ", ") + k + "=" + std::to_string(n);
    return "{" + out + "}";
}

int count_of(const std::map<std::string, int>& counts, const std::string& key) {
    auto it = counts.find(key);
    return it == counts.end() ? 0 : it->second;
}

size_t occurrences(std::string_view text, std::string_view needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + 1)) ++n;
    return n;
}

constexpr std::string_view kKeepaliveProxy =
    "proxy_http_version 1.1; proxy_set_header Connection \"\";";

// An origin on a thread, for closes test_upstream does not make: it answers
// each request with a small keep-alive response and then, per connection,
// either closes the connection a moment after each answer (while the
// gateway holds it idle in its pool), or reads a second request and closes
// without answering it (the race of a reused connection that its server
// closes as the request arrives).
class ClosingOrigin {
public:
    enum class Mode { CloseWhenIdle, CloseOnSecondRequest };

    explicit ClosingOrigin(Mode mode) : mode_(mode) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
            ::listen(listen_fd_, 16) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
            return;
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { run(); });
    }
    ~ClosingOrigin() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        for (Conn& c : conns_) ::close(c.fd);
        if (listen_fd_ >= 0) ::close(listen_fd_);
    }
    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    int connections() const { return connections_; }
    int requests() const { return requests_; }
    int answered() const { return answered_; }

private:
    struct Conn {
        int fd = -1;
        std::string in;
        int requests = 0;
        std::chrono::steady_clock::time_point close_at{};
    };

    void run() {
        while (!stop_) {
            std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
            for (Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
            ::poll(fds.data(), fds.size(), 10);
            if (fds[0].revents & POLLIN) {
                int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (fd >= 0) {
                    conns_.emplace_back();
                    conns_.back().fd = fd;
                    ++connections_;
                }
            }
            auto now = std::chrono::steady_clock::now();
            for (size_t i = 0; i < conns_.size();) {
                bool readable = i + 1 < fds.size() && fds[i + 1].fd == conns_[i].fd && fds[i + 1].revents;
                if (!serve(conns_[i], readable, now)) {
                    ::close(conns_[i].fd);
                    conns_.erase(conns_.begin() + long(i));
                    fds.erase(fds.begin() + long(i) + 1);
                    continue;
                }
                ++i;
            }
        }
    }

    // False when the connection is to be closed.
    bool serve(Conn& c, bool readable, std::chrono::steady_clock::time_point now) {
        if (c.close_at != std::chrono::steady_clock::time_point{} && now >= c.close_at) return false;
        if (!readable) return true;
        char buf[4096];
        ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) return n < 0 && errno == EAGAIN;
        c.in.append(buf, size_t(n));
        for (size_t end; (end = c.in.find("\r\n\r\n")) != std::string::npos;) {
            c.in.erase(0, end + 4);
            ++c.requests;
            ++requests_;
            if (mode_ == Mode::CloseOnSecondRequest && c.requests == 2) return false;
            static constexpr std::string_view kAnswer =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
            // Counted before the send: the client may read the answer (and the
            // test read the counter) before this thread runs again.
            ++answered_;
            if (::send(c.fd, kAnswer.data(), kAnswer.size(), MSG_NOSIGNAL) != ssize_t(kAnswer.size())) return false;
            if (mode_ == Mode::CloseWhenIdle) c.close_at = now + 50ms;
        }
        return true;
    }

    Mode mode_;
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::vector<Conn> conns_;
    std::atomic<int> connections_{0}, requests_{0}, answered_{0};
};

// ==== keep-alive ===============================================================

class UpstreamKeepalive : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(origin_.start());
        std::string blocks = upstream_block("pooled", "keepalive 4;", {origin_.address()}) +
                             upstream_block("unpooled", "", {origin_.address()}) +
                             upstream_block("limited", "keepalive 4; keepalive_requests 5; keepalive_timeout 300ms;",
                                            {origin_.address()});
        std::string locations = "        location /pooled/ { proxy_pass http://pooled/; " + std::string(kKeepaliveProxy) +
                                " }\n"
                                "        location /unpooled/ { proxy_pass http://unpooled/; " +
                                std::string(kKeepaliveProxy) + " }\n" +
                                "        location /limited/ { proxy_pass http://limited/; " +
                                std::string(kKeepaliveProxy) + " }\n";
        daemon_ = std::make_unique<Daemon>(gateway_config(1, blocks, locations));
        ASSERT_TRUE(daemon_->start());
    }

    // The X-Connection of a 200 answer to GET path, or "" (with a failure).
    std::string connection_of(std::string_view path) {
        Response r = get(daemon_->port(), path);
        EXPECT_EQ(r.status, 200) << path << "\n" << r;
        return r.header("X-Connection");
    }

    Origin origin_{"origin"};
    std::unique_ptr<Daemon> daemon_;
};

TEST_F(UpstreamKeepalive, SequentialRequestsShareOneUpstreamConnection) {
    std::set<std::string> connections;
    for (int i = 0; i < 30; ++i) connections.insert(connection_of("/pooled/x"));
    EXPECT_EQ(connections.size(), 1u);
    auto stats = origin_.stats();
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->requests, 30u);
    EXPECT_EQ(stats->connections, 1u);
}

TEST_F(UpstreamKeepalive, WithoutKeepaliveEveryRequestHasItsOwnConnection) {
    std::set<std::string> connections;
    for (int i = 0; i < 10; ++i) connections.insert(connection_of("/unpooled/x"));
    EXPECT_EQ(connections.size(), 10u);
    auto stats = origin_.stats();
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats->connections, 10u);
}

TEST_F(UpstreamKeepalive, KeepaliveRequestsLimitsRequestsPerConnection) {
    std::map<std::string, int> per_connection;
    for (int i = 0; i < 20; ++i) ++per_connection[connection_of("/limited/x")];
    EXPECT_EQ(per_connection.size(), 4u) << describe(per_connection);
    for (const auto& [connection, n] : per_connection) EXPECT_EQ(n, 5) << describe(per_connection);
}

TEST_F(UpstreamKeepalive, IdleConnectionClosedAfterKeepaliveTimeout) {
    std::string first = connection_of("/limited/x");
    EXPECT_EQ(connection_of("/limited/x"), first);
    // Past keepalive_timeout (300ms) the pool has closed it: a new one, no error.
    std::this_thread::sleep_for(700ms);
    std::string later = connection_of("/limited/x");
    EXPECT_NE(later, first);
    EXPECT_NE(later, "");
}

// An idle pooled connection that the upstream closes is dropped by the
// pool (its read event sees the EOF): the next request goes on a fresh
// connection, without an error.
TEST(UpstreamKeepaliveClose, IdleConnectionClosedByTheUpstreamIsNotUsed) {
    ClosingOrigin origin(ClosingOrigin::Mode::CloseWhenIdle);
    ASSERT_NE(origin.port(), 0);
    Daemon daemon(gateway_config(1, upstream_block("pooled", "keepalive 4;", {origin.address()}),
                                 "        location / { proxy_pass http://pooled; " + std::string(kKeepaliveProxy) +
                                     " }\n"));
    ASSERT_TRUE(daemon.start());
    for (int i = 0; i < 3; ++i) {
        Response r = get(daemon.port(), "/x");
        EXPECT_EQ(r.status, 200) << r;
        EXPECT_EQ(r.body, "ok");
        std::this_thread::sleep_for(300ms);  // the origin closes the connection after 50 ms
    }
    EXPECT_EQ(origin.connections(), 3);
    EXPECT_EQ(origin.requests(), 3);  // no request was sent on a closed connection
    EXPECT_THAT(daemon.error_log(), ::testing::Not(HasSubstr("[error]")));
}

// A reused connection that fails before any byte of the response (the
// upstream closed it as the request arrived) is retried once on a fresh
// connection, as nginx does: the client gets the answer, not a 502.
TEST(UpstreamKeepaliveClose, ReusedConnectionClosedOnArrivalIsRetried) {
    ClosingOrigin origin(ClosingOrigin::Mode::CloseOnSecondRequest);
    ASSERT_NE(origin.port(), 0);
    Daemon daemon(gateway_config(1, upstream_block("pooled", "keepalive 4;", {origin.address()}),
                                 "        location / { proxy_pass http://pooled; " + std::string(kKeepaliveProxy) +
                                     " }\n"));
    ASSERT_TRUE(daemon.start());
    for (int i = 0; i < 3; ++i) {
        Response r = get(daemon.port(), "/x");
        EXPECT_EQ(r.status, 200) << i << "\n" << r;
        EXPECT_EQ(r.body, "ok");
    }
    // Connection 1 answers #1 and drops #2; #2 is answered on connection 2,
    // which drops #3; #3 on connection 3.
    EXPECT_EQ(origin.connections(), 3);
    EXPECT_EQ(origin.requests(), 5);
    EXPECT_EQ(origin.answered(), 3);
    EXPECT_THAT(daemon.error_log(), ::testing::Not(HasSubstr("[error]")));
}

// Replies whose framing is broken before the head goes out: 502, and the
// connection that carried them is never used again.
TEST_F(UpstreamKeepalive, MalformedReplyGives502AndIsNotReused) {
    for (std::string name : {"status-line", "cl-te", "two-cl", "big-header"}) {
        SCOPED_TRACE(name);
        std::string pooled = connection_of("/pooled/warm");
        Response bad = get(daemon_->port(), "/pooled/bad/" + name);
        EXPECT_EQ(bad.status, 502) << bad;
        std::string next = connection_of("/pooled/after");
        EXPECT_NE(next, pooled);
        EXPECT_NE(next, "");
    }
}

// Replies that go wrong after a valid head: the client sees the damage (a
// short body, or the declared length only), and the upstream connection is
// not reused for the next request.
TEST_F(UpstreamKeepalive, ReplyBrokenAfterItsHeadIsNotReused) {
    for (std::string name : {"truncated", "bad-chunk", "extra"}) {
        SCOPED_TRACE(name);
        std::string pooled = connection_of("/pooled/warm");
        auto bad = http_get(daemon_->port(), "/pooled/bad/" + name, "", 3000ms);
        if (name == "extra") {
            // nginx passes the declared 5 bytes and drops the connection.
            ASSERT_TRUE(bad);
            EXPECT_TRUE(bad->status == 200 || bad->status == 502) << *bad;
            if (bad->status == 200) {
                EXPECT_EQ(bad->body, "hello");
            }
        } else if (bad) {
            // A complete response would claim a body the upstream never sent.
            ADD_FAILURE() << "a complete response to a broken reply:\n" << *bad;
        }
        std::string next = connection_of("/pooled/after");
        EXPECT_NE(next, pooled);
        EXPECT_NE(next, "");
    }
}

// ==== balancing ===================================================================

// Origins a, b, c (and d for `down`), started once for every balancing test.
class UpstreamBalancing : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        origins_ = new std::vector<std::unique_ptr<Origin>>;
        for (const char* id : {"a", "b", "c", "d"}) {
            origins_->push_back(std::make_unique<Origin>(id));
            ASSERT_TRUE(origins_->back()->start());
        }
    }
    static void TearDownTestSuite() {
        delete origins_;
        origins_ = nullptr;
    }
    void TearDown() override {
        // A test that stopped an origin leaves it running for the next one.
        for (auto& o : *origins_) {
            if (!o->running()) {
                EXPECT_TRUE(o->start());
            }
        }
    }

    static Origin& origin(std::string_view id) {
        for (auto& o : *origins_)
            if (o->id() == id) return *o;
        throw std::invalid_argument("no origin " + std::string(id));
    }
    static std::string server(std::string_view id, std::string_view params = "") {
        return origin(id).address() + (params.empty() ? "" : " " + std::string(params));
    }

    // A daemon proxying / to upstream `backend`.
    ::testing::AssertionResult start(std::string_view directives, const std::vector<std::string>& servers,
                                     int workers = 1, std::string_view location_extra = "") {
        daemon_ = std::make_unique<Daemon>(config(directives, servers, workers, location_extra));
        return daemon_->start();
    }
    static std::string config(std::string_view directives, const std::vector<std::string>& servers, int workers = 1,
                              std::string_view location_extra = "") {
        return gateway_config(workers, upstream_block("backend", directives, servers),
                              "        location / { proxy_pass http://backend; " + std::string(location_extra) +
                                  " }\n");
    }
    uint16_t port() const { return daemon_->port(); }

    static std::vector<std::unique_ptr<Origin>>* origins_;
    std::unique_ptr<Daemon> daemon_;
};

std::vector<std::unique_ptr<Origin>>* UpstreamBalancing::origins_ = nullptr;

TEST_F(UpstreamBalancing, SmoothWeightedRoundRobin) {
    ASSERT_TRUE(start("", {server("a", "weight=3"), server("b")}));
    std::string order;
    std::map<std::string, int> counts;
    for (int i = 0; i < 400; ++i) {
        Response r = get(port(), "/");
        ASSERT_EQ(r.status, 200) << r;
        std::string id = r.header("X-Upstream-Id");
        ++counts[id];
        order += id;
    }
    // One worker sees every request: the split is exact, and smooth (nginx's
    // a a b a ..., never b twice in a row nor a four times).
    EXPECT_NEAR(count_of(counts, "a"), 300, 12) << describe(counts);
    EXPECT_NEAR(count_of(counts, "b"), 100, 12) << describe(counts);
    EXPECT_EQ(order.find("bb"), std::string::npos) << order;
    EXPECT_EQ(order.find("aaaa"), std::string::npos) << order;
}

TEST_F(UpstreamBalancing, BackupOnlyWhenPrimariesAreDownAndDownNeverUsed) {
    ASSERT_TRUE(start("", {server("a"), server("b"), server("c", "backup"), server("d", "down")}));
    uint64_t c_before = origin("c").served(), d_before = origin("d").served();
    auto counts = spread(port(), "/", 40);
    EXPECT_EQ(count_of(counts, "a"), 20) << describe(counts);
    EXPECT_EQ(count_of(counts, "b"), 20) << describe(counts);
    EXPECT_EQ(origin("c").served(), c_before);

    origin("a").stop();
    origin("b").stop();
    counts = spread(port(), "/", 20);
    EXPECT_EQ(count_of(counts, "c"), 20) << describe(counts);
    EXPECT_EQ(origin("d").served(), d_before);
}

TEST_F(UpstreamBalancing, LeastConnSteersAwayFromBusyServer) {
    // Two workers: the connection counts least_conn compares are shared, so
    // the worker that does not carry the slow request avoids its server too.
    ASSERT_TRUE(start("least_conn;", {server("a"), server("b")}, 2));
    uint64_t a_before = origin("a").served(), b_before = origin("b").served();
    Conn slow(port());
    ASSERT_TRUE(slow.send("GET /delay/2500 HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    std::string busy;
    ASSERT_TRUE(wait_until(
        [&] {
            if (origin("a").served() > a_before) busy = "a";
            else if (origin("b").served() > b_before) busy = "b";
            return !busy.empty();
        },
        kDefaultTimeout, 20ms));
    std::string idle = busy == "a" ? "b" : "a";
    // Round robin would alternate; least_conn sends them all to the idle one.
    // A worker counts a request done just after its last byte went to the
    // client, so the other worker may still see it in flight for a moment
    // (a tie, broken by round robin): tolerate a few.
    auto counts = spread(port(), "/", 16);
    EXPECT_GE(count_of(counts, idle), 13) << "busy: " << busy << " " << describe(counts);
    auto slow_response = slow.read_response(5000ms);
    ASSERT_TRUE(slow_response) << slow.error();
    EXPECT_EQ(slow_response->header("X-Upstream-Id"), busy);
}

std::map<std::string, std::string> server_by_key(uint16_t port, int keys) {
    std::map<std::string, std::string> by_key;
    for (int i = 0; i < keys; ++i) {
        std::string key = "k" + std::to_string(i);
        Response r = get(port, "/?key=" + key);
        by_key[key] = r.status == 200 ? r.header("X-Upstream-Id") : "status " + std::to_string(r.status);
    }
    return by_key;
}

TEST_F(UpstreamBalancing, ConsistentHashMovesOnlyTheRemovedServersKeys) {
    const char* kHash = "hash $arg_key consistent;";
    ASSERT_TRUE(start(kHash, {server("a"), server("b"), server("c")}));
    auto before = server_by_key(port(), 200);
    std::map<std::string, int> share;
    for (const auto& [key, id] : before) ++share[id];
    for (const char* id : {"a", "b", "c"}) EXPECT_GE(count_of(share, id), 20) << describe(share);

    ASSERT_TRUE(reload(*daemon_, config(kHash, {server("a"), server("b")})));
    auto after = server_by_key(port(), 200);
    int moved = 0;
    for (const auto& [key, id] : before) {
        const std::string& now = after[key];
        EXPECT_TRUE(now == "a" || now == "b") << key << " -> " << now;
        if (id != "c") {
            EXPECT_EQ(now, id) << key << " moved though its server stayed";
        }
        if (now != id) ++moved;
    }
    EXPECT_EQ(moved, count_of(share, "c"));
    EXPECT_GE(moved, 30);   // roughly a third of 200
    EXPECT_LE(moved, 110);
}

TEST_F(UpstreamBalancing, PlainHashIsDeterministicAcrossWorkersAndConnections) {
    ASSERT_TRUE(start("hash $arg_key;", {server("a"), server("b"), server("c")}, 2));
    auto first = server_by_key(port(), 60);
    auto second = server_by_key(port(), 60);
    EXPECT_EQ(first, second);
    std::set<std::string> used;
    for (const auto& [key, id] : first) used.insert(id);
    EXPECT_EQ(used, (std::set<std::string>{"a", "b", "c"}));
}

TEST_F(UpstreamBalancing, RandomTwoSpreads) {
    ASSERT_TRUE(start("random two;", {server("a"), server("b"), server("c")}));
    auto counts = spread(port(), "/", 300);
    for (const char* id : {"a", "b", "c"}) EXPECT_GE(count_of(counts, id), 50) << describe(counts);
    EXPECT_EQ(count_of(counts, "a") + count_of(counts, "b") + count_of(counts, "c"), 300) << describe(counts);
}

TEST_F(UpstreamBalancing, ServerNameResolvedAtLoadTime) {
    // localhost may also be ::1, where nothing listens: that address fails and
    // the request goes on to 127.0.0.1, as in nginx.
    ASSERT_TRUE(start("", {"localhost:" + std::to_string(origin("a").port())}));
    auto counts = spread(port(), "/", 6);
    EXPECT_EQ(count_of(counts, "a"), 6) << describe(counts);
}

// ==== failover =====================================================================

// Each scenario has its own upstream{} (max_fails=0, so one location's
// failures do not take servers out of another's rotation) and locations
// that differ only in proxy_next_upstream.
class UpstreamFailover : public ::testing::Test {
protected:
    void SetUp() override {
        for (Origin* o : {&good_, &unavailable_, &unavailable2_, &unavailable3_, &not_found_}) ASSERT_TRUE(o->start());
        std::string mf = " max_fails=0";
        std::string blocks =
            upstream_block("refused", "", {"127.0.0.1:" + std::to_string(refused_port_) + mf, good_.address() + mf}) +
            upstream_block("reset", "", {resetting_.address() + mf, good_.address() + mf}) +
            upstream_block("silent", "", {silent_.address() + mf, good_.address() + mf}) +
            upstream_block("unavailable", "", {unavailable_.address() + mf, good_.address() + mf}) +
            upstream_block("all503", "",
                           {unavailable_.address() + mf, unavailable2_.address() + mf, unavailable3_.address() + mf}) +
            upstream_block("not_found", "",
                           {not_found_.address() + " max_fails=1 fail_timeout=30s",
                            good_.address() + " max_fails=1 fail_timeout=30s"}) +
            upstream_block("only_not_found", "", {not_found_.address() + " max_fails=1 fail_timeout=30s"});
        std::string locations;
        for (const char* name : {"refused", "reset", "silent", "unavailable"}) {
            std::string n = name;
            locations += "        location /" + n + "/retry/ { proxy_pass http://" + n +
                         "/; proxy_read_timeout 300ms; proxy_next_upstream error timeout http_503; }\n";
            locations += "        location /" + n + "/off/ { proxy_pass http://" + n +
                         "/; proxy_read_timeout 300ms; proxy_next_upstream off; }\n";
        }
        locations +=
            "        location /tries2/ { proxy_pass http://all503/; proxy_next_upstream http_503; "
            "proxy_next_upstream_tries 2; }\n"
            "        location /tries0/ { proxy_pass http://all503/; proxy_next_upstream http_503; }\n"
            "        location /post/ { proxy_pass http://unavailable/; proxy_next_upstream error http_503; }\n"
            "        location /post-any/ { proxy_pass http://unavailable/; "
            "proxy_next_upstream error http_503 non_idempotent; }\n"
            "        location /not-found/ { proxy_pass http://not_found/; proxy_next_upstream error http_404; }\n"
            "        location /only-not-found/ { proxy_pass http://only_not_found/; "
            "proxy_next_upstream error http_404; }\n"
            "        location /slow-upload/ { proxy_pass http://refused/; proxy_next_upstream error; "
            "proxy_next_upstream_timeout 1s; }\n";
        daemon_ = std::make_unique<Daemon>(gateway_config(1, blocks, locations));
        ASSERT_TRUE(daemon_->start());
    }

    // Statuses of `count` GETs of `path`.
    std::map<int, int> statuses(std::string_view path, int count) {
        std::map<int, int> by_status;
        for (int i = 0; i < count; ++i) ++by_status[get(daemon_->port(), path).status];
        return by_status;
    }

    Origin good_{"good"};
    Origin unavailable_{"u1", {"--fail-status", "503"}};
    Origin unavailable2_{"u2", {"--fail-status", "503"}};
    Origin unavailable3_{"u3", {"--fail-status", "503"}};
    Origin not_found_{"nf", {"--fail-status", "404"}};
    uint16_t refused_port_ = refused_port();
    ResettingListener resetting_;
    SilentListener silent_;
    std::unique_ptr<Daemon> daemon_;
};

std::string describe(const std::map<int, int>& counts) {
    std::string out;
    for (const auto& [k, n] : counts) out += (out.empty() ? "" : ", ") + std::to_string(k) + "=" + std::to_string(n);
    return "{" + out + "}";
}

TEST_F(UpstreamFailover, RetriedFailuresSucceedOnTheOtherServer) {
    for (const char* name : {"refused", "reset", "silent", "unavailable"}) {
        SCOPED_TRACE(name);
        auto counts = statuses("/" + std::string(name) + "/retry/x", 6);
        EXPECT_EQ(counts[200], 6) << describe(counts);
    }
    EXPECT_GE(resetting_.accepted(), 3);  // round robin sent every other request there
}

TEST_F(UpstreamFailover, WithNextUpstreamOffTheFailureIsTheAnswer) {
    // Round robin over two servers: every other request meets the failure.
    const std::pair<const char*, int> expected[] = {{"refused", 502}, {"reset", 502}, {"silent", 504}, {"unavailable", 503}};
    for (const auto& [name, status] : expected) {
        SCOPED_TRACE(name);
        auto counts = statuses("/" + std::string(name) + "/off/x", 4);
        EXPECT_EQ(counts[status], 2) << describe(counts);
        EXPECT_EQ(counts[200], 2) << describe(counts);
    }
}

TEST_F(UpstreamFailover, NextUpstreamTriesLimitsAttempts) {
    auto served = [&] { return unavailable_.served() + unavailable2_.served() + unavailable3_.served(); };
    uint64_t before = served();
    EXPECT_EQ(get(daemon_->port(), "/tries2/x").status, 503);
    EXPECT_EQ(served() - before, 2u);
    before = served();
    EXPECT_EQ(get(daemon_->port(), "/tries0/x").status, 503);
    EXPECT_EQ(served() - before, 3u);  // 0: every server once
}

// Every server answered a listed status and none is left: the client gets
// the last server's answer (its body and headers), not the gateway's page.
TEST_F(UpstreamFailover, WhenEveryServerFailsTheLastAnswerIsRelayed) {
    auto served = [&] { return unavailable_.served() + unavailable2_.served() + unavailable3_.served(); };
    uint64_t before = served();
    Response r = get(daemon_->port(), "/tries0/x");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(served() - before, 3u);
    EXPECT_THAT(r.header("X-Upstream-Id"), ::testing::AnyOf("u1", "u2", "u3")) << r;
    EXPECT_THAT(r.body, HasSubstr("\"uri\":\"/x\"")) << r;
    EXPECT_THAT(r.body, ::testing::Not(HasSubstr("<center>sluice</center>"))) << r;
}

// http_404 (and http_403) move on to the next server but never count toward
// max_fails: the server works, the resource is missing (nginx's
// NGX_PEER_NEXT). Before, one 404 took the server out for fail_timeout.
TEST_F(UpstreamFailover, NotFoundIsRetriedButNeverCountsAsAFailure) {
    for (int i = 0; i < 8; ++i) {
        Response r = get(daemon_->port(), "/not-found/x");
        EXPECT_EQ(r.status, 200) << i << "\n" << r;
        EXPECT_EQ(r.header("X-Upstream-Id"), "good") << i;
    }
    // Round robin keeps trying the server that answers 404 first.
    EXPECT_GE(not_found_.served(), 3u);
    // The only server: its 404 is the answer every time, never "no live upstreams".
    for (int i = 0; i < 3; ++i) {
        Response r = get(daemon_->port(), "/only-not-found/x");
        EXPECT_EQ(r.status, 404) << i << "\n" << r;
        EXPECT_EQ(r.header("X-Upstream-Id"), "nf") << i;
    }
}

// proxy_next_upstream_timeout counts from the first try, not from the start
// of a buffered upload: a slow client does not use up the time to retry.
TEST_F(UpstreamFailover, NextUpstreamTimeoutStartsAtTheFirstTry) {
    // Round robin over a refused server and a good one: one of the two
    // uploads meets the refused server first and must be retried.
    for (int i = 0; i < 2; ++i) {
        SCOPED_TRACE(i);
        Conn c(daemon_->port());
        ASSERT_TRUE(c.send("POST /slow-upload/x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello"));
        std::this_thread::sleep_for(1500ms);  // longer than proxy_next_upstream_timeout
        ASSERT_TRUE(c.send("world"));
        auto r = c.read_response(10s);
        ASSERT_TRUE(r) << c.error();
        EXPECT_EQ(r->status, 200) << *r;
        EXPECT_EQ(r->header("X-Upstream-Id"), "good");
    }
}

TEST_F(UpstreamFailover, PostIsRetriedAfterSendingOnlyWithNonIdempotent) {
    uint64_t before = unavailable_.served() + good_.served();
    std::map<int, int> plain, allowed;
    for (int i = 0; i < 4; ++i) ++plain[post(daemon_->port(), "/post/x", "payload").status];
    // The server that answered 503 may have acted on the POST: not repeated.
    EXPECT_EQ(plain[503], 2) << describe(plain);
    EXPECT_EQ(plain[200], 2) << describe(plain);
    EXPECT_EQ(unavailable_.served() + good_.served() - before, 4u);

    for (int i = 0; i < 4; ++i) ++allowed[post(daemon_->port(), "/post-any/x", "payload").status];
    EXPECT_EQ(allowed[200], 4) << describe(allowed);
    // A refused connection sent nothing: even a POST goes on.
    EXPECT_EQ(post(daemon_->port(), "/refused/retry/x", "payload").status, 200);
    EXPECT_EQ(post(daemon_->port(), "/refused/retry/x", "payload").status, 200);
}

// ==== passive health ================================================================

// max_fails counted in the upstream's zone: failures seen by one worker take
// the server out of every worker's rotation.
TEST(UpstreamPassiveHealth, MaxFailsIsSharedByAllWorkers) {
    Origin good("good"), failing("failing", {"--fail-status", "503"});
    ASSERT_TRUE(good.start());
    ASSERT_TRUE(failing.start());
    std::string blocks = upstream_block(
        "backend", "zone backend 64k;",
        {failing.address() + " max_fails=2 fail_timeout=30s", good.address() + " max_fails=2 fail_timeout=30s"});
    Daemon daemon(gateway_config(2, blocks,
                                 "        location / { proxy_pass http://backend; "
                                 "proxy_next_upstream error timeout http_503; }\n"));
    ASSERT_TRUE(daemon.start());
    ASSERT_TRUE(wait_until([&] { return daemon.worker_pids().size() == 2; }, kDefaultTimeout));

    std::set<std::string> workers;
    int ok = 0;
    for (int i = 0; i < 60; ++i) {
        Response r = get(daemon.port(), "/");
        if (r.status == 200 && r.header("X-Upstream-Id") == "good") ++ok;
        workers.insert(r.header("X-Worker"));
    }
    EXPECT_EQ(ok, 60);
    // Both workers served requests, yet the failing server was tried only
    // until the shared count reached max_fails (per-worker counts: up to 4).
    EXPECT_EQ(workers.size(), 2u);
    EXPECT_EQ(failing.served(), 2u);
}

// Concurrent keep-alive clients over two workers: nothing fails, and the
// pools keep the upstream connections to about the concurrency.
TEST(UpstreamKeepaliveLoad, ConcurrentRequestsReusePooledConnections) {
    Origin origin("origin");
    ASSERT_TRUE(origin.start());
    Daemon daemon(gateway_config(2, upstream_block("backend", "keepalive 8;", {origin.address()}),
                                 "        location / { proxy_pass http://backend; " + std::string(kKeepaliveProxy) +
                                     " }\n"));
    ASSERT_TRUE(daemon.start());
    LoadOptions options;
    options.port = daemon.port();
    options.connections = 4;
    options.max_requests = 400;
    options.max_duration = 30s;
    LoadLoop load(options);
    ASSERT_TRUE(load.wait_for_completed(400, 30s));
    LoadResult result = load.stop();
    EXPECT_EQ(result.failed, 0u) << result;
    auto stats = origin.stats();
    ASSERT_TRUE(stats);
    EXPECT_GE(stats->requests, 400u);
    // At most 4 requests are in flight at once; without reuse this would be 400.
    EXPECT_LE(stats->connections, 16u);
}

// A server taken out by max_fails gets one request after fail_timeout; when
// that succeeds it is back in every worker's rotation.
TEST(UpstreamPassiveHealth, BackAfterFailTimeoutOnceItAnswers) {
    Origin good("good"), late("late");
    ASSERT_TRUE(good.start());
    ASSERT_TRUE(late.start());
    late.stop();  // its port stays reserved: connections are refused until it restarts
    std::string blocks = upstream_block("backend", "zone backend 64k;",
                                        {late.address() + " fail_timeout=1s", good.address() + " fail_timeout=1s"});
    Daemon daemon(gateway_config(2, blocks, "        location / { proxy_pass http://backend; }\n"));
    ASSERT_TRUE(daemon.start());
    auto counts = spread(daemon.port(), "/", 10);
    EXPECT_EQ(count_of(counts, "good"), 10) << describe(counts);
    EXPECT_TRUE(daemon.wait_for_log("upstream server temporarily disabled"));

    ASSERT_TRUE(late.start());
    EXPECT_TRUE(wait_until([&] { return count_of(spread(daemon.port(), "/", 4), "late") > 0; }, kDefaultTimeout,
                           100ms));
    // Back for both workers: round robin splits again.
    counts = spread(daemon.port(), "/", 20);
    EXPECT_GE(count_of(counts, "late"), 6) << describe(counts);
    EXPECT_GE(count_of(counts, "good"), 6) << describe(counts);
}

// ==== active health ===================================================================

class UpstreamActiveHealth : public ::testing::Test {
protected:
    static constexpr std::string_view kMatch =
        "    match json_ok {\n"
        "        status 200;\n"
        "        header Content-Type ~ json;\n"
        "        body ~ \"uri.:./hc\";\n"
        "    }\n"
        "    match never {\n"
        "        body ~ \"no-such-text\";\n"
        "    }\n"
        "    match from_nobody {\n"
        "        header X-Upstream-Id = nobody;\n"
        "    }\n";

    void SetUp() override {
        for (Origin* o : {&a_, &b_, &teapot_}) ASSERT_TRUE(o->start());
    }

    Origin a_{"a"}, b_{"b"}, teapot_{"teapot", {"--fail-status", "418"}};
};

TEST_F(UpstreamActiveHealth, KilledServerGetsNoTrafficAndReturnsWhenRestarted) {
    std::string blocks =
        std::string(kMatch) +
        upstream_block("backend", "zone backend 64k; health_check interval=100ms fails=1 passes=2 uri=/hc match=json_ok;",
                       {a_.address() + " fail_timeout=30s", b_.address() + " fail_timeout=30s",
                        teapot_.address()});
    // proxy_next_upstream off: a request sent to a dead server would fail, so
    // the answers show which servers the balancer still picks.
    Daemon daemon(gateway_config(2, blocks,
                                 "        location / { proxy_pass http://backend; proxy_next_upstream off; }\n"));
    ASSERT_TRUE(daemon.start());

    // The teapot answers, but not what the match wants: never used.
    auto all_good = [&](const std::set<std::string>& wanted) {
        auto counts = spread(daemon.port(), "/", 12);
        std::set<std::string> seen;
        for (const auto& [id, n] : counts) seen.insert(id);
        if (seen != wanted) std::cerr << "spread " << describe(counts) << "\n";
        return seen == wanted;
    };
    EXPECT_TRUE(wait_until([&] { return all_good({"a", "b"}); }, kDefaultTimeout, 50ms));

    // A request that crosses the kill may still meet it (a 502 here), which
    // also takes it out for fail_timeout=30s by passive health; once the
    // checks pass again it must serve again, without waiting for that.
    a_.stop();
    EXPECT_TRUE(wait_until([&] { return all_good({"b"}); }, kDefaultTimeout, 50ms));
    auto counts = spread(daemon.port(), "/", 20);
    EXPECT_EQ(count_of(counts, "b"), 20) << describe(counts);
    // The restart must come after the checks saw the server dead: only that
    // transition back to healthy lifts a passive mark (a loaded machine can
    // delay the prober past the requests above).
    auto a_seen_dead = [&] {
        std::string log = daemon.error_log();
        for (size_t at = log.find("peer is unhealthy"); at != std::string::npos;
             at = log.find("peer is unhealthy", at + 1))
            if (log.substr(at, log.find('\n', at) - at).find(a_.address()) != std::string::npos) return true;
        return false;
    };
    ASSERT_TRUE(wait_until(a_seen_dead, kDefaultTimeout));

    ASSERT_TRUE(a_.start());
    EXPECT_TRUE(wait_until([&] { return all_good({"a", "b"}); }, kDefaultTimeout, 50ms));
    EXPECT_TRUE(daemon.wait_for_log("peer is healthy"));
}

// The zone outlives a reload (same name and size): a server the checks
// took out stays out in the new workers, whose own checks (fails=3 every
// 5 s) would take seconds to find it dead again.
TEST_F(UpstreamActiveHealth, CheckResultsSurviveReload) {
    auto config = [&](std::string_view check) {
        return gateway_config(1, upstream_block("backend", "zone backend 64k; " + std::string(check),
                                                {a_.address(), b_.address()}),
                              "        location / { proxy_pass http://backend; proxy_next_upstream off; }\n");
    };
    Daemon daemon(config("health_check interval=100ms fails=1 uri=/hc;"));
    ASSERT_TRUE(daemon.start());
    a_.stop();
    ASSERT_TRUE(daemon.wait_for_log("peer is unhealthy"));
    ASSERT_TRUE(reload(daemon, config("health_check interval=5s fails=3 uri=/hc;")));
    auto counts = spread(daemon.port(), "/", 20);
    EXPECT_EQ(count_of(counts, "b"), 20) << describe(counts);
}

// The pids of the workers that took the prober lease of `upstream`, in order.
std::vector<std::string> prober_pids(const std::string& log, std::string_view upstream) {
    std::string needle = "health checks of upstream \"" + std::string(upstream) + "\" run in this worker";
    std::vector<std::string> pids;
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
        size_t line = log.rfind('\n', at);
        line = line == std::string::npos ? 0 : line + 1;
        size_t hash = log.find('#', line);
        size_t space = log.rfind(' ', hash);
        if (hash < at && space != std::string::npos) pids.push_back(log.substr(space + 1, hash - space - 1));
    }
    return pids;
}

// Probes an origin received over about 1.5 s, checked against the rate of
// a single prober.
void expect_one_prober_rate(Origin& origin, int interval_ms) {
    auto start = std::chrono::steady_clock::now();
    uint64_t before = origin.served();
    std::this_thread::sleep_for(1500ms);
    uint64_t probes = origin.served() - before;
    auto window = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start).count();
    // One prober: about window / interval probes; two would make twice that.
    double one_prober = double(window) / interval_ms;
    EXPECT_GE(probes, 3u);
    EXPECT_LE(double(probes), one_prober * 1.4 + 2) << "window " << window << " ms";
}

TEST_F(UpstreamActiveHealth, OneProberAcrossWorkersAndTakeoverWhenItDies) {
    constexpr int kIntervalMs = 100;
    std::string blocks = upstream_block(
        "backend", "zone backend 64k; health_check interval=" + std::to_string(kIntervalMs) + "ms uri=/hc;",
        {a_.address()});
    Daemon daemon(gateway_config(2, blocks, "        location / { proxy_pass http://backend; }\n"));
    ASSERT_TRUE(daemon.start());
    ASSERT_TRUE(wait_until([&] { return daemon.worker_pids().size() == 2; }, kDefaultTimeout));
    ASSERT_TRUE(wait_until([&] { return a_.served() >= 3; }, kDefaultTimeout));
    expect_one_prober_rate(a_, kIntervalMs);

    // The prober dies without giving up its lease: another worker takes over.
    std::vector<std::string> probers = prober_pids(daemon.error_log(), "backend");
    ASSERT_EQ(probers.size(), 1u) << daemon.error_log();
    ASSERT_EQ(kill(pid_t(std::stoi(probers[0])), SIGKILL), 0);
    ASSERT_TRUE(wait_until([&] { return prober_pids(daemon.error_log(), "backend").size() == 2; }, kDefaultTimeout));
    EXPECT_NE(prober_pids(daemon.error_log(), "backend")[1], probers[0]);
    ASSERT_TRUE(wait_until([&] { return daemon.worker_pids().size() == 2; }, kDefaultTimeout));
    expect_one_prober_rate(a_, kIntervalMs);
}

TEST_F(UpstreamActiveHealth, AllServersDownAnswers502AtOnce) {
    SilentListener hole1, hole2;
    std::string blocks =
        std::string(kMatch) +
        upstream_block("dead", "health_check interval=100ms fails=1 uri=/hc;", {hole1.address(), hole2.address()}) +
        upstream_block("picky", "health_check interval=100ms fails=1 uri=/hc match=never;",
                       {a_.address(), b_.address()}) +
        upstream_block("strangers", "health_check interval=100ms fails=1 uri=/hc match=from_nobody;",
                       {a_.address(), b_.address()});
    Daemon daemon(gateway_config(1, blocks,
                                 "        location /dead/ { proxy_pass http://dead; proxy_connect_timeout 10s; "
                                 "proxy_read_timeout 10s; }\n"
                                 "        location /picky/ { proxy_pass http://picky; }\n"
                                 "        location /strangers/ { proxy_pass http://strangers; }\n"));
    ASSERT_TRUE(daemon.start());
    ASSERT_TRUE(daemon.wait_for_log("peer is unhealthy while waiting for upstream", kDefaultTimeout));
    // Each of the six peers turns unhealthy once (the holes by timing out).
    ASSERT_TRUE(wait_until([&] { return occurrences(daemon.error_log(), "peer is unhealthy") >= 6; },
                           kDefaultTimeout, 50ms));

    auto started = std::chrono::steady_clock::now();
    Response r = get(daemon.port(), "/dead/hello", "", 15000ms);
    auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(r.status, 502) << r;
    // A functional bound: no 10 s connect or read timeout was waited for.
    EXPECT_LT(took, 1s);
    EXPECT_TRUE(daemon.wait_for_log("no live upstreams while connecting to upstream \"dead\""));
    EXPECT_THAT(daemon.error_log(), HasSubstr("upstream: \"http://dead/dead/hello\""));
    EXPECT_EQ(daemon.error_log().find("upstream: \"http:///"), std::string::npos);

    // Live servers whose replies fail the match are out of service too.
    EXPECT_EQ(get(daemon.port(), "/picky/x").status, 502);
    EXPECT_EQ(get(daemon.port(), "/strangers/x").status, 502);
    EXPECT_THAT(daemon.error_log(), HasSubstr("failed while checking headers"));
}

// `mandatory`: servers serve only once a check has passed. Checks that go
// to a port where nothing listens never pass, so no request is ever sent,
// even before the first check (fails=3 would otherwise allow 2 s of traffic).
TEST_F(UpstreamActiveHealth, MandatoryKeepsUncheckedServersOut) {
    std::string blocks = upstream_block(
        "backend", "health_check interval=1s fails=3 port=" + std::to_string(refused_port()) + " mandatory;",
        {a_.address(), b_.address()});
    Daemon daemon(gateway_config(1, blocks, "        location / { proxy_pass http://backend; }\n"));
    ASSERT_TRUE(daemon.start());
    auto counts = spread(daemon.port(), "/", 5);
    EXPECT_EQ(count_of(counts, "status 502"), 5) << describe(counts);
    EXPECT_EQ(a_.served() + b_.served(), 0u);
}

// ==== configuration errors ===========================================================

std::string check_config(std::string_view http_body) {
    Daemon daemon(std::string(kMainConfig) + "events {}\nhttp {\n" + std::string(http_body) + "}\n");
    CommandResult result = daemon.run_cli({"-t"});
    if (result.exit_code == 0) return "<accepted>";
    std::string path = daemon.conf_path();
    std::string& out = result.output;
    for (size_t at; (at = out.find(path)) != std::string::npos;) out.replace(at, path.size(), "CONF");
    return out;
}

TEST(UpstreamConfig, ErrorsNameFileAndLine) {
    // kMainConfig is 3 lines, then "events {}" and "http {": the body starts at line 6.
    EXPECT_THAT(check_config("upstream u {\n  server 127.0.0.1:1 colour=blue;\n}\n"),
                HasSubstr("invalid parameter \"colour=blue\" in CONF:7"));
    EXPECT_THAT(check_config("upstream u {\n  server 127.0.0.1:1 weight=0;\n}\n"),
                HasSubstr("invalid parameter \"weight=0\" in CONF:7"));
    EXPECT_THAT(check_config("upstream u {\n  server 127.0.0.1:1 weight=heavy;\n}\n"),
                HasSubstr("invalid parameter \"weight=heavy\" in CONF:7"));
    EXPECT_THAT(check_config("upstream u {\n  hash;\n  server 127.0.0.1:1;\n}\n"),
                HasSubstr("invalid number of arguments in \"hash\" directive in CONF:7"));
    EXPECT_THAT(check_config("upstream u {\n  server 127.0.0.1:1;\n  health_check match=nope;\n}\n"),
                HasSubstr("match \"nope\" not found in CONF:8"));
    EXPECT_THAT(check_config("upstream u {\n  hash $arg_k;\n  server 127.0.0.1:1 backup;\n}\n"),
                HasSubstr("balancing method does not support the \"backup\" parameter in CONF:8"));
    EXPECT_THAT(check_config("upstream u {\n}\n"), HasSubstr("no servers are inside upstream \"u\" in CONF:6"));
    EXPECT_THAT(check_config("upstream u {\n  server no-such-host.invalid:80;\n}\n"),
                HasSubstr("host not found in upstream \"no-such-host.invalid:80\" in CONF:7"));
    EXPECT_THAT(check_config("match m {\n  status 99;\n}\n"), HasSubstr("in CONF:7"));
}

}  // namespace
}  // namespace sluice::test
