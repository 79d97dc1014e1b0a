// Accept-Encoding (RFC 9110 12.5.3): which content codings a client takes,
// with their q-values. Kept apart from the filter: it reads client bytes, so
// it has unit tests and a fuzz target of its own.
#pragma once
#include <string_view>

namespace sluice::http {

// q-values in thousandths (0..1000); kNotListed when the field does not name
// the coding. Several Accept-Encoding fields are one list: parse each into
// the same result.
struct AcceptedCodings {
    static constexpr int kNotListed = -1;
    int gzip = kNotListed;      // "gzip" or its alias "x-gzip"
    int any = kNotListed;       // "*": every coding not named
    int identity = kNotListed;  // no coding
};

// Adds the codings of one field value to `into`. A coding named twice keeps
// its first q-value; an element with a malformed q-value or parameter is
// ignored (as if absent), never guessed.
void parse_accept_encoding(std::string_view value, AcceptedCodings& into);

// Whether a gzip-coded response is acceptable and wanted: gzip (or, when it is
// not named, "*") with a q-value above 0, and not below what identity is
// given explicitly ("gzip;q=0.5, identity" asks for the plain body).
bool gzip_acceptable(const AcceptedCodings& codings);

}  // namespace sluice::http
