#include "os/listen.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/log.h"

namespace sluice {

namespace {

// How long the kernel holds a `deferred` connection waiting for data; nginx
// uses client_header_timeout, whose default this is.
constexpr int kDeferAcceptSeconds = 60;

struct InheritedSocket {
    int fd;
    sockaddr_storage addr;
    socklen_t addr_len;
};

std::vector<InheritedSocket>& inherited() {
    static std::vector<InheritedSocket> sockets;
    return sockets;
}

std::string errno_text(int e) { return "(" + std::to_string(e) + ": " + strerror(e) + ")"; }

std::string sys_error(const char* call, const Listening& ls, int e) {
    return std::string(call) + " " + ls.addr_text + " failed " + errno_text(e);
}

bool set_option(int fd, int level, int name, int value, const char* label, const Listening& ls,
                std::string& err) {
    if (setsockopt(fd, level, name, &value, sizeof value) == 0) return true;
    err = std::string("setsockopt(") + label + ") " + ls.addr_text + " failed " + errno_text(errno);
    return false;
}

bool is_unix(const Listening& ls) { return ls.addr.ss_family == AF_UNIX; }

// The options that may change on a socket already bound: applied to new and
// to reused sockets alike, as nginx's ngx_configure_listening_sockets does.
bool configure_socket(int fd, const Listening& ls, std::string& err) {
    if (ls.rcvbuf != -1 && !set_option(fd, SOL_SOCKET, SO_RCVBUF, ls.rcvbuf, "SO_RCVBUF", ls, err)) return false;
    if (ls.sndbuf != -1 && !set_option(fd, SOL_SOCKET, SO_SNDBUF, ls.sndbuf, "SO_SNDBUF", ls, err)) return false;
    if (!is_unix(ls)) {
        int defer = ls.deferred ? kDeferAcceptSeconds : 0;
        if (!set_option(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, defer, "TCP_DEFER_ACCEPT", ls, err)) return false;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
        err = sys_error("fcntl(O_NONBLOCK)", ls, errno);
        return false;
    }
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
        err = sys_error("fcntl(FD_CLOEXEC)", ls, errno);
        return false;
    }
    return true;
}

bool bind_socket(int fd, const Listening& ls, std::string& err) {
    if (!is_unix(ls)) {
        if (!set_option(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", ls, err)) return false;
        if (ls.reuseport && !set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", ls, err)) return false;
    }
    if (ls.addr.ss_family == AF_INET6 &&
        !set_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, ls.ipv6only ? 1 : 0, "IPV6_V6ONLY", ls, err))
        return false;
    if (!configure_socket(fd, ls, err)) return false;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&ls.addr), ls.addr_len) == -1) {
        err = "bind() to " + ls.addr_text + " failed " + errno_text(errno);
        return false;
    }
    if (::listen(fd, ls.backlog) == -1) {
        err = "listen() to " + ls.addr_text + ", backlog " + std::to_string(ls.backlog) + " failed " +
              errno_text(errno);
        return false;
    }
    return true;
}

int new_socket(const Listening& ls, std::string& err) {
    int fd = ::socket(ls.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        err = sys_error("socket()", ls, errno);
        return -1;
    }
    if (!bind_socket(fd, ls, err)) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// A reused socket keeps its bound options; the rest follow the new config.
bool reconfigure_socket(int fd, const Listening& ls, std::string& err) {
    if (ls.reuseport && !is_unix(ls) &&
        !set_option(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", ls, err))
        return false;
    if (!configure_socket(fd, ls, err)) return false;
    // listen() again on a listening socket only changes its backlog.
    if (::listen(fd, ls.backlog) == -1) {
        err = "listen() to " + ls.addr_text + ", backlog " + std::to_string(ls.backlog) + " failed " +
              errno_text(errno);
        return false;
    }
    return true;
}

Listening* find_listening(Cycle& cycle, const Listening& like) {
    for (auto& ls : cycle.listening())
        if (same_address(reinterpret_cast<const sockaddr*>(&ls->addr), ls->addr_len,
                         reinterpret_cast<const sockaddr*>(&like.addr), like.addr_len))
            return ls.get();
    return nullptr;
}

void take_from_old(const Cycle* old, Listening& ls, size_t want) {
    if (!old) return;
    Listening* prev = find_listening(const_cast<Cycle&>(*old), ls);
    if (!prev) return;
    for (size_t i = 0; i < prev->fds.size() && ls.fds.size() < want; ++i) ls.fds.push_back(prev->fds[i]);
}

void take_inherited(Listening& ls, size_t want) {
    auto& pool = inherited();
    for (auto it = pool.begin(); it != pool.end() && ls.fds.size() < want;) {
        if (same_address(reinterpret_cast<const sockaddr*>(&it->addr), it->addr_len,
                         reinterpret_cast<const sockaddr*>(&ls.addr), ls.addr_len)) {
            ls.fds.push_back(it->fd);
            it = pool.erase(it);
        } else {
            ++it;
        }
    }
}

bool in_cycle(const Cycle& cycle, int fd) {
    for (auto& ls : const_cast<Cycle&>(cycle).listening())
        if (std::find(ls->fds.begin(), ls->fds.end(), fd) != ls->fds.end()) return true;
    return false;
}

void unlink_unix_socket(const Listening& ls) {
    if (!is_unix(ls)) return;
    const auto* sun = reinterpret_cast<const sockaddr_un*>(&ls.addr);
    if (sun->sun_path[0] != '\0') ::unlink(sun->sun_path);
}

}  // namespace

bool same_address(const sockaddr* a, socklen_t a_len, const sockaddr* b, socklen_t b_len) {
    if (a->sa_family != b->sa_family) return false;
    switch (a->sa_family) {
    case AF_INET: {
        const auto* x = reinterpret_cast<const sockaddr_in*>(a);
        const auto* y = reinterpret_cast<const sockaddr_in*>(b);
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const auto* x = reinterpret_cast<const sockaddr_in6*>(a);
        const auto* y = reinterpret_cast<const sockaddr_in6*>(b);
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    case AF_UNIX: {
        const auto* x = reinterpret_cast<const sockaddr_un*>(a);
        const auto* y = reinterpret_cast<const sockaddr_un*>(b);
        return strncmp(x->sun_path, y->sun_path, sizeof x->sun_path) == 0;
    }
    default: return a_len == b_len && memcmp(a, b, a_len) == 0;
    }
}

bool open_listening_sockets(Cycle& cycle, const Cycle* old, std::string& err) {
    std::vector<int> created;
    auto fail = [&] {
        for (int fd : created) ::close(fd);
        // Descriptors taken from the old cycle stay the old cycle's; inherited
        // ones die with the process, which is exiting.
        for (auto& ls : cycle.listening()) ls->fds.clear();
        return false;
    };
    for (auto& lp : cycle.listening()) {
        Listening& ls = *lp;
        size_t want = ls.reuseport ? size_t(std::max(1, cycle.worker_count)) : 1;
        ls.fds.clear();
        take_from_old(old, ls, want);
        take_inherited(ls, want);
        for (int fd : ls.fds)
            if (!reconfigure_socket(fd, ls, err)) return fail();
        while (ls.fds.size() < want) {
            int fd = new_socket(ls, err);
            if (fd == -1) return fail();
            created.push_back(fd);
            ls.fds.push_back(fd);
        }
    }
    return true;
}

void close_unused_listening(Cycle& old, const Cycle& current) {
    for (auto& ls : old.listening()) {
        bool address_kept = false;
        for (int fd : ls->fds) {
            if (in_cycle(current, fd)) {
                address_kept = true;
            } else {
                ::close(fd);
            }
        }
        if (!address_kept && !ls->fds.empty()) unlink_unix_socket(*ls);
        ls->fds.clear();
    }
}

void close_listening(Cycle& cycle, bool remove_unix_files) {
    for (auto& ls : cycle.listening()) {
        for (int fd : ls->fds) ::close(fd);
        ls->fds.clear();
        if (remove_unix_files) unlink_unix_socket(*ls);
    }
}

int inherit_listening_from_env() {
    const char* value = getenv(kInheritedSocketsVar);
    if (!value || !*value) return 0;
    SLUICE_LOG(LogLevel::Notice, "using inherited sockets from \"%s\"", value);
    std::string_view rest(value);
    while (!rest.empty()) {
        size_t semi = rest.find(';');
        std::string_view item = rest.substr(0, semi);
        rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
        if (item.empty()) continue;
        char* end = nullptr;
        std::string text(item);
        long fd = strtol(text.c_str(), &end, 10);
        InheritedSocket s{};
        s.addr_len = sizeof s.addr;
        int listening = 0;
        socklen_t len = sizeof listening;
        if (*end != '\0' || fd < 0 || fd > 1 << 20 ||
            getsockname(int(fd), reinterpret_cast<sockaddr*>(&s.addr), &s.addr_len) == -1 ||
            getsockopt(int(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == -1 || !listening) {
            SLUICE_LOG(LogLevel::Emerg, "invalid socket number \"%s\" in %s environment variable, ignoring it",
                       text.c_str(), kInheritedSocketsVar);
            continue;
        }
        s.fd = int(fd);
        // Not inherited by workers' execs, nor kept by a later upgrade unless taken.
        fcntl(s.fd, F_SETFD, FD_CLOEXEC);
        inherited().push_back(s);
    }
    return int(inherited().size());
}

void close_inherited_listening() {
    for (auto& s : inherited()) ::close(s.fd);
    inherited().clear();
}

std::string listening_env_value(Cycle& cycle) {
    std::string value;
    for (auto& ls : cycle.listening())
        for (int fd : ls->fds) value += std::to_string(fd) + ";";
    return value;
}

void clear_listening_cloexec(Cycle& cycle) {
    for (auto& ls : cycle.listening())
        for (int fd : ls->fds) fcntl(fd, F_SETFD, 0);
}

}  // namespace sluice
