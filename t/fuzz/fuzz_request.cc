// libFuzzer target for the request head parser.
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_request.cc src/http/http_parse.cc src/http/uri.cc -o objs/fuzz_request
// Run:   objs/fuzz_request -max_total_time=60 t/fuzz/corpus/request
//
// Besides crashes it checks the parser's contract: views stay inside the head,
// a Complete head is Complete on its own bytes and Incomplete on any shorter
// prefix, and an Error stays an Error however many bytes follow.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "http/http_parse.h"
#include "http/uri.h"

using namespace sluice::http;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

ParseLimits limits_for(uint8_t selector) {
    ParseLimits limits;
    if (selector & 1) {
        // Small limits reach the 414/431 paths with short inputs.
        limits.max_request_line = 24 + (selector >> 4);
        limits.max_header_line = 16 + (selector >> 4);
        limits.max_head = 96 + (selector >> 1);
        limits.max_headers = 1 + (selector >> 5);
    }
    return limits;
}

bool inside(std::string_view view, const char* begin, size_t length) {
    return view.empty() || (view.data() >= begin && view.data() + view.size() <= begin + length);
}

void check_complete(const char* p, size_t n, const ParseLimits& limits, const RequestHead& head) {
    const size_t h = head.head_length;
    check(h >= 16 && h <= n && h <= limits.max_head);  // "M / HTTP/1.0\r\n\r\n" is the least
    check(std::memcmp(p + h - 4, "\r\n\r\n", 4) == 0);
    check(head.headers.size() <= limits.max_headers);
    check(head.version_major == 1 && head.version_minor <= 1);
    check(inside(head.method_name, p, h) && inside(head.target, p, h) && inside(head.host, p, h));
    for (const Header& field : head.headers) {
        check(inside(field.name, p, h) && inside(field.value, p, h) && !field.name.empty());
        for (char c : field.name) check(chars::kToken(c));
        for (char c : field.value) check(chars::kFieldValue(c));
        if (!field.value.empty()) {
            check(field.value.front() != ' ' && field.value.front() != '\t');
            check(field.value.back() != ' ' && field.value.back() != '\t');
        }
    }
    if (head.version_minor == 1) check(!head.host.empty());
    if (head.body == RequestHead::Body::Chunked) check(head.version_minor == 1);
    UriParts parts;
    check(split_target(head.target, head.method, parts));

    // The same head on its own, and any prefix of it.
    std::vector<char> exact(p, p + h);
    RequestHead again;
    check(parse_request_head(exact.data(), h, limits, again) == ParseResult::Complete);
    check(again.head_length == h && again.headers.size() == head.headers.size());
    for (size_t cut : {h - 1, h / 2}) {
        std::vector<char> prefix(p, p + cut);
        check(parse_request_head(prefix.data(), cut, limits, again) == ParseResult::Incomplete);
    }
}

void check_error_is_final(const char* p, size_t n, const ParseLimits& limits, const RequestHead& head) {
    const int s = head.error_status;
    check(s == 400 || s == 414 || s == 417 || s == 431 || s == 501 || s == 505);
    check(head.error_reason != nullptr);
    std::vector<char> longer(p, p + n);
    const char tail[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    longer.insert(longer.end(), tail, tail + sizeof tail - 1);
    RequestHead again;
    check(parse_request_head(longer.data(), longer.size(), limits, again) == ParseResult::Error);
    check(again.error_status == s);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const ParseLimits limits = limits_for(data[0]);
    const char* p = reinterpret_cast<const char*>(data + 1);
    const size_t n = size - 1;
    RequestHead head;
    switch (parse_request_head(p, n, limits, head)) {
    case ParseResult::Complete: check_complete(p, n, limits, head); break;
    // max_head bytes without the end of a head is 431, never a wait that a
    // full buffer could not end.
    case ParseResult::Incomplete: check(n < limits.max_head); break;
    case ParseResult::Error: check_error_is_final(p, n, limits, head); break;
    }
    return 0;
}
