// Reads nginx's configuration syntax. The lexer follows ngx_conf_read_token()
// closely, because sysadmins bring configs written for nginx and expect the
// same words, the same escapes and the same error messages.
#include "core/conf_file.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>

namespace sluice::conf {

std::string Error::to_string() const {
    if (file.empty()) return message;
    return message + " in " + file + ":" + std::to_string(line);
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string unexpected(char c) { return std::string("unexpected \"") + c + "\""; }

// nginx's escapes; 0 for the others, which keep their backslash so that
// regexes such as "\d+" or "\.(gif|jpg)$" reach PCRE intact.
char unescaped(char c) {
    switch (c) {
    case '"':
    case '\'':
    case '\\': return c;
    case 't': return '\t';
    case 'r': return '\r';
    case 'n': return '\n';
    default: return 0;
    }
}

std::string unescape(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i] == '\\' && i + 1 < raw.size() ? unescaped(raw[i + 1]) : 0;
        if (c) {
            out.push_back(c);
            ++i;
        } else {
            out.push_back(raw[i]);
        }
    }
    return out;
}

// What ended the words of one statement, as ngx_conf_read_token() reports it.
enum class Ending { Statement, BlockStart, BlockEnd, FileEnd, Failed };

class Lexer {
public:
    explicit Lexer(std::string_view text) : text_(text) {}

    // Appends the words of the next statement to `args`.
    Ending read_statement(std::vector<Arg>& args);

    int line() const { return line_; }
    int error_line() const { return error_line_; }
    const std::string& error() const { return error_; }

private:
    bool at_end() const { return pos_ >= text_.size(); }
    char take() {
        const char c = text_[pos_++];
        if (c == '\n') ++line_;
        return c;
    }
    void skip_comment() {
        while (!at_end() && take() != '\n') {
        }
    }
    bool read_quoted(std::vector<Arg>& args);
    void read_unquoted(std::vector<Arg>& args);
    bool fail(int line, std::string message) {
        error_line_ = line;
        error_ = std::move(message);
        return false;
    }

    std::string_view text_;
    size_t pos_ = 0;
    int line_ = 1;
    int error_line_ = 0;
    std::string error_;
};

Ending Lexer::read_statement(std::vector<Arg>& args) {
    for (;;) {
        while (!at_end() && is_space(text_[pos_])) take();
        if (at_end()) {
            if (args.empty()) return Ending::FileEnd;
            fail(line_, "unexpected end of file, expecting \";\" or \"}\"");
            return Ending::Failed;
        }
        const char c = text_[pos_];
        switch (c) {
        case ';':
        case '{':
            take();
            if (args.empty()) {
                fail(line_, unexpected(c));
                return Ending::Failed;
            }
            return c == ';' ? Ending::Statement : Ending::BlockStart;
        case '}':
            take();
            if (!args.empty()) {
                fail(line_, unexpected(c));
                return Ending::Failed;
            }
            return Ending::BlockEnd;
        case '#':
            // Only where a word would start: "a#b" is one word, as in nginx.
            skip_comment();
            break;
        case '"':
        case '\'':
            if (!read_quoted(args)) return Ending::Failed;
            break;
        default: read_unquoted(args);
        }
    }
}

bool Lexer::read_quoted(std::vector<Arg>& args) {
    const char quote = take();
    const int start_line = line_;
    const size_t start = pos_;
    bool escaped = false;
    for (;;) {
        // Reported where the string began: that is where the missing quote is.
        if (at_end()) return fail(start_line, "unterminated quoted string");
        const char c = take();
        if (escaped) {
            escaped = false;
        } else if (c == '\\') {
            escaped = true;
        } else if (c == quote) {
            break;
        }
    }
    args.push_back({unescape(text_.substr(start, pos_ - 1 - start)), true, start_line});
    if (at_end()) return true;
    // nginx refuses "a"b rather than guess whether it is one word or two;
    // ')' is allowed for `if ($x = "y")`.
    const char next = text_[pos_];
    if (is_space(next) || next == ';' || next == '{' || next == '}' || next == ')') return true;
    take();
    return fail(line_, unexpected(next));
}

void Lexer::read_unquoted(std::vector<Arg>& args) {
    const int start_line = line_;
    const size_t start = pos_;
    bool escaped = false;
    bool after_dollar = false;
    int open_variable_braces = 0;  // "${name}" is one word, not a block
    while (!at_end()) {
        const char c = text_[pos_];
        if (escaped) {
            escaped = false;
            take();
            continue;
        }
        if (c == '{' && after_dollar) {
            ++open_variable_braces;
            take();
            continue;  // nginx keeps the flag: "${{" is still part of the word
        }
        after_dollar = false;
        if (c == '\\') {
            escaped = true;
        } else if (c == '$') {
            after_dollar = true;
        } else if (is_space(c) || c == ';' || c == '{') {
            break;
        } else if (c == '}') {
            if (open_variable_braces == 0) break;
            --open_variable_braces;
        }
        take();
    }
    args.push_back({unescape(text_.substr(start, pos_ - start)), false, start_line});
}

// A file apart from how its path is spelled, to recognise an include loop.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const FileId&) const = default;
};

std::string syscall_error(const char* call, const std::string& path, int err) {
    return std::string(call) + " \"" + path + "\" failed (" + std::to_string(err) + ": " +
           std::generic_category().message(err) + ")";
}

class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() {
        if (fd_ >= 0) ::close(fd_);
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// Reads to the end rather than trusting st_size, which a file being written
// or a special file gets wrong.
bool read_file(const std::string& path, std::string& content, FileId& id, std::string& error) {
    int raw_fd;
    do {
        raw_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (raw_fd < 0 && errno == EINTR);
    if (raw_fd < 0) return error = syscall_error("open()", path, errno), false;
    const FileDescriptor fd(raw_fd);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return error = syscall_error("fstat()", path, errno), false;
    id = {st.st_dev, st.st_ino};
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n > 0) {
            content.append(buf, size_t(n));
        } else if (n == 0) {
            return true;
        } else if (errno != EINTR) {
            return error = syscall_error("read()", path, errno), false;
        }
    }
}

class GlobResult {
public:
    GlobResult() = default;
    ~GlobResult() { globfree(&glob_); }
    GlobResult(const GlobResult&) = delete;
    GlobResult& operator=(const GlobResult&) = delete;
    glob_t* get() { return &glob_; }

private:
    glob_t glob_{};
};

std::string directory_of(std::string_view path) {
    const size_t slash = path.rfind('/');
    return slash == std::string_view::npos ? std::string() : std::string(path.substr(0, slash + 1));
}

class Parser {
public:
    Parser(const ParseOptions& options, Tree& tree, Error& error)
        : options_(options), tree_(tree), error_(error) {}

    bool parse_main_file(const std::string& path);
    bool parse_main_text(std::string_view text, std::string_view name);

private:
    // One file being read.
    struct Frame {
        std::string_view file;
        Lexer lexer;
        int include_depth;
    };
    struct Loaded {
        const SourceFile* source;
        FileId id;
    };

    void set_include_dir(std::string_view main_file);
    bool parse_source(const SourceFile&, std::optional<FileId>, int include_depth, int block_depth,
                      std::vector<Statement>& out);
    bool parse_body(Frame&, int block_depth, bool in_block, std::vector<Statement>& out);
    bool add_statement(Frame&, Statement&&, int block_depth, std::vector<Statement>& out);
    bool include(Frame&, const Statement&, int block_depth, std::vector<Statement>& out);
    bool include_file(Frame&, int line, const std::string& path, int block_depth,
                      std::vector<Statement>& out);
    const SourceFile* load(const std::string& path, FileId& id, std::string& error);
    bool fail(std::string_view file, int line, std::string message) {
        error_ = Error{std::string(file), line, std::move(message)};
        return false;
    }

    const ParseOptions& options_;
    Tree& tree_;
    Error& error_;
    std::string include_dir_;  // empty or ending in '/'
    // Each file is read once, so `sluice -T` shows exactly what was parsed.
    std::unordered_map<std::string, Loaded> loaded_;
    std::vector<FileId> reading_;  // the include chain being parsed, outermost first
};

void Parser::set_include_dir(std::string_view main_file) {
    include_dir_ = options_.prefix.empty() ? directory_of(main_file) : options_.prefix;
    if (!include_dir_.empty() && include_dir_.back() != '/') include_dir_ += '/';
}

bool Parser::parse_main_file(const std::string& path) {
    set_include_dir(path);
    FileId id;
    std::string message;
    const SourceFile* source = load(path, id, message);
    if (!source) return fail("", 0, std::move(message));
    return parse_source(*source, id, 0, 0, tree_.statements);
}

bool Parser::parse_main_text(std::string_view text, std::string_view name) {
    set_include_dir(name);
    tree_.files.push_back({std::string(name), std::string(text)});
    return parse_source(tree_.files.back(), std::nullopt, 0, 0, tree_.statements);
}

bool Parser::parse_source(const SourceFile& source, std::optional<FileId> id, int include_depth,
                          int block_depth, std::vector<Statement>& out) {
    Frame frame{source.path, Lexer(source.content), include_depth};
    if (id) reading_.push_back(*id);
    const bool ok = parse_body(frame, block_depth, false, out);
    if (id) reading_.pop_back();
    return ok;
}

bool Parser::parse_body(Frame& frame, int block_depth, bool in_block, std::vector<Statement>& out) {
    for (;;) {
        Statement statement;
        switch (frame.lexer.read_statement(statement.args)) {
        case Ending::Failed: return fail(frame.file, frame.lexer.error_line(), frame.lexer.error());
        case Ending::FileEnd:
            if (!in_block) return true;
            return fail(frame.file, frame.lexer.line(), "unexpected end of file, expecting \"}\"");
        case Ending::BlockEnd:
            if (in_block) return true;
            return fail(frame.file, frame.lexer.line(), "unexpected \"}\"");
        case Ending::BlockStart: statement.block = true; [[fallthrough]];
        case Ending::Statement:
            if (!add_statement(frame, std::move(statement), block_depth, out)) return false;
        }
    }
}

bool Parser::add_statement(Frame& frame, Statement&& statement, int block_depth,
                           std::vector<Statement>& out) {
    statement.file = frame.file;
    statement.line = statement.args[0].line;
    if (statement.name() == "include") return include(frame, statement, block_depth, out);
    if (statement.block) {
        if (block_depth >= options_.max_block_depth) {
            return fail(frame.file, statement.line,
                        "too many nested blocks (more than " +
                            std::to_string(options_.max_block_depth) + ")");
        }
        if (!parse_body(frame, block_depth + 1, true, statement.children)) return false;
    }
    out.push_back(std::move(statement));
    return true;
}

// The statements of the included files take the include's place, in the
// same block, so that no later stage needs to know about includes.
bool Parser::include(Frame& frame, const Statement& statement, int block_depth,
                     std::vector<Statement>& out) {
    const int line = statement.line;
    if (statement.block) {
        return fail(frame.file, frame.lexer.line(), "directive \"include\" is not terminated by \";\"");
    }
    if (statement.args.size() != 2) {
        return fail(frame.file, line, "invalid number of arguments in \"include\" directive");
    }
    if (!options_.allow_include) return fail(frame.file, line, "\"include\" is not allowed here");

    const std::string& arg = statement.args[1].text;
    const std::string pattern = arg.starts_with('/') ? arg : include_dir_ + arg;
    if (pattern.find_first_of("*?[") == std::string::npos) {
        return include_file(frame, line, pattern, block_depth, out);
    }
    GlobResult matches;
    const int rc = ::glob(pattern.c_str(), 0, nullptr, matches.get());
    if (rc == GLOB_NOMATCH) return true;  // an empty conf.d/ is fine, as in nginx
    if (rc != 0) return fail(frame.file, line, "glob() \"" + pattern + "\" failed");
    for (size_t i = 0; i < matches.get()->gl_pathc; ++i) {
        if (!include_file(frame, line, matches.get()->gl_pathv[i], block_depth, out)) return false;
    }
    return true;
}

bool Parser::include_file(Frame& frame, int line, const std::string& path, int block_depth,
                          std::vector<Statement>& out) {
    if (frame.include_depth >= options_.max_include_depth) {
        return fail(frame.file, line,
                    "includes nested too deeply (more than " +
                        std::to_string(options_.max_include_depth) + ")");
    }
    FileId id;
    std::string message;
    const SourceFile* source = load(path, id, message);
    if (!source) return fail(frame.file, line, std::move(message));
    // A file that includes itself, directly or not, would never end.
    if (std::find(reading_.begin(), reading_.end(), id) != reading_.end()) {
        return fail(frame.file, line, "include loop: \"" + path + "\" is already being read");
    }
    return parse_source(*source, id, frame.include_depth + 1, block_depth, out);
}

const SourceFile* Parser::load(const std::string& path, FileId& id, std::string& error) {
    if (auto it = loaded_.find(path); it != loaded_.end()) {
        id = it->second.id;
        return it->second.source;
    }
    std::string content;
    if (!read_file(path, content, id, error)) return nullptr;
    tree_.files.push_back({path, std::move(content)});
    loaded_.emplace(path, Loaded{&tree_.files.back(), id});
    return &tree_.files.back();
}

}  // namespace

bool parse_file(const std::string& path, const ParseOptions& options, Tree& out, Error& err) {
    out = Tree{};
    err = Error{};
    return Parser(options, out, err).parse_main_file(path);
}

bool parse_string(std::string_view text, std::string_view name, const ParseOptions& options,
                  Tree& out, Error& err) {
    out = Tree{};
    err = Error{};
    return Parser(options, out, err).parse_main_text(text, name);
}

}  // namespace sluice::conf
