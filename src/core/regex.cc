#include "core/regex.h"

#include <cstring>

namespace sluice {

std::unique_ptr<Regex> Regex::compile(std::string_view pattern, bool caseless, std::string& err) {
    int code;
    PCRE2_SIZE offset;
    uint32_t options = caseless ? PCRE2_CASELESS : 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &code,
                                   &offset, nullptr);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        err = "pcre2_compile() failed: " + std::string(reinterpret_cast<char*>(msg)) + " in \"" +
              std::string(pattern) + "\" at \"" + std::string(pattern.substr(std::min(size_t(offset), pattern.size()))) +
              "\"";
        return nullptr;
    }
    std::unique_ptr<Regex> r(new Regex());
    r->code_ = re;
    r->pattern_ = pattern;
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
    uint32_t n = 0;
    pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &n);
    r->captures_ = int(n);
    uint32_t name_count = 0, entry_size = 0;
    PCRE2_SPTR table = nullptr;
    pcre2_pattern_info(re, PCRE2_INFO_NAMECOUNT, &name_count);
    pcre2_pattern_info(re, PCRE2_INFO_NAMEENTRYSIZE, &entry_size);
    pcre2_pattern_info(re, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < name_count; ++i) {
        PCRE2_SPTR e = table + i * entry_size;
        int group = (e[0] << 8) | e[1];
        r->names_.emplace_back(reinterpret_cast<const char*>(e + 2), group);
    }
    r->match_data_ = pcre2_match_data_create_from_pattern(re, nullptr);
    return r;
}

Regex::~Regex() {
    if (match_data_) pcre2_match_data_free(match_data_);
    if (code_) pcre2_code_free(code_);
}

bool Regex::match(std::string_view subject, size_t* ovector, size_t ovector_size) const {
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, match_data_,
                         nullptr);
    if (rc < 0) return false;
    if (ovector && ovector_size) {
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_data_);
        size_t pairs = pcre2_get_ovector_count(match_data_);
        for (size_t i = 0; i < ovector_size; ++i) {
            size_t pair = i / 2;
            ovector[i] = (pair < pairs && pair < size_t(rc)) ? ov[i] : size_t(-1);
        }
    }
    return true;
}

}  // namespace sluice
