#include "access_rules.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

namespace sluice::access {

namespace {

// "/PREFIX": 1 to 3 decimal digits, at most `width`.
bool parse_prefix(std::string_view digits, unsigned width, unsigned& prefix) {
    if (digits.empty() || digits.size() > 3) return false;
    prefix = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') return false;
        prefix = prefix * 10 + unsigned(c - '0');
    }
    return prefix <= width;
}

void make_mask(unsigned prefix, unsigned bytes, std::array<uint8_t, 16>& mask) {
    mask.fill(0);
    for (unsigned i = 0; i < bytes; ++i) {
        unsigned bits = prefix > i * 8 ? std::min(prefix - i * 8, 8u) : 0;
        mask[i] = uint8_t(0xff00u >> bits);
    }
}

// Clears the host bits; true if any was set.
bool apply_mask(Cidr& c, unsigned bytes) {
    bool host_bits = false;
    for (unsigned i = 0; i < bytes; ++i) {
        host_bits = host_bits || (c.net[i] & ~c.mask[i]);
        c.net[i] &= c.mask[i];
    }
    return host_bits;
}

}  // namespace

CidrParse parse_cidr(std::string_view text, Cidr& out) {
    out = Cidr{};
    if (text == "all") return CidrParse::Ok;
    if (text == "unix:") {
        out.kind = Cidr::Kind::Unix;
        return CidrParse::Ok;
    }
    size_t slash = text.find('/');
    std::string address(text.substr(0, slash));
    unsigned bytes;
    if (inet_pton(AF_INET, address.c_str(), out.net.data()) == 1) {
        out.kind = Cidr::Kind::V4;
        bytes = 4;
    } else if (inet_pton(AF_INET6, address.c_str(), out.net.data()) == 1) {
        out.kind = Cidr::Kind::V6;
        bytes = 16;
    } else {
        return CidrParse::Invalid;
    }
    unsigned prefix = bytes * 8;
    if (slash != std::string_view::npos && !parse_prefix(text.substr(slash + 1), bytes * 8, prefix))
        return CidrParse::Invalid;
    out.prefix = uint8_t(prefix);
    make_mask(prefix, bytes, out.mask);
    return apply_mask(out, bytes) ? CidrParse::HostBitsSet : CidrParse::Ok;
}

bool cidr_contains(const Cidr& cidr, const uint8_t* address) {
    unsigned bytes = cidr.kind == Cidr::Kind::V4 ? 4 : cidr.kind == Cidr::Kind::V6 ? 16 : 0;
    for (unsigned i = 0; i < bytes; ++i)
        if ((address[i] & cidr.mask[i]) != cidr.net[i]) return false;
    return true;
}

namespace {

bool has_v4_list(std::span<const AccessRule> rules) {
    for (const AccessRule& r : rules)
        if (r.cidr.kind == Cidr::Kind::V4 || r.cidr.kind == Cidr::Kind::All) return true;
    return false;
}

const AccessRule* first_of_kind(std::span<const AccessRule> rules, Cidr::Kind kind, const uint8_t* address) {
    for (const AccessRule& r : rules) {
        if (r.cidr.kind != kind && r.cidr.kind != Cidr::Kind::All) continue;
        if (cidr_contains(r.cidr, address)) return &r;
    }
    return nullptr;
}

}  // namespace

const AccessRule* first_matching_rule(std::span<const AccessRule> rules, const sockaddr& client) {
    switch (client.sa_family) {
        case AF_INET: {
            const auto& sin = reinterpret_cast<const sockaddr_in&>(client);
            return first_of_kind(rules, Cidr::Kind::V4, reinterpret_cast<const uint8_t*>(&sin.sin_addr));
        }
        case AF_INET6: {
            const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(client);
            const uint8_t* a = sin6.sin6_addr.s6_addr;
            if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr) && has_v4_list(rules))
                return first_of_kind(rules, Cidr::Kind::V4, a + 12);
            return first_of_kind(rules, Cidr::Kind::V6, a);
        }
        case AF_UNIX:
            return first_of_kind(rules, Cidr::Kind::Unix, nullptr);
        default:
            return nullptr;
    }
}

}  // namespace sluice::access
