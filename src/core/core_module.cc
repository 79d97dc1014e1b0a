// The core module (main context: process settings and the error log) and the
// events module (the events{} block).
#include <pwd.h>
#include <unistd.h>

#include "core/conf.h"
#include "core/cycle.h"
#include "sluice_paths.h"

namespace sluice {

namespace {

bool set_worker_processes(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreConf*>(conf);
    if (c.worker_processes) return cx.duplicate();
    if (cx.arg(0) == "auto") {
        c.worker_processes = 0;
        return true;
    }
    auto n = conf::parse_number(cx.arg(0));
    if (!n || *n < 1 || *n > 1024) return cx.invalid_value(0);
    c.worker_processes = *n;
    return true;
}

bool set_user(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreConf*>(conf);
    if (c.user) return cx.duplicate();
    c.user = cx.arg(0);
    c.group = cx.arg_count() > 1 ? cx.arg(1) : cx.arg(0);
    return true;
}

bool set_error_log(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreConf*>(conf);
    if (c.error_log_path) return cx.duplicate();
    LogLevel level = LogLevel::Error;
    if (cx.arg_count() > 1 && !parse_log_level(cx.arg(1), level))
        return cx.error("invalid log level \"%s\" in \"error_log\" directive", cx.arg(1).c_str());
    c.error_log_path = cx.arg(0) == "stderr" ? cx.arg(0) : cx.full_path(cx.arg(0));
    c.error_log_level = level;
    return true;
}

bool set_pid(ConfContext& cx, void* conf) {
    auto& c = *static_cast<CoreConf*>(conf);
    if (c.pid) return cx.duplicate();
    c.pid = cx.arg(0) == "off" ? std::string() : cx.full_path(cx.arg(0));
    return true;
}

const Directive kCoreDirectives[] = {
    {"daemon", kMainContext, Args(1), ConfLevel::Main, set_flag<&CoreConf::daemon>},
    {"master_process", kMainContext, Args(1), ConfLevel::Main, set_flag<&CoreConf::master_process>},
    {"worker_processes", kMainContext, Args(1), ConfLevel::Main, set_worker_processes},
    {"pid", kMainContext, Args(1), ConfLevel::Main, set_pid},
    {"user", kMainContext, Args(1, 2), ConfLevel::Main, set_user},
    {"worker_rlimit_nofile", kMainContext, Args(1), ConfLevel::Main, set_number<&CoreConf::worker_rlimit_nofile>},
    {"worker_shutdown_timeout", kMainContext, Args(1), ConfLevel::Main,
     set_msec<&CoreConf::worker_shutdown_timeout_ms>},
    {"error_log", kMainContext, Args(1, 2), ConfLevel::Main, set_error_log},
    {"working_directory", kMainContext, Args(1), ConfLevel::Main, set_string<&CoreConf::working_directory>},
};

std::unique_ptr<ModuleConf> create_core_conf() { return std::make_unique<CoreConf>(); }

bool init_core_conf(ConfContext& cx, ModuleConf& mc) {
    auto& c = static_cast<CoreConf&>(mc);
    if (!c.daemon) c.daemon = true;
    if (!c.master_process) c.master_process = true;
    if (!c.worker_processes) c.worker_processes = 1;
    if (!c.pid) c.pid = cx.full_path(SLUICE_PID_PATH);
    if (!c.worker_shutdown_timeout_ms) c.worker_shutdown_timeout_ms = 0;  // 0: wait for requests to finish
    if (!c.error_log_path) {
        // `-e` names the log when the configuration does not, as in nginx.
        const std::string& e = cx.cycle().options.error_log;
        c.error_log_path = !e.empty() ? e : cx.full_path(SLUICE_ERROR_LOG_PATH);
        c.error_log_level = LogLevel::Error;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cx.cycle().worker_count = *c.worker_processes == 0 ? int(cpus > 0 ? cpus : 1) : int(*c.worker_processes);
    if (c.user && getpwnam(c.user->c_str()) == nullptr)
        return cx.error("getpwnam(\"%s\") failed", c.user->c_str());
    return true;
}

// ---- events{} ----

bool set_events_block(ConfContext& cx, void* conf) {
    auto& e = *static_cast<EventsConf*>(conf);
    if (e.seen) return cx.duplicate();
    e.seen = true;
    return cx.parse_block(cx.statement().children, kEventsContext);
}

bool set_use(ConfContext& cx, void*) {
    // libevent picks the best method (epoll); accept nginx's names for portability.
    static const char* const kKnown[] = {"epoll", "poll", "select", "kqueue", "eventport", "/dev/poll"};
    for (const char* k : kKnown)
        if (cx.arg(0) == k) return true;
    return cx.error("invalid event type \"%s\"", cx.arg(0).c_str());
}

bool set_worker_connections(ConfContext& cx, void* conf) {
    auto& e = *static_cast<EventsConf*>(conf);
    if (e.worker_connections) return cx.duplicate();
    auto n = conf::parse_number(cx.arg(0));
    if (!n || *n < 1) return cx.invalid_value(0);
    e.worker_connections = *n;
    return true;
}

const Directive kEventsDirectives[] = {
    {"events", kMainContext, Block(), ConfLevel::Main, set_events_block},
    {"worker_connections", kEventsContext, Args(1), ConfLevel::Main, set_worker_connections},
    {"multi_accept", kEventsContext, Args(1), ConfLevel::Main, set_flag<&EventsConf::multi_accept>},
    {"accept_mutex", kEventsContext, Args(1), ConfLevel::Main, [](ConfContext& cx, void*) {
         // Workers accept with EPOLLEXCLUSIVE-like wakeups from libevent; the flag is accepted for nginx configs.
         return conf::parse_flag(cx.arg(0)).has_value() || cx.invalid_value(0);
     }},
    {"accept_mutex_delay", kEventsContext, Args(1), ConfLevel::Main, set_msec<&EventsConf::accept_mutex_delay_ms>},
    {"use", kEventsContext, Args(1), ConfLevel::Main, set_use},
};

std::unique_ptr<ModuleConf> create_events_conf() { return std::make_unique<EventsConf>(); }

bool init_events_conf(ConfContext&, ModuleConf& mc) {
    auto& e = static_cast<EventsConf&>(mc);
    if (!e.worker_connections) e.worker_connections = 1024;
    if (!e.multi_accept) e.multi_accept = false;
    return true;
}

}  // namespace

Module core_module = {
    .name = "core",
    .type = ModuleType::Core,
    .directives = kCoreDirectives,
    .create_main_conf = create_core_conf,
    .init_main_conf = init_core_conf,
};

Module events_module = {
    .name = "events",
    .type = ModuleType::Core,
    .directives = kEventsDirectives,
    .create_main_conf = create_events_conf,
    .init_main_conf = init_events_conf,
};

}  // namespace sluice
