// The error log, in nginx's line format:
//   2026/11/23 10:34:34 [error] 1234#0: *5 message, client: 127.0.0.1
#pragma once
#include <cstdarg>
#include <string>
#include <string_view>

namespace sluice {

enum class LogLevel : int { Stderr = 0, Emerg, Alert, Crit, Error, Warn, Notice, Info, Debug };

const char* log_level_name(LogLevel);
bool parse_log_level(std::string_view, LogLevel& out);

// One process has one error log at a time. Before the configuration is read it
// writes to stderr with the "sluice: [level] " prefix, as nginx does.
class ErrorLog {
public:
    static ErrorLog& instance();

    bool open(const std::string& path, LogLevel level, std::string& err);
    bool reopen();  // USR1: open the same path again, keep the old fd on failure
    void use_stderr(LogLevel level);
    void set_worker_id(int id) { worker_id_ = id; }

    bool enabled(LogLevel level) const { return int(level) <= int(level_); }
    void write(LogLevel level, const char* fmt, va_list ap) __attribute__((format(printf, 3, 0)));
    const std::string& path() const { return path_; }
    int fd() const { return fd_; }

private:
    int fd_ = 2;
    bool to_stderr_ = true;
    bool startup_ = true;  // no configured log yet
    LogLevel level_ = LogLevel::Notice;
    std::string path_;
    int worker_id_ = 0;
};

void log_error(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define SLUICE_LOG(level, ...)                                                  \
    do {                                                                        \
        if (::sluice::ErrorLog::instance().enabled(level)) ::sluice::log_error(level, __VA_ARGS__); \
    } while (0)

}  // namespace sluice
