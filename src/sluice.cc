// main(): the command line, as nginx's: -t/-T test, -s signal a running
// master, -p/-c/-g/-e, then start the master (or the single process).
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "core/cycle.h"
#include "core/log.h"
#include "core/module.h"
#include "os/listen.h"
#include "os/pidfile.h"
#include "os/process.h"
#include "os/signals.h"
#include "sluice_paths.h"

namespace sluice {
namespace {

struct CommandLineOptions {
    bool help = false;
    bool version = false;
    bool configure = false;
    bool test = false;
    bool dump = false;
    bool quiet = false;
    const char* prefix = nullptr;
    const char* conf = nullptr;
    const char* globals = nullptr;
    const char* error_log = nullptr;
    const char* signal = nullptr;
};

void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void say(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// Takes the value of -p/-c/-g/-e/-s: the rest of this argument ("-cFILE") or the next one.
bool option_value(char* rest, int argc, char* argv[], int& i, const char*& out, const char* what, char flag) {
    if (*rest) {
        out = rest;
        return true;
    }
    if (i + 1 < argc) {
        out = argv[++i];
        return true;
    }
    say("option \"-%c\" requires %s", flag, what);
    return false;
}

bool parse_command_line(int argc, char* argv[], CommandLineOptions& o) {
    for (int i = 1; i < argc; ++i) {
        char* p = argv[i];
        if (*p++ != '-' || !*p) {
            say("invalid option: \"%s\"", argv[i]);
            return false;
        }
        while (*p) {
            char flag = *p++;
            switch (flag) {
            case '?':
            case 'h': o.help = o.version = true; break;
            case 'v': o.version = true; break;
            case 'V': o.version = o.configure = true; break;
            case 't': o.test = true; break;
            case 'T': o.test = o.dump = true; break;
            case 'q': o.quiet = true; break;
            case 'p': if (!option_value(p, argc, argv, i, o.prefix, "directory name", flag)) return false; goto next;
            case 'c': if (!option_value(p, argc, argv, i, o.conf, "file name", flag)) return false; goto next;
            case 'e': if (!option_value(p, argc, argv, i, o.error_log, "file name", flag)) return false; goto next;
            case 'g': if (!option_value(p, argc, argv, i, o.globals, "parameter", flag)) return false; goto next;
            case 's':
                if (!option_value(p, argc, argv, i, o.signal, "parameter", flag)) return false;
                if (!signal_for_command(o.signal)) {
                    say("invalid option: \"-s %s\"", o.signal);
                    return false;
                }
                goto next;
            default: say("invalid option: \"%c\"", flag); return false;
            }
        }
    next:;
    }
    return true;
}

void show_version(const CommandLineOptions& o) {
    fprintf(stderr, "sluice version: sluice/%s\n", SLUICE_VERSION);
    if (o.help) {
        fprintf(stderr,
                "Usage: sluice [-?hvVtTq] [-s signal] [-p prefix]\n"
                "              [-e filename] [-c filename] [-g directives]\n\n"
                "Options:\n"
                "  -?,-h         : this help\n"
                "  -v            : show version and exit\n"
                "  -V            : show version, configure options and modules, then exit\n"
                "  -t            : test configuration and exit\n"
                "  -T            : test configuration, dump it and exit\n"
                "  -q            : suppress non-error messages during configuration testing\n"
                "  -s signal     : send signal to a master process: stop, quit, reopen, reload\n"
                "  -p prefix     : set prefix path (default: %s)\n"
                "  -e filename   : set error log file (default: %s)\n"
                "  -c filename   : set configuration file (default: %s)\n"
                "  -g directives : set global directives out of configuration file\n\n",
                SLUICE_PREFIX, SLUICE_ERROR_LOG_PATH, SLUICE_CONF_PATH);
    }
    if (!o.configure) return;
#if defined(__clang__)
    fprintf(stderr, "built by clang %s\n", __VERSION__);
#elif defined(__GNUC__)
    fprintf(stderr, "built by gcc %s\n", __VERSION__);
#endif
    std::string_view args = configure_arguments;
    while (!args.empty() && args.front() == ' ') args.remove_prefix(1);
    fprintf(stderr, "configure arguments:%s%.*s\n", args.empty() ? "" : " ", int(args.size()), args.data());
    std::string names;
    for (int i = 0; compiled_modules[i]; ++i) names += " " + std::string(compiled_modules[i]->name);
    fprintf(stderr, "compiled-in modules:%s\n", names.c_str());
}

std::string current_directory() {
    char buf[4096];
    if (!getcwd(buf, sizeof buf)) return "/";
    std::string dir = buf;
    if (dir.back() != '/') dir += '/';
    return dir;
}

// The prefix is made absolute: workers may chdir, and a new binary may be
// started from elsewhere.
std::string absolute_prefix(const char* given) {
    std::string prefix = given ? given : SLUICE_PREFIX;
    if (prefix.empty()) prefix = "./";
    if (prefix[0] != '/') prefix = current_directory() + prefix;
    if (prefix.back() != '/') prefix += '/';
    return prefix;
}

// -c relative to the prefix, as nginx's; the compiled-in default follows -p.
std::string conf_path(const char* given, const std::string& prefix) {
    std::string path;
    if (given) {
        path = given;
    } else {
        std::string_view compiled = SLUICE_CONF_PATH, compiled_prefix = SLUICE_PREFIX;
        path = compiled.substr(0, compiled_prefix.size()) == compiled_prefix
                   ? std::string(compiled.substr(compiled_prefix.size()))
                   : std::string(compiled);
    }
    return path[0] == '/' ? path : prefix + path;
}

StartOptions start_options(const CommandLineOptions& o) {
    StartOptions options;
    options.prefix = absolute_prefix(o.prefix);
    options.conf_path = conf_path(o.conf, options.prefix);
    if (o.globals) options.globals = o.globals;
    if (o.error_log) {
        std::string e = o.error_log;
        options.error_log = e == "stderr" || e[0] == '/' ? e : options.prefix + e;
    }
    options.test_only = o.test || o.signal;
    options.dump = o.dump;
    options.quiet = o.quiet;
    return options;
}

// -e: the log used until the configured one is open.
bool open_startup_log(const StartOptions& options) {
    if (options.error_log.empty() || options.error_log == "stderr") return true;
    std::string err;
    if (ErrorLog::instance().open(options.error_log, LogLevel::Notice, err)) return true;
    say("[emerg] %s", err.c_str());
    return false;
}

// Start-up errors go to the terminal and, once a log file is open, there too.
void report_emerg(const std::string& message) {
    say("[emerg] %s", message.c_str());
    if (ErrorLog::instance().fd() > 2) log_error(LogLevel::Emerg, "%s", message.c_str());
}

void dump_configuration(const Cycle& cycle) {
    for (const conf::SourceFile& f : cycle.tree.files) {
        printf("# configuration file %s:\n", f.path.c_str());
        fwrite(f.content.data(), 1, f.content.size(), stdout);
        putchar('\n');
    }
    fflush(stdout);
}

int test_configuration(const StartOptions& options) {
    std::string err;
    std::unique_ptr<Cycle> cycle = Cycle::load(options, nullptr, err);
    if (!cycle) {
        say("[emerg] %s", err.c_str());
        say("configuration file %s test failed", options.conf_path.c_str());
        return 1;
    }
    if (!options.quiet) {
        say("the configuration file %s syntax is ok", options.conf_path.c_str());
        say("configuration file %s test is successful", options.conf_path.c_str());
    }
    if (options.dump) dump_configuration(*cycle);
    return 0;
}

// -s: the configuration is read only to find the pid file.
int send_signal(const StartOptions& options, const char* command) {
    std::string err;
    std::unique_ptr<Cycle> cycle = Cycle::load(options, nullptr, err);
    if (!cycle) {
        say("[emerg] %s", err.c_str());
        return 1;
    }
    std::string path = pid_path(*cycle);
    if (path.empty()) {
        say("[error] no pid file is configured (\"pid off\"), cannot signal the master");
        return 1;
    }
    pid_t pid;
    if (!read_pid_file(path, pid, err)) {
        say("[error] %s", err.c_str());
        return 1;
    }
    int sig = signal_for_command(command);
    if (kill(pid, sig) == -1) {
        say("[alert] kill(%d, %d) failed (%d: %s)", int(pid), sig, errno, strerror(errno));
        return 1;
    }
    return 0;
}

int start(const StartOptions& options) {
    std::string err;
    std::unique_ptr<Cycle> cycle = Cycle::load(options, nullptr, err);
    if (!cycle) {
        report_emerg(err);
        return 1;
    }
    if (!open_cycle_error_log(*cycle, err)) {
        report_emerg(err);
        return 1;
    }
    int inherited = inherit_listening_from_env();
    if (!open_listening_sockets(*cycle, nullptr, err)) {
        report_emerg(err);
        return 1;
    }
    close_inherited_listening();
    if (!cycle->map_shm_zones(nullptr, err)) {
        report_emerg(err);
        return 1;
    }
    set_started_with_inherited_sockets(inherited > 0);
    const CoreConf& core = cycle->core();
    // A new binary runs under the old master, which is already detached.
    if (core.daemon.value_or(true) && inherited == 0 && !daemonize(err)) {
        report_emerg(err);
        return 1;
    }
    if (core.master_process.value_or(true)) return run_master(std::move(cycle));
    return run_single_process(std::move(cycle));
}

}  // namespace
}  // namespace sluice

int main(int argc, char* argv[]) {
    using namespace sluice;
    number_modules();
    CommandLineOptions o;
    if (!parse_command_line(argc, argv, o)) return 1;
    if (o.version) {
        show_version(o);
        return 0;
    }
    save_command_line(argc, argv);
    StartOptions options = start_options(o);
    if (!open_startup_log(options)) return 1;
    if (o.signal) return send_signal(options, o.signal);
    if (o.test) return test_configuration(options);
    return start(options);
}
