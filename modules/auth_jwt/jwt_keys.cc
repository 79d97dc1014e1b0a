// Key loading: JWKS (RFC 7517), PEM public keys and raw HMAC secrets. Runs
// at configuration time (or when a fetched JWKS is installed), never per
// request: every key is parsed here into the EVP_PKEY that verification
// uses, once.
#include "jwt_keys.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace sluice::auth_jwt {

namespace {

struct AlgName {
    std::string_view name;
    Alg alg;
};
constexpr AlgName kAlgNames[] = {
    {"HS256", Alg::HS256}, {"HS384", Alg::HS384}, {"HS512", Alg::HS512},
    {"RS256", Alg::RS256}, {"RS384", Alg::RS384}, {"RS512", Alg::RS512},
    {"ES256", Alg::ES256}, {"ES384", Alg::ES384}, {"ES512", Alg::ES512},
};

constexpr uint32_t kHmacAlgs = alg_bit(Alg::HS256) | alg_bit(Alg::HS384) | alg_bit(Alg::HS512);
constexpr uint32_t kRsaAlgs = alg_bit(Alg::RS256) | alg_bit(Alg::RS384) | alg_bit(Alg::RS512);
constexpr unsigned kMinRsaBits = 2048;  // RFC 7518 section 3.3
constexpr size_t kMaxKeyFileSize = 1 << 20;

struct Curve {
    std::string_view jwk_name;      // "crv" of a JWK
    std::string_view openssl_name;  // OSSL_PKEY_PARAM_GROUP_NAME
    size_t coordinate_size;         // bytes of x and of y
    Alg alg;                        // the one algorithm a key on this curve verifies
};
constexpr Curve kCurves[] = {
    {"P-256", "prime256v1", 32, Alg::ES256},
    {"P-384", "secp384r1", 48, Alg::ES384},
    {"P-521", "secp521r1", 66, Alg::ES512},
};

struct JsonDeleter {
    void operator()(json_t* j) const { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;
struct PkeyDeleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
struct PkeyCtxDeleter {
    void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
struct BnDeleter {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;
struct ParamBldDeleter {
    void operator()(OSSL_PARAM_BLD* b) const { OSSL_PARAM_BLD_free(b); }
};
struct ParamDeleter {
    void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct DecoderDeleter {
    void operator()(OSSL_DECODER_CTX* d) const { OSSL_DECODER_CTX_free(d); }
};

std::atomic<uint64_t> last_generation{0};

int base64url_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

const Curve* curve_by_openssl_name(std::string_view name) {
    for (const Curve& c : kCurves)
        if (c.openssl_name == name) return &c;
    return nullptr;
}

const Curve* curve_by_jwk_name(std::string_view name) {
    for (const Curve& c : kCurves)
        if (c.jwk_name == name) return &c;
    return nullptr;
}

// Classifies an RSA or EC public key into a Key (type, algorithms) that
// takes over the parsed key.
bool key_from_pkey(PkeyPtr pkey_owned, Key& key, std::string& error) {
    EVP_PKEY* pkey = pkey_owned.get();
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < int(kMinRsaBits)) {
            error = "RSA key of " + std::to_string(bits) + " bits, at least 2048 are required";
            return false;
        }
        key.type = KeyType::Rsa;
        key.algs = kRsaAlgs;
    } else if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC) {
        char group[64];
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) {
            error = "EC key without a named curve";
            return false;
        }
        const Curve* curve = curve_by_openssl_name({group, len});
        if (!curve) {
            error = "EC key on curve \"" + std::string(group, len) + "\", only P-256, P-384 and P-521 are supported";
            return false;
        }
        key.type = KeyType::Ec;
        key.algs = alg_bit(curve->alg);
    } else {
        error = "unsupported public key type (RSA or EC expected)";
        return false;
    }
    key.public_key = std::shared_ptr<EVP_PKEY>(pkey_owned.release(), EVP_PKEY_free);
    return true;
}

bool pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, PkeyPtr& out) {
    std::unique_ptr<OSSL_PARAM, ParamDeleter> params(OSSL_PARAM_BLD_to_param(bld));
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    EVP_PKEY* pkey = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
        return false;
    out.reset(pkey);
    // Rejects points off the curve and degenerate RSA moduli.
    PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
    return check && EVP_PKEY_public_check(check.get()) == 1;
}

// A JWK member that must be a non-empty base64url string.
bool jwk_bytes(json_t* jwk, const char* member, std::string& out, std::string& error) {
    json_t* v = json_object_get(jwk, member);
    if (!json_is_string(v) || !base64url_decode({json_string_value(v), json_string_length(v)}, out) || out.empty()) {
        error = std::string("invalid or missing \"") + member + "\" in a JWK";
        return false;
    }
    return true;
}

bool rsa_jwk(json_t* jwk, Key& key, std::string& error) {
    std::string n, e;
    if (!jwk_bytes(jwk, "n", n, error) || !jwk_bytes(jwk, "e", e, error)) return false;
    BnPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), int(n.size()), nullptr));
    BnPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), int(e.size()), nullptr));
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
    PkeyPtr pkey;
    if (!bn_n || !bn_e || !bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1 ||
        !pkey_from_params("RSA", bld.get(), pkey)) {
        error = "invalid RSA key in a JWK";
        return false;
    }
    return key_from_pkey(std::move(pkey), key, error);
}

bool ec_jwk(json_t* jwk, Key& key, std::string& error) {
    json_t* crv = json_object_get(jwk, "crv");
    const Curve* curve = json_is_string(crv) ? curve_by_jwk_name(json_string_value(crv)) : nullptr;
    if (!curve) {
        error = "invalid or unsupported \"crv\" in an EC JWK (P-256, P-384 or P-521)";
        return false;
    }
    std::string x, y;
    if (!jwk_bytes(jwk, "x", x, error) || !jwk_bytes(jwk, "y", y, error)) return false;
    if (x.size() != curve->coordinate_size || y.size() != curve->coordinate_size) {
        error = "EC JWK coordinates do not match the curve " + std::string(curve->jwk_name);
        return false;
    }
    std::string point = "\x04" + x + y;  // uncompressed SEC1 point
    std::unique_ptr<OSSL_PARAM_BLD, ParamBldDeleter> bld(OSSL_PARAM_BLD_new());
    PkeyPtr pkey;
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, curve->openssl_name.data(), 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1 ||
        !pkey_from_params("EC", bld.get(), pkey)) {
        error = "invalid EC key in a JWK (not a point on " + std::string(curve->jwk_name) + ")";
        return false;
    }
    return key_from_pkey(std::move(pkey), key, error);
}

// A JWK's "alg", when present, narrows the key to that one algorithm; one
// that does not fit the key type makes the JWK invalid.
bool apply_jwk_alg(json_t* jwk, Key& key, std::string& error) {
    json_t* v = json_object_get(jwk, "alg");
    if (!v) return true;
    Alg alg;
    if (!json_is_string(v) || !alg_from_name(json_string_value(v), alg) || !(key.algs & alg_bit(alg))) {
        error = "JWK \"alg\" is not an algorithm this key type verifies";
        return false;
    }
    key.algs = alg_bit(alg);
    return true;
}

enum class JwkResult { Added, Skipped, Invalid };

JwkResult parse_jwk(json_t* jwk, KeySet& set, std::string& error) {
    if (!json_is_object(jwk)) {
        error = "a JWK is not a JSON object";
        return JwkResult::Invalid;
    }
    json_t* use = json_object_get(jwk, "use");
    if (use && !(json_is_string(use) && std::string_view(json_string_value(use)) == "sig")) return JwkResult::Skipped;
    json_t* kty = json_object_get(jwk, "kty");
    if (!json_is_string(kty)) {
        error = "a JWK without \"kty\"";
        return JwkResult::Invalid;
    }
    std::string_view type = json_string_value(kty);
    Key key;
    bool ok;
    if (type == "oct") {
        ok = jwk_bytes(jwk, "k", key.secret, error);
        key.type = KeyType::Hmac;
        key.algs = kHmacAlgs;
    } else if (type == "RSA") {
        ok = rsa_jwk(jwk, key, error);
    } else if (type == "EC") {
        ok = ec_jwk(jwk, key, error);
    } else {
        return JwkResult::Skipped;  // OKP and future types: not ours to verify with
    }
    if (!ok || !apply_jwk_alg(jwk, key, error)) return JwkResult::Invalid;
    json_t* kid = json_object_get(jwk, "kid");
    if (kid && !json_is_string(kid)) {
        error = "a JWK \"kid\" is not a string";
        return JwkResult::Invalid;
    }
    if (kid) key.kid = json_string_value(kid);
    set.keys.push_back(std::move(key));
    return JwkResult::Added;
}

bool is_printable_text(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

bool read_whole_file(const std::string& path, std::string& out, std::string& error) {
    std::unique_ptr<FILE, int (*)(FILE*)> f(fopen(path.c_str(), "rb"), fclose);
    if (!f) {
        error = "cannot open key file \"" + path + "\": " + strerror(errno);
        return false;
    }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f.get())) > 0) {
        out.append(buf, n);
        if (out.size() > kMaxKeyFileSize) {
            error = "key file \"" + path + "\" is larger than 1M";
            return false;
        }
    }
    if (ferror(f.get())) {
        error = "cannot read key file \"" + path + "\": " + strerror(errno);
        return false;
    }
    return true;
}

}  // namespace

bool alg_from_name(std::string_view name, Alg& out) {
    for (const AlgName& a : kAlgNames) {
        if (a.name != name) continue;
        out = a.alg;
        return true;
    }
    return false;
}

const char* alg_name(Alg alg) { return kAlgNames[unsigned(alg)].name.data(); }

void install_key_set(KeySlot& slot, KeySet set) {
    set.generation = ++last_generation;
    slot.current = std::make_shared<const KeySet>(std::move(set));
}

bool base64url_decode(std::string_view in, std::string& out) {
    // A length of 1 mod 4 cannot come from any byte string.
    if (in.size() % 4 == 1) return false;
    out.clear();
    out.reserve(in.size() / 4 * 3 + 2);
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        int v = base64url_value(c);
        if (v < 0) return false;
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(char((acc >> bits) & 0xff));
        }
    }
    // Canonical encoding only: the unused low bits of the last character are zero,
    // so one byte string has exactly one encoding.
    return (acc & ((1u << bits) - 1)) == 0;
}

bool parse_jwks(std::string_view json, KeySet& set, std::string& error) {
    json_error_t jerr;
    JsonPtr root(json_loadb(json.data(), json.size(), JSON_REJECT_DUPLICATES, &jerr));
    if (!root || !json_is_object(root.get())) {
        error = std::string("invalid JWKS JSON: ") + (root ? "not an object" : jerr.text);
        return false;
    }
    size_t added = 0;
    json_t* keys = json_object_get(root.get(), "keys");
    if (!keys) {  // a single JWK
        JwkResult r = parse_jwk(root.get(), set, error);
        if (r == JwkResult::Invalid) return false;
        added += r == JwkResult::Added;
    } else if (!json_is_array(keys)) {
        error = "JWKS \"keys\" is not an array";
        return false;
    } else {
        size_t i;
        json_t* jwk;
        json_array_foreach(keys, i, jwk) {
            JwkResult r = parse_jwk(jwk, set, error);
            if (r == JwkResult::Invalid) return false;
            added += r == JwkResult::Added;
        }
    }
    if (added == 0) {
        error = "no usable signing key in the JWKS (kty oct, RSA or EC)";
        return false;
    }
    return true;
}

bool parse_pem_public_key(std::string_view pem, KeySet& set, std::string& error) {
    if (pem.find("PRIVATE KEY-----") != std::string_view::npos) {
        error = "a private key: give the public key only";
        return false;
    }
    EVP_PKEY* raw = nullptr;
    std::unique_ptr<OSSL_DECODER_CTX, DecoderDeleter> decoder(
        OSSL_DECODER_CTX_new_for_pkey(&raw, "PEM", nullptr, nullptr, EVP_PKEY_PUBLIC_KEY, nullptr, nullptr));
    const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
    size_t len = pem.size();
    if (!decoder || OSSL_DECODER_from_data(decoder.get(), &data, &len) != 1 || !raw) {
        error = "invalid PEM public key";
        return false;
    }
    Key key;
    if (!key_from_pkey(PkeyPtr(raw), key, error)) return false;
    set.keys.push_back(std::move(key));
    return true;
}

bool add_hmac_secret(std::string_view secret, KeySet& set, std::string& error) {
    if (secret.empty()) {
        error = "empty HMAC secret";
        return false;
    }
    Key key;
    key.type = KeyType::Hmac;
    key.algs = kHmacAlgs;
    key.secret = secret;
    set.keys.push_back(std::move(key));
    return true;
}

bool load_key_file(const std::string& path, KeySet& set, std::string& error, std::string& warning) {
    std::string content;
    if (!read_whole_file(path, content, error)) return false;
    size_t start = content.find_first_not_of(" \t\r\n");
    std::string_view text = start == std::string::npos ? std::string_view() : std::string_view(content).substr(start);
    bool ok;
    if (text.starts_with("{")) {
        ok = parse_jwks(content, set, error);
    } else if (text.starts_with("-----BEGIN")) {
        ok = parse_pem_public_key(content, set, error);
    } else {
        std::string_view secret = content;
        if (secret.ends_with("\n")) {
            std::string_view line = secret.substr(0, secret.size() - (secret.ends_with("\r\n") ? 2 : 1));
            if (is_printable_text(line)) secret = line;  // an editor's line end, not key bytes
        }
        ok = add_hmac_secret(secret, set, error);
        if (ok && secret.size() < 32) warning = "HMAC secret shorter than 32 bytes in \"" + path + "\"";
    }
    if (!ok) error += " in key file \"" + path + "\"";
    return ok;
}

}  // namespace sluice::auth_jwt
