// The verified-token cache: one per worker, a bounded LRU keyed by the
// token's bytes and the generation of the key set that verified it. A hit
// skips parsing and the signature check (an RS256 token then costs what an
// HS256 one does); the claims are still checked on every request.
//
// An entry is found by the whole token, compared byte for byte, so no
// other token can ever match it; the buckets are chosen by SipHash with a
// per-worker random secret, so clients cannot pile tokens into one bucket.
// (A cryptographic digest of the token was the key before: as safe, but a
// SHA-256 over a 600-byte RS256 token costs more than the rest of the hit.)
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "jwt_token.h"

namespace sluice::auth_jwt {

class TokenCache {
public:
    TokenCache();

    // capacity 0 disables the cache. Entries live until the token's exp and
    // never longer than max_ttl_sec.
    void configure(size_t capacity, int64_t max_ttl_sec);
    size_t capacity() const { return capacity_; }
    size_t size() const { return index_.size(); }

    // The token verified under this key-set generation, if cached and not expired.
    std::shared_ptr<const VerifiedToken> find(std::string_view token, uint64_t generation, int64_t now);
    void insert(std::string_view token, uint64_t generation, std::shared_ptr<const VerifiedToken> verified,
                int64_t now);
    void clear();

private:
    struct EntryKey {
        std::string_view token;  // the entry's own copy, or the token looked up
        uint64_t generation;
        bool operator==(const EntryKey&) const = default;  // every byte is compared
    };
    struct EntryKeyHash {
        const uint64_t* secret;
        size_t operator()(const EntryKey& k) const;
    };
    struct Entry {
        std::string token;
        uint64_t generation;
        int64_t expires;
        std::shared_ptr<const VerifiedToken> verified;
    };
    void erase(std::list<Entry>::iterator it);

    uint64_t secret_[2];
    std::list<Entry> lru_;  // most recently used first; a node (and its token) never moves
    std::unordered_map<EntryKey, std::list<Entry>::iterator, EntryKeyHash> index_;
    size_t capacity_ = 0;
    int64_t max_ttl_sec_ = 0;
};

}  // namespace sluice::auth_jwt
