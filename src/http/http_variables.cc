#include "http/http_variables.h"

#include <cstring>

#include "core/conf.h"
#include "core/regex.h"
#include "http/http_request.h"

namespace sluice::http {

int Variables::add(std::string_view name, VariableGetter get, uintptr_t data, unsigned flags) {
    for (auto& d : defs_) {
        if (d.name != name) continue;
        if (!(d.flags & (kVarChangeable | kVarPending))) return -1;
        d.get = get;
        d.data = data;
        d.flags = flags;
        return d.index;
    }
    VariableDef d;
    d.name = name;
    d.get = get;
    d.data = data;
    d.flags = flags;
    d.index = int(defs_.size());
    defs_.push_back(std::move(d));
    return defs_.back().index;
}

void Variables::add_prefix(std::string_view prefix, VariableGetter get, unsigned flags) {
    prefixes_.push_back({std::string(prefix), get, flags});
    // A module defines its prefix in postconfiguration, after directives
    // (proxy_set_header X-User $jwt_claim_sub) referenced such names.
    for (auto& d : defs_) {
        if (!(d.flags & kVarPending) || d.name.size() <= prefix.size() || !d.name.starts_with(prefix)) continue;
        suffixes_.push_back(std::make_unique<std::string>(d.name.substr(prefix.size())));
        d.get = get;
        d.data = reinterpret_cast<uintptr_t>(suffixes_.back().get());
        d.flags = flags;
    }
}

int Variables::add_indexed(std::string_view name) {
    for (auto& d : defs_) {
        if (d.name != name) continue;
        if (d.flags & kVarPending) {
            d.flags = kVarIndexed | kVarChangeable;
            d.get = nullptr;
        }
        return d.index;
    }
    return add(name, nullptr, 0, kVarIndexed | kVarChangeable);
}

int Variables::lookup(std::string_view name) {
    for (auto& d : defs_)
        if (d.name == name) return d.index;
    for (auto& p : prefixes_) {
        if (name.size() > p.prefix.size() && name.substr(0, p.prefix.size()) == p.prefix) {
            suffixes_.push_back(std::make_unique<std::string>(name.substr(p.prefix.size())));
            return add(name, p.get, reinterpret_cast<uintptr_t>(suffixes_.back().get()), p.flags);
        }
    }
    // Regex captures by number: $1..$9 (and more).
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string_view::npos) {
        size_t n = 0;
        for (char c : name) n = n * 10 + size_t(c - '0');
        if (n > 99) return -1;
        return add(name, [](Request& r, std::string_view& v, uintptr_t n) {
            const auto& c = r.captures;
            if (n >= c.pairs || c.ovector[2 * n] == size_t(-1)) return false;
            v = c.subject.substr(c.ovector[2 * n], c.ovector[2 * n + 1] - c.ovector[2 * n]);
            return true;
        }, n, kVarNoCache);
    }
    return -1;
}

namespace {
CoreMainConf& main_of(Request& r) { return r.main_conf<CoreMainConf>(http_core_module); }
}  // namespace

std::string_view variable_value(Request& r, int index, bool* found) {
    size_t i = size_t(index);
    if (r.var_state[i] != 0) {
        if (found) *found = r.var_state[i] == 1;
        return r.var_cache[i];
    }
    const VariableDef& d = main_of(r).variables.def(index);
    std::string_view v;
    bool ok = false;
    if (d.flags & kVarIndexed) {
        ok = false;  // an indexed variable not set in this request
    } else {
        ok = d.get(r, v, d.data);
        if (!ok) v = {};
        if (!(d.flags & kVarNoCache)) {
            r.var_cache[i] = v;
            r.var_state[i] = ok ? 1 : 2;
        }
    }
    if (found) *found = ok;
    return v;
}

void set_variable(Request& r, int index, std::string_view value) {
    r.var_cache[size_t(index)] = value;
    r.var_state[size_t(index)] = 1;
}

void set_regex_captures(Request& r, const Regex& re, std::string_view subject, const size_t* ovector, size_t pairs) {
    size_t* ov = static_cast<size_t*>(r.arena()->allocate(2 * pairs * sizeof(size_t), alignof(size_t)));
    memcpy(ov, ovector, 2 * pairs * sizeof(size_t));
    r.captures.subject = r.copy(subject);
    r.captures.ovector = ov;
    r.captures.pairs = pairs;
    // Named groups are variables of their own that keep their value after
    // later matches, as in nginx.
    if (!re.capture_variables_bound) {
        // Once per regex and worker; the names were defined at load time.
        auto& vars = main_of(r).variables;
        for (auto& [name, group] : re.named_groups()) {
            int idx = vars.lookup(name);
            if (idx >= 0 && (vars.def(idx).flags & kVarIndexed)) re.capture_variables.emplace_back(group, idx);
        }
        re.capture_variables_bound = true;
    }
    for (auto [group, idx] : re.capture_variables) {
        if (size_t(group) >= pairs || ov[2 * group] == size_t(-1)) continue;
        set_variable(r, idx, r.captures.subject.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]));
    }
}

int Variables::reference(std::string_view name, const std::string& file, int line) {
    int idx = lookup(name);
    if (idx >= 0) return idx;
    idx = add(name, nullptr, 0, kVarPending);
    pending_.push_back({idx, file, line});
    return idx;
}

bool Variables::undefined(std::string& name, std::string& file, int& line) const {
    for (const PendingRef& p : pending_) {
        if (!(defs_[size_t(p.index)].flags & kVarPending)) continue;
        name = defs_[size_t(p.index)].name;
        file = p.file;
        line = p.line;
        return true;
    }
    return false;
}

// ---- complex values ----

namespace {

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

bool ComplexValue::compile(ConfContext& cx, std::string_view text) {
    source_ = text;
    parts_.clear();
    single_variable_ = -1;
    auto& vars = current_main_conf(cx).variables;
    std::string literal;
    size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '$') {
            literal += text[i++];
            continue;
        }
        ++i;
        std::string_view name;
        if (i < text.size() && text[i] == '{') {
            size_t close = text.find('}', i);
            if (close == std::string_view::npos)
                return cx.error("the closing bracket in \"%.*s\" variable is missing", int(text.size() - i - 1),
                                text.data() + i + 1);
            name = text.substr(i + 1, close - i - 1);
            i = close + 1;
        } else if (i < text.size() && text[i] >= '1' && text[i] <= '9') {
            name = text.substr(i, 1);  // "$1abc" is capture 1 followed by "abc", as nginx
            ++i;
        } else {
            size_t start = i;
            while (i < text.size() && is_name_char(text[i])) ++i;
            name = text.substr(start, i - start);
        }
        if (name.empty()) return cx.error("invalid variable name in \"%.*s\"", int(text.size()), text.data());
        int idx = vars.reference(name, std::string(cx.statement().file), cx.statement().line);
        if (idx < 0) return cx.error("unknown \"%.*s\" variable", int(name.size()), name.data());
        if (!literal.empty()) parts_.push_back({std::move(literal), -1});
        literal.clear();
        parts_.push_back({{}, idx});
    }
    if (!literal.empty() || parts_.empty()) parts_.push_back({std::move(literal), -1});
    if (parts_.size() == 1) single_variable_ = parts_[0].variable;
    return true;
}

std::string_view ComplexValue::eval_parts(Request& r) const {
    if (parts_.size() == 1) return parts_[0].text;  // a constant (a single variable never gets here)
    std::string_view values[16];
    size_t total = 0, n = parts_.size();
    std::string_view* vals = n <= 16 ? values
                                     : static_cast<std::string_view*>(r.arena()->allocate(
                                           n * sizeof(std::string_view), alignof(std::string_view)));
    for (size_t i = 0; i < n; ++i) {
        vals[i] = parts_[i].variable < 0 ? std::string_view(parts_[i].text) : r.var(parts_[i].variable);
        total += vals[i].size();
    }
    char* out = static_cast<char*>(r.arena()->allocate(total ? total : 1, 1));
    size_t pos = 0;
    for (size_t i = 0; i < n; ++i) {
        if (vals[i].empty()) continue;  // an empty view may have a null data()
        memcpy(out + pos, vals[i].data(), vals[i].size());
        pos += vals[i].size();
    }
    return {out, total};
}

}  // namespace sluice::http
