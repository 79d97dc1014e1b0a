// $ssl_protocol $ssl_cipher $ssl_server_name $ssl_session_reused and the
// client certificate's $ssl_client_verify $ssl_client_s_dn $ssl_client_i_dn
// $ssl_client_serial $ssl_client_fingerprint, with nginx's formats.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstring>

#include "http/http_connection.h"
#include "http/http_request.h"
#include "ssl.h"

namespace sluice::ssl {

using http::Request;

namespace {

using V = std::string_view;

SSL* ssl_of(Request& r) { return r.connection().ssl(); }

bool set(Request& r, V& out, std::string_view value) {
    out = r.copy(value);
    return true;
}

bool get_protocol(Request& r, V& out, uintptr_t) {
    SSL* ssl = ssl_of(r);
    if (!ssl) return false;
    out = tls::protocol_name(SSL_version(ssl));
    return true;
}

bool get_cipher(Request& r, V& out, uintptr_t) {
    SSL* ssl = ssl_of(r);
    if (!ssl) return false;
    out = SSL_get_cipher_name(ssl);
    return true;
}

bool get_server_name(Request& r, V& out, uintptr_t) {
    SSL* ssl = ssl_of(r);
    const char* name = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : nullptr;
    if (!name) return false;
    return set(r, out, name);
}

bool get_session_reused(Request& r, V& out, uintptr_t) {
    SSL* ssl = ssl_of(r);
    if (!ssl) return false;
    out = SSL_session_reused(ssl) ? "r" : ".";
    return true;
}

bool get_client_verify(Request& r, V& out, uintptr_t) {
    SSL* ssl = ssl_of(r);
    if (!ssl) return false;
    if (!SSL_get0_peer_certificate(ssl)) {
        out = "NONE";
        return true;
    }
    long result = SSL_get_verify_result(ssl);
    if (result == X509_V_OK) {
        out = "SUCCESS";
        return true;
    }
    return set(r, out, std::string("FAILED:") + X509_verify_cert_error_string(result));
}

enum class Field : uintptr_t { SubjectDn, IssuerDn, Serial, Fingerprint };

// RFC 2253 names, as nginx's $ssl_client_s_dn (since 1.11.6).
bool print_name(Request& r, V& out, X509_NAME* name) {
    tls::BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return false;
    char* data = nullptr;
    long len = BIO_get_mem_data(bio.get(), &data);
    return set(r, out, std::string_view(data, size_t(len)));
}

bool get_client_field(Request& r, V& out, uintptr_t field) {
    SSL* ssl = ssl_of(r);
    X509* cert = ssl ? SSL_get0_peer_certificate(ssl) : nullptr;
    if (!cert) return false;
    switch (Field(field)) {
    case Field::SubjectDn: return print_name(r, out, X509_get_subject_name(cert));
    case Field::IssuerDn: return print_name(r, out, X509_get_issuer_name(cert));
    case Field::Serial: {
        tls::BioPtr bio(BIO_new(BIO_s_mem()));
        if (!bio || i2a_ASN1_INTEGER(bio.get(), X509_get_serialNumber(cert)) < 0) return false;
        char* data = nullptr;
        long len = BIO_get_mem_data(bio.get(), &data);
        return set(r, out, std::string_view(data, size_t(len)));
    }
    case Field::Fingerprint: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        if (X509_digest(cert, EVP_sha1(), md, &len) != 1) return false;
        static const char kHex[] = "0123456789abcdef";
        std::string hex;
        for (unsigned i = 0; i < len; ++i) {
            hex.push_back(kHex[md[i] >> 4]);
            hex.push_back(kHex[md[i] & 15]);
        }
        return set(r, out, hex);
    }
    }
    return false;
}

}  // namespace

bool add_variables(Variables& v) {
    return v.add("ssl_protocol", get_protocol, 0) >= 0 && v.add("ssl_cipher", get_cipher, 0) >= 0 &&
           v.add("ssl_server_name", get_server_name, 0) >= 0 &&
           v.add("ssl_session_reused", get_session_reused, 0) >= 0 &&
           v.add("ssl_client_verify", get_client_verify, 0) >= 0 &&
           v.add("ssl_client_s_dn", get_client_field, uintptr_t(Field::SubjectDn)) >= 0 &&
           v.add("ssl_client_i_dn", get_client_field, uintptr_t(Field::IssuerDn)) >= 0 &&
           v.add("ssl_client_serial", get_client_field, uintptr_t(Field::Serial)) >= 0 &&
           v.add("ssl_client_fingerprint", get_client_field, uintptr_t(Field::Fingerprint)) >= 0;
}

}  // namespace sluice::ssl
