// Unit tests of the auth_jwt module's token code: strict parsing, signature
// verification pinned to the key type, claim checks, key loading (JWKS, PEM,
// secrets) and the verified-token cache. Keys and tokens are made here with
// OpenSSL's signing side (EVP_DigestSign, HMAC), never with the verifier's
// code, so a quirk of the verifier cannot make a token and its check agree.
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "../../modules/auth_jwt/jwt_cache.h"
#include "../../modules/auth_jwt/jwt_keys.h"
#include "../../modules/auth_jwt/jwt_token.h"
#include "../../modules/auth_jwt/key_url.h"

namespace sluice::auth_jwt {
namespace {

struct PkeyFree {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string b64url(std::string_view in) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(kAlphabet[(acc >> bits) & 63]);
        }
    }
    if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
    return out;
}

Pkey generate(const char* type, const char* curve = nullptr) {
    EVP_PKEY* key = curve ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, curve)
                          : EVP_PKEY_Q_keygen(nullptr, nullptr, type, size_t(2048));
    return Pkey(key);
}

std::string public_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PUBKEY(bio.get(), key);
    char* data;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, size_t(len));
}

std::string private_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data;
    long len = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, size_t(len));
}

const EVP_MD* digest_of(std::string_view alg) {
    if (alg.ends_with("384")) return EVP_sha384();
    if (alg.ends_with("512")) return EVP_sha512();
    return EVP_sha256();
}

std::string hmac_sign(std::string_view alg, std::string_view secret, std::string_view input) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(digest_of(alg), secret.data(), int(secret.size()), reinterpret_cast<const unsigned char*>(input.data()),
         input.size(), mac, &len);
    return std::string(reinterpret_cast<char*>(mac), len);
}

// RS*: PKCS#1 v1.5; ES*: the DER signature turned into JWS's fixed-size r || s.
std::string pkey_sign(std::string_view alg, EVP_PKEY* key, std::string_view input) {
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, digest_of(alg), nullptr, key), 1);
    size_t len = 0;
    auto* in = reinterpret_cast<const unsigned char*>(input.data());
    EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size());
    std::string sig(len, '\0');
    EXPECT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()), 1);
    sig.resize(len);
    if (alg[0] != 'E') return sig;
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* der = d2i_ECDSA_SIG(nullptr, &p, long(sig.size()));
    int half = (EVP_PKEY_get_bits(key) + 7) / 8;
    std::string raw(size_t(2 * half), '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(der), reinterpret_cast<unsigned char*>(raw.data()), half);
    BN_bn2binpad(ECDSA_SIG_get0_s(der), reinterpret_cast<unsigned char*>(raw.data()) + half, half);
    ECDSA_SIG_free(der);
    return raw;
}

std::string signing_input(std::string_view header, std::string_view payload) {
    return b64url(header) + "." + b64url(payload);
}

std::string hs_token(std::string_view secret, std::string_view payload, std::string_view header = R"({"alg":"HS256","typ":"JWT"})",
                     std::string_view alg = "HS256") {
    std::string input = signing_input(header, payload);
    return input + "." + b64url(hmac_sign(alg, secret, input));
}

std::string pk_token(EVP_PKEY* key, std::string_view alg, std::string_view payload, std::string_view kid = "") {
    std::string header = R"({"alg":")" + std::string(alg) + R"(","typ":"JWT")";
    if (!kid.empty()) header += R"(,"kid":")" + std::string(kid) + "\"";
    header += "}";
    std::string input = signing_input(header, payload);
    return input + "." + b64url(pkey_sign(alg, key, input));
}

std::string bn_param(EVP_PKEY* key, const char* name, int pad = 0) {
    BIGNUM* bn = nullptr;
    EVP_PKEY_get_bn_param(key, name, &bn);
    std::string out(size_t(pad ? pad : BN_num_bytes(bn)), '\0');
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), int(out.size()));
    BN_free(bn);
    return out;
}

std::string rsa_jwk(EVP_PKEY* key, std::string_view kid) {
    return R"({"kty":"RSA","kid":")" + std::string(kid) + R"(","n":")" + b64url(bn_param(key, OSSL_PKEY_PARAM_RSA_N)) +
           R"(","e":")" + b64url(bn_param(key, OSSL_PKEY_PARAM_RSA_E)) + "\"}";
}

std::string ec_jwk(EVP_PKEY* key, std::string_view kid, std::string_view crv = "P-256", int size = 32) {
    return R"({"kty":"EC","crv":")" + std::string(crv) + R"(","kid":")" + std::string(kid) + R"(","x":")" +
           b64url(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, size)) + R"(","y":")" +
           b64url(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, size)) + "\"}";
}

constexpr std::string_view kSecret = "0123456789abcdef0123456789abcdef";

int64_t now() { return int64_t(time(nullptr)); }
std::string with_time(std::string_view claims, const char* name, int64_t t) {
    return "{" + std::string(claims) + (claims.empty() ? "" : ",") + "\"" + name + "\":" + std::to_string(t) + "}";
}

class AuthJwtTokenTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        rsa_ = generate("RSA").release();
        ec_ = generate("EC", "P-256").release();
    }
    static void TearDownTestSuite() {
        EVP_PKEY_free(rsa_);
        EVP_PKEY_free(ec_);
    }

    void SetUp() override {
        std::string error;
        ASSERT_TRUE(add_hmac_secret(kSecret, hmac_keys_, error)) << error;
        ASSERT_TRUE(parse_pem_public_key(public_pem(rsa_), rsa_keys_, error)) << error;
        ASSERT_TRUE(parse_pem_public_key(public_pem(ec_), ec_keys_, error)) << error;
    }

    // Verification and the claim checks, as the access handler runs them.
    bool accepts(std::string_view token, const KeySet& keys, const ClaimPolicy& policy = {}) {
        why_ = "";
        auto verified = verify_token(token, keys, policy.algs, kDefaultMaxTokenSize, why_);
        return verified && check_claims(*verified, policy, now(), why_);
    }

    static EVP_PKEY* rsa_;
    static EVP_PKEY* ec_;
    KeySet hmac_keys_, rsa_keys_, ec_keys_;
    const char* why_ = "";
};
EVP_PKEY* AuthJwtTokenTest::rsa_ = nullptr;
EVP_PKEY* AuthJwtTokenTest::ec_ = nullptr;

TEST_F(AuthJwtTokenTest, ValidTokensOfEachKeyType) {
    std::string payload = with_time(R"("sub":"alice")", "exp", now() + 60);
    EXPECT_TRUE(accepts(hs_token(kSecret, payload), hmac_keys_)) << why_;
    EXPECT_TRUE(accepts(pk_token(rsa_, "RS256", payload), rsa_keys_)) << why_;
    EXPECT_TRUE(accepts(pk_token(rsa_, "RS512", payload), rsa_keys_)) << why_;
    EXPECT_TRUE(accepts(pk_token(ec_, "ES256", payload), ec_keys_)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, payload, R"({"alg":"HS512"})", "HS512"), hmac_keys_)) << why_;
}

TEST_F(AuthJwtTokenTest, VerifiedTokenKeepsPayloadAndDates) {
    std::string payload = R"({"sub":"alice","exp":4102444800,"nbf":1000.9,"iat":1000})";
    const char* why = "";
    auto t = verify_token(hs_token(kSecret, payload), hmac_keys_, kAllAlgs, kDefaultMaxTokenSize, why);
    ASSERT_TRUE(t) << why;
    EXPECT_EQ(t->payload_text, payload);
    EXPECT_EQ(t->exp, 4102444800);
    EXPECT_EQ(t->nbf, 1000);
    EXPECT_EQ(t->alg, Alg::HS256);
    EXPECT_STREQ(json_string_value(json_object_get(t->payload.get(), "sub")), "alice");
}

TEST_F(AuthJwtTokenTest, TimeClaims) {
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "exp", now() - 10)), hmac_keys_));
    EXPECT_STREQ(why_, "expired");
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "exp", now())), hmac_keys_));  // exp is exclusive
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "nbf", now() + 60)), hmac_keys_));
    EXPECT_STREQ(why_, "not yet valid (nbf)");
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "iat", now() + 60)), hmac_keys_));
    EXPECT_STREQ(why_, "issued in the future (iat)");
    EXPECT_TRUE(accepts(hs_token(kSecret, with_time("", "iat", now() - 60)), hmac_keys_)) << why_;
    // Extreme dates neither overflow nor pass.
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"exp":-9223372036854775807})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"nbf":1e300})"), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, LeewayAppliesToEveryTimeClaim) {
    ClaimPolicy policy;
    policy.leeway_sec = 30;
    EXPECT_TRUE(accepts(hs_token(kSecret, with_time("", "exp", now() - 10)), hmac_keys_, policy)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, with_time("", "nbf", now() + 10)), hmac_keys_, policy)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, with_time("", "iat", now() + 10)), hmac_keys_, policy)) << why_;
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "exp", now() - 40)), hmac_keys_, policy));
    EXPECT_FALSE(accepts(hs_token(kSecret, with_time("", "nbf", now() + 40)), hmac_keys_, policy));
}

TEST_F(AuthJwtTokenTest, NonNumericDatesAreInvalid) {
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"exp":"4102444800"})"), hmac_keys_));
    EXPECT_STREQ(why_, "\"exp\" is not a number");
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"nbf":true})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"iat":null})"), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, RequireExp) {
    ClaimPolicy policy;
    policy.require_exp = true;
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"a"})"), hmac_keys_, policy));
    EXPECT_STREQ(why_, "no \"exp\" claim");
    EXPECT_TRUE(accepts(hs_token(kSecret, with_time(R"("sub":"a")", "exp", now() + 60)), hmac_keys_, policy)) << why_;
}

TEST_F(AuthJwtTokenTest, ClaimEqualsIssuerAndAudience) {
    std::vector<ClaimEquals> rules = {{"iss", {"https://idp.example"}}, {"aud", {"api", "admin"}}};
    ClaimPolicy policy;
    policy.claim_equals = &rules;
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"iss":"https://idp.example","aud":"api"})"), hmac_keys_, policy)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"iss":"https://idp.example","aud":["web","admin"]})"), hmac_keys_, policy))
        << why_;
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"iss":"https://evil.example","aud":"api"})"), hmac_keys_, policy));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"iss":"https://idp.example","aud":["web","mobile"]})"), hmac_keys_, policy));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"iss":"https://idp.example"})"), hmac_keys_, policy));  // no aud
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"iss":"https://idp.example","aud":[["api"]]})"), hmac_keys_, policy));
}

TEST_F(AuthJwtTokenTest, AlgNoneNeverVerifies) {
    std::string unsigned_input = signing_input(R"({"alg":"none"})", R"({"sub":"mallory"})");
    EXPECT_FALSE(accepts(unsigned_input + ".", hmac_keys_));
    EXPECT_FALSE(accepts(unsigned_input + "." + b64url(hmac_sign("HS256", kSecret, unsigned_input)), hmac_keys_));
    EXPECT_STREQ(why_, "unsupported or \"none\" alg");
    EXPECT_FALSE(accepts(signing_input(R"({"alg":"None"})", "{}") + ".AAAA", hmac_keys_));
    EXPECT_FALSE(accepts(signing_input(R"({"typ":"JWT"})", "{}") + ".AAAA", hmac_keys_));  // no alg
}

TEST_F(AuthJwtTokenTest, RsaPublicKeyIsNeverAnHmacSecret) {
    // The classic confusion: HS256 "signed" with the PEM that verifies RS256.
    std::string pem = public_pem(rsa_);
    std::string forged = hs_token(pem, R"({"sub":"mallory"})");
    EXPECT_FALSE(accepts(forged, rsa_keys_));
    EXPECT_STREQ(why_, "no key for the token's alg");
    // Nor when the set also holds an HMAC secret: the RSA key is not tried as one.
    KeySet mixed = rsa_keys_;
    std::string error;
    ASSERT_TRUE(add_hmac_secret(kSecret, mixed, error));
    EXPECT_FALSE(accepts(forged, mixed));
    EXPECT_STREQ(why_, "signature mismatch");
}

TEST_F(AuthJwtTokenTest, AlgorithmIsPinnedByKeyTypeAndCurve) {
    EXPECT_FALSE(accepts(pk_token(rsa_, "RS256", "{}"), ec_keys_));
    EXPECT_FALSE(accepts(pk_token(ec_, "ES256", "{}"), rsa_keys_));
    // An ES384 header over a P-256 key: refused before any verification.
    EXPECT_FALSE(accepts(pk_token(ec_, "ES384", "{}"), ec_keys_));
    EXPECT_STREQ(why_, "no key for the token's alg");
    ClaimPolicy rs256_only;
    rs256_only.algs = alg_bit(Alg::RS256);
    EXPECT_TRUE(accepts(pk_token(rsa_, "RS256", "{}"), rsa_keys_, rs256_only)) << why_;
    EXPECT_FALSE(accepts(pk_token(rsa_, "RS512", "{}"), rsa_keys_, rs256_only));
    EXPECT_STREQ(why_, "alg not allowed by auth_jwt_alg");
}

TEST_F(AuthJwtTokenTest, KidSelectsTheKey) {
    Pkey other = generate("RSA");
    std::string jwks = R"({"keys":[)" + rsa_jwk(other.get(), "old") + "," + rsa_jwk(rsa_, "new") + "," +
                       ec_jwk(ec_, "ec1") + "]}";
    KeySet set;
    std::string error;
    ASSERT_TRUE(parse_jwks(jwks, set, error)) << error;
    ASSERT_EQ(set.keys.size(), 3u);
    EXPECT_TRUE(accepts(pk_token(rsa_, "RS256", "{}", "new"), set)) << why_;
    EXPECT_TRUE(accepts(pk_token(rsa_, "RS256", "{}"), set)) << why_;  // no kid: every RSA key is tried
    EXPECT_TRUE(accepts(pk_token(ec_, "ES256", "{}", "ec1"), set)) << why_;
    EXPECT_FALSE(accepts(pk_token(rsa_, "RS256", "{}", "old"), set));  // the kid names another key
    EXPECT_STREQ(why_, "signature mismatch");
    EXPECT_FALSE(accepts(pk_token(rsa_, "RS256", "{}", "nope"), set));
    EXPECT_STREQ(why_, "unknown kid");
}

TEST_F(AuthJwtTokenTest, TamperedTokensFail) {
    std::string token = pk_token(rsa_, "RS256", R"({"sub":"alice","admin":false})");
    size_t dot1 = token.find('.'), dot2 = token.rfind('.');
    std::string tampered = token.substr(0, dot1 + 1) + b64url(R"({"sub":"alice","admin":true})") + token.substr(dot2);
    EXPECT_FALSE(accepts(tampered, rsa_keys_));
    EXPECT_STREQ(why_, "signature mismatch");
    std::string hs = hs_token(kSecret, R"({"sub":"alice"})");
    hs.back() = hs.back() == 'A' ? 'B' : 'A';
    EXPECT_FALSE(accepts(hs, hmac_keys_));
    EXPECT_FALSE(accepts(hs_token("another secret of 32 bytes......", R"({"sub":"a"})"), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, StrippedSignatureAndSegmentCount) {
    std::string token = hs_token(kSecret, R"({"sub":"a"})");
    std::string input = token.substr(0, token.rfind('.'));
    EXPECT_FALSE(accepts(input + ".", hmac_keys_));
    EXPECT_STREQ(why_, "no signature");
    EXPECT_FALSE(accepts(input, hmac_keys_));
    EXPECT_STREQ(why_, "not three segments");
    EXPECT_FALSE(accepts(token + ".", hmac_keys_));
    EXPECT_FALSE(accepts(token + ".AAAA.BBBB", hmac_keys_));  // JWE-shaped
    EXPECT_FALSE(accepts("." + token.substr(token.find('.')), hmac_keys_));
    EXPECT_FALSE(accepts("", hmac_keys_));
    EXPECT_FALSE(accepts("..", hmac_keys_));
}

TEST_F(AuthJwtTokenTest, StrictBase64url) {
    std::string token = hs_token(kSecret, R"({"sub":"ab"})");
    size_t dot1 = token.find('.');
    EXPECT_FALSE(accepts(token.substr(0, dot1) + "=" + token.substr(dot1), hmac_keys_));  // padding
    std::string plus = token;
    plus[1] = '+';
    EXPECT_FALSE(accepts(plus, hmac_keys_));
    EXPECT_STREQ(why_, "invalid base64url");
    std::string space = token;
    space.insert(dot1, " ");
    EXPECT_FALSE(accepts(space, hmac_keys_));
    std::string out;
    EXPECT_TRUE(base64url_decode("YWI", out));
    EXPECT_EQ(out, "ab");
    EXPECT_FALSE(base64url_decode("YWJ", out));  // non-zero unused bits: not canonical
    EXPECT_FALSE(base64url_decode("YWI=", out));
    EXPECT_FALSE(base64url_decode("Y", out));
    EXPECT_FALSE(base64url_decode(std::string_view("YW\0I", 4), out));
    EXPECT_TRUE(base64url_decode("-_-_", out));
    EXPECT_EQ(out, "\xfb\xff\xbf");
}

TEST_F(AuthJwtTokenTest, NonJsonOrNonObjectSegments) {
    auto token = [](std::string_view header, std::string_view payload) {
        std::string input = signing_input(header, payload);
        return input + "." + b64url(hmac_sign("HS256", kSecret, input));
    };
    EXPECT_FALSE(accepts(token(R"({"alg":"HS256"})", "not json"), hmac_keys_));
    EXPECT_STREQ(why_, "invalid JSON");
    EXPECT_FALSE(accepts(token(R"({"alg":"HS256"})", R"(["sub"])"), hmac_keys_));
    EXPECT_STREQ(why_, "JSON is not an object");
    EXPECT_FALSE(accepts(token(R"("HS256")", "{}"), hmac_keys_));
    EXPECT_FALSE(accepts(token(R"({"alg":"HS256"})", R"({"sub":"a","sub":"b"})"), hmac_keys_));  // duplicates
    EXPECT_FALSE(accepts(token(R"({"alg":"HS256","kid":7})", "{}"), hmac_keys_));
    std::string deep(40, '[');
    EXPECT_FALSE(accepts(token(R"({"alg":"HS256"})", R"({"a":)" + deep + std::string(40, ']') + "}"), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, OversizedToken) {
    std::string big = hs_token(kSecret, R"({"pad":")" + std::string(9000, 'x') + "\"}");
    EXPECT_FALSE(accepts(big, hmac_keys_));
    EXPECT_STREQ(why_, "token larger than auth_jwt_max_size");
    const char* why = "";
    EXPECT_TRUE(verify_token(big, hmac_keys_, kAllAlgs, 16384, why)) << why;
}

TEST_F(AuthJwtTokenTest, CritHeaderIsRefused) {
    EXPECT_FALSE(accepts(hs_token(kSecret, "{}", R"({"alg":"HS256","crit":["exp"],"exp":1})"), hmac_keys_));
    EXPECT_STREQ(why_, "\"crit\" header");
    EXPECT_FALSE(accepts(hs_token(kSecret, "{}", R"({"alg":"HS256","crit":[]})"), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, ControlCharactersInClaimsAreRefused) {
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"alice\r\nX-Admin: 1"})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"a\nb"})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"a\u0000b"})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"a\u007fb"})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"groups":["ok","bad\r"]})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"o":{"k\n":"v"}})"), hmac_keys_));
    EXPECT_FALSE(accepts(hs_token(kSecret, "{\"sub\":\"a\",\r\n\"x\":1}"), hmac_keys_));  // raw CR LF between members
    EXPECT_FALSE(accepts(hs_token(kSecret, "{}", "{\"alg\":\"HS256\",\"kid\":\"a\\r\\n\"}"), hmac_keys_));
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"sub":"caf\u00e9 \u2603"})"), hmac_keys_)) << why_;  // UTF-8 is fine
}

TEST_F(AuthJwtTokenTest, AnyTypVerifiesIncludingRfc9068AccessTokens) {
    // libjwt 1.10 refused any "typ" but "JWT"; verification no longer goes
    // through it, so RFC 9068 "at+jwt" access tokens verify.
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"sub":"a"})", R"({"alg":"HS256","typ":"at+jwt"})"), hmac_keys_)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"sub":"a"})", R"({"alg":"HS256","typ":"jwt"})"), hmac_keys_)) << why_;
    EXPECT_TRUE(accepts(hs_token(kSecret, R"({"sub":"a"})", R"({"alg":"HS256"})"), hmac_keys_)) << why_;
    std::string input = signing_input(R"({"alg":"RS256","typ":"at+jwt","kid":"k"})", R"({"sub":"a"})");
    KeySet set;
    std::string error;
    ASSERT_TRUE(parse_jwks(R"({"keys":[)" + rsa_jwk(rsa_, "k") + "]}", set, error)) << error;
    EXPECT_TRUE(accepts(input + "." + b64url(pkey_sign("RS256", rsa_, input)), set)) << why_;
    // "typ" must still be a string.
    EXPECT_FALSE(accepts(hs_token(kSecret, R"({"sub":"a"})", R"({"alg":"HS256","typ":7})"), hmac_keys_));
    EXPECT_STREQ(why_, "\"typ\" is not a string");
}

// The DER form OpenSSL produces, which JWS does not use.
std::string der_sign(EVP_PKEY* key, std::string_view input) {
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key);
    size_t len = 0;
    auto* in = reinterpret_cast<const unsigned char*>(input.data());
    EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size());
    sig.resize(len);
    return sig;
}

TEST_F(AuthJwtTokenTest, EcdsaSignatureMustBeRawOfExactLength) {
    std::string input = signing_input(R"({"alg":"ES256"})", R"({"sub":"a"})");
    std::string raw = pkey_sign("ES256", ec_, input);
    ASSERT_EQ(raw.size(), 64u);
    EXPECT_TRUE(accepts(input + "." + b64url(raw), ec_keys_)) << why_;
    // One byte short, one byte more, a leading zero (same r and s, padded),
    // r alone: all refused.
    EXPECT_FALSE(accepts(input + "." + b64url(raw.substr(0, 63)), ec_keys_));
    EXPECT_STREQ(why_, "signature mismatch");
    EXPECT_FALSE(accepts(input + "." + b64url(raw + std::string(1, '\0')), ec_keys_));
    EXPECT_FALSE(accepts(input + "." + b64url(std::string(1, '\0') + raw), ec_keys_));
    EXPECT_FALSE(accepts(input + "." + b64url(raw.substr(0, 32)), ec_keys_));
    // r and s of zero are no signature.
    EXPECT_FALSE(accepts(input + "." + b64url(std::string(64, '\0')), ec_keys_));
    // P-384 length on a P-256 token.
    EXPECT_FALSE(accepts(input + "." + b64url(raw + std::string(32, '\x01')), ec_keys_));
}

TEST_F(AuthJwtTokenTest, DerEncodedEcdsaSignatureIsRefused) {
    std::string input = signing_input(R"({"alg":"ES256"})", R"({"sub":"a"})");
    std::string der = der_sign(ec_, input);
    ASSERT_GT(der.size(), 64u);  // 0x30 len 0x02 ... : never the raw 64 bytes here
    EXPECT_FALSE(accepts(input + "." + b64url(der), ec_keys_));
    EXPECT_STREQ(why_, "signature mismatch");
}

TEST_F(AuthJwtTokenTest, SignatureLengthsAreExact) {
    std::string hs = hs_token(kSecret, R"({"sub":"a"})");
    std::string input = hs.substr(0, hs.rfind('.'));
    std::string mac = hmac_sign("HS256", kSecret, input);
    EXPECT_FALSE(accepts(input + "." + b64url(mac.substr(0, 16)), hmac_keys_));  // truncated MAC
    EXPECT_FALSE(accepts(input + "." + b64url(mac + "x"), hmac_keys_));
    std::string rs_input = signing_input(R"({"alg":"RS256"})", "{}");
    std::string rs = pkey_sign("RS256", rsa_, rs_input);
    EXPECT_TRUE(accepts(rs_input + "." + b64url(rs), rsa_keys_)) << why_;
    EXPECT_FALSE(accepts(rs_input + "." + b64url(std::string(1, '\0') + rs), rsa_keys_));
    EXPECT_FALSE(accepts(rs_input + "." + b64url(rs.substr(1)), rsa_keys_));
}

TEST_F(AuthJwtTokenTest, EveryAlgorithmVerifies) {
    Pkey p384 = generate("EC", "P-384");
    Pkey p521 = generate("EC", "P-521");
    KeySet ec384, ec521;
    std::string error;
    ASSERT_TRUE(parse_pem_public_key(public_pem(p384.get()), ec384, error)) << error;
    ASSERT_TRUE(parse_pem_public_key(public_pem(p521.get()), ec521, error)) << error;
    for (const char* alg : {"HS256", "HS384", "HS512"}) {
        std::string header = std::string(R"({"alg":")") + alg + "\"}";
        EXPECT_TRUE(accepts(hs_token(kSecret, "{}", header, alg), hmac_keys_)) << alg << ": " << why_;
    }
    for (const char* alg : {"RS256", "RS384", "RS512"})
        EXPECT_TRUE(accepts(pk_token(rsa_, alg, "{}"), rsa_keys_)) << alg << ": " << why_;
    EXPECT_TRUE(accepts(pk_token(p384.get(), "ES384", "{}"), ec384)) << why_;
    EXPECT_TRUE(accepts(pk_token(p521.get(), "ES512", "{}"), ec521)) << why_;
    EXPECT_FALSE(accepts(pk_token(p521.get(), "ES256", "{}"), ec521));  // curve and alg must match
    // HS384 MAC under an HS256 header: a MAC of the wrong length.
    std::string input = signing_input(R"({"alg":"HS256"})", "{}");
    EXPECT_FALSE(accepts(input + "." + b64url(hmac_sign("HS384", kSecret, input)), hmac_keys_));
}

TEST_F(AuthJwtTokenTest, FindMemberPath) {
    const char* why = "";
    auto t = verify_token(hs_token(kSecret, R"({"a":{"b":{"c":"deep"}},"s":"x"})"), hmac_keys_, kAllAlgs,
                          kDefaultMaxTokenSize, why);
    ASSERT_TRUE(t) << why;
    json_t* v = find_member_path(t->payload.get(), {"a", "b", "c"});
    ASSERT_TRUE(json_is_string(v));
    EXPECT_STREQ(json_string_value(v), "deep");
    EXPECT_EQ(find_member_path(t->payload.get(), {"s", "x"}), nullptr);
    EXPECT_EQ(find_member_path(t->payload.get(), {"missing"}), nullptr);
}

// ---- keys ----

TEST(AuthJwtKeysTest, JwksKeyTypesAndErrors) {
    Pkey rsa = generate("RSA");
    Pkey p384 = generate("EC", "P-384");
    KeySet set;
    std::string error;
    std::string jwks = R"({"keys":[{"kty":"oct","k":")" + b64url(kSecret) + R"(","kid":"h"},)" + rsa_jwk(rsa.get(), "r") +
                       "," + ec_jwk(p384.get(), "e", "P-384", 48) +
                       R"(,{"kty":"OKP","crv":"Ed25519","x":"AAAA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}]})";
    ASSERT_TRUE(parse_jwks(jwks, set, error)) << error;
    ASSERT_EQ(set.keys.size(), 3u);  // OKP and the encryption key are skipped
    EXPECT_EQ(set.keys[0].type, KeyType::Hmac);
    EXPECT_EQ(set.keys[0].secret, kSecret);
    EXPECT_EQ(set.keys[1].type, KeyType::Rsa);
    EXPECT_EQ(set.keys[2].type, KeyType::Ec);
    EXPECT_EQ(set.keys[2].algs, alg_bit(Alg::ES384));
    EXPECT_EQ(set.keys[2].kid, "e");

    auto fails = [](std::string_view json) {
        KeySet s;
        std::string e;
        bool ok = parse_jwks(json, s, e);
        EXPECT_FALSE(e.empty() && !ok);
        return !ok;
    };
    EXPECT_TRUE(fails("not json"));
    EXPECT_TRUE(fails("[]"));
    EXPECT_TRUE(fails(R"({"keys":{}})"));
    EXPECT_TRUE(fails(R"({"keys":[]})"));
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"oct"}]})"));
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"oct","k":"a+b"}]})"));
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"oct","k":"YWJj","alg":"RS256"}]})"));  // alg of another key type
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"RSA","n":"AQAB"}]})"));
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]})"));  // a 17-bit modulus
    // A point that is not on the curve.
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"EC","crv":"P-256","x":")" + b64url(std::string(32, '\x01')) + R"(","y":")" +
                      b64url(std::string(32, '\x02')) + "\"}]}"));
    EXPECT_TRUE(fails(R"({"keys":[{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}]})"));
}

TEST(AuthJwtKeysTest, JwkAlgNarrowsTheKey) {
    KeySet set;
    std::string error;
    ASSERT_TRUE(parse_jwks(R"({"kty":"oct","k":")" + b64url(kSecret) + R"(","alg":"HS512"})", set, error)) << error;
    ASSERT_EQ(set.keys.size(), 1u);
    EXPECT_EQ(set.keys[0].algs, alg_bit(Alg::HS512));
    const char* why = "";
    EXPECT_FALSE(verify_token(hs_token(kSecret, "{}"), set, kAllAlgs, kDefaultMaxTokenSize, why));
    EXPECT_TRUE(verify_token(hs_token(kSecret, "{}", R"({"alg":"HS512"})", "HS512"), set, kAllAlgs,
                             kDefaultMaxTokenSize, why))
        << why;
}

TEST(AuthJwtKeysTest, PemKeys) {
    KeySet set;
    std::string error;
    Pkey rsa = generate("RSA");
    EXPECT_FALSE(parse_pem_public_key(private_pem(rsa.get()), set, error));
    EXPECT_NE(error.find("private key"), std::string::npos);
    EXPECT_FALSE(parse_pem_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", set, error));
    Pkey small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t(1024)));
    EXPECT_FALSE(parse_pem_public_key(public_pem(small.get()), set, error));
    EXPECT_NE(error.find("2048"), std::string::npos);
    Pkey k1 = generate("EC", "secp256k1");
    EXPECT_FALSE(parse_pem_public_key(public_pem(k1.get()), set, error));
    EXPECT_TRUE(set.keys.empty());
    Pkey p521 = generate("EC", "P-521");
    ASSERT_TRUE(parse_pem_public_key(public_pem(p521.get()), set, error)) << error;
    EXPECT_EQ(set.keys[0].algs, alg_bit(Alg::ES512));
    const char* why = "";
    EXPECT_TRUE(verify_token(pk_token(p521.get(), "ES512", "{}"), set, kAllAlgs, kDefaultMaxTokenSize, why)) << why;
}

TEST(AuthJwtKeysTest, KeyFileFormats) {
    char dir[] = "/tmp/auth-jwt-unit-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir));
    auto write = [&](const char* name, std::string_view content) {
        std::string path = std::string(dir) + "/" + name;
        FILE* f = fopen(path.c_str(), "wb");
        fwrite(content.data(), 1, content.size(), f);
        fclose(f);
        return path;
    };
    KeySet set;
    std::string error, warning;
    ASSERT_TRUE(load_key_file(write("secret", std::string(kSecret) + "\n"), set, error, warning)) << error;
    EXPECT_EQ(set.keys.back().secret, kSecret);  // an editor's newline is not part of it
    EXPECT_TRUE(warning.empty());
    ASSERT_TRUE(load_key_file(write("binary", std::string("\x01\x02\n", 3)), set, error, warning)) << error;
    EXPECT_EQ(set.keys.back().secret, std::string("\x01\x02\n", 3));  // binary: byte for byte
    EXPECT_FALSE(warning.empty());  // short
    Pkey ec = generate("EC", "P-256");
    ASSERT_TRUE(load_key_file(write("ec.pem", public_pem(ec.get())), set, error, warning)) << error;
    EXPECT_EQ(set.keys.back().type, KeyType::Ec);
    ASSERT_TRUE(load_key_file(write("jwks.json", "\n {\"keys\":[" + ec_jwk(ec.get(), "k") + "]}"), set, error, warning))
        << error;
    EXPECT_EQ(set.keys.back().kid, "k");
    EXPECT_FALSE(load_key_file(write("bad.json", "{\"keys\":"), set, error, warning));
    EXPECT_NE(error.find("bad.json"), std::string::npos);
    EXPECT_FALSE(load_key_file(write("empty", ""), set, error, warning));
    EXPECT_FALSE(load_key_file(std::string(dir) + "/missing", set, error, warning));
    EXPECT_NE(error.find("missing"), std::string::npos);
    for (const char* f : {"secret", "binary", "ec.pem", "jwks.json", "bad.json", "empty"})
        remove((std::string(dir) + "/" + f).c_str());
    rmdir(dir);
}

TEST(AuthJwtKeysTest, InstallStampsNewGenerations) {
    KeySlot slot;
    install_key_set(slot, KeySet{});
    auto first = slot.current;
    install_key_set(slot, KeySet{});
    ASSERT_TRUE(first && slot.current);
    EXPECT_GT(slot.current->generation, first->generation);
}

// ---- the cache ----

std::shared_ptr<const VerifiedToken> token_expiring(std::optional<int64_t> exp) {
    auto t = std::make_shared<VerifiedToken>();
    t->exp = exp;
    return t;
}

TEST(AuthJwtCacheTest, HitsMissesAndExpiry) {
    TokenCache cache;
    cache.configure(8, 300);
    std::string_view a = "token-a", b = "token-b";
    auto ta = token_expiring(1000);
    cache.insert(a, 1, ta, 900);
    EXPECT_EQ(cache.find(a, 1, 950), ta);
    EXPECT_EQ(cache.find(b, 1, 950), nullptr);
    EXPECT_EQ(cache.find(a, 2, 950), nullptr);  // another key-set generation
    EXPECT_EQ(cache.find(a, 1, 1000), nullptr);  // the token's exp
    EXPECT_EQ(cache.size(), 0u);
    cache.insert(b, 1, token_expiring(std::nullopt), 0);
    EXPECT_TRUE(cache.find(b, 1, 299));
    EXPECT_FALSE(cache.find(b, 1, 300));  // the max TTL
    cache.insert(a, 1, token_expiring(10), 20);  // already expired: not stored
    EXPECT_EQ(cache.size(), 0u);
}

TEST(AuthJwtCacheTest, OnlyTheSameBytesMatch) {
    TokenCache cache;
    cache.configure(8, 300);
    std::string token = "header.payload.signature";
    auto t = token_expiring(std::nullopt);
    cache.insert(token, 1, t, 0);
    token[0] = 'H';  // the cache keeps its own copy: the caller's buffer may change
    EXPECT_EQ(cache.find("header.payload.signature", 1, 1), t);
    EXPECT_EQ(cache.find("header.payload.signaturE", 1, 1), nullptr);
    EXPECT_EQ(cache.find("header.payload.signatur", 1, 1), nullptr);
    EXPECT_EQ(cache.find("header.payload.signature ", 1, 1), nullptr);
    EXPECT_EQ(cache.find("", 1, 1), nullptr);
}

TEST(AuthJwtCacheTest, LeastRecentlyUsedIsEvicted) {
    TokenCache cache;
    cache.configure(2, 300);
    std::string_view h1 = "1", h2 = "2", h3 = "3";
    cache.insert(h1, 1, token_expiring(std::nullopt), 0);
    cache.insert(h2, 1, token_expiring(std::nullopt), 0);
    EXPECT_TRUE(cache.find(h1, 1, 1));  // 1 is now the most recent
    cache.insert(h3, 1, token_expiring(std::nullopt), 1);
    EXPECT_EQ(cache.size(), 2u);
    EXPECT_TRUE(cache.find(h1, 1, 1));
    EXPECT_FALSE(cache.find(h2, 1, 1));
    EXPECT_TRUE(cache.find(h3, 1, 1));
    cache.configure(0, 300);  // off
    EXPECT_EQ(cache.size(), 0u);
    cache.insert(h1, 1, token_expiring(std::nullopt), 0);
    EXPECT_EQ(cache.size(), 0u);
}

// ---- auth_jwt_key_url: URL, the zone's sequence lock and lease ----

TEST(AuthJwtKeyUrlTest, ParsesUrls) {
    KeyUrl url;
    std::string error;
    ASSERT_TRUE(parse_key_url("https://idp.example:8443/o/jwks?x=1", url, error)) << error;
    EXPECT_TRUE(url.https);
    EXPECT_EQ(url.host, "idp.example");
    EXPECT_EQ(url.port, 8443);
    EXPECT_EQ(url.target, "/o/jwks?x=1");
    EXPECT_EQ(url.host_header, "idp.example:8443");
    ASSERT_TRUE(parse_key_url("http://[::1]/k", url, error)) << error;
    EXPECT_EQ(url.host, "::1");
    EXPECT_EQ(url.port, 80);
    ASSERT_TRUE(parse_key_url("https://idp.example", url, error)) << error;
    EXPECT_EQ(url.port, 443);
    EXPECT_EQ(url.target, "/");
    for (const char* bad : {"ftp://x/", "http://user@x/", "http://x:0/", "http://x:99999/", "http://x:/",
                            "http:///k", "http://x/a b", "http://x/#f", "http://[::1/"})
        EXPECT_FALSE(parse_key_url(bad, url, error)) << bad;
}

std::unique_ptr<JwksShared> new_zone() {
    auto sh = std::make_unique<JwksShared>();
    memset(static_cast<void*>(sh.get()), 0, sizeof(JwksShared));
    return sh;
}

TEST(AuthJwtKeyUrlTest, SequenceLockPublishesWholeDocuments) {
    auto sh = new_zone();
    uint64_t seq = 0;
    std::string doc;
    EXPECT_FALSE(read_published(*sh, seq, doc));  // nothing yet
    int32_t self = int32_t(getpid());
    ASSERT_TRUE(publish(*sh, self, R"({"keys":[]})"));
    ASSERT_TRUE(read_published(*sh, seq, doc));
    EXPECT_EQ(doc, R"({"keys":[]})");
    EXPECT_EQ(seq % 2, 0u);
    uint64_t first = seq;
    ASSERT_TRUE(publish(*sh, self, "second"));
    ASSERT_TRUE(read_published(*sh, seq, doc));
    EXPECT_EQ(doc, "second");
    EXPECT_GT(seq, first);
    EXPECT_FALSE(publish(*sh, self, std::string(kMaxJwksSize + 1, 'x')));
}

TEST(AuthJwtKeyUrlTest, AWriterKilledMidWriteIsTakenOver) {
    auto sh = new_zone();
    int32_t self = int32_t(getpid());
    ASSERT_TRUE(publish(*sh, self, "good"));
    // A writer that died after claiming the sequence: odd, its pid gone.
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, nullptr, 0);
    sh->sequence.fetch_add(1);
    sh->writer_pid.store(int32_t(dead));
    memcpy(sh->document, "ga", 2);  // half written
    uint64_t seq = 0;
    std::string doc;
    EXPECT_FALSE(read_published(*sh, seq, doc));  // readers keep what they have
    ASSERT_TRUE(publish(*sh, self, "new"));
    ASSERT_TRUE(read_published(*sh, seq, doc));
    EXPECT_EQ(doc, "new");
    // A live writer mid-write is not interrupted.
    sh->sequence.fetch_add(1);
    sh->writer_pid.store(int32_t(getppid()));
    EXPECT_FALSE(publish(*sh, self, "other"));
}

TEST(AuthJwtKeyUrlTest, FetcherLeaseIsHeldRenewedAndTakenOverWhenStale) {
    auto sh = new_zone();
    int32_t self = int32_t(getpid());
    int32_t other = int32_t(getppid());  // alive
    EXPECT_TRUE(hold_fetcher_lease(*sh, other, 1000, 5000));
    EXPECT_FALSE(hold_fetcher_lease(*sh, self, 2000, 5000));  // fresh heartbeat, live holder
    EXPECT_TRUE(hold_fetcher_lease(*sh, other, 5000, 5000));  // renewed
    EXPECT_FALSE(hold_fetcher_lease(*sh, self, 9000, 5000));
    EXPECT_TRUE(hold_fetcher_lease(*sh, self, 10001, 5000));  // stale: taken over
    EXPECT_EQ(sh->fetcher_pid.load(), self);
    release_fetcher_lease(*sh, other);  // not the holder: no effect
    EXPECT_EQ(sh->fetcher_pid.load(), self);
    release_fetcher_lease(*sh, self);
    EXPECT_EQ(sh->fetcher_pid.load(), 0);
}

}  // namespace
}  // namespace sluice::auth_jwt
