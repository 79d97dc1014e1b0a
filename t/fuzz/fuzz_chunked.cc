// libFuzzer target for the chunked body decoder.
// Build: clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc t/fuzz/fuzz_chunked.cc src/http/http_chunked.cc -o objs/fuzz_chunked
// Run:   objs/fuzz_chunked -max_total_time=60 t/fuzz/corpus/chunked
//
// Decodes the input in one piece and again cut into pieces chosen by the
// input itself; both must agree on the outcome, the body and the bytes used.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "http/http_chunked.h"

using namespace sluice::http;

namespace {

void check(bool condition) {
    if (!condition) std::abort();
}

struct Outcome {
    ChunkedDecoder::Status status = ChunkedDecoder::Status::NeedMore;
    std::string body;
    size_t consumed = 0;
    int error_status = 0;
    bool operator==(const Outcome&) const = default;
};

Outcome decode(const char* p, size_t n, size_t piece, const ChunkedLimits& limits) {
    ChunkedDecoder decoder(limits);
    Outcome out;
    for (size_t offset = 0, length = 0; offset < n; offset += length) {
        // Each piece in its own exact-size buffer so ASan sees any over-read.
        length = std::min(piece, n - offset);
        std::vector<char> buffer(p + offset, p + offset + length);
        size_t used = 0;
        while (true) {
            size_t consumed = 0;
            std::string_view data;
            auto status = decoder.decode(buffer.data() + used, length - used, consumed, data);
            check(consumed <= length - used);
            used += consumed;
            if (status == ChunkedDecoder::Status::Data) {
                check(!data.empty() && data.data() >= buffer.data() &&
                      data.data() + data.size() <= buffer.data() + used);
                out.body.append(data);
                continue;
            }
            out.status = status;
            if (status == ChunkedDecoder::Status::NeedMore) {
                check(used == length);
                break;
            }
            out.consumed = offset + used;
            out.error_status = decoder.error_status();
            check(decoder.body_bytes() == out.body.size());
            if (status == ChunkedDecoder::Status::Error)
                check(out.error_status == 400 || out.error_status == 413);
            return out;
        }
    }
    out.consumed = n;
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    ChunkedLimits limits;
    if (data[0] & 1) {
        limits.max_chunk_ext = data[0] >> 3;
        limits.max_trailer = data[0] >> 2;
        limits.max_body = uint64_t(data[1]) * 3;
    }
    const size_t piece = 1 + (data[1] % 7);
    const char* p = reinterpret_cast<const char*>(data + 2);
    const size_t n = size - 2;
    Outcome whole = decode(p, n, n, limits);
    Outcome pieces = decode(p, n, piece, limits);
    check(whole == pieces);
    if (whole.body.size() > 0) check(whole.body.size() <= limits.max_body);
    return 0;
}
