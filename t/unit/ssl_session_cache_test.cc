// The shared-memory TLS session cache (modules/ssl/session_cache.*): found by
// id until it expires, the oldest replaced when the ring comes round, removed
// on request, and a zone kept by a reload keeps its sessions.
#include "../../modules/ssl/session_cache.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <string>

namespace sluice::ssl {
namespace {

class SessionCacheTest : public testing::Test {
protected:
    void SetUp() override { map(SessionCache::min_zone_size()); }
    void TearDown() override { munmap(zone_.addr, zone_.size); }

    void map(size_t size) {
        zone_.size = size;
        zone_.addr = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(zone_.addr, MAP_FAILED);
        ASSERT_TRUE(SessionCache::init_zone(zone_, nullptr));
        cache_.set_zone(&zone_);
    }
    static std::string id(int n) { return "session-id-" + std::to_string(n); }
    void add(int n, int64_t expires = 2000) {
        std::string i = id(n), der = "der of " + std::to_string(n);
        cache_.add(reinterpret_cast<const unsigned char*>(i.data()), unsigned(i.size()),
                   reinterpret_cast<const unsigned char*>(der.data()), der.size(), expires);
    }
    std::string find(int n, int64_t now = 1000) {
        std::string i = id(n);
        unsigned char out[SessionCache::kMaxSessionBytes];
        size_t len = cache_.find(reinterpret_cast<const unsigned char*>(i.data()), unsigned(i.size()), out, now);
        return std::string(reinterpret_cast<char*>(out), len);
    }

    ShmZone zone_;
    SessionCache cache_{"test"};
};

TEST_F(SessionCacheTest, FindsWhatWasAddedUntilItExpires) {
    add(1, 2000);
    EXPECT_EQ(find(1, 1000), "der of 1");
    EXPECT_EQ(find(2, 1000), "");
    EXPECT_EQ(find(1, 2000), "") << "expired";
    EXPECT_EQ(find(1, 1000), "") << "an expired session is dropped";
}

TEST_F(SessionCacheTest, TheOldestIsReplacedWhenFull) {
    // The smallest zone holds at least 8 sessions; fill it twice over.
    for (int n = 0; n < 64; ++n) add(n);
    EXPECT_EQ(find(0), "");
    EXPECT_EQ(find(63), "der of 63");
    int kept = 0;
    for (int n = 0; n < 64; ++n) kept += !find(n).empty();
    EXPECT_GE(kept, 8);
    EXPECT_LT(kept, 64);
    // The ones kept are the newest.
    for (int n = 64 - kept; n < 64; ++n) EXPECT_EQ(find(n), "der of " + std::to_string(n)) << n;
}

TEST_F(SessionCacheTest, RemovedAndReplacedById) {
    add(1);
    add(2);
    std::string i = id(1);
    cache_.remove(reinterpret_cast<const unsigned char*>(i.data()), unsigned(i.size()));
    EXPECT_EQ(find(1), "");
    EXPECT_EQ(find(2), "der of 2");
    add(2, 3000);  // the same id again: one entry, the newer
    EXPECT_EQ(find(2, 2500), "der of 2");
}

TEST_F(SessionCacheTest, AZoneKeptByAReloadKeepsItsSessions) {
    add(7);
    ASSERT_TRUE(SessionCache::init_zone(zone_, &cache_));
    EXPECT_EQ(find(7), "der of 7");
    ASSERT_TRUE(SessionCache::init_zone(zone_, nullptr));  // a new zone starts empty
    EXPECT_EQ(find(7), "");
}

}  // namespace
}  // namespace sluice::ssl
