// The pid file: written by the master (the daemon, once daemonized), read by
// `sluice -s`, renamed to PID.oldbin during a binary upgrade.
#pragma once
#include <sys/types.h>

#include <string>

namespace sluice {

bool write_pid_file(const std::string& path, pid_t pid, std::string& err);
// Errors as nginx words them: open() "PATH" failed (2: ...), invalid PID number "x" in "PATH".
bool read_pid_file(const std::string& path, pid_t& pid, std::string& err);
void remove_pid_file(const std::string& path);

}  // namespace sluice
