// The verified-token cache: one per worker, a bounded LRU keyed by the
// SHA-256 of the token and the generation of the key set that verified it.
// A hit skips parsing and the signature check (an RS256 token then costs
// what an HS256 one does); the claims are still checked on every request.
#pragma once
#include <array>
#include <cstdint>
#include <list>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "jwt_token.h"

namespace sluice::auth_jwt {

using TokenHash = std::array<unsigned char, 32>;

// SHA-256 (OpenSSL) of the token.
TokenHash hash_token(std::string_view token);

class TokenCache {
public:
    // capacity 0 disables the cache. Entries live until the token's exp and
    // never longer than max_ttl_sec.
    void configure(size_t capacity, int64_t max_ttl_sec);
    size_t capacity() const { return capacity_; }
    size_t size() const { return index_.size(); }

    // The token verified under this key-set generation, if cached and not expired.
    std::shared_ptr<const VerifiedToken> find(const TokenHash& hash, uint64_t generation, int64_t now);
    void insert(const TokenHash& hash, uint64_t generation, std::shared_ptr<const VerifiedToken> token, int64_t now);
    void clear();

private:
    struct EntryKey {
        TokenHash hash;
        uint64_t generation;
        bool operator==(const EntryKey&) const = default;  // the full hash is compared
    };
    struct EntryKeyHash {
        size_t operator()(const EntryKey& k) const;
    };
    struct Entry {
        EntryKey key;
        int64_t expires;
        std::shared_ptr<const VerifiedToken> token;
    };
    void erase(std::list<Entry>::iterator it);

    std::list<Entry> lru_;  // most recently used first
    std::unordered_map<EntryKey, std::list<Entry>::iterator, EntryKeyHash> index_;
    size_t capacity_ = 0;
    int64_t max_ttl_sec_ = 0;
};

}  // namespace sluice::auth_jwt
