// The integration test harness; see harness.h for the API and how to build it.
//
//   g++ -std=c++20 -Wall -Wextra -It/lib -o /tmp/harness_test t/integration/harness_test.cc t/lib/harness.cc -lgtest -lgtest_main -pthread

#include <sys/stat.h>
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

namespace sluice::test {

namespace {

using Clock = std::chrono::steady_clock;
constexpr Millis kPollInterval{10};
constexpr size_t kMaxResponseHead = 1024 * 1024;
constexpr size_t kLogTailBytes = 4096;
constexpr size_t kMaxLoadErrors = 10;

std::string env_or(const char* name, const char* fallback) {
    const char* value = std::getenv(name);
    return value && *value ? value : fallback;
}

std::string errno_text(int err = errno) { return std::strerror(err); }

int remaining_ms(Clock::time_point deadline) {
    auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
    return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

bool iequals(std::string_view a, std::string_view b) {
    return std::ranges::equal(a, b, [](char x, char y) {
        return std::tolower(static_cast<unsigned char>(x)) ==
               std::tolower(static_cast<unsigned char>(y));
    });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool has_token(std::string_view list, std::string_view token) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        if (iequals(trim(list.substr(0, comma)), token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

template <typename T>
std::optional<T> parse_number(std::string_view s, int base = 10) {
    T value{};
    if (s.empty()) return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value, base);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return value;
}

// Bytes for an error message: control characters made visible, long text cut.
std::string printable(std::string_view bytes, size_t limit = 300) {
    std::string out;
    for (unsigned char c : bytes.substr(0, limit)) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else out += static_cast<char>(c);
    }
    if (bytes.size() > limit) out += "...(" + std::to_string(bytes.size()) + " bytes)";
    return out;
}

std::string tail(std::string_view text, size_t bytes) {
    return std::string(text.size() > bytes ? text.substr(text.size() - bytes) : text);
}

struct ProcStat {
    pid_t pid;
    char state;
    pid_t ppid;
    pid_t pgrp;
};

// Every process in /proc. The command name may hold spaces and parentheses, so the
// fields are read after the last ')'.
std::vector<ProcStat> list_processes() {
    std::vector<ProcStat> out;
    DIR* proc = opendir("/proc");
    if (!proc) return out;
    while (dirent* entry = readdir(proc)) {
        auto pid = parse_number<pid_t>(entry->d_name);
        if (!pid) continue;
        std::string stat = read_file("/proc/" + std::string(entry->d_name) + "/stat");
        size_t paren = stat.rfind(')');
        if (paren == std::string::npos) continue;
        std::istringstream fields(stat.substr(paren + 1));
        ProcStat entry_stat{*pid, 0, 0, 0};
        if (fields >> entry_stat.state >> entry_stat.ppid >> entry_stat.pgrp)
            out.push_back(entry_stat);
    }
    closedir(proc);
    return out;
}

std::vector<pid_t> live_group_members(pid_t pgrp) {
    std::vector<pid_t> out;
    for (const ProcStat& p : list_processes())
        if (p.pgrp == pgrp && p.state != 'Z') out.push_back(p.pid);
    return out;
}

// `host`: an IPv4 address in host byte order (another 127/8 address for origins
// started with --address).
bool port_accepts(uint16_t port, uint32_t host = INADDR_LOOPBACK) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(host);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (!ok && errno == EINPROGRESS) {
        pollfd pfd{fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        ok = poll(&pfd, 1, 200) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
             err == 0;
    }
    ::close(fd);
    return ok;
}

int open_output_file(const std::string& path) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + errno_text());
    return fd;
}

// Between fork and exec only async-signal-safe calls: the test may run other threads
// (LoadLoop) that hold locks the child would inherit.
[[noreturn]] void exec_child(char* const* argv, int output_fd, int error_fd, pid_t parent,
                             int death_signal) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, death_signal);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    if (output_fd >= 0) {
        dup2(output_fd, 1);
        dup2(output_fd, 2);
    }
    // Nothing of the test's (client sockets above all) may live on in the child: a
    // connection the test closes must really close.
    dup2(error_fd, 3);
    fcntl(3, F_SETFD, FD_CLOEXEC);
    if (close_range(4, ~0U, 0) != 0)
        for (int fd = 4; fd < 65536; ++fd) ::close(fd);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &default_action, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execvp(argv[0], argv);
    int err = errno;
    ssize_t ignored = write(3, &err, sizeof err);
    (void)ignored;
    _exit(127);
}

int exit_code_of(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

::testing::AssertionResult wait_listening(Process& process, const std::vector<uint16_t>& ports,
                                          Millis timeout,
                                          const std::function<std::string()>& output,
                                          uint32_t host = INADDR_LOOPBACK) {
    auto deadline = Clock::now() + timeout;
    for (uint16_t port : ports) {
        while (!port_accepts(port, host)) {
            if (!process.running())
                return ::testing::AssertionFailure()
                       << "pid " << process.pid() << " exited ("
                       << describe_wait_status(*process.exit_status())
                       << ") before listening on port " << port << "; output:\n"
                       << output();
            if (Clock::now() >= deadline)
                return ::testing::AssertionFailure()
                       << "port " << port << " not accepting connections after "
                       << timeout.count() << " ms; output:\n"
                       << output();
            std::this_thread::sleep_for(kPollInterval);
        }
    }
    if (!process.running())  // e.g. it listened, then failed a later step of its start-up
        return ::testing::AssertionFailure()
               << "pid " << process.pid() << " exited ("
               << describe_wait_status(*process.exit_status()) << "); output:\n"
               << output();
    return ::testing::AssertionSuccess();
}

bool is_port_placeholder(std::string_view name) {
    if (!name.starts_with("PORT")) return false;
    std::string_view digits = name.substr(4);
    return std::ranges::all_of(digits, [](char c) { return c >= '0' && c <= '9'; });
}

bool is_token_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Splits "Name: value" strictly (RFC 9112 5): a token, a colon, OWS-trimmed value.
std::optional<std::pair<std::string, std::string>> parse_field_line(std::string_view line) {
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return std::nullopt;
    std::string_view name = line.substr(0, colon);
    if (!std::ranges::all_of(name, is_token_char)) return std::nullopt;
    std::string_view value = trim(line.substr(colon + 1));
    if (value.find_first_of("\r\n") != std::string_view::npos) return std::nullopt;
    return std::pair{std::string(name), std::string(value)};
}

// Parses the status line and fields of `head` (which ends with CRLF CRLF). Returns an
// error message, or "" on success.
std::string parse_head(std::string_view head, Response& response) {
    response.raw_head = std::string(head);
    head.remove_suffix(4);
    size_t line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    if (status_line.size() < 13 || !status_line.starts_with("HTTP/1.") || status_line[8] != ' ' ||
        status_line[12] != ' ')
        return "malformed status line: " + printable(status_line);
    auto status = parse_number<int>(status_line.substr(9, 3));
    if (!status || *status < 100) return "malformed status code: " + printable(status_line);
    response.version = std::string(status_line.substr(0, 8));
    response.status = *status;
    response.reason = std::string(status_line.substr(13));
    while (line_end != std::string_view::npos) {
        head.remove_prefix(line_end + 2);
        line_end = head.find("\r\n");
        std::string_view line = head.substr(0, line_end);
        auto field = parse_field_line(line);
        if (!field) return "malformed header line: " + printable(line);
        response.headers.push_back(std::move(*field));
    }
    if (response.raw_head.find_first_of('\0') != std::string::npos)
        return "NUL in response head";
    return "";
}

bool header_line_present(std::string_view headers, std::string_view name) {
    while (!headers.empty()) {
        size_t end = headers.find('\n');
        std::string_view line = headers.substr(0, end);
        if (line.size() > name.size() && line[name.size()] == ':' &&
            iequals(line.substr(0, name.size()), name))
            return true;
        if (end == std::string_view::npos) break;
        headers.remove_prefix(end + 1);
    }
    return false;
}

}  // namespace

std::string sluice_binary() { return env_or("SLUICE_BIN", "objs/sluice"); }

std::string test_upstream_binary() {
    return env_or("SLUICE_TEST_UPSTREAM", "objs/test_upstream");
}

std::string test_dns_binary() { return env_or("SLUICE_TEST_DNS", "objs/test_dns"); }

uint16_t free_port() {
    static std::mutex mutex;
    static std::set<uint16_t> handed_out;
    std::lock_guard lock(mutex);
    for (int attempt = 0; attempt < 1000; ++attempt) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) throw std::runtime_error("socket: " + errno_text());
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
        ::close(fd);
        if (!ok) throw std::runtime_error("bind 127.0.0.1:0: " + errno_text());
        uint16_t port = ntohs(addr.sin_port);
        if (handed_out.insert(port).second) return port;
    }
    throw std::runtime_error("free_port: no new port after 1000 attempts");
}

// POSIX reads: libstdc++'s filebuf throws, whatever the stream's exception mask, when
// read() fails (ESRCH from /proc, EISDIR).
std::string read_file(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";
    std::string content;
    char chunk[65536];
    while (true) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) content.append(chunk, static_cast<size_t>(n));
        else if (n < 0 && errno == EINTR) continue;
        else break;
    }
    ::close(fd);
    return content;
}

bool wait_until(const std::function<bool()>& done, Millis timeout, Millis interval) {
    auto deadline = Clock::now() + timeout;
    while (true) {
        if (done()) return true;
        if (Clock::now() >= deadline) return false;
        std::this_thread::sleep_for(interval);
    }
}

// ---- TempDir ----

TempDir::TempDir(std::string_view name_prefix) {
    std::string pattern = env_or("TMPDIR", "/tmp") + "/" + std::string(name_prefix) + ".XXXXXX";
    if (!mkdtemp(pattern.data()))
        throw std::runtime_error("mkdtemp " + pattern + ": " + errno_text());
    // Tests run as root start workers as `nobody`, which must be able to
    // open files under the prefix by path (static files, reopened logs).
    chmod(pattern.c_str(), 0755);
    path_ = std::move(pattern);
}

TempDir::~TempDir() { remove(); }

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
    if (this != &other) {
        remove();
        path_ = std::exchange(other.path_, {});
    }
    return *this;
}

void TempDir::remove() {
    if (path_.empty()) return;
    if (std::getenv("SLUICE_KEEP_TMP")) {
        std::fprintf(stderr, "[harness] kept %s\n", path_.c_str());
    } else {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    path_.clear();
}

std::string TempDir::path(std::string_view relpath) const {
    return path_ + "/" + std::string(relpath);
}

void TempDir::write(std::string_view relpath, std::string_view content) const {
    std::filesystem::path file = path(relpath);
    std::filesystem::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) throw std::runtime_error("cannot write " + file.string());
}

std::string TempDir::read(std::string_view relpath) const {
    return read_file(path(relpath));
}

// ---- processes ----

CommandResult run_command(const std::vector<std::string>& argv, Millis timeout) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return {-1, "pipe: " + errno_text()};
    Process process;
    bool spawned = process.spawn(argv, pipe_fds[1], SIGKILL);
    ::close(pipe_fds[1]);
    if (!spawned) {
        ::close(pipe_fds[0]);
        return {-1, process.error()};
    }
    CommandResult result;
    auto deadline = Clock::now() + timeout;
    // Read until EOF; a grandchild that keeps the pipe open (a daemonizing binary) must
    // not keep us here after the child itself has exited.
    std::optional<Clock::time_point> exited_at;
    while (Clock::now() < deadline) {
        if (!exited_at && !process.running()) exited_at = Clock::now();
        if (exited_at && Clock::now() - *exited_at > Millis{200}) break;
        pollfd pfd{pipe_fds[0], POLLIN, 0};
        if (poll(&pfd, 1, static_cast<int>(kPollInterval.count())) <= 0) continue;
        char chunk[4096];
        ssize_t n = read(pipe_fds[0], chunk, sizeof chunk);
        if (n > 0) result.output.append(chunk, static_cast<size_t>(n));
        else if (n == 0 || errno != EINTR) break;
    }
    ::close(pipe_fds[0]);
    auto status = process.wait_exit(std::max(Millis{0}, Millis{remaining_ms(deadline)}));
    if (!status) {
        process.stop(SIGKILL, Millis{0});
        result.output += "\n[harness] killed after " + std::to_string(timeout.count()) + " ms";
        return result;
    }
    result.exit_code = exit_code_of(*status);
    return result;
}

std::string describe_wait_status(int status) {
    if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return "signal " + std::to_string(WTERMSIG(status)) + " (" +
               strsignal(WTERMSIG(status)) + ")";
    return "wait status " + std::to_string(status);
}

Process::~Process() { stop(SIGTERM, Millis{2000}); }

Process::Process(Process&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)),
      status_(std::exchange(other.status_, std::nullopt)),
      error_(std::move(other.error_)) {}

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        stop(SIGTERM, Millis{2000});
        pid_ = std::exchange(other.pid_, 0);
        status_ = std::exchange(other.status_, std::nullopt);
        error_ = std::move(other.error_);
    }
    return *this;
}

bool Process::spawn(const std::vector<std::string>& argv, int output_fd, int death_signal) {
    if (running()) {
        error_ = "already running as pid " + std::to_string(pid_);
        return false;
    }
    if (argv.empty()) {
        error_ = "empty argv";
        return false;
    }
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        error_ = "pipe: " + errno_text();
        return false;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) exec_child(args.data(), output_fd, exec_pipe[1], parent, death_signal);
    ::close(exec_pipe[1]);
    if (pid < 0) {
        ::close(exec_pipe[0]);
        error_ = "fork: " + errno_text();
        return false;
    }
    setpgid(pid, pid);  // as the child does: whichever runs first
    // The pipe closes on a successful exec; before that, the child reports errno.
    int child_errno = 0;
    ssize_t n;
    do n = read(exec_pipe[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    ::close(exec_pipe[0]);
    if (n == sizeof child_errno) {
        waitpid(pid, nullptr, 0);
        error_ = "cannot run " + argv[0] + ": " + errno_text(child_errno);
        return false;
    }
    pid_ = pid;
    status_.reset();
    error_.clear();
    return true;
}

bool Process::running() {
    if (pid_ == 0 || status_) return false;
    int status = 0;
    pid_t got = waitpid(pid_, &status, WNOHANG);
    if (got == pid_) status_ = status;
    else if (got < 0 && errno == ECHILD) status_ = -1;  // reaped elsewhere; unknown
    return !status_;
}

bool Process::signal(int sig) { return running() && ::kill(pid_, sig) == 0; }

std::optional<int> Process::wait_exit(Millis timeout) {
    if (pid_ == 0) return std::nullopt;
    wait_until([this] { return !running(); }, timeout, Millis{5});
    return status_;
}

bool Process::stop(int first_signal, Millis grace) {
    if (pid_ == 0) return true;
    bool graceful = true;
    if (running()) {
        ::kill(pid_, first_signal);
        if (!wait_exit(grace)) {
            graceful = false;
            ::kill(-pid_, SIGKILL);
            wait_exit(Millis{5000});
        }
    }
    end_group_leftovers();
    return graceful;
}

// Workers of a master that died, or a new master from a binary upgrade, stay in the
// group. The group id cannot be reused while any of them is alive, so signalling the
// group only ever reaches our own processes.
void Process::end_group_leftovers() {
    if (live_group_members(pid_).empty()) return;
    ::kill(-pid_, SIGTERM);
    if (wait_until([this] { return live_group_members(pid_).empty(); }, Millis{2000})) return;
    ::kill(-pid_, SIGKILL);
    wait_until([this] { return live_group_members(pid_).empty(); }, Millis{2000});
}

// ---- Daemon ----

Daemon::Daemon(std::string_view config_template, ConfigVars vars)
    : dir_("sluice-daemon"), vars_(std::move(vars)), binary_(sluice_binary()) {
    std::filesystem::create_directories(dir_.path("logs"));
    write_config(config_template);
}

Daemon::~Daemon() {
    stop();
    print_logs_if_failed();
}

uint16_t Daemon::port(std::string_view name) const {
    auto found = vars_.find(name);
    auto port = found == vars_.end() ? std::nullopt : parse_number<uint16_t>(found->second.text);
    if (!port) throw std::invalid_argument("no port named " + std::string(name));
    return *port;
}

void Daemon::write_config(std::string_view config_template) {
    config_ = substitute(config_template);
    dir_.write("conf/sluice.conf", config_);
}

std::string Daemon::substitute(std::string_view text) {
    std::string out;
    listen_ports_.clear();
    size_t at = 0;
    while (true) {
        size_t open = text.find("{{", at);
        if (open == std::string_view::npos) break;
        size_t close = text.find("}}", open + 2);
        if (close == std::string_view::npos)
            throw std::invalid_argument("config template: unterminated {{ at offset " +
                                        std::to_string(open));
        std::string name(text.substr(open + 2, close - open - 2));
        out.append(text.substr(at, open - at));
        at = close + 2;
        if (name == "PREFIX") {
            out += dir_.path();
            continue;
        }
        auto found = vars_.find(name);
        if (found == vars_.end()) {
            if (!is_port_placeholder(name))
                throw std::invalid_argument("config template: no value for {{" + name + "}}");
            found = vars_.emplace(name, free_port()).first;
        }
        out += found->second.text;
        if (is_port_placeholder(name)) {
            uint16_t port = this->port(name);
            if (std::ranges::find(listen_ports_, port) == listen_ports_.end())
                listen_ports_.push_back(port);
        }
    }
    out.append(text.substr(at));
    return out;
}

::testing::AssertionResult Daemon::start(Millis timeout) { return start(listen_ports_, timeout); }

::testing::AssertionResult Daemon::start(const std::vector<uint16_t>& ports, Millis timeout) {
    std::vector<std::string> argv = {binary_, "-p", dir_.path() + "/", "-c", conf_path()};
    int output = open_output_file(dir_.path("logs/stderr.log"));
    bool spawned = process_.spawn(argv, output, SIGTERM);  // TERM: the master ends workers
    ::close(output);
    if (!spawned) return ::testing::AssertionFailure() << process_.error();
    started_ = true;
    return wait_listening(process_, ports, timeout, [this] {
        return "---- stderr.log ----\n" + tail(stderr_log(), kLogTailBytes) +
               "\n---- error.log ----\n" + tail(error_log(), kLogTailBytes);
    });
}

bool Daemon::stop() { return process_.stop(SIGQUIT, Millis{5000}); }

bool Daemon::wait_for_log(std::string_view needle, Millis timeout, size_t from) const {
    return wait_until(
        [&] {
            std::string log = error_log();
            return log.size() > from && log.find(needle, from) != std::string::npos;
        },
        timeout);
}

std::vector<pid_t> Daemon::worker_pids() const {
    std::vector<pid_t> out;
    if (pid() == 0) return out;
    for (const ProcStat& p : list_processes())
        if (p.ppid == pid() && p.state != 'Z') out.push_back(p.pid);
    std::ranges::sort(out);
    return out;
}

std::optional<pid_t> Daemon::read_pid_file(std::string_view relpath) const {
    std::string text = dir_.read(relpath);
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    return parse_number<pid_t>(text);
}

CommandResult Daemon::run_cli(const std::vector<std::string>& args, Millis timeout) const {
    std::vector<std::string> argv = {binary_, "-p", dir_.path() + "/", "-c", conf_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout);
}

void Daemon::print_logs_if_failed() const {
    if (!started_ || !::testing::Test::HasFailure()) return;
    std::fprintf(stderr, "[harness] daemon in %s failed a test; last lines of its logs:\n",
                 prefix().c_str());
    std::fprintf(stderr, "---- stderr.log ----\n%s\n---- error.log ----\n%s\n",
                 tail(stderr_log(), kLogTailBytes).c_str(),
                 tail(error_log(), kLogTailBytes).c_str());
}

// ---- UpstreamProcess ----

UpstreamProcess::UpstreamProcess(std::vector<std::string> options, uint16_t port)
    : dir_("sluice-upstream"), options_(std::move(options)), port_(port ? port : free_port()) {}

UpstreamProcess::~UpstreamProcess() { stop(); }

::testing::AssertionResult UpstreamProcess::start(Millis timeout) {
    std::vector<std::string> argv = {test_upstream_binary(), "--port", std::to_string(port_)};
    argv.insert(argv.end(), options_.begin(), options_.end());
    uint32_t host = INADDR_LOOPBACK;
    for (size_t i = 0; i + 1 < options_.size(); ++i) {
        in_addr a{};
        if (options_[i] == "--address" && inet_pton(AF_INET, options_[i + 1].c_str(), &a) == 1)
            host = ntohl(a.s_addr);
    }
    int output = open_output_file(dir_.path("output.log"));
    bool spawned = process_.spawn(argv, output, SIGKILL);
    ::close(output);
    if (!spawned) return ::testing::AssertionFailure() << process_.error();
    return wait_listening(
        process_, {port_}, timeout,
        [this] { return tail(dir_.read("output.log"), kLogTailBytes); }, host);
}

void UpstreamProcess::stop() { process_.stop(SIGTERM, Millis{2000}); }

// ---- DnsServerProcess ----

DnsServerProcess::DnsServerProcess(uint16_t port) : dir_("sluice-dns"), port_(port) {
    set_zone("");
}

DnsServerProcess::~DnsServerProcess() { stop(); }

void DnsServerProcess::set_zone(std::string_view zone) const {
    dir_.write("zone.tmp", zone);
    if (std::rename(dir_.path("zone.tmp").c_str(), dir_.path("zone").c_str()) != 0)
        throw std::runtime_error("cannot rename " + dir_.path("zone.tmp") + ": " + errno_text());
}

::testing::AssertionResult DnsServerProcess::start(Millis timeout) {
    std::vector<std::string> argv = {test_dns_binary(),   "--port", std::to_string(port_),
                                     "--zone",            dir_.path("zone"),
                                     "--log",             dir_.path("queries.log")};
    // A fresh output file: the "listening" line of this start is the one to wait for.
    std::filesystem::remove(dir_.path("output.log"));
    int output = open_output_file(dir_.path("output.log"));
    bool spawned = process_.spawn(argv, output, SIGKILL);
    ::close(output);
    if (!spawned) return ::testing::AssertionFailure() << process_.error();
    constexpr std::string_view kReady = "test_dns: listening on 127.0.0.1:";
    auto deadline = Clock::now() + timeout;
    while (true) {
        std::string out = dir_.read("output.log");
        if (size_t at = out.find(kReady); at != std::string::npos) {
            size_t end = out.find('\n', at);
            if (end != std::string::npos) {
                auto port = parse_number<uint16_t>(
                    std::string_view(out).substr(at + kReady.size(), end - at - kReady.size()));
                if (!port || *port == 0)
                    return ::testing::AssertionFailure() << "test_dns: no port in: " << out;
                port_ = *port;
                return ::testing::AssertionSuccess();
            }
        }
        if (!process_.running())
            return ::testing::AssertionFailure()
                   << "test_dns exited (" << describe_wait_status(*process_.exit_status())
                   << ") before listening; output:\n" << tail(out, kLogTailBytes);
        if (Clock::now() >= deadline)
            return ::testing::AssertionFailure() << "test_dns not listening after "
                                                 << timeout.count() << " ms; output:\n"
                                                 << tail(out, kLogTailBytes);
        std::this_thread::sleep_for(kPollInterval);
    }
}

void DnsServerProcess::stop() { process_.stop(SIGTERM, Millis{2000}); }

size_t DnsServerProcess::queries(std::string_view name, std::string_view type) const {
    std::string text = log();
    size_t count = 0;
    std::string_view rest = text;
    while (!rest.empty()) {
        size_t end = rest.find('\n');
        if (end == std::string_view::npos) break;  // a line being written
        std::string_view line = rest.substr(0, end);
        rest.remove_prefix(end + 1);
        size_t space = line.find(' ');
        if (space == std::string_view::npos || line.substr(0, space) != name) continue;
        std::string_view after = line.substr(space + 1);
        if (type.empty() || (after.starts_with(type) && after.size() > type.size() &&
                             after[type.size()] == ' '))
            ++count;
    }
    return count;
}

// ---- Response ----

std::string Response::header(std::string_view name) const {
    for (const auto& [n, v] : headers)
        if (iequals(n, name)) return v;
    return "";
}

int Response::count(std::string_view name) const {
    auto named = [&](const auto& field) { return iequals(field.first, name); };
    return static_cast<int>(std::ranges::count_if(headers, named));
}

bool Response::keep_alive() const {
    std::string connection;
    for (const auto& [n, v] : headers)
        if (iequals(n, "connection")) connection += v + ",";
    if (version == "HTTP/1.1") return !has_token(connection, "close");
    return has_token(connection, "keep-alive");
}

std::ostream& operator<<(std::ostream& out, const Response& response) {
    return out << response.raw_head << printable(response.body, 2000);
}

// ---- Conn ----

Conn::Conn(uint16_t port, Millis timeout) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        error_ = "socket: " + errno_text();
        return;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int err = 0;
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            pollfd pfd{fd_, POLLOUT, 0};
            socklen_t len = sizeof err;
            if (poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) err = ETIMEDOUT;
            else if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        }
    }
    if (err != 0) {
        error_ = "connect to 127.0.0.1:" + std::to_string(port) + ": " + errno_text(err);
        close();
    }
}

Conn::~Conn() { close(); }

Conn::Conn(Conn&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      buffer_(std::move(other.buffer_)),
      eof_(other.eof_),
      reset_(other.reset_),
      error_(std::move(other.error_)),
      read_error_(other.read_error_) {}

Conn& Conn::operator=(Conn&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        buffer_ = std::move(other.buffer_);
        eof_ = other.eof_;
        reset_ = other.reset_;
        error_ = std::move(other.error_);
        read_error_ = other.read_error_;
    }
    return *this;
}

void Conn::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void Conn::shutdown_write() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool Conn::send(std::string_view data, Millis timeout) {
    if (fd_ < 0) {
        error_ = error_.empty() ? "send on a closed connection" : error_;
        return false;
    }
    auto deadline = Clock::now() + timeout;
    while (!data.empty()) {
        ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
            continue;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
            // EPIPE: the peer closed first (FIN); ECONNRESET: it reset.
            (errno == EPIPE ? eof_ : reset_) = true;
            error_ = "send: " + errno_text();
            return false;
        }
        pollfd pfd{fd_, POLLOUT, 0};
        if (poll(&pfd, 1, remaining_ms(deadline)) == 0 && Clock::now() >= deadline) {
            error_ = "send: timed out with " + std::to_string(data.size()) + " bytes unsent";
            return false;
        }
    }
    return true;
}

Conn::Fill Conn::fill(Deadline deadline) {
    if (reset_) return Fill::Reset;
    if (eof_ || fd_ < 0) return Fill::Eof;
    while (true) {
        char chunk[65536];
        ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
        if (n > 0) {
            buffer_.append(chunk, static_cast<size_t>(n));
            return Fill::Data;
        }
        if (n == 0) {
            eof_ = true;
            return Fill::Eof;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) {
            reset_ = true;
            error_ = "recv: " + errno_text();
            return Fill::Reset;
        }
        if (Clock::now() >= deadline) return Fill::Timeout;
        pollfd pfd{fd_, POLLIN, 0};
        poll(&pfd, 1, remaining_ms(deadline));
    }
}

bool Conn::fail(ReadError kind, std::string message) {
    read_error_ = kind;
    error_ = std::move(message) + "; received: \"" + printable(buffer_) + "\"";
    return false;
}

bool Conn::fill_or_fail(Deadline deadline, std::string_view waiting_for) {
    std::string what(waiting_for);
    switch (fill(deadline)) {
    case Fill::Data: return true;
    case Fill::Eof: return fail(ReadError::Closed, "connection closed while reading " + what);
    case Fill::Reset: return fail(ReadError::Reset, "connection reset while reading " + what);
    case Fill::Timeout: return fail(ReadError::Timeout, "timed out reading " + what);
    }
    return false;
}

std::optional<Response> Conn::read_response(Millis timeout, bool head_request) {
    auto deadline = Clock::now() + timeout;
    read_error_ = ReadError::None;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
        if (buffer_.size() > kMaxResponseHead) {
            fail(ReadError::Malformed, "response head longer than 1 MB");
            return std::nullopt;
        }
        if (!fill_or_fail(deadline, "the response head")) return std::nullopt;
    }
    Response response;
    std::string_view head = std::string_view(buffer_).substr(0, head_end + 4);
    std::string head_error = parse_head(head, response);
    if (!head_error.empty()) {
        fail(ReadError::Malformed, head_error);
        return std::nullopt;
    }
    size_t end = 0;
    if (!read_body(response, head_end + 4, head_request, deadline, end)) return std::nullopt;
    buffer_.erase(0, end);
    return response;
}

// RFC 9112 6.3, strictly: a response that a lenient client would guess at is a bug.
bool Conn::read_body(Response& response, size_t body_start, bool head_request,
                     Deadline deadline, size_t& end) {
    int status = response.status;
    if (head_request || status < 200 || status == 204 || status == 304) {
        end = body_start;
        return true;
    }
    int lengths = response.count("content-length");
    if (response.has("transfer-encoding")) {
        if (lengths > 0)
            return fail(ReadError::Malformed, "both Transfer-Encoding and Content-Length");
        std::string codings;
        for (const auto& [n, v] : response.headers)
            if (iequals(n, "transfer-encoding")) codings += (codings.empty() ? "" : ",") + v;
        std::string_view last = codings;
        if (size_t comma = last.rfind(','); comma != std::string_view::npos)
            last.remove_prefix(comma + 1);
        if (!iequals(trim(last), "chunked"))
            return read_until_close(response, body_start, deadline, end);
        return read_chunked(response, body_start, deadline, end);
    }
    if (lengths > 1) return fail(ReadError::Malformed, "more than one Content-Length");
    if (lengths == 0) return read_until_close(response, body_start, deadline, end);
    auto length = parse_number<uint64_t>(response.header("content-length"));
    if (!length) return fail(ReadError::Malformed, "malformed Content-Length");
    while (buffer_.size() - body_start < *length)
        if (!fill_or_fail(deadline, "a " + std::to_string(*length) + "-byte body")) return false;
    response.body = buffer_.substr(body_start, *length);
    end = body_start + *length;
    return true;
}

bool Conn::read_chunked(Response& response, size_t pos, Deadline deadline, size_t& end) {
    while (true) {
        size_t line_end;
        while ((line_end = buffer_.find("\r\n", pos)) == std::string::npos)
            if (!fill_or_fail(deadline, "a chunk size line")) return false;
        std::string_view line = std::string_view(buffer_).substr(pos, line_end - pos);
        std::string_view size_text = line.substr(0, line.find(';'));
        auto size = size_text.size() <= 15 ? parse_number<uint64_t>(size_text, 16) : std::nullopt;
        if (!size)
            return fail(ReadError::Malformed, "malformed chunk size line: " + printable(line));
        pos = line_end + 2;
        if (*size == 0) break;
        size_t chunk_end = pos + *size;
        while (buffer_.size() < chunk_end + 2)
            if (!fill_or_fail(deadline, "chunk data")) return false;
        if (buffer_.compare(chunk_end, 2, "\r\n") != 0)
            return fail(ReadError::Malformed, "chunk data not followed by CRLF");
        response.body.append(buffer_, pos, *size);
        pos = chunk_end + 2;
    }
    while (true) {
        size_t line_end;
        while ((line_end = buffer_.find("\r\n", pos)) == std::string::npos)
            if (!fill_or_fail(deadline, "the chunked trailer")) return false;
        std::string_view line = std::string_view(buffer_).substr(pos, line_end - pos);
        pos = line_end + 2;
        if (line.empty()) break;
        auto field = parse_field_line(line);
        if (!field) return fail(ReadError::Malformed, "malformed trailer line: " + printable(line));
        response.trailers.push_back(std::move(*field));
    }
    end = pos;
    return true;
}

bool Conn::read_until_close(Response& response, size_t pos, Deadline deadline, size_t& end) {
    while (true) {
        Fill got = fill(deadline);
        if (got == Fill::Eof) break;
        if (got == Fill::Reset)
            return fail(ReadError::Reset, "connection reset in a close-delimited body");
        if (got == Fill::Timeout)
            return fail(ReadError::Timeout, "timed out in a close-delimited body");
    }
    response.body = buffer_.substr(pos);
    end = buffer_.size();
    return true;
}

std::string Conn::read_all_until_close(Millis timeout) {
    auto deadline = Clock::now() + timeout;
    while (fill(deadline) == Fill::Data) {
    }
    return std::exchange(buffer_, {});
}

bool Conn::is_closed(Millis timeout) {
    auto deadline = Clock::now() + timeout;
    while (true) {
        Fill got = fill(deadline);
        if (got == Fill::Eof || got == Fill::Reset) return true;
        if (got == Fill::Timeout) return false;
    }
}

bool Conn::peer_closed_now() {
    if (peer_closed() || fd_ < 0) return true;
    return fill(Clock::now()) != Fill::Timeout && peer_closed();
}

std::optional<Response> http_request(uint16_t port, std::string_view raw_request, Millis timeout,
                                     bool head_request) {
    Conn conn(port, timeout);
    std::optional<Response> response;
    if (conn.send(raw_request, timeout)) response = conn.read_response(timeout, head_request);
    if (!response)
        std::fprintf(stderr, "[harness] request to 127.0.0.1:%u failed: %s\n", port,
                     conn.error().c_str());
    return response;
}

std::optional<Response> http_get(uint16_t port, std::string_view path,
                                 std::string_view extra_headers, Millis timeout) {
    std::string request = "GET " + std::string(path) + " HTTP/1.1\r\n";
    if (!header_line_present(extra_headers, "host")) request += "Host: localhost\r\n";
    if (!header_line_present(extra_headers, "connection")) request += "Connection: close\r\n";
    request += extra_headers;
    if (!extra_headers.empty() && !extra_headers.ends_with("\r\n")) request += "\r\n";
    request += "\r\n";
    return http_request(port, request, timeout);
}

// ---- LoadLoop ----

struct LoadLoop::Slot {
    std::optional<Conn> conn;
    bool reused = false;  // has answered a request before
    bool sent = false;    // a request is waiting for its response
};

std::ostream& operator<<(std::ostream& out, const LoadResult& result) {
    out << "ok=" << result.ok << " failed=" << result.failed << " reconnects=" << result.reconnects
        << " resets_retried=" << result.resets_retried << " by_status={";
    for (const auto& [status, count] : result.by_status) out << " " << status << ":" << count;
    out << " }";
    for (const std::string& error : result.errors) out << "\n  " << error;
    return out;
}

LoadLoop::LoadLoop(LoadOptions options) : options_(std::move(options)) {
    request_ = "GET " + options_.path + " HTTP/1.1\r\n";
    if (!header_line_present(options_.extra_headers, "host")) request_ += "Host: localhost\r\n";
    request_ += options_.extra_headers + "\r\n";
    thread_ = std::thread([this] { run(); });
}

LoadLoop::~LoadLoop() { stop(); }

LoadResult LoadLoop::stop() {
    stop_requested_ = true;
    if (thread_.joinable()) thread_.join();
    return result_;
}

bool LoadLoop::wait_for_completed(uint64_t count, Millis timeout) const {
    return wait_until([&] { return completed_ >= count; }, timeout);
}

void LoadLoop::run() {
    std::vector<Slot> slots(static_cast<size_t>(std::max(1, options_.connections)));
    auto deadline = Clock::now() + options_.max_duration;
    auto attempted = [this] { return result_.ok + result_.failed; };
    while (!stop_requested_ && Clock::now() < deadline && attempted() < options_.max_requests) {
        uint64_t budget = options_.max_requests - attempted();
        for (Slot& slot : slots) {
            if (budget == 0) break;
            --budget;
            slot.sent = send_request(slot);
        }
        for (Slot& slot : slots) {
            if (slot.sent) finish_request(slot);
            slot.sent = false;
        }
    }
}

// Sends on the slot's connection, reopening it first if the server has closed it
// while idle. False (and counted) if the request could not be sent.
bool LoadLoop::send_request(Slot& slot) {
    if (slot.conn && slot.conn->peer_closed_now()) {
        slot.conn.reset();
        ++result_.reconnects;
    }
    if (!slot.conn) {
        slot.conn.emplace(options_.port, options_.response_timeout);
        slot.reused = false;
        if (!slot.conn->connected()) {
            record_failure(slot.conn->error());
            slot.conn.reset();
            std::this_thread::sleep_for(kPollInterval);  // no busy loop while refused
            return false;
        }
    }
    if (slot.conn->send(request_, options_.response_timeout)) return true;
    if (slot.reused && slot.conn->peer_closed() && !slot.conn->peer_reset()) {
        // Closed between responses: a clean close, not a failure. One retry.
        slot.conn.reset();
        ++result_.reconnects;
        return send_request(slot);
    }
    record_failure(slot.conn->error());
    slot.conn.reset();
    return false;
}

void LoadLoop::finish_request(Slot& slot) {
    std::optional<Response> response = slot.conn->read_response(options_.response_timeout);
    if (response) {
        ++result_.by_status[response->status];
        if (response->status >= 500) record_failure("status " + std::to_string(response->status));
        else ++result_.ok;
        ++completed_;
        slot.reused = true;
        if (!response->keep_alive()) slot.conn.reset();
        return;
    }
    ReadError error = slot.conn->read_error();
    bool crossed_close = slot.reused && slot.conn->buffered().empty() &&
                         (error == ReadError::Closed ||
                          (error == ReadError::Reset && options_.retry_reset_before_response));
    if (!crossed_close) {
        record_failure(slot.conn->error());
        slot.conn.reset();
        return;
    }
    // The server closed the idle connection as the request crossed it: send it again
    // on a new connection (where a close before the response is a failure).
    slot.conn.reset();
    ++(error == ReadError::Reset ? result_.resets_retried : result_.reconnects);
    if (send_request(slot)) finish_request(slot);
}

void LoadLoop::record_failure(std::string error) {
    ++result_.failed;
    if (result_.errors.size() < kMaxLoadErrors) result_.errors.push_back(std::move(error));
}

}  // namespace sluice::test
