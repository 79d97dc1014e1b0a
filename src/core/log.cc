#include "core/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <algorithm>

namespace sluice {

namespace {
constexpr const char* kLevelNames[] = {"stderr", "emerg", "alert", "crit", "error",
                                       "warn",   "notice", "info", "debug"};
}

const char* log_level_name(LogLevel level) { return kLevelNames[int(level)]; }

bool parse_log_level(std::string_view name, LogLevel& out) {
    for (int i = 1; i <= int(LogLevel::Debug); ++i) {
        if (name == kLevelNames[i]) {
            out = LogLevel(i);
            return true;
        }
    }
    return false;
}

ErrorLog& ErrorLog::instance() {
    static ErrorLog log;
    return log;
}

bool ErrorLog::open(const std::string& path, LogLevel level, std::string& err) {
    startup_ = false;
    if (path == "stderr") {
        use_stderr(level);
        return true;
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = "open() \"" + path + "\" failed (" + std::to_string(errno) + ": " + strerror(errno) + ")";
        return false;
    }
    if (!to_stderr_ && fd_ > 2) ::close(fd_);
    fd_ = fd;
    to_stderr_ = false;
    path_ = path;
    level_ = level;
    return true;
}

bool ErrorLog::reopen() {
    if (to_stderr_ || path_.empty()) return true;
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        SLUICE_LOG(LogLevel::Alert, "open() \"%s\" failed (%d: %s)", path_.c_str(), errno, strerror(errno));
        return false;
    }
    // dup2 keeps the descriptor number, so nothing that cached it goes stale.
    ::dup2(fd, fd_);
    ::close(fd);
    return true;
}

void ErrorLog::use_stderr(LogLevel level) {
    if (!to_stderr_ && fd_ > 2) ::close(fd_);
    fd_ = 2;
    to_stderr_ = true;
    path_.clear();
    level_ = level;
}

void ErrorLog::write(LogLevel level, const char* fmt, va_list ap) {
    char buf[4096];
    size_t n = 0;
    if (startup_) {
        // Before the configured log is open (start-up, -t): "sluice: [emerg] message", as nginx.
        n = size_t(snprintf(buf, sizeof buf, "sluice: [%s] ", log_level_name(level)));
        int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
        if (m > 0) n = std::min(sizeof buf - 2, n + size_t(m));
        buf[n++] = '\n';
        ssize_t unused = ::write(fd_, buf, n);
        (void)unused;
        return;
    }
    timeval tv;
    gettimeofday(&tv, nullptr);
    tm t;
    localtime_r(&tv.tv_sec, &t);
    n = strftime(buf, sizeof buf, "%Y/%m/%d %H:%M:%S", &t);
    n += size_t(snprintf(buf + n, sizeof buf - n, " [%s] %d#0: ", log_level_name(level), int(getpid())));
    int m = vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    if (m > 0) n = std::min(sizeof buf - 2, n + size_t(m));
    buf[n++] = '\n';
    ssize_t unused = ::write(fd_, buf, n);
    (void)unused;
}

void log_error(LogLevel level, const char* fmt, ...) {
    if (!ErrorLog::instance().enabled(level)) return;  // below error_log's level, as nginx's ngx_log_error
    va_list ap;
    va_start(ap, fmt);
    ErrorLog::instance().write(level, fmt, ap);
    va_end(ap);
}

}  // namespace sluice
