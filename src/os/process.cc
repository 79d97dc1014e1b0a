#include "os/process.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "core/log.h"
#include "event/worker.h"
#include "os/listen.h"
#include "os/pidfile.h"
#include "os/signals.h"
#include "sluice_paths.h"

extern char** environ;

namespace sluice {

namespace {

// A worker that cannot start (bad user, chdir) exits with this code and is
// not respawned: it would fail again at once (nginx's NGX_PROCESS_FATAL).
constexpr int kFatalExitCode = 2;
// Fast stop: workers still alive this long after TERM get KILL.
constexpr long kKillAfterMs = 3000;
constexpr long kTerminateTickMs = 100;

struct CommandLine {
    std::string binary;
    std::vector<std::string> args;
};

CommandLine command_line;
bool inherited_sockets = false;
pid_t parent_at_start = 0;
bool daemonized = false;

std::string errno_text(int e) { return "(" + std::to_string(e) + ": " + strerror(e) + ")"; }

long monotonic_ms() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// A compiled-in default under the compiled-in prefix moves with `-p`.
std::string default_path(const Cycle& cycle, std::string_view compiled) {
    std::string_view compiled_prefix = SLUICE_PREFIX;
    if (compiled.substr(0, compiled_prefix.size()) == compiled_prefix)
        return cycle_path(cycle, std::string(compiled.substr(compiled_prefix.size())));
    return std::string(compiled);
}

// stderr follows the error log in a daemon, so that what libraries print
// lands there and not on a closed terminal.
void redirect_stderr_to_log() {
    int fd = ErrorLog::instance().fd();
    if (fd > 2) dup2(fd, STDERR_FILENO);
}

bool set_nofile_limit(const CoreConf& core, std::string& err) {
    if (!core.worker_rlimit_nofile) return true;
    rlimit limit{rlim_t(*core.worker_rlimit_nofile), rlim_t(*core.worker_rlimit_nofile)};
    if (setrlimit(RLIMIT_NOFILE, &limit) == -1) {
        err = "setrlimit(RLIMIT_NOFILE, " + std::to_string(*core.worker_rlimit_nofile) + ") failed " +
              errno_text(errno);
        return false;
    }
    return true;
}

struct WorkerIdentity {
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
};

// `user` defaults to nobody; the group to the group named like the user,
// else the user's primary group.
bool worker_identity(const CoreConf& core, WorkerIdentity& id, std::string& err) {
    id.user = core.user.value_or("nobody");
    passwd* pw = getpwnam(id.user.c_str());
    if (!pw) {
        err = "getpwnam(\"" + id.user + "\") failed";
        return false;
    }
    id.uid = pw->pw_uid;
    id.gid = pw->pw_gid;
    std::string group_name = core.group.value_or(core.user ? id.user : "");
    if (group_name.empty()) return true;
    if (group* gr = getgrnam(group_name.c_str())) {
        id.gid = gr->gr_gid;
    } else if (core.group && *core.group != id.user) {
        err = "getgrnam(\"" + group_name + "\") failed";
        return false;
    }
    return true;
}

// Only root changes identity.
bool drop_privileges(const CoreConf& core, std::string& err) {
    if (geteuid() != 0) return true;
    WorkerIdentity id;
    if (!worker_identity(core, id, err)) return false;
    if (setgid(id.gid) == -1) {
        err = "setgid(" + std::to_string(id.gid) + ") failed " + errno_text(errno);
        return false;
    }
    if (initgroups(id.user.c_str(), id.gid) == -1) {
        err = "initgroups(" + id.user + ", " + std::to_string(id.gid) + ") failed " + errno_text(errno);
        return false;
    }
    if (setuid(id.uid) == -1) {
        err = "setuid(" + std::to_string(id.uid) + ") failed " + errno_text(errno);
        return false;
    }
    return true;
}

// A root master hands a reopened log to the workers' user, as nginx's
// ngx_reopen_files does: an unprivileged worker can then open it again.
void give_log_to_workers(const Cycle& cycle) {
    const std::string& path = ErrorLog::instance().path();
    if (geteuid() != 0 || path.empty()) return;
    WorkerIdentity id;
    std::string err;
    if (!worker_identity(cycle.core(), id, err)) return;
    if (chown(path.c_str(), id.uid, gid_t(-1)) == -1)
        SLUICE_LOG(LogLevel::Alert, "chown(\"%s\", %d) failed %s", path.c_str(), int(id.uid), errno_text(errno).c_str());
}

bool worker_user(const Cycle& cycle, uid_t& uid, gid_t& gid) {
    if (geteuid() != 0) return false;
    WorkerIdentity id;
    std::string err;
    if (!worker_identity(cycle.core(), id, err)) return false;
    uid = id.uid;
    gid = id.gid;
    return true;
}

bool init_worker_process(const Cycle& cycle, std::string& err) {
    const CoreConf& core = cycle.core();
    // Raised while still root: an unprivileged process may not raise its hard limit.
    if (!set_nofile_limit(core, err)) SLUICE_LOG(LogLevel::Alert, "%s", err.c_str());
    if (!drop_privileges(core, err)) return false;
    if (core.working_directory) {
        std::string dir = cycle_path(cycle, *core.working_directory);
        if (chdir(dir.c_str()) == -1) {
            err = "chdir(\"" + dir + "\") failed " + errno_text(errno);
            return false;
        }
    }
    return true;
}

[[noreturn]] void worker_process(Cycle& cycle, int index) {
    reset_signals_in_child();
    ErrorLog::instance().set_worker_id(index);
    std::string err;
    if (!init_worker_process(cycle, err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        _exit(kFatalExitCode);
    }
    int code;
    {
        Worker worker(cycle, index);
        // Runs in the loop's first turn, after run() installed the worker's
        // signal handlers.
        timeval now{0, 0};
        if (worker.base())
            event_base_once(worker.base(), -1, EV_TIMEOUT,
                            [](evutil_socket_t, short, void*) { replay_held_signals(); }, nullptr, &now);
        code = worker.run();
    }
    // _exit: the master's state copied into this process (its cycle, its
    // zones' owners) must not be torn down twice.
    _exit(code);
}

struct Child {
    pid_t pid = -1;
    int index = -1;           // worker index; -1: the master of a new binary
    uint64_t generation = 0;  // the configuration it was started with
    bool exiting = false;     // asked to stop: not respawned
};

class Master {
public:
    explicit Master(std::unique_ptr<Cycle> cycle) : cycle_(std::move(cycle)) {}
    int run();

private:
    void start_workers();
    void spawn_worker(int index);
    void signal_workers(int sig, bool old_generations_only = false);
    void reap();
    void log_exit(const Child& child, int status);
    bool respawn_allowed(const Child& child, int status) const;
    bool live() const;
    void begin_terminate();
    void tick_terminate();
    void begin_quit();
    void reload();
    void switch_pid_file(const Cycle& next);
    void reopen_logs();
    void change_binary();
    void exec_new_binary();
    int exit_master();
    const char* process_name(const Child& c) const { return c.index < 0 ? "new binary process" : "worker process"; }
    std::string oldbin_path() const { return pid_path_ + ".oldbin"; }

    std::unique_ptr<Cycle> cycle_;
    std::vector<Child> children_;
    uint64_t generation_ = 0;
    pid_t new_binary_ = 0;
    std::string pid_path_;
    bool quitting_ = false;
    bool terminating_ = false;
    long kill_at_ms_ = 0;
};

int Master::run() {
    pid_path_ = pid_path(*cycle_);
    std::string err;
    if (!pid_path_.empty() && !write_pid_file(pid_path_, getpid(), err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        return 1;
    }
    start_workers();
    for (;;) {
        wait_for_signal();
        if (master_signals.reap) {
            master_signals.reap = 0;
            reap();
        }
        if (master_signals.terminate && !terminating_) begin_terminate();
        if (master_signals.quit && !quitting_ && !terminating_) begin_quit();
        if ((terminating_ || quitting_) && !live()) return exit_master();
        if (terminating_) {
            tick_terminate();
            continue;
        }
        if (quitting_) continue;
        if (master_signals.reconfigure) {
            master_signals.reconfigure = 0;
            reload();
        }
        if (master_signals.reopen) {
            master_signals.reopen = 0;
            reopen_logs();
        }
        if (master_signals.change_binary) {
            master_signals.change_binary = 0;
            change_binary();
        }
    }
}

void Master::start_workers() {
    SLUICE_LOG(LogLevel::Notice, "start worker processes");
    for (int i = 0; i < std::max(1, cycle_->worker_count); ++i) spawn_worker(i);
}

void Master::spawn_worker(int index) {
    pid_t pid = fork();
    if (pid == -1) {
        SLUICE_LOG(LogLevel::Alert, "fork() failed while spawning \"worker process\" %s", errno_text(errno).c_str());
        return;
    }
    if (pid == 0) worker_process(*cycle_, index);
    children_.push_back(Child{pid, index, generation_, false});
    SLUICE_LOG(LogLevel::Notice, "start worker process %d", int(pid));
}

// USR1 asks nothing to stop; any other signal marks the worker as exiting,
// so that its end is expected and it is not respawned.
void Master::signal_workers(int sig, bool old_generations_only) {
    for (Child& c : children_) {
        if (c.index < 0) continue;  // a new binary's master is on its own
        if (old_generations_only && c.generation == generation_) continue;
        if (sig == SIGQUIT && c.exiting) continue;
        if (kill(c.pid, sig) == -1) {
            SLUICE_LOG(LogLevel::Alert, "kill(%d, %d) failed %s", int(c.pid), sig, errno_text(errno).c_str());
            if (errno == ESRCH) master_signals.reap = 1;
            continue;
        }
        if (sig != SIGUSR1) c.exiting = true;
    }
}

void Master::reap() {
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid == 0) return;
        if (pid == -1) {
            if (errno == EINTR) continue;
            return;  // ECHILD: nothing left
        }
        auto it = std::find_if(children_.begin(), children_.end(), [pid](const Child& c) { return c.pid == pid; });
        if (it == children_.end()) continue;
        Child child = *it;
        children_.erase(it);
        log_exit(child, status);
        if (child.index < 0) {
            // The new binary is gone: this master is the one again.
            if (!pid_path_.empty() && rename(oldbin_path().c_str(), pid_path_.c_str()) == -1)
                SLUICE_LOG(LogLevel::Alert, "rename() %s back to %s failed %s", oldbin_path().c_str(),
                           pid_path_.c_str(), errno_text(errno).c_str());
            new_binary_ = 0;
            continue;
        }
        if (respawn_allowed(child, status)) spawn_worker(child.index);
    }
}

void Master::log_exit(const Child& child, int status) {
    if (WIFSIGNALED(status)) {
        SLUICE_LOG(LogLevel::Alert, "%s %d exited on signal %d%s", process_name(child), int(child.pid),
                   WTERMSIG(status), WCOREDUMP(status) ? " (core dumped)" : "");
    } else {
        SLUICE_LOG(LogLevel::Notice, "%s %d exited with code %d", process_name(child), int(child.pid),
                   WEXITSTATUS(status));
    }
}

bool Master::respawn_allowed(const Child& child, int status) const {
    if (child.exiting || quitting_ || terminating_ || master_signals.terminate || master_signals.quit) return false;
    if (child.generation != generation_) return false;
    if (WIFEXITED(status) && WEXITSTATUS(status) == kFatalExitCode) {
        SLUICE_LOG(LogLevel::Alert, "%s %d exited with fatal code %d and cannot be respawned", process_name(child),
                   int(child.pid), kFatalExitCode);
        return false;
    }
    return true;
}

// A new binary's master does not keep this one alive: it lives on alone.
bool Master::live() const {
    return std::any_of(children_.begin(), children_.end(), [](const Child& c) { return c.index >= 0; });
}

void Master::begin_terminate() {
    terminating_ = true;
    SLUICE_LOG(LogLevel::Notice, "signal received, exiting");
    signal_workers(SIGTERM);
    kill_at_ms_ = monotonic_ms() + kKillAfterMs;
    itimerval tick{};
    tick.it_interval.tv_usec = kTerminateTickMs * 1000;
    tick.it_value.tv_usec = kTerminateTickMs * 1000;
    if (setitimer(ITIMER_REAL, &tick, nullptr) == -1)
        SLUICE_LOG(LogLevel::Alert, "setitimer() failed %s", errno_text(errno).c_str());
}

void Master::tick_terminate() {
    master_signals.alarm = 0;
    if (kill_at_ms_ && monotonic_ms() >= kill_at_ms_) {
        kill_at_ms_ = 0;
        signal_workers(SIGKILL);
    }
}

void Master::begin_quit() {
    quitting_ = true;
    SLUICE_LOG(LogLevel::Notice, "gracefully shutting down");
    signal_workers(SIGQUIT);
    // Workers stop accepting; with the master's copies closed too, new
    // connections are refused rather than queued for nobody.
    close_listening(*cycle_, false);
}

void Master::reload() {
    SLUICE_LOG(LogLevel::Notice, "reconfiguring");
    std::string err;
    std::unique_ptr<Cycle> next = Cycle::load(cycle_->options, cycle_.get(), err);
    if (!next) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        return;
    }
    if (!open_listening_sockets(*next, cycle_.get(), err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        return;
    }
    if (!next->map_shm_zones(cycle_.get(), err) || !open_cycle_error_log(*next, err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        close_unused_listening(*next, *cycle_);
        return;
    }
    if (daemonized) redirect_stderr_to_log();
    switch_pid_file(*next);
    // Closed before the fork, or the new workers would hold the dropped
    // addresses open (and the kernel would go on queueing connections there).
    close_unused_listening(*cycle_, *next);
    std::unique_ptr<Cycle> old = std::move(cycle_);
    cycle_ = std::move(next);
    ++generation_;
    // New workers first: the sockets always have someone accepting.
    start_workers();
    signal_workers(SIGQUIT, true);
}

void Master::switch_pid_file(const Cycle& next) {
    std::string path = pid_path(next);
    if (path == pid_path_ || new_binary_) return;
    std::string err;
    if (!path.empty() && !write_pid_file(path, getpid(), err)) {
        SLUICE_LOG(LogLevel::Alert, "%s", err.c_str());
        return;
    }
    if (!pid_path_.empty()) remove_pid_file(pid_path_);
    pid_path_ = path;
}

void Master::reopen_logs() {
    SLUICE_LOG(LogLevel::Notice, "reopening logs");
    ErrorLog::instance().reopen();
    give_log_to_workers(*cycle_);
    // Modules' logs too: created here by root and handed to the workers'
    // user (see worker_user), so that the workers can open them again.
    for (int i = 0; compiled_modules[i]; ++i)
        if (compiled_modules[i]->reopen_files) compiled_modules[i]->reopen_files(*cycle_);
    if (daemonized) redirect_stderr_to_log();
    signal_workers(SIGUSR1);
}

void Master::change_binary() {
    // Two masters at most: the old one and the new one.
    if (new_binary_ || (inherited_sockets && getppid() == parent_at_start)) {
        SLUICE_LOG(LogLevel::Alert,
                   "the changing binary signal is ignored: you should shutdown or terminate before either old or "
                   "new binary's process");
        return;
    }
    SLUICE_LOG(LogLevel::Notice, "changing binary");
    if (!pid_path_.empty() && rename(pid_path_.c_str(), oldbin_path().c_str()) == -1) {
        SLUICE_LOG(LogLevel::Alert, "rename() %s to %s failed %s, the binary is not changed", pid_path_.c_str(),
                   oldbin_path().c_str(), errno_text(errno).c_str());
        return;
    }
    exec_new_binary();
}

void Master::exec_new_binary() {
    std::vector<char*> argv;
    for (std::string& a : command_line.args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string var = std::string(kInheritedSocketsVar) + "=" + listening_env_value(*cycle_);
    std::string var_prefix = std::string(kInheritedSocketsVar) + "=";
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e)
        if (strncmp(*e, var_prefix.c_str(), var_prefix.size()) != 0) envp.push_back(*e);
    envp.push_back(var.data());
    envp.push_back(nullptr);

    pid_t pid = fork();
    if (pid == -1) {
        SLUICE_LOG(LogLevel::Alert, "fork() failed while executing new binary process \"%s\" %s",
                   command_line.binary.c_str(), errno_text(errno).c_str());
        if (!pid_path_.empty()) rename(oldbin_path().c_str(), pid_path_.c_str());
        return;
    }
    if (pid == 0) {
        // The master's signals stay blocked across exec: the new master
        // blocks the same ones, and nothing reaches it before its handlers.
        clear_listening_cloexec(*cycle_);
        execve(command_line.binary.c_str(), argv.data(), envp.data());
        SLUICE_LOG(LogLevel::Alert, "execve() failed while executing new binary process \"%s\" %s",
                   command_line.binary.c_str(), errno_text(errno).c_str());
        _exit(1);
    }
    children_.push_back(Child{pid, -1, generation_, false});
    new_binary_ = pid;
    SLUICE_LOG(LogLevel::Notice, "start new binary process %d", int(pid));
}

int Master::exit_master() {
    if (!pid_path_.empty()) remove_pid_file(new_binary_ ? oldbin_path() : pid_path_);
    // A new binary still listens on the unix sockets' paths.
    close_listening(*cycle_, !new_binary_);
    SLUICE_LOG(LogLevel::Notice, "exit");
    return 0;
}

}  // namespace

void save_command_line(int argc, char* const argv[]) {
    command_line.args.assign(argv, argv + argc);
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    command_line.binary = n > 0 ? std::string(buf, size_t(n)) : (argc > 0 ? argv[0] : "sluice");
}

void set_started_with_inherited_sockets(bool inherited) {
    inherited_sockets = inherited;
    parent_at_start = getppid();
}

std::string cycle_path(const Cycle& cycle, const std::string& path) {
    if (!path.empty() && path[0] == '/') return path;
    const std::string& prefix = cycle.prefix.empty() ? cycle.options.prefix : cycle.prefix;
    if (prefix.empty() || prefix.back() == '/') return prefix + path;
    return prefix + "/" + path;
}

std::string pid_path(const Cycle& cycle) {
    const CoreConf& core = cycle.core();
    if (!core.pid) return default_path(cycle, SLUICE_PID_PATH);
    return core.pid->empty() ? std::string() : cycle_path(cycle, *core.pid);  // empty: `pid off`
}

bool open_cycle_error_log(const Cycle& cycle, std::string& err) {
    const CoreConf& core = cycle.core();
    std::string path = core.error_log_path ? *core.error_log_path : default_path(cycle, SLUICE_ERROR_LOG_PATH);
    if (path != "stderr") path = cycle_path(cycle, path);
    return ErrorLog::instance().open(path, core.error_log_level.value_or(LogLevel::Error), err);
}

bool daemonize(std::string& err) {
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == -1) {
        err = "fork() failed " + errno_text(errno);
        return false;
    }
    if (pid > 0) _exit(0);
    if (setsid() == -1) {
        err = "setsid() failed " + errno_text(errno);
        return false;
    }
    // As nginx: files get exactly the modes the code asks for.
    umask(0);
    int null = open("/dev/null", O_RDWR);
    if (null == -1) {
        err = "open(\"/dev/null\") failed " + errno_text(errno);
        return false;
    }
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    int log_fd = ErrorLog::instance().fd();
    dup2(log_fd > 2 ? log_fd : null, STDERR_FILENO);
    if (null > 2) close(null);
    daemonized = true;
    return true;
}

int run_master(std::unique_ptr<Cycle> cycle) {
    std::string err;
    if (!install_master_signals(err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        return 1;
    }
    Master master(std::move(cycle));
    return master.run();
}

int run_single_process(std::unique_ptr<Cycle> cycle) {
    // A mask inherited from an upgrading master would hide the worker's signals.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ignore_sigpipe();
    std::string path = pid_path(*cycle);
    std::string err;
    if (!path.empty() && !write_pid_file(path, getpid(), err)) {
        SLUICE_LOG(LogLevel::Emerg, "%s", err.c_str());
        return 1;
    }
    if (!set_nofile_limit(cycle->core(), err)) SLUICE_LOG(LogLevel::Alert, "%s", err.c_str());
    int code;
    {
        Worker worker(*cycle, 0);
        code = worker.run();
    }
    if (!path.empty()) remove_pid_file(path);
    return code;
}

}  // namespace sluice
