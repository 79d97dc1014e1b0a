// The log module: `log_format` and `access_log` (nginx's log module).
// Shared between the request path (log_module.cc) and the directives
// (directives.cc).
#pragma once
#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "core/module.h"
#include "http/http_phases.h"
#include "http/http_variables.h"

namespace sluice {
extern Module log_module;
}

namespace sluice::http {

class Request;

enum class LogEscape : uint8_t { Default, Json, None };

// One piece of a format: literal text, or a variable whose value is escaped.
struct LogOp {
    std::string text;   // the literal, or the variable's name until resolved
    bool is_variable = false;
    int variable = -1;  // index in Variables, once resolved
};

struct LogFormat {
    std::string name;
    LogEscape escape = LogEscape::Default;
    std::vector<LogOp> ops;
};

// A file access logs write to: opened once per path by the master while the
// configuration is loaded, so a bad path fails `sluice -t` and workers
// inherit the descriptor. After fork each worker has its own copy of the
// buffer, flushed when full, by the flush timer and when the worker exits.
struct LogFile {
    std::string path;
    int fd = -1;
    size_t buffer_size = 0;  // 0: each line is written at once
    uint64_t flush_ms = 0;   // 0: no timer
    std::unique_ptr<char[]> buffer;
    size_t used = 0;
    event* flush_timer = nullptr;  // a worker's; freed by exit_worker
    int64_t last_error_sec = 0;    // write errors are logged once a second

    LogFile() = default;
    LogFile(const LogFile&) = delete;
    LogFile& operator=(const LogFile&) = delete;
    ~LogFile();
};

struct AccessLog {
    LogFile* file = nullptr;
    const LogFormat* format = nullptr;
    std::shared_ptr<ComplexValue> condition;  // if=: skip the line when "" or "0"
};

using AccessLogList = std::vector<AccessLog>;

struct LogMainConf : ModuleConf {
    std::vector<std::unique_ptr<LogFormat>> formats;  // "combined" first
    std::vector<std::unique_ptr<LogFile>> files;      // one per path
    std::shared_ptr<AccessLogList> default_logs;      // created when a level needs it

    const LogFormat* find_format(std::string_view name) const;
    LogFile* find_file(std::string_view path) const;
};

struct LogLocConf : ModuleConf {
    std::shared_ptr<AccessLogList> logs;  // null: none declared at this level
    bool off = false;                     // access_log off
};

// The Log-phase handler.
Next log_handler(Request& r);

// Flushes a buffered file (worker side).
void flush_log_file(LogFile& file);

// Worker hooks.
bool log_init_worker(Cycle& cycle);
void log_exit_worker(Cycle& cycle);
void log_reopen_files(Cycle& cycle);

// Variables the formats commonly use that the core may not define.
bool add_log_variables(Variables& variables);

}  // namespace sluice::http
