// Free lists of fixed-size memory blocks, one per size, kept by a worker:
// per-request memory (the request's first arena block, header and body read
// buffers) is taken when a request starts or bytes arrive and given back
// when the connection goes idle, so that idle connections hold none of it
// and busy ones cost no malloc in the steady state.
#pragma once
#include <cstddef>
#include <new>

namespace sluice {

class BlockPools {
public:
    BlockPools() = default;
    BlockPools(const BlockPools&) = delete;
    BlockPools& operator=(const BlockPools&) = delete;
    ~BlockPools() {
        for (Pool& p : pools_) {
            while (p.free) {
                FreeBlock* b = p.free;
                p.free = b->next;
                ::operator delete(b);
            }
        }
    }

    // The pools of the worker of this process (there is one per process).
    static BlockPools& current() {
        static BlockPools pools;
        return pools;
    }

    void* get(size_t size) {
        Pool* p = find(size);
        if (p && p->free) {
            FreeBlock* b = p->free;
            p->free = b->next;
            --p->count;
            return b;
        }
        return ::operator new(size);
    }

    void put(void* block, size_t size) {
        Pool* p = find(size);
        if (!p || p->count >= kMaxFreePerSize) {
            ::operator delete(block);
            return;
        }
        auto* b = static_cast<FreeBlock*>(block);
        b->next = p->free;
        p->free = b;
        ++p->count;
    }

private:
    // Bounds what a burst of concurrent requests leaves cached afterwards.
    static constexpr size_t kMaxFreePerSize = 128;
    static constexpr size_t kSizes = 6;
    struct FreeBlock {
        FreeBlock* next;
    };
    struct Pool {
        size_t size = 0;
        FreeBlock* free = nullptr;
        size_t count = 0;
    };

    // A handful of sizes (request block, the configured header buffer sizes,
    // body buffer); any other size (an odd one such as a buffer grown to fit
    // pipelined bytes) is plain new/delete.
    Pool* find(size_t size) {
        for (Pool& p : pools_) {
            if (p.size == size) return &p;
            if (p.size == 0) {
                if (size % 1024 != 0) return nullptr;
                p.size = size;
                return &p;
            }
        }
        return nullptr;
    }

    Pool pools_[kSizes];
};

}  // namespace sluice
