// A request's arena: bump allocation in a block the caller provides, then in
// heap blocks of growing size, all freed at once when the arena dies.
//
// std::pmr::monotonic_buffer_resource does the same through an out-of-line
// library call (~37 instructions an allocation, two dozen allocations a
// request). This one is final, so a call through an Arena* (Request::make,
// Request::copy) is inlined, and its do_allocate, which containers reach
// through polymorphic_allocator, is a pointer bump.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <new>

namespace sluice {

class Arena final : public std::pmr::memory_resource {
public:
    Arena(void* initial, size_t size)
        : cur_(reinterpret_cast<uintptr_t>(initial)), end_(cur_ + size), next_size_(size < 4096 ? 4096 : size) {}
    ~Arena() override {
        while (blocks_) {
            Block* b = blocks_;
            blocks_ = b->next;
            ::operator delete(b);
        }
    }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;

    void* alloc(size_t bytes, size_t align) {
        uintptr_t p = (cur_ + align - 1) & ~(uintptr_t(align) - 1);
        if (p <= end_ && bytes <= end_ - p) {
            cur_ = p + bytes;
            return reinterpret_cast<void*>(p);
        }
        return grow(bytes, align);
    }

private:
    struct Block {
        Block* next;
    };

    void* do_allocate(size_t bytes, size_t align) override { return alloc(bytes, align); }
    void do_deallocate(void*, size_t, size_t) override {}
    bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

    // A new heap block, at least twice the last one, that holds `bytes`.
    void* grow(size_t bytes, size_t align) {
        size_t need = sizeof(Block) + bytes + align;
        if (need < bytes) throw std::bad_alloc();  // overflow: as operator new would
        size_t size = next_size_ > need ? next_size_ : need;
        auto* b = static_cast<Block*>(::operator new(size));
        b->next = blocks_;
        blocks_ = b;
        next_size_ = size * 2;
        cur_ = reinterpret_cast<uintptr_t>(b) + sizeof(Block);
        end_ = reinterpret_cast<uintptr_t>(b) + size;
        return alloc(bytes, align);
    }

    uintptr_t cur_;
    uintptr_t end_;
    size_t next_size_;
    Block* blocks_ = nullptr;
};

}  // namespace sluice
