#include "core/arena.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace sluice {
namespace {

TEST(Arena, AlignsAndStaysInTheInitialBlock) {
    alignas(16) char block[256];
    Arena arena(block, sizeof block);
    auto* a = static_cast<char*>(arena.alloc(3, 1));
    auto* b = static_cast<char*>(arena.alloc(8, 8));
    auto* c = static_cast<char*>(arena.alloc(16, 16));
    EXPECT_EQ(a, block);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % 8, 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(c) % 16, 0u);
    EXPECT_GE(b, a + 3);
    EXPECT_GE(c, b + 8);
    EXPECT_LE(c + 16, block + sizeof block);
}

TEST(Arena, GrowsIntoHeapBlocksThatHoldTheRequest) {
    char block[64];
    Arena arena(block, sizeof block);
    std::vector<char*> pieces;
    for (size_t size : {48u, 100u, 5000u, 20000u, 7u, 100000u}) {
        auto* p = static_cast<char*>(arena.alloc(size, 8));
        ASSERT_NE(p, nullptr);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 8, 0u);
        memset(p, int(size & 0xff), size);  // writable, and no overlap with the others (checked below)
        pieces.push_back(p);
    }
    size_t i = 0;
    for (size_t size : {48u, 100u, 5000u, 20000u, 7u, 100000u}) {
        for (size_t k = 0; k < size; k += 997) EXPECT_EQ(pieces[i][k], char(size & 0xff));
        ++i;
    }
}

TEST(Arena, ServesPmrContainers) {
    char block[128];
    Arena arena(block, sizeof block);
    std::pmr::vector<int> v(&arena);
    for (int k = 0; k < 1000; ++k) v.push_back(k);
    for (int k = 0; k < 1000; ++k) ASSERT_EQ(v[size_t(k)], k);
    std::pmr::memory_resource* base = &arena;
    EXPECT_TRUE(base->is_equal(arena));
}

}  // namespace
}  // namespace sluice
