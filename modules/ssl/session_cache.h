// ssl_session_cache shared:NAME:SIZE — TLS sessions in a shared-memory zone,
// so a client resumes on whichever worker accepts its next connection.
//
// The zone holds fixed-size slots used as a ring (the oldest session is the
// one replaced when the ring comes round) and a hash index of chains through
// them. Everything is offsets and fixed arrays, changed under a robust
// process-shared mutex: a worker killed while holding it leaves the index in
// doubt, so the next holder empties the cache (sessions are only a shortcut).
#pragma once
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/cycle.h"

namespace sluice::ssl {

class SessionCache {
public:
    // A session DER larger than this is not cached: fixed slots keep the zone
    // simple and bounded (one with a client certificate of a few hundred bytes fits).
    static constexpr size_t kMaxSessionBytes = 1536;

    explicit SessionCache(std::string name) : name_(std::move(name)) {}
    const std::string& name() const { return name_; }
    // The zone is mapped in the master; init formats it or keeps the old one.
    static bool init_zone(ShmZone& zone, void* old_data);
    static size_t min_zone_size();
    void set_zone(ShmZone* zone) { zone_ = zone; }

    // SSL_CTX_sess_set_*_cb callbacks go through these.
    void add(const unsigned char* id, unsigned id_len, const unsigned char* der, size_t der_len, int64_t expires);
    // The session's DER into `out` (up to kMaxSessionBytes); 0 when absent or expired.
    size_t find(const unsigned char* id, unsigned id_len, unsigned char* out, int64_t now);
    void remove(const unsigned char* id, unsigned id_len);

    // Installs the callbacks on a server context that uses this cache.
    void attach(SSL_CTX* ctx);

private:
    struct Header;
    Header* header() const;
    std::string name_;
    ShmZone* zone_ = nullptr;
};

}  // namespace sluice::ssl
