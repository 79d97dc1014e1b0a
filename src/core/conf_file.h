// The configuration file reader: nginx's syntax (ngx_conf_file.c) turned into
// a tree of statements, with `include` resolved while reading. It knows no
// directives; giving statements a meaning is core/conf.h's job.
#pragma once
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::conf {

struct Arg {
    std::string text;  // after unescaping; quotes removed
    bool quoted = false;
    int line = 0;  // where the argument starts, for errors about this argument
};

struct Statement {
    std::string_view file;  // a SourceFile::path in the Tree that holds it
    int line = 0;           // line of the directive name
    std::vector<Arg> args;  // args[0] is the directive name
    bool block = false;     // "name args { ... }"
    std::vector<Statement> children;

    const std::string& name() const { return args[0].text; }
};

struct SourceFile {
    std::string path;  // as opened: relative includes already joined to the prefix
    std::string content;
};

// Statements point into `files`, and a std::deque never moves its elements,
// not even when the deque itself is moved: so a Tree may be moved, but a copy
// would point into the original, which is why copying is deleted.
struct Tree {
    std::vector<Statement> statements;
    // Every file read, once each, in the order first read (`sluice -T`).
    std::deque<SourceFile> files;

    Tree() = default;
    Tree(Tree&&) = default;
    Tree& operator=(Tree&&) = default;
    Tree(const Tree&) = delete;
    Tree& operator=(const Tree&) = delete;
};

struct Error {
    std::string file;  // empty when no file is involved (the main file can't be opened)
    int line = 0;
    std::string message;

    // "MESSAGE in FILE:LINE", as nginx prints it; just MESSAGE without a file.
    std::string to_string() const;
};

struct ParseOptions {
    // Directory that relative include paths resolve against. Empty: the
    // directory of the main file (for parse_string, of `name`), as nginx does
    // with its conf prefix; no directory there either means the working one.
    std::string prefix;
    // false makes `include` an error: for input that must not reach the
    // filesystem (the fuzzer, configs received over the wire).
    bool allow_include = true;
    int max_include_depth = 16;
    // Bounds recursion (in the parser and in ~Statement) on hostile input; real
    // configs nest a handful of levels.
    int max_block_depth = 64;
};

// Both replace `out` and, on failure, set `err` to the first error found
// (nginx stops at the first one too); `out` then holds what was read so far.
bool parse_file(const std::string& path, const ParseOptions&, Tree& out, Error& err);
// `name` stands for the file in statements and errors.
bool parse_string(std::string_view text, std::string_view name, const ParseOptions&, Tree& out,
                  Error& err);

}  // namespace sluice::conf
