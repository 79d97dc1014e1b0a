// Token parsing and verification. Everything a client sends is untrusted
// here: every length is bounded, every JSON value's type is checked before
// use, and no signature is checked unless our own strict parse accepted the
// token and the algorithm fits the one key it is checked with.
//
// Signatures are verified with OpenSSL directly, on keys parsed once at load
// time. libjwt (still linked: configure requires it) is not on this path:
// its jwt_decode (1.10, Debian 12) re-parses the PEM key and the JSON on
// every call and refuses any "typ" but "JWT", so RFC 9068 "at+jwt" access
// tokens could not be verified with it.
#include "jwt_token.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <cmath>
#include <limits>

namespace sluice::auth_jwt {

namespace {

struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
struct EcdsaSigDeleter {
    void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigDeleter>;
struct BnDeleter {
    void operator()(BIGNUM* b) const { BN_free(b); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;
struct MdDeleter {
    void operator()(EVP_MD* m) const { EVP_MD_free(m); }
};
using MdPtr = std::unique_ptr<EVP_MD, MdDeleter>;
struct MacDeleter {
    void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
struct MacCtxDeleter {
    void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

// Deeper JSON than this in a token is refused: no legitimate claim set
// needs it, and the checks below recurse.
constexpr int kMaxJsonDepth = 16;

bool fail(const char*& why, const char* reason) {
    why = reason;
    return false;
}

// Control characters (CR, LF, NUL, ...) in a claim could end up in a header
// sent upstream; a token carrying one is refused as a whole.
bool has_control_char(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

bool json_is_safe(json_t* v, int depth) {
    if (depth > kMaxJsonDepth) return false;
    if (json_is_string(v)) return !has_control_char({json_string_value(v), json_string_length(v)});
    if (json_is_array(v)) {
        size_t i;
        json_t* item;
        json_array_foreach(v, i, item) if (!json_is_safe(item, depth + 1)) return false;
        return true;
    }
    if (json_is_object(v)) {
        const char* key;
        json_t* item;
        json_object_foreach(v, key, item) {
            if (has_control_char(key) || !json_is_safe(item, depth + 1)) return false;
        }
    }
    return true;
}

// A segment of the token: strict base64url, then a JSON object.
bool decode_json_segment(std::string_view segment, std::string& text, JsonPtr& out, const char*& why) {
    if (!base64url_decode(segment, text)) return fail(why, "invalid base64url");
    if (has_control_char(text)) return fail(why, "control character in the JSON");
    json_error_t err;
    out.reset(json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, &err));
    if (!out) return fail(why, "invalid JSON");
    if (!json_is_object(out.get())) return fail(why, "JSON is not an object");
    if (!json_is_safe(out.get(), 0)) return fail(why, "unsafe or too deeply nested JSON");
    return true;
}

// A NumericDate (RFC 7519 section 2); non-numbers are refused, reals are
// truncated and clamped into int64_t.
bool numeric_date(json_t* payload, const char* name, std::optional<int64_t>& out) {
    json_t* v = json_object_get(payload, name);
    if (!v) return true;
    if (json_is_integer(v)) {
        out = int64_t(json_integer_value(v));
        return true;
    }
    if (!json_is_real(v)) return false;
    double d = json_real_value(v);
    if (d >= 9.2e18) out = std::numeric_limits<int64_t>::max();
    else if (d <= -9.2e18) out = std::numeric_limits<int64_t>::min();
    else out = int64_t(std::floor(d));
    return true;
}

bool parse_header(json_t* header, ParsedToken& out, const char*& why) {
    json_t* alg = json_object_get(header, "alg");
    if (!json_is_string(alg)) return fail(why, "no \"alg\" in the header");
    if (!alg_from_name(json_string_value(alg), out.token.alg)) return fail(why, "unsupported or \"none\" alg");
    // RFC 7515 section 4.1.11: extensions we do not implement must not be ignored.
    if (json_object_get(header, "crit")) return fail(why, "\"crit\" header");
    // Any media type is accepted ("JWT", RFC 9068 "at+jwt", ...): a location
    // that cares checks it with auth_jwt_require on $jwt_header_typ.
    json_t* typ = json_object_get(header, "typ");
    if (typ && !json_is_string(typ)) return fail(why, "\"typ\" is not a string");
    json_t* kid = json_object_get(header, "kid");
    if (kid) {
        if (!json_is_string(kid)) return fail(why, "\"kid\" is not a string");
        out.kid = json_string_value(kid);
        out.has_kid = true;
    }
    return true;
}

bool parse_payload(json_t* payload, VerifiedToken& token, const char*& why) {
    if (!numeric_date(payload, "exp", token.exp)) return fail(why, "\"exp\" is not a number");
    if (!numeric_date(payload, "nbf", token.nbf)) return fail(why, "\"nbf\" is not a number");
    if (!numeric_date(payload, "iat", token.iat)) return fail(why, "\"iat\" is not a number");
    return true;
}

bool key_fits(const Key& key, const ParsedToken& parsed, uint32_t algs) {
    if (parsed.has_kid && key.kid != parsed.kid) return false;
    return (key.algs & algs & alg_bit(parsed.token.alg)) != 0;
}

// ---- signatures (RFC 7518 section 3) ----

enum class Digest : uint8_t { Sha256, Sha384, Sha512 };

Digest digest_of(Alg alg) {
    switch (alg) {
    case Alg::HS384: case Alg::RS384: case Alg::ES384: return Digest::Sha384;
    case Alg::HS512: case Alg::RS512: case Alg::ES512: return Digest::Sha512;
    default: return Digest::Sha256;
    }
}

// Fetched once per process: an implicit fetch (EVP_sha256()) would look the
// algorithm up again on every verification.
const EVP_MD* fetched_digest(Digest d) {
    static const MdPtr digests[] = {
        MdPtr(EVP_MD_fetch(nullptr, "SHA2-256", nullptr)),
        MdPtr(EVP_MD_fetch(nullptr, "SHA2-384", nullptr)),
        MdPtr(EVP_MD_fetch(nullptr, "SHA2-512", nullptr)),
    };
    return digests[size_t(d)].get();
}

const char* digest_name(Digest d) {
    static constexpr const char* kNames[] = {"SHA2-256", "SHA2-384", "SHA2-512"};
    return kNames[size_t(d)];
}

EVP_MAC* fetched_hmac() {
    static const std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    return mac.get();
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// HS*: the full MAC, compared in constant time; a truncated or longer
// signature is refused before any MAC is computed.
bool hmac_verifies(const Key& key, Alg alg, std::string_view input, std::string_view signature) {
    Digest d = digest_of(alg);
    const EVP_MD* md = fetched_digest(d);
    EVP_MAC* hmac = fetched_hmac();
    if (!md || !hmac || signature.size() != size_t(EVP_MD_get_size(md))) return false;
    MacCtxPtr ctx(EVP_MAC_CTX_new(hmac));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest_name(d)), 0),
        OSSL_PARAM_construct_end(),
    };
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if (!ctx || EVP_MAC_init(ctx.get(), bytes(key.secret), key.secret.size(), params) != 1 ||
        EVP_MAC_update(ctx.get(), bytes(input), input.size()) != 1 ||
        EVP_MAC_final(ctx.get(), mac, &len, sizeof mac) != 1)
        return false;
    return len == signature.size() && CRYPTO_memcmp(mac, signature.data(), len) == 0;
}

// The size of r and of s in an ES* signature: the curve's field size.
size_t ecdsa_half_size(Alg alg) {
    switch (alg) {
    case Alg::ES256: return 32;
    case Alg::ES384: return 48;
    default: return 66;  // ES512 is P-521
    }
}

// JWS carries ECDSA signatures as raw r || s of exactly twice the field
// size (RFC 7518 section 3.4), never DER; OpenSSL verifies DER.
bool ecdsa_raw_to_der(std::string_view raw, size_t half, std::string& der) {
    if (raw.size() != 2 * half) return false;
    BnPtr r(BN_bin2bn(bytes(raw), int(half), nullptr));
    BnPtr s(BN_bin2bn(bytes(raw) + half, int(half), nullptr));
    EcdsaSigPtr sig(ECDSA_SIG_new());
    if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return false;
    r.release();  // owned by sig now
    s.release();
    int len = i2d_ECDSA_SIG(sig.get(), nullptr);
    if (len <= 0) return false;
    der.resize(size_t(len));
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    return i2d_ECDSA_SIG(sig.get(), &out) == len;
}

// RS* (PKCS#1 v1.5) and ES* with the key's parsed EVP_PKEY.
bool pkey_verifies(const Key& key, Alg alg, std::string_view input, std::string_view signature) {
    EVP_PKEY* pkey = key.public_key.get();
    const EVP_MD* md = fetched_digest(digest_of(alg));
    if (!pkey || !md) return false;
    std::string der;
    if (key.type == KeyType::Ec) {
        if (!ecdsa_raw_to_der(signature, ecdsa_half_size(alg), der)) return false;
        signature = der;
    } else if (signature.size() != size_t(EVP_PKEY_get_size(pkey))) {
        return false;  // an RSA signature is exactly as long as the modulus
    }
    MdCtxPtr ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey) != 1) return false;
    if (key.type == KeyType::Rsa && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return false;
    return EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(input), input.size()) == 1;
}

// By now the algorithm is known to be one this key verifies (key_fits), so
// the header cannot pick another use of the key.
bool signature_verifies(const Key& key, Alg alg, std::string_view input, std::string_view signature) {
    if (key.type == KeyType::Hmac) return hmac_verifies(key, alg, input, signature);
    return pkey_verifies(key, alg, input, signature);
}

// Dates come from the token: any int64_t, so sums must not overflow.
int64_t saturating_add(int64_t a, int64_t b) {
    int64_t sum;
    if (!__builtin_add_overflow(a, b, &sum)) return sum;
    return b > 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
}

bool claim_matches(json_t* claim, const std::vector<std::string>& values) {
    auto equals_any = [&](json_t* v) {
        if (!json_is_string(v)) return false;
        std::string_view s(json_string_value(v), json_string_length(v));
        for (const std::string& value : values)
            if (s == value) return true;
        return false;
    };
    if (!json_is_array(claim)) return equals_any(claim);
    size_t i;
    json_t* item;
    json_array_foreach(claim, i, item) if (equals_any(item)) return true;
    return false;
}

}  // namespace

bool parse_token(std::string_view token, size_t max_size, ParsedToken& out, const char*& why) {
    if (token.size() > max_size) return fail(why, "token larger than auth_jwt_max_size");
    size_t dot1 = token.find('.');
    size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
        return fail(why, "not three segments");
    std::string_view header = token.substr(0, dot1);
    std::string_view payload = token.substr(dot1 + 1, dot2 - dot1 - 1);
    std::string_view signature = token.substr(dot2 + 1);
    if (header.empty() || payload.empty()) return fail(why, "empty segment");
    if (signature.empty()) return fail(why, "no signature");
    std::string header_text;
    if (!base64url_decode(signature, out.signature)) return fail(why, "invalid base64url signature");
    out.signing_input_size = dot2;
    VerifiedToken& t = out.token;
    return decode_json_segment(header, header_text, t.header, why) && parse_header(t.header.get(), out, why) &&
           decode_json_segment(payload, t.payload_text, t.payload, why) && parse_payload(t.payload.get(), t, why);
}

bool verify_signature(std::string_view token, const ParsedToken& parsed, const KeySet& keys, uint32_t algs,
                      const char*& why) {
    if (!(algs & alg_bit(parsed.token.alg))) return fail(why, "alg not allowed by auth_jwt_alg");
    // The signed bytes are the token's own "header.payload", never a re-encoding.
    std::string_view input = token.substr(0, parsed.signing_input_size);
    bool kid_known = false, candidate = false;
    for (const Key& key : keys.keys) {
        if (parsed.has_kid && key.kid == parsed.kid) kid_known = true;
        if (!key_fits(key, parsed, algs)) continue;
        candidate = true;
        if (signature_verifies(key, parsed.token.alg, input, parsed.signature)) return true;
    }
    if (parsed.has_kid && !kid_known) return fail(why, "unknown kid");
    if (!candidate) return fail(why, "no key for the token's alg");
    return fail(why, "signature mismatch");
}

std::shared_ptr<const VerifiedToken> verify_token(std::string_view token, const KeySet& keys, uint32_t algs,
                                                  size_t max_size, const char*& why) {
    ParsedToken parsed;
    if (!parse_token(token, max_size, parsed, why) || !verify_signature(token, parsed, keys, algs, why))
        return nullptr;
    return std::make_shared<const VerifiedToken>(std::move(parsed.token));
}

bool check_claims(const VerifiedToken& token, const ClaimPolicy& policy, int64_t now, const char*& why) {
    if (!(policy.algs & alg_bit(token.alg))) return fail(why, "alg not allowed by auth_jwt_alg");
    int64_t leeway = policy.leeway_sec;
    if (!token.exp && policy.require_exp) return fail(why, "no \"exp\" claim");
    // exp: the token is valid strictly before it (RFC 7519 section 4.1.4).
    if (token.exp && now >= saturating_add(*token.exp, leeway)) return fail(why, "expired");
    if (token.nbf && *token.nbf > saturating_add(now, leeway)) return fail(why, "not yet valid (nbf)");
    if (token.iat && *token.iat > saturating_add(now, leeway)) return fail(why, "issued in the future (iat)");
    if (policy.claim_equals) {
        for (const ClaimEquals& rule : *policy.claim_equals) {
            json_t* claim = json_object_get(token.payload.get(), rule.name.c_str());
            if (!claim || !claim_matches(claim, rule.values)) return fail(why, "claim does not match auth_jwt_claim_equals");
        }
    }
    return true;
}

json_t* find_member_path(json_t* root, const std::vector<std::string>& path) {
    json_t* v = root;
    for (const std::string& name : path) {
        if (!json_is_object(v)) return nullptr;
        v = json_object_get(v, name.c_str());
    }
    return v;
}

}  // namespace sluice::auth_jwt
