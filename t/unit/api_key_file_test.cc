// Unit tests of API key files (modules/auth_api_key/api_key_file.h): the line
// format, its errors with line numbers, duplicate keys, and lookup by the
// SHA-256 of a presented key.
#include <gtest/gtest.h>

#include <string>

#include "../../modules/auth_api_key/api_key_file.h"

namespace sluice::auth_api_key {
namespace {

// sha256("alice-key") and sha256("bob-key"), from `printf %s KEY | sha256sum`.
constexpr const char* kAliceDigest = "72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20";
constexpr const char* kBobDigest = "9b94dc1a51a38769f135edf04033ad7f2f487b6c25929be7a861cfc1ab10cf98";

const std::string* lookup(const ApiKeyTable& t, std::string_view key) {
    Digest d;
    EXPECT_TRUE(sha256(key, d));
    return t.find(d);
}

std::string load_error(const std::string& text) {
    ApiKeyTable t;
    std::string error;
    EXPECT_FALSE(t.add_file_text(text, error)) << text;
    return error;
}

TEST(ApiKeyFile, Sha256MatchesKnownVectors) {
    Digest d, expected;
    ASSERT_TRUE(sha256("abc", d));
    ASSERT_TRUE(parse_digest_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", expected));
    EXPECT_EQ(d, expected);
    ASSERT_TRUE(sha256("", d));
    ASSERT_TRUE(parse_digest_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", expected));
    EXPECT_EQ(d, expected);
}

TEST(ApiKeyFile, LoadsConsumersCommentsAndBlankLines) {
    ApiKeyTable t;
    std::string error;
    std::string text = std::string("# consumers of the demo API\n\n  \t\nalice ") + kAliceDigest + "\r\n\tbob\t" +
                       kBobDigest + "   # rotated 2026-11\nalice-2 " +
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";  // no final newline
    ASSERT_TRUE(t.add_file_text(text, error)) << error;
    EXPECT_EQ(t.size(), 3u);
    Digest d;
    ASSERT_TRUE(parse_digest_hex(kAliceDigest, d));
    ASSERT_NE(t.find(d), nullptr);
    EXPECT_EQ(*t.find(d), "alice");
    ASSERT_NE(lookup(t, "bob-key"), nullptr);
    EXPECT_EQ(*lookup(t, "bob-key"), "bob");
    EXPECT_EQ(lookup(t, "bob-key "), nullptr);
    ASSERT_NE(lookup(t, "abc"), nullptr);
    EXPECT_EQ(*lookup(t, "abc"), "alice-2");
    EXPECT_EQ(lookup(t, "ab"), nullptr);
    EXPECT_EQ(lookup(t, "abcd"), nullptr);
    EXPECT_EQ(lookup(t, ""), nullptr);
}

TEST(ApiKeyFile, ErrorsNameTheLine) {
    EXPECT_EQ(load_error("# ok\nalice\n"), "line 2: no SHA-256 digest after consumer \"alice\"");
    EXPECT_EQ(load_error("alice 1234\n"), "line 1: the SHA-256 digest of consumer \"alice\" must be 64 hex digits");
    // 64 characters, one not hex; the value is never echoed (it may be a key).
    std::string not_hex(kAliceDigest);
    not_hex[10] = 'g';
    EXPECT_EQ(load_error("\n\nbob " + not_hex), "line 3: the SHA-256 digest of consumer \"bob\" must be 64 hex digits");
    EXPECT_EQ(load_error(std::string("alice ") + kAliceDigest + " extra\n"),
              "line 1: unexpected text after the digest of consumer \"alice\"");
    EXPECT_EQ(load_error(std::string("al\"ice ") + kAliceDigest),
              "line 1: invalid consumer name \"al\"ice\" (letters, digits, \"._-@:+\")");
    EXPECT_EQ(load_error(std::string(129, 'a') + " " + kAliceDigest).substr(0, 30), "line 1: invalid consumer name ");
    EXPECT_EQ(load_error(std::string("alice ") + kAliceDigest + "\nbob " + kAliceDigest),
              "line 2: the key of consumer \"bob\" is already listed (for \"alice\")");
    EXPECT_EQ(load_error(std::string("alice ") + kAliceDigest + std::string("\0x", 2)),
              "line 1: a NUL byte (not a text file?)");
}

TEST(ApiKeyFile, SeveralFilesMakeOneTable) {
    ApiKeyTable t;
    std::string error;
    ASSERT_TRUE(t.add_file_text(std::string("alice ") + kAliceDigest + "\n", error));
    ASSERT_TRUE(t.add_file_text(std::string("bob ") + kBobDigest + "\n", error));
    EXPECT_EQ(t.size(), 2u);
    // The same key in a second file is as ambiguous as in one.
    EXPECT_FALSE(t.add_file_text(std::string("carol ") + kBobDigest + "\n", error));
    EXPECT_EQ(error, "line 1: the key of consumer \"carol\" is already listed (for \"bob\")");
}

TEST(ApiKeyFile, ConsumerNames) {
    EXPECT_TRUE(valid_consumer_name("svc.billing-v2_prod@eu:1+x"));
    EXPECT_FALSE(valid_consumer_name(""));
    EXPECT_FALSE(valid_consumer_name("a b"));
    EXPECT_FALSE(valid_consumer_name("caf\xc3\xa9"));
    EXPECT_FALSE(valid_consumer_name("a$b"));
    EXPECT_TRUE(valid_consumer_name(std::string(128, 'x')));
    EXPECT_FALSE(valid_consumer_name(std::string(129, 'x')));
}

}  // namespace
}  // namespace sluice::auth_api_key
