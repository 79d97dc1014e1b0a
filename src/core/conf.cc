#include "core/conf.h"

#include <cstdio>
#include <unordered_map>

#include "core/cycle.h"

namespace sluice {

namespace {

struct DirectiveEntry {
    const Module* module;
    const Directive* directive;
};

// name -> every module's directive of that name (two modules may declare the
// same name for different contexts, as nginx's `server` in http and upstream).
const std::unordered_multimap<std::string_view, DirectiveEntry>& directive_index() {
    static const auto index = [] {
        std::unordered_multimap<std::string_view, DirectiveEntry> map;
        number_modules();
        for (int i = 0; compiled_modules[i]; ++i)
            for (const Directive& d : compiled_modules[i]->directives)
                map.emplace(d.name, DirectiveEntry{compiled_modules[i], &d});
        return map;
    }();
    return index;
}

std::string vformat(const char* fmt, va_list ap) {
    char buf[2048];
    vsnprintf(buf, sizeof buf, fmt, ap);
    return buf;
}

bool arg_count_ok(const ArgCount& a, size_t n) {
    return n >= a.min && (a.max == ArgCount::kAny || n <= a.max);
}

}  // namespace

const Directive* find_directive(std::string_view name, const Module** module) {
    auto [it, end] = directive_index().equal_range(name);
    if (it == end) return nullptr;
    if (module) *module = it->second.module;
    return it->second.directive;
}

bool ConfContext::error(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vformat(fmt, ap);
    va_end(ap);
    if (error_.empty())
        error_ = stmt_ ? msg + " in " + std::string(stmt_->file) + ":" + std::to_string(stmt_->line) : msg;
    return false;
}

bool ConfContext::error_at(const conf::Statement& st, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vformat(fmt, ap);
    va_end(ap);
    if (error_.empty()) error_ = msg + " in " + std::string(st.file) + ":" + std::to_string(st.line);
    return false;
}

bool ConfContext::error_in(const std::string& file, int line, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vformat(fmt, ap);
    va_end(ap);
    if (error_.empty()) error_ = msg + " in " + file + ":" + std::to_string(line);
    return false;
}

void ConfContext::warn(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string msg = vformat(fmt, ap);
    va_end(ap);
    if (stmt_) msg += " in " + std::string(stmt_->file) + ":" + std::to_string(stmt_->line);
    log_error(LogLevel::Warn, "%s", msg.c_str());
}

bool ConfContext::invalid_value(size_t i) {
    return error("invalid value \"%s\" in \"%s\" directive", arg(i).c_str(), name().c_str());
}

std::string ConfContext::full_path(std::string_view path) const {
    if (!path.empty() && path[0] == '/') return std::string(path);
    return cycle_.prefix + std::string(path);
}

bool ConfContext::parse_block(const std::vector<conf::Statement>& body, unsigned ctx) {
    const conf::Statement* saved_stmt = stmt_;
    unsigned saved_ctx = context_;
    bool ok = true;
    for (const conf::Statement& st : body) {
        if (!apply(st, ctx)) {
            ok = false;
            break;
        }
    }
    stmt_ = saved_stmt;
    context_ = saved_ctx;
    return ok;
}

void* ConfContext::conf_for(const Module& m, const Directive& d) {
    if (m.type == ModuleType::Core) return cycle_.main_conf(m);
    if (!http) return nullptr;
    size_t i = size_t(m.ctx_index);
    switch (d.level) {
    case ConfLevel::Main: return http->main[i];
    case ConfLevel::Server: return http->srv.empty() ? nullptr : http->srv[i];
    case ConfLevel::Location: return http->loc.empty() ? nullptr : http->loc[i];
    }
    return nullptr;
}

bool ConfContext::apply(const conf::Statement& st, unsigned ctx) {
    stmt_ = &st;
    context_ = ctx;
    auto [it, end] = directive_index().equal_range(st.name());
    if (it == end) return error("unknown directive \"%s\"", st.name().c_str());

    const DirectiveEntry* match = nullptr;
    for (; it != end; ++it) {
        if (it->second.directive->contexts & ctx) {
            match = &it->second;
            break;
        }
    }
    if (!match) return error("\"%s\" directive is not allowed here", st.name().c_str());

    const Directive& d = *match->directive;
    if (d.args.block && !st.block) return error("directive \"%s\" has no opening \"{\"", st.name().c_str());
    if (!d.args.block && st.block) return error("directive \"%s\" is not terminated by \";\"", st.name().c_str());
    if (!arg_count_ok(d.args, st.args.size() - 1))
        return error("invalid number of arguments in \"%s\" directive", st.name().c_str());

    void* conf = conf_for(*match->module, d);
    if (!d.set(*this, conf)) {
        if (error_.empty()) error("invalid value in \"%s\" directive", st.name().c_str());
        return false;
    }
    stmt_ = &st;
    context_ = ctx;
    return true;
}

bool lookup_enum(ConfContext& cx, const void* table, size_t arg, int& out) {
    const auto* e = static_cast<const EnumEntry*>(table);
    std::string allowed;
    for (; !e->name.empty(); ++e) {
        if (cx.arg(arg) == e->name) {
            out = e->value;
            return true;
        }
        allowed += allowed.empty() ? "" : ", ";
        allowed += "\"" + std::string(e->name) + "\"";
    }
    return cx.error("invalid value \"%s\" in \"%s\" directive, it must be one of %s", cx.arg(arg).c_str(),
                    cx.name().c_str(), allowed.c_str());
}

}  // namespace sluice
