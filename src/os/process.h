// The process model, as nginx's: a master that owns the configuration, the
// listening sockets and the shared-memory zones, forks the workers, and acts
// on signals (HUP reload, QUIT graceful stop, TERM/INT fast stop, USR1 reopen
// logs, USR2 binary upgrade, CHLD respawn); or, with `master_process off`, a
// single process that is its own worker.
#pragma once
#include <sys/types.h>
#include <memory>
#include <string>

#include "core/cycle.h"

namespace sluice {

// Remembers the binary (resolved through /proc/self/exe now, while it is
// still the file we were started from) and the arguments, for USR2.
void save_command_line(int argc, char* const argv[]);

// Set when the listening sockets came from a previous binary: the new master
// is already detached, and it refuses USR2 while the old master lives.
void set_started_with_inherited_sockets(bool inherited);

// Paths of a cycle, absolute: relative ones resolve against the prefix, and
// compiled-in defaults under the compiled-in prefix follow `-p`, as nginx's.
std::string cycle_path(const Cycle& cycle, const std::string& path);
// Empty with `pid off`: no pid file is written.
std::string pid_path(const Cycle& cycle);

// Opens the error log that the cycle configures.
bool open_cycle_error_log(const Cycle& cycle, std::string& err);

// `daemon on`: fork (the parent exits 0), setsid, stdin and stdout to
// /dev/null, stderr to the error log (to /dev/null when that is stderr).
bool daemonize(std::string& err);

// When running as root: the user and group workers run as (files the
// master creates for workers are handed to them). False otherwise.
bool worker_user(const Cycle& cycle, uid_t& uid, gid_t& gid);

// Both write the pid file, run until stopped, remove it, and return the exit
// code of the process. The cycle's listening sockets and zones are open.
int run_master(std::unique_ptr<Cycle> cycle);
int run_single_process(std::unique_ptr<Cycle> cycle);

}  // namespace sluice
