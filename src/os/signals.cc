#include "os/signals.h"

#include <cerrno>
#include <cstring>
#include <iterator>

namespace sluice {

MasterSignals master_signals;

namespace {

constexpr int kMasterSignals[] = {SIGCHLD, SIGALRM, SIGINT,  SIGTERM, SIGQUIT,
                                  SIGHUP,  SIGUSR1, SIGUSR2, SIGWINCH};

void on_master_signal(int sig) {
    switch (sig) {
    case SIGCHLD: master_signals.reap = 1; break;
    case SIGTERM:
    case SIGINT: master_signals.terminate = 1; break;
    case SIGQUIT: master_signals.quit = 1; break;
    case SIGHUP: master_signals.reconfigure = 1; break;
    case SIGUSR1: master_signals.reopen = 1; break;
    case SIGUSR2: master_signals.change_binary = 1; break;
    case SIGALRM: master_signals.alarm = 1; break;
    default: break;  // WINCH: accepted and ignored
    }
}

// Signals that reached a worker before its loop installed handlers.
constexpr int kHeldSignals[] = {SIGQUIT, SIGTERM, SIGINT, SIGUSR1};
volatile sig_atomic_t held[sizeof kHeldSignals / sizeof kHeldSignals[0]];

void on_held_signal(int sig) {
    for (size_t i = 0; i < std::size(kHeldSignals); ++i)
        if (kHeldSignals[i] == sig) held[i] = 1;
}

sigset_t master_set() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : kMasterSignals) sigaddset(&set, sig);
    return set;
}

}  // namespace

bool install_master_signals(std::string& err) {
    ignore_sigpipe();
    struct sigaction sa {};
    sa.sa_handler = on_master_signal;
    sigemptyset(&sa.sa_mask);
    for (int sig : kMasterSignals) {
        if (sigaction(sig, &sa, nullptr) == -1) {
            err = "sigaction(" + std::to_string(sig) + ") failed (" + std::to_string(errno) + ": " +
                  strerror(errno) + ")";
            return false;
        }
    }
    sigset_t set = master_set();
    if (sigprocmask(SIG_BLOCK, &set, nullptr) == -1) {
        err = "sigprocmask() failed (" + std::to_string(errno) + ": " + strerror(errno) + ")";
        return false;
    }
    return true;
}

void wait_for_signal() {
    sigset_t none;
    sigemptyset(&none);
    sigsuspend(&none);
}

void reset_signals_in_child() {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int sig : kMasterSignals) sigaction(sig, &sa, nullptr);
    // Reload and upgrade signals belong to the master.
    sa.sa_handler = SIG_IGN;
    for (int sig : {SIGUSR2, SIGHUP, SIGWINCH}) sigaction(sig, &sa, nullptr);
    sa.sa_handler = on_held_signal;
    for (int sig : kHeldSignals) sigaction(sig, &sa, nullptr);
    ignore_sigpipe();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
}

void replay_held_signals() {
    for (size_t i = 0; i < std::size(kHeldSignals); ++i) {
        if (!held[i]) continue;
        held[i] = 0;
        raise(kHeldSignals[i]);
    }
}

void ignore_sigpipe() {
    struct sigaction sa {};
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, nullptr);
}

int signal_for_command(std::string_view name) {
    if (name == "stop") return SIGTERM;
    if (name == "quit") return SIGQUIT;
    if (name == "reopen") return SIGUSR1;
    if (name == "reload") return SIGHUP;
    return 0;
}

}  // namespace sluice
