#include "jwt_cache.h"

#include <openssl/evp.h>

#include <cstring>

namespace sluice::auth_jwt {

TokenHash hash_token(std::string_view token) {
    TokenHash hash{};
    unsigned int len = 0;
    EVP_Digest(token.data(), token.size(), hash.data(), &len, EVP_sha256(), nullptr);
    return hash;
}

size_t TokenCache::EntryKeyHash::operator()(const EntryKey& k) const {
    // The key is already a uniform hash that clients cannot steer.
    size_t h;
    memcpy(&h, k.hash.data(), sizeof h);
    return h ^ size_t(k.generation);
}

void TokenCache::configure(size_t capacity, int64_t max_ttl_sec) {
    if (capacity == capacity_ && max_ttl_sec == max_ttl_sec_) return;
    capacity_ = capacity;
    max_ttl_sec_ = max_ttl_sec;
    while (index_.size() > capacity_) erase(std::prev(lru_.end()));
}

void TokenCache::erase(std::list<Entry>::iterator it) {
    index_.erase(it->key);
    lru_.erase(it);
}

std::shared_ptr<const VerifiedToken> TokenCache::find(const TokenHash& hash, uint64_t generation, int64_t now) {
    auto found = index_.find(EntryKey{hash, generation});
    if (found == index_.end()) return nullptr;
    auto it = found->second;
    if (now >= it->expires) {
        erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it);
    return it->token;
}

void TokenCache::insert(const TokenHash& hash, uint64_t generation, std::shared_ptr<const VerifiedToken> token,
                        int64_t now) {
    if (capacity_ == 0) return;
    int64_t expires = now + max_ttl_sec_;
    if (token->exp && *token->exp < expires) expires = *token->exp;
    if (expires <= now) return;
    EntryKey key{hash, generation};
    auto found = index_.find(key);
    if (found != index_.end()) erase(found->second);
    if (index_.size() >= capacity_) erase(std::prev(lru_.end()));
    lru_.push_front(Entry{key, expires, std::move(token)});
    index_.emplace(key, lru_.begin());
}

void TokenCache::clear() {
    index_.clear();
    lru_.clear();
}

}  // namespace sluice::auth_jwt
