// The test PKI (t/lib/test_pki.*) makes what the TLS tests rely on: checked
// here with `openssl verify`, independently of sluice.
#include "test_pki.h"

#include <gtest/gtest.h>

namespace sluice::test {
namespace {

CommandResult verify(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"openssl", "verify"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
}

TEST(TestPki, IssuesChainsThatVerifyOnlyAgainstTheirCa) {
    TestPki pki;
    CertPair rsa = pki.server("www", {"www.example.test", "127.0.0.1"}, KeyType::Rsa);
    CertPair ec = pki.server("www", {"www.example.test"}, KeyType::Ecdsa);
    CertPair client = pki.client("alice");
    CertPair stranger = pki.client("mallory", false);

    EXPECT_EQ(verify({"-CAfile", pki.ca_cert(), "-purpose", "sslserver", rsa.cert}).exit_code, 0);
    EXPECT_EQ(verify({"-CAfile", pki.ca_cert(), "-purpose", "sslserver", ec.cert}).exit_code, 0);
    EXPECT_EQ(verify({"-CAfile", pki.ca_cert(), "-purpose", "sslclient", client.cert}).exit_code, 0);
    EXPECT_NE(verify({"-CAfile", pki.ca_cert(), stranger.cert}).exit_code, 0);
    EXPECT_EQ(verify({"-CAfile", pki.other_ca_cert(), stranger.cert}).exit_code, 0);
    EXPECT_NE(pki.x509_field(rsa.cert, "-text").find("DNS:www.example.test"), std::string::npos);
    EXPECT_NE(pki.x509_field(rsa.cert, "-text").find("rsaEncryption"), std::string::npos);
    EXPECT_NE(pki.x509_field(ec.cert, "-text").find("id-ecPublicKey"), std::string::npos);
    EXPECT_NE(rsa.serial, ec.serial);
}

TEST(TestPki, RevokedAndExpiredCertificatesFail) {
    TestPki pki;
    CertPair good = pki.client("good");
    CertPair revoked = pki.client("revoked");
    CertPair expired = pki.expired_client("old");
    pki.revoke(revoked);
    std::string crl = pki.crl();

    auto crl_check = [&](const CertPair& pair) {
        return verify({"-crl_check", "-CAfile", pki.ca_cert(), "-CRLfile", crl, pair.cert});
    };
    EXPECT_EQ(crl_check(good).exit_code, 0) << crl_check(good).output;
    CommandResult r = crl_check(revoked);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("revoked"), std::string::npos) << r.output;
    r = verify({"-CAfile", pki.ca_cert(), expired.cert});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("expired"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace sluice::test
