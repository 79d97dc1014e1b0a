// The log module against the real daemon: the combined format, escaping,
// if=, off, buffered writes (flushed when full, by the flush timer and at
// exit), USR1 reopening, shared files, and configuration errors.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "sluice_paths.h"

namespace sluice::test {
namespace {

using namespace std::chrono_literals;

// A server on {{PORT}} with `root PREFIX/html`; `http_extra` and
// `server_extra` hold the log directives under test.
std::string log_config(std::string_view http_extra, std::string_view server_extra = "") {
    std::string c(kMainConfig);
    c += "events { worker_connections 64; }\nhttp {\n";
    c += http_extra;
    c += "\n    server {\n"
         "        listen 127.0.0.1:{{PORT}};\n"
         "        server_name localhost;\n"
         "        root {{PREFIX}}/html;\n";
    c += server_extra;
    c += "\n    }\n}\n";
    return c;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

class LogTest : public ::testing::Test {
protected:
    void start(std::string_view http_extra, std::string_view server_extra = "") {
        daemon_ = std::make_unique<Daemon>(log_config(http_extra, server_extra));
        // Workers started by root run as nobody: they must be able to enter the prefix.
        chmod(daemon_->prefix().c_str(), 0755);
        daemon_->dir().write("html/a.txt", "hello\n");
        daemon_->dir().write("html/quiet/a.txt", "quiet\n");
        ASSERT_TRUE(daemon_->start());
    }

    uint16_t port() const { return daemon_->port(); }
    std::string read(std::string_view rel) const { return daemon_->dir().read(rel); }
    std::vector<std::string> lines(std::string_view rel) const { return lines_of(read(rel)); }

    // Lines are written in the log phase, after the response: wait for them.
    bool wait_lines(std::string_view rel, size_t n, Millis timeout = kDefaultTimeout) const {
        return wait_until([&] { return lines(rel).size() >= n; }, timeout);
    }

    int get(std::string_view target, std::string_view headers = "") {
        auto r = http_get(port(), target, headers);
        return r ? r->status : 0;
    }

    std::unique_ptr<Daemon> daemon_;
};

const char* const kTimeLocal = R"(\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\])";

TEST_F(LogTest, CombinedLine) {
    start("access_log {{PREFIX}}/logs/access.log;");
    ASSERT_EQ(get("/a.txt?x=1", "Referer: http://ref.example/page\r\nUser-Agent: test-agent/1.0\r\n"), 200);
    ASSERT_TRUE(wait_lines("logs/access.log", 1));
    auto l = lines("logs/access.log");
    ASSERT_EQ(l.size(), 1u);
    std::regex expected(std::string(R"(127\.0\.0\.1 - - )") + kTimeLocal +
                        R"( "GET /a\.txt\?x=1 HTTP/1\.1" 200 6 "http://ref\.example/page" "test-agent/1\.0")");
    EXPECT_TRUE(std::regex_match(l[0], expected)) << l[0];
}

TEST_F(LogTest, MissingValuesAreDashes) {
    start("access_log {{PREFIX}}/logs/access.log combined;");
    ASSERT_EQ(get("/missing"), 404);
    ASSERT_TRUE(wait_lines("logs/access.log", 1));
    std::string line = lines("logs/access.log")[0];
    std::regex expected(std::string(R"(127\.0\.0\.1 - - )") + kTimeLocal + R"( "GET /missing HTTP/1\.1" 404 \d+ "-" "-")");
    EXPECT_TRUE(std::regex_match(line, expected)) << line;
}

TEST_F(LogTest, DefaultAccessLogUnderThePrefix) {
    // configure writes a default under the prefix as a path relative to it.
    std::string rel = SLUICE_HTTP_LOG_PATH;
    if (rel.starts_with("/")) GTEST_SKIP() << "configured with an access log outside the prefix";
    start("");
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_TRUE(wait_lines(rel, 1)) << rel;
    EXPECT_NE(lines(rel)[0].find("\"GET /a.txt HTTP/1.1\" 200 6"), std::string::npos);
}

TEST_F(LogTest, Escaping) {
    start("log_format j escape=json '{\"ua\":\"$http_user_agent\",\"ref\":\"$http_referer\"}';\n"
          "log_format d '$http_user_agent|$http_referer';\n"
          "log_format n escape=none '$http_user_agent|$http_referer';\n"
          "access_log {{PREFIX}}/logs/json.log j;\n"
          "access_log {{PREFIX}}/logs/default.log d;\n"
          "access_log {{PREFIX}}/logs/none.log n;\n");
    // Quotes, a backslash, a tab and a UTF-8 "é": the request parser admits no
    // other control bytes in a field value.
    std::string ua = "a\"b\\c\td\xC3\xA9";
    ASSERT_EQ(get("/a.txt", "User-Agent: " + ua + "\r\n"), 200);
    ASSERT_TRUE(wait_lines("logs/none.log", 1));
    ASSERT_TRUE(wait_lines("logs/default.log", 1));
    ASSERT_TRUE(wait_lines("logs/json.log", 1));
    EXPECT_EQ(lines("logs/json.log")[0], "{\"ua\":\"a\\\"b\\\\c\\td\xC3\xA9\",\"ref\":\"\"}");
    EXPECT_EQ(lines("logs/default.log")[0], "a\\x22b\\x5Cc\\x09d\\xC3\\xA9|-");
    EXPECT_EQ(lines("logs/none.log")[0], ua + "|");
}

TEST_F(LogTest, ConditionSkipsEmptyAndZero) {
    start("access_log {{PREFIX}}/logs/access.log combined if=$arg_log;");
    ASSERT_EQ(get("/a.txt?log=1"), 200);
    ASSERT_EQ(get("/a.txt?log=0"), 200);
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_EQ(get("/a.txt?log="), 200);
    ASSERT_EQ(get("/a.txt?log=yes"), 200);
    ASSERT_TRUE(wait_lines("logs/access.log", 2));
    // The last request's line is there, so every earlier one would be too.
    auto l = lines("logs/access.log");
    ASSERT_EQ(l.size(), 2u) << read("logs/access.log");
    EXPECT_NE(l[0].find("log=1"), std::string::npos);
    EXPECT_NE(l[1].find("log=yes"), std::string::npos);
}

TEST_F(LogTest, OffInALocation) {
    start("access_log {{PREFIX}}/logs/access.log;", "location /quiet/ { access_log off; }");
    ASSERT_EQ(get("/quiet/a.txt"), 200);
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_TRUE(wait_lines("logs/access.log", 1));
    auto l = lines("logs/access.log");
    ASSERT_EQ(l.size(), 1u) << read("logs/access.log");
    EXPECT_NE(l[0].find("GET /a.txt"), std::string::npos);
}

TEST_F(LogTest, LocationListReplacesTheInheritedOne) {
    start("access_log {{PREFIX}}/logs/main.log;",
          "location /quiet/ { access_log {{PREFIX}}/logs/quiet.log; }");
    ASSERT_EQ(get("/quiet/a.txt"), 200);
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_TRUE(wait_lines("logs/main.log", 1));
    ASSERT_TRUE(wait_lines("logs/quiet.log", 1));
    EXPECT_EQ(lines("logs/main.log").size(), 1u);
    EXPECT_NE(read("logs/quiet.log").find("GET /quiet/a.txt"), std::string::npos);
}

TEST_F(LogTest, BufferIsFlushedByTheTimer) {
    start("access_log {{PREFIX}}/logs/access.log combined buffer=64k flush=2s;");
    ASSERT_EQ(get("/a.txt"), 200);
    // In the worker's buffer, not yet in the file.
    EXPECT_EQ(read("logs/access.log"), "");
    EXPECT_TRUE(wait_lines("logs/access.log", 1, 6000ms));
}

TEST_F(LogTest, BufferIsFlushedAtExit) {
    start("access_log {{PREFIX}}/logs/access.log combined buffer=64k;");
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_EQ(get("/a.txt"), 200);
    EXPECT_EQ(read("logs/access.log"), "");
    EXPECT_TRUE(daemon_->stop());
    EXPECT_EQ(lines("logs/access.log").size(), 2u) << read("logs/access.log");
}

TEST_F(LogTest, BufferIsFlushedWhenFull) {
    start("access_log {{PREFIX}}/logs/access.log combined buffer=1k;");
    const int requests = 40;  // about 4 KiB of lines
    for (int i = 0; i < requests; ++i) ASSERT_EQ(get("/a.txt?n=" + std::to_string(i)), 200);
    auto l = lines("logs/access.log");
    EXPECT_GT(l.size(), 0u);
    EXPECT_LT(l.size(), size_t(requests));
    // Whole lines only: every buffer flush ends with a newline.
    std::string text = read("logs/access.log");
    ASSERT_FALSE(text.empty());
    EXPECT_EQ(text.back(), '\n');
    EXPECT_TRUE(daemon_->stop());
    EXPECT_EQ(lines("logs/access.log").size(), size_t(requests));
}

// Renames the log, sends USR1 to the master, and checks that the next line
// goes to a new file and the earlier one stayed in the renamed file.
void check_reopen(Daemon& d, const std::function<int(std::string_view)>& get) {
    auto lines = [&](std::string_view rel) { return lines_of(d.dir().read(rel)); };
    ASSERT_EQ(get("/a.txt?first"), 200);
    ASSERT_TRUE(wait_until([&] { return lines("logs/access.log").size() == 1; }, kDefaultTimeout));
    std::filesystem::rename(d.dir().path("logs/access.log"), d.dir().path("logs/access.log.1"));
    ASSERT_TRUE(d.signal(SIGUSR1));
    ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(d.dir().path("logs/access.log")); }, kDefaultTimeout))
        << "the access log was not reopened";
    ASSERT_EQ(get("/a.txt?second"), 200);
    ASSERT_TRUE(wait_until([&] { return lines("logs/access.log").size() == 1; }, kDefaultTimeout));
    auto fresh = lines("logs/access.log");
    auto old = lines("logs/access.log.1");
    ASSERT_EQ(fresh.size(), 1u);
    EXPECT_NE(fresh[0].find("?second"), std::string::npos);
    ASSERT_EQ(old.size(), 1u);
    EXPECT_NE(old[0].find("?first"), std::string::npos);
}

TEST_F(LogTest, Usr1ReopensTheFile) {
    start("access_log {{PREFIX}}/logs/access.log;");
    // A log directory that belongs to the worker user, as many packages set it up.
    if (geteuid() == 0) {
        passwd* nobody = getpwnam("nobody");
        ASSERT_NE(nobody, nullptr);
        ASSERT_EQ(chown(daemon_->dir().path("logs").c_str(), nobody->pw_uid, gid_t(-1)), 0);
    }
    check_reopen(*daemon_, [&](std::string_view target) { return get(target); });
}

// nginx's way with a root master and a root-owned log directory: the master
// reopens first and gives the new file to the worker user, then the workers
// reopen it.
TEST_F(LogTest, Usr1ReopenWithRootOwnedLogDirectory) {
    if (geteuid() != 0) GTEST_SKIP() << "needs a root master";
    start("access_log {{PREFIX}}/logs/access.log;");
    check_reopen(*daemon_, [&](std::string_view target) { return get(target); });
    struct stat st;
    ASSERT_EQ(stat(daemon_->dir().path("logs/access.log").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, getpwnam("nobody")->pw_uid);
}

size_t descriptors_open_on(pid_t pid, const std::string& path) {
    size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::error_code link_ec;
        if (std::filesystem::read_symlink(it->path(), link_ec) == path) ++n;
    }
    return n;
}

TEST_F(LogTest, SamePathSharesOneDescriptor) {
    start("access_log {{PREFIX}}/logs/access.log;",
          "location /quiet/ {\n"
          "    access_log {{PREFIX}}/logs/access.log;\n"
          "    access_log {{PREFIX}}/logs/access.log combined;\n"
          "}\n");
    ASSERT_EQ(get("/quiet/a.txt"), 200);
    ASSERT_TRUE(wait_lines("logs/access.log", 2));
    EXPECT_EQ(lines("logs/access.log").size(), 2u);
    std::vector<pid_t> workers;
    ASSERT_TRUE(wait_until([&] { return !(workers = daemon_->worker_pids()).empty(); }, kDefaultTimeout));
    EXPECT_EQ(descriptors_open_on(workers.front(), daemon_->dir().path("logs/access.log")), 1u);
}

TEST_F(LogTest, StaticModuleVariables) {
    start("log_format paths '$document_root|$request_filename|$realpath_root';\n"
          "access_log {{PREFIX}}/logs/paths.log paths;");
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_TRUE(wait_lines("logs/paths.log", 1));
    std::string root = daemon_->dir().path("html");
    std::string real = std::filesystem::canonical(root).string();
    EXPECT_EQ(lines("logs/paths.log")[0], root + "|" + root + "/a.txt|" + real);
}

// ---- configuration errors (sluice -t) ----

std::string check_config(std::string_view http_extra, std::string_view server_extra = "") {
    Daemon d(log_config(http_extra, server_extra));
    auto result = d.run_cli({"-t"});
    EXPECT_NE(result.exit_code, 0) << result.output;
    // Relative to the config file: the message ends with its path and a line.
    std::string out = result.output;
    size_t at = out.find(d.conf_path());
    if (at != std::string::npos) out.replace(at, d.conf_path().size(), "CONF");
    return out;
}

TEST(LogConfig, UnopenablePathFailsTheCheck) {
    std::string out = check_config("access_log /nonexistent-sluice-dir/a.log;");
    EXPECT_NE(out.find("open() \"/nonexistent-sluice-dir/a.log\" failed (2: No such file or directory) in CONF:6"),
              std::string::npos)
        << out;
}

TEST(LogConfig, UnknownFormat) {
    std::string out = check_config("access_log {{PREFIX}}/logs/a.log nope;");
    EXPECT_NE(out.find("unknown log format \"nope\" in CONF:6"), std::string::npos) << out;
}

TEST_F(LogTest, FormatMayUseAVariableDefinedLater) {
    start("log_format f '$uri=$later';\n"
          "access_log {{PREFIX}}/logs/f.log f;\n"
          "map $uri $later { default mapped; }\n");
    ASSERT_EQ(get("/a.txt"), 200);
    ASSERT_TRUE(wait_lines("logs/f.log", 1));
    EXPECT_EQ(lines("logs/f.log")[0], "/a.txt=mapped");
}

TEST(LogConfig, UnknownVariable) {
    std::string out = check_config("log_format f '$remote_addr $no_such_variable';\naccess_log {{PREFIX}}/logs/a.log f;");
    EXPECT_NE(out.find("unknown \"no_such_variable\" variable in CONF:6"), std::string::npos) << out;
}

TEST(LogConfig, DuplicateFormat) {
    std::string out = check_config("log_format combined '$remote_addr';");
    EXPECT_NE(out.find("duplicate \"log_format\" name \"combined\" in CONF:6"), std::string::npos) << out;
}

TEST(LogConfig, FlushNeedsBuffer) {
    std::string out = check_config("access_log {{PREFIX}}/logs/a.log combined flush=1s;");
    EXPECT_NE(out.find("no buffer is defined for access_log"), std::string::npos) << out;
}

TEST(LogConfig, ConflictingBuffers) {
    std::string out = check_config("access_log {{PREFIX}}/logs/a.log combined buffer=8k;",
                                   "access_log {{PREFIX}}/logs/a.log combined buffer=16k;");
    EXPECT_NE(out.find("already defined with conflicting parameters"), std::string::npos) << out;
}

TEST(LogConfig, BadEscape) {
    std::string out = check_config("log_format f escape=xml '$remote_addr';");
    EXPECT_NE(out.find("unknown log format escaping \"xml\" in CONF:6"), std::string::npos) << out;
}

}  // namespace
}  // namespace sluice::test
