// Unit tests of allow/deny rules (modules/access/access_rules.h): CIDR
// parsing, strictness, host bits, edge prefixes, and first-match evaluation
// for IPv4, IPv6, IPv4-mapped IPv6 and unix-socket clients.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <cstring>
#include <vector>

#include "../../modules/access/access_rules.h"

namespace sluice::access {
namespace {

sockaddr_storage client(const char* text) {
    sockaddr_storage ss{};
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        ss.ss_family = AF_INET;
    } else {
        EXPECT_EQ(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1) << text;
        ss.ss_family = AF_INET6;
    }
    return ss;
}

sockaddr_storage unix_client() {
    sockaddr_storage ss{};
    ss.ss_family = AF_UNIX;
    return ss;
}

Cidr parsed(const char* text) {
    Cidr c;
    EXPECT_NE(parse_cidr(text, c), CidrParse::Invalid) << text;
    return c;
}

bool contains(const char* cidr, const char* address) {
    Cidr c = parsed(cidr);
    sockaddr_storage a = client(address);
    const uint8_t* bytes = a.ss_family == AF_INET
                               ? reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in*>(&a)->sin_addr)
                               : reinterpret_cast<sockaddr_in6*>(&a)->sin6_addr.s6_addr;
    return cidr_contains(c, bytes);
}

TEST(AccessCidr, ParsesAddressesAndNetworks) {
    Cidr c;
    ASSERT_EQ(parse_cidr("10.1.2.3", c), CidrParse::Ok);
    EXPECT_EQ(c.kind, Cidr::Kind::V4);
    EXPECT_EQ(c.prefix, 32);
    ASSERT_EQ(parse_cidr("10.0.0.0/8", c), CidrParse::Ok);
    EXPECT_EQ(c.prefix, 8);
    ASSERT_EQ(parse_cidr("2001:db8::/32", c), CidrParse::Ok);
    EXPECT_EQ(c.kind, Cidr::Kind::V6);
    EXPECT_EQ(c.prefix, 32);
    ASSERT_EQ(parse_cidr("::1", c), CidrParse::Ok);
    EXPECT_EQ(c.prefix, 128);
    ASSERT_EQ(parse_cidr("all", c), CidrParse::Ok);
    EXPECT_EQ(c.kind, Cidr::Kind::All);
    ASSERT_EQ(parse_cidr("unix:", c), CidrParse::Ok);
    EXPECT_EQ(c.kind, Cidr::Kind::Unix);
}

TEST(AccessCidr, RejectsGarbage) {
    Cidr c;
    for (const char* bad : {"",
                            "10.0.0.1/33",
                            "::/129",
                            "10.0.0.1/",
                            "10.0.0.1/-1",
                            "10.0.0.1/+8",
                            "10.0.0.1/8x",
                            "10.0.0.1/0008",
                            "10.0.0",
                            "10.0.0.256",
                            "10.0.0.1.5",
                            " 10.0.0.1",
                            "10.0.0.1 ",
                            "010.0.0.1",
                            "10.0.0.0/8/8",
                            "/8",
                            "fe80::1%eth0",
                            "2001:db8:::1",
                            "ALL",
                            "unix",
                            "localhost",
                            "10.0.0.1/ 8"})
        EXPECT_EQ(parse_cidr(bad, c), CidrParse::Invalid) << "\"" << bad << "\"";
}

TEST(AccessCidr, HostBitsAreClearedWithAWarning) {
    Cidr c;
    ASSERT_EQ(parse_cidr("10.0.0.1/8", c), CidrParse::HostBitsSet);
    EXPECT_EQ(c.net[0], 10);
    EXPECT_EQ(c.net[3], 0);
    EXPECT_TRUE(contains("10.0.0.1/8", "10.200.3.4"));
    EXPECT_EQ(parse_cidr("2001:db8::1/64", c), CidrParse::HostBitsSet);
    EXPECT_EQ(parse_cidr("10.0.0.1/32", c), CidrParse::Ok);
    EXPECT_EQ(parse_cidr("0.0.0.0/0", c), CidrParse::Ok);
    EXPECT_EQ(parse_cidr("1.0.0.0/0", c), CidrParse::HostBitsSet);
}

TEST(AccessCidr, EdgePrefixes) {
    EXPECT_TRUE(contains("0.0.0.0/0", "255.255.255.255"));
    EXPECT_TRUE(contains("0.0.0.0/0", "0.0.0.0"));
    EXPECT_TRUE(contains("192.168.1.7/32", "192.168.1.7"));
    EXPECT_FALSE(contains("192.168.1.7/32", "192.168.1.6"));
    EXPECT_TRUE(contains("::/0", "ffff:ffff::1"));
    EXPECT_TRUE(contains("2001:db8::7/128", "2001:db8::7"));
    EXPECT_FALSE(contains("2001:db8::7/128", "2001:db8::6"));
    // Prefixes that end inside a byte.
    EXPECT_TRUE(contains("10.0.0.0/9", "10.127.255.255"));
    EXPECT_FALSE(contains("10.0.0.0/9", "10.128.0.0"));
    EXPECT_TRUE(contains("192.168.0.0/31", "192.168.0.1"));
    EXPECT_FALSE(contains("192.168.0.0/31", "192.168.0.2"));
    EXPECT_TRUE(contains("2001:db8::/33", "2001:db8:7fff::1"));
    EXPECT_FALSE(contains("2001:db8::/33", "2001:db8:8000::1"));
    EXPECT_TRUE(contains("::ffff:0:0/96", "::ffff:10.0.0.1"));
}

std::vector<AccessRule> rules(std::initializer_list<std::pair<bool, const char*>> list) {
    std::vector<AccessRule> out;
    for (auto [deny, text] : list) out.push_back({parsed(text), deny});
    return out;
}

// "allow", "deny" or "none" for the first rule matching `address`.
std::string verdict(const std::vector<AccessRule>& rs, const sockaddr_storage& address) {
    const AccessRule* r = first_matching_rule(rs, address);
    return !r ? "none" : r->deny ? "deny" : "allow";
}
std::string verdict(const std::vector<AccessRule>& rs, const char* address) {
    return verdict(rs, client(address));
}

TEST(AccessRules, FirstMatchWinsInOrder) {
    auto rs = rules({{true, "192.168.1.1"},
                     {false, "192.168.1.0/24"},
                     {false, "10.1.1.0/16"},
                     {false, "2001:db8::/32"},
                     {true, "all"}});
    EXPECT_EQ(verdict(rs, "192.168.1.1"), "deny");
    EXPECT_EQ(verdict(rs, "192.168.1.2"), "allow");
    EXPECT_EQ(verdict(rs, "10.1.200.1"), "allow");
    EXPECT_EQ(verdict(rs, "10.2.0.1"), "deny");
    EXPECT_EQ(verdict(rs, "2001:db8:1::5"), "allow");
    EXPECT_EQ(verdict(rs, "2001:db9::5"), "deny");
    EXPECT_EQ(verdict(rs, unix_client()), "deny");

    auto allow_first = rules({{false, "all"}, {true, "192.168.1.1"}});
    EXPECT_EQ(verdict(allow_first, "192.168.1.1"), "allow");
}

TEST(AccessRules, NoMatchDeclines) {
    auto rs = rules({{false, "10.0.0.0/8"}});
    EXPECT_EQ(verdict(rs, "11.0.0.1"), "none");
    EXPECT_EQ(verdict(rs, "::1"), "none");  // no IPv6 rule: nothing to say
    EXPECT_EQ(verdict(rs, unix_client()), "none");
    EXPECT_EQ(verdict({}, "10.0.0.1"), "none");
}

TEST(AccessRules, MappedClientsMatchIpv4Rules) {
    auto rs = rules({{false, "127.0.0.1"}, {true, "all"}});
    EXPECT_EQ(verdict(rs, "::ffff:127.0.0.1"), "allow");
    EXPECT_EQ(verdict(rs, "::ffff:127.0.0.2"), "deny");
    auto v4_deny = rules({{true, "10.0.0.0/8"}, {false, "::/0"}});
    EXPECT_EQ(verdict(v4_deny, "::ffff:10.1.2.3"), "deny");
    // nginx: with IPv4 rules present, a mapped client is only an IPv4 client.
    EXPECT_EQ(verdict(v4_deny, "::ffff:11.1.2.3"), "none");
    // Without IPv4 rules (nor all) it is matched as the IPv6 address it is.
    auto v6_only = rules({{false, "::ffff:0:0/96"}});
    EXPECT_EQ(verdict(v6_only, "::ffff:10.1.2.3"), "allow");
    EXPECT_EQ(verdict(v6_only, "::1"), "none");
}

TEST(AccessRules, UnixRules) {
    auto rs = rules({{false, "unix:"}, {true, "all"}});
    EXPECT_EQ(verdict(rs, unix_client()), "allow");
    EXPECT_EQ(verdict(rs, "127.0.0.1"), "deny");
}

}  // namespace
}  // namespace sluice::access
