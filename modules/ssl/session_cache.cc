#include "session_cache.h"

#include <openssl/rand.h>
#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "core/log.h"

namespace sluice::ssl {

namespace {

constexpr uint64_t kMagic = 0x736c7563'73736c31;  // "slucssl1"
constexpr uint32_t kNone = UINT32_MAX;

struct Slot {
    uint32_t next;  // in its hash chain
    uint32_t bucket;
    int64_t expires;  // wall-clock seconds; 0: empty
    uint8_t id_len;
    uint8_t id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    uint16_t der_len;
    uint8_t der[SessionCache::kMaxSessionBytes];
};

uint32_t hash_id(const unsigned char* id, unsigned len, uint64_t seed) {
    uint64_t h = seed ^ 0xcbf29ce484222325ull;  // FNV-1a, seeded per zone
    for (unsigned i = 0; i < len; ++i) h = (h ^ id[i]) * 0x100000001b3ull;
    return uint32_t(h ^ (h >> 32));
}

int ex_index() {
    static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

SessionCache* cache_of(SSL_CTX* ctx) { return static_cast<SessionCache*>(SSL_CTX_get_ex_data(ctx, ex_index())); }

}  // namespace

struct SessionCache::Header {
    uint64_t magic;
    uint64_t seed;
    uint32_t slots;
    uint32_t buckets;
    uint32_t ring_next;  // the slot the next session takes
    pthread_mutex_t lock;
    // then: uint32_t bucket_heads[buckets]; Slot slots[slots];
    uint32_t* heads() { return reinterpret_cast<uint32_t*>(this + 1); }
    Slot* slot_array() {
        auto addr = reinterpret_cast<uintptr_t>(heads() + buckets);
        addr = (addr + alignof(Slot) - 1) / alignof(Slot) * alignof(Slot);
        return reinterpret_cast<Slot*>(addr);
    }
    void clear() {
        for (uint32_t i = 0; i < buckets; ++i) heads()[i] = kNone;
        Slot* s = slot_array();
        for (uint32_t i = 0; i < slots; ++i) s[i].expires = 0;
        ring_next = 0;
    }
};

size_t SessionCache::min_zone_size() { return sizeof(Header) + alignof(Slot) + 8 * (sizeof(Slot) + sizeof(uint32_t)); }

SessionCache::Header* SessionCache::header() const {
    return zone_ && zone_->addr ? static_cast<Header*>(zone_->addr) : nullptr;
}

bool SessionCache::init_zone(ShmZone& zone, void* old_data) {
    auto* h = static_cast<Header*>(zone.addr);
    if (old_data && h->magic == kMagic) return true;  // the same zone after a reload keeps its sessions
    size_t per_slot = sizeof(Slot) + sizeof(uint32_t);
    size_t room = zone.size - sizeof(Header) - alignof(Slot);
    h->slots = uint32_t(std::min<size_t>(room / per_slot, UINT32_MAX - 1));
    h->buckets = h->slots;
    if (h->slots == 0) return false;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&h->seed), sizeof h->seed) != 1) return false;
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0) return false;
    bool ok = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) == 0 &&
              pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0 && pthread_mutex_init(&h->lock, &attr) == 0;
    pthread_mutexattr_destroy(&attr);
    if (!ok) return false;
    h->clear();
    h->magic = kMagic;
    return true;
}

namespace {

// Held for a few list operations; a dead holder's half-done change empties the cache.
class ZoneLock {
public:
    explicit ZoneLock(pthread_mutex_t& m, auto&& on_owner_died) : m_(m) {
        int rc = pthread_mutex_lock(&m_);
        if (rc == EOWNERDEAD) {
            on_owner_died();
            pthread_mutex_consistent(&m_);
            rc = 0;
        }
        locked_ = rc == 0;
    }
    ~ZoneLock() {
        if (locked_) pthread_mutex_unlock(&m_);
    }
    bool locked() const { return locked_; }

private:
    pthread_mutex_t& m_;
    bool locked_ = false;
};

void unlink_slot(uint32_t* heads, Slot* slots, uint32_t index) {
    Slot& s = slots[index];
    for (uint32_t* link = &heads[s.bucket]; *link != kNone; link = &slots[*link].next) {
        if (*link == index) {
            *link = s.next;
            break;
        }
    }
    s.expires = 0;
}

uint32_t find_slot(uint32_t* heads, Slot* slots, uint32_t bucket, const unsigned char* id, unsigned len) {
    for (uint32_t i = heads[bucket]; i != kNone; i = slots[i].next)
        if (slots[i].id_len == len && memcmp(slots[i].id, id, len) == 0) return i;
    return kNone;
}

}  // namespace

void SessionCache::add(const unsigned char* id, unsigned id_len, const unsigned char* der, size_t der_len,
                       int64_t expires) {
    Header* h = header();
    if (!h || id_len > SSL_MAX_SSL_SESSION_ID_LENGTH || der_len > kMaxSessionBytes) return;
    ZoneLock lock(h->lock, [&] { h->clear(); });
    if (!lock.locked()) return;
    uint32_t* heads = h->heads();
    Slot* slots = h->slot_array();
    uint32_t bucket = hash_id(id, id_len, h->seed) % h->buckets;
    uint32_t existing = find_slot(heads, slots, bucket, id, id_len);
    if (existing != kNone) unlink_slot(heads, slots, existing);
    uint32_t index = h->ring_next;
    h->ring_next = (index + 1) % h->slots;
    if (slots[index].expires != 0) unlink_slot(heads, slots, index);  // the oldest goes
    Slot& s = slots[index];
    s.bucket = bucket;
    s.expires = expires;
    s.id_len = uint8_t(id_len);
    memcpy(s.id, id, id_len);
    s.der_len = uint16_t(der_len);
    memcpy(s.der, der, der_len);
    s.next = heads[bucket];
    heads[bucket] = index;
}

size_t SessionCache::find(const unsigned char* id, unsigned id_len, unsigned char* out, int64_t now) {
    Header* h = header();
    if (!h || id_len > SSL_MAX_SSL_SESSION_ID_LENGTH) return 0;
    ZoneLock lock(h->lock, [&] { h->clear(); });
    if (!lock.locked()) return 0;
    uint32_t* heads = h->heads();
    Slot* slots = h->slot_array();
    uint32_t index = find_slot(heads, slots, hash_id(id, id_len, h->seed) % h->buckets, id, id_len);
    if (index == kNone) return 0;
    Slot& s = slots[index];
    if (s.expires <= now) {
        unlink_slot(heads, slots, index);
        return 0;
    }
    memcpy(out, s.der, s.der_len);
    return s.der_len;
}

void SessionCache::remove(const unsigned char* id, unsigned id_len) {
    Header* h = header();
    if (!h || id_len > SSL_MAX_SSL_SESSION_ID_LENGTH) return;
    ZoneLock lock(h->lock, [&] { h->clear(); });
    if (!lock.locked()) return;
    uint32_t* heads = h->heads();
    Slot* slots = h->slot_array();
    uint32_t index = find_slot(heads, slots, hash_id(id, id_len, h->seed) % h->buckets, id, id_len);
    if (index != kNone) unlink_slot(heads, slots, index);
}

// ---- OpenSSL callbacks ----

namespace {

int on_new_session(SSL* ssl, SSL_SESSION* session) {
    SessionCache* cache = cache_of(SSL_get_SSL_CTX(ssl));
    if (!cache) return 0;
    int len = i2d_SSL_SESSION(session, nullptr);
    if (len <= 0 || size_t(len) > SessionCache::kMaxSessionBytes) return 0;
    unsigned char der[SessionCache::kMaxSessionBytes];
    unsigned char* p = der;
    i2d_SSL_SESSION(session, &p);
    unsigned id_len = 0;
    const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
    int64_t expires = int64_t(SSL_SESSION_get_time(session)) + SSL_SESSION_get_timeout(session);
    cache->add(id, id_len, der, size_t(len), expires);
    return 0;  // OpenSSL keeps its reference
}

SSL_SESSION* on_get_session(SSL* ssl, const unsigned char* id, int id_len, int* copy) {
    *copy = 0;
    SessionCache* cache = cache_of(SSL_get_SSL_CTX(ssl));
    if (!cache || id_len <= 0) return nullptr;
    unsigned char der[SessionCache::kMaxSessionBytes];
    size_t len = cache->find(id, unsigned(id_len), der, int64_t(time(nullptr)));
    if (len == 0) return nullptr;
    const unsigned char* p = der;
    return d2i_SSL_SESSION(nullptr, &p, long(len));
}

void on_remove_session(SSL_CTX* ctx, SSL_SESSION* session) {
    SessionCache* cache = cache_of(ctx);
    if (!cache) return;
    unsigned id_len = 0;
    const unsigned char* id = SSL_SESSION_get_id(session, &id_len);
    cache->remove(id, id_len);
}

}  // namespace

void SessionCache::attach(SSL_CTX* ctx) {
    SSL_CTX_set_ex_data(ctx, ex_index(), this);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_sess_set_get_cb(ctx, on_get_session);
    SSL_CTX_sess_set_remove_cb(ctx, on_remove_session);
}

}  // namespace sluice::ssl
