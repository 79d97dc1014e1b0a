// Standalone: g++ -std=c++20 -Wall -Wextra -Isrc t/unit/http_chunked_test.cc src/http/http_chunked.cc -lgtest -lgtest_main -pthread -o /tmp/http_chunked_test && /tmp/http_chunked_test
#include "http/http_chunked.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::http {
namespace {

using namespace std::string_literals;
using Status = ChunkedDecoder::Status;

struct Decoded {
    Status status = Status::NeedMore;
    std::string body;
    size_t consumed = 0;  // input bytes used up to Done or Error
    int error_status = 0;
};

// Feeds `input` in pieces cut at `cuts` (ascending offsets), as a connection
// would, until Done or Error.
Decoded decode_in_pieces(std::string_view input, const std::vector<size_t>& cuts,
                         ChunkedLimits limits = {}) {
    ChunkedDecoder decoder(limits);
    Decoded result;
    size_t start = 0;
    for (size_t i = 0; i <= cuts.size(); ++i) {
        size_t stop = i < cuts.size() ? cuts[i] : input.size();
        std::string piece(input.substr(start, stop - start));  // exact-size buffer for ASan
        size_t offset = 0;
        for (;;) {
            size_t consumed = 0;
            std::string_view data;
            Status status = decoder.decode(piece.data() + offset, piece.size() - offset, consumed, data);
            EXPECT_LE(consumed, piece.size() - offset);
            offset += consumed;
            if (status == Status::Data) {
                EXPECT_FALSE(data.empty());
                EXPECT_GE(data.data(), piece.data());
                EXPECT_LE(data.data() + data.size(), piece.data() + offset);
                result.body.append(data);
                continue;
            }
            result.status = status;
            if (status == Status::NeedMore) {
                EXPECT_EQ(offset, piece.size());
                break;
            }
            result.consumed = start + offset;
            result.error_status = decoder.error_status();
            EXPECT_EQ(decoder.body_bytes(), result.body.size());
            return result;
        }
        start = stop;
    }
    return result;
}

Decoded decode_whole(std::string_view input, ChunkedLimits limits = {}) {
    return decode_in_pieces(input, {}, limits);
}

// Error status of decoding `input`; 0 if it decodes to Done, -1 if NeedMore.
int error_of(std::string_view input, ChunkedLimits limits = {}) {
    Decoded d = decode_whole(input, limits);
    if (d.status == Status::Done) return 0;
    if (d.status == Status::NeedMore) return -1;
    return d.error_status;
}

const std::string kMessage =
    "5\r\nhello\r\n"
    "1A;name=value;quoted=\"a \\\"b\\\" c\";flag\r\n"
    "abcdefghijklmnopqrstuvwxyz\r\n"
    "00001\r\n!\r\n"
    "0\r\n"
    "Trailer-One: x\r\n"
    "Empty:\r\n"
    "\r\n";
const std::string kBody = "helloabcdefghijklmnopqrstuvwxyz!";

TEST(HttpChunked, DecodesWholeMessage) {
    Decoded d = decode_whole(kMessage);
    EXPECT_EQ(d.status, Status::Done);
    EXPECT_EQ(d.body, kBody);
    EXPECT_EQ(d.consumed, kMessage.size());
}

TEST(HttpChunked, SplitAtEveryByteBoundary) {
    for (size_t cut = 0; cut <= kMessage.size(); ++cut) {
        Decoded d = decode_in_pieces(kMessage, {cut});
        EXPECT_EQ(d.status, Status::Done) << cut;
        EXPECT_EQ(d.body, kBody) << cut;
        EXPECT_EQ(d.consumed, kMessage.size()) << cut;
    }
}

TEST(HttpChunked, SplitAtEveryPairOfBoundaries) {
    for (size_t a = 0; a <= kMessage.size(); ++a) {
        for (size_t b = a; b <= kMessage.size(); ++b) {
            Decoded d = decode_in_pieces(kMessage, {a, b});
            ASSERT_EQ(d.status, Status::Done) << a << "," << b;
            ASSERT_EQ(d.body, kBody) << a << "," << b;
        }
    }
}

TEST(HttpChunked, OneByteAtATime) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < kMessage.size(); ++i) cuts.push_back(i);
    Decoded d = decode_in_pieces(kMessage, cuts);
    EXPECT_EQ(d.status, Status::Done);
    EXPECT_EQ(d.body, kBody);
}

TEST(HttpChunked, ErrorsAtEveryBoundaryToo) {
    const std::string bad = "5\r\nhello\r\n5\nworld\r\n0\r\n\r\n";
    for (size_t cut = 0; cut <= bad.size(); ++cut) {
        Decoded d = decode_in_pieces(bad, {cut});
        EXPECT_EQ(d.status, Status::Error) << cut;
        EXPECT_EQ(d.body, "hello") << cut;
    }
}

TEST(HttpChunked, StopsAtTheEndOfTheMessage) {
    std::string next = "GET / HTTP/1.1\r\n";
    Decoded d = decode_whole("3\r\nabc\r\n0\r\n\r\n" + next);
    EXPECT_EQ(d.status, Status::Done);
    EXPECT_EQ(d.consumed, 13u);
    EXPECT_EQ(d.body, "abc");
}

TEST(HttpChunked, EmptyBodyAndEmptyInput) {
    Decoded d = decode_whole("0\r\n\r\n");
    EXPECT_EQ(d.status, Status::Done);
    EXPECT_EQ(d.body, "");
    ChunkedDecoder decoder;
    size_t consumed = 99;
    std::string_view data;
    EXPECT_EQ(decoder.decode("", 0, consumed, data), Status::NeedMore);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(error_of("5\r\nhel"), -1);
}

TEST(HttpChunked, HexDigitsAnyCaseAndLeadingZeros) {
    Decoded d = decode_whole("a\r\n0123456789\r\nA\r\n0123456789\r\n0000000000000001\r\nx\r\n0\r\n\r\n");
    EXPECT_EQ(d.status, Status::Done);
    EXPECT_EQ(d.body.size(), 21u);
}

TEST(HttpChunked, RejectsBadChunkSizes) {
    const char* bad[] = {"0x10\r\n", " 5\r\n", "5 \r\n", "+5\r\n", "-5\r\n", "\r\n", ";a\r\n",
                         "5\t\r\n", "g\r\n", "5 ;a\r\n", "5;\r\n", "5; a\r\n", "5;a =b\r\n",
                         "5;=b\r\n", "5;a=\r\n", "5;a=\"b\r\n\"\r\n", "5;a=b c\r\n", "5;a=\"\x01\"\r\n"};
    for (const char* line : bad) EXPECT_EQ(error_of(line + "hello\r\n0\r\n\r\n"s), 400) << line;
}

TEST(HttpChunked, ChunkSizeOverflow) {
    // 17 digits: could only be padding or overflow.
    EXPECT_EQ(error_of("00000000000000005\r\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("10000000000000005\r\nhello\r\n0\r\n\r\n"), 400);
    // 2^64 - 1 is representable: the decoder waits for that much data.
    EXPECT_EQ(error_of("ffffffffffffffff\r\nhello"), -1);
    // A second chunk cannot take the total past 2^64 - 1.
    EXPECT_EQ(error_of("1\r\nx\r\nffffffffffffffff\r\n"), 413);
}

TEST(HttpChunked, RejectsBadLineEndings) {
    EXPECT_EQ(error_of("5\nhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("5\r\nhello\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("5\r\nhello\r0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("5\r\nhelloX\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("5\r\nhell\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("5\rhello\r\n0\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\n\n"), 400);
    EXPECT_EQ(error_of("0\r\n\rx"), 400);
    EXPECT_EQ(error_of("0\n\r\n"), 400);
}

TEST(HttpChunked, ChunkExtensions) {
    EXPECT_EQ(error_of("5;a\r\nhello\r\n0;b=c;d=\"e;f\"\r\n\r\n"), 0);
    EXPECT_EQ(error_of("5;a=\"\\\"\"\r\nhello\r\n0\r\n\r\n"), 0);
    EXPECT_EQ(error_of("5;a=\"b\";c\r\nhello\r\n0\r\n\r\n"), 0);
    EXPECT_EQ(error_of("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n"), 400);
    ChunkedLimits limits;
    limits.max_chunk_ext = 8;
    EXPECT_EQ(error_of("5;abcdefg\r\nhello\r\n0\r\n\r\n", limits), 0);  // 8 bytes with ";"
    EXPECT_EQ(error_of("5;abcdefgh\r\nhello\r\n0\r\n\r\n", limits), 400);
    // The bound is per line, not per message.
    EXPECT_EQ(error_of("5;abcdefg\r\nhello\r\n0;abcdefg\r\n\r\n", limits), 0);
    limits.max_chunk_ext = 0;
    EXPECT_EQ(error_of("5;a\r\nhello\r\n0\r\n\r\n", limits), 400);
}

TEST(HttpChunked, Trailers) {
    EXPECT_EQ(error_of("0\r\nA: b\r\nC:d\t e\r\n\r\n"), 0);
    EXPECT_EQ(error_of("0\r\nA: b\r\n c\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\n A: b\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\nA : b\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\n: b\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\nA\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\nA: b\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\nA: b\rc\r\n\r\n"), 400);
    EXPECT_EQ(error_of("0\r\nA: b\0c\r\n\r\n"s), 400);
    ChunkedLimits limits;
    limits.max_trailer = 8;
    EXPECT_EQ(error_of("0\r\nA: bcd\r\n\r\n", limits), 0);
    EXPECT_EQ(error_of("0\r\nA: bcde\r\n\r\n", limits), 400);
}

TEST(HttpChunked, MaxBody) {
    ChunkedLimits limits;
    limits.max_body = 10;
    EXPECT_EQ(error_of("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limits), 0);
    EXPECT_EQ(error_of("5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", limits), 413);
    EXPECT_EQ(error_of("b\r\n", limits), 413);  // refused before any data arrives
    EXPECT_EQ(error_of("00b\r\n", limits), 413);
}

TEST(HttpChunked, ErrorIsSticky) {
    ChunkedDecoder decoder;
    size_t consumed = 0;
    std::string_view data;
    EXPECT_EQ(decoder.decode("x", 1, consumed, data), Status::Error);
    EXPECT_EQ(consumed, 1u);
    EXPECT_EQ(decoder.error_status(), 400);
    EXPECT_NE(decoder.error_reason(), nullptr);
    EXPECT_EQ(decoder.decode("0\r\n\r\n", 5, consumed, data), Status::Error);
    EXPECT_EQ(consumed, 0u);
}

TEST(HttpChunked, DoneIsStickyAndResetStartsOver) {
    ChunkedLimits limits;
    limits.max_body = 3;
    ChunkedDecoder decoder(limits);
    size_t consumed = 0;
    std::string_view data;
    ASSERT_EQ(decoder.decode("0\r\n\r\n", 5, consumed, data), Status::Done);
    EXPECT_TRUE(decoder.done());
    EXPECT_EQ(decoder.decode("1\r\n", 3, consumed, data), Status::Done);
    EXPECT_EQ(consumed, 0u);
    decoder.reset();
    EXPECT_FALSE(decoder.done());
    ASSERT_EQ(decoder.decode("3\r\nabc", 6, consumed, data), Status::Data);
    EXPECT_EQ(data, "abc");
    EXPECT_EQ(consumed, 6u);
    EXPECT_EQ(decoder.body_bytes(), 3u);
    decoder.reset();
    EXPECT_EQ(decoder.decode("4\r\n", 3, consumed, data), Status::Error);  // limits kept
    EXPECT_EQ(decoder.error_status(), 413);
}

TEST(HttpChunked, DataIsReturnedWithoutCopying) {
    ChunkedDecoder decoder;
    std::string input = "4\r\nabcd\r\n0\r\n\r\n";
    size_t consumed = 0;
    std::string_view data;
    ASSERT_EQ(decoder.decode(input.data(), input.size(), consumed, data), Status::Data);
    EXPECT_EQ(data.data(), input.data() + 3);
    EXPECT_EQ(consumed, 7u);
    ASSERT_EQ(decoder.decode(input.data() + 7, input.size() - 7, consumed, data), Status::Done);
    EXPECT_EQ(consumed, input.size() - 7);
}

}  // namespace
}  // namespace sluice::http
