// The split_clients module's request path: hash the key, pick the bucket.
#include "split_clients.h"

namespace sluice::http::split_clients {

uint32_t murmur_hash2(std::string_view data) {
    constexpr uint32_t kMul = 0x5bd1e995;
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    size_t len = data.size();
    uint32_t h = 0 ^ uint32_t(len);

    while (len >= 4) {
        uint32_t k = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
        k *= kMul;
        k ^= k >> 24;
        k *= kMul;
        h *= kMul;
        h ^= k;
        p += 4;
        len -= 4;
    }
    switch (len) {
    case 3: h ^= uint32_t(p[2]) << 16; [[fallthrough]];
    case 2: h ^= uint32_t(p[1]) << 8; [[fallthrough]];
    case 1:
        h ^= p[0];
        h *= kMul;
    }
    h ^= h >> 13;
    h *= kMul;
    h ^= h >> 15;
    return h;
}

const Part* choose_part(const std::vector<Part>& parts, uint32_t hash) {
    for (const Part& part : parts)
        if (hash < part.bound || part.bound == 0) return &part;
    return nullptr;
}

bool split_variable(Request& r, std::string_view& value, uintptr_t data) {
    const SplitClients& s = *reinterpret_cast<const SplitClients*>(data);
    const Part* part = choose_part(s.parts, murmur_hash2(s.key.eval(r)));
    value = part ? std::string_view(part->value) : std::string_view();
    return true;
}

}  // namespace sluice::http::split_clients
