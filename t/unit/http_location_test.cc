// Location and server selection, and configuration errors of the http core,
// through configurations loaded the way the daemon loads them.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "core/cycle.h"
#include "http/http_core.h"

namespace sluice::http {
namespace {

class ConfLoad {
public:
    explicit ConfLoad(const std::string& text) {
        char tmpl[] = "/tmp/sluice-unit-XXXXXX";
        dir_ = mkdtemp(tmpl);
        path_ = dir_ + "/sluice.conf";
        mkdir((dir_ + "/logs").c_str(), 0755);  // the default access_log lives there
        std::ofstream(path_) << text;
        StartOptions opts;
        opts.prefix = dir_ + "/";
        opts.conf_path = path_;
        cycle_ = Cycle::load(opts, nullptr, error_);
    }
    ~ConfLoad() {
        std::string cmd = "rm -rf '" + dir_ + "'";
        if (system(cmd.c_str()) != 0) perror("rm");
    }
    Cycle* cycle() { return cycle_.get(); }
    const std::string& error() const { return error_; }
    const std::string& path() const { return path_; }

    // The location name chosen for `path` in the first server.
    std::string where(std::string_view uri) {
        CoreMainConf* mc = http_main_conf(*cycle_);
        LocationConf* loc = find_location(*mc->servers[0]->root_location, uri, nullptr);
        return loc->core->name.empty() ? "(server)" : loc->core->name;
    }

private:
    std::string dir_, path_, error_;
    std::unique_ptr<Cycle> cycle_;
};

std::string http_conf(const std::string& server_body) {
    return "events {}\nhttp {\n server {\n  listen 127.0.0.1:1;\n" + server_body + " }\n}\n";
}

TEST(HttpLocation, NginxMatchingMatrix) {
    ConfLoad c(http_conf(R"(
  location = / { }
  location / { }
  location /documents/ { }
  location ^~ /images/ { }
  location ~* \.(gif|jpg|jpeg)$ { }
  location /api/ {
      location ~ ^/api/v[0-9]+/ { }
      location /api/internal/ { }
  }
  location ~ ^/doc { }
  location = /exact { }
)"));
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    EXPECT_EQ(c.where("/"), "/");  // "= /" wins over "/"
    EXPECT_EQ(c.where("/index.html"), "/");
    EXPECT_EQ(c.where("/documents/document.html"), "^/doc");  // regex beats a plain prefix
    EXPECT_EQ(c.where("/images/1.gif"), "/images/");             // ^~ stops regex search
    EXPECT_EQ(c.where("/documents/1.jpg"), "\\.(gif|jpg|jpeg)$");
    EXPECT_EQ(c.where("/exact"), "/exact");
    EXPECT_EQ(c.where("/exact/more"), "/");
    EXPECT_EQ(c.where("/api/v2/users"), "^/api/v[0-9]+/");  // nested regex
    EXPECT_EQ(c.where("/api/internal/x"), "/api/internal/");
    EXPECT_EQ(c.where("/api/other"), "/api/");
    EXPECT_EQ(c.where("/api/a.gif"), "\\.(gif|jpg|jpeg)$");  // outer regex after nested ones
}

TEST(HttpLocation, CaseSensitivity) {
    ConfLoad c(http_conf("  location ~ \\.PHP$ { }\n  location ~* \\.TXT$ { }\n  location / { }\n"));
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    EXPECT_EQ(c.where("/a.PHP"), "\\.PHP$");
    EXPECT_EQ(c.where("/a.php"), "/");
    EXPECT_EQ(c.where("/a.txt"), "\\.TXT$");
}

TEST(HttpLocation, NoLocationFallsBackToServer) {
    ConfLoad c(http_conf("  location /a { }\n"));
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    EXPECT_EQ(c.where("/b"), "(server)");
    EXPECT_EQ(c.where("/abc"), "/a");
}

void expect_error(const std::string& text, const std::string& message, int line) {
    ConfLoad c(text);
    EXPECT_EQ(c.cycle(), nullptr);
    EXPECT_EQ(c.error(), message + " in " + c.path() + ":" + std::to_string(line)) << text;
}

TEST(HttpConfErrors, FileAndLine) {
    expect_error("events {}\nfoo bar;\n", "unknown directive \"foo\"", 2);
    expect_error("events {}\nlisten 80;\n", "\"listen\" directive is not allowed here", 2);
    expect_error("worker_processes;\n", "invalid number of arguments in \"worker_processes\" directive", 1);
    expect_error("worker_processes 1 2;\n", "invalid number of arguments in \"worker_processes\" directive", 1);
    expect_error("daemon maybe;\n", "invalid value \"maybe\" in \"daemon\" directive, it must be \"on\" or \"off\"", 1);
    expect_error("daemon on;\ndaemon off;\n", "\"daemon\" directive is duplicate", 2);
    expect_error(http_conf("  client_max_body_size 10q;\n"),
                 "invalid value \"10q\" in \"client_max_body_size\" directive", 5);
    expect_error(http_conf("  keepalive_timeout 5x;\n"), "invalid value \"5x\" in \"keepalive_timeout\" directive", 5);
    expect_error(http_conf("  listen 127.0.0.1:1;\n"), "duplicate listen 127.0.0.1:1", 5);
    expect_error(http_conf("  location ~ (a { }\n").substr(0),
                 "pcre2_compile() failed: missing closing parenthesis in \"(a\" at \"\"", 5);
    expect_error(http_conf("  location /a { }\n  location /a { }\n"), "duplicate location \"/a\"", 6);
    expect_error(http_conf("  location /a { location /b { } }\n"), "location \"/b\" is outside location \"/a\"", 5);
    expect_error(http_conf("  return 99;\n"), "invalid return code \"99\"", 5);
    expect_error(http_conf("  error_page 200 /x;\n"), "value \"200\" must be between 300 and 599", 5);
    expect_error(http_conf("  return 200 $nosuchvar;\n"), "unknown \"nosuchvar\" variable", 5);
    expect_error("events {}\nhttp {\n server { listen 127.0.0.1:1 default_server; }\n"
                 " server { listen 127.0.0.1:1 default_server; }\n}\n",
                 "a duplicate default server for 127.0.0.1:1", 4);
    expect_error("events {}\nevents {}\n", "\"events\" directive is duplicate", 2);
    expect_error("http { server { listen 127.0.0.1:99999; } }\n",
                 "invalid port in \"127.0.0.1:99999\" of the \"listen\" directive", 1);
}

TEST(HttpServerSelection, NamesAndDefault) {
    ConfLoad c("events {}\nhttp {\n"
               " server { listen 127.0.0.1:1; server_name first.test; }\n"
               " server { listen 127.0.0.1:1 default_server; server_name default.test; }\n"
               " server { listen 127.0.0.1:1; server_name *.wild.test; }\n"
               " server { listen 127.0.0.1:1; server_name www.tail.*; }\n"
               " server { listen 127.0.0.1:1; server_name ~^api-(?<region>[a-z]+)\\.test$; }\n"
               " server { listen 127.0.0.1:1; server_name .both.test; }\n"
               "}\n");
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    CoreMainConf* mc = http_main_conf(*c.cycle());
    ASSERT_EQ(mc->addresses.size(), 1u);
    const AddressServers& as = *mc->addresses[0];
    auto name = [&](std::string_view host) { return find_server(as, host, nullptr)->server_names[0].name; };
    EXPECT_EQ(name("first.test"), "first.test");
    EXPECT_EQ(name("unknown.test"), "default.test");
    EXPECT_EQ(name(""), "default.test");
    EXPECT_EQ(name("a.b.wild.test"), "*.wild.test");
    EXPECT_EQ(name("wild.test"), "default.test");
    EXPECT_EQ(name("www.tail.org"), "www.tail.*");
    EXPECT_EQ(name("api-eu.test"), "~^api-(?<region>[a-z]+)\\.test$");
    EXPECT_EQ(name("both.test"), ".both.test");
    EXPECT_EQ(name("x.both.test"), ".both.test");
}

}  // namespace
}  // namespace sluice::http
