// A throw-away PKI for TLS tests, made with the `openssl` command in a temporary
// directory: a trusted CA, a second CA that nothing trusts, server certificates
// for given names (subjectAltName) with ECDSA or RSA keys, client certificates
// signed by either CA, expired certificates, and a CRL revoking chosen ones.
// Nothing is checked in; every file lives and dies with the TestPki.
#pragma once

#include "harness.h"

#include <string>
#include <string_view>
#include <vector>

namespace sluice::test {

enum class KeyType { Ecdsa, Rsa };

// Paths to a PEM certificate and its PEM private key.
struct CertPair {
    std::string cert;
    std::string key;
    std::string serial;  // hex, as $ssl_client_serial shows it
};

class TestPki {
public:
    // Makes both CAs. A failure (no openssl command) throws std::runtime_error
    // with the command's output.
    TestPki();

    const TempDir& dir() const { return dir_; }
    std::string ca_cert() const { return dir_.path("ca/cert.pem"); }
    std::string other_ca_cert() const { return dir_.path("other_ca/cert.pem"); }

    // A server certificate for `names` (the first is also the CN), signed by the
    // trusted CA. `file_name` keeps different certificates apart.
    CertPair server(std::string_view file_name, const std::vector<std::string>& names,
                    KeyType type = KeyType::Ecdsa);
    // A client certificate with CN=`common_name`, signed by the trusted CA or
    // by the other one.
    CertPair client(std::string_view common_name, bool trusted_ca = true,
                    KeyType type = KeyType::Ecdsa);
    // Signed by the trusted CA, valid only during a day in 2020.
    CertPair expired_client(std::string_view common_name);
    CertPair expired_server(std::string_view file_name, const std::vector<std::string>& names);

    // Revokes `pair` (issued by the trusted CA) in the CA's database.
    void revoke(const CertPair& pair);
    // The trusted CA's current CRL (every revocation so far), written to a file.
    std::string crl();

    // "subject=..." etc. as `openssl x509 -noout ARGS` prints them.
    std::string x509_field(const std::string& cert, const std::string& option);

private:
    void make_ca(const std::string& name, const std::string& common_name);
    CertPair issue(const std::string& ca, const std::string& file_name, const std::string& subject,
                   const std::string& extensions, KeyType type, const std::string& validity_args);
    void make_key(const std::string& path, KeyType type);
    std::string openssl(const std::vector<std::string>& args);

    TempDir dir_;
    int issued_ = 0;
};

}  // namespace sluice::test
