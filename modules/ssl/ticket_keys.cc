#include "ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sluice::ssl {

bool read_ticket_key(const std::string& path, TicketKey& key, std::string& error) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) {
        error = "cannot open \"" + path + "\": " + strerror(errno);
        return false;
    }
    unsigned char buf[81];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n != 48 && n != 80) {
        error = "\"" + path + "\" must be 48 or 80 bytes";
        return false;
    }
    memcpy(key.name, buf, 16);
    key.key_size = n == 48 ? 16 : 32;
    memcpy(key.hmac_key, buf + 16, key.key_size);
    memcpy(key.aes_key, buf + 16 + key.key_size, key.key_size);
    OPENSSL_cleanse(buf, sizeof buf);
    return true;
}

const TicketKey& process_ticket_key() {
    static TicketKey key = [] {
        TicketKey k{};
        k.key_size = 32;
        if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.hmac_key, sizeof k.hmac_key) != 1 ||
            RAND_bytes(k.aes_key, sizeof k.aes_key) != 1)
            abort();  // no randomness: nothing safe to do
        return k;
    }();
    return key;
}

namespace {

int ex_index() {
    static int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

const EVP_CIPHER* cipher_for(const TicketKey& key) {
    return key.key_size == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
}

bool set_hmac(EVP_MAC_CTX* hctx, const TicketKey& key) {
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_END};
    return EVP_MAC_init(hctx, key.hmac_key, key.key_size, params) == 1;
}

// RFC 5077 ticket protection: 1 = ticket made / key found, 2 = found with an
// old key (the client gets a new ticket), 0 = unknown key (full handshake).
int on_ticket(SSL* ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX* cctx,
              EVP_MAC_CTX* hctx, int encrypt) {
    auto* keys = static_cast<const std::vector<TicketKey>*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index()));
    if (!keys || keys->empty()) return encrypt ? -1 : 0;
    if (encrypt) {
        const TicketKey& key = keys->front();
        memcpy(name, key.name, 16);
        const EVP_CIPHER* cipher = cipher_for(key);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) != 1 ||
            EVP_EncryptInit_ex(cctx, cipher, nullptr, key.aes_key, iv) != 1 || !set_hmac(hctx, key))
            return -1;
        return 1;
    }
    for (size_t i = 0; i < keys->size(); ++i) {
        const TicketKey& key = (*keys)[i];
        if (memcmp(name, key.name, 16) != 0) continue;
        if (!set_hmac(hctx, key) || EVP_DecryptInit_ex(cctx, cipher_for(key), nullptr, key.aes_key, iv) != 1)
            return -1;
        return i == 0 ? 1 : 2;
    }
    return 0;
}

}  // namespace

void use_ticket_keys(SSL_CTX* ctx, const std::vector<TicketKey>* keys) {
    SSL_CTX_set_ex_data(ctx, ex_index(), const_cast<std::vector<TicketKey>*>(keys));
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
}

}  // namespace sluice::ssl
