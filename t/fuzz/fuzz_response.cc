// libFuzzer target for the upstream response head parser.
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_response.cc src/http/http_parse.cc src/http/uri.cc -o objs/fuzz_response
// Run:   objs/fuzz_response -max_total_time=60 t/fuzz/corpus/response
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "http/http_parse.h"

using namespace sluice::http;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

bool inside(std::string_view view, const char* begin, size_t length) {
    return view.empty() || (view.data() >= begin && view.data() + view.size() <= begin + length);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // The first byte chooses HEAD or not, and small limits or the defaults.
    const bool request_was_head = data[0] & 1;
    ParseLimits limits;
    if (data[0] & 2) {
        limits.max_request_line = 20 + (data[0] >> 4);
        limits.max_header_line = 16 + (data[0] >> 4);
        limits.max_head = 80 + (data[0] >> 2);
        limits.max_headers = 1 + (data[0] >> 6);
    }
    const char* p = reinterpret_cast<const char*>(data + 1);
    const size_t n = size - 1;
    ResponseHead head;
    ParseResult result = parse_response_head(p, n, limits, request_was_head, head);
    if (result == ParseResult::Error) {
        check(head.error_reason != nullptr);
        return 0;
    }
    if (result == ParseResult::Incomplete) {
        check(n <= limits.max_head);
        return 0;
    }
    const size_t h = head.head_length;
    check(h <= n && h <= limits.max_head && std::memcmp(p + h - 4, "\r\n\r\n", 4) == 0);
    check(head.status >= 100 && head.status <= 599);
    check(inside(head.reason, p, h));
    for (const Header& field : head.headers) check(inside(field.name, p, h) && inside(field.value, p, h));
    if (request_was_head || head.status < 200 || head.status == 204 || head.status == 304)
        check(head.body == ResponseHead::Body::None);
    if (head.body == ResponseHead::Body::UntilClose) check(!head.keep_alive);
    std::vector<char> prefix(p, p + h - 1);
    ResponseHead again;
    check(parse_response_head(prefix.data(), prefix.size(), limits, request_was_head, again) ==
          ParseResult::Incomplete);
    return 0;
}
