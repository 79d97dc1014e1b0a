// Variables ($uri, $http_host, map results, regex captures) and complex
// values: strings with variables, compiled once at load time and evaluated
// per request without parsing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
class ConfContext;
class Regex;
}

namespace sluice::http {

class Request;

// Returns false when the variable has no value ("not found": evaluates to "").
// The value must live as long as the request (the request's arena, the
// connection buffer, or configuration memory).
using VariableGetter = bool (*)(Request&, std::string_view& value, uintptr_t data);

enum VariableFlags : unsigned {
    kVarNoCache = 1u << 0,    // value can change during the request ($status, $request_time)
    kVarChangeable = 1u << 1, // may be redefined by `set`/`map` (a second `add` replaces the getter)
    kVarIndexed = 1u << 2,    // value is stored per request (set by regex captures); no getter
    kVarPending = 1u << 3,    // referenced before it was defined (a later map, a module's postconfiguration)
};

struct VariableDef {
    std::string name;
    VariableGetter get = nullptr;
    uintptr_t data = 0;
    unsigned flags = 0;
    int index = -1;  // slot in the per-request value cache
};

class Variables {
public:
    // Defines a variable; returns its index. A second definition of the same
    // name fails (returns -1) unless the first is changeable.
    int add(std::string_view name, VariableGetter, uintptr_t data, unsigned flags = 0);
    // Variables named PREFIX + anything ("http_", "arg_", "cookie_", "sent_http_").
    // The getter's data is a pointer to a std::string holding the suffix.
    // Names with the prefix that were referenced before (pending) resolve too.
    void add_prefix(std::string_view prefix, VariableGetter, unsigned flags = 0);
    // A variable whose value is stored per request: regex named captures and `set`.
    int add_indexed(std::string_view name);

    // Resolves a name used in the configuration; -1 when unknown.
    int lookup(std::string_view name);
    // As lookup, but an unknown name becomes a pending variable that a later
    // directive or module may define; where it was first used is kept for
    // the error if nothing does (see undefined()).
    int reference(std::string_view name, const std::string& file, int line);
    // The first variable referenced but never defined, with where it was used.
    bool undefined(std::string& name, std::string& file, int& line) const;
    const VariableDef& def(int index) const { return defs_[size_t(index)]; }
    size_t count() const { return defs_.size(); }

private:
    std::vector<VariableDef> defs_;
    struct Prefix {
        std::string prefix;
        VariableGetter get;
        unsigned flags;
    };
    std::vector<Prefix> prefixes_;
    std::vector<std::unique_ptr<std::string>> suffixes_;
    struct PendingRef {
        int index;
        std::string file;
        int line;
    };
    std::vector<PendingRef> pending_;
};

// Evaluates variable `index` for the request (cached per request unless kVarNoCache).
std::string_view variable_value(Request&, int index, bool* found = nullptr);

// Sets a per-request value (indexed variables, `set`).
void set_variable(Request&, int index, std::string_view value);

// Stores the captures of the last regex match so "$1".."$9" and named groups resolve.
void set_regex_captures(Request&, const Regex&, std::string_view subject, const size_t* ovector, size_t pairs);

// A string with variables: "text $var ${var}text $1".
class ComplexValue {
public:
    // Errors (unknown variable, "$" at end, unclosed "${") are reported through cx.
    bool compile(ConfContext& cx, std::string_view text);
    bool is_constant() const { return parts_.size() <= 1 && (parts_.empty() || parts_[0].variable < 0); }
    std::string_view constant() const { return parts_.empty() ? std::string_view() : std::string_view(parts_[0].text); }
    const std::string& source() const { return source_; }
    // The value lives in the request's arena (or configuration memory when constant).
    // A value that is one variable and nothing else ("$binary_remote_addr",
    // a common key) is that variable's value as it is: no call, no copy.
    std::string_view eval(Request& r) const {
        return single_variable_ >= 0 ? variable_value(r, single_variable_) : eval_parts(r);
    }

private:
    std::string_view eval_parts(Request&) const;

    struct Part {
        std::string text;   // literal, when variable < 0
        int variable = -1;  // index in Variables; capture numbers are variables "1".."9"
    };
    std::vector<Part> parts_;
    int single_variable_ = -1;  // the only part, when it is a variable
    std::string source_;
};

}  // namespace sluice::http
