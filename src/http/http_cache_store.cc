// The response cache's storage engine (see http_cache_store.h for the
// layout, the locking and the contract).
#include "http/http_cache_store.h"

#include <errno.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace sluice::http_cache {

namespace testing_hooks {
void (*locked_step)(int step) = nullptr;
}

namespace {

constexpr uint64_t kZoneMagic = 0x3130'6568'6361'6373ull;  // "scache01": a layout change bumps it
constexpr uint64_t kTombstone = UINT64_MAX;
constexpr uint64_t kUnknownSize = UINT64_MAX;
// A fill of unknown length starts with this much body room and doubles.
constexpr uint64_t kInitialBodyReserve = 16 * 1024;

template <class T>
std::atomic_ref<T> at(T& x) {
    return std::atomic_ref<T>(x);
}
template <class T>
T load(const T& x, std::memory_order o = std::memory_order_acquire) {
    return std::atomic_ref<T>(const_cast<T&>(x)).load(o);
}

uint64_t make_word(uint64_t generation, State s) {
    return generation << 8 | uint64_t(s);
}
State state_of(uint64_t word) {
    return State(word & 0xff);
}
uint64_t generation_of(uint64_t word) {
    return word >> 8;
}

size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

uint64_t index_capacity_for(uint32_t entries) {
    uint64_t cap = 8;
    while (cap < 2 * uint64_t(entries)) cap *= 2;
    return cap;
}

struct Offsets {
    uint64_t index, entries, next, data, end;
};

Offsets offsets_for(const Geometry& g) {
    Offsets o;
    o.index = align_up(sizeof(ZoneHeader), 64);
    o.entries = align_up(o.index + index_capacity_for(g.entries) * sizeof(uint64_t), 64);
    o.next = align_up(o.entries + uint64_t(g.entries) * sizeof(Entry), 64);
    o.data = align_up(o.next + g.blocks * sizeof(uint32_t), 64);
    o.end = o.data + g.blocks * g.block_size;
    return o;
}

uint64_t index_word(uint32_t entry, uint64_t hash) {
    return (uint64_t(entry) + 1) << 32 | (hash >> 32);
}
uint32_t index_entry(uint64_t word) {
    return uint32_t(word >> 32) - 1;
}
bool index_live(uint64_t word) {
    return word != 0 && word != kTombstone;
}

bool process_alive(int32_t pid) {
    return pid > 0 && !(kill(pid_t(pid), 0) == -1 && errno == ESRCH);
}

void step(int where) {
    if (testing_hooks::locked_step) testing_hooks::locked_step(where);
}

uint64_t sip_rotl(uint64_t x, int b) {
    return (x << b) | (x >> (64 - b));
}

void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) {
    v0 += v1;
    v1 = sip_rotl(v1, 13);
    v1 ^= v0;
    v0 = sip_rotl(v0, 32);
    v2 += v3;
    v3 = sip_rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = sip_rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = sip_rotl(v1, 17);
    v1 ^= v2;
    v2 = sip_rotl(v2, 32);
}

bool init_robust_mutex(pthread_mutex_t& m) {
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0) return false;
    bool ok = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED) == 0 &&
              pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST) == 0 && pthread_mutex_init(&m, &attr) == 0;
    pthread_mutexattr_destroy(&attr);
    return ok;
}

}  // namespace

// ---- zone geometry and format ----

size_t zone_size_for(const Geometry& g) {
    return offsets_for(g).end;
}

Geometry geometry_for(size_t keys_bytes, size_t max_size, size_t block_size) {
    Geometry g;
    g.block_size = uint32_t(std::clamp<size_t>(block_size, 64, 1 << 20));
    // An entry costs its record and two index words (the index is kept at most half full).
    uint64_t entries = keys_bytes / (sizeof(Entry) + 2 * sizeof(uint64_t));
    g.entries = uint32_t(std::clamp<uint64_t>(entries, 1, UINT32_MAX / 4));
    g.blocks = std::clamp<uint64_t>(max_size / g.block_size, 1, UINT32_MAX - 1);
    return g;
}

bool format(void* base, size_t size, const Geometry& g) {
    if (g.entries == 0 || g.blocks == 0 || g.blocks >= kNone || g.block_size == 0) return false;
    const Offsets o = offsets_for(g);
    if (size != o.end) return false;
    // The metadata only: data blocks are payload, never read before written,
    // and a fresh mapping is zero anyway; touching them would make the whole
    // max_size resident at start-up.
    memset(base, 0, o.data);
    auto* h = static_cast<ZoneHeader*>(base);
    if (getrandom(h->secret, sizeof h->secret, 0) != ssize_t(sizeof h->secret)) return false;
    if (!init_robust_mutex(h->lock)) return false;
    h->zone_size = size;
    h->entry_capacity = g.entries;
    h->block_size = g.block_size;
    h->index_capacity = index_capacity_for(g.entries);
    h->block_count = g.blocks;
    h->index_offset = o.index;
    h->entries_offset = o.entries;
    h->next_offset = o.next;
    h->data_offset = o.data;
    auto* entries = reinterpret_cast<Entry*>(static_cast<char*>(base) + o.entries);
    for (uint32_t i = 0; i < g.entries; ++i) {
        entries[i].lru_prev = kNone;
        entries[i].lru_next = i + 1 < g.entries ? i + 1 : kNone;
        entries[i].first_block = entries[i].last_block = kNone;
    }
    auto* next = reinterpret_cast<uint32_t*>(static_cast<char*>(base) + o.next);
    for (uint64_t b = 0; b < g.blocks; ++b) next[b] = b + 1 < g.blocks ? uint32_t(b + 1) : kNone;
    h->free_entry_head = 0;
    h->lru_head = h->lru_tail = h->zombie_head = kNone;
    h->free_block_head = 0;
    h->free_blocks = g.blocks;
    at(h->magic).store(kZoneMagic, std::memory_order_release);
    return true;
}

bool formatted(const void* base, size_t size) {
    const auto* h = static_cast<const ZoneHeader*>(base);
    return load(h->magic) == kZoneMagic && h->zone_size == size;
}

uint64_t hash_key(const uint64_t secret[2], std::string_view key) {
    uint64_t v0 = secret[0] ^ 0x736f6d6570736575ull, v1 = secret[1] ^ 0x646f72616e646f6dull;
    uint64_t v2 = secret[0] ^ 0x6c7967656e657261ull, v3 = secret[1] ^ 0x7465646279746573ull;
    const size_t n = key.size();
    const char* p = key.data();
    const size_t full = n & ~size_t(7);
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8);  // little-endian hosts; the hash never leaves the machine
        v3 ^= m;
        sip_round(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = uint64_t(n) << 56;
    for (size_t i = full; i < n; ++i) b |= uint64_t(uint8_t(p[i])) << (8 * (i - full));
    v3 ^= b;
    sip_round(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 3; ++i) sip_round(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

// ---- attaching ----

bool Store::attach(void* base, size_t size, const Limits& limits) {
    detach();
    if (!formatted(base, size)) return false;
    auto* h = static_cast<ZoneHeader*>(base);
    char* p = static_cast<char*>(base);
    header_ = h;
    index_ = reinterpret_cast<uint64_t*>(p + h->index_offset);
    entries_ = reinterpret_cast<Entry*>(p + h->entries_offset);
    next_ = reinterpret_cast<uint32_t*>(p + h->next_offset);
    data_ = p + h->data_offset;
    limits_ = limits;
    pid_ = int32_t(getpid());
    for (int attempt = 0; attempt < 2 && client_ == kNone; ++attempt) {
        for (uint32_t c = 0; c < kMaxClients; ++c) {
            int32_t expected = 0;
            if (at(h->client_pid[c]).compare_exchange_strong(expected, pid_, std::memory_order_acq_rel)) {
                client_ = c;
                break;
            }
        }
        if (client_ == kNone && lock()) {  // every slot taken: some may be dead workers'
            reap_dead_clients();
            unlock();
        }
    }
    if (client_ == kNone) {
        header_ = nullptr;
        return false;
    }
    pin_counts_.assign(h->entry_capacity, 0);
    return true;
}

void Store::detach() {
    if (!header_) return;
    // Hits and Fills must not outlive the Store; drop any pin left anyway.
    for (uint32_t i = 0; i < pin_counts_.size(); ++i) {
        if (pin_counts_[i] == 0) continue;
        pin_counts_[i] = 1;
        unpin(i);
    }
    at(header_->client_pid[client_]).store(0, std::memory_order_release);
    client_ = kNone;
    header_ = nullptr;
    pin_counts_.clear();
}

// ---- the lock ----

bool Store::lock() {
    int rc = pthread_mutex_lock(&header_->lock);
    if (rc == EOWNERDEAD) {
        // The holder died mid-operation: everything derived is rebuilt
        // from the entry records before anyone else gets the lock.
        rebuild();
        at(header_->lock_repairs).fetch_add(1, std::memory_order_relaxed);
        pthread_mutex_consistent(&header_->lock);
        return true;
    }
    return rc == 0;
}

void Store::unlock() {
    pthread_mutex_unlock(&header_->lock);
}

// ---- lock-free reads ----

Hit Store::lookup(std::string_view key, int64_t now_ms) {
    Hit hit;
    const uint64_t hash = hash_key(header_->secret, key);
    const uint64_t mask = header_->index_capacity - 1;
    uint64_t pos = hash & mask;
    int rereads = 2;  // a slot swapped to a new version under us is read again
    for (uint64_t probes = 0; probes <= mask; ++probes, pos = (pos + 1) & mask) {
        uint64_t word = load(index_[pos]);
        if (word == 0) break;
        if (!index_live(word) || uint32_t(word) != uint32_t(hash >> 32)) continue;
        uint32_t i = index_entry(word);
        if (i >= header_->entry_capacity) continue;
        if (!try_pin(i, hash, key)) {
            // A replacement stores the new version in the old one's slot:
            // looking again beats a miss that sends the request upstream.
            if (load(index_[pos]) != word && rereads-- > 0) pos = (pos - 1) & mask, --probes;
            continue;
        }
        touch(i, now_ms);
        hit.store_ = this;
        hit.entry_ = i;
        at(header_->hits).fetch_add(1, std::memory_order_relaxed);
        return hit;
    }
    at(header_->misses).fetch_add(1, std::memory_order_relaxed);
    return hit;
}

bool Store::try_pin(uint32_t i, uint64_t hash, std::string_view key) {
    Entry& e = entry(i);
    const uint64_t before = load(e.state_word);
    if (state_of(before) != State::Ready || load(e.hash, std::memory_order_relaxed) != hash) return false;
    pin_bit(i);
    // Paired with retire(): DEAD is stored before the pin mask is read.
    if (load(e.state_word, std::memory_order_seq_cst) != before || !key_equals(i, key)) {
        unpin(i);
        return false;
    }
    return true;
}

void Store::pin_bit(uint32_t i) {
    if (pin_counts_[i]++ != 0) return;
    at(entry(i).pin_mask[client_ / 64]).fetch_or(uint64_t(1) << (client_ % 64), std::memory_order_seq_cst);
}

void Store::unpin(uint32_t i) {
    if (--pin_counts_[i] != 0) return;
    at(entry(i).pin_mask[client_ / 64]).fetch_and(~(uint64_t(1) << (client_ % 64)), std::memory_order_seq_cst);
}

void Store::touch(uint32_t i, int64_t now_ms) {
    Entry& e = entry(i);
    // Loads first: a hot entry's cache line is not written on every hit.
    if (load(e.referenced, std::memory_order_relaxed) == 0) at(e.referenced).store(1, std::memory_order_relaxed);
    if (load(e.last_use_ms, std::memory_order_relaxed) < now_ms)
        at(e.last_use_ms).store(now_ms, std::memory_order_relaxed);
}

bool Store::key_equals(uint32_t i, std::string_view key) const {
    return entry(i).key_size == key.size() && key_starts_with(i, key);
}

bool Store::key_starts_with(uint32_t i, std::string_view prefix) const {
    const Entry& e = entry(i);
    if (e.key_size < prefix.size()) return false;
    const uint32_t bs = header_->block_size;
    uint32_t b = e.first_block;
    for (size_t done = 0; done < prefix.size(); b = next_[b]) {
        size_t n = std::min<size_t>(bs, prefix.size() - done);
        if (memcmp(block_data(b), prefix.data() + done, n) != 0) return false;
        done += n;
    }
    return true;
}

void Store::copy_out(uint32_t i, uint64_t offset, char* dst, uint64_t n) const {
    const Entry& e = entry(i);
    const uint32_t bs = header_->block_size;
    uint32_t b = e.first_block;
    for (uint64_t skip = offset / bs; skip; --skip) b = next_[b];
    uint64_t in = offset % bs;
    while (n) {
        uint64_t chunk = std::min<uint64_t>(bs - in, n);
        memcpy(dst, block_data(b) + in, chunk);
        dst += chunk;
        n -= chunk;
        in = 0;
        if (n) b = next_[b];
    }
}

std::string Store::entry_key(uint32_t i) const {
    std::string key(entry(i).key_size, '\0');
    copy_out(i, 0, key.data(), key.size());
    return key;
}

// ---- Hit ----

Hit& Hit::operator=(Hit&& other) noexcept {
    if (this != &other) {
        release();
        store_ = std::exchange(other.store_, nullptr);
        entry_ = std::exchange(other.entry_, kNone);
    }
    return *this;
}

void Hit::release() {
    if (!store_) return;
    store_->unpin(entry_);
    store_ = nullptr;
    entry_ = kNone;
}

const EntryMeta& Hit::meta() const {
    return store_->entry(entry_).meta;
}
uint64_t Hit::head_size() const {
    return store_->entry(entry_).head_size;
}
uint64_t Hit::body_size() const {
    return store_->entry(entry_).body_size;
}

void Hit::visit(uint64_t offset, uint64_t length, bool head, SpanFn fn, void* ctx) const {
    const Entry& e = store_->entry(entry_);
    const uint64_t part = head ? e.head_size : e.body_size;
    if (offset >= part) return;
    length = std::min(length, part - offset);
    const uint32_t bs = store_->header_->block_size;
    uint64_t pos = uint64_t(e.key_size) + (head ? 0 : e.head_size) + offset;
    uint32_t b = e.first_block;
    for (uint64_t skip = pos / bs; skip; --skip) b = store_->next_[b];
    uint64_t in = pos % bs;
    while (length) {
        uint64_t chunk = std::min<uint64_t>(bs - in, length);
        fn(ctx, store_->block_data(b) + in, size_t(chunk));
        length -= chunk;
        in = 0;
        if (length) b = store_->next_[b];
    }
}

std::string Hit::head() const {
    std::string out;
    head_spans([&](const char* p, size_t n) { out.append(p, n); });
    return out;
}

std::string Hit::body() const {
    std::string out;
    body_spans(0, body_size(), [&](const char* p, size_t n) { out.append(p, n); });
    return out;
}

// ---- blocks (under the lock) ----

bool Store::take_blocks(uint64_t n, uint32_t& first, uint32_t& last) {
    if (n == 0 || n > header_->block_count || !make_room_blocks(n)) return false;
    first = header_->free_block_head;
    last = first;
    for (uint64_t k = 1; k < n; ++k) last = next_[last];
    step(1);
    header_->free_block_head = next_[last];
    next_[last] = kNone;
    at(header_->free_blocks).store(header_->free_blocks - n, std::memory_order_relaxed);
    return true;
}

// A whole chain back on the free list: O(1), its links are kept.
void Store::give_blocks(uint32_t first, uint64_t n) {
    if (n == 0) return;
    uint32_t last = first;
    for (uint64_t k = 1; k < n; ++k) last = next_[last];
    next_[last] = header_->free_block_head;
    header_->free_block_head = first;
    at(header_->free_blocks).store(header_->free_blocks + n, std::memory_order_relaxed);
}

bool Store::make_room_blocks(uint64_t n) {
    if (header_->free_blocks >= n) return true;
    reclaim_zombies();
    while (header_->free_blocks < n) {
        if (!evict_one()) return false;
    }
    return true;
}

// ---- entries (under the lock) ----

uint32_t Store::take_entry() {
    if (header_->free_entry_head == kNone) reclaim_zombies();
    while (header_->free_entry_head == kNone) {
        if (!evict_one()) return kNone;
        // An evicted entry still pinned becomes a zombie, not a free record.
    }
    uint32_t i = header_->free_entry_head;
    header_->free_entry_head = entry(i).lru_next;
    return i;
}

// CLOCK: the tail is evicted unless it was used since it last came round.
bool Store::evict_one() {
    for (uint64_t steps = 0; header_->lru_tail != kNone && steps <= 2 * uint64_t(header_->entry_capacity); ++steps) {
        uint32_t t = header_->lru_tail;
        if (at(entry(t).referenced).exchange(0, std::memory_order_relaxed) != 0) {
            lru_unlink(t);
            lru_push_head(t);
            continue;
        }
        retire(t);
        at(header_->evictions).fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    return false;
}

bool Store::pinned(const Entry& e) const {
    for (const uint64_t& word : e.pin_mask)
        if (load(word, std::memory_order_seq_cst) != 0) return true;
    return false;
}

// Takes a READY (or FILLING) entry out of use: its blocks are freed now, or
// when the last reader unpins (a zombie, freed by reclaim_zombies()).
void Store::retire(uint32_t i) {
    Entry& e = entry(i);
    const uint64_t word = e.state_word;
    if (state_of(word) == State::Ready) {
        index_remove(i);
        lru_unlink(i);
        at(header_->entries).fetch_sub(1, std::memory_order_relaxed);
    }
    at(e.state_word).store(make_word(generation_of(word), State::Dead), std::memory_order_seq_cst);
    if (!pinned(e)) {
        release_entry(i);
        return;
    }
    e.lru_next = header_->zombie_head;
    header_->zombie_head = i;
}

void Store::release_entry(uint32_t i) {
    Entry& e = entry(i);
    const uint64_t n = e.block_count;
    e.block_count = 0;  // first: a crash from here on finds the blocks unowned, hence free
    give_blocks(e.first_block, n);
    e.first_block = e.last_block = kNone;
    at(e.state_word).store(make_word(generation_of(e.state_word) + 1, State::Free), std::memory_order_release);
    e.lru_prev = kNone;
    e.lru_next = header_->free_entry_head;
    header_->free_entry_head = i;
}

void Store::reclaim_zombies() {
    uint32_t* link = &header_->zombie_head;
    while (*link != kNone) {
        uint32_t i = *link;
        if (pinned(entry(i))) {
            link = &entry(i).lru_next;
            continue;
        }
        *link = entry(i).lru_next;
        release_entry(i);
    }
}

void Store::lru_push_head(uint32_t i) {
    Entry& e = entry(i);
    e.lru_prev = kNone;
    e.lru_next = header_->lru_head;
    if (header_->lru_head != kNone) entry(header_->lru_head).lru_prev = i;
    header_->lru_head = i;
    if (header_->lru_tail == kNone) header_->lru_tail = i;
}

void Store::lru_unlink(uint32_t i) {
    Entry& e = entry(i);
    if (e.lru_prev != kNone)
        entry(e.lru_prev).lru_next = e.lru_next;
    else
        header_->lru_head = e.lru_next;
    if (e.lru_next != kNone)
        entry(e.lru_next).lru_prev = e.lru_prev;
    else
        header_->lru_tail = e.lru_prev;
    e.lru_prev = e.lru_next = kNone;
}

// ---- dead clients (under the lock) ----

void Store::reap_dead_clients() {
    for (uint32_t c = 0; c < kMaxClients; ++c) {
        int32_t pid = load(header_->client_pid[c]);
        if (pid != 0 && !process_alive(pid)) drop_client(c);
    }
}

void Store::drop_client(uint32_t c) {
    const uint64_t bit = uint64_t(1) << (c % 64);
    const int32_t pid = load(header_->client_pid[c]);
    for (uint32_t i = 0; i < header_->entry_capacity; ++i) {
        Entry& e = entry(i);
        at(e.pin_mask[c / 64]).fetch_and(~bit, std::memory_order_seq_cst);
        if (state_of(e.state_word) == State::Filling && e.filler_client == c && e.filler_pid == pid) retire(i);
    }
    at(header_->client_pid[c]).store(0, std::memory_order_release);
}

// ---- the index (writes under the lock; lookups read it lock-free) ----

void Store::index_insert(uint32_t i) {
    const uint64_t hash = entry(i).hash, mask = header_->index_capacity - 1;
    uint64_t pos = hash & mask;
    while (index_live(index_[pos])) pos = (pos + 1) & mask;
    if (index_[pos] == 0) ++header_->index_used;
    at(index_[pos]).store(index_word(i, hash), std::memory_order_release);
    // Tombstones lengthen probes; the index is at most half full of live entries.
    if (header_->index_used > header_->index_capacity * 3 / 4) index_rebuild();
}

uint64_t* Store::index_find_slot(uint32_t i) {
    const uint64_t hash = entry(i).hash, mask = header_->index_capacity - 1;
    const uint64_t want = index_word(i, hash);
    uint64_t pos = hash & mask;
    for (uint64_t probes = 0; probes <= mask && index_[pos] != 0; ++probes, pos = (pos + 1) & mask)
        if (index_[pos] == want) return &index_[pos];
    return nullptr;
}

void Store::index_remove(uint32_t i) {
    if (uint64_t* slot = index_find_slot(i)) at(*slot).store(kTombstone, std::memory_order_release);
}

uint32_t Store::index_find_key(uint64_t hash, std::string_view key) {
    const uint64_t mask = header_->index_capacity - 1;
    uint64_t pos = hash & mask;
    for (uint64_t probes = 0; probes <= mask && index_[pos] != 0; ++probes, pos = (pos + 1) & mask) {
        if (!index_live(index_[pos])) continue;
        uint32_t j = index_entry(index_[pos]);
        if (entry(j).hash == hash && key_equals(j, key)) return j;
    }
    return kNone;
}

uint32_t Store::index_find_entry_key(uint32_t i) {
    return index_find_key(entry(i).hash, entry_key(i));
}

// Readers probing meanwhile may miss an entry: a cache may miss.
void Store::index_rebuild() {
    for (uint64_t s = 0; s < header_->index_capacity; ++s) at(index_[s]).store(0, std::memory_order_relaxed);
    header_->index_used = 0;
    for (uint32_t i = 0; i < header_->entry_capacity; ++i) {
        if (state_of(entry(i).state_word) != State::Ready) continue;
        const uint64_t mask = header_->index_capacity - 1;
        uint64_t pos = entry(i).hash & mask;
        while (index_[pos] != 0) pos = (pos + 1) & mask;
        ++header_->index_used;
        at(index_[pos]).store(index_word(i, entry(i).hash), std::memory_order_release);
    }
}

// ---- filling ----

Fill Store::begin_fill(std::string_view key, std::string_view head, uint64_t expected_body, int64_t now_ms) {
    Fill fill;
    const bool known = expected_body != kUnknownSize;
    if (key.size() > kMaxKeySize || head.size() > limits_.max_object ||
        (known && expected_body > limits_.max_object - head.size())) {
        at(header_->store_refusals).fetch_add(1, std::memory_order_relaxed);
        return fill;
    }
    if (!lock()) return fill;
    uint32_t i = take_entry();
    if (i != kNone) {
        Entry& e = entry(i);
        at(e.hash).store(hash_key(header_->secret, key), std::memory_order_relaxed);
        e.key_size = uint32_t(key.size());
        e.head_size = uint32_t(head.size());
        e.body_size = 0;
        e.first_block = e.last_block = kNone;
        e.block_count = 0;
        at(e.last_use_ms).store(now_ms, std::memory_order_relaxed);
        at(e.referenced).store(0, std::memory_order_relaxed);
        e.lru_prev = e.lru_next = kNone;
        e.filler_pid = pid_;
        e.filler_client = client_;
        at(e.state_word).store(make_word(generation_of(e.state_word), State::Filling), std::memory_order_release);
    }
    unlock();
    if (i == kNone) {
        at(header_->store_refusals).fetch_add(1, std::memory_order_relaxed);
        return fill;
    }
    fill.store_ = this;
    fill.entry_ = i;
    fill.key_head_size_ = key.size() + head.size();
    uint64_t body_room = known ? expected_body : std::min(kInitialBodyReserve, limits_.max_object - head.size());
    if (!fill.reserve(fill.key_head_size_ + body_room) || !fill.write(key) || !fill.write(head)) {
        at(header_->store_refusals).fetch_add(1, std::memory_order_relaxed);
        return Fill();
    }
    return fill;
}

Fill& Fill::operator=(Fill&& other) noexcept {
    if (this != &other) {
        abandon();
        store_ = std::exchange(other.store_, nullptr);
        entry_ = std::exchange(other.entry_, kNone);
        written_ = std::exchange(other.written_, 0);
        capacity_ = std::exchange(other.capacity_, 0);
        cursor_block_ = std::exchange(other.cursor_block_, kNone);
        last_used_block_ = std::exchange(other.last_used_block_, kNone);
        key_head_size_ = std::exchange(other.key_head_size_, 0);
    }
    return *this;
}

// Makes room for `extra` more bytes: whole blocks, at least doubling what
// the fill has (few lock round trips), at most what max_object allows.
bool Fill::reserve(uint64_t extra) {
    if (written_ + extra <= capacity_) return true;
    Store& s = *store_;
    const uint64_t bs = s.header_->block_size;
    const uint64_t needed = (written_ + extra - capacity_ + bs - 1) / bs;
    const uint64_t have = capacity_ / bs;
    const uint64_t limit = s.limits_.max_object == UINT64_MAX ? UINT64_MAX : key_head_size_ + s.limits_.max_object;
    const uint64_t max_blocks = limit == UINT64_MAX ? UINT64_MAX : (limit + bs - 1) / bs;
    uint64_t want = std::max(needed, std::min(have, max_blocks > have ? max_blocks - have : 0));
    if (!s.lock()) return false;
    uint32_t first = kNone, last = kNone;
    bool ok = s.take_blocks(want, first, last) || (want > needed && s.take_blocks(want = needed, first, last));
    if (ok) {
        Entry& e = s.entry(entry_);
        // Linked before counted: a crash in between leaves the new blocks unowned (free).
        if (e.block_count == 0)
            e.first_block = first;
        else
            s.next_[e.last_block] = first;
        step(2);
        e.last_block = last;
        e.block_count += want;
    }
    s.unlock();
    if (!ok) return false;
    if (cursor_block_ == kNone) cursor_block_ = first;
    capacity_ += want * bs;
    return true;
}

bool Fill::write(std::string_view bytes) {
    Store& s = *store_;
    const uint64_t bs = s.header_->block_size;
    if (!reserve(bytes.size())) return false;
    while (!bytes.empty()) {
        const uint64_t in = written_ % bs;
        const uint64_t chunk = std::min<uint64_t>(bs - in, bytes.size());
        memcpy(s.block_data(cursor_block_) + in, bytes.data(), chunk);
        last_used_block_ = cursor_block_;
        written_ += chunk;
        bytes.remove_prefix(chunk);
        if (written_ % bs == 0) cursor_block_ = written_ < capacity_ ? s.next_[cursor_block_] : kNone;
    }
    return true;
}

bool Fill::append(std::string_view bytes) {
    if (!store_) return false;
    const uint64_t max_object = store_->limits_.max_object;
    const uint64_t object = written_ - store_->entry(entry_).key_size;  // head and body so far
    if (bytes.size() > max_object - std::min(object, max_object) || !write(bytes)) {
        at(store_->header_->store_refusals).fetch_add(1, std::memory_order_relaxed);
        abandon();
        return false;
    }
    return true;
}

bool Fill::append_body_from(const Hit& hit) {
    bool ok = store_ && hit;
    hit.body_spans(0, hit.body_size(), [&](const char* p, size_t n) { ok = ok && append({p, n}); });
    return ok;
}

bool Fill::commit(const EntryMeta& meta, int64_t now_ms) {
    if (!store_) return false;
    Store& s = *store_;
    if (!s.lock()) {
        abandon();
        return false;
    }
    Entry& e = s.entry(entry_);
    if (state_of(e.state_word) != State::Filling || e.filler_client != s.client_) {
        s.unlock();  // dropped by a repair that took its writer for dead
        store_ = nullptr;
        return false;
    }
    s.trim(e, written_, last_used_block_);
    e.body_size = written_ - key_head_size_;
    e.meta = meta;
    at(e.last_use_ms).store(now_ms, std::memory_order_relaxed);
    e.commit_sequence = ++s.header_->commit_sequence;
    s.publish(entry_);
    s.unlock();
    at(s.header_->stores).fetch_add(1, std::memory_order_relaxed);
    store_ = nullptr;
    entry_ = kNone;
    return true;
}

void Fill::abandon() {
    if (!store_) return;
    Store& s = *store_;
    if (s.lock()) {
        // A fill whose lock was repaired may already be gone (its writer
        // looked dead); only our own FILLING record is ours to free.
        const Entry& e = s.entry(entry_);
        if (state_of(e.state_word) == State::Filling && e.filler_client == s.client_ && e.filler_pid == s.pid_)
            s.retire(entry_);
        s.unlock();
    }
    store_ = nullptr;
    entry_ = kNone;
}

// Blocks reserved beyond what was written go back to the free list.
void Store::trim(Entry& e, uint64_t written, uint32_t last_used) {
    const uint64_t bs = header_->block_size;
    const uint64_t used = (written + bs - 1) / bs;
    if (used >= e.block_count) return;
    const uint64_t spare = e.block_count - used;
    const uint32_t first_spare = used ? next_[last_used] : e.first_block;
    e.block_count = used;  // first: a crash from here on finds the spare blocks unowned
    if (used) {
        next_[last_used] = kNone;
        e.last_block = last_used;
    } else {
        e.first_block = e.last_block = kNone;
    }
    give_blocks(first_spare, spare);
}

// Makes a filled entry what lookups of its key find, in place of an older one.
void Store::publish(uint32_t i) {
    Entry& e = entry(i);
    const uint64_t word = make_word(generation_of(e.state_word), State::Ready);
    uint64_t* old_slot = nullptr;
    const uint32_t old = index_find_entry_key(i);
    if (old != kNone) old_slot = index_find_slot(old);
    at(e.state_word).store(word, std::memory_order_seq_cst);
    step(3);
    if (old_slot) {
        // One store swaps the versions for readers; the old one is then retired.
        at(*old_slot).store(index_word(i, e.hash), std::memory_order_release);
        lru_unlink(old);
        at(entry(old).state_word)
            .store(make_word(generation_of(entry(old).state_word), State::Dead), std::memory_order_seq_cst);
        if (!pinned(entry(old))) {
            release_entry(old);
        } else {
            entry(old).lru_next = header_->zombie_head;
            header_->zombie_head = old;
        }
    } else {
        index_insert(i);
        at(header_->entries).fetch_add(1, std::memory_order_relaxed);
    }
    lru_push_head(i);
}

// ---- purge ----

bool Store::remove(std::string_view key) {
    if (!lock()) return false;
    uint32_t i = index_find_key(hash_key(header_->secret, key), key);
    if (i != kNone) retire(i);
    unlock();
    return i != kNone;
}

size_t Store::remove_prefix(std::string_view prefix) {
    constexpr uint32_t kBatch = 256;  // entries per lock hold
    size_t removed = 0;
    for (uint32_t from = 0; from < header_->entry_capacity; from += kBatch) {
        if (!lock()) break;
        const uint32_t to = std::min<uint64_t>(uint64_t(from) + kBatch, header_->entry_capacity);
        for (uint32_t i = from; i < to; ++i) {
            if (state_of(entry(i).state_word) != State::Ready || !key_starts_with(i, prefix)) continue;
            retire(i);
            ++removed;
        }
        unlock();
    }
    return removed;
}

// ---- repair after a holder died (under the lock) ----

// Marks the entry's chain as owned: false, marking nothing, when the chain
// leaves the arena, loops, or meets a block another entry owns.
bool Store::claim_chain(const Entry& e, std::vector<uint8_t>& owner, uint32_t& walked_last) {
    const uint64_t nb = header_->block_count;
    walked_last = kNone;
    if (e.block_count == 0) return true;
    if (e.block_count > nb) return false;
    uint32_t b = e.first_block, last = kNone;
    uint64_t k = 0;
    for (; k < e.block_count && b < nb && owner[b] == 0; ++k, b = next_[b]) {
        owner[b] = 2;  // this walk's
        last = b;
    }
    const bool ok = k == e.block_count;
    for (uint64_t j = 0, c = e.first_block; j < k; ++j, c = next_[c]) owner[c] = ok ? 1 : 0;
    if (ok) walked_last = last;
    return ok;
}

void Store::unclaim_chain(const Entry& e, std::vector<uint8_t>& owner) {
    uint32_t b = e.first_block;
    for (uint64_t k = 0; k < e.block_count; ++k, b = next_[b]) owner[b] = 0;
}

// Everything but the entry records is derived state: rebuilt from them.
// Fills of dead writers are dropped; entries whose chain does not validate
// keep no blocks (a READY one becomes a zombie, so a reader of it is not
// handed a reused record); of two READY versions of a key the newer stays.
void Store::rebuild() {
    ZoneHeader& h = *header_;
    const uint32_t n = h.entry_capacity;
    std::vector<uint8_t> owner(h.block_count, 0);
    std::vector<uint32_t> ready;
    h.free_entry_head = h.lru_head = h.lru_tail = h.zombie_head = kNone;
    auto push_free = [&](Entry& e, uint32_t i) {
        e.block_count = 0;
        e.first_block = e.last_block = kNone;
        at(e.state_word).store(make_word(generation_of(e.state_word) + 1, State::Free), std::memory_order_release);
        e.lru_prev = kNone;
        e.lru_next = h.free_entry_head;
        h.free_entry_head = i;
    };
    auto push_zombie = [&](Entry& e, uint32_t i) {
        at(e.state_word).store(make_word(generation_of(e.state_word), State::Dead), std::memory_order_seq_cst);
        e.lru_next = h.zombie_head;
        h.zombie_head = i;
    };
    for (uint32_t i = n; i-- > 0;) {
        Entry& e = entry(i);
        State st = state_of(e.state_word);
        if (st == State::Free || st > State::Dead) {
            push_free(e, i);
            continue;
        }
        uint32_t last = kNone;
        if (claim_chain(e, owner, last)) {
            e.last_block = last;  // the count is the truth: a link past it was never counted
        } else {
            e.block_count = 0;
            e.first_block = e.last_block = kNone;
        }
        if (st == State::Filling) {
            const bool writer_alive = e.filler_client < kMaxClients &&
                                      load(h.client_pid[e.filler_client]) == e.filler_pid &&
                                      process_alive(e.filler_pid);
            if (writer_alive) continue;
            unclaim_chain(e, owner);
            push_free(e, i);
        } else if (st == State::Dead || e.block_count == 0) {
            push_zombie(e, i);
        } else {
            ready.push_back(i);
        }
    }
    // The free block list, in ascending order.
    uint64_t free_blocks = 0;
    h.free_block_head = kNone;
    for (uint64_t b = h.block_count; b-- > 0;) {
        if (owner[b]) continue;
        next_[b] = h.free_block_head;
        h.free_block_head = uint32_t(b);
        ++free_blocks;
    }
    at(h.free_blocks).store(free_blocks, std::memory_order_relaxed);
    // The index, newest version of each key first.
    std::sort(ready.begin(), ready.end(),
              [&](uint32_t a, uint32_t b) { return entry(a).commit_sequence > entry(b).commit_sequence; });
    for (uint64_t s = 0; s < h.index_capacity; ++s) at(index_[s]).store(0, std::memory_order_relaxed);
    h.index_used = 0;
    std::vector<uint32_t> kept;
    for (uint32_t i : ready) {
        if (index_find_entry_key(i) != kNone) {
            push_zombie(entry(i), i);
            continue;
        }
        index_insert(i);
        kept.push_back(i);
    }
    // The LRU list, by last use (the most recent at the head).
    std::sort(kept.begin(), kept.end(), [&](uint32_t a, uint32_t b) {
        return load(entry(a).last_use_ms, std::memory_order_relaxed) <
               load(entry(b).last_use_ms, std::memory_order_relaxed);
    });
    for (uint32_t i : kept) lru_push_head(i);
    at(h.entries).store(kept.size(), std::memory_order_relaxed);
    if (h.sweep_cursor >= n) h.sweep_cursor = 0;
}

// ---- verification (tests) ----

std::string Store::verify() {
    if (!lock()) return "lock failed";
    std::string why = verify_locked();
    unlock();
    return why;
}

std::string Store::verify_locked() {
    const ZoneHeader& h = *header_;
    const uint32_t n = h.entry_capacity;
    std::vector<uint8_t> owner(h.block_count, 0);
    uint64_t owned = 0, ready = 0, filling = 0;
    for (uint32_t i = 0; i < n; ++i) {
        Entry& e = entry(i);
        const State st = state_of(e.state_word);
        if (st == State::Free) continue;
        uint32_t last = kNone;
        if (!claim_chain(e, owner, last)) return "entry " + std::to_string(i) + ": chain overlaps or leaves the arena";
        if (e.block_count && last != e.last_block) return "entry " + std::to_string(i) + ": last block is wrong";
        owned += e.block_count;
        if (st == State::Filling) ++filling;
        if (st != State::Ready) continue;
        ++ready;
        if (!index_find_slot(i)) return "entry " + std::to_string(i) + " is not indexed";
        if (index_find_entry_key(i) != i) return "entry " + std::to_string(i) + ": its key finds another entry";
        const uint64_t blob = uint64_t(e.key_size) + e.head_size + e.body_size;
        if (blob > e.block_count * h.block_size) return "entry " + std::to_string(i) + ": blob exceeds its blocks";
    }
    uint64_t free_count = 0;
    for (uint32_t b = h.free_block_head; b != kNone; b = next_[b], ++free_count) {
        if (b >= h.block_count || owner[b] || free_count > h.block_count) return "free block list is corrupt";
        owner[b] = 1;
    }
    if (free_count != h.free_blocks) return "free block count is wrong";
    if (owned + free_count != h.block_count) return "blocks leaked: neither owned nor free";
    uint64_t listed = 0, prev = kNone;
    for (uint32_t i = h.lru_head; i != kNone; prev = i, i = entry(i).lru_next, ++listed) {
        if (listed > n || state_of(entry(i).state_word) != State::Ready || entry(i).lru_prev != prev)
            return "LRU list is corrupt";
    }
    if (listed != ready || h.lru_tail != prev) return "LRU list does not hold every READY entry";
    uint64_t free_entries = 0, zombies = 0;
    for (uint32_t i = h.free_entry_head; i != kNone; i = entry(i).lru_next, ++free_entries)
        if (free_entries > n || state_of(entry(i).state_word) != State::Free) return "free entry list is corrupt";
    for (uint32_t i = h.zombie_head; i != kNone; i = entry(i).lru_next, ++zombies)
        if (zombies > n || state_of(entry(i).state_word) != State::Dead) return "zombie list is corrupt";
    if (free_entries + zombies + ready + filling != n) return "entry records leaked";
    if (load(h.entries, std::memory_order_relaxed) != ready) return "entry count is wrong";
    return "";
}

// ---- housekeeping ----

size_t Store::sweep(int64_t now_ms, size_t budget) {
    if (!lock()) return 0;
    reap_dead_clients();
    reclaim_zombies();
    size_t dropped = 0;
    const uint32_t n = header_->entry_capacity;
    budget = std::min<size_t>(budget, n);
    for (size_t k = 0; k < budget; ++k) {
        const uint32_t i = header_->sweep_cursor;
        header_->sweep_cursor = i + 1 < n ? i + 1 : 0;
        const Entry& e = entry(i);
        if (state_of(e.state_word) != State::Ready) continue;
        if (now_ms - load(e.last_use_ms, std::memory_order_relaxed) < limits_.inactive_ms) continue;
        retire(i);
        ++dropped;
    }
    unlock();
    at(header_->expirations).fetch_add(dropped, std::memory_order_relaxed);
    return dropped;
}

Stats Store::stats() const {
    const ZoneHeader& h = *header_;
    auto rd = [](const uint64_t& x) { return load(x, std::memory_order_relaxed); };
    return {rd(h.entries),     (h.block_count - rd(h.free_blocks)) * h.block_size,
            rd(h.hits),        rd(h.misses),
            rd(h.stores),      rd(h.store_refusals),
            rd(h.evictions),   rd(h.expirations),
            rd(h.lock_repairs)};
}

}  // namespace sluice::http_cache
