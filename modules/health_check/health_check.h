// What the health_check module's parts share: `match` blocks and their
// evaluation (health_check_match.cc), the `health_check` of an upstream{}
// (directives.cc), and the prober that runs the checks in one worker and
// writes the results into the upstream's shared zone (health_check_module.cc).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "core/regex.h"
#include "http/http_parse.h"
#include "http/http_upstream.h"

namespace sluice {
extern Module health_check_module;
}

namespace sluice::http::health_check {

// A probe reads at most this much of a reply's body for `body` conditions.
constexpr size_t kMaxProbeBody = 64 * 1024;
// A probe's timeout is the interval, but never more than this.
constexpr uint64_t kMaxProbeTimeoutMs = 5000;

// ---- match NAME { ... } ----

struct StatusRange {
    int low = 0, high = 0;  // inclusive
};

// `status 200 204;`, `status ! 500;`, `status 200-399 418;`
struct StatusCondition {
    bool negate = false;
    std::vector<StatusRange> ranges;
};

// `header Name = value;`, `header Name != value;`, `header Name ~ re;`,
// `header Name !~ re;` (and `~*`, `!~*`), `header Name;`, `header ! Name;`
struct HeaderCondition {
    enum class Op : uint8_t { Present, Absent, Equal, NotEqual, Matches, NotMatches };
    Op op = Op::Present;
    std::string name;
    std::string value;
    std::unique_ptr<Regex> regex;
};

// `body ~ "re";`, `body !~ "re";` (and `~*`, `!~*`)
struct BodyCondition {
    bool negate = false;
    std::unique_ptr<Regex> regex;
};

struct Match {
    std::string name;
    std::string file;
    int line = 0;
    std::vector<StatusCondition> status;
    std::vector<HeaderCondition> headers;
    std::vector<BodyCondition> body;

    bool needs_body() const { return !body.empty(); }
};

// Where a check failed; also names the stage in log messages.
enum class CheckStage : uint8_t { Passed, Connect, Send, ReadHead, ReadBody, Status, Headers, Body, Timeout };

// "connecting to upstream", "checking status code", ...
const char* stage_text(CheckStage);

// Evaluates a reply: every condition of `match` must hold; without a match
// the status must be 2xx or 3xx. `body` is what was read of the body (at
// most kMaxProbeBody bytes).
CheckStage evaluate(const Match* match, const ResponseHead& head, std::string_view body);

// Reads the children of a `match` block into `m`; false with the error set
// (file:line of the offending line).
bool parse_match_block(ConfContext& cx, const conf::Statement& block, Match& m);

// ---- health_check [parameters] (in upstream{}) ----

class Prober;

struct HealthCheck {
    Upstream* upstream = nullptr;
    uint64_t interval_ms = 5000;
    uint64_t jitter_ms = 0;
    uint32_t fails = 1;
    uint32_t passes = 1;
    std::string uri = "/";
    uint16_t port = 0;  // 0: the server's own port
    std::string match_name;
    const Match* match = nullptr;  // resolved at the end of http{}
    bool mandatory = false;        // peers start unusable until their first check passes
    std::string file;
    int line = 0;

    // The upstream core's zone init, which ours runs first.
    bool (*upstream_zone_init)(ShmZone&, void* old_data) = nullptr;

    // Per worker: created in init_worker, freed in exit_worker.
    std::unique_ptr<Prober> prober;

    uint64_t timeout_ms() const { return std::min(interval_ms, kMaxProbeTimeoutMs); }
    // A lease whose heartbeat is older than this is taken over.
    uint64_t lease_stale_ms() const { return 3 * (interval_ms + jitter_ms); }

    HealthCheck();
    ~HealthCheck();
};

struct HealthMainConf : ModuleConf {
    std::vector<std::unique_ptr<Match>> matches;
    std::vector<std::unique_ptr<HealthCheck>> checks;
};

// The HealthCheck of an upstream, or null (Upstream::health).
inline HealthCheck* health_of(const Upstream& u) { return static_cast<HealthCheck*>(u.health); }

// ---- shared state (health_check_module.cc) ----

// A slot that no check has written yet (neither a pass nor a failure).
bool never_checked(const PeerShared&);
// After the zone is laid out: with `mandatory`, peers not checked yet start
// unusable. A reload that keeps the zone keeps the results of peers
// already checked (nginx Plus's `persistent`).
void apply_initial_state(const HealthCheck&, Upstream&);
// After the zone is laid out for an upstream without health_check: clears
// what an earlier configuration's checks left there.
void clear_health_state(Upstream&);

// The prober lease: true if this process holds it (or just took it over)
// at monotonic time `now_ms`.
bool hold_lease(UpstreamShared&, int32_t self, int64_t now_ms, uint64_t stale_ms);
void release_lease(UpstreamShared&, int32_t self);

// Applies one check's outcome to a peer's slot (the lease holder is the only
// writer). Returns the state change: +1 became healthy, -1 became unhealthy, 0 none.
int record_check(const HealthCheck&, PeerShared&, bool passed);

// ---- the worker's hooks (health_check_module.cc) ----

// Starts a prober for each upstream with health_check.
bool init_worker(Cycle&);
// Stops them and gives up their leases so another worker takes over at once.
void exit_worker(Cycle&);

}  // namespace sluice::http::health_check
