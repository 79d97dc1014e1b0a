#include "core/cycle.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "core/conf.h"

namespace sluice {

Cycle::~Cycle() = default;

const CoreConf& Cycle::core() const { return *static_cast<const CoreConf*>(main_conf(core_module)); }
const EventsConf& Cycle::events() const { return *static_cast<const EventsConf*>(main_conf(events_module)); }

namespace {

}  // namespace

std::unique_ptr<Cycle> Cycle::load(const StartOptions& opts, const Cycle* old, std::string& err) {
    (void)old;
    number_modules();
    auto cycle = std::make_unique<Cycle>();
    cycle->options = opts;
    cycle->prefix = opts.prefix;
    cycle->conf_path = opts.conf_path;

    conf::ParseOptions po;
    // Relative includes resolve against the main file's directory, as nginx does.
    po.prefix.clear();
    conf::Error perr;
    if (!conf::parse_file(opts.conf_path, po, cycle->tree, perr)) {
        err = perr.to_string();
        return nullptr;
    }

    size_t count = 0;
    while (compiled_modules[count]) ++count;
    cycle->main_confs_.resize(count);
    for (size_t i = 0; i < count; ++i) {
        const Module& m = *compiled_modules[i];
        if (m.type == ModuleType::Core && m.create_main_conf) cycle->main_confs_[i] = m.create_main_conf();
    }

    ConfContext cx(*cycle, cycle->tree);
    // -g directives come first, as in nginx: the file may not repeat them.
    conf::Tree& globals = cycle->globals_tree;
    if (!opts.globals.empty()) {
        conf::ParseOptions gpo;
        gpo.allow_include = false;
        if (!conf::parse_string(opts.globals, "command line", gpo, globals, perr)) {
            err = perr.to_string();
            return nullptr;
        }
        if (!cx.parse_block(globals.statements, kMainContext)) {
            err = cx.error_message();
            return nullptr;
        }
    }
    if (!cx.parse_block(cycle->tree.statements, kMainContext)) {
        err = cx.error_message();
        return nullptr;
    }
    for (size_t i = 0; i < count; ++i) {
        Module& m = *compiled_modules[i];
        if (m.type != ModuleType::Core || !m.init_main_conf) continue;
        if (!m.init_main_conf(cx, *cycle->main_confs_[i])) {
            err = cx.error_message();
            return nullptr;
        }
    }
    return cycle;
}

Listening& Cycle::add_listening(const sockaddr_storage& addr, socklen_t len, bool& existed) {
    for (auto& l : listening_) {
        if (l->addr_len == len && memcmp(&l->addr, &addr, len) == 0) {
            existed = true;
            return *l;
        }
    }
    existed = false;
    auto l = std::make_unique<Listening>();
    l->addr = addr;
    l->addr_len = len;
    listening_.push_back(std::move(l));
    return *listening_.back();
}

ShmZone* Cycle::add_shm_zone(const std::string& name, size_t size, const void* tag, std::string& err) {
    for (auto& z : shm_zones_) {
        if (z->name != name) continue;
        if (z->tag != tag) {
            err = "the shared memory zone \"" + name + "\" is already declared for a different use";
            return nullptr;
        }
        if (size && z->size && size != z->size) {
            err = "the size " + std::to_string(size) + " of shared memory zone \"" + name +
                  "\" conflicts with already declared size " + std::to_string(z->size);
            return nullptr;
        }
        if (size) z->size = size;
        return z.get();
    }
    auto z = std::make_unique<ShmZone>();
    z->name = name;
    z->size = size;
    z->tag = tag;
    shm_zones_.push_back(std::move(z));
    return shm_zones_.back().get();
}

bool Cycle::map_shm_zones(const Cycle* old, std::string& err) {
    for (auto& z : shm_zones_) {
        if (z->size == 0) {
            err = "zero size shared memory zone \"" + z->name + "\"";
            return false;
        }
        void* old_data = nullptr;
        if (old) {
            for (auto& oz : old->shm_zones_) {
                if (oz->name == z->name && oz->size == z->size && oz->tag == z->tag && oz->mapping) {
                    z->mapping = oz->mapping;
                    z->addr = oz->addr;
                    old_data = oz->data;
                    break;
                }
            }
        }
        if (!z->mapping) {
            void* p = mmap(nullptr, z->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {
                err = "mmap(MAP_ANON|MAP_SHARED, " + std::to_string(z->size) + ") failed (" + std::to_string(errno) +
                      ": " + strerror(errno) + ")";
                return false;
            }
            size_t size = z->size;
            z->mapping = std::shared_ptr<void>(p, [size](void* q) { munmap(q, size); });
            z->addr = p;
        }
        if (z->init && !z->init(*z, old_data)) {
            err = "could not initialize shared memory zone \"" + z->name + "\"";
            return false;
        }
    }
    return true;
}

}  // namespace sluice
