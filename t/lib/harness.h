// The integration test harness: process control (Daemon, UpstreamProcess, Process),
// a raw HTTP/1.1 client (Conn, http_get), and a background load generator (LoadLoop).
// Tests run from the repository root; every wait in here is bounded by a timeout.
//
// Build and run the harness's own tests:
//   g++ -std=c++20 -O1 -Wall -Wextra -o /tmp/test_upstream t/lib/test_upstream.cc -levent
//   g++ -std=c++20 -Wall -Wextra -It/lib -o /tmp/harness_test t/integration/harness_test.cc t/lib/harness.cc -lgtest -lgtest_main -pthread
//   SLUICE_TEST_UPSTREAM=/tmp/test_upstream /tmp/harness_test
//
// Environment: SLUICE_BIN (default objs/sluice), SLUICE_TEST_UPSTREAM (default
// objs/test_upstream), SLUICE_TEST_DNS (default objs/test_dns), SLUICE_KEEP_TMP (keep
// temporary directories), TMPDIR.

#pragma once

#include <gtest/gtest.h>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::test {

using Millis = std::chrono::milliseconds;
inline constexpr Millis kDefaultTimeout{5000};
inline constexpr Millis kStartTimeout{10000};

// The main-context lines nearly every test config starts with: foreground, and the
// error log and pid file where Daemon::error_log() and read_pid_file() look.
inline constexpr std::string_view kMainConfig =
    "daemon off;\n"
    "error_log {{PREFIX}}/logs/error.log info;\n"
    "pid {{PREFIX}}/logs/sluice.pid;\n";

std::string sluice_binary();         // $SLUICE_BIN, else "objs/sluice"
std::string test_upstream_binary();  // $SLUICE_TEST_UPSTREAM, else "objs/test_upstream"
std::string test_dns_binary();       // $SLUICE_TEST_DNS, else "objs/test_dns"

// A loopback port that was free a moment ago; never the same twice in one process.
uint16_t free_port();

// The whole file, or "" when it is missing or unreadable. Never throws: a /proc file
// can vanish while it is read.
std::string read_file(const std::string& path);

// Polls `done` every `interval` until it is true (returns true) or `timeout` passes.
bool wait_until(const std::function<bool()>& done, Millis timeout, Millis interval = Millis{10});

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction
// unless SLUICE_KEEP_TMP is set. Paths given to write() and read() are relative to it.
class TempDir {
public:
    explicit TempDir(std::string_view name_prefix = "sluice-test");
    ~TempDir();
    TempDir(TempDir&& other) noexcept;
    TempDir& operator=(TempDir&& other) noexcept;
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string path(std::string_view relpath) const;
    void write(std::string_view relpath, std::string_view content) const;  // creates parents
    std::string read(std::string_view relpath) const;  // "" when missing

private:
    void remove();
    std::string path_;
};

struct CommandResult {
    int exit_code = -1;  // 128 + signal when killed by one; -1 when it timed out
    std::string output;  // stdout and stderr, interleaved as written
};

// Runs argv (argv[0] is looked up in PATH when it has no '/') to completion and
// captures its output; killed when `timeout` passes.
CommandResult run_command(const std::vector<std::string>& argv, Millis timeout = kStartTimeout);

// A child process in its own process group, so that stop() can also end whatever it
// forked (workers, a new master after a binary upgrade). It gets `death_signal` if the
// thread that spawned it dies, so a crashed test run leaks nothing.
class Process {
public:
    Process() = default;
    ~Process();
    Process(Process&& other) noexcept;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    // stdin is /dev/null; stdout and stderr go to `output_fd` (-1: inherited).
    bool spawn(const std::vector<std::string>& argv, int output_fd, int death_signal);
    pid_t pid() const { return pid_; }
    bool running();
    bool signal(int sig);
    // The raw wait status (use WIFEXITED etc.) once it has exited, or nullopt on timeout.
    std::optional<int> wait_exit(Millis timeout);
    std::optional<int> exit_status() const { return status_; }
    // Sends `first_signal`, waits up to `grace`, then SIGKILLs the process group; in any
    // case ends what is left in the group. True if it exited within `grace`.
    bool stop(int first_signal, Millis grace);
    const std::string& error() const { return error_; }

private:
    void end_group_leftovers();
    pid_t pid_ = 0;
    std::optional<int> status_;
    std::string error_;
};

// "exit code 1", "signal 9 (Killed)", ...
std::string describe_wait_status(int status);

// A value substituted for {{NAME}} in a config template: text or a number.
struct ConfigValue {
    std::string text;
    ConfigValue(std::string s) : text(std::move(s)) {}
    ConfigValue(const char* s) : text(s) {}
    ConfigValue(std::string_view s) : text(s) {}
    template <std::integral T>
    ConfigValue(T n) : text(std::to_string(n)) {}
};
using ConfigVars = std::map<std::string, ConfigValue, std::less<>>;

// The real daemon, run in the foreground (the config needs `daemon off;`, see
// kMainConfig) with its own prefix directory:
//   PREFIX/conf/sluice.conf   the config, from the template
//   PREFIX/logs/              error.log (by convention), stderr.log (stdout+stderr)
// In the template, {{PREFIX}} is the prefix directory (no trailing slash) and {{NAME}}
// is vars["NAME"]. {{PORT}}, {{PORT2}}, ... that the test did not give get a
// free_port(); these are the daemon's own listening ports and start() waits for them.
// Any other unknown {{NAME}} throws std::invalid_argument.
class Daemon {
public:
    explicit Daemon(std::string_view config_template, ConfigVars vars = {});
    ~Daemon();  // stop(); on a failed test, prints the tail of the logs
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    const std::string& prefix() const { return dir_.path(); }
    const TempDir& dir() const { return dir_; }
    std::string conf_path() const { return dir_.path("conf/sluice.conf"); }
    const std::string& config() const { return config_; }  // as written
    uint16_t port(std::string_view name = "PORT") const;      // throws if not a number
    // Rewrites the config from a new template with the same vars (e.g. before a reload).
    void write_config(std::string_view config_template);
    void set_binary(std::string path) { binary_ = std::move(path); }

    // Runs `BIN -p PREFIX/ -c PREFIX/conf/sluice.conf` and waits until every listening
    // port accepts a connection. On failure the message carries the daemon's stderr.
    ::testing::AssertionResult start(Millis timeout = kStartTimeout);
    ::testing::AssertionResult start(const std::vector<uint16_t>& ports,
                                     Millis timeout = kStartTimeout);
    pid_t pid() const { return process_.pid(); }  // the master
    bool running() { return process_.running(); }
    bool signal(int sig) { return process_.signal(sig); }
    std::optional<int> wait_exit(Millis timeout) { return process_.wait_exit(timeout); }
    // QUIT, up to 5 s, then KILL; ends every process left in its group. True if the
    // master exited by itself. Safe to call when not running.
    bool stop();

    std::string error_log() const { return dir_.read("logs/error.log"); }
    std::string stderr_log() const { return dir_.read("logs/stderr.log"); }
    // For wait_for_log(..., from): only what was logged after this point counts.
    size_t error_log_size() const { return error_log().size(); }
    bool wait_for_log(std::string_view needle, Millis timeout = kDefaultTimeout,
                      size_t from = 0) const;
    std::vector<pid_t> worker_pids() const;  // live children of the master, sorted
    std::optional<pid_t> read_pid_file(std::string_view relpath = "logs/sluice.pid") const;
    // Runs `BIN -p PREFIX/ -c PREFIX/conf/sluice.conf ARGS...` synchronously, one
    // element per word: run_cli({"-t"}), run_cli({"-s", "reload"}).
    CommandResult run_cli(const std::vector<std::string>& args,
                          Millis timeout = kStartTimeout) const;

private:
    std::string substitute(std::string_view config_template);
    void print_logs_if_failed() const;

    TempDir dir_;
    ConfigVars vars_;
    std::vector<uint16_t> listen_ports_;
    std::string config_;
    std::string binary_;
    Process process_;
    bool started_ = false;
};

// objs/test_upstream (see t/lib/test_upstream.cc) on 127.0.0.1:port().
class UpstreamProcess {
public:
    // `options` are extra arguments, e.g. {"--id", "a"}; port 0 picks a free one.
    // With {"--address", "127.0.0.2"} it listens (and start() waits) there instead.
    explicit UpstreamProcess(std::vector<std::string> options = {}, uint16_t port = 0);
    ~UpstreamProcess();
    UpstreamProcess(UpstreamProcess&&) noexcept = default;
    UpstreamProcess& operator=(UpstreamProcess&&) noexcept = default;

    // Starts it (again, after stop(): same port) and waits until it accepts connections.
    ::testing::AssertionResult start(Millis timeout = kStartTimeout);
    void stop();
    uint16_t port() const { return port_; }
    pid_t pid() const { return process_.pid(); }

private:
    TempDir dir_;
    std::vector<std::string> options_;
    uint16_t port_;
    Process process_;
};

// objs/test_dns (see t/lib/test_dns.cc): a DNS server on UDP 127.0.0.1:port() that
// answers from a zone file read again for every query, and logs every query.
class DnsServerProcess {
public:
    // Port 0: the server picks one at the first start(); later starts reuse it.
    explicit DnsServerProcess(uint16_t port = 0);
    ~DnsServerProcess();
    DnsServerProcess(DnsServerProcess&&) noexcept = default;
    DnsServerProcess& operator=(DnsServerProcess&&) noexcept = default;

    // Replaces the zone atomically (a new file renamed over the old): lines
    // "name TTL A 127.0.0.2", "name TTL AAAA ::1", "name TTL SERVFAIL", "name TTL DROP".
    void set_zone(std::string_view zone) const;
    // Starts it (again, after stop(): same port) and waits until it has bound its socket.
    ::testing::AssertionResult start(Millis timeout = kStartTimeout);
    void stop();
    uint16_t port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    pid_t pid() const { return process_.pid(); }
    // The query log: one line per query, "name TYPE OUTCOME ANSWERS" (name lowercased).
    std::string log() const { return dir_.read("queries.log"); }
    // Queries for `name` (lowercase) of `type` ("A", "AAAA"; "" for any) so far.
    size_t queries(std::string_view name, std::string_view type = "") const;

private:
    TempDir dir_;
    uint16_t port_;
    Process process_;
};

struct Response {
    std::string version;  // "HTTP/1.1"
    int status = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
    std::vector<std::pair<std::string, std::string>> trailers;  // chunked trailer fields
    std::string body;      // decoded when chunked
    std::string raw_head;  // status line through the empty line

    std::string header(std::string_view name) const;  // case-insensitive, first; "" if none
    int count(std::string_view name) const;
    bool has(std::string_view name) const { return count(name) > 0; }
    bool keep_alive() const;  // what the Connection header and version say
};
std::ostream& operator<<(std::ostream& out, const Response& response);

// Why the last read_response() returned nullopt.
enum class ReadError { None, Closed, Reset, Timeout, Malformed };

// A blocking-style client connection to 127.0.0.1:port. Bytes received beyond one
// response stay buffered for the next read_response(), so pipelining works.
class Conn {
public:
    explicit Conn(uint16_t port, Millis timeout = kDefaultTimeout);
    ~Conn();
    Conn(Conn&& other) noexcept;
    Conn& operator=(Conn&& other) noexcept;
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;

    bool connected() const { return fd_ >= 0; }
    bool send(std::string_view data, Millis timeout = kDefaultTimeout);
    // Parses exactly one response, framed by Content-Length, chunked (decoded) or the
    // connection's end. A response to HEAD has no body whatever its headers say, so say
    // so with `head_request`. Malformed framing or heads are errors: see error().
    std::optional<Response> read_response(Millis timeout = kDefaultTimeout,
                                          bool head_request = false);
    std::optional<Response> read_head_response(Millis timeout = kDefaultTimeout) {
        return read_response(timeout, true);
    }
    // Everything (buffered or new) until the peer closes or `timeout` passes.
    std::string read_all_until_close(Millis timeout = kDefaultTimeout);
    // True once the peer has closed (FIN or reset) within `timeout`; data that arrives
    // meanwhile is kept in buffered().
    bool is_closed(Millis timeout = kDefaultTimeout);
    // Without waiting: has the peer already closed? (e.g. an idle keep-alive timeout)
    bool peer_closed_now();
    bool peer_closed() const { return eof_ || reset_; }
    bool peer_reset() const { return reset_; }
    void shutdown_write();
    void close();

    std::string_view buffered() const { return buffer_; }
    const std::string& error() const { return error_; }
    ReadError read_error() const { return read_error_; }
    int fd() const { return fd_; }

private:
    enum class Fill { Data, Eof, Reset, Timeout };
    using Deadline = std::chrono::steady_clock::time_point;

    Fill fill(Deadline deadline);
    bool fill_or_fail(Deadline deadline, std::string_view waiting_for);
    bool fail(ReadError kind, std::string message);
    bool read_body(Response& response, size_t body_start, bool head_request, Deadline deadline,
                   size_t& end);
    bool read_chunked(Response& response, size_t pos, Deadline deadline, size_t& end);
    bool read_until_close(Response& response, size_t pos, Deadline deadline, size_t& end);

    int fd_ = -1;
    std::string buffer_;
    bool eof_ = false;
    bool reset_ = false;
    std::string error_;
    ReadError read_error_ = ReadError::None;
};

// One request on a fresh connection (Host: localhost and Connection: close unless
// `extra_headers`, "Name: value\r\n" lines, has them). On failure, prints why to stderr.
std::optional<Response> http_get(uint16_t port, std::string_view path,
                                 std::string_view extra_headers = "",
                                 Millis timeout = kDefaultTimeout);
// Sends `raw_request` as is on a fresh connection and reads one response.
std::optional<Response> http_request(uint16_t port, std::string_view raw_request,
                                     Millis timeout = kDefaultTimeout, bool head_request = false);

struct LoadOptions {
    uint16_t port = 0;
    std::string path = "/";
    std::string extra_headers;  // "Name: value\r\n" lines
    int connections = 4;
    uint64_t max_requests = 1'000'000;  // answered plus failed
    Millis max_duration{30000};
    Millis response_timeout = kDefaultTimeout;
    // A reset before any byte of the response, on a reused connection, is the race of
    // a server closing an idle connection as the request crosses it (RFC 9112 9.3.1
    // lets clients retry). Strict by default: it counts as a failure.
    bool retry_reset_before_response = false;
};

struct LoadResult {
    uint64_t ok = 0;      // complete responses with status < 500
    uint64_t failed = 0;  // 5xx, resets, truncated or malformed responses, timeouts,
                          // refused connections
    std::map<int, uint64_t> by_status;
    uint64_t reconnects = 0;          // clean closes between responses
    uint64_t resets_retried = 0;      // with retry_reset_before_response, resets absorbed
    std::vector<std::string> errors;  // the first few failures, for messages
};
std::ostream& operator<<(std::ostream& out, const LoadResult& result);

// Keep-alive GETs over `connections` connections from one background thread (each
// round sends on every connection, then reads every answer) until stop(),
// max_requests or max_duration. A connection the server closes cleanly between
// responses is reopened and is no failure; the request that met the close is sent
// again once on the new connection.
class LoadLoop {
public:
    explicit LoadLoop(LoadOptions options);
    ~LoadLoop();
    LoadLoop(const LoadLoop&) = delete;
    LoadLoop& operator=(const LoadLoop&) = delete;

    uint64_t completed() const { return completed_; }  // responses so far
    bool wait_for_completed(uint64_t count, Millis timeout = kDefaultTimeout) const;
    LoadResult stop();  // joins; may be called more than once

private:
    struct Slot;
    void run();
    bool send_request(Slot& slot);
    void finish_request(Slot& slot);
    void record_failure(std::string error);

    LoadOptions options_;
    std::string request_;
    LoadResult result_;
    std::atomic<uint64_t> completed_{0};
    std::atomic<bool> stop_requested_{false};
    std::thread thread_;
};

}  // namespace sluice::test
