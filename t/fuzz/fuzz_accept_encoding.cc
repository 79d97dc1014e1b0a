// libFuzzer target for the Accept-Encoding parser (modules/gzip).
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Imodules/gzip t/fuzz/fuzz_accept_encoding.cc modules/gzip/accept_encoding.cc -o objs/fuzz_accept_encoding
// Run:   objs/fuzz_accept_encoding -max_total_time=60 t/fuzz/corpus/accept_encoding
//
// Checks that q-values stay in 0..1000 or "not listed", that parsing a value
// in two fields gives what one field joined by a comma gives, that a coding
// once listed keeps its first q-value, and that gzip is acceptable only when
// gzip (or "*" in its absence) has a positive q-value.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "accept_encoding.h"

using namespace sluice::http;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

bool valid_q(int q) { return q == AcceptedCodings::kNotListed || (q >= 0 && q <= 1000); }

bool same(const AcceptedCodings& a, const AcceptedCodings& b) {
    return a.gzip == b.gzip && a.any == b.any && a.identity == b.identity;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    AcceptedCodings whole;
    parse_accept_encoding(input, whole);
    check(valid_q(whole.gzip) && valid_q(whole.any) && valid_q(whole.identity));

    bool ok = gzip_acceptable(whole);
    int q = whole.gzip != AcceptedCodings::kNotListed ? whole.gzip : whole.any;
    if (ok) check(q > 0);
    if (q <= 0) check(!ok);

    // Split at the first comma: two fields are one list.
    size_t comma = input.find(',');
    if (comma != std::string_view::npos) {
        AcceptedCodings split;
        parse_accept_encoding(input.substr(0, comma), split);
        parse_accept_encoding(input.substr(comma + 1), split);
        check(same(split, whole));
    }

    // Appending more elements never changes what was listed first.
    AcceptedCodings more = whole;
    parse_accept_encoding("gzip;q=0.5, *;q=0, identity", more);
    if (whole.gzip != AcceptedCodings::kNotListed) check(more.gzip == whole.gzip);
    if (whole.any != AcceptedCodings::kNotListed) check(more.any == whole.any);
    return 0;
}
