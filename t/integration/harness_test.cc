// Tests of the integration harness itself (t/lib), runnable without the daemon: the
// test upstream, the raw client, the load loop, and process control against a
// stand-in script.
//
//   g++ -std=c++20 -O1 -Wall -Wextra -o /tmp/test_upstream t/lib/test_upstream.cc -levent
//   g++ -std=c++20 -Wall -Wextra -It/lib -o /tmp/harness_test t/integration/harness_test.cc t/lib/harness.cc -lgtest -lgtest_main -pthread
//   SLUICE_TEST_UPSTREAM=/tmp/test_upstream /tmp/harness_test

#include "../lib/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <thread>

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

bool process_alive(pid_t pid) {
    std::string text = read_file("/proc/" + std::to_string(pid) + "/stat");
    size_t paren = text.rfind(')');
    return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

// Accepts one connection, waits for a request head, answers with `reply` verbatim and
// closes: responses no well-behaved server would send.
class CannedServer {
public:
    explicit CannedServer(std::string reply) : reply_(std::move(reply)) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        listen(listen_fd_, 1);
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~CannedServer() {
        ::shutdown(listen_fd_, SHUT_RDWR);  // unblocks accept() if nobody came
        thread_.join();
        ::close(listen_fd_);
    }
    uint16_t port() const { return port_; }

private:
    void serve() {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;
        timeval five_seconds{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof five_seconds);
        std::string request;
        char chunk[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
            ssize_t n = recv(fd, chunk, sizeof chunk, 0);
            if (n <= 0) break;
            request.append(chunk, static_cast<size_t>(n));
        }
        ::send(fd, reply_.data(), reply_.size(), MSG_NOSIGNAL);
        ::close(fd);
    }

    std::string reply_;
    int listen_fd_ = -1;
    uint16_t port_ = 0;
    std::thread thread_;
};

// Stands in for objs/sluice: takes -p PREFIX -c CONF like the daemon, fails on a
// config line "broken;", logs to PREFIX/logs/error.log, forks a "worker", and serves
// the config's `listen` port with the test upstream.
constexpr std::string_view kStandInScript = R"(#!/bin/sh
prefix=$2 conf=$4
shift 4
if [ "$1" = -t ]; then
    echo "sluice: the configuration file $conf syntax is ok" >&2
    exit 0
fi
if grep -q '^broken;' "$conf"; then
    echo "sluice: [emerg] unknown directive \"broken\" in $conf:3" >&2
    exit 1
fi
port=$(sed -n 's/.*listen 127\.0\.0\.1:\([0-9]*\);.*/\1/p' "$conf")
echo "stand-in started" >> "${prefix}logs/error.log"
sleep 30 &
exec "${SLUICE_TEST_UPSTREAM:-objs/test_upstream}" --port "$port" --id stand-in
)";

std::string write_stand_in(const TempDir& dir) {
    dir.write("sluice-stand-in", kStandInScript);
    std::string path = dir.path("sluice-stand-in");
    chmod(path.c_str(), 0755);
    return path;
}

TEST(Harness, FreePortNeverRepeats) {
    std::set<uint16_t> seen;
    for (int i = 0; i < 200; ++i) {
        uint16_t port = free_port();
        EXPECT_NE(port, 0);
        EXPECT_TRUE(seen.insert(port).second) << "port " << port << " handed out twice";
    }
}

TEST(Harness, TempDirWritesReadsAndRemoves) {
    std::string path;
    {
        TempDir dir;
        path = dir.path();
        dir.write("a/b/c.txt", "hello\n");
        EXPECT_EQ(dir.read("a/b/c.txt"), "hello\n");
        EXPECT_EQ(dir.read("missing"), "");
    }
    if (!std::getenv("SLUICE_KEEP_TMP")) {
        EXPECT_NE(access(path.c_str(), F_OK), 0);
    }
}

TEST(Harness, UpstreamEchoesRequest) {
    UpstreamProcess upstream({"--id", "up-a"});
    ASSERT_TRUE(upstream.start());
    auto response = http_get(upstream.port(), "/echo/me?x=1&y", "X-Test: One\r\nx-test: two\r\n");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->reason, "OK");
    EXPECT_EQ(response->header("x-upstream-id"), "up-a");
    EXPECT_EQ(response->header("Content-Type"), "application/json");
    EXPECT_EQ(response->count("content-length"), 1);
    const std::string& body = response->body;
    EXPECT_NE(body.find(R"("method":"GET")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("uri":"/echo/me?x=1&y")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("x-test":"One, two")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("host":"localhost")"), std::string::npos) << body;
    EXPECT_NE(body.find(R"("body_length":0)"), std::string::npos) << body;
}

TEST(Harness, UpstreamSpecialPaths) {
    UpstreamProcess upstream;
    ASSERT_TRUE(upstream.start());
    uint16_t port = upstream.port();
    EXPECT_EQ(upstream.pid() > 0, true);

    auto status = http_get(port, "/status/503");
    ASSERT_TRUE(status);
    EXPECT_EQ(status->status, 503);
    EXPECT_EQ(status->header("X-Upstream-Id"), std::to_string(port));

    auto sized = http_get(port, "/size/100000");
    ASSERT_TRUE(sized);
    ASSERT_EQ(sized->body.size(), 100000u);
    EXPECT_EQ(sized->body.substr(0, 3), "abc");
    EXPECT_EQ(sized->body[99999], 'a' + 99999 % 26);

    auto chunked = http_get(port, "/chunked");
    ASSERT_TRUE(chunked);
    EXPECT_EQ(chunked->header("Transfer-Encoding"), "chunked");
    EXPECT_TRUE(chunked->body.starts_with(R"({"method":"GET","uri":"/chunked")")) << chunked->body;
    EXPECT_TRUE(chunked->body.ends_with("}")) << chunked->body;

    auto started = std::chrono::steady_clock::now();
    auto delayed = http_get(port, "/delay/150");
    ASSERT_TRUE(delayed);
    EXPECT_EQ(delayed->status, 200);
    EXPECT_GE(std::chrono::steady_clock::now() - started, 150ms);

    Conn conn(port);
    ASSERT_TRUE(conn.connected()) << conn.error();
    ASSERT_TRUE(conn.send("POST /close HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
    auto closed = conn.read_response();
    ASSERT_TRUE(closed) << conn.error();
    EXPECT_EQ(closed->header("Connection"), "close");
    EXPECT_NE(closed->body.find(R"("body_length":5)"), std::string::npos) << closed->body;
    EXPECT_TRUE(conn.is_closed(2s));
}

TEST(Harness, ConnParsesPipelinedResponses) {
    UpstreamProcess upstream;
    ASSERT_TRUE(upstream.start());
    Conn conn(upstream.port());
    ASSERT_TRUE(conn.connected()) << conn.error();
    // All in one write: the client must split the answers by their framing alone.
    ASSERT_TRUE(conn.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                          "HEAD /size/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n"
                          "POST /status/201 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
                          "GET /delay/50 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto first = conn.read_response();
    ASSERT_TRUE(first) << conn.error();
    EXPECT_NE(first->body.find(R"("uri":"/first")"), std::string::npos);

    auto head = conn.read_head_response();
    ASSERT_TRUE(head) << conn.error();
    EXPECT_EQ(head->header("Content-Length"), "1000");
    EXPECT_EQ(head->body, "");

    auto chunked = conn.read_response();
    ASSERT_TRUE(chunked) << conn.error();
    EXPECT_NE(chunked->body.find(R"("uri":"/chunked")"), std::string::npos) << chunked->body;

    auto created = conn.read_response();
    ASSERT_TRUE(created) << conn.error();
    EXPECT_EQ(created->status, 201);
    EXPECT_NE(created->body.find(R"("body_length":7)"), std::string::npos) << created->body;

    auto delayed = conn.read_response();
    ASSERT_TRUE(delayed) << conn.error();
    EXPECT_NE(delayed->body.find(R"("uri":"/delay/50")"), std::string::npos);

    auto no_content = conn.read_response();
    ASSERT_TRUE(no_content) << conn.error();
    EXPECT_EQ(no_content->status, 204);
    EXPECT_EQ(no_content->body, "");

    auto last = conn.read_response();
    ASSERT_TRUE(last) << conn.error();
    EXPECT_NE(last->body.find(R"("uri":"/last")"), std::string::npos);
    EXPECT_FALSE(last->keep_alive());
    EXPECT_TRUE(conn.is_closed(2s));
    EXPECT_EQ(conn.buffered(), "");
}

TEST(Harness, ConnFramesOddButValidResponses) {
    {
        CannedServer server("HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nuntil the end");
        auto response = http_get(server.port(), "/");
        ASSERT_TRUE(response);
        EXPECT_EQ(response->version, "HTTP/1.0");
        EXPECT_EQ(response->body, "until the end");
    }
    {
        CannedServer server("HTTP/1.1 200 \r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                            "5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n");
        auto response = http_get(server.port(), "/");
        ASSERT_TRUE(response);
        EXPECT_EQ(response->reason, "");
        EXPECT_EQ(response->body, "hello");
        ASSERT_EQ(response->trailers.size(), 1u);
        EXPECT_EQ(response->trailers[0].second, "1");
    }
}

TEST(Harness, ConnRejectsBrokenResponses) {
    struct Case {
        std::string reply;
        ReadError expected;
    };
    std::vector<Case> cases = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", ReadError::Closed},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
         ReadError::Malformed},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         ReadError::Malformed},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", ReadError::Closed},
        {"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", ReadError::Malformed},
        {"HTTP/1.1 200\r\n\r\n", ReadError::Malformed},
        {"", ReadError::Closed},
    };
    for (const Case& c : cases) {
        CannedServer server(c.reply);
        Conn conn(server.port());
        ASSERT_TRUE(conn.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        EXPECT_FALSE(conn.read_response(2s)) << c.reply;
        EXPECT_EQ(conn.read_error(), c.expected) << c.reply << "\n" << conn.error();
    }
}

TEST(Harness, LoadLoopCountsKeepAliveResponses) {
    UpstreamProcess upstream;
    ASSERT_TRUE(upstream.start());
    LoadOptions options;
    options.port = upstream.port();
    options.path = "/load";
    options.connections = 4;
    options.max_requests = 2000;
    LoadLoop load(options);
    EXPECT_TRUE(load.wait_for_completed(2000, 10s));
    LoadResult result = load.stop();
    EXPECT_EQ(result.ok, 2000u) << result;
    EXPECT_EQ(result.failed, 0u) << result;
    EXPECT_EQ(result.by_status[200], result.ok) << result;
    EXPECT_EQ(result.reconnects, 0u) << result;
}

TEST(Harness, LoadLoopReconnectsAfterCleanClose) {
    UpstreamProcess upstream;
    ASSERT_TRUE(upstream.start());
    LoadOptions options;
    options.port = upstream.port();
    options.path = "/close";
    options.connections = 2;
    options.max_requests = 200;
    LoadLoop load(options);
    EXPECT_TRUE(load.wait_for_completed(200, 10s));
    LoadResult result = load.stop();
    EXPECT_EQ(result.ok, 200u) << result;
    EXPECT_EQ(result.failed, 0u) << result;
}

TEST(Harness, LoadLoopCountsFailuresWhenTheServerDies) {
    UpstreamProcess upstream;
    ASSERT_TRUE(upstream.start());
    LoadOptions options;
    options.port = upstream.port();
    options.connections = 2;
    LoadLoop load(options);
    ASSERT_TRUE(load.wait_for_completed(100));
    upstream.stop();
    std::this_thread::sleep_for(100ms);
    LoadResult result = load.stop();
    EXPECT_GE(result.ok, 100u) << result;
    EXPECT_GT(result.failed, 0u) << result;
    EXPECT_FALSE(result.errors.empty());
}

TEST(Harness, DaemonSubstitutesTheConfigTemplate) {
    Daemon daemon("prefix {{PREFIX}};\nlisten 127.0.0.1:{{PORT}};\nlisten {{PORT2}};\n"
                  "upstream {{UPSTREAM_PORT}} {{NAME}};\n",
                  {{"UPSTREAM_PORT", uint16_t{1234}}, {"NAME", "x"}});
    std::string expected = "prefix " + daemon.prefix() + ";\nlisten 127.0.0.1:" +
                           std::to_string(daemon.port()) + ";\nlisten " +
                           std::to_string(daemon.port("PORT2")) + ";\nupstream 1234 x;\n";
    EXPECT_EQ(daemon.config(), expected);
    EXPECT_EQ(daemon.dir().read("conf/sluice.conf"), expected);
    EXPECT_NE(daemon.port(), daemon.port("PORT2"));
    EXPECT_THROW(Daemon("x {{UNKNOWN}};"), std::invalid_argument);
}

TEST(Harness, DaemonLifecycleWithStandIn) {
    TempDir bin;
    Daemon daemon(std::string(kMainConfig) + "http { server { listen 127.0.0.1:{{PORT}}; } }\n");
    daemon.set_binary(write_stand_in(bin));
    ASSERT_TRUE(daemon.start());
    EXPECT_TRUE(daemon.wait_for_log("stand-in started", 2s));
    EXPECT_FALSE(daemon.wait_for_log("stand-in started", 10ms, daemon.error_log_size()));

    auto response = http_get(daemon.port(), "/");
    ASSERT_TRUE(response);
    EXPECT_EQ(response->header("X-Upstream-Id"), "stand-in");

    std::vector<pid_t> workers = daemon.worker_pids();
    ASSERT_EQ(workers.size(), 1u);
    EXPECT_TRUE(daemon.stop());
    EXPECT_FALSE(daemon.running());
    // The "worker" outlived its master; stop() ended it with the process group.
    EXPECT_FALSE(process_alive(workers[0]));
    EXPECT_TRUE(daemon.stop());  // idempotent
}

TEST(Harness, DaemonWaitExitReportsTheStatus) {
    TempDir bin;
    Daemon daemon("listen 127.0.0.1:{{PORT}};\n");
    daemon.set_binary(write_stand_in(bin));
    ASSERT_TRUE(daemon.start());
    EXPECT_FALSE(daemon.wait_exit(50ms));
    EXPECT_TRUE(daemon.signal(SIGTERM));
    auto status = daemon.wait_exit(5s);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << describe_wait_status(*status);
    EXPECT_FALSE(daemon.signal(SIGTERM));
}

TEST(Harness, DaemonStartFailureCarriesStderr) {
    TempDir bin;
    Daemon daemon("listen 127.0.0.1:{{PORT}};\nx;\nbroken;\n");
    daemon.set_binary(write_stand_in(bin));
    auto started = daemon.start();
    ASSERT_FALSE(started);
    EXPECT_NE(std::string(started.message()).find("[emerg] unknown directive \"broken\""),
              std::string::npos)
        << started.message();
    EXPECT_NE(std::string(started.message()).find("exit code 1"), std::string::npos)
        << started.message();
}

TEST(Harness, DaemonStartFailsWhenTheBinaryIsMissing) {
    Daemon daemon("listen 127.0.0.1:{{PORT}};\n");
    daemon.set_binary("/nonexistent/sluice");
    auto started = daemon.start();
    ASSERT_FALSE(started);
    EXPECT_NE(std::string(started.message()).find("No such file"), std::string::npos)
        << started.message();
}

TEST(Harness, RunCliAndRunCommand) {
    TempDir bin;
    Daemon daemon("listen 127.0.0.1:{{PORT}};\n");
    daemon.set_binary(write_stand_in(bin));
    CommandResult tested = daemon.run_cli({"-t"});
    EXPECT_EQ(tested.exit_code, 0) << tested.output;
    EXPECT_NE(tested.output.find("syntax is ok"), std::string::npos) << tested.output;

    CommandResult shell = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
    EXPECT_EQ(shell.exit_code, 3);
    EXPECT_EQ(shell.output, "out\nerr\n");

    auto started = std::chrono::steady_clock::now();
    CommandResult slow = run_command({"sleep", "10"}, 200ms);
    EXPECT_EQ(slow.exit_code, -1);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
}

}  // namespace
}  // namespace sluice::test
