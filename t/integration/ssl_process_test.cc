// TLS session resumption across worker processes: the shared-memory session
// cache, session tickets under the key the master made before forking, and
// ticket key files rotated by a reload (the old key still decrypts).
#include <signal.h>

#include <set>
#include <string>

#include "harness.h"
#include "test_pki.h"
#include "tls_client.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

// The connection closes after the response, so that every record the server
// sent (TLS 1.3 tickets included) has been read when the session is taken.
constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

class SslSessionTest : public testing::Test {
protected:
    static void SetUpTestSuite() {
        pki_ = new TestPki();
        cert_ = pki_->server("s", {"localhost"});
    }
    static void TearDownTestSuite() {
        delete pki_;
        pki_ = nullptr;
    }

    static std::string config(std::string_view sessions, std::string_view marker = "one") {
        return std::string(kMainConfig) + "worker_processes 2;\nevents { worker_connections 64; }\nhttp {\n" +
               "    access_log off;\n    server {\n        listen 127.0.0.1:{{PORT}} ssl reuseport;\n" +
               "        ssl_certificate {{CERT}};\n        ssl_certificate_key {{KEY}};\n" + std::string(sessions) +
               "        return 200 \"" + std::string(marker) + " $pid $ssl_session_reused\";\n    }\n}\n";
    }
    static ConfigVars vars() { return {{"CERT", cert_.cert}, {"KEY", cert_.key}}; }

    static TlsClientOptions options(std::shared_ptr<SSL_SESSION> session = nullptr) {
        TlsClientOptions o;
        o.server_name = "localhost";
        o.ca_file = pki_->ca_cert();
        o.session = std::move(session);
        return o;
    }

    // A first full handshake; the session it leaves (after the response, when
    // TLS 1.3 tickets have arrived).
    static std::shared_ptr<SSL_SESSION> first_session(uint16_t port, int max_version = 0) {
        TlsClientOptions o = options();
        o.max_version = max_version;
        TlsConn c(port, o);
        if (!c.ok()) return nullptr;
        c.send(kRequest);
        auto r = c.read_response();
        c.read_until_close();  // a ticket may follow the response
        if (!r || r->body.find(" .") == std::string::npos) return nullptr;
        return c.session();
    }

    struct Resumed {
        int reused = 0;
        int total = 0;
        std::set<std::string> pids;
    };
    // `tries` connections, each offering the newest session it has (a TLS 1.3
    // session from a server-side cache is single-use: each resumption brings a
    // new one); which worker answered each.
    static Resumed resume(uint16_t port, std::shared_ptr<SSL_SESSION> session, int tries, int max_version = 0) {
        Resumed out;
        for (int i = 0; i < tries; ++i) {
            TlsClientOptions o = options(session);
            o.max_version = max_version;
            TlsConn c(port, o);
            if (!c.ok() || !c.send(kRequest)) continue;
            auto r = c.read_response();
            if (!r) continue;
            c.read_until_close();  // a ticket may follow the response
            ++out.total;
            size_t space = r->body.find(' ');
            size_t last = r->body.rfind(' ');
            out.pids.insert(r->body.substr(space + 1, last - space - 1));
            if (r->body.ends_with(" r")) ++out.reused;
            if (auto newer = c.session()) session = newer;
        }
        return out;
    }

    static TestPki* pki_;
    static CertPair cert_;
};

TestPki* SslSessionTest::pki_ = nullptr;
CertPair SslSessionTest::cert_;

TEST_F(SslSessionTest, SharedCacheResumesOnEveryWorker) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        Daemon d(config("        ssl_session_cache shared:SSL:1m;\n        ssl_session_tickets off;\n"), vars());
        ASSERT_TRUE(d.start());
        auto session = first_session(d.port(), version);
        ASSERT_TRUE(session);
        Resumed r = resume(d.port(), session, 20, version);
        EXPECT_EQ(r.total, 20);
        EXPECT_EQ(r.reused, 20) << "version " << version;
        EXPECT_GE(r.pids.size(), 2u) << "every connection went to one worker: nothing shown across workers";
    }
}

TEST_F(SslSessionTest, WithoutACacheOrTicketsNothingResumes) {
    Daemon d(config("        ssl_session_cache off;\n        ssl_session_tickets off;\n"), vars());
    ASSERT_TRUE(d.start());
    auto session = first_session(d.port(), TLS1_2_VERSION);
    ASSERT_TRUE(session);
    Resumed r = resume(d.port(), session, 4, TLS1_2_VERSION);
    EXPECT_EQ(r.total, 4);
    EXPECT_EQ(r.reused, 0);
}

TEST_F(SslSessionTest, TicketsResumeOnEveryWorkerAndAcrossReloads) {
    Daemon d(config("        ssl_session_cache off;\n"), vars());
    ASSERT_TRUE(d.start());
    auto session = first_session(d.port());
    ASSERT_TRUE(session);
    Resumed r = resume(d.port(), session, 20);
    EXPECT_EQ(r.reused, 20);
    EXPECT_GE(r.pids.size(), 2u);
    // The master's key outlives a reload.
    d.write_config(config("        ssl_session_cache off;\n", "two"));
    ASSERT_TRUE(d.signal(SIGHUP));
    ASSERT_TRUE(wait_until([&] {
        auto got = https_get(d.port(), options(), "/");
        return got && got->body.starts_with("two ");
    }, kDefaultTimeout));
    Resumed after = resume(d.port(), session, 6);
    EXPECT_EQ(after.reused, 6);
}

TEST_F(SslSessionTest, TicketKeyRotationByReloadStillDecryptsWithTheOldKey) {
    Daemon d(config("        ssl_session_cache off;\n        ssl_session_ticket_key {{PREFIX}}/old.key;\n"), vars());
    d.dir().write("old.key", std::string(80, 'o'));
    d.dir().write("new.key", std::string(48, 'n'));
    ASSERT_TRUE(d.start());
    auto session = first_session(d.port());
    ASSERT_TRUE(session);
    EXPECT_EQ(resume(d.port(), session, 2).reused, 2);

    auto reload = [&](std::string_view sessions, std::string_view marker) {
        d.write_config(config(sessions, marker));
        EXPECT_TRUE(d.signal(SIGHUP));
        return wait_until([&] {
            auto got = https_get(d.port(), options(), "/");
            return got && got->body.starts_with(std::string(marker) + " ");
        }, kDefaultTimeout);
    };
    // The new key encrypts, the old one still decrypts.
    ASSERT_TRUE(reload("        ssl_session_cache off;\n        ssl_session_ticket_key {{PREFIX}}/new.key;\n"
                       "        ssl_session_ticket_key {{PREFIX}}/old.key;\n",
                       "rotated"));
    EXPECT_EQ(resume(d.port(), session, 1).reused, 1);
    auto renewed = first_session(d.port());
    ASSERT_TRUE(renewed);
    // The old key gone: its tickets no longer resume, the new key's do.
    ASSERT_TRUE(reload("        ssl_session_cache off;\n        ssl_session_ticket_key {{PREFIX}}/new.key;\n", "new"));
    EXPECT_EQ(resume(d.port(), session, 1).reused, 0);
    EXPECT_EQ(resume(d.port(), renewed, 1).reused, 1);
}

}  // namespace
}  // namespace sluice::test
