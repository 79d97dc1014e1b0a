// JWS compact tokens: strict parsing, signature verification pinned to the
// key type, and the claim checks. No request state here: the unit tests and
// the fuzz target call these directly.
#pragma once
#include <jansson.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jwt_keys.h"

namespace sluice::auth_jwt {

struct JsonDeleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;

constexpr size_t kDefaultMaxTokenSize = 8192;

// A token that passed the strict parse and the signature check. Immutable:
// the worker's cache and the requests using it share one copy.
struct VerifiedToken {
    JsonPtr header;  // JSON objects
    JsonPtr payload;
    std::string payload_text;  // the decoded payload, as signed ($jwt_payload)
    Alg alg = Alg::HS256;
    // Numeric date claims, seconds since the epoch (validated as numbers).
    std::optional<int64_t> exp, nbf, iat;
};

// The token before its signature is checked.
struct ParsedToken {
    VerifiedToken token;
    std::string kid;  // "" without a kid header
    bool has_kid = false;
    std::string signature;          // decoded third segment
    size_t signing_input_size = 0;  // "header.payload": the bytes that were signed
};

// auth_jwt_claim_equals NAME VALUE...: the claim (or, when it is an array,
// one of its elements) must equal one of the values.
struct ClaimEquals {
    std::string name;
    std::vector<std::string> values;
};

// What a location requires of a token's claims, beyond its signature.
struct ClaimPolicy {
    uint32_t algs = kAllAlgs;  // auth_jwt_alg
    int64_t leeway_sec = 0;
    bool require_exp = false;
    const std::vector<ClaimEquals>* claim_equals = nullptr;
};

// Strict JWS compact parsing: at most max_size bytes, exactly three
// non-empty base64url segments (no padding), header and payload JSON objects
// without duplicate members, a known "alg" ("none" is refused), no "crit",
// no control characters anywhere in the decoded JSON or its strings, and
// numeric exp/nbf/iat when present, a string "typ" when present (any value).
// `why` names the first failure (static
// text, for the log).
bool parse_token(std::string_view token, size_t max_size, ParsedToken& out, const char*& why);

// Checks the signature with the keys that may verify this token: a kid in
// the header selects the keys with that kid; the algorithm must be one of
// the key's (HMAC keys HS*, RSA keys RS*, EC keys the ES* of their curve)
// and one of `algs`. Only such a key is used, with OpenSSL (HS*: HMAC compared
// in constant time; RS*: PKCS#1 v1.5; ES*: raw r || s of exactly twice the
// curve's field size). `token` is the one `parsed` came from.
bool verify_signature(std::string_view token, const ParsedToken& parsed, const KeySet& keys, uint32_t algs,
                      const char*& why);

// parse_token + verify_signature: the token shared with the cache, or null.
std::shared_ptr<const VerifiedToken> verify_token(std::string_view token, const KeySet& keys, uint32_t algs,
                                                  size_t max_size, const char*& why);

// The time claims (exp, nbf, iat) at `now` with the policy's leeway, and
// the policy's required and equal claims. Runs for every request, cached
// token or not.
bool check_claims(const VerifiedToken& token, const ClaimPolicy& policy, int64_t now, const char*& why);

// The claim at a path of member names (auth_jwt_claim_set); null if absent.
json_t* find_member_path(json_t* root, const std::vector<std::string>& path);

}  // namespace sluice::auth_jwt
