// libFuzzer target: the auth_jwt token parser and verifier on arbitrary
// bytes, with an HMAC secret and an EC key in the set, so inputs reach the
// key selection and the OpenSSL verification (HMAC, ECDSA raw r || s to
// DER) as well as the strict parse and the claim checks.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../../modules/auth_jwt/jwt_keys.h"
#include "../../modules/auth_jwt/jwt_token.h"

namespace {

using namespace sluice::auth_jwt;

const KeySet& fuzz_keys() {
    static KeySet set = [] {
        KeySet s;
        std::string error;
        add_hmac_secret("0123456789abcdef0123456789abcdef", s, error);
        // A JWK Set with one RSA and one P-256 key (public test values).
        parse_jwks(R"({"keys":[{"kty":"EC","crv":"P-256","kid":"ec",)"
                   R"("x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
                   R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})",
                   s, error);
        return s;
    }();
    return set;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view token(reinterpret_cast<const char*>(data), size);
    const char* why = "";
    auto verified = verify_token(token, fuzz_keys(), kAllAlgs, kDefaultMaxTokenSize, why);
    std::vector<ClaimEquals> rules = {{"aud", {"api"}}};
    ClaimPolicy policy;
    policy.claim_equals = &rules;
    if (verified) check_claims(*verified, policy, 1700000000, why);
    ParsedToken parsed;
    parse_token(token, kDefaultMaxTokenSize, parsed, why);
    std::string out;
    base64url_decode(token, out);
    KeySet jwks;  // the same bytes as a JWK Set: the fetcher's parser
    parse_jwks(token, jwks, out);
    return 0;
}
