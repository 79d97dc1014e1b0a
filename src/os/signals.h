// Signal plumbing of the master process. The handlers only record what was
// asked (async-signal-safe stores to sig_atomic_t); the master's loop, woken
// from sigsuspend(), does the work.
#pragma once
#include <signal.h>

#include <string>
#include <string_view>

namespace sluice {

struct MasterSignals {
    volatile sig_atomic_t reap = 0;           // CHLD
    volatile sig_atomic_t terminate = 0;      // TERM, INT: fast stop
    volatile sig_atomic_t quit = 0;           // QUIT: graceful stop
    volatile sig_atomic_t reconfigure = 0;    // HUP: reload
    volatile sig_atomic_t reopen = 0;         // USR1: reopen logs
    volatile sig_atomic_t change_binary = 0;  // USR2: binary upgrade
    volatile sig_atomic_t alarm = 0;          // ALRM: the fast-stop timer
};

extern MasterSignals master_signals;

// Installs the master's handlers and blocks its signals: they are taken only
// inside wait_for_signal(), so the loop never races a handler.
bool install_master_signals(std::string& err);

// Sleeps until a signal arrives (sigsuspend with an empty mask).
void wait_for_signal();

// In a freshly forked worker: the master's handlers are replaced by ones that
// only remember QUIT, TERM, INT and USR1 until the worker's loop takes over
// (replay_held_signals), the rest go back to their defaults, SIGPIPE is
// ignored (writes to closed sockets are errors, not deaths), and the mask is
// emptied.
void reset_signals_in_child();

// Raises again what reset_signals_in_child() held, once the worker's own
// handlers are installed: a reload right after a worker starts is not lost.
void replay_held_signals();

// SIGPIPE is ignored in every sluice process.
void ignore_sigpipe();

// `-s NAME`: stop, quit, reopen, reload; 0 when unknown.
int signal_for_command(std::string_view name);

}  // namespace sluice
