// The log module's request path: one line per request and access log,
// escaped as nginx escapes it, written through the file's per-worker buffer.
// Everything a line needs comes from the request's arena or the buffer.
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "event/worker.h"
#include "http/http_core.h"
#include "http/http_request.h"
#include "log.h"

namespace sluice::http {

namespace {

// ---- escaping ---------------------------------------------------------------

// nginx's default log escaping: '"', '\\', control bytes and bytes >= 0x7f
// become \xHH, so a line is one line and a quoted field stays quoted.
constexpr bool default_escaped(unsigned char c) { return c < 0x20 || c >= 0x7f || c == '"' || c == '\\'; }

char json_short_escape(unsigned char c) {
    switch (c) {
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    case '\b': return 'b';
    case '\f': return 'f';
    default: return 0;
    }
}

size_t escaped_length(std::string_view v, LogEscape escape) {
    size_t n = v.size();
    if (escape == LogEscape::None) return n;
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (escape == LogEscape::Default) n += default_escaped(c) ? 3 : 0;
        else if (c == '"' || c == '\\') n += 1;
        else if (c < 0x20) n += json_short_escape(c) ? 1 : 5;
    }
    return n;
}

char* escape_default(char* p, std::string_view v) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (!default_escaped(c)) {
            *p++ = ch;
            continue;
        }
        *p++ = '\\';
        *p++ = 'x';
        *p++ = kHex[c >> 4];
        *p++ = kHex[c & 0xf];
    }
    return p;
}

// JSON string escapes (RFC 8259); bytes >= 0x80 pass as they are, as in nginx.
char* escape_json(char* p, std::string_view v) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char ch : v) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = ch;
        } else if (c >= 0x20) {
            *p++ = ch;
        } else if (char s = json_short_escape(c)) {
            *p++ = '\\';
            *p++ = s;
        } else {
            memcpy(p, "\\u00", 4);
            p[4] = kHex[c >> 4];
            p[5] = kHex[c & 0xf];
            p += 6;
        }
    }
    return p;
}

char* append_escaped(char* p, std::string_view v, LogEscape escape) {
    switch (escape) {
    case LogEscape::Default: return escape_default(p, v);
    case LogEscape::Json: return escape_json(p, v);
    case LogEscape::None: break;
    }
    if (!v.empty()) memcpy(p, v.data(), v.size());  // an empty view may have no data pointer
    return p + v.size();
}

// ---- writing ----------------------------------------------------------------

void write_all(LogFile& file, const char* data, size_t len) {
    ssize_t n;
    do n = ::write(file.fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n == ssize_t(len)) return;
    // A full disk would otherwise log one alert per request.
    int64_t now = current_msec() / 1000;
    if (now == file.last_error_sec) return;
    file.last_error_sec = now;
    if (n < 0) SLUICE_LOG(LogLevel::Alert, "write() to \"%s\" failed (%d: %s)", file.path.c_str(), errno, strerror(errno));
    else SLUICE_LOG(LogLevel::Alert, "write() to \"%s\" was incomplete: %zd of %zu", file.path.c_str(), n, len);
}

void arm_flush_timer(LogFile& file) {
    if (!file.flush_timer || evtimer_pending(file.flush_timer, nullptr)) return;
    timeval tv{time_t(file.flush_ms / 1000), suseconds_t((file.flush_ms % 1000) * 1000)};
    evtimer_add(file.flush_timer, &tv);
}

void on_flush_timer(evutil_socket_t, short, void* arg) { flush_log_file(*static_cast<LogFile*>(arg)); }

// Room for `len` bytes in the file's buffer, or null when the line must be
// written on its own (no buffer, or a line longer than the buffer).
char* reserve_in_buffer(LogFile& file, size_t len) {
    if (!file.buffer) return nullptr;
    if (len > file.buffer_size - file.used) flush_log_file(file);
    if (len > file.buffer_size - file.used) return nullptr;
    // The timer bounds how long the first line of a batch waits.
    if (file.used == 0) arm_flush_timer(file);
    return file.buffer.get() + file.used;
}

constexpr size_t kStackValues = 32;

void write_line(Request& r, const AccessLog& log) {
    const LogFormat& format = *log.format;
    const size_t n = format.ops.size();
    std::string_view stack_values[kStackValues];
    auto* values = n <= kStackValues ? stack_values
                                     : static_cast<std::string_view*>(r.arena()->allocate(
                                           n * sizeof(std::string_view), alignof(std::string_view)));
    size_t len = 1;  // the newline
    for (size_t i = 0; i < n; ++i) {
        const LogOp& op = format.ops[i];
        if (!op.is_variable) {
            values[i] = op.text;
            len += op.text.size();
            continue;
        }
        bool found = false;
        std::string_view v = r.var(op.variable, &found);
        // nginx writes "-" for a missing value, except in JSON and unescaped formats.
        if (!found) v = format.escape == LogEscape::Default ? "-" : "";
        values[i] = v;
        len += escaped_length(v, format.escape);
    }
    LogFile& file = *log.file;
    char* buffered = reserve_in_buffer(file, len);
    char* line = buffered ? buffered : static_cast<char*>(r.arena()->allocate(len, 1));
    char* p = line;
    for (size_t i = 0; i < n; ++i) {
        if (format.ops[i].is_variable) {
            p = append_escaped(p, values[i], format.escape);
        } else {
            memcpy(p, values[i].data(), values[i].size());
            p += values[i].size();
        }
    }
    *p = '\n';
    if (buffered) file.used += len;
    else write_all(file, line, len);
}

bool condition_holds(Request& r, const ComplexValue& condition) {
    std::string_view v = condition.eval(r);
    return !(v.empty() || v == "0");
}

LogMainConf* log_main_conf(Cycle& cycle) {
    CoreMainConf* main = http_main_conf(cycle);
    if (!main) return nullptr;
    return static_cast<LogMainConf*>(main->main_confs[size_t(log_module.ctx_index)]);
}

// The user workers run as when the master is root (the core's default too).
uid_t worker_uid(Cycle& cycle) {
    passwd* pw = getpwnam(cycle.core().user.value_or("nobody").c_str());
    return pw ? pw->pw_uid : uid_t(-1);
}

// ---- variables the core does not define -------------------------------------

// Set by authentication modules; without one it is missing ("-" in the log).
bool get_remote_user(Request&, std::string_view&, uintptr_t) { return false; }

}  // namespace

LogFile::~LogFile() {
    if (fd >= 0) ::close(fd);
}

void flush_log_file(LogFile& file) {
    if (file.flush_timer) evtimer_del(file.flush_timer);
    if (file.used == 0) return;
    write_all(file, file.buffer.get(), file.used);
    file.used = 0;
}

Next log_handler(Request& r) {
    const LogLocConf& conf = r.loc_conf<LogLocConf>(log_module);
    if (conf.off || !conf.logs) return Next::Continue;
    for (const AccessLog& log : *conf.logs) {
        if (log.condition && !condition_holds(r, *log.condition)) continue;
        write_line(r, log);
    }
    return Next::Continue;
}

bool log_init_worker(Cycle& cycle) {
    LogMainConf* main = log_main_conf(cycle);
    if (!main) return true;
    event_base* base = Worker::current().base();
    for (auto& file : main->files) {
        if (!file->flush_ms) continue;
        file->flush_timer = evtimer_new(base, on_flush_timer, file.get());
        if (!file->flush_timer) return false;
    }
    return true;
}

void log_exit_worker(Cycle& cycle) {
    LogMainConf* main = log_main_conf(cycle);
    if (!main) return;
    for (auto& file : main->files) {
        flush_log_file(*file);
        if (file->flush_timer) event_free(file->flush_timer);
        file->flush_timer = nullptr;
    }
}

// USR1: what was buffered goes to the old file, then the path is opened
// again onto the same descriptor number, which everything else keeps using.
// In a root master, a file it creates is given to the worker user, so that
// workers, which reopen after it, can open it too (as nginx does).
void log_reopen_files(Cycle& cycle) {
    LogMainConf* main = log_main_conf(cycle);
    if (!main) return;
    uid_t owner = geteuid() == 0 ? worker_uid(cycle) : uid_t(-1);
    for (auto& file : main->files) {
        flush_log_file(*file);
        int fd = ::open(file->path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            SLUICE_LOG(LogLevel::Alert, "open() \"%s\" failed (%d: %s)", file->path.c_str(), errno, strerror(errno));
            continue;
        }
        if (owner != uid_t(-1) && fchown(fd, owner, gid_t(-1)) == -1)
            SLUICE_LOG(LogLevel::Alert, "fchown() \"%s\" failed (%d: %s)", file->path.c_str(), errno, strerror(errno));
        if (::dup3(fd, file->fd, O_CLOEXEC) < 0)
            SLUICE_LOG(LogLevel::Alert, "dup3() for \"%s\" failed (%d: %s)", file->path.c_str(), errno, strerror(errno));
        ::close(fd);
    }
}

bool add_log_variables(Variables& variables) {
    struct Fallback {
        std::string_view name;
        VariableGetter get;
        unsigned flags;
    };
    static const Fallback kFallbacks[] = {
        {"remote_user", get_remote_user, kVarChangeable},
    };
    for (const Fallback& f : kFallbacks) {
        // Defined unless something else defined it; a use before now is pending.
        int index = variables.lookup(f.name);
        bool defined = index >= 0 && !(variables.def(index).flags & kVarPending);
        if (!defined && variables.add(f.name, f.get, 0, f.flags) < 0) return false;
    }
    return true;
}

}  // namespace sluice::http
