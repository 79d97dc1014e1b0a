// Listening sockets: opened by the master before it forks, handed from one
// cycle to the next on reload, and from the old binary to the new one on a
// binary upgrade (through the SLUICE environment variable). A live address is
// never closed and bound again: its descriptor is passed on.
#pragma once
#include <sys/socket.h>

#include <string>

#include "core/cycle.h"

namespace sluice {

// Gives every Listening of `cycle` its descriptors: one, or one per worker
// with `reuseport`. A descriptor is taken from `old` when it listens on the
// same address, else from the sockets inherited from the previous binary,
// else a new socket is bound. On failure nothing the call created stays open,
// `cycle`'s listenings hold no descriptors and `err` reads like
// `bind() to 127.0.0.1:80 failed (98: Address already in use)`.
bool open_listening_sockets(Cycle& cycle, const Cycle* old, std::string& err);

// After `current` replaced `old`: closes `old`'s descriptors that `current`
// did not take and leaves `old` owning none, so freeing it closes nothing
// that `current` uses.
void close_unused_listening(Cycle& old, const Cycle& current);

// Closes every descriptor of `cycle` (the master, on graceful stop, so that
// new connections are refused once the workers stop accepting), and removes
// the files of its unix-domain sockets when asked (the last master's exit).
void close_listening(Cycle& cycle, bool remove_unix_files);

// Reads SLUICE=fd;fd;...; left by the previous binary. Returns the number of
// sockets taken over; invalid entries are logged and skipped.
int inherit_listening_from_env();
// Closes the inherited sockets that the first cycle did not take.
void close_inherited_listening();

// "fd;fd;...;" for the SLUICE variable of a new binary.
std::string listening_env_value(Cycle& cycle);
// In the child that execs the new binary: lets the descriptors survive exec.
void clear_listening_cloexec(Cycle& cycle);

constexpr const char* kInheritedSocketsVar = "SLUICE";

bool same_address(const sockaddr* a, socklen_t a_len, const sockaddr* b, socklen_t b_len);

}  // namespace sluice
