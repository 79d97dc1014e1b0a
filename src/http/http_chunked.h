// Incremental decoder for the chunked transfer coding (RFC 9112 §7.1).
//
// Strict on purpose: a chunk-size line is where front and back ends disagree
// in smuggling attacks ("0x10", " 5", "5 ;ext", bare LF, 2^64+5), so anything
// outside the grammar is an error rather than a guess. The decoder never
// copies: body bytes are returned as views into the caller's input, and it
// accepts the input split at any byte boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sluice::http {

struct ChunkedLimits {
    size_t max_chunk_ext = 256;   // bytes of chunk-ext on one chunk-size line
    size_t max_trailer = 4096;    // bytes of the whole trailer section
    uint64_t max_body = UINT64_MAX;
};

class ChunkedDecoder {
public:
    explicit ChunkedDecoder(ChunkedLimits limits = {});

    enum class Status {
        Data,      // out_data holds body bytes inside the input; call again for the rest
        NeedMore,  // everything given was consumed; call again with more
        Done,      // the message ended; input past `consumed` is the next message's
        Error,     // see error_status(); every later call returns Error too
    };

    // Consumes from [p, p + len) and sets `consumed` to the bytes used, which
    // for Data includes the returned body bytes.
    Status decode(const char* p, size_t len, size_t& consumed, std::string_view& out_data);

    uint64_t body_bytes() const { return body_bytes_; }  // body bytes returned so far
    int error_status() const { return error_status_; }   // 400, or 413 past max_body
    const char* error_reason() const { return error_reason_; }
    bool done() const { return state_ == State::Done; }

    // Starts over for the next message, keeping the limits.
    void reset();

private:
    enum class State : uint8_t {
        SizeStart,       // first hex digit of chunk-size
        Size,            // more hex digits, ";" or CR
        ExtNameStart,    // after ";"
        ExtName,
        ExtValueStart,   // after "="
        ExtToken,
        ExtQuoted,       // inside a quoted-string
        ExtQuotedPair,   // after a backslash inside it
        ExtAfterQuoted,  // closing quote seen
        SizeLf,
        Data,
        DataCr,
        DataLf,
        TrailerLineStart,
        TrailerName,
        TrailerValue,
        TrailerLf,
        FinalLf,
        Done,
        Error,
    };

    // One byte of everything that is not chunk data; false on error.
    bool step(char c);
    bool step_size(char c);
    bool step_ext(char c);
    bool step_trailer(char c);
    bool end_size_line(char c);
    bool fail(int status, const char* reason);

    ChunkedLimits limits_;
    State state_ = State::SizeStart;
    uint64_t chunk_size_ = 0;  // while in Data: bytes of the chunk still to come
    uint64_t body_bytes_ = 0;
    size_t size_digits_ = 0;
    size_t ext_length_ = 0;
    size_t trailer_length_ = 0;
    int error_status_ = 0;
    const char* error_reason_ = nullptr;
};

}  // namespace sluice::http
