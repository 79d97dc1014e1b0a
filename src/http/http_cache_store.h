// The response cache's storage engine: entries and their bytes (key,
// serialized response head, body) in one shared-memory zone per cache,
// visible to every worker and kept across a reload. It knows nothing of
// HTTP semantics (http_cache_policy decides what is stored and for how
// long) nor of the configuration; the unit tests drive it over ordinary
// mmap'ed memory.
//
// LAYOUT (offsets from the zone's start, every record trivially copyable,
// every link an index, never a pointer):
//
//   ZoneHeader  magic, geometry, SipHash secret, the robust mutex, the list
//               heads (free entries, LRU, zombies, free blocks), client
//               slots (pid of each attached worker), statistics
//   index       open addressing, linear probing, a power of two >= 2x the
//               entries: one 64-bit word per slot, (entry + 1) << 32 | the
//               high half of the key's hash; 0 empty, kTombstone removed
//   entries     fixed 160-byte records: state word (generation | state),
//               hash, key/head/body lengths, first block and block count,
//               last use, CLOCK reference bit, LRU links, filler, the
//               caller's EntryMeta, and a 256-bit pin mask (one bit per
//               attached client)
//   next[]      one uint32 per data block: the next block of a blob's chain
//               (or of the free list); kept apart so blocks are pure payload
//   blocks      the data arena: max_size bytes in fixed-size blocks
//
// A blob (key | head | body) is a chain of blocks. Fixed blocks rather than
// a buddy or first-fit allocator: allocation and free are O(blocks) list
// operations with no external fragmentation, so evicting N bytes of least
// recently used entries always makes room for N bytes (a contiguous
// allocator may have to evict far more to find one hole). The cost is a
// blob read as several spans (a writev of up to size / block_size iovecs)
// and up to one block of slack per entry.
//
// READS ARE LOCK-FREE. lookup() hashes the key (SipHash-1-3 with a random
// per-zone secret: keys are attacker-influenced, and a chosen collision
// chain would make probes long), probes the index, and pins a candidate:
//   1. the client sets its bit in the entry's pin mask (seq_cst RMW),
//   2. re-reads the entry's state word (seq_cst): still READY with the same
//      generation, else it unpins and goes on probing,
//   3. compares the full key bytes (stable now: a pinned blob is not freed).
// An entry is freed only by retire() under the lock, which stores DEAD
// (seq_cst) and then reads the pin mask (seq_cst): by the store-load order
// either the pinner sees DEAD and backs off, or retire sees the bit and
// leaves the entry a "zombie" (off the index and LRU, blocks kept) that a
// later structural operation or sweep() frees once its mask is clear.
// Readers holding an old version of a replaced or evicted entry keep
// reading it in place until they unpin. A client counts its own pins per
// entry in process memory, so its bit is one atomic per first pin, and a
// hot entry pinned by thousands of responses of one worker costs one bit.
//
// STRUCTURAL CHANGES TAKE ONE LOCK: a pthread mutex, PTHREAD_PROCESS_SHARED
// and PTHREAD_MUTEX_ROBUST, held for O(1)-ish list work (allocating or
// freeing a blob's blocks, linking an entry); bytes are never copied under
// it. A worker killed while holding it leaves EOWNERDEAD to the next
// locker, which rebuilds every derived structure from the entry records
// (the source of truth: index, LRU, free lists, zombies, counters), drops
// entries whose block chain does not validate and fills whose writer is
// dead, and marks the mutex consistent. Entry records are written so that
// any prefix of an operation rebuilds into a consistent cache (blocks are
// linked before an entry counts them; the state word is stored last).
//
// DEAD CLIENTS: each attached Store owns a client slot (pid) and a bit in
// every pin mask. sweep() finds slots whose pid no longer exists, clears
// their bit in every entry, drops their unfinished fills, and frees the
// slot: a worker killed while holding pins or filling leaks nothing beyond
// the next sweep. (A dead worker's pid reused by a new process before a
// sweep hides that worker's pins until the new process exits too.)
//
// EVICTION is CLOCK over an LRU list: commit puts an entry at the head; a
// hit sets its reference bit (one relaxed store, only when it is clear);
// when blocks or entry records run out, the tail is evicted unless its bit
// is set, in which case the bit is cleared and it moves to the head. So the
// recently used survive a working set larger than max_size. Entries unused
// for `inactive` are dropped by sweep(), which any worker may call (a timer)
// and which visits a bounded number of entries per call.
//
// TIME is passed in by the caller (the loop's cached CLOCK_MONOTONIC
// milliseconds, the same in every process): the hot path makes no syscall.
//
// CONTRACT
// - format() once, in the master, on zeroed memory; attach() in each user
//   (worker); a zone kept across a reload is attached again as is.
// - A Hit is valid until destroyed; its bytes never change. A Fill that is
//   neither committed nor abandoned is abandoned by its destructor. Neither
//   may outlive its Store, and a Store is used by one thread at a time (a
//   worker's loop); several Stores, one per thread, may share a zone.
// - max_object bounds head + body bytes. A fill of known length is refused
//   at begin_fill; one of unknown length grows by doubling (few lock
//   round trips) and is abandoned by the append that passes the limit.
// - A FILLING entry is not in the index: lookups of its key miss until it
//   commits (collapsed forwarding is the caller's: proxy_cache_lock).
// - No exceptions: failure is a miss, a refused fill or false.
#pragma once
#include <pthread.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace sluice::http_cache {

constexpr uint32_t kNone = UINT32_MAX;
constexpr size_t kMaxClients = 256;  // attached Stores at once (workers of two generations)
constexpr size_t kPinWords = kMaxClients / 64;
constexpr size_t kMaxKeySize = 8192;
constexpr size_t kDefaultBlockSize = 1024;

// What the caller keeps with an entry (freshness, status, variant): stored
// at commit, read back with a hit, never interpreted here.
struct EntryMeta {
    int64_t date_sec = 0;         // when the response was generated (wall clock)
    int64_t fresh_until_sec = 0;  // served without revalidation until
    int64_t stale_until_sec = 0;  // stale-while-revalidate / stale-if-error limit
    uint64_t variant = 0;         // the caller's Vary selector (0: none)
    uint32_t status = 0;
    uint32_t flags = 0;
};

// The zone's header. Fields after `lock` change under the lock, except the
// client pids and statistics (atomics, any time).
struct ZoneHeader {
    uint64_t magic;
    uint64_t zone_size;
    uint32_t entry_capacity;
    uint32_t block_size;
    uint64_t index_capacity;  // a power of two
    uint64_t block_count;
    uint64_t index_offset, entries_offset, next_offset, data_offset;
    uint64_t secret[2];
    alignas(64) pthread_mutex_t lock;
    // ---- under the lock ----
    uint32_t free_entry_head;
    uint32_t lru_head, lru_tail;  // most recent at head
    uint32_t zombie_head;         // retired while pinned
    uint32_t free_block_head;
    uint32_t sweep_cursor;
    uint64_t free_blocks;
    uint64_t index_used;  // live slots plus tombstones
    uint64_t commit_sequence;
    // ---- atomics ----
    alignas(64) int32_t client_pid[kMaxClients];
    alignas(64) uint64_t entries, bytes;  // READY entries; bytes in non-free blocks
    uint64_t hits, misses, stores, store_refusals, evictions, expirations, lock_repairs;
};

enum class State : uint8_t { Free = 0, Filling = 1, Ready = 2, Dead = 3 };

struct Entry {
    uint64_t state_word;  // generation << 8 | State
    uint64_t hash;
    uint64_t body_size;
    uint32_t key_size, head_size;
    uint32_t first_block, last_block;
    uint64_t block_count;
    int64_t last_use_ms;
    uint32_t referenced;          // the CLOCK bit
    uint32_t lru_prev, lru_next;  // also the free and zombie lists (next)
    int32_t filler_pid;
    uint32_t filler_client;
    uint32_t reserved0;
    uint64_t commit_sequence;  // orders two commits of one key (rebuild keeps the newer)
    EntryMeta meta;
    uint64_t pin_mask[kPinWords];
};

static_assert(std::is_trivially_copyable_v<ZoneHeader> && std::is_trivially_copyable_v<Entry>);
static_assert(sizeof(Entry) == 160, "the layout comment above gives the record's size");
static_assert(std::atomic_ref<uint64_t>::is_always_lock_free, "the cache needs lock-free 64-bit atomics");

// How a zone is divided.
struct Geometry {
    uint32_t entries = 0;
    uint32_t block_size = kDefaultBlockSize;
    uint64_t blocks = 0;
};

// Runtime limits: per cycle (they may change across a reload; the zone does not).
struct Limits {
    uint64_t max_object = UINT64_MAX;  // head + body bytes above which nothing is stored
    int64_t inactive_ms = 10 * 60 * 1000;
};

struct Stats {
    uint64_t entries, bytes, hits, misses, stores, store_refusals, evictions, expirations, lock_repairs;
};

// The zone size for `geometry`, and a geometry for a keys zone and max_size
// as proxy_cache_path gives them (keys_bytes pays for entries and index).
size_t zone_size_for(const Geometry&);
Geometry geometry_for(size_t keys_bytes, size_t max_size, size_t block_size = kDefaultBlockSize);

// Lays out a fresh zone (in the master, before fork). The memory is zeroed
// here; the secret comes from getrandom(). False when the size does not
// match the geometry or no randomness is available.
bool format(void* base, size_t size, const Geometry&);
// True when `base` holds a zone formatted with this size (kept across a reload).
bool formatted(const void* base, size_t size);

uint64_t hash_key(const uint64_t secret[2], std::string_view key);

class Store;

// A pinned entry: read access to its head and body, in place.
class Hit {
public:
    Hit() = default;
    Hit(Hit&& other) noexcept { *this = std::move(other); }
    Hit& operator=(Hit&& other) noexcept;
    ~Hit() { release(); }

    explicit operator bool() const { return store_ != nullptr; }
    const EntryMeta& meta() const;
    uint64_t head_size() const;
    uint64_t body_size() const;

    // Calls fn(const char*, size_t) for each contiguous span of the head or
    // of body bytes [offset, offset + length) (clamped): zero-copy, for writev.
    template <class Fn>
    void head_spans(Fn&& fn) const {
        spans(0, head_size(), fn, true);
    }
    template <class Fn>
    void body_spans(uint64_t offset, uint64_t length, Fn&& fn) const {
        spans(offset, length, fn, false);
    }
    // Copies into `out` (tests and small heads).
    std::string head() const;
    std::string body() const;

    void release();

private:
    friend class Store;
    using SpanFn = void (*)(void* ctx, const char*, size_t);
    template <class Fn>
    void spans(uint64_t offset, uint64_t length, Fn& fn, bool head) const {
        visit(
            offset, length, head, [](void* ctx, const char* p, size_t n) { (*static_cast<Fn*>(ctx))(p, n); }, &fn);
    }
    void visit(uint64_t offset, uint64_t length, bool head, SpanFn fn, void* ctx) const;

    Store* store_ = nullptr;
    uint32_t entry_ = kNone;
};

// A blob being written: the key and head at begin, then body bytes, then
// commit (it becomes what lookups of the key find) or abandon.
class Fill {
public:
    Fill() = default;
    Fill(Fill&& other) noexcept { *this = std::move(other); }
    Fill& operator=(Fill&& other) noexcept;
    ~Fill() { abandon(); }

    explicit operator bool() const { return store_ != nullptr; }
    // False (and the fill is abandoned) when the object grows past
    // max_object or no space can be found: the caller streams without storing.
    bool append(std::string_view bytes);
    // The body of a stored entry (revalidation: a 304 gives a new head for the same body).
    bool append_body_from(const Hit& hit);
    // Publishes the entry, replacing an older one of the same key (its
    // readers keep it until they unpin). False if the fill was abandoned.
    bool commit(const EntryMeta& meta, int64_t now_ms);
    void abandon();

private:
    friend class Store;
    bool reserve(uint64_t extra);
    bool write(std::string_view bytes);

    Store* store_ = nullptr;
    uint32_t entry_ = kNone;
    uint64_t written_ = 0;           // blob bytes so far (key + head + body)
    uint64_t capacity_ = 0;          // bytes in the blocks allocated so far
    uint32_t cursor_block_ = kNone;  // where the next byte goes (kNone: at capacity)
    uint32_t last_used_block_ = kNone;
    uint64_t key_head_size_ = 0;
};

// One client's attachment to a zone (one per worker, or per test thread).
class Store {
public:
    Store() = default;
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;
    ~Store() { detach(); }

    // Claims a client slot. False when the zone is not formatted for
    // `size` or every slot is taken by a live process.
    bool attach(void* base, size_t size, const Limits& limits);
    void detach();
    bool attached() const { return header_ != nullptr; }
    void set_limits(const Limits& limits) { limits_ = limits; }

    // A pinned READY entry for `key`, or an empty Hit (a miss).
    Hit lookup(std::string_view key, int64_t now_ms);
    // A writer, or an empty Fill when the object cannot be stored (over
    // max_object, key too long, no space). expected_body: UINT64_MAX if unknown.
    Fill begin_fill(std::string_view key, std::string_view head, uint64_t expected_body, int64_t now_ms);
    // Purge: true if an entry was removed; the prefix form returns how many.
    bool remove(std::string_view key);
    size_t remove_prefix(std::string_view prefix);

    // Housekeeping any worker runs from a timer: reaps dead clients, frees
    // unpinned zombies, and drops entries unused for `inactive` among the
    // next `budget` entry records. Returns the entries dropped.
    size_t sweep(int64_t now_ms, size_t budget = 1024);

    Stats stats() const;
    const ZoneHeader& header() const { return *header_; }
    // Walks every structure under the lock; "" when consistent, else what
    // is wrong (tests and debugging: O(zone)).
    std::string verify();

private:
    friend class Hit;
    friend class Fill;

    Entry& entry(uint32_t i) const { return entries_[i]; }
    const char* block_data(uint32_t b) const { return data_ + uint64_t(b) * header_->block_size; }
    char* block_data(uint32_t b) { return data_ + uint64_t(b) * header_->block_size; }

    // Lock-free side.
    bool try_pin(uint32_t i, uint64_t hash, std::string_view key);
    void pin_bit(uint32_t i);
    void unpin(uint32_t i);
    bool key_equals(uint32_t i, std::string_view key) const;
    bool key_starts_with(uint32_t i, std::string_view prefix) const;
    void touch(uint32_t i, int64_t now_ms);
    void copy_out(uint32_t i, uint64_t offset, char* dst, uint64_t n) const;

    // Under the lock.
    bool lock();
    void unlock();
    void rebuild();
    bool claim_chain(const Entry& e, std::vector<uint8_t>& owner, uint32_t& walked_last);
    void unclaim_chain(const Entry& e, std::vector<uint8_t>& owner);
    void trim(Entry& e, uint64_t written, uint32_t last_used);
    void publish(uint32_t i);
    std::string verify_locked();
    uint32_t take_entry();
    bool take_blocks(uint64_t n, uint32_t& first, uint32_t& last);
    void give_blocks(uint32_t first, uint64_t n);
    bool make_room_blocks(uint64_t n);
    bool evict_one();
    void retire(uint32_t i);
    void release_entry(uint32_t i);
    void reclaim_zombies();
    void reap_dead_clients();
    void drop_client(uint32_t client);
    bool pinned(const Entry& e) const;
    void lru_push_head(uint32_t i);
    void lru_unlink(uint32_t i);
    uint64_t* index_find_slot(uint32_t i);
    uint32_t index_find_key(uint64_t hash, std::string_view key);
    uint32_t index_find_entry_key(uint32_t i);
    void index_insert(uint32_t i);
    void index_remove(uint32_t i);
    void index_rebuild();
    std::string entry_key(uint32_t i) const;

    ZoneHeader* header_ = nullptr;
    uint64_t* index_ = nullptr;
    Entry* entries_ = nullptr;
    uint32_t* next_ = nullptr;
    char* data_ = nullptr;
    uint32_t client_ = kNone;
    int32_t pid_ = 0;
    Limits limits_;
    std::vector<uint32_t> pin_counts_;  // this client's pins per entry
};

// Tests only: called at points inside critical sections, so a test can kill
// a process that holds the lock mid-operation. Null in production.
namespace testing_hooks {
extern void (*locked_step)(int step);
}

}  // namespace sluice::http_cache
