// g++ -std=c++20 -Wall -Wextra -Isrc t/unit/conf_file_test.cc src/core/conf_file.cc -lgtest -lgtest_main -pthread
#include "core/conf_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace sluice::conf {
namespace {

Tree parse_ok(std::string_view text, const ParseOptions& options = {}) {
    Tree tree;
    Error err;
    EXPECT_TRUE(parse_string(text, "test.conf", options, tree, err)) << err.to_string();
    return tree;
}

std::string parse_error(std::string_view text, const ParseOptions& options = {}) {
    Tree tree;
    Error err;
    EXPECT_FALSE(parse_string(text, "test.conf", options, tree, err));
    return err.to_string();
}

std::vector<std::string> words(const Statement& statement) {
    std::vector<std::string> out;
    for (const Arg& arg : statement.args) out.push_back(arg.text);
    return out;
}

using Words = std::vector<std::string>;

// ---- statements and blocks ------------------------------------------------

TEST(ConfFile, SimpleStatements) {
    Tree tree = parse_ok("worker_processes 4;\nerror_log /var/log/sluice/error.log warn;\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    const Statement& first = tree.statements[0];
    EXPECT_EQ(first.name(), "worker_processes");
    EXPECT_EQ(words(first), (Words{"worker_processes", "4"}));
    EXPECT_EQ(first.file, "test.conf");
    EXPECT_EQ(first.line, 1);
    EXPECT_FALSE(first.block);
    EXPECT_EQ(words(tree.statements[1]), (Words{"error_log", "/var/log/sluice/error.log", "warn"}));
    EXPECT_EQ(tree.statements[1].line, 2);
    ASSERT_EQ(tree.files.size(), 1u);
    EXPECT_EQ(tree.files[0].path, "test.conf");
    EXPECT_EQ(tree.statements[0].file.data(), tree.files[0].path.data());
}

TEST(ConfFile, EmptyInputAndBlankLines) {
    EXPECT_TRUE(parse_ok("").statements.empty());
    EXPECT_TRUE(parse_ok("\n\n   \t\r\n# only a comment").statements.empty());
}

TEST(ConfFile, SeveralStatementsOnOneLine) {
    Tree tree = parse_ok("a 1; b 2;c;");
    ASSERT_EQ(tree.statements.size(), 3u);
    EXPECT_EQ(words(tree.statements[2]), (Words{"c"}));
}

TEST(ConfFile, NestedBlocks) {
    Tree tree = parse_ok(
        "events {}\n"
        "http {\n"
        "    server {\n"
        "        listen 8080;\n"
        "        location /api {\n"
        "            proxy_pass http://backend;\n"
        "        }\n"
        "    }\n"
        "}\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    EXPECT_TRUE(tree.statements[0].block);
    EXPECT_TRUE(tree.statements[0].children.empty());
    const Statement& http = tree.statements[1];
    EXPECT_TRUE(http.block);
    EXPECT_EQ(http.line, 2);
    ASSERT_EQ(http.children.size(), 1u);
    const Statement& server = http.children[0];
    ASSERT_EQ(server.children.size(), 2u);
    EXPECT_EQ(words(server.children[0]), (Words{"listen", "8080"}));
    const Statement& location = server.children[1];
    EXPECT_EQ(words(location), (Words{"location", "/api"}));
    EXPECT_TRUE(location.block);
    EXPECT_EQ(location.line, 5);
    ASSERT_EQ(location.children.size(), 1u);
    EXPECT_EQ(words(location.children[0]), (Words{"proxy_pass", "http://backend"}));
    EXPECT_EQ(location.children[0].line, 6);
}

TEST(ConfFile, BlockOnOneLineAndBraceOnNextLine) {
    Tree tree = parse_ok("server{listen 80;}\nupstream app\n{\n server 127.0.0.1:9000; }\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"server"}));
    EXPECT_EQ(words(tree.statements[0].children[0]), (Words{"listen", "80"}));
    EXPECT_EQ(words(tree.statements[1]), (Words{"upstream", "app"}));
    EXPECT_EQ(tree.statements[1].children[0].line, 4);
}

TEST(ConfFile, StatementsAndArgsKeepTheirLines) {
    Tree tree = parse_ok("\n\nproxy_set_header\n    Host\n    \"$host\";\nnext;\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    const Statement& header = tree.statements[0];
    EXPECT_EQ(header.line, 3);
    ASSERT_EQ(header.args.size(), 3u);
    EXPECT_EQ(header.args[0].line, 3);
    EXPECT_EQ(header.args[1].line, 4);
    EXPECT_EQ(header.args[2].line, 5);
    EXPECT_EQ(tree.statements[1].line, 6);
}

TEST(ConfFile, CarriageReturnsAreWhitespace) {
    Tree tree = parse_ok("a 1;\r\nb {\r\n c 2;\r\n}\r\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", "1"}));
    EXPECT_EQ(tree.statements[1].children[0].line, 3);
}

// ---- comments --------------------------------------------------------------

TEST(ConfFile, Comments) {
    Tree tree = parse_ok(
        "# leading comment\n"
        "a 1; # trailing comment with ; { } \" '\n"
        "b \"# not a comment\" '#nor this';\n"
        "c x#y;\n"  // '#' inside a word is part of it, as in nginx
        "d 2;# right after a semicolon\n"
        "e # between arguments\n"
        "  3;\n");
    ASSERT_EQ(tree.statements.size(), 5u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", "1"}));
    EXPECT_EQ(words(tree.statements[1]), (Words{"b", "# not a comment", "#nor this"}));
    EXPECT_EQ(words(tree.statements[2]), (Words{"c", "x#y"}));
    EXPECT_EQ(words(tree.statements[3]), (Words{"d", "2"}));
    EXPECT_EQ(words(tree.statements[4]), (Words{"e", "3"}));
    EXPECT_EQ(tree.statements[4].args[1].line, 7);
}

// ---- quoting and escapes ---------------------------------------------------

TEST(ConfFile, QuotedArguments) {
    Tree tree = parse_ok("add_header X-Msg \"hello world\" 'single { } ; quoted' plain;\n");
    const Statement& s = tree.statements[0];
    EXPECT_EQ(words(s), (Words{"add_header", "X-Msg", "hello world", "single { } ; quoted", "plain"}));
    EXPECT_FALSE(s.args[1].quoted);
    EXPECT_TRUE(s.args[2].quoted);
    EXPECT_TRUE(s.args[3].quoted);
    EXPECT_FALSE(s.args[4].quoted);
}

TEST(ConfFile, EmptyQuotedStringsAreArguments) {
    Tree tree = parse_ok("set $empty \"\";\nproxy_set_header Accept-Encoding '';\n");
    ASSERT_EQ(tree.statements[0].args.size(), 3u);
    EXPECT_EQ(tree.statements[0].args[2].text, "");
    EXPECT_TRUE(tree.statements[0].args[2].quoted);
    EXPECT_EQ(tree.statements[1].args[2].text, "");
}

TEST(ConfFile, QuotedStringsSpanLines) {
    Tree tree = parse_ok("log_format main \"a\nb\";\nnext;\n");
    EXPECT_EQ(tree.statements[0].args[2].text, "a\nb");
    EXPECT_EQ(tree.statements[0].args[2].line, 1);
    EXPECT_EQ(tree.statements[1].line, 3);
}

TEST(ConfFile, QuoteMayBeFollowedBySeparators) {
    Tree tree = parse_ok("a \"x\";b 'y'{}c \"z\"\t\"w\"\n;");
    ASSERT_EQ(tree.statements.size(), 3u);
    EXPECT_TRUE(tree.statements[1].block);
    EXPECT_EQ(words(tree.statements[2]), (Words{"c", "z", "w"}));
}

TEST(ConfFile, Escapes) {
    Tree tree = parse_ok(R"(a "q\"q" 's\'s' "b\\s" "\t\r\n" 'dq"in single' "sq'in double";)");
    EXPECT_EQ(words(tree.statements[0]),
              (Words{"a", "q\"q", "s's", "b\\s", "\t\r\n", "dq\"in single", "sq'in double"}));
}

TEST(ConfFile, UnknownEscapesKeepTheirBackslash) {
    Tree tree = parse_ok(R"(a "\d+\.x" \w \$ "\{";)");
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", R"(\d+\.x)", R"(\w)", R"(\$)", R"(\{)"}));
}

TEST(ConfFile, EscapesInUnquotedWords) {
    // An escaped character never ends a word; known escapes are unescaped
    // in unquoted words too, as in nginx.
    Tree tree = parse_ok(R"(a x\"y x\ y x\;y x\\ x\{y;)");
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", "x\"y", R"(x\ y)", R"(x\;y)", "x\\", R"(x\{y)"}));
}

TEST(ConfFile, QuotesInsideAWordAreLiteral) {
    Tree tree = parse_ok("a x\"y\" it's;");
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", "x\"y\"", "it's"}));
    EXPECT_FALSE(tree.statements[0].args[1].quoted);
}

// ---- variables and regexes -------------------------------------------------

TEST(ConfFile, BracedVariablesAreNotBlocks) {
    Tree tree = parse_ok(
        "return 301 https://${host}${request_uri};\n"
        "location / { set $full ${scheme}://${host}:8080; }\n"
        "set $a \"${b}c\";\n"
        "map $http_x ${x}_suffix {}\n");
    ASSERT_EQ(tree.statements.size(), 4u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"return", "301", "https://${host}${request_uri}"}));
    const Statement& location = tree.statements[1];
    ASSERT_EQ(location.children.size(), 1u);
    EXPECT_EQ(words(location.children[0]), (Words{"set", "$full", "${scheme}://${host}:8080"}));
    EXPECT_EQ(tree.statements[2].args[2].text, "${b}c");
    EXPECT_TRUE(tree.statements[3].block);
    EXPECT_EQ(words(tree.statements[3]), (Words{"map", "$http_x", "${x}_suffix"}));
}

TEST(ConfFile, BraceAfterAWordEndsItUnlessAfterDollar) {
    Tree tree = parse_ok("a $x{ b; }\nc ${y}{ d; }\n");
    ASSERT_EQ(tree.statements.size(), 2u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"a", "$x"}));
    EXPECT_TRUE(tree.statements[0].block);
    EXPECT_EQ(words(tree.statements[1]), (Words{"c", "${y}"}));
    EXPECT_TRUE(tree.statements[1].block);
}

TEST(ConfFile, RegexArguments) {
    Tree tree = parse_ok(
        "location ~ ^/api/(?<v>v[0-9]+)/ { return 200; }\n"
        "location ~* \\.(gif|jpg)$ { expires 30d; }\n"
        "location ~ \"^/(a|b){2}$\" { return 204; }\n"
        "rewrite ^/old/(.*)$ /new/$1 permanent;\n");
    ASSERT_EQ(tree.statements.size(), 4u);
    EXPECT_EQ(words(tree.statements[0]), (Words{"location", "~", "^/api/(?<v>v[0-9]+)/"}));
    EXPECT_EQ(words(tree.statements[1]), (Words{"location", "~*", "\\.(gif|jpg)$"}));
    EXPECT_EQ(words(tree.statements[2]), (Words{"location", "~", "^/(a|b){2}$"}));
    EXPECT_TRUE(tree.statements[2].args[2].quoted);
    EXPECT_EQ(words(tree.statements[3]), (Words{"rewrite", "^/old/(.*)$", "/new/$1", "permanent"}));
    for (int i = 0; i < 3; ++i) EXPECT_EQ(tree.statements[size_t(i)].children.size(), 1u);
}

TEST(ConfFile, IfConditionWithQuotedOperand) {
    Tree tree = parse_ok("if ($request_method = \"POST\") { return 405; }\n");
    EXPECT_EQ(words(tree.statements[0]), (Words{"if", "($request_method", "=", "POST", ")"}));
    EXPECT_TRUE(tree.statements[0].block);
}

// ---- errors ----------------------------------------------------------------

TEST(ConfFile, UnexpectedClosingBrace) {
    EXPECT_EQ(parse_error("a 1;\n\n}\n"), "unexpected \"}\" in test.conf:3");
    EXPECT_EQ(parse_error("server {\n listen 80 }\n"), "unexpected \"}\" in test.conf:2");
    EXPECT_EQ(parse_error("a \"x\"}"), "unexpected \"}\" in test.conf:1");
    EXPECT_EQ(parse_error("http {\n}\n}\n"), "unexpected \"}\" in test.conf:3");
}

TEST(ConfFile, ClosingBraceEndsAWord) {
    // Unlike nginx, where "80}" would be one word and the error would come
    // at the end of the file, far from the mistake.
    EXPECT_EQ(parse_error("server {\n    listen 80}\n"), "unexpected \"}\" in test.conf:2");
    EXPECT_EQ(parse_error("a x}y;"), "unexpected \"}\" in test.conf:1");
    EXPECT_EQ(parse_error("return 200 ${a}};"), "unexpected \"}\" in test.conf:1");
    Tree tree = parse_ok("location / { return 200 ${a}; }");
    EXPECT_EQ(words(tree.statements[0].children[0]), (Words{"return", "200", "${a}"}));
}

TEST(ConfFile, UnexpectedEndOfFile) {
    EXPECT_EQ(parse_error("http {\n  server {\n    listen 80;\n  }\n"),
              "unexpected end of file, expecting \"}\" in test.conf:5");
    EXPECT_EQ(parse_error("a 1;\nlisten 80"),
              "unexpected end of file, expecting \";\" or \"}\" in test.conf:2");
    EXPECT_EQ(parse_error("a \"b\""), "unexpected end of file, expecting \";\" or \"}\" in test.conf:1");
    EXPECT_EQ(parse_error("a b\\"), "unexpected end of file, expecting \";\" or \"}\" in test.conf:1");
    EXPECT_EQ(parse_error("a b # comment ;\n"),
              "unexpected end of file, expecting \";\" or \"}\" in test.conf:2");
}

TEST(ConfFile, StatementWithoutName) {
    EXPECT_EQ(parse_error("a;\n{ b; }\n"), "unexpected \"{\" in test.conf:2");
    EXPECT_EQ(parse_error("a;\n\n;\n"), "unexpected \";\" in test.conf:3");
    EXPECT_EQ(parse_error("http {\n  ;\n}\n"), "unexpected \";\" in test.conf:2");
}

TEST(ConfFile, EmptyFirstWordIsAllowed) {
    // Blocks such as map take their keys as statement names, and "" is a key.
    Tree tree = parse_ok(
        "map $http_upgrade $connection_upgrade {\n"
        "    default upgrade;\n"
        "    ''      close;\n"
        "}\n");
    const Statement& map = tree.statements[0];
    ASSERT_EQ(map.children.size(), 2u);
    EXPECT_EQ(map.children[1].name(), "");
    EXPECT_TRUE(map.children[1].args[0].quoted);
    EXPECT_EQ(words(map.children[1]), (Words{"", "close"}));
}

TEST(ConfFile, QuoteMustBeFollowedBySeparator) {
    EXPECT_EQ(parse_error("a\n \"b\"c;\n"), "unexpected \"c\" in test.conf:2");
    EXPECT_EQ(parse_error("a 'b''c';"), "unexpected \"'\" in test.conf:1");
    EXPECT_EQ(parse_error("a \"b\"# comment\n;"), "unexpected \"#\" in test.conf:1");
}

TEST(ConfFile, UnterminatedQuotedString) {
    EXPECT_EQ(parse_error("a 1;\nb \"never\nclosed;\n}\n"), "unterminated quoted string in test.conf:2");
    EXPECT_EQ(parse_error("a 'x\\';\n"), "unterminated quoted string in test.conf:1");
}

TEST(ConfFile, TooDeeplyNestedBlocks) {
    ParseOptions options;
    options.max_block_depth = 3;
    EXPECT_EQ(parse_ok("a { b { c { d; } } }", options).statements.size(), 1u);
    EXPECT_EQ(parse_error("a { b { c { d { e; } } } }", options),
              "too many nested blocks (more than 3) in test.conf:1");
    std::string deep;
    for (int i = 0; i < 100000; ++i) deep += "a{";
    EXPECT_EQ(parse_error(deep), "too many nested blocks (more than 64) in test.conf:1");
}

TEST(ConfFile, ErrorFormatting) {
    Error err{"/etc/sluice/sluice.conf", 12, "unexpected \"}\""};
    EXPECT_EQ(err.to_string(), "unexpected \"}\" in /etc/sluice/sluice.conf:12");
    Error no_file{"", 0, "open() \"/x\" failed (2: No such file or directory)"};
    EXPECT_EQ(no_file.to_string(), "open() \"/x\" failed (2: No such file or directory)");
}

TEST(ConfFile, IncludeSyntaxErrors) {
    const std::string arguments = "invalid number of arguments in \"include\" directive";
    EXPECT_EQ(parse_error("a;\ninclude;\n"), arguments + " in test.conf:2");
    EXPECT_EQ(parse_error("include a b;\n"), arguments + " in test.conf:1");
    EXPECT_EQ(parse_error("include a {\n}\n"),
              "directive \"include\" is not terminated by \";\" in test.conf:1");
}

TEST(ConfFile, IncludeRefusedWhenNotAllowed) {
    ParseOptions options;
    options.allow_include = false;
    EXPECT_EQ(parse_error("http {\n  include /etc/passwd;\n}\n", options),
              "\"include\" is not allowed here in test.conf:2");
}

TEST(ConfFile, ParseReplacesPreviousResult) {
    Tree tree;
    Error err;
    ASSERT_TRUE(parse_string("a;", "one.conf", {}, tree, err));
    ASSERT_TRUE(parse_string("b;", "two.conf", {}, tree, err));
    ASSERT_EQ(tree.statements.size(), 1u);
    EXPECT_EQ(tree.statements[0].name(), "b");
    EXPECT_EQ(tree.files.size(), 1u);
}

TEST(ConfFile, MovedTreeKeepsViewsValid) {
    Tree tree = parse_ok("a { b; }");
    Tree moved = std::move(tree);
    Tree assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.statements[0].children[0].file.data(), assigned.files[0].path.data());
    EXPECT_EQ(assigned.statements[0].children[0].file, "test.conf");
}

// ---- include ---------------------------------------------------------------

class ConfFileInclude : public ::testing::Test {
protected:
    void SetUp() override {
        char pattern[] = "/tmp/sluice-conf-XXXXXX";
        ASSERT_NE(mkdtemp(pattern), nullptr);
        dir_ = pattern;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string path(const std::string& name) const { return dir_ + "/" + name; }
    void write(const std::string& name, const std::string& content) const {
        std::filesystem::create_directories(std::filesystem::path(path(name)).parent_path());
        std::ofstream(path(name)) << content;
    }
    bool parse(const std::string& name, Tree& tree, Error& err, const ParseOptions& options = {}) const {
        return parse_file(path(name), options, tree, err);
    }

    std::string dir_;
};

TEST_F(ConfFileInclude, RelativeIncludeResolvesAgainstMainFileDirectory) {
    write("main.conf", "a;\nhttp {\n    include mime.types;\n    b;\n}\n");
    write("mime.types", "\ntypes {\n    text/html html;\n}\ndefault_type text/plain;\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    ASSERT_EQ(tree.files.size(), 2u);
    EXPECT_EQ(tree.files[0].path, path("main.conf"));
    EXPECT_EQ(tree.files[1].path, path("mime.types"));
    EXPECT_EQ(tree.files[1].content, "\ntypes {\n    text/html html;\n}\ndefault_type text/plain;\n");

    ASSERT_EQ(tree.statements.size(), 2u);
    const Statement& http = tree.statements[1];
    ASSERT_EQ(http.children.size(), 3u);
    EXPECT_EQ(http.children[0].name(), "types");
    EXPECT_EQ(http.children[0].file, path("mime.types"));
    EXPECT_EQ(http.children[0].line, 2);
    EXPECT_EQ(words(http.children[0].children[0]), (Words{"text/html", "html"}));
    EXPECT_EQ(words(http.children[1]), (Words{"default_type", "text/plain"}));
    EXPECT_EQ(http.children[1].line, 5);
    EXPECT_EQ(http.children[2].name(), "b");
    EXPECT_EQ(http.children[2].file, path("main.conf"));
    EXPECT_EQ(http.children[2].line, 4);
}

TEST_F(ConfFileInclude, GlobIsSortedAndFiltersNames) {
    write("main.conf", "include conf.d/*.conf;\nlast;\n");
    write("conf.d/b.conf", "b;\n");
    write("conf.d/a.conf", "a;\n");
    write("conf.d/c.conf", "c 1;\nc 2;\n");
    write("conf.d/ignored.txt", "ignored;\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    std::vector<std::string> names;
    for (const Statement& s : tree.statements) names.push_back(s.name());
    EXPECT_EQ(names, (Words{"a", "b", "c", "c", "last"}));
    ASSERT_EQ(tree.files.size(), 4u);
    EXPECT_EQ(tree.files[1].path, path("conf.d/a.conf"));
    EXPECT_EQ(tree.files[3].path, path("conf.d/c.conf"));
    EXPECT_EQ(tree.statements[3].line, 2);
}

TEST_F(ConfFileInclude, GlobWithoutMatchIsNotAnError) {
    write("main.conf",
          "http {\n"
          "    include sites/*.conf;\n"
          "    include /nonexistent-dir-for-sluice/?.conf;\n"
          "}\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    EXPECT_TRUE(tree.statements[0].children.empty());
}

TEST_F(ConfFileInclude, AbsolutePathAndBracketGlob) {
    write("main.conf", "include " + path("inc/[ab].conf") + ";\n");
    write("inc/a.conf", "a;\n");
    write("inc/b.conf", "b;\n");
    write("inc/c.conf", "c;\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    ASSERT_EQ(tree.statements.size(), 2u);
    EXPECT_EQ(tree.statements[1].name(), "b");
}

TEST_F(ConfFileInclude, MissingFileIsAnError) {
    write("main.conf", "a;\n\ninclude missing.conf;\n");
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(), "open() \"" + path("missing.conf") +
                                   "\" failed (2: No such file or directory) in " + path("main.conf") +
                                   ":3");
    EXPECT_EQ(err.file, path("main.conf"));
    EXPECT_EQ(err.line, 3);
}

TEST_F(ConfFileInclude, DirectoryIsAnError) {
    write("sub/x.conf", "");
    write("main.conf", "include sub;\n");
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(),
              "read() \"" + path("sub") + "\" failed (21: Is a directory) in " + path("main.conf") + ":1");
}

TEST_F(ConfFileInclude, MissingMainFile) {
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("nope.conf", tree, err));
    EXPECT_EQ(err.to_string(), "open() \"" + path("nope.conf") + "\" failed (2: No such file or directory)");
    EXPECT_TRUE(err.file.empty());
}

TEST_F(ConfFileInclude, ErrorsInIncludedFilesNameThatFile) {
    write("main.conf", "http {\n    include bad.conf;\n}\n");
    write("bad.conf", "ok;\nbroken \"x\"y;\n");
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(), "unexpected \"y\" in " + path("bad.conf") + ":2");
}

TEST_F(ConfFileInclude, IncludedFileCannotCloseTheIncludersBlock) {
    write("main.conf", "http {\n    include close.conf;\n");
    write("close.conf", "a;\n}\n");
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(), "unexpected \"}\" in " + path("close.conf") + ":2");

    write("main.conf", "include open.conf;\n}\n");
    write("open.conf", "http {\n");
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(), "unexpected end of file, expecting \"}\" in " + path("open.conf") + ":2");
}

TEST_F(ConfFileInclude, SelfIncludeIsALoop) {
    write("main.conf", "a;\ninclude main.conf;\n");
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.to_string(), "include loop: \"" + path("main.conf") + "\" is already being read in " +
                                   path("main.conf") + ":2");
}

TEST_F(ConfFileInclude, IndirectLoopThroughGlob) {
    write("main.conf", "include conf.d/*.conf;\n");
    write("conf.d/a.conf", "a;\n");
    write("conf.d/b.conf", "http {\n    include main.conf;\n}\n");  // relative to the prefix
    Tree tree;
    Error err;
    ASSERT_FALSE(parse("main.conf", tree, err));
    EXPECT_EQ(err.file, path("conf.d/b.conf"));
    EXPECT_EQ(err.line, 2);
    EXPECT_NE(err.message.find("include loop"), std::string::npos) << err.message;
}

TEST_F(ConfFileInclude, DepthLimit) {
    // main -> 1 -> 2 -> 3 -> 4: four levels of include.
    write("main.conf", "include 1.conf;\n");
    for (int i = 1; i < 4; ++i) {
        write(std::to_string(i) + ".conf", "include " + std::to_string(i + 1) + ".conf;\n");
    }
    write("4.conf", "deepest;\n");
    Tree tree;
    Error err;
    ParseOptions options;
    options.max_include_depth = 4;
    ASSERT_TRUE(parse("main.conf", tree, err, options)) << err.to_string();
    EXPECT_EQ(tree.statements[0].name(), "deepest");
    EXPECT_EQ(tree.files.size(), 5u);

    options.max_include_depth = 3;
    ASSERT_FALSE(parse("main.conf", tree, err, options));
    EXPECT_EQ(err.to_string(), "includes nested too deeply (more than 3) in " + path("3.conf") + ":1");
}

TEST_F(ConfFileInclude, IncludesFromAString) {
    // The string has no inode of its own, but the file it includes does.
    write("loop.conf", "include loop.conf;\n");
    Tree tree;
    Error err;
    ParseOptions options;
    options.prefix = dir_;
    ASSERT_FALSE(parse_string("include loop.conf;", "<string>", options, tree, err));
    EXPECT_NE(err.message.find("include loop"), std::string::npos) << err.message;

    write("a.conf", "x;\n");
    ASSERT_TRUE(parse_string("include a.conf;", "<string>", options, tree, err)) << err.to_string();
    EXPECT_EQ(tree.statements[0].name(), "x");
}

TEST_F(ConfFileInclude, SameFileTwiceIsReadOnce) {
    write("main.conf", "a { include common.conf; }\nb { include common.conf; }\n");
    write("common.conf", "shared 1;\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    EXPECT_EQ(tree.files.size(), 2u);
    EXPECT_EQ(words(tree.statements[0].children[0]), (Words{"shared", "1"}));
    EXPECT_EQ(words(tree.statements[1].children[0]), (Words{"shared", "1"}));
    EXPECT_EQ(tree.statements[1].children[0].file.data(), tree.files[1].path.data());
}

TEST_F(ConfFileInclude, PrefixOverridesMainFileDirectory) {
    write("main.conf", "include snippet.conf;\n");
    write("other/snippet.conf", "from_prefix;\n");
    Tree tree;
    Error err;
    ParseOptions options;
    options.prefix = path("other");  // no trailing slash: one is added
    ASSERT_TRUE(parse("main.conf", tree, err, options)) << err.to_string();
    EXPECT_EQ(tree.statements[0].name(), "from_prefix");
    EXPECT_EQ(tree.files[1].path, path("other/snippet.conf"));
}

TEST_F(ConfFileInclude, NestedRelativeIncludesUseTheMainDirectory) {
    // As in nginx, a relative include inside an included file is still
    // relative to the prefix, not to the including file.
    write("main.conf", "include sub/first.conf;\n");
    write("sub/first.conf", "include sub/second.conf;\n");
    write("sub/second.conf", "second;\n");
    Tree tree;
    Error err;
    ASSERT_TRUE(parse("main.conf", tree, err)) << err.to_string();
    EXPECT_EQ(tree.statements[0].name(), "second");
}

}  // namespace
}  // namespace sluice::conf
