// Session ticket keys: ssl_session_ticket_key files in nginx's format (48
// bytes: name, HMAC secret, AES-128 key; 80 bytes: name, HMAC secret, AES-256
// key), the first encrypting new tickets and the others still decrypting old
// ones. Without a file, one key made in the master process before any worker
// is forked serves every worker and every reload of that master.
#pragma once
#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::ssl {

struct TicketKey {
    unsigned char name[16];
    unsigned char hmac_key[32];
    unsigned char aes_key[32];
    size_t key_size;  // 16 (AES-128-CBC, 48-byte file) or 32 (AES-256-CBC, 80-byte file)
};

// Reads one key file; false with a message naming it.
bool read_ticket_key(const std::string& path, TicketKey& key, std::string& error);
// The master's key for servers without ticket key files (made on first use).
const TicketKey& process_ticket_key();
// Encrypts with keys[0] and decrypts with any; `keys` outlives the context.
void use_ticket_keys(SSL_CTX* ctx, const std::vector<TicketKey>* keys);

}  // namespace sluice::ssl
