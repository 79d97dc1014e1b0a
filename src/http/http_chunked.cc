#include "http/http_chunked.h"

#include "http/http_parse.h"

namespace sluice::http {
namespace {

using chars::kFieldValue;
using chars::kHexValue;
using chars::kToken;

// 16 hex digits hold any uint64_t; more can only overflow or pad with zeros,
// and zero padding is how "0000000000000000005" hides from a lax parser.
constexpr size_t kMaxSizeDigits = 16;

// qdtext of RFC 9110 §5.6.4: field-value octets but DQUOTE and backslash.
constexpr CharClass make_qdtext_class() {
    CharClass cls = chars::make_field_value_class();
    cls.member[static_cast<unsigned char>('"')] = false;
    cls.member[static_cast<unsigned char>('\\')] = false;
    return cls;
}
constexpr CharClass kQdText = make_qdtext_class();

}  // namespace

ChunkedDecoder::ChunkedDecoder(ChunkedLimits limits) : limits_(limits) {}

void ChunkedDecoder::reset() {
    *this = ChunkedDecoder(limits_);
}

bool ChunkedDecoder::fail(int status, const char* reason) {
    state_ = State::Error;
    error_status_ = status;
    error_reason_ = reason;
    return false;
}

ChunkedDecoder::Status ChunkedDecoder::decode(const char* p, size_t len, size_t& consumed,
                                              std::string_view& out_data) {
    consumed = 0;
    out_data = {};
    if (state_ == State::Done) return Status::Done;
    if (state_ == State::Error) return Status::Error;
    const char* s = p;
    const char* const end = p + len;
    while (s < end) {
        if (state_ == State::Data) {
            uint64_t available = uint64_t(end - s);
            size_t n = size_t(chunk_size_ < available ? chunk_size_ : available);
            out_data = std::string_view(s, n);
            s += n;
            chunk_size_ -= n;
            body_bytes_ += n;
            if (chunk_size_ == 0) state_ = State::DataCr;
            consumed = size_t(s - p);
            return Status::Data;
        }
        if (!step(*s++)) {
            consumed = size_t(s - p);
            return Status::Error;
        }
        if (state_ == State::Done) {
            consumed = size_t(s - p);
            return Status::Done;
        }
    }
    consumed = len;
    return Status::NeedMore;
}

bool ChunkedDecoder::step(char c) {
    switch (state_) {
    case State::SizeStart:
    case State::Size:
        return step_size(c);
    case State::ExtNameStart:
    case State::ExtName:
    case State::ExtValueStart:
    case State::ExtToken:
    case State::ExtQuoted:
    case State::ExtQuotedPair:
    case State::ExtAfterQuoted:
        // The CR ending the line is not part of the extension.
        if (c != '\r' && ++ext_length_ > limits_.max_chunk_ext)
            return fail(400, "chunk extension too long");
        return step_ext(c);
    case State::SizeLf:
        if (c != '\n') return fail(400, "bare CR in chunk size line");
        state_ = chunk_size_ == 0 ? State::TrailerLineStart : State::Data;
        return true;
    case State::DataCr:
        if (c != '\r') return fail(400, "chunk data not followed by CRLF");
        state_ = State::DataLf;
        return true;
    case State::DataLf:
        if (c != '\n') return fail(400, "chunk data not followed by CRLF");
        state_ = State::SizeStart;
        return true;
    case State::TrailerLineStart:
    case State::TrailerName:
    case State::TrailerValue:
    case State::TrailerLf:
        // Counted: the field lines with their CRLFs, not the empty line after them.
        if (!(state_ == State::TrailerLineStart && c == '\r') && ++trailer_length_ > limits_.max_trailer)
            return fail(400, "trailer section too large");
        return step_trailer(c);
    case State::FinalLf:
        if (c != '\n') return fail(400, "bare CR after trailer section");
        state_ = State::Done;
        return true;
    case State::Data:
    case State::Done:
    case State::Error:
        break;
    }
    return fail(400, "chunked decoder misuse");
}

bool ChunkedDecoder::step_size(char c) {
    int digit = kHexValue(c);
    if (digit >= 0) {
        if (state_ == State::SizeStart) {
            state_ = State::Size;
            chunk_size_ = 0;
            size_digits_ = 0;
        }
        if (++size_digits_ > kMaxSizeDigits) return fail(400, "chunk size too long");
        chunk_size_ = chunk_size_ << 4 | uint64_t(digit);
        // Every earlier chunk was delivered whole, so this is the declared total.
        if (chunk_size_ > limits_.max_body - body_bytes_) return fail(413, "body too large");
        return true;
    }
    if (state_ == State::SizeStart) return fail(400, "invalid chunk size");
    return end_size_line(c);
}

// After the size or an extension: another extension or the line's end. No
// whitespace anywhere: RFC 9112 allows BWS there, but lax parsers read
// "5 ;x" and "5 x" differently, and no real client needs it.
bool ChunkedDecoder::end_size_line(char c) {
    if (c == ';') {
        ext_length_ = 1;
        state_ = State::ExtNameStart;
        return ext_length_ <= limits_.max_chunk_ext || fail(400, "chunk extension too long");
    }
    if (c == '\r') {
        state_ = State::SizeLf;
        return true;
    }
    return fail(400, "invalid chunk size");
}

// chunk-ext = *( ";" chunk-ext-name [ "=" chunk-ext-val ] ), discarded.
bool ChunkedDecoder::step_ext(char c) {
    switch (state_) {
    case State::ExtNameStart:
        if (!kToken(c)) return fail(400, "invalid chunk extension");
        state_ = State::ExtName;
        return true;
    case State::ExtName:
        if (kToken(c)) return true;
        if (c == '=') {
            state_ = State::ExtValueStart;
            return true;
        }
        break;
    case State::ExtValueStart:
        if (c == '"') {
            state_ = State::ExtQuoted;
            return true;
        }
        if (!kToken(c)) return fail(400, "invalid chunk extension");
        state_ = State::ExtToken;
        return true;
    case State::ExtToken:
        if (kToken(c)) return true;
        break;
    case State::ExtQuoted:
        if (c == '"') state_ = State::ExtAfterQuoted;
        else if (c == '\\') state_ = State::ExtQuotedPair;
        else if (!kQdText(c)) return fail(400, "invalid chunk extension");
        return true;
    case State::ExtQuotedPair:
        if (!kFieldValue(c)) return fail(400, "invalid chunk extension");
        state_ = State::ExtQuoted;
        return true;
    default:  // ExtAfterQuoted
        break;
    }
    if (c == ';' || c == '\r') {
        state_ = c == ';' ? State::ExtNameStart : State::SizeLf;
        return true;
    }
    return fail(400, "invalid chunk extension");
}

// Trailer fields follow the header field grammar and are dropped: nothing
// after the body may change how the request was routed or authorized.
bool ChunkedDecoder::step_trailer(char c) {
    switch (state_) {
    case State::TrailerLineStart:
        if (c == '\r') {
            state_ = State::FinalLf;
            return true;
        }
        if (c == ' ' || c == '\t') return fail(400, "obsolete line folding in trailer");
        if (!kToken(c)) return fail(400, "invalid trailer field name");
        state_ = State::TrailerName;
        return true;
    case State::TrailerName:
        if (kToken(c)) return true;
        if (c != ':') return fail(400, "invalid trailer field name");
        state_ = State::TrailerValue;
        return true;
    case State::TrailerValue:
        if (kFieldValue(c)) return true;
        if (c != '\r') return fail(400, "invalid trailer field value");
        state_ = State::TrailerLf;
        return true;
    default:  // TrailerLf
        if (c != '\n') return fail(400, "bare CR in trailer section");
        state_ = State::TrailerLineStart;
        return true;
    }
}

}  // namespace sluice::http
