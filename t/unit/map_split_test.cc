// Unit tests of the map and split_clients modules: MurmurHash2 against
// nginx's values, split_clients buckets and distribution, map precedence and
// configuration errors. The blocks are read by the real directive setters
// through a ConfContext set up as inside http{}.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "../../modules/map/map.h"
#include "../../modules/split_clients/split_clients.h"
#include "core/cycle.h"
#include "http/http_core.h"

namespace sluice::http {
namespace {

using map::MapMainConf;
using map::MapMatch;
using map::MapTable;
using split_clients::Part;
using split_clients::SplitMainConf;

bool no_value(Request&, std::string_view&, uintptr_t) { return false; }

// An http{} level with the core, map and split_clients main confs, and the
// variables a test config refers to.
class HttpLevel {
public:
    HttpLevel() : cx_(cycle_, tree_) {
        confs_.main.assign(size_t(http_module_count()), nullptr);
        confs_.main[size_t(http_core_module.ctx_index)] = &core_;
        confs_.main[size_t(map_module.ctx_index)] = &maps_;
        confs_.main[size_t(split_clients_module.ctx_index)] = &splits_;
        cx_.http = &confs_;
        for (const char* name : {"host", "src", "uri", "remote_addr"}) core_.variables.add(name, no_value, 0);
    }

    // Reads `text` as the body of http{}; on failure error() has the message.
    bool load(std::string_view text) {
        conf::Error err;
        if (!conf::parse_string(text, "test.conf", {}, tree_, err)) {
            error_ = err.to_string();
            return false;
        }
        bool ok = cx_.parse_block(tree_.statements, kHttpContext);
        error_ = cx_.error_message();
        return ok;
    }

    const std::string& error() const { return error_; }
    const MapTable& table(size_t i = 0) const { return maps_.maps.at(i)->table; }
    const std::vector<Part>& parts(size_t i = 0) const { return splits_.splits.at(i)->parts; }
    Variables& variables() { return core_.variables; }

    // The constant value the map yields for `key` ("<none>" without a match).
    std::string lookup(std::string_view key, size_t map_index = 0) const {
        const MapTable& t = table(map_index);
        std::vector<size_t> ovector(t.ovector_size);
        MapMatch m = map::find_value(t, key, ovector.data(), ovector.size());
        int index = m.value >= 0 ? m.value : t.default_value;
        if (index < 0) return "<none>";
        return std::string(t.values[size_t(index)].constant());
    }

private:
    Cycle cycle_;
    conf::Tree tree_;
    ConfContext cx_;
    HttpConfs confs_;
    CoreMainConf core_;
    MapMainConf maps_;
    SplitMainConf splits_;
    std::string error_;
};

// ---- MurmurHash2 ------------------------------------------------------------

TEST(SplitClientsMurmur, MatchesNginx) {
    // Values of nginx's ngx_murmur_hash2() (src/core/ngx_murmurhash.c).
    struct Vector {
        std::string_view input;
        uint32_t hash;
    };
    const Vector vectors[] = {
        {"", 0x00000000},
        {"a", 0x92685f5e},
        {"ab", 0x1aa14063},
        {"abc", 0x13577c9b},
        {"abcd", 0x26873021},
        {"hello", 0xe56129cb},
        {"127.0.0.1", 0xb6131d91},
        {"The quick brown fox jumps over the lazy dog", 0x212729d0},
        {std::string_view("\xff\xfe\x80\x00\x01", 5), 0x88611b97},  // high bytes, an embedded NUL
    };
    for (const Vector& v : vectors)
        EXPECT_EQ(split_clients::murmur_hash2(v.input), v.hash) << '"' << v.input << '"';
}

// ---- split_clients ------------------------------------------------------------

TEST(SplitClientsPercent, ParsesUpToTwoDecimals) {
    using split_clients::parse_percent;
    EXPECT_EQ(parse_percent("0.5%"), 50u);
    EXPECT_EQ(parse_percent("2.0%"), 200u);
    EXPECT_EQ(parse_percent("33.33%"), 3333u);
    EXPECT_EQ(parse_percent("100%"), 10000u);
    EXPECT_EQ(parse_percent(".5%"), 50u);
    EXPECT_EQ(parse_percent("1.%"), 100u);
    EXPECT_EQ(parse_percent("0.125%"), std::nullopt);  // three decimals
    EXPECT_EQ(parse_percent("0%"), std::nullopt);
    EXPECT_EQ(parse_percent("5"), std::nullopt);
    EXPECT_EQ(parse_percent("%"), std::nullopt);
    EXPECT_EQ(parse_percent("-5%"), std::nullopt);
    EXPECT_EQ(parse_percent("1.2.3%"), std::nullopt);
    EXPECT_EQ(parse_percent("abc%"), std::nullopt);
    EXPECT_GT(*parse_percent("99999999999999999999%"), 10000u);  // no overflow, fails the total
}

TEST(SplitClientsBuckets, BoundsAreNginxs) {
    HttpLevel http;
    ASSERT_TRUE(http.load("split_clients \"${remote_addr}AAA\" $variant {\n"
                          "    0.5% .one;\n    2.0% .two;\n    * \"\";\n}\n"))
        << http.error();
    const auto& parts = http.parts();
    ASSERT_EQ(parts.size(), 3u);
    // last += percent * 0xffffffff / 10000, in 32 bits.
    EXPECT_EQ(parts[0].bound, 21474836u);
    EXPECT_EQ(parts[1].bound, 21474836u + 85899345u);
    EXPECT_EQ(parts[2].bound, 0u);
    EXPECT_EQ(parts[0].value, ".one");
    EXPECT_EQ(parts[2].value, "");

    EXPECT_EQ(split_clients::choose_part(parts, 0)->value, ".one");
    EXPECT_EQ(split_clients::choose_part(parts, 21474835)->value, ".one");
    EXPECT_EQ(split_clients::choose_part(parts, 21474836)->value, ".two");
    EXPECT_EQ(split_clients::choose_part(parts, 0xffffffff)->value, "");
}

TEST(SplitClientsBuckets, WithoutStarTheRestIsEmpty) {
    HttpLevel http;
    ASSERT_TRUE(http.load("split_clients $src $v { 50% a; }")) << http.error();
    EXPECT_EQ(split_clients::choose_part(http.parts(), 0x10)->value, "a");
    EXPECT_EQ(split_clients::choose_part(http.parts(), 0x80000000), nullptr);
}

TEST(SplitClientsBuckets, Distribution) {
    HttpLevel http;
    ASSERT_TRUE(http.load("split_clients $src $canary {\n"
                          "    5% canary;\n    12.5% beta;\n    50% a;\n    * b;\n}\n"))
        << http.error();
    const std::vector<std::pair<std::string, double>> expected = {
        {"canary", 0.05}, {"beta", 0.125}, {"a", 0.50}, {"b", 0.325}};
    std::map<std::string, int> counts;
    constexpr int kKeys = 100000;
    for (int i = 0; i < kKeys; ++i) {
        std::string key = "req-" + std::to_string(i * 7919) + "-" + std::to_string(i);
        const Part* part = split_clients::choose_part(http.parts(), split_clients::murmur_hash2(key));
        ASSERT_NE(part, nullptr);
        ++counts[part->value];
    }
    for (const auto& [name, share] : expected)
        EXPECT_NEAR(double(counts[name]) / kKeys, share, 0.01) << name;
}

TEST(SplitClientsErrors, PercentTotal) {
    HttpLevel http;
    EXPECT_FALSE(http.load("split_clients $src $v {\n  60% a;\n  50% b;\n}\n"));
    EXPECT_EQ(http.error(), "percent total is greater than 100% in test.conf:1");

    HttpLevel after_star;  // "*" takes the rest: nothing may follow it
    EXPECT_FALSE(after_star.load("split_clients $src $v { * a; 1% b; }"));
    EXPECT_EQ(after_star.error(), "percent total is greater than 100% in test.conf:1");

    HttpLevel exactly_100;
    EXPECT_TRUE(exactly_100.load("split_clients $src $v { 33.33% a; 33.33% b; 33.34% c; }"))
        << exactly_100.error();
}

TEST(SplitClientsErrors, InvalidEntries) {
    HttpLevel bad_percent;
    EXPECT_FALSE(bad_percent.load("split_clients $src $v {\n  0.125% a;\n}\n"));
    EXPECT_EQ(bad_percent.error(), "invalid percent value \"0.125%\" in test.conf:2");

    HttpLevel arity;
    EXPECT_FALSE(arity.load("split_clients $src $v {\n  10% a b;\n}\n"));
    EXPECT_EQ(arity.error(), "invalid number of the split_clients parameters in test.conf:2");

    HttpLevel variable;
    EXPECT_FALSE(variable.load("split_clients $src v { * a; }"));
    EXPECT_EQ(variable.error(), "invalid variable name \"v\" in test.conf:1");
}

TEST(SplitClientsVariable, IsCachedAndChangeable) {
    HttpLevel http;
    ASSERT_TRUE(http.load("split_clients $src $bucket { 50% a; * b; }")) << http.error();
    int index = http.variables().lookup("bucket");
    ASSERT_GE(index, 0);
    const VariableDef& def = http.variables().def(index);
    EXPECT_EQ(def.get, split_clients::split_variable);
    EXPECT_EQ(def.flags & kVarNoCache, 0u);
    EXPECT_NE(def.flags & kVarChangeable, 0u);
}

// ---- map ----------------------------------------------------------------------

TEST(MapExact, KeysDefaultAndEmpty) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $src $backend {\n"
                          "    default   v1;\n"
                          "    2         v2;\n"
                          "    \"\"        none;\n"
                          "    Beta      beta;\n"
                          "    \\default  literal;\n"
                          "}\n"))
        << http.error();
    EXPECT_EQ(http.lookup("2"), "v2");
    EXPECT_EQ(http.lookup("3"), "v1");
    EXPECT_EQ(http.lookup(""), "none");
    EXPECT_EQ(http.lookup("default"), "literal");
    // Strings are matched ignoring case, as in nginx.
    EXPECT_EQ(http.lookup("beta"), "beta");
    EXPECT_EQ(http.lookup("BETA"), "beta");
    EXPECT_EQ(http.lookup("bet"), "v1");
}

TEST(MapExact, NoDefaultMeansNoMatch) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $src $x { a 1; }")) << http.error();
    EXPECT_EQ(http.lookup("b"), "<none>");
    EXPECT_EQ(http.table().default_value, -1);
}

TEST(MapExact, WildcardsAreLiteralWithoutHostnames) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $host $x { *.example.com star; .example.com dot; }")) << http.error();
    EXPECT_EQ(http.lookup("*.example.com"), "star");
    EXPECT_EQ(http.lookup("www.example.com"), "<none>");
    EXPECT_EQ(http.lookup("example.com"), "<none>");
}

TEST(MapHostnames, Masks) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $host $site {\n"
                          "    hostnames;\n"
                          "    default          other;\n"
                          "    example.com      exact;\n"
                          "    *.example.com    any-sub;\n"
                          "    *.api.example.com api-sub;\n"
                          "    .example.org     org;\n"
                          "    www.example.*    www-tail;\n"
                          "    www.example.co.* www-co-tail;\n"
                          "}\n"))
        << http.error();
    EXPECT_EQ(http.lookup("example.com"), "exact");
    EXPECT_EQ(http.lookup("EXAMPLE.com."), "exact");  // lowercase, trailing dot ignored
    EXPECT_EQ(http.lookup("a.example.com"), "any-sub");
    EXPECT_EQ(http.lookup("a.b.example.com"), "any-sub");
    EXPECT_EQ(http.lookup("v1.api.example.com"), "api-sub");  // the longest mask
    EXPECT_EQ(http.lookup("api.example.com"), "any-sub");
    EXPECT_EQ(http.lookup("example.org"), "org");  // ".example.org": the name itself
    EXPECT_EQ(http.lookup("x.example.org"), "org");  // ... and its subdomains
    EXPECT_EQ(http.lookup("www.example.net"), "www-tail");
    EXPECT_EQ(http.lookup("www.example.co.uk"), "www-co-tail");
    EXPECT_EQ(http.lookup("www.example"), "other");  // "www.example.*" needs something after the dot
    // A prefix mask ("*.example.com") wins over a suffix mask ("www.example.*").
    EXPECT_EQ(http.lookup("www.example.com"), "any-sub");
    EXPECT_EQ(http.lookup("badexample.com"), "other");
}

TEST(MapPrecedence, ExactThenMasksThenRegexesThenDefault) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $host $p {\n"
                          "    hostnames;\n"
                          "    default              default;\n"
                          "    ~^www\\.             regex-www;\n"
                          "    ~example             regex-example;\n"
                          "    www.example.com      exact;\n"
                          "    *.example.com        head;\n"
                          "    www.example.*        tail;\n"
                          "}\n"))
        << http.error();
    EXPECT_EQ(http.lookup("www.example.com"), "exact");
    EXPECT_EQ(http.lookup("api.example.com"), "head");
    EXPECT_EQ(http.lookup("www.example.org"), "tail");
    EXPECT_EQ(http.lookup("www.other.org"), "regex-www");  // first regex in order
    EXPECT_EQ(http.lookup("my-example.net"), "regex-example");
    EXPECT_EQ(http.lookup("nothing.net"), "default");
}

TEST(MapRegex, InOrderCaseAndCaptures) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $uri $r {\n"
                          "    ~^/api/v(?<version>[0-9]+)/  \"api-$version\";\n"
                          "    ~*^/STATIC/(.*)$            \"static-$1\";\n"
                          "    ~^/Case                     case;\n"
                          "    ~.                          any;\n"
                          "}\n"))
        << http.error();
    const MapTable& t = http.table();
    ASSERT_EQ(t.regexes.size(), 4u);
    EXPECT_GE(t.ovector_size, 4u);

    std::vector<size_t> ov(t.ovector_size);
    MapMatch m = map::find_value(t, "/api/v2/users", ov.data(), ov.size());
    ASSERT_EQ(m.regex, t.regexes[0].regex.get());
    EXPECT_EQ(std::string_view("/api/v2/users").substr(ov[2], ov[3] - ov[2]), "2");
    EXPECT_FALSE(t.values[size_t(m.value)].is_constant());
    EXPECT_EQ(t.values[size_t(m.value)].source(), "api-$version");

    m = map::find_value(t, "/static/app.js", ov.data(), ov.size());  // "~*": caseless
    EXPECT_EQ(m.regex, t.regexes[1].regex.get());
    EXPECT_EQ(std::string_view("/static/app.js").substr(ov[2], ov[3] - ov[2]), "app.js");

    EXPECT_EQ(http.lookup("/Case"), "case");
    EXPECT_EQ(http.lookup("/case"), "any");  // "~": case-sensitive
    EXPECT_EQ(http.lookup(""), "<none>");    // an empty value is not matched against regexes

    // The named group is a variable the rest of the configuration can use.
    EXPECT_GE(http.variables().lookup("version"), 0);
}

TEST(MapVariable, CachedUnlessVolatile) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $src $cached { a 1; }\n"
                          "map $src $fresh { volatile; a 1; }\n"))
        << http.error();
    const VariableDef& cached = http.variables().def(http.variables().lookup("cached"));
    const VariableDef& fresh = http.variables().def(http.variables().lookup("fresh"));
    EXPECT_EQ(cached.get, map::map_variable);
    EXPECT_EQ(cached.flags & kVarNoCache, 0u);
    EXPECT_NE(cached.flags & kVarChangeable, 0u);
    EXPECT_NE(fresh.flags & kVarNoCache, 0u);
}

TEST(MapVariable, UsableByALaterMap) {
    HttpLevel http;
    ASSERT_TRUE(http.load("map $src $first { a b; }\n"
                          "map $first $second { b c; }\n"))
        << http.error();
    EXPECT_EQ(http.lookup("b", 1), "c");
}

TEST(MapVariable, UsableBeforeTheMap) {
    // As in nginx, a map may come after the directives that use its variable:
    // the name stays pending until the map defines it.
    HttpLevel http;
    ASSERT_TRUE(http.load("map $later $first { a b; }\n"
                          "map $src $later { default a; }\n"))
        << http.error();
    std::string name, file;
    int line = 0;
    EXPECT_FALSE(http.variables().undefined(name, file, line)) << name;
    EXPECT_EQ(http.variables().def(http.variables().lookup("later")).get, map::map_variable);
}

TEST(MapVariable, UnknownSourceIsReportedWhereUsed) {
    HttpLevel http;
    ASSERT_TRUE(http.load("\nmap $nosuch $x {\n}\n")) << http.error();
    std::string name, file;
    int line = 0;
    ASSERT_TRUE(http.variables().undefined(name, file, line));
    EXPECT_EQ(name, "nosuch");
    EXPECT_EQ(file, "test.conf");
    EXPECT_EQ(line, 2);
}

TEST(MapVariable, CannotReplaceABuiltinVariable) {
    HttpLevel http;
    EXPECT_FALSE(http.load("map $src $uri { a b; }"));
    EXPECT_EQ(http.error(), "the duplicate \"uri\" variable in test.conf:1");
}

TEST(MapHashSizes, AcceptedForNginxConfigs) {
    HttpLevel http;
    EXPECT_TRUE(http.load("map_hash_max_size 4096;\nmap_hash_bucket_size 128;\n")) << http.error();
}

TEST(MapErrors, NameTheFileAndLine) {
    struct Case {
        const char* config;
        const char* error;
    };
    const Case cases[] = {
        {"map $src $x {\n  a 1;\n  a 2;\n}\n", "conflicting parameter \"a\" in test.conf:3"},
        {"map $src $x {\n  Key 1;\n  key 2;\n}\n", "conflicting parameter \"key\" in test.conf:3"},
        {"map $host $x {\n  hostnames;\n  .example.com 1;\n  example.com 2;\n}\n",
         "conflicting parameter \"example.com\" in test.conf:4"},
        {"map $host $x {\n  hostnames;\n  *.example.com 1;\n  .example.com 2;\n}\n",
         "conflicting parameter \".example.com\" in test.conf:4"},
        {"map $host $x {\n  hostnames;\n  www.*.com 1;\n}\n",
         "invalid hostname or wildcard \"www.*.com\" in test.conf:3"},
        {"map $src $x {\n  a 1 2;\n}\n", "invalid number of the map parameters in test.conf:2"},
        {"map $src $x {\n  a;\n}\n", "invalid number of the map parameters in test.conf:2"},
        {"map $src $x {\n  default 1;\n  default 2;\n}\n", "duplicate default map parameter in test.conf:3"},
        {"map $src x {\n}\n", "invalid variable name \"x\" in test.conf:1"},
        {"map $src $x $y {\n}\n", "invalid number of arguments in \"map\" directive in test.conf:1"},
        {"map $src $x;\n", "directive \"map\" has no opening \"{\" in test.conf:1"},
    };
    for (const Case& c : cases) {
        HttpLevel http;
        EXPECT_FALSE(http.load(c.config)) << c.config;
        EXPECT_EQ(http.error(), c.error) << c.config;
    }
}

TEST(MapErrors, InvalidRegex) {
    HttpLevel http;
    EXPECT_FALSE(http.load("map $src $x {\n  default 0;\n  ~^(unclosed 1;\n}\n"));
    EXPECT_NE(http.error().find("pcre2_compile() failed"), std::string::npos) << http.error();
    EXPECT_NE(http.error().find("in test.conf:3"), std::string::npos) << http.error();
}

}  // namespace
}  // namespace sluice::http
