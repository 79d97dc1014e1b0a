// Unit tests of the response cache's storage engine (src/http/http_cache_store.h):
// store, lookup, replace, purge, LRU eviction, inactive expiry, max_object,
// readers while entries are replaced and evicted (threads, each with its own
// attachment), workers killed while holding a pin or the lock (fork), a
// reload's reattach, and random operations checked against a model.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "http/http_cache_store.h"

namespace sluice::http_cache {
namespace {

constexpr uint64_t kUnknown = UINT64_MAX;

// A zone in shared anonymous memory, as the master maps it (fork shares it).
struct Zone {
    explicit Zone(const Geometry& g) : size(zone_size_for(g)) {
        base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        EXPECT_NE(base, MAP_FAILED);
        EXPECT_TRUE(format(base, size, g));
    }
    ~Zone() { munmap(base, size); }
    void* base = nullptr;
    size_t size = 0;
};

Geometry small_geometry(uint32_t entries = 64, uint64_t blocks = 256, uint32_t block_size = 128) {
    Geometry g;
    g.entries = entries;
    g.blocks = blocks;
    g.block_size = block_size;
    return g;
}

Limits limits(uint64_t max_object = UINT64_MAX, int64_t inactive_ms = 60'000) {
    Limits l;
    l.max_object = max_object;
    l.inactive_ms = inactive_ms;
    return l;
}

bool put(Store& s, std::string_view key, std::string_view head, std::string_view body, int64_t now = 1000,
         uint64_t expected = kUnknown) {
    Fill f = s.begin_fill(key, head, expected == kUnknown ? body.size() : expected, now);
    if (!f || !f.append(body)) return false;
    EntryMeta meta;
    meta.status = 200;
    return f.commit(meta, now);
}

std::string body_of(Store& s, std::string_view key, int64_t now = 1000) {
    Hit h = s.lookup(key, now);
    return h ? h.body() : "<miss>";
}

// ---- basics ----

TEST(CacheStore, StoresAndFindsHeadAndBody) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    std::string body(1000, 'b');  // spans several 128-byte blocks
    ASSERT_TRUE(put(s, "GET http://a/x", "HTTP/1.1 200 OK\r\n\r\n", body));
    Hit h = s.lookup("GET http://a/x", 1000);
    ASSERT_TRUE(h);
    EXPECT_EQ(h.head(), "HTTP/1.1 200 OK\r\n\r\n");
    EXPECT_EQ(h.body(), body);
    EXPECT_EQ(h.meta().status, 200u);
    size_t spans = 0, bytes = 0;
    h.body_spans(10, 500, [&](const char* p, size_t n) {
        ++spans;
        bytes += n;
        EXPECT_EQ(std::string(p, n), std::string(n, 'b'));
    });
    EXPECT_EQ(bytes, 500u);
    EXPECT_GT(spans, 1u);
    EXPECT_FALSE(s.lookup("GET http://a/y", 1000));
    EXPECT_FALSE(s.lookup("GET http://a/x ", 1000));
    Stats st = s.stats();
    EXPECT_EQ(st.entries, 1u);
    EXPECT_EQ(st.hits, 1u);
    EXPECT_EQ(st.misses, 2u);
    h.release();
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, StreamedFillOfUnknownLength) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    Fill f = s.begin_fill("k", "head", kUnknown, 1000);
    ASSERT_TRUE(f);
    std::string expected;
    for (int i = 0; i < 100; ++i) {
        std::string chunk(size_t(i % 37 + 1), char('a' + i % 26));
        ASSERT_TRUE(f.append(chunk));
        expected += chunk;
    }
    ASSERT_TRUE(f.commit({}, 1000));
    EXPECT_EQ(body_of(s, "k"), expected);
    // The reserve beyond what was written went back: the entry holds only what it needs.
    const uint64_t blob = 1 + 4 + expected.size();
    EXPECT_EQ(s.stats().bytes, (blob + 127) / 128 * 128);
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, ReplaceKeepsOldVersionForItsReaders) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    ASSERT_TRUE(put(s, "k", "h1", std::string(300, '1')));
    Hit old = s.lookup("k", 1000);
    ASSERT_TRUE(old);
    ASSERT_TRUE(put(s, "k", "h2", std::string(300, '2')));
    EXPECT_EQ(body_of(s, "k"), std::string(300, '2'));
    EXPECT_EQ(old.head(), "h1");
    EXPECT_EQ(old.body(), std::string(300, '1'));
    EXPECT_EQ(s.stats().entries, 1u);
    EXPECT_EQ(s.verify(), "");
    const uint64_t with_old = s.stats().bytes;
    old.release();
    s.sweep(1000);  // frees the unpinned old version
    EXPECT_LT(s.stats().bytes, with_old);
    EXPECT_EQ(s.stats().bytes, 3u * 128);  // 1 + 2 + 300 bytes
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, RemoveAndRemovePrefix) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    for (const char* k : {"/api/a", "/api/b", "/api/b/c", "/static/x"}) ASSERT_TRUE(put(s, k, "h", k));
    EXPECT_TRUE(s.remove("/api/a"));
    EXPECT_FALSE(s.remove("/api/a"));
    EXPECT_FALSE(s.lookup("/api/a", 1000));
    EXPECT_EQ(s.remove_prefix("/api/"), 2u);
    EXPECT_FALSE(s.lookup("/api/b", 1000));
    EXPECT_FALSE(s.lookup("/api/b/c", 1000));
    EXPECT_EQ(body_of(s, "/static/x"), "/static/x");
    EXPECT_EQ(s.stats().entries, 1u);
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, RevalidationCopiesTheBodyUnderANewHead) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    std::string body(777, 'x');
    ASSERT_TRUE(put(s, "k", "ETag: 1", body));
    {
        Hit old = s.lookup("k", 1000);
        ASSERT_TRUE(old);
        Fill f = s.begin_fill("k", "ETag: 1\r\nAge: 0", old.body_size(), 2000);
        ASSERT_TRUE(f);
        ASSERT_TRUE(f.append_body_from(old));
        EntryMeta meta;
        meta.fresh_until_sec = 42;
        ASSERT_TRUE(f.commit(meta, 2000));
    }
    Hit h = s.lookup("k", 2000);
    ASSERT_TRUE(h);
    EXPECT_EQ(h.head(), "ETag: 1\r\nAge: 0");
    EXPECT_EQ(h.body(), body);
    EXPECT_EQ(h.meta().fresh_until_sec, 42);
}

TEST(CacheStore, AbandonedFillLeavesNothing) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    {
        Fill f = s.begin_fill("k", "h", kUnknown, 1000);
        ASSERT_TRUE(f);
        ASSERT_TRUE(f.append(std::string(1000, 'z')));
        EXPECT_GT(s.stats().bytes, 0u);
    }  // destroyed without commit
    EXPECT_FALSE(s.lookup("k", 1000));
    EXPECT_EQ(s.stats().bytes, 0u);
    EXPECT_EQ(s.verify(), "");
}

// ---- limits ----

TEST(CacheStore, ObjectsOverMaxObjectAreNotStored) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits(1000)));
    // Known length: refused at once.
    EXPECT_FALSE(s.begin_fill("big", "head", 997, 1000));
    EXPECT_TRUE(s.begin_fill("fits", "head", 996, 1000));
    // Unknown length: refused when it grows past the limit, and nothing stays.
    Fill f = s.begin_fill("streamed", "head", kUnknown, 1000);
    ASSERT_TRUE(f);
    EXPECT_TRUE(f.append(std::string(900, 's')));
    EXPECT_FALSE(f.append(std::string(97, 's')));
    EXPECT_FALSE(f);
    EXPECT_FALSE(f.commit({}, 1000));
    EXPECT_FALSE(s.lookup("streamed", 1000));
    EXPECT_EQ(s.stats().store_refusals, 2u);
    EXPECT_EQ(s.stats().bytes, 0u);
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, AnObjectLargerThanTheZoneIsRefusedWithoutEvictingEverything) {
    Zone z(small_geometry(64, 16, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    ASSERT_TRUE(put(s, "small", "h", "b"));
    EXPECT_FALSE(s.begin_fill("huge", "h", 16 * 128, 1000));
    EXPECT_EQ(body_of(s, "small"), "b");
}

TEST(CacheStore, LeastRecentlyUsedAreEvictedWhenMaxSizeIsReached) {
    // 64 blocks of 128 bytes: room for 16 objects of 4 blocks; 60 are stored.
    Zone z(small_geometry(64, 64, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    const std::vector<std::string> hot = {"hot0", "hot1", "hot2", "hot3"};
    for (const auto& k : hot) ASSERT_TRUE(put(s, k, "h", std::string(400, 'h')));
    int64_t now = 1000;
    for (int i = 0; i < 60; ++i) {
        ASSERT_TRUE(put(s, "cold" + std::to_string(i), "h", std::string(400, 'c'), ++now));
        for (const auto& k : hot) EXPECT_TRUE(s.lookup(k, ++now)) << k << " after cold" << i;
    }
    for (const auto& k : hot) EXPECT_EQ(body_of(s, k), std::string(400, 'h'));
    EXPECT_TRUE(s.lookup("cold59", now));  // the newest survives too
    EXPECT_FALSE(s.lookup("cold0", now));
    Stats st = s.stats();
    EXPECT_GE(st.evictions, 44u);
    EXPECT_LE(st.bytes, 64u * 128);
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, EntryRecordsAreEvictedWhenTheyRunOut) {
    Zone z(small_geometry(8, 256, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    for (int i = 0; i < 20; ++i) ASSERT_TRUE(put(s, "k" + std::to_string(i), "h", "b", 1000 + i));
    EXPECT_EQ(s.stats().entries, 8u);
    EXPECT_TRUE(s.lookup("k19", 2000));
    EXPECT_FALSE(s.lookup("k0", 2000));
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, EntriesUnusedForInactiveAreDropped) {
    Zone z(small_geometry());
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits(UINT64_MAX, 10'000)));
    ASSERT_TRUE(put(s, "old", "h", "b", 0));
    ASSERT_TRUE(put(s, "used", "h", "b", 0));
    ASSERT_TRUE(put(s, "new", "h", "b", 5000));
    EXPECT_TRUE(s.lookup("used", 9000));
    EXPECT_EQ(s.sweep(9999), 0u);
    EXPECT_EQ(s.sweep(10'500), 1u);
    EXPECT_FALSE(s.lookup("old", 10'500));
    EXPECT_TRUE(s.lookup("used", 10'500));
    EXPECT_TRUE(s.lookup("new", 10'500));
    EXPECT_EQ(s.stats().expirations, 1u);
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStore, SweepVisitsABoundedNumberOfEntriesPerCall) {
    Zone z(small_geometry(64));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits(UINT64_MAX, 10)));
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(put(s, "k" + std::to_string(i), "h", "b", 0));
    size_t dropped = 0;
    for (int call = 0; call < 4; ++call) {
        size_t d = s.sweep(100, 16);
        EXPECT_LE(d, 16u);
        dropped += d;
    }
    EXPECT_EQ(dropped, 40u);  // 4 x 16 visits cover the 64 records
    EXPECT_EQ(s.stats().entries, 0u);
}

// ---- reload ----

TEST(CacheStore, AZoneKeptAcrossAReloadKeepsItsEntries) {
    Zone z(small_geometry());
    auto old_worker = std::make_unique<Store>();
    ASSERT_TRUE(old_worker->attach(z.base, z.size, limits()));
    ASSERT_TRUE(put(*old_worker, "k", "h", "kept"));
    // The new cycle finds the zone formatted and attaches again, with new limits.
    ASSERT_TRUE(formatted(z.base, z.size));
    EXPECT_FALSE(formatted(z.base, z.size - 1));
    Store new_worker;
    ASSERT_TRUE(new_worker.attach(z.base, z.size, limits(5000, 1000)));
    EXPECT_EQ(body_of(new_worker, "k"), "kept");
    old_worker.reset();  // the old generation exits
    EXPECT_EQ(body_of(new_worker, "k"), "kept");
    EXPECT_EQ(new_worker.verify(), "");
}

TEST(CacheStore, ZoneSizeFollowsTheGeometry) {
    Geometry g = geometry_for(1 << 20, 64 << 20);
    EXPECT_EQ(g.block_size, kDefaultBlockSize);
    EXPECT_EQ(g.blocks, (64u << 20) / kDefaultBlockSize);
    EXPECT_GT(g.entries, 1000u);
    EXPECT_GE(zone_size_for(g), (64u << 20) + sizeof(Entry) * g.entries);
    EXPECT_LE(zone_size_for(g), (64u << 20) + (2u << 20));
}

// ---- concurrency: threads, one attachment each ----

// A body that says which version of which key it is, in every byte: a
// reader that saw bytes of two versions (or of a reused block) notices.
std::string versioned_body(int key, int version, size_t size) {
    return std::string(size, char('A' + (key * 7 + version) % 50));
}

TEST(CacheStoreConcurrency, ReadersSeeWholeVersionsWhileEntriesAreReplacedAndEvicted) {
    // Small enough that the writer's replacements evict constantly.
    Zone z(small_geometry(32, 96, 128));
    constexpr int kKeys = 12, kReaders = 3, kWrites = 1500, kReads = 4000;
    std::atomic<int> bad{0}, hits{0};
    std::atomic<bool> first_written{false};
    std::thread writer([&] {
        Store s;
        ASSERT_TRUE(s.attach(z.base, z.size, limits()));
        for (int i = 0; i < kWrites; ++i) {
            int key = i % kKeys, version = i / kKeys;
            std::string head = std::to_string(key) + ":" + std::to_string(version);
            put(s, "key" + std::to_string(key), head, versioned_body(key, version, size_t(200 + i % 700)), i);
            first_written.store(true);
        }
    });
    // Readers start once something is stored: on a loaded machine they could
    // otherwise finish their lookups before the writer runs at all.
    auto wait_for_writer = [&] {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!first_written.load() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    };
    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
        readers.emplace_back([&, r] {
            Store s;
            ASSERT_TRUE(s.attach(z.base, z.size, limits()));
            wait_for_writer();
            std::vector<Hit> held;  // some pins are kept across later replacements
            for (int i = 0; i < kReads; ++i) {
                int key = (i + r) % kKeys;
                Hit h = s.lookup("key" + std::to_string(key), i);
                if (!h) continue;
                ++hits;
                std::string head = h.head();
                int version = std::stoi(head.substr(head.find(':') + 1));
                if (head.substr(0, head.find(':')) != std::to_string(key) ||
                    h.body() != versioned_body(key, version, h.body_size()))
                    ++bad;
                if (i % 5 == 0) held.push_back(std::move(h));
                if (held.size() > 4) held.erase(held.begin());
            }
            for (auto& h : held)
                if (h.body() != versioned_body(std::stoi(h.head()), std::stoi(h.head().substr(h.head().find(':') + 1)),
                                               h.body_size()))
                    ++bad;
        });
    }
    writer.join();
    for (auto& t : readers) t.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(hits.load(), 0);
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    s.sweep(kWrites);  // every pin is released: zombies are freed
    EXPECT_EQ(s.verify(), "");
    EXPECT_EQ(s.header().zombie_head, kNone);
}

TEST(CacheStoreConcurrency, ConcurrentFillsOfOneKeyLeaveOneEntry) {
    Zone z(small_geometry(64, 512, 128));
    constexpr int kThreads = 4, kFills = 300;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Store s;
            ASSERT_TRUE(s.attach(z.base, z.size, limits()));
            for (int i = 0; i < kFills; ++i) put(s, "same", std::to_string(t), versioned_body(t, i, 300), i);
        });
    }
    for (auto& t : threads) t.join();
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    s.sweep(kFills);
    EXPECT_EQ(s.stats().entries, 1u);
    EXPECT_EQ(s.stats().bytes, 3u * 128);  // one entry of 1 + 1 + 300 bytes, no zombie left
    EXPECT_EQ(s.verify(), "");
}

// ---- robustness: processes killed while holding a pin or the lock ----

// Runs `child` in a forked process that must die on its own (a crash); returns its status.
template <class Fn>
int run_child(Fn child) {
    pid_t pid = fork();
    if (pid == 0) {
        child();
        _exit(0);  // a child that did not crash as planned
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

TEST(CacheStoreRobustness, PinsOfAKilledWorkerAreReclaimed) {
    Zone z(small_geometry(64, 64, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    ASSERT_TRUE(put(s, "k", "h", std::string(1000, '1')));
    int status = run_child([&] {
        Store child;
        if (!child.attach(z.base, z.size, limits())) _exit(2);
        Hit h = child.lookup("k", 1000);
        if (!h) _exit(3);
        raise(SIGKILL);  // dies holding the pin, as kill -9
    });
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
    // The replaced version is pinned by the dead child: a zombie for now.
    ASSERT_TRUE(put(s, "k", "h", std::string(1000, '2')));
    EXPECT_NE(s.header().zombie_head, kNone);
    EXPECT_EQ(s.stats().bytes, 2u * 8 * 128);
    s.sweep(2000);
    EXPECT_EQ(s.header().zombie_head, kNone);
    EXPECT_EQ(s.stats().bytes, 8u * 128);
    EXPECT_EQ(body_of(s, "k"), std::string(1000, '2'));
    EXPECT_EQ(s.verify(), "");
}

TEST(CacheStoreRobustness, AFillOfAKilledWorkerIsReclaimed) {
    Zone z(small_geometry(64, 64, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    int status = run_child([&] {
        Store child;
        if (!child.attach(z.base, z.size, limits())) _exit(2);
        Fill f = child.begin_fill("k", "h", 2000, 1000);
        if (!f || !f.append(std::string(1000, 'x'))) _exit(3);
        raise(SIGKILL);  // dies mid-fill, not holding the lock
    });
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_GT(s.stats().bytes, 0u);
    s.sweep(2000);
    EXPECT_EQ(s.stats().bytes, 0u);
    EXPECT_FALSE(s.lookup("k", 2000));
    EXPECT_EQ(s.verify(), "");
}

// Where the child dies with the lock held: 1 taking blocks off the free
// list, 2 linking them to its fill, 3 publishing a replacement.
class KilledHoldingTheLock : public ::testing::TestWithParam<int> {};

TEST_P(KilledHoldingTheLock, OthersRepairAndContinue) {
    const int crash_step = GetParam();
    Zone z(small_geometry(64, 64, 128));
    Store s;
    ASSERT_TRUE(s.attach(z.base, z.size, limits()));
    ASSERT_TRUE(put(s, "kept", "h", std::string(500, 'k')));
    ASSERT_TRUE(put(s, "replaced", "h", "old"));
    static int target;
    target = crash_step;
    int status = run_child([&] {
        Store child;
        if (!child.attach(z.base, z.size, limits())) _exit(2);
        testing_hooks::locked_step = [](int step) {
            if (step == target) _exit(9);  // dies at once, the mutex still held
        };
        put(child, "replaced", "h", std::string(900, 'n'));
        _exit(3);
    });
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 9);
    // Lock-free reads go on; the next structural operation repairs.
    EXPECT_EQ(body_of(s, "kept"), std::string(500, 'k'));
    ASSERT_TRUE(put(s, "after", "h", "a"));
    EXPECT_EQ(s.stats().lock_repairs, 1u);
    EXPECT_EQ(s.verify(), "");
    EXPECT_EQ(body_of(s, "kept"), std::string(500, 'k'));
    EXPECT_EQ(body_of(s, "after"), "a");
    // The child's publish either happened whole or not at all.
    std::string replaced = body_of(s, "replaced");
    EXPECT_TRUE(replaced == "old" || replaced == std::string(900, 'n')) << replaced.substr(0, 20);
    if (crash_step != 3) {
        EXPECT_EQ(replaced, "old");
    }
    s.sweep(3000);
    EXPECT_EQ(s.header().zombie_head, kNone);
    EXPECT_EQ(s.verify(), "");
    // The space the child held is usable again: fill the zone to the brim.
    for (int i = 0; i < 32; ++i) ASSERT_TRUE(put(s, "fill" + std::to_string(i), "h", std::string(500, 'f'), 4000 + i));
    EXPECT_EQ(s.verify(), "");
}

INSTANTIATE_TEST_SUITE_P(Steps, KilledHoldingTheLock, ::testing::Values(1, 2, 3));

// ---- random operations against a model ----

TEST(CacheStoreModel, RandomOperationsKeepTheInvariants) {
    Zone z(small_geometry(48, 160, 64));
    Store a, b;  // two workers
    ASSERT_TRUE(a.attach(z.base, z.size, limits(2000, 500)));
    ASSERT_TRUE(b.attach(z.base, z.size, limits(2000, 500)));
    std::mt19937 rng(12345);
    std::map<std::string, std::string> model;  // the latest committed body per key; absent: removed
    std::vector<Hit> held;
    std::vector<std::string> held_bodies;
    int64_t now = 0;
    auto key_of = [&](unsigned r) { return std::string(r % 3 ? "/a/" : "/b/") + std::to_string(r % 40); };
    for (int op = 0; op < 6000; ++op) {
        Store& s = rng() % 2 ? a : b;
        now += rng() % 5;
        const unsigned choice = rng() % 100;
        const std::string key = key_of(rng());
        if (choice < 40) {
            std::string body(rng() % 1200, char('a' + rng() % 26));
            bool stored = put(s, key, std::to_string(op), body, now, rng() % 2 ? kUnknown : body.size());
            if (stored) model[key] = body;
            EXPECT_EQ(stored, body.size() + std::to_string(op).size() <= 2000) << "op " << op;
        } else if (choice < 80) {
            Hit h = s.lookup(key, now);
            // Never a stale or foreign version: a hit is the latest commit of the key.
            if (h) {
                auto it = model.find(key);
                ASSERT_NE(it, model.end()) << "op " << op << ": a removed key was found";
                EXPECT_EQ(h.body(), it->second) << "op " << op;
                if (rng() % 4 == 0 && held.size() < 3) {
                    held_bodies.push_back(h.body());
                    held.push_back(std::move(h));
                }
            }
        } else if (choice < 88) {
            s.remove(key);
            model.erase(key);
        } else if (choice < 90) {
            const std::string prefix = rng() % 2 ? "/a/1" : "/b/";
            s.remove_prefix(prefix);
            std::erase_if(model, [&](const auto& kv) { return kv.first.starts_with(prefix); });
        } else if (choice < 95) {
            s.sweep(now, rng() % 64);
        } else if (!held.empty()) {
            size_t i = rng() % held.size();
            EXPECT_EQ(held[i].body(), held_bodies[i]) << "op " << op << ": a pinned body changed";
            held.erase(held.begin() + long(i));
            held_bodies.erase(held_bodies.begin() + long(i));
        }
        if (op % 500 == 0) {
            ASSERT_EQ(a.verify(), "") << "op " << op;
        }
    }
    held.clear();
    a.sweep(now, 48);
    ASSERT_EQ(a.verify(), "");
    // Accounting: the bytes in use are exactly the live entries' blocks.
    uint64_t live_bytes = 0;
    for (const auto& [key, body] : model) {
        Hit h = a.lookup(key, now);
        if (!h) continue;  // evicted or expired
        uint64_t blob = key.size() + h.head_size() + h.body_size();
        live_bytes += (blob + 63) / 64 * 64;
    }
    EXPECT_EQ(a.stats().bytes, live_bytes);
    EXPECT_LE(a.stats().bytes, 160u * 64);
}

}  // namespace
}  // namespace sluice::http_cache
