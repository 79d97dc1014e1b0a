// Helpers shared by the response cache tests (cache_*_test.cc): requests to the
// daemon and to the origin's /cache/ resources (see t/lib/test_upstream.cc), whose
// query sets the response headers and whose body numbers the requests per path.
#pragma once

#include <thread>
#include <ctime>
#include <string>
#include <string_view>

#include <gmock/gmock-matchers.h>

#include "harness.h"

namespace sluice::test::cache {

using namespace std::chrono_literals;

// Percent-encodes all but unreserved characters, ':' and '/', for a query value.
inline std::string enc(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || std::string_view("-._~:/").find(char(c)) != std::string_view::npos) {
            out += char(c);
        } else {
            char hex[4];
            std::snprintf(hex, sizeof hex, "%%%02X", c);
            out += hex;
        }
    }
    return out;
}

// "h=Name:value" for a /cache/ query: the origin answers with that header line.
inline std::string h(std::string_view name, std::string_view value) {
    return "h=" + std::string(name) + ":" + enc(value);
}
inline std::string cc(std::string_view value) { return h("Cache-Control", value); }

inline std::string http_date(time_t t) {
    tm parts{};
    gmtime_r(&t, &parts);
    char out[64];
    std::strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S GMT", &parts);
    return out;
}

// The number after "key": in a JSON body, or -1.
inline long json_count(std::string_view json, std::string_view key = "count") {
    std::string needle = "\"" + std::string(key) + "\":";
    size_t at = json.find(needle);
    if (at == std::string_view::npos) return -1;
    at += needle.size();
    size_t end = json.find_first_not_of("0123456789", at);
    if (end == at) return -1;
    return std::stol(std::string(json.substr(at, end - at)));
}

// Which origin request made this body (the /cache/ body's "count"), -1 if none.
inline long made_by(const Response& r) { return json_count(r.body); }

inline std::string cache_status(const Response& r) { return r.header("X-Cache-Status"); }

inline Response get(uint16_t port, std::string_view path, std::string_view headers = "",
                    Millis timeout = kDefaultTimeout) {
    auto r = http_get(port, path, headers, timeout);
    return r ? *r : Response{};
}

// METHOD path with an empty body (Content-Length: 0 for methods that have one).
inline Response send_method(uint16_t port, std::string_view method, std::string_view path,
                            std::string_view headers = "") {
    std::string raw = std::string(method) + " " + std::string(path) +
                      " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + std::string(headers);
    if (method != "GET" && method != "HEAD" && method != "PURGE") raw += "Content-Length: 0\r\n";
    raw += "\r\n";
    auto r = http_request(port, raw, kDefaultTimeout, method == "HEAD");
    return r ? *r : Response{};
}

inline Response head(uint16_t port, std::string_view path, std::string_view headers = "") {
    return send_method(port, "HEAD", path, headers);
}

inline Response purge(uint16_t port, std::string_view path) { return send_method(port, "PURGE", path); }

// How many requests the origin had for a /cache/ path (query excluded).
inline long origin_count(uint16_t upstream_port, std::string_view cache_path) {
    auto r = http_get(upstream_port, "/count" + std::string(cache_path));
    return r && r->status == 200 ? json_count(r->body) : -1;
}

// Freshness in this cache is counted in whole seconds (Date and Age are), so a
// max-age=1 entry is surely stale once more than 2 s have passed.
inline void wait_past_one_second_lifetime() { std::this_thread::sleep_for(2200ms); }

}  // namespace sluice::test::cache
