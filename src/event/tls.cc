#include "event/tls.h"

#include "core/conf.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace sluice::tls {

std::string drain_errors() {
    std::string text;
    char buf[256];
    while (unsigned long err = ERR_get_error()) {
        ERR_error_string_n(err, buf, sizeof buf);
        if (!text.empty()) text += "; ";
        text += buf;
    }
    return text;
}

void clear_errors() { ERR_clear_error(); }

namespace {

struct ProtocolVersion {
    std::string_view name;
    unsigned bit;
    int version;
    uint64_t no_option;  // SSL_OP_NO_... that disables it
};

constexpr ProtocolVersion kVersions[] = {
    {"TLSv1", kTls1, TLS1_VERSION, SSL_OP_NO_TLSv1},
    {"TLSv1.1", kTls11, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1},
    {"TLSv1.2", kTls12, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2},
    {"TLSv1.3", kTls13, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3},
};

// "file: reason", with OpenSSL's reason when it gave one.
std::string file_error(std::string_view what, const std::string& file) {
    std::string reason = drain_errors();
    std::string text = "cannot load " + std::string(what) + " \"" + file + "\"";
    if (!reason.empty()) text += ": " + reason;
    return text;
}

bool readable(const std::string& file, std::string_view what, std::string& error) {
    FILE* f = fopen(file.c_str(), "r");
    if (!f) {
        error = "cannot open " + std::string(what) + " \"" + file + "\": " + strerror(errno);
        return false;
    }
    fclose(f);
    return true;
}

}  // namespace

bool parse_protocols(std::span<const std::string_view> names, unsigned& set, std::string& error) {
    set = 0;
    for (std::string_view name : names) {
        auto it = std::find_if(std::begin(kVersions), std::end(kVersions),
                               [&](const ProtocolVersion& v) { return v.name == name; });
        if (it == std::end(kVersions)) {
            error = "invalid value \"" + std::string(name) + "\"";
            return false;
        }
        set |= it->bit;
    }
    if (set == 0) {
        error = "no protocol given";
        return false;
    }
    return true;
}

bool set_protocols_directive(ConfContext& cx, std::optional<unsigned>& field) {
    if (field) return cx.duplicate();
    std::vector<std::string_view> names;
    for (size_t i = 0; i < cx.arg_count(); ++i) names.push_back(cx.arg(i));
    unsigned set = 0;
    std::string error;
    if (!parse_protocols(names, set, error))
        return cx.error("%s in \"%s\" directive", error.c_str(), cx.name().c_str());
    field = set;
    return true;
}

bool apply_protocols(SSL_CTX* ctx, unsigned set, std::string& error) {
    const ProtocolVersion* lowest = nullptr;
    const ProtocolVersion* highest = nullptr;
    for (const ProtocolVersion& v : kVersions) {
        if (!(set & v.bit)) continue;
        if (!lowest) lowest = &v;
        highest = &v;
    }
    if (!lowest) {
        error = "no TLS protocol enabled";
        return false;
    }
    if (SSL_CTX_set_min_proto_version(ctx, lowest->version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, highest->version) != 1) {
        error = "cannot set the protocol versions: " + drain_errors();
        return false;
    }
    for (const ProtocolVersion* v = lowest; v < highest; ++v)
        if (!(set & v->bit)) SSL_CTX_set_options(ctx, v->no_option);
    return true;
}

std::string_view protocol_name(int version) {
    for (const ProtocolVersion& v : kVersions)
        if (v.version == version) return v.name;
    return "unknown";
}

bool add_certificate(SSL_CTX* ctx, const std::string& cert_file, const std::string& key_file,
                     std::string& error) {
    clear_errors();
    if (!readable(cert_file, "certificate", error) || !readable(key_file, "certificate key", error))
        return false;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
        error = file_error("certificate", cert_file);
        return false;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        // OpenSSL refuses a key whose public half differs from the certificate
        // just added with "key values mismatch": say so plainly.
        unsigned long err = ERR_peek_last_error();
        if (ERR_GET_REASON(err) == X509_R_KEY_VALUES_MISMATCH) {
            clear_errors();
            error = "certificate key \"" + key_file + "\" does not match certificate \"" + cert_file + "\"";
        } else {
            error = file_error("certificate key", key_file);
        }
        return false;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        clear_errors();
        error = "certificate key \"" + key_file + "\" does not match certificate \"" + cert_file + "\"";
        return false;
    }
    return true;
}

bool load_trusted_certificates(SSL_CTX* ctx, const std::string& file, bool send_names, std::string& error) {
    clear_errors();
    if (!readable(file, "certificates", error)) return false;
    if (SSL_CTX_load_verify_locations(ctx, file.c_str(), nullptr) != 1) {
        error = file_error("certificates", file);
        return false;
    }
    if (send_names) {
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(file.c_str());
        if (!names) {
            error = file_error("certificates", file);
            return false;
        }
        SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
    }
    return true;
}

bool load_crl(SSL_CTX* ctx, const std::string& file, std::string& error) {
    clear_errors();
    if (!readable(file, "CRL", error)) return false;
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_LOOKUP_load_file(lookup, file.c_str(), X509_FILETYPE_PEM) <= 0) {
        error = file_error("CRL", file);
        return false;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    return true;
}

SslCtxPtr make_client_context(const ClientContextOptions& o, std::string& error) {
    clear_errors();
    SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        error = "SSL_CTX_new() failed: " + drain_errors();
        return nullptr;
    }
    SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (!apply_protocols(ctx.get(), o.protocols, error)) return nullptr;
    if (!o.ciphers.empty() && SSL_CTX_set_cipher_list(ctx.get(), o.ciphers.c_str()) != 1) {
        error = "invalid ciphers \"" + o.ciphers + "\": " + drain_errors();
        return nullptr;
    }
    if (!o.certificate.empty() && !add_certificate(ctx.get(), o.certificate, o.certificate_key, error))
        return nullptr;
    if (o.verify) {
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_verify_depth(ctx.get(), o.verify_depth);
        if (o.trusted_certificate.empty()) {
            if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
                error = "cannot load the system's trusted certificates: " + drain_errors();
                return nullptr;
            }
        } else if (!load_trusted_certificates(ctx.get(), o.trusted_certificate, false, error)) {
            return nullptr;
        }
        if (!o.crl.empty() && !load_crl(ctx.get(), o.crl, error)) return nullptr;
    }
    SSL_CTX_set_session_cache_mode(ctx.get(), o.session_cache ? SSL_SESS_CACHE_CLIENT : SSL_SESS_CACHE_OFF);
    return ctx;
}

// ---- non-blocking I/O ----

void set_io_modes(SSL* ssl) {
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
}

namespace {

// What SSL_get_error says about a call that did not succeed.
IoStatus failed_status(SSL* ssl, int ret) {
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return IoStatus::WantRead;
    case SSL_ERROR_WANT_WRITE:
        return IoStatus::WantWrite;
    case SSL_ERROR_ZERO_RETURN:
        return IoStatus::Eof;
    case SSL_ERROR_SYSCALL:
        // No errno and nothing queued: the peer closed the TCP connection.
        if (ERR_peek_error() == 0 && errno == 0) return IoStatus::Eof;
        return IoStatus::Error;
    default:
        return IoStatus::Error;
    }
}

}  // namespace

IoResult read(SSL* ssl, char* buf, size_t len) {
    size_t got = 0;
    errno = 0;
    int ret = SSL_read_ex(ssl, buf, len, &got);
    if (ret == 1) return {IoStatus::Done, got};
    return {failed_status(ssl, ret), 0};
}

IoResult peek(SSL* ssl, char* buf, size_t len) {
    size_t got = 0;
    errno = 0;
    int ret = SSL_peek_ex(ssl, buf, len, &got);
    if (ret == 1) return {IoStatus::Done, got};
    return {failed_status(ssl, ret), 0};
}

namespace {

// The next record's bytes starting at iov[i] + offset: a piece of a full record
// or more is written from where it lies; smaller ones are copied into `record`.
// Deterministic in the bytes it is given, as OpenSSL's retry rule needs.
std::string_view next_record(const iovec* iov, int iovcnt, int i, size_t offset, char* record) {
    size_t first_len = iov[i].iov_len - offset;
    const char* first = static_cast<const char*>(iov[i].iov_base) + offset;
    if (first_len >= kRecordSize) return {first, first_len};
    size_t used = 0;
    for (; i < iovcnt && used < kRecordSize; ++i, offset = 0) {
        size_t n = std::min(iov[i].iov_len - offset, kRecordSize - used);
        memcpy(record + used, static_cast<const char*>(iov[i].iov_base) + offset, n);
        used += n;
    }
    return {record, used};
}

}  // namespace

IoResult writev(SSL* ssl, const iovec* iov, int iovcnt) {
    char record[kRecordSize];
    size_t total = 0;
    int i = 0;
    size_t offset = 0;  // into iov[i]
    for (;;) {
        while (i < iovcnt && offset == iov[i].iov_len) ++i, offset = 0;
        if (i == iovcnt) return {IoStatus::Done, total};
        std::string_view data = next_record(iov, iovcnt, i, offset, record);
        size_t written = 0;
        errno = 0;
        int ret = SSL_write_ex(ssl, data.data(), data.size(), &written);
        if (ret != 1) return {failed_status(ssl, ret), total};
        total += written;
        // Advance over what went out, across the pieces it came from.
        while (written > 0) {
            size_t n = std::min(written, iov[i].iov_len - offset);
            written -= n;
            offset += n;
            if (offset == iov[i].iov_len && written > 0) ++i, offset = 0;
        }
    }
}

IoStatus handshake(SSL* ssl) {
    errno = 0;
    int ret = SSL_do_handshake(ssl);
    if (ret == 1) return IoStatus::Done;
    IoStatus status = failed_status(ssl, ret);
    return status == IoStatus::Eof ? IoStatus::Error : status;
}

IoStatus shutdown(SSL* ssl) {
    if (SSL_in_init(ssl)) return IoStatus::Done;  // nothing was established to close
    errno = 0;
    int ret = SSL_shutdown(ssl);
    if (ret >= 0) return IoStatus::Done;
    IoStatus status = failed_status(ssl, ret);
    if (status == IoStatus::WantWrite) return status;
    clear_errors();
    return IoStatus::Done;
}

}  // namespace sluice::tls
