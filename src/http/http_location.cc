// Server selection by Host and location selection by path, with nginx's rules.
#include <cstring>

#include "core/str.h"
#include "http/http_core.h"
#include "http/http_request.h"

namespace sluice::http {

namespace {

bool match_regex(Request* r, const Regex& re, std::string_view subject) {
    size_t ov[2 * 20];
    size_t pairs = std::min<size_t>(size_t(re.capture_count()) + 1, 20);
    if (!re.match(subject, ov, 2 * pairs)) return false;
    if (r) set_regex_captures(*r, re, subject, ov, pairs);
    return true;
}

bool prefix_matches(const std::string& prefix, std::string_view path) {
    return path.size() >= prefix.size() && memcmp(path.data(), prefix.data(), prefix.size()) == 0;
}

struct Found {
    LocationConf* loc = nullptr;
    bool final = false;  // exact, ^~ or regex: no further search
};

// nginx's ngx_http_core_find_location: exact, then the longest prefix (and,
// recursively, its nested locations), then regexes in order unless the
// longest prefix was "^~".
Found find_in(const LocationConf& level, std::string_view path, Request* r) {
    for (LocationConf* e : level.exact)
        if (path == e->core->name) return {e, true};
    Found best;
    for (LocationConf* p : level.prefixes) {
        if (!prefix_matches(p->core->name, path)) continue;
        best.loc = p;
        if (path == p->core->name) {
            // An exact hit on a prefix location still consults nested exact locations.
        }
        Found nested = find_in(*p, path, r);
        if (nested.final) return nested;
        if (nested.loc) best.loc = nested.loc;
        if (p->core->match == CoreLocConf::Match::NoRegexPrefix) return {best.loc, true};
        break;  // prefixes are sorted longest first
    }
    for (LocationConf* x : level.regexes) {
        if (!match_regex(r, *x->core->regex, path)) continue;
        Found nested = find_in(*x, path, r);
        return {nested.loc ? nested.loc : x, true};
    }
    return best;
}

}  // namespace

LocationConf* find_location(const LocationConf& server_root, std::string_view path, Request* r) {
    Found f = find_in(server_root, path, r);
    return f.loc ? f.loc : const_cast<LocationConf*>(&server_root);
}

LocationConf* find_named_location(const CoreSrvConf& s, std::string_view name) {
    for (LocationConf* l : s.root_location->named)
        if (l->core->name == name) return l;
    return nullptr;
}

CoreSrvConf* find_server(const AddressServers& as, std::string_view host, Request* r, CoreSrvConf* fallback) {
    if (as.servers.size() == 1 && as.regexes.empty()) return as.default_server;
    if (!host.empty()) {
        auto it = as.exact.find(host);
        if (it != as.exact.end()) return it->second;
        for (auto& [suffix, s] : as.wildcard_head)  // ".example.com"
            if (host.size() > suffix.size() && host.substr(host.size() - suffix.size()) == suffix) return s;
        for (auto& [prefix, s] : as.wildcard_tail)  // "www.example."
            if (host.size() > prefix.size() && host.substr(0, prefix.size()) == prefix) return s;
        for (auto& [re, s] : as.regexes)
            if (match_regex(r, *re, host)) return s;
    } else {
        auto it = as.exact.find("");
        if (it != as.exact.end()) return it->second;
    }
    return fallback ? fallback : as.default_server;
}

}  // namespace sluice::http
