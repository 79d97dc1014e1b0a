// gzip: nginx's ngx_http_gzip_module. A header filter decides per response
// (on, type, length, status, client, proxied) and a body filter compresses
// the body as it streams, with zlib's gzip wrapper.
//
// Filter order (configure's bundled module list): gzip's header filter runs
// after add_header's, so a Vary or Cache-Control it adds is seen. The proxy
// stores cache entries from the upstream's bytes before send_body(), so the
// cache always holds the uncompressed response; gzip applies at output, on a
// miss as on a hit.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/module.h"
#include "core/regex.h"

namespace sluice {
extern Module gzip_module;
}

namespace sluice::http {

class Request;
struct BodyChain;

// gzip_proxied flags, as nginx's NGX_HTTP_GZIP_PROXIED_*.
enum GzipProxied : unsigned {
    kProxiedOff = 1u << 0,
    kProxiedExpired = 1u << 1,
    kProxiedNoCache = 1u << 2,
    kProxiedNoStore = 1u << 3,
    kProxiedPrivate = 1u << 4,
    kProxiedNoLastModified = 1u << 5,
    kProxiedNoEtag = 1u << 6,
    kProxiedAuth = 1u << 7,
    kProxiedAny = 1u << 8,
};

struct GzipDisable {
    std::vector<std::unique_ptr<Regex>> user_agents;  // caseless, as nginx compiles them
    bool msie6 = false;
};

struct GzipLocConf : ModuleConf {
    std::optional<bool> enable_set;
    bool enable = false;  // merged copy, read first on every response
    // gzip_types: lowercase MIME types (text/html always), or "*".
    std::optional<std::vector<std::string>> types;
    bool any_type = false;
    std::optional<uint64_t> min_length;
    std::optional<int64_t> comp_level;
    std::optional<uint64_t> buffers_num;
    std::optional<uint64_t> buffers_size;
    std::optional<bool> vary;
    std::optional<unsigned> proxied;
    std::shared_ptr<GzipDisable> disable;  // shared by the levels that inherit it
    std::optional<int> http_version;       // 10 or 11
};

// The main configuration: whether any level says `gzip on` (else the filters
// are not installed at all and responses pay nothing for the module).
struct GzipMainConf : ModuleConf {
    bool used = false;
};

bool gzip_header_filter(Request& r);
bool gzip_body_filter(Request& r, BodyChain& chain);
// $gzip_ratio
bool gzip_ratio_variable(Request& r, std::string_view& value, uintptr_t);

// nginx's ngx_http_gzip_filter window and hash sizes for a body of known
// length: smaller bodies get a smaller window and memory level.
void gzip_memory_levels(int64_t content_length, int& wbits, int& memlevel);

}  // namespace sluice::http
