// allow/deny rules: parsing "ADDRESS", "ADDRESS/PREFIX", "all" and "unix:",
// and finding the first rule that matches a client, as nginx's
// ngx_http_access_module does. Pure functions, unit-tested on their own.
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace sluice::access {

// An address or network a rule names.
struct Cidr {
    enum class Kind : uint8_t { All, V4, V6, Unix };
    Kind kind = Kind::All;
    uint8_t prefix = 0;             // V4: 0..32, V6: 0..128
    std::array<uint8_t, 16> net{};  // network bytes (4 used for V4), host bits zero
    std::array<uint8_t, 16> mask{};
};

enum class CidrParse : uint8_t {
    Ok,
    HostBitsSet,  // "10.0.0.1/8": usable (the bits are cleared), nginx warns
    Invalid,
};

// Strict: dotted-quad IPv4 or RFC 4291 IPv6 text, an optional "/PREFIX" of
// decimal digits within the family's width, nothing else.
CidrParse parse_cidr(std::string_view text, Cidr& out);

// Whether `address` (4 or 16 network-order bytes, matching the rule's family)
// lies in the network. `All` matches anything; `Unix` is matched by family.
bool cidr_contains(const Cidr& cidr, const uint8_t* address);

struct AccessRule {
    Cidr cidr;
    bool deny = false;
};

// The first rule, in configuration order, that matches the client; null when
// none does. An IPv4-mapped IPv6 client (::ffff:a.b.c.d) is checked as
// a.b.c.d against the IPv4 rules and `all` when the list has any of those,
// else as IPv6, exactly as nginx keeps its per-family rule lists.
const AccessRule* first_matching_rule(std::span<const AccessRule> rules, const sockaddr& client);
inline const AccessRule* first_matching_rule(std::span<const AccessRule> rules, const sockaddr_storage& client) {
    return first_matching_rule(rules, reinterpret_cast<const sockaddr&>(client));
}

}  // namespace sluice::access
