// libFuzzer target for request-target splitting and path normalization.
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_uri.cc src/http/uri.cc src/http/http_parse.cc -o objs/fuzz_uri
// Run:   objs/fuzz_uri -max_total_time=60 t/fuzz/corpus/uri
//
// Checks that a normalized path is a fixed point (normalizing it again changes
// nothing), never grows, and holds no dot segment or empty one when merged,
// no dot segment with path parameters and no double-encoded delimiter.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "http/http_parse.h"
#include "http/uri.h"

using namespace sluice::http;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

void check_normalized(std::string_view path, const NormalizeOptions& options) {
    std::string out;
    if (normalize_path(path, options, out) != 0) return;
    check(!out.empty() && out[0] == '/');
    check(out.size() <= std::max<size_t>(path.size(), 1));
    for (char c : out) check(chars::kPath(c));
    check(out.find("/./") == std::string::npos && out.find("/../") == std::string::npos);
    check(!out.ends_with("/.") && !out.ends_with("/.."));
    if (options.merge_slashes) check(out.find("//") == std::string::npos);
    if (!options.allow_encoded_slash) check(out.find("%2F") == std::string::npos);
    // Nothing a backend that drops ";parameters" or decodes twice reads as a
    // dot segment or a delimiter.
    for (std::string_view seg : {"/..;", "/.;", "/..%3B", "/.%3B"}) check(out.find(seg) == std::string::npos);
    for (std::string_view twice : {"%252E", "%252e", "%2525"}) check(out.find(twice) == std::string::npos);
    if (!options.allow_encoded_slash) {
        for (std::string_view twice : {"%252F", "%252f", "%255C", "%255c"}) check(out.find(twice) == std::string::npos);
    }
    std::string again;
    check(normalize_path(out, options, again) == 0 && again == out);
    std::string fs;
    if (decode_path_for_fs(out, fs)) {
        check(fs.find('\0') == std::string::npos && fs.find("/../") == std::string::npos);
    } else {
        // Only a kept %2F or %5C can decode into a dot segment.
        check(options.allow_encoded_slash);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const Method method = static_cast<Method>(data[0] % 11);
    std::string_view target(reinterpret_cast<const char*>(data + 1), size - 1);
    UriParts parts;
    if (split_target(target, method, parts)) {
        for (std::string_view part : {parts.scheme, parts.authority, parts.query})
            check(part.empty() || (part.data() >= target.data() &&
                                   part.data() + part.size() <= target.data() + target.size()));
        if (!parts.authority.empty()) check(valid_authority(parts.authority));
    }
    valid_authority(target, data[0] & 0x80);
    for (int i = 0; i < 4; ++i) {
        NormalizeOptions options;
        options.merge_slashes = i & 1;
        options.allow_encoded_slash = i & 2;
        check_normalized(target, options);
    }
    std::string fs;
    decode_path_for_fs(target, fs);
    return 0;
}
