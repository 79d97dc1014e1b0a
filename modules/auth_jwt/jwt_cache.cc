#include "jwt_cache.h"

#include <sys/random.h>

#include <chrono>

#include "http/http_cache_store.h"  // hash_key: SipHash-1-3 with a secret

namespace sluice::auth_jwt {

TokenCache::TokenCache() : index_(0, EntryKeyHash{secret_}) {
    if (getrandom(secret_, sizeof secret_, 0) != ssize_t(sizeof secret_)) {
        // No randomness: the buckets become predictable, lookups stay exact.
        auto t = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
        secret_[0] = t ^ 0x9e3779b97f4a7c15ull;
        secret_[1] = uint64_t(reinterpret_cast<uintptr_t>(this)) ^ (t << 17);
    }
}

size_t TokenCache::EntryKeyHash::operator()(const EntryKey& k) const {
    return size_t(http_cache::hash_key(secret, k.token) ^ (k.generation * 0x9e3779b97f4a7c15ull));
}

void TokenCache::configure(size_t capacity, int64_t max_ttl_sec) {
    if (capacity == capacity_ && max_ttl_sec == max_ttl_sec_) return;
    capacity_ = capacity;
    max_ttl_sec_ = max_ttl_sec;
    while (index_.size() > capacity_) erase(std::prev(lru_.end()));
}

void TokenCache::erase(std::list<Entry>::iterator it) {
    index_.erase(EntryKey{it->token, it->generation});
    lru_.erase(it);
}

std::shared_ptr<const VerifiedToken> TokenCache::find(std::string_view token, uint64_t generation, int64_t now) {
    auto found = index_.find(EntryKey{token, generation});
    if (found == index_.end()) return nullptr;
    auto it = found->second;
    if (now >= it->expires) {
        erase(it);
        return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it);
    return it->verified;
}

void TokenCache::insert(std::string_view token, uint64_t generation, std::shared_ptr<const VerifiedToken> verified,
                        int64_t now) {
    if (capacity_ == 0) return;
    int64_t expires = now + max_ttl_sec_;
    if (verified->exp && *verified->exp < expires) expires = *verified->exp;
    if (expires <= now) return;
    auto found = index_.find(EntryKey{token, generation});
    if (found != index_.end()) erase(found->second);
    if (index_.size() >= capacity_) erase(std::prev(lru_.end()));
    lru_.push_front(Entry{std::string(token), generation, expires, std::move(verified)});
    index_.emplace(EntryKey{lru_.front().token, generation}, lru_.begin());
}

void TokenCache::clear() {
    index_.clear();
    lru_.clear();
}

}  // namespace sluice::auth_jwt
