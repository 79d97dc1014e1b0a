// The log module's directives: log_format and access_log. Access log files
// are opened here, while the master loads the configuration.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/conf.h"
#include "core/cycle.h"
#include "http/http_core.h"
#include "log.h"
#include "sluice_paths.h"

namespace sluice::http {

namespace {

constexpr std::string_view kCombinedName = "combined";
constexpr std::string_view kCombined =
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
    "\"$http_referer\" \"$http_user_agent\"";

LogMainConf& log_main_conf(ConfContext& cx) {
    return *static_cast<LogMainConf*>(cx.http->main[size_t(log_module.ctx_index)]);
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void append_literal(std::vector<LogOp>& ops, std::string_view text) {
    if (text.empty()) return;
    if (!ops.empty() && !ops.back().is_variable) ops.back().text.append(text);
    else ops.push_back({std::string(text), false, -1});
}

// Splits "text $var ${var}text" into ops; variables are looked up later.
bool parse_format(std::string_view text, std::vector<LogOp>& ops, std::string& err) {
    size_t i = 0;
    while (i < text.size()) {
        size_t dollar = text.find('$', i);
        append_literal(ops, text.substr(i, dollar == std::string_view::npos ? dollar : dollar - i));
        if (dollar == std::string_view::npos) break;
        i = dollar + 1;
        std::string_view name;
        if (i < text.size() && text[i] == '{') {
            size_t close = text.find('}', i);
            if (close == std::string_view::npos) {
                err = "the closing bracket in \"" + std::string(text.substr(i + 1)) + "\" variable is missing";
                return false;
            }
            name = text.substr(i + 1, close - i - 1);
            i = close + 1;
        } else {
            size_t start = i;
            while (i < text.size() && is_name_char(text[i])) ++i;
            name = text.substr(start, i - start);
        }
        if (name.empty()) {
            err = "invalid variable name in \"" + std::string(text) + "\"";
            return false;
        }
        ops.push_back({std::string(name), true, -1});
    }
    return true;
}

bool parse_escape(ConfContext& cx, std::string_view value, LogEscape& out) {
    if (value == "default") out = LogEscape::Default;
    else if (value == "json") out = LogEscape::Json;
    else if (value == "none") out = LogEscape::None;
    else return cx.error("unknown log format escaping \"%.*s\"", int(value.size()), value.data());
    return true;
}

// A variable may be defined after the format that uses it (a later map, a
// module's postconfiguration): the core reports the ones nothing defines,
// with the file and line of the statement being read.
void resolve_format(ConfContext& cx, LogFormat& format) {
    Variables& variables = current_main_conf(cx).variables;
    std::string file(cx.statement().file);
    int line = cx.statement().line;
    for (LogOp& op : format.ops)
        if (op.is_variable && op.variable < 0) op.variable = variables.reference(op.text, file, line);
}

// log_format NAME [escape=default|json|none] STRING...
bool set_log_format(ConfContext& cx, void* conf) {
    auto& main = *static_cast<LogMainConf*>(conf);
    const std::string& name = cx.arg(0);
    if (main.find_format(name)) return cx.error("duplicate \"log_format\" name \"%s\"", name.c_str());
    auto format = std::make_unique<LogFormat>();
    format->name = name;
    size_t first = 1;
    std::string_view arg1 = cx.arg(1);
    if (arg1.starts_with("escape=")) {
        if (!parse_escape(cx, arg1.substr(7), format->escape)) return false;
        ++first;
    }
    if (first >= cx.arg_count()) return cx.error("invalid number of arguments in \"log_format\" directive");
    // The strings are one format, concatenated as written.
    std::string err;
    for (size_t i = first; i < cx.arg_count(); ++i)
        if (!parse_format(cx.arg(i), format->ops, err)) return cx.error("%s", err.c_str());
    resolve_format(cx, *format);
    main.formats.push_back(std::move(format));
    return true;
}

LogFile* open_log_file(ConfContext& cx, LogMainConf& main, const std::string& path) {
    if (LogFile* existing = main.find_file(path)) return existing;
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        cx.error("open() \"%s\" failed (%d: %s)", path.c_str(), err, strerror(err));
        return nullptr;
    }
    auto file = std::make_unique<LogFile>();
    file->path = path;
    file->fd = fd;
    main.files.push_back(std::move(file));
    return main.files.back().get();
}

struct AccessLogOptions {
    uint64_t buffer_size = 0;
    uint64_t flush_ms = 0;
    std::shared_ptr<ComplexValue> condition;
};

bool parse_access_log_option(ConfContext& cx, size_t i, AccessLogOptions& opts) {
    std::string_view arg = cx.arg(i);
    if (arg.starts_with("buffer=")) {
        auto size = conf::parse_size(arg.substr(7));
        if (!size || *size == 0) return cx.error("invalid buffer size \"%.*s\"", int(arg.size() - 7), arg.data() + 7);
        opts.buffer_size = *size;
    } else if (arg.starts_with("flush=")) {
        auto ms = conf::parse_time_ms(arg.substr(6));
        if (!ms || *ms == 0) return cx.error("invalid flush time \"%.*s\"", int(arg.size() - 6), arg.data() + 6);
        opts.flush_ms = *ms;
    } else if (arg.starts_with("if=")) {
        opts.condition = std::make_shared<ComplexValue>();
        return opts.condition->compile(cx, arg.substr(3));
    } else if (arg.starts_with("gzip")) {
        return cx.error("the \"gzip\" parameter of \"access_log\" is not supported");
    } else {
        return cx.error("invalid parameter \"%.*s\"", int(arg.size()), arg.data());
    }
    return true;
}

// Every access_log naming one path shares its file and buffer, so they must agree on it.
bool apply_buffer(ConfContext& cx, LogFile& file, const AccessLogOptions& opts) {
    if (opts.flush_ms && !opts.buffer_size)
        return cx.error("no buffer is defined for access_log \"%s\"", cx.arg(0).c_str());
    if (!opts.buffer_size) return true;
    if (file.buffer_size) {
        if (file.buffer_size != opts.buffer_size || file.flush_ms != opts.flush_ms)
            return cx.error("access_log \"%s\" already defined with conflicting parameters", cx.arg(0).c_str());
        return true;
    }
    file.buffer_size = opts.buffer_size;
    file.flush_ms = opts.flush_ms;
    file.buffer = std::make_unique<char[]>(opts.buffer_size);
    return true;
}

// access_log PATH [FORMAT [buffer=SIZE] [flush=TIME] [if=CONDITION]] | off
bool set_access_log(ConfContext& cx, void* conf) {
    auto& c = *static_cast<LogLocConf*>(conf);
    const std::string& path = cx.arg(0);
    if (path == "off") {
        if (cx.arg_count() > 1) return cx.error("invalid parameter \"%s\"", cx.arg(1).c_str());
        c.off = true;
        return true;
    }
    if (path.starts_with("syslog:")) return cx.error("syslog is not supported in \"access_log\"");
    if (path.find('$') != std::string::npos)
        return cx.error("variables in the \"access_log\" path are not supported");
    LogMainConf& main = log_main_conf(cx);
    std::string format_name = cx.arg_count() > 1 ? cx.arg(1) : std::string(kCombinedName);
    const LogFormat* format = main.find_format(format_name);
    if (!format) return cx.error("unknown log format \"%s\"", format_name.c_str());
    AccessLogOptions opts;
    for (size_t i = 2; i < cx.arg_count(); ++i)
        if (!parse_access_log_option(cx, i, opts)) return false;
    LogFile* file = open_log_file(cx, main, cx.full_path(path));
    if (!file || !apply_buffer(cx, *file, opts)) return false;
    if (!c.logs) c.logs = std::make_shared<AccessLogList>();
    c.logs->push_back({file, format, std::move(opts.condition)});
    return true;
}

const Directive kDirectives[] = {
    {"log_format", kHttpContext, AnyArgs(2), ConfLevel::Main, set_log_format},
    {"access_log", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_access_log},
};

std::unique_ptr<ModuleConf> create_main_conf() {
    auto main = std::make_unique<LogMainConf>();
    auto combined = std::make_unique<LogFormat>();
    combined->name = kCombinedName;
    std::string err;
    parse_format(kCombined, combined->ops, err);
    main->formats.push_back(std::move(combined));
    return main;
}

std::unique_ptr<ModuleConf> create_loc_conf() { return std::make_unique<LogLocConf>(); }

std::shared_ptr<AccessLogList> default_logs(ConfContext& cx) {
    LogMainConf& main = log_main_conf(cx);
    if (main.default_logs) return main.default_logs;
    // configure makes a default under the prefix relative: it follows -p, as nginx's.
    LogFile* file = open_log_file(cx, main, cx.full_path(SLUICE_HTTP_LOG_PATH));
    if (!file) return nullptr;
    main.default_logs = std::make_shared<AccessLogList>();
    main.default_logs->push_back({file, main.find_format(kCombinedName), nullptr});
    return main.default_logs;
}

// nginx's merge: a level with access_log (or "off") keeps its own; otherwise
// it inherits the parent's list whole; with none anywhere, the default log.
bool merge_loc_conf(ConfContext& cx, const ModuleConf& parent_conf, ModuleConf& child_conf) {
    auto& parent = static_cast<const LogLocConf&>(parent_conf);
    auto& child = static_cast<LogLocConf&>(child_conf);
    if (child.logs || child.off) return true;
    child.logs = parent.logs;
    child.off = parent.off;
    if (child.logs || child.off) return true;
    child.logs = default_logs(cx);
    return child.logs != nullptr;
}

bool postconfiguration(ConfContext& cx, HttpPhases& phases) {
    if (!add_log_variables(current_main_conf(cx).variables))
        return cx.error("the log module's variables are already defined");
    // "combined" was made without a configuration to resolve it in.
    resolve_format(cx, *log_main_conf(cx).formats.front());
    phases.add(Phase::Log, log_handler);
    return true;
}

}  // namespace

const LogFormat* LogMainConf::find_format(std::string_view name) const {
    for (const auto& f : formats)
        if (f->name == name) return f.get();
    return nullptr;
}

LogFile* LogMainConf::find_file(std::string_view path) const {
    for (const auto& f : files)
        if (f->path == path) return f.get();
    return nullptr;
}

}  // namespace sluice::http

namespace sluice {

Module log_module = {
    .name = "log",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_main_conf = http::create_main_conf,
    .create_loc_conf = http::create_loc_conf,
    .merge_loc_conf = http::merge_loc_conf,
    .postconfiguration = http::postconfiguration,
    .init_worker = http::log_init_worker,
    .exit_worker = http::log_exit_worker,
    .reopen_files = http::log_reopen_files,
};

}  // namespace sluice
