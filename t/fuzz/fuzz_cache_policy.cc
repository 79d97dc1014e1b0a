// libFuzzer target for the cache policy's parsers and decisions
// (src/http/http_cache_policy.h): Cache-Control, Age, Expires, Vary and the
// secondary key, entity-tags and If-None-Match, the 304 header merge, and the
// freshness and reuse decisions built on them.
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_cache_policy.cc \
//          src/http/http_cache_policy.cc src/http/http_parse.cc src/http/uri.cc src/core/http_date.cc \
//          -o objs/fuzz_cache_policy
// Run:   objs/fuzz_cache_policy -max_total_time=60 t/fuzz/corpus/cache_policy
//
// Input: one selector byte (status, method, configuration bits), then the
// response's field lines, an empty line, and the request's field lines, as
// "Name: value" lines ending in "\n". Besides crashes it checks: a request
// matches the Vary key it produced; every view the functions return lies
// inside their inputs; an entity-tag that is valid matches itself weakly and
// strongly unless weak; the 304 merge never writes past its output; ages
// and lifetimes are never negative and never above kDeltaSecondsMax.
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "http/http_cache_policy.h"

using namespace sluice::http;
using namespace sluice::http::cache;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

bool inside(std::string_view view, std::string_view whole) {
    return view.empty() || (view.data() >= whole.data() && view.data() + view.size() <= whole.data() + whole.size());
}

// "Name: value" lines; a line without a colon is a field with an empty name,
// which the functions must survive too (the parser never makes one, but
// merged heads and tests do).
std::vector<Header> split_fields(std::string_view text) {
    std::vector<Header> out;
    while (!text.empty() && out.size() < 64) {
        size_t nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        size_t colon = line.find(':');
        Header h;
        if (colon == std::string_view::npos) {
            h.value = line;
        } else {
            h.name = line.substr(0, colon);
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
            h.value = value;
        }
        out.push_back(h);
    }
    return out;
}

void check_time(int64_t t) { check(t >= 0 && t <= kDeltaSecondsMax); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t selector = data[0];
    std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    size_t split = input.find("\n\n");
    std::string_view response_text = input.substr(0, split);
    std::string_view request_text = split == std::string_view::npos ? std::string_view() : input.substr(split + 2);
    const std::vector<Header> response = split_fields(response_text);
    const std::vector<Header> request = split_fields(request_text);

    static constexpr int kStatuses[] = {200, 203, 204, 206, 300, 301, 304, 404, 405, 410, 414, 500, 501, 502, 503, 599};
    const int status = kStatuses[selector & 15];
    const Method method = static_cast<Method>((selector >> 4) % 11);
    CachePolicyConfig cfg;
    cfg.revalidate = selector & 0x10;
    cfg.ignore_headers = uint8_t(selector >> 3);
    cfg.use_stale = uint16_t(selector * 37u);
    cfg.ignore_request_cache_control = selector & 0x80;
    cfg.background_update = selector & 0x40;
    cfg.add_valid(0, 60);
    cfg.add_valid(200, int64_t(selector) * 1000);

    // Cache-Control, Age, Expires.
    CacheControl cc = parse_cache_control(response);
    for (std::string_view v : {cc.no_cache_fields, cc.private_fields}) check(inside(v, response_text));
    for (int64_t t : {cc.max_age, cc.s_maxage, cc.stale_while_revalidate, cc.stale_if_error, cc.max_stale, cc.min_fresh})
        check(t == kAbsent || (t >= 0 && t <= kDeltaSecondsMax));
    int64_t age = parse_age(response);
    check_time(age);
    char age_buf[24];
    std::string_view age_text = format_age(age, age_buf);
    check(!age_text.empty() && age_text.size() < sizeof age_buf);
    for (char c : age_text) check(c >= '0' && c <= '9');
    parse_expires(response);
    authorization_allows_sharing(cc);

    RequestCacheInfo req = parse_request_cache_info(method, request, cfg);
    ResponseCacheInfo resp = parse_response_cache_info(status, response, cfg);
    check(inside(resp.etag, response_text) && inside(resp.last_modified_value, response_text));
    if (!resp.etag.empty()) check(etag_valid(resp.etag));

    // Storing, freshness and reuse.
    const int64_t now = 1'700'000'000 + int64_t(selector) * 977;
    storability(req, resp, cfg, now);
    check_time(freshness_lifetime(resp, cfg, now).lifetime);
    EntryPolicy entry = make_entry_policy(resp, cfg, now - 1, now);
    check_time(entry.corrected_initial_age);
    check(entry.freshness_lifetime >= 0);
    for (int64_t later : {now, now + 1, now + 86400, now + kDeltaSecondsMax}) {
        ReuseContext ctx;
        ctx.now = later;
        ctx.update_in_progress = selector & 1;
        CacheDecision d = decide_reuse(req, &entry, cfg, ctx);
        cache_status_name(cache_status_for(d));
        may_serve_stale_on_error(req, entry, cfg, UpstreamFailure::Status, status, later);
    }
    decide_reuse(req, nullptr, cfg, ReuseContext{now, false, false});
    answer_from_cache(req, resp, now);
    Validators validators = conditional_request_validators(resp);
    (void)validators;

    // Vary: a request always matches the key it produced.
    VaryFields vary = parse_vary(response);
    for (size_t i = 0; i < vary.count; ++i) check(inside(vary.names[i], response_text));
    char key[4096];
    size_t key_length = vary_key(vary, request, key);
    if (key_length != SIZE_MAX) {
        check(key_length <= sizeof key);
        check(vary_matches(vary, std::string_view(key, key_length), request));
    }

    // Entity-tags and If-None-Match, with the response's tags and values.
    for (const Header& h : response) {
        if (etag_valid(h.value)) {
            check(etag_weak_match(h.value, h.value));
            check(etag_strong_match(h.value, h.value) == !h.value.starts_with("W/"));
            check(if_none_match_matches(h.value, h.value));
        }
        for (const Header& r : request) if_none_match_matches(r.value, h.value);
    }

    // The 304 merge: the request's lines stand in for the 304's.
    Header merged[48];
    size_t n = merge_not_modified_headers(response, request, merged);
    if (n != SIZE_MAX) {
        check(n <= 48);
        for (size_t i = 0; i < n; ++i)
            check((inside(merged[i].name, response_text) && inside(merged[i].value, response_text)) ||
                  (inside(merged[i].name, request_text) && inside(merged[i].value, request_text)));
        parse_response_cache_info(status, std::span<const Header>(merged, n), cfg);
    }
    not_modified_matches(resp, parse_response_cache_info(304, request, cfg));

    // Invalidation targets point into the target or the response.
    std::string_view target = request.empty() ? std::string_view("/") : request.front().value;
    Origin origin{"http", "gw.test", 0};
    InvalidationTargets targets = invalidation_targets(method, status, origin, target, response);
    check(targets.count <= targets.uris.size());
    for (size_t i = 0; i < targets.count; ++i)
        check(inside(targets.uris[i], response_text) || inside(targets.uris[i], target));
    request_has_unkeyed_risk(request);
    return 0;
}
