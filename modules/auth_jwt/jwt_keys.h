// Verification keys: HMAC secrets, RSA and EC public keys, read from a JWKS
// document, a PEM public key or a raw secret file. A KeySet is immutable once
// installed; a location refers to it through a KeySlot so that a run-time
// fetcher (auth_jwt_key_url) can swap in a new set without touching the
// configuration.
#pragma once
#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::auth_jwt {

// The JWS algorithms verified (with OpenSSL, jwt_token.cc). Each is tied to
// one key type (and, for ES*, one curve): a key never verifies an algorithm
// of another type.
enum class Alg : uint8_t { HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, ES512 };
constexpr unsigned kAlgCount = 9;
constexpr uint32_t kAllAlgs = (1u << kAlgCount) - 1;
constexpr uint32_t alg_bit(Alg a) { return 1u << unsigned(a); }

// "HS256" -> Alg; false for "none" and everything unknown.
bool alg_from_name(std::string_view name, Alg& out);
const char* alg_name(Alg);

enum class KeyType : uint8_t { Hmac, Rsa, Ec };

struct Key {
    KeyType type = KeyType::Hmac;
    std::string kid;     // "" when the key has none
    std::string secret;  // HMAC keys: the secret bytes
    // RSA and EC keys: parsed once, when the key is loaded, so a verification
    // costs the public-key operation and nothing else. Shared: copies of a
    // KeySet (a location's own keys and a fetched JWKS) share the key.
    std::shared_ptr<EVP_PKEY> public_key;
    // The algorithms this key may verify: by its type (and curve), narrowed by
    // a JWK's "alg" member.
    uint32_t algs = 0;
};

struct KeySet {
    std::vector<Key> keys;
    // Stamped when the set is installed (install_key_set); the token cache
    // keys its entries by it, so a new set never serves an entry verified
    // with an old one.
    uint64_t generation = 0;
};

// The indirection a location verifies through. `current` is replaced, never
// modified: a request takes the pointer once and verifies against that set.
struct KeySlot {
    std::shared_ptr<const KeySet> current;
};

// Stamps `set` with a new generation (unique in the process) and makes it
// the slot's current set. What a JWKS fetcher calls after parse_jwks().
void install_key_set(KeySlot& slot, KeySet set);

// Parses a JWK Set ({"keys":[...]}) or a single JWK and appends its keys.
// kty "oct" (k), "RSA" (n, e) and "EC" (crv P-256/P-384/P-521, x, y) are
// read; keys with another kty, or "use" other than "sig", are skipped.
// Fails when the document is not JSON, a supported key is malformed, or no
// usable key is left.
bool parse_jwks(std::string_view json, KeySet& set, std::string& error);

// Appends the public key of a PEM "PUBLIC KEY" (RSA of 2048 bits or more,
// or EC on P-256, P-384, P-521). Private keys are refused.
bool parse_pem_public_key(std::string_view pem, KeySet& set, std::string& error);

// Appends an HMAC secret: the bytes as given. Empty secrets are refused.
bool add_hmac_secret(std::string_view secret, KeySet& set, std::string& error);

// Reads a key file, recognizing the format by its first non-blank bytes:
// "{" JWKS, "-----BEGIN" PEM, anything else a raw HMAC secret (one trailing
// line end is dropped from a secret that is otherwise printable text).
// `warning` is set for weak but accepted keys (short HMAC secrets).
bool load_key_file(const std::string& path, KeySet& set, std::string& error, std::string& warning);

// Strict base64url (RFC 4648 section 5, no padding, no other characters),
// as JWS compact serialization requires. False on any invalid input.
bool base64url_decode(std::string_view in, std::string& out);

}  // namespace sluice::auth_jwt
