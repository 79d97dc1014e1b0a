// The shared TLS layer (src/event/tls.*): protocol lists, certificate loading
// errors, and the non-blocking I/O steps over a real socket pair.
#include "event/tls.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace sluice::tls {
namespace {

EvpPkeyPtr make_key(bool rsa) { return EvpPkeyPtr(rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256")); }

// Self-signed for "localhost", usable as its own trust anchor.
X509Ptr self_signed(EVP_PKEY* key, const char* common_name) {
    static long serial = 1;
    X509Ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name), -1,
                               -1, 0);
    X509_set_issuer_name(cert.get(), name);
    for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost"},
                              std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
        X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value);
        X509_add_ext(cert.get(), ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(cert.get(), key, EVP_sha256());
    return cert;
}

class TlsLayerTest : public testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/sluice-tls-unit-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write_pem(const std::string& name, X509* cert, EVP_PKEY* key) {
        std::string path = dir_ + "/" + name;
        FILE* f = fopen(path.c_str(), "w");
        if (cert) PEM_write_X509(f, cert);
        if (key) PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
        fclose(f);
        return path;
    }
    // A certificate and key pair on disk; returns {cert path, key path}.
    std::pair<std::string, std::string> pair_files(const std::string& name, bool rsa) {
        EvpPkeyPtr key = make_key(rsa);
        X509Ptr cert = self_signed(key.get(), name.c_str());
        return {write_pem(name + ".crt", cert.get(), nullptr), write_pem(name + ".key", nullptr, key.get())};
    }

    std::string dir_;
};

TEST(TlsProtocols, ParsesNginxNamesIntoASet) {
    std::vector<std::string_view> names{"TLSv1.2", "TLSv1.3"};
    unsigned set = 0;
    std::string error;
    ASSERT_TRUE(parse_protocols(names, set, error)) << error;
    EXPECT_EQ(set, kTls12 | kTls13);
    EXPECT_EQ(set, kDefaultProtocols);
    std::vector<std::string_view> old{"TLSv1", "TLSv1.1"};
    ASSERT_TRUE(parse_protocols(old, set, error));
    EXPECT_EQ(set, kTls1 | kTls11);
}

TEST(TlsProtocols, UnknownNameIsAnErrorNamingIt) {
    for (std::string_view bad : {"SSLv3", "TLSv1.4", "tlsv1.2", ""}) {
        std::vector<std::string_view> names{"TLSv1.2", bad};
        unsigned set = 0;
        std::string error;
        EXPECT_FALSE(parse_protocols(names, set, error)) << bad;
        EXPECT_NE(error.find("\"" + std::string(bad) + "\""), std::string::npos) << error;
    }
}

TEST(TlsProtocols, AppliedAsMinimumAndMaximumWithGapsDisabled) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    std::string error;
    ASSERT_TRUE(apply_protocols(ctx.get(), kTls13, error)) << error;
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.get()), TLS1_3_VERSION);
    EXPECT_EQ(SSL_CTX_get_max_proto_version(ctx.get()), TLS1_3_VERSION);

    SslCtxPtr gap(SSL_CTX_new(TLS_server_method()));
    ASSERT_TRUE(apply_protocols(gap.get(), kTls11 | kTls13, error)) << error;
    EXPECT_EQ(SSL_CTX_get_min_proto_version(gap.get()), TLS1_1_VERSION);
    EXPECT_EQ(SSL_CTX_get_max_proto_version(gap.get()), TLS1_3_VERSION);
    EXPECT_TRUE(SSL_CTX_get_options(gap.get()) & SSL_OP_NO_TLSv1_2);
    EXPECT_FALSE(SSL_CTX_get_options(gap.get()) & SSL_OP_NO_TLSv1_3);
    EXPECT_EQ(protocol_name(TLS1_2_VERSION), "TLSv1.2");
}

TEST_F(TlsLayerTest, CertificateErrorsNameTheFileAndTheReason) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    auto [cert, key] = pair_files("good", false);
    std::string error;

    EXPECT_FALSE(add_certificate(ctx.get(), dir_ + "/missing.crt", key, error));
    EXPECT_NE(error.find("missing.crt"), std::string::npos) << error;
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;

    std::string garbage = dir_ + "/garbage.crt";
    FILE* f = fopen(garbage.c_str(), "w");
    fputs("not a certificate\n", f);
    fclose(f);
    EXPECT_FALSE(add_certificate(ctx.get(), garbage, key, error));
    EXPECT_NE(error.find("cannot load certificate \"" + garbage + "\""), std::string::npos) << error;

    auto [other_cert, other_key] = pair_files("other", false);
    EXPECT_FALSE(add_certificate(ctx.get(), cert, other_key, error));
    EXPECT_NE(error.find("does not match"), std::string::npos) << error;
    EXPECT_EQ(ERR_peek_error(), 0u) << "the error queue is left empty";

    SslCtxPtr fresh(SSL_CTX_new(TLS_server_method()));
    EXPECT_TRUE(add_certificate(fresh.get(), cert, key, error)) << error;
}

TEST_F(TlsLayerTest, RsaAndEcdsaPairsSitSideBySide) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    auto [rsa_cert, rsa_key] = pair_files("rsa", true);
    auto [ec_cert, ec_key] = pair_files("ec", false);
    std::string error;
    ASSERT_TRUE(add_certificate(ctx.get(), rsa_cert, rsa_key, error)) << error;
    ASSERT_TRUE(add_certificate(ctx.get(), ec_cert, ec_key, error)) << error;
    int types = 0;
    for (int rc = SSL_CTX_set_current_cert(ctx.get(), SSL_CERT_SET_FIRST); rc == 1;
         rc = SSL_CTX_set_current_cert(ctx.get(), SSL_CERT_SET_NEXT))
        ++types;
    EXPECT_EQ(types, 2);
}

TEST_F(TlsLayerTest, UnreadableCrlAndTrustedFileAreErrors) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    std::string error;
    EXPECT_FALSE(load_crl(ctx.get(), dir_ + "/none.crl", error));
    EXPECT_NE(error.find("none.crl"), std::string::npos) << error;
    EXPECT_FALSE(load_trusted_certificates(ctx.get(), dir_ + "/none.pem", true, error));
    EXPECT_NE(error.find("none.pem"), std::string::npos) << error;
}

// ---- I/O over a socket pair ----

class TlsIoTest : public TlsLayerTest {
protected:
    void SetUp() override {
        TlsLayerTest::SetUp();
        new_socket_pair();
        auto [cert, key] = pair_files("server", false);
        cert_path_ = cert;
        server_ctx_.reset(SSL_CTX_new(TLS_server_method()));
        std::string error;
        ASSERT_TRUE(add_certificate(server_ctx_.get(), cert, key, error)) << error;
    }
    void TearDown() override {
        server_.reset();
        client_.reset();
        for (int fd : fds_) close(fd);
        TlsLayerTest::TearDown();
    }

    void new_socket_pair() {
        for (int& fd : fds_)
            if (fd >= 0) close(fd);
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds_), 0);
        for (int fd : fds_) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }

    // Both ends step their handshakes in turn until both are done (bounded).
    ::testing::AssertionResult connect(SSL_CTX* client_ctx) {
        server_.reset(SSL_new(server_ctx_.get()));
        client_.reset(SSL_new(client_ctx));
        SSL_set_fd(server_.get(), fds_[0]);
        SSL_set_fd(client_.get(), fds_[1]);
        SSL_set_accept_state(server_.get());
        SSL_set_connect_state(client_.get());
        SSL_set1_host(client_.get(), "localhost");
        set_io_modes(server_.get());
        set_io_modes(client_.get());
        IoStatus s = IoStatus::WantRead, c = IoStatus::WantRead;
        for (int round = 0; round < 20 && (s != IoStatus::Done || c != IoStatus::Done); ++round) {
            if (c != IoStatus::Done) c = handshake(client_.get());
            if (s != IoStatus::Done) s = handshake(server_.get());
            if (s == IoStatus::Error || c == IoStatus::Error)
                return ::testing::AssertionFailure() << "handshake failed: " << drain_errors();
        }
        if (s != IoStatus::Done || c != IoStatus::Done) return ::testing::AssertionFailure() << "no progress";
        return ::testing::AssertionSuccess();
    }

    // Reads everything readable now on `ssl`, appending to `out`.
    IoStatus read_available(SSL* ssl, std::string& out) {
        char buf[8192];
        for (int i = 0; i < 100000; ++i) {
            IoResult r = read(ssl, buf, sizeof buf);
            if (r.status != IoStatus::Done) return r.status;
            out.append(buf, r.bytes);
        }
        return IoStatus::Done;
    }

    int fds_[2] = {-1, -1};
    std::string cert_path_;
    SslCtxPtr server_ctx_;
    SslPtr server_, client_;
};

TEST_F(TlsIoTest, ReadsWhatWasWrittenAndWaitsForMore) {
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    ASSERT_TRUE(connect(client_ctx.get()));
    std::string got;
    EXPECT_EQ(read_available(server_.get(), got), IoStatus::WantRead);
    EXPECT_EQ(got, "");

    std::string a = "GET / HTTP/1.1\r\n", b = "Host: x\r\n\r\n";
    iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    IoResult w = writev(client_.get(), iov, 2);
    EXPECT_EQ(w.status, IoStatus::Done);
    EXPECT_EQ(w.bytes, a.size() + b.size());
    char first = 0;
    IoResult peeked = peek(server_.get(), &first, 1);
    EXPECT_EQ(peeked.status, IoStatus::Done);
    EXPECT_EQ(first, 'G');
    EXPECT_EQ(read_available(server_.get(), got), IoStatus::WantRead);
    EXPECT_EQ(got, a + b);
}

TEST_F(TlsIoTest, SmallPiecesAreGatheredIntoOneRecord) {
    SSL_CTX_set_num_tickets(server_ctx_.get(), 0);  // only the records written here are on the wire
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    ASSERT_TRUE(connect(client_ctx.get()));
    std::vector<std::string> pieces;
    std::vector<iovec> iov;
    std::string expected;
    for (int i = 0; i < 100; ++i) pieces.push_back("piece " + std::to_string(i) + ";");
    for (std::string& p : pieces) {
        iov.push_back({p.data(), p.size()});
        expected += p;
    }
    IoResult w = writev(server_.get(), iov.data(), static_cast<int>(iov.size()));
    ASSERT_EQ(w.status, IoStatus::Done);
    int on_wire = 0;
    ASSERT_EQ(ioctl(fds_[1], FIONREAD, &on_wire), 0);
    // One record costs ~22 bytes of framing and tag; a record per piece would cost 2,200.
    EXPECT_LT(static_cast<size_t>(on_wire), expected.size() + 100);
    std::string got;
    read_available(client_.get(), got);
    EXPECT_EQ(got, expected);
}

TEST_F(TlsIoTest, BlockedWriteResumesWithTheRestAndLosesNothing) {
    int small = 4096;
    setsockopt(fds_[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(fds_[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    ASSERT_TRUE(connect(client_ctx.get()));

    std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
    std::string body(1000000, '\0');
    for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
    std::string sent_expected = head + body;
    size_t done = 0;
    std::string got;
    int blocked = 0;
    for (int round = 0; round < 100000 && done < sent_expected.size(); ++round) {
        // The caller's view: the head and body as two pieces, minus what went out.
        iovec iov[2];
        int n = 0;
        if (done < head.size()) iov[n++] = {head.data() + done, head.size() - done};
        size_t body_done = done > head.size() ? done - head.size() : 0;
        iov[n++] = {body.data() + body_done, body.size() - body_done};
        IoResult w = writev(server_.get(), iov, n);
        done += w.bytes;
        if (w.status == IoStatus::WantWrite) ++blocked;
        else ASSERT_EQ(w.status, IoStatus::Done) << drain_errors();
        read_available(client_.get(), got);
    }
    read_available(client_.get(), got);
    EXPECT_GT(blocked, 0) << "the socket never filled: the retry path went untested";
    ASSERT_EQ(done, sent_expected.size());
    EXPECT_TRUE(got == sent_expected) << "received " << got.size() << " bytes";
}

TEST_F(TlsIoTest, ShutdownIsEofForThePeer) {
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    ASSERT_TRUE(connect(client_ctx.get()));
    char byte;
    EXPECT_EQ(peek(client_.get(), &byte, 1).status, IoStatus::WantRead);
    EXPECT_EQ(shutdown(server_.get()), IoStatus::Done);
    EXPECT_EQ(peek(client_.get(), &byte, 1).status, IoStatus::Eof);
    std::string got;
    EXPECT_EQ(read_available(client_.get(), got), IoStatus::Eof);
}

TEST_F(TlsIoTest, TcpCloseWithoutCloseNotifyIsEof) {
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    ASSERT_TRUE(connect(client_ctx.get()));
    SSL_set_options(server_.get(), SSL_OP_IGNORE_UNEXPECTED_EOF);
    ::shutdown(fds_[1], SHUT_WR);
    std::string got;
    EXPECT_EQ(read_available(server_.get(), got), IoStatus::Eof);
}

TEST_F(TlsIoTest, ClientContextVerifiesTheServer) {
    std::string error;
    ClientContextOptions trusting;
    trusting.verify = true;
    trusting.trusted_certificate = cert_path_;
    SslCtxPtr ok_ctx = make_client_context(trusting, error);
    ASSERT_TRUE(ok_ctx) << error;
    ASSERT_TRUE(connect(ok_ctx.get()));
    EXPECT_EQ(SSL_get_verify_result(client_.get()), X509_V_OK);

    auto [other_cert, other_key] = pair_files("stranger", false);
    ClientContextOptions wrong_ca = trusting;
    wrong_ca.trusted_certificate = other_cert;
    SslCtxPtr bad_ctx = make_client_context(wrong_ca, error);
    ASSERT_TRUE(bad_ctx) << error;
    new_socket_pair();
    EXPECT_FALSE(connect(bad_ctx.get()));
    EXPECT_NE(SSL_get_verify_result(client_.get()), X509_V_OK);

    ClientContextOptions bad_protocols;
    bad_protocols.protocols = 0;
    EXPECT_FALSE(make_client_context(bad_protocols, error));
    ClientContextOptions missing_ca = trusting;
    missing_ca.trusted_certificate = dir_ + "/none.pem";
    EXPECT_FALSE(make_client_context(missing_ca, error));
    EXPECT_NE(error.find("none.pem"), std::string::npos) << error;
}

}  // namespace
}  // namespace sluice::tls
