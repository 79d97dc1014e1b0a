// The loaded configuration ("cycle"): what one successful reading of the
// configuration produced. The master keeps the current cycle; on reload it
// builds a new one and, only if that succeeds, replaces the old.
#pragma once
#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/conf_file.h"
#include "core/log.h"
#include "core/module.h"

namespace sluice {

struct Connection;
class Worker;

// A listening socket. Declared by a module (http's `listen`), opened by the
// master before fork, inherited by workers, and handed over on reload and on
// binary upgrade when the address and options are the same.
struct Listening {
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string addr_text;  // "127.0.0.1:8080", for logs and -T
    int backlog = 511;
    bool reuseport = false;  // one socket per worker
    bool ipv6only = true;
    int rcvbuf = -1, sndbuf = -1;
    bool deferred = false;
    std::string conf_file;  // where it was declared, for error messages
    int conf_line = 0;

    // Opened sockets: one, or one per worker with reuseport.
    std::vector<int> fds;

    // Called in a worker for each accepted connection.
    void (*on_accept)(Worker&, Listening&, int fd, const sockaddr_storage& peer, socklen_t peer_len) = nullptr;
    void* data = nullptr;  // the module's (http: the servers on this address)
};

// A shared-memory zone: declared by a directive while the configuration is
// read, mapped by the master before fork, and kept across a reload when
// name, size and owner (tag) are the same.
struct ShmZone {
    std::string name;
    size_t size = 0;
    const void* tag = nullptr;  // the owning module (or a module-specific key)
    void* addr = nullptr;       // mapped address, same in every worker
    // Called in the master after mapping; old_data is the zone's previous
    // `data` when the mapping was kept across reload, else null.
    bool (*init)(ShmZone&, void* old_data) = nullptr;
    void* data = nullptr;  // the module's view of the zone
    std::shared_ptr<void> mapping;  // owns the mmap; shared with the next cycle on reload
};

// Settings of the core module (main context).
struct CoreConf : ModuleConf {
    std::optional<bool> daemon;
    std::optional<bool> master_process;
    std::optional<int64_t> worker_processes;  // 0 = auto
    std::optional<std::string> pid;
    std::optional<std::string> user, group;
    std::optional<int64_t> worker_rlimit_nofile;
    std::optional<uint64_t> worker_shutdown_timeout_ms;
    std::optional<std::string> error_log_path;
    std::optional<LogLevel> error_log_level;
    std::optional<std::string> working_directory;
};

// Settings of the events{} block.
struct EventsConf : ModuleConf {
    std::optional<int64_t> worker_connections;
    std::optional<bool> multi_accept;
    std::optional<uint64_t> accept_mutex_delay_ms;  // accepted for nginx compatibility
    bool seen = false;
};

struct StartOptions {
    std::string prefix;      // -p, ends with '/'
    std::string conf_path;   // -c, absolute
    std::string globals;     // -g
    std::string error_log;   // -e
    bool test_only = false;  // -t / -T
    bool dump = false;       // -T
    bool quiet = false;      // -q
};

class Cycle {
public:
    Cycle() = default;
    Cycle(const Cycle&) = delete;
    Cycle& operator=(const Cycle&) = delete;
    ~Cycle();

    // Reads and applies the configuration. On failure `err` holds the
    // message with file:line, as `sluice -t` prints it.
    static std::unique_ptr<Cycle> load(const StartOptions&, const Cycle* old, std::string& err);

    const CoreConf& core() const;
    const EventsConf& events() const;
    ModuleConf* main_conf(const Module& m) const { return main_confs_[size_t(m.index)].get(); }
    void set_main_conf(const Module& m, std::unique_ptr<ModuleConf> c) { main_confs_[size_t(m.index)] = std::move(c); }

    // Listening sockets declared by the configuration, deduplicated by address.
    Listening& add_listening(const sockaddr_storage&, socklen_t, bool& existed);
    std::vector<std::unique_ptr<Listening>>& listening() { return listening_; }

    // Declares a zone; a second declaration with the same name must match.
    ShmZone* add_shm_zone(const std::string& name, size_t size, const void* tag, std::string& err);
    std::vector<std::unique_ptr<ShmZone>>& shm_zones() { return shm_zones_; }
    // Maps the zones, reusing the old cycle's mappings where they match.
    bool map_shm_zones(const Cycle* old, std::string& err);

    // Configuration objects of http modules and other long-lived config data
    // are owned here and freed with the cycle.
    template <class T, class... A> T* make(A&&... a) {
        auto p = std::make_shared<T>(std::forward<A>(a)...);
        T* raw = p.get();
        owned_.push_back(std::move(p));
        return raw;
    }
    ModuleConf* keep(std::unique_ptr<ModuleConf> c) {
        ModuleConf* raw = c.get();
        owned_.push_back(std::shared_ptr<ModuleConf>(std::move(c)));
        return raw;
    }

    StartOptions options;
    std::string prefix;  // ends with '/'
    std::string conf_path;
    conf::Tree tree;     // the parsed files, for -T
    conf::Tree globals_tree;  // -g directives
    int worker_count = 1;

private:
    std::vector<std::unique_ptr<ModuleConf>> main_confs_;
    std::vector<std::shared_ptr<void>> owned_;  // freed with the cycle
    std::vector<std::unique_ptr<Listening>> listening_;
    std::vector<std::unique_ptr<ShmZone>> shm_zones_;
};

extern Module core_module;
extern Module events_module;

}  // namespace sluice
