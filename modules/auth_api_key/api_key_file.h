// API key files: lines of "CONSUMER SHA256-HEX-OF-KEY", '#' comments and blank
// lines. Only digests are stored, never keys, so a leaked file or core dump
// does not hand out credentials.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sluice::auth_api_key {

using Digest = std::array<uint8_t, 32>;  // SHA-256

struct DigestHash {
    // Digests are uniformly distributed: their first bytes are a good hash.
    size_t operator()(const Digest& d) const {
        size_t h;
        memcpy(&h, d.data(), sizeof h);
        return h;
    }
};

// Why a lookup by digest is safe against timing attacks: the table is probed
// with SHA-256 of what the client sent, never with the key itself. Timing may
// reveal how many leading bytes of a probe's digest equal a stored digest's,
// but the client cannot choose digests: turning such a prefix into a key is
// a SHA-256 preimage search. No key byte is ever compared early-out.
class ApiKeyTable {
public:
    // Adds the lines of one file; on error returns false with `error` saying
    // "line N: what is wrong". The table keeps the entries added before.
    bool add_file_text(std::string_view text, std::string& error);

    // The consumer whose key has this digest, or null.
    const std::string* find(const Digest& d) const {
        auto it = by_digest_.find(d);
        return it == by_digest_.end() ? nullptr : &consumers_[it->second];
    }
    size_t size() const { return by_digest_.size(); }

private:
    bool add_line(std::string_view line, std::string& error);

    std::vector<std::string> consumers_;  // one per entry; a consumer may own several keys
    std::unordered_map<Digest, size_t, DigestHash> by_digest_;
};

// Consumer names end up in logs, headers and rate-limit keys: letters,
// digits and "._-@:+", 1 to 128 characters.
bool valid_consumer_name(std::string_view name);

// 64 hex digits (either case) into 32 bytes.
bool parse_digest_hex(std::string_view hex, Digest& out);

// SHA-256 of `data`; false only if OpenSSL fails (out of memory).
bool sha256(std::string_view data, Digest& out);

}  // namespace sluice::auth_api_key
