// PCRE2 regular expressions, compiled at configuration time (JIT where
// available) and matched on the request path without allocation.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class Regex {
public:
    // Compiles `pattern`; on failure returns null and fills `err` like nginx:
    // pcre2_compile() failed: missing closing parenthesis in "(a"
    static std::unique_ptr<Regex> compile(std::string_view pattern, bool caseless, std::string& err);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Number of capture groups (not counting the whole match).
    int capture_count() const { return captures_; }
    const std::vector<std::pair<std::string, int>>& named_groups() const { return names_; }
    const std::string& pattern() const { return pattern_; }

    // (group, variable index) of each named group, filled once by the http
    // layer so a match stores captures without looking names up.
    mutable std::vector<std::pair<int, int>> capture_variables;
    mutable bool capture_variables_bound = false;

    // Matches `subject`. On success `ovector` (2 * (capture_count()+1)
    // entries, offsets into subject; unset groups are -1) is filled when non-null.
    bool match(std::string_view subject, size_t* ovector, size_t ovector_size) const;
    bool match(std::string_view subject) const { return match(subject, nullptr, 0); }

private:
    Regex() = default;
    pcre2_code* code_ = nullptr;
    pcre2_match_data* match_data_ = nullptr;  // per process; workers are single-threaded
    int captures_ = 0;
    std::vector<std::pair<std::string, int>> names_;
    std::string pattern_;
};

}  // namespace sluice
