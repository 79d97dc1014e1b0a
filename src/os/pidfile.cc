#include "os/pidfile.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace sluice {

namespace {

std::string errno_text(int e) { return std::to_string(e) + ": " + strerror(e); }

bool parse_pid(std::string_view text, pid_t& pid) {
    if (text.empty() || text.size() > 10) return false;
    long long v = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    if (v <= 0 || v > 0x7fffffff) return false;
    pid = pid_t(v);
    return true;
}

}  // namespace

bool write_pid_file(const std::string& path, pid_t pid, std::string& err) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = "open() \"" + path + "\" failed (" + errno_text(errno) + ")";
        return false;
    }
    std::string text = std::to_string(pid) + "\n";
    ssize_t n = ::write(fd, text.data(), text.size());
    int write_errno = errno;
    ::close(fd);
    if (n != ssize_t(text.size())) {
        err = "write() to \"" + path + "\" failed (" + errno_text(n < 0 ? write_errno : EIO) + ")";
        return false;
    }
    return true;
}

bool read_pid_file(const std::string& path, pid_t& pid, std::string& err) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = "open() \"" + path + "\" failed (" + errno_text(errno) + ")";
        return false;
    }
    char buf[32];
    ssize_t n = ::read(fd, buf, sizeof buf);
    int read_errno = errno;
    ::close(fd);
    if (n < 0) {
        err = "read() \"" + path + "\" failed (" + errno_text(read_errno) + ")";
        return false;
    }
    std::string_view text(buf, size_t(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
        text.remove_suffix(1);
    if (!parse_pid(text, pid)) {
        err = "invalid PID number \"" + std::string(text) + "\" in \"" + path + "\"";
        return false;
    }
    return true;
}

void remove_pid_file(const std::string& path) {
    if (::unlink(path.c_str()) == -1 && errno != ENOENT)
        SLUICE_LOG(LogLevel::Alert, "unlink() \"%s\" failed (%d: %s)", path.c_str(), errno, strerror(errno));
}

}  // namespace sluice
