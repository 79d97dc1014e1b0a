// What the limit_req module's halves share: the zones declared by
// limit_req_zone, the limits of a location (limit_req and its companions),
// and the request path that directives.cc installs.
#pragma once
#include <time.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/module.h"
#include "http/http_phases.h"
#include "http/http_variables.h"
#include "limit_req_zone.h"

namespace sluice {
struct ShmZone;
extern Module limit_req_module;
}  // namespace sluice

namespace sluice::limit_req {

// The most limit_req directives one level may hold.
constexpr size_t kMaxLimits = 16;

// One limit_req_zone. Created by the first directive that names it, so a
// limit_req may come before the limit_req_zone it uses (as in nginx).
struct Zone {
    std::string name;
    bool declared = false;  // by limit_req_zone
    http::ComplexValue key;
    std::vector<int> key_variables;  // indices of the variables in the key
    Algorithm algorithm = Algorithm::Gcra;
    uint64_t rate = 1;  // requests per period
    uint64_t period_ns = kNsPerSec;
    unsigned period_sec = 1;
    ShmZone* shm = nullptr;
    Table table;                  // laid over the shared memory once it is mapped
    uint64_t secret[2] = {0, 0};  // the key hash's secret, copied from the zone
    std::string policy_item;      // "NAME";q=N;w=W for RateLimit-Policy
    std::string first_use_file;   // a limit_req that names an undeclared zone
    int first_use_line = 0;
};

// One limit_req in a location.
struct Limit {
    Zone* zone = nullptr;
    uint64_t burst = 0;
    std::optional<uint64_t> delay;  // delay=N
    bool nodelay = false;
    LimitParams params;  // resolved at the end of http{}
};

struct LimitLevel {
    std::vector<Limit> limits;
};

struct LimitMainConf : ModuleConf {
    std::vector<std::unique_ptr<Zone>> zones;
    std::vector<std::unique_ptr<LimitLevel>> levels;  // every level's limits, resolved together
    bool headers_used = false;                         // limit_req_headers on, somewhere
};

struct LimitLocConf : ModuleConf {
    LimitLevel* level = nullptr;  // the limits of this level; inherited when it has none
    std::optional<int64_t> status;
    std::optional<LogLevel> log_level;
    std::optional<bool> dry_run;
    std::optional<bool> headers;
};

// $limit_req_status values, in nginx's spelling.
enum class Outcome : uint8_t { None, Passed, Delayed, Rejected, DelayedDryRun, RejectedDryRun };

// CLOCK_MONOTONIC in ns: one clock for every process on the machine, read
// through the vDSO (no system call).
inline uint64_t monotonic_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * kNsPerSec + uint64_t(ts.tv_nsec);
}

// ---- the request path (limit_req_module.cc) ----

// Defines $limit_req_status and the module's per-request slot that survives
// internal redirects.
bool add_variables(http::Variables&);
http::Next preaccess_handler(http::Request&);
http::Next postaccess_handler(http::Request&);
bool add_headers(http::Request&);

// The zone's shared memory is mapped: lay out or keep the table.
bool init_zone(ShmZone&, void* old_data);

}  // namespace sluice::limit_req
