// The directive registry and the interpreter that applies a parsed
// configuration tree (core/conf_file.h) to the modules' configuration objects.
#pragma once
#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf_file.h"
#include "core/conf_values.h"
#include "core/module.h"

namespace sluice {

// Contexts a directive may appear in.
enum ConfContextMask : unsigned {
    kMainContext = 1u << 0,
    kEventsContext = 1u << 1,
    kHttpContext = 1u << 2,
    kServerContext = 1u << 3,
    kLocationContext = 1u << 4,
    kUpstreamContext = 1u << 5,
    // Modules with block directives of their own take bits from here up.
    kFirstModuleContext = 1u << 8,
};
constexpr unsigned kHttpAnyContext = kHttpContext | kServerContext | kLocationContext;

// Which of a module's configuration objects a directive writes to.
enum class ConfLevel : unsigned char { Main, Server, Location };

struct ArgCount {
    unsigned char min = 0, max = 0;  // arguments after the directive name
    bool block = false;              // followed by { ... }
    static constexpr unsigned char kAny = 255;
};
constexpr ArgCount Args(unsigned char n) { return {n, n, false}; }
constexpr ArgCount Args(unsigned char min, unsigned char max) { return {min, max, false}; }
constexpr ArgCount AnyArgs(unsigned char min = 1) { return {min, ArgCount::kAny, false}; }
constexpr ArgCount Block(unsigned char min = 0, unsigned char max = 0) { return {min, max, true}; }

using DirectiveSetter = bool (*)(ConfContext&, void* conf);

struct Directive {
    std::string_view name;
    unsigned contexts;
    ArgCount args;
    ConfLevel level;
    DirectiveSetter set;
    const void* data = nullptr;  // e.g. the table of an enum setter
};

// The configuration objects of one http level (http, server or location):
// one entry per http module, indexed by Module::ctx_index.
struct HttpConfs {
    std::vector<ModuleConf*> main;  // shared by every level of one http{}
    std::vector<ModuleConf*> srv;
    std::vector<ModuleConf*> loc;
};

class ConfContext {
public:
    ConfContext(Cycle& cycle, const conf::Tree& tree) : cycle_(cycle), tree_(tree) {}

    Cycle& cycle() { return cycle_; }
    const conf::Tree& tree() const { return tree_; }
    const conf::Statement& statement() const { return *stmt_; }
    unsigned context() const { return context_; }

    // Arguments after the directive name: arg(0) is the first one.
    size_t arg_count() const { return stmt_->args.size() - 1; }
    const std::string& arg(size_t i) const { return stmt_->args[i + 1].text; }
    bool arg_quoted(size_t i) const { return stmt_->args[i + 1].quoted; }
    const std::string& name() const { return stmt_->args[0].text; }

    // Records "MESSAGE in FILE:LINE" for the current statement; returns false
    // so a setter can `return cx.error(...)`.
    bool error(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    bool error_at(const conf::Statement&, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
    bool error_in(const std::string& file, int line, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
    // A warning is logged with file:line and does not fail the load.
    void warn(const char* fmt, ...) __attribute__((format(printf, 2, 3)));
    bool invalid_value(size_t arg_index);  // invalid value "x" in "name" directive
    bool duplicate() { return error("\"%s\" directive is duplicate", name().c_str()); }
    const std::string& error_message() const { return error_; }
    bool failed() const { return !error_.empty(); }

    // Applies each statement in `body` in context `ctx`.
    bool parse_block(const std::vector<conf::Statement>& body, unsigned ctx);

    // The http configuration objects currently in scope (null outside http).
    HttpConfs* http = nullptr;

    // Resolves a relative path against the prefix, as nginx does.
    std::string full_path(std::string_view path) const;

private:
    bool apply(const conf::Statement&, unsigned ctx);
    void* conf_for(const Module&, const Directive&);

    Cycle& cycle_;
    const conf::Tree& tree_;
    const conf::Statement* stmt_ = nullptr;
    unsigned context_ = kMainContext;
    std::string error_;
};

// Finds the directive among all compiled-in modules (null if unknown).
const Directive* find_directive(std::string_view name, const Module** module);

// ---- generic setters: a pointer-to-member to a std::optional field -----------

template <class M> struct MemberTraits;
template <class C, class T> struct MemberTraits<T C::*> {
    using Class = C;
    using Type = T;
};

template <auto Field> auto& conf_field(void* conf) {
    using C = typename MemberTraits<decltype(Field)>::Class;
    return static_cast<C*>(conf)->*Field;
}

template <auto Field> bool set_flag(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    auto v = conf::parse_flag(cx.arg(0));
    if (!v) return cx.error("invalid value \"%s\" in \"%s\" directive, it must be \"on\" or \"off\"",
                            cx.arg(0).c_str(), cx.name().c_str());
    f = *v;
    return true;
}

template <auto Field> bool set_size(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    auto v = conf::parse_size(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    f = *v;
    return true;
}

template <auto Field> bool set_msec(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    auto v = conf::parse_time_ms(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    f = *v;
    return true;
}

template <auto Field> bool set_sec(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    auto v = conf::parse_time_sec(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    f = *v;
    return true;
}

template <auto Field> bool set_number(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    auto v = conf::parse_number(cx.arg(0));
    if (!v) return cx.invalid_value(0);
    f = *v;
    return true;
}

template <auto Field> bool set_string(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    f = cx.arg(0);
    return true;
}

struct EnumEntry {
    std::string_view name;
    int value;
};

// `data` of the directive points to a null-name-terminated EnumEntry table.
bool lookup_enum(ConfContext& cx, const void* table, size_t arg, int& out);

template <auto Field, const EnumEntry* Table> bool set_enum(ConfContext& cx, void* conf) {
    auto& f = conf_field<Field>(conf);
    if (f) return cx.duplicate();
    int v;
    if (!lookup_enum(cx, Table, 0, v)) return false;
    using T = typename std::remove_reference_t<decltype(f)>::value_type;
    f = static_cast<T>(v);
    return true;
}

// merge = child, else parent, else default.
template <class T, class D> void merge_value(std::optional<T>& child, const std::optional<T>& parent, D def) {
    if (!child) child = parent ? *parent : T(def);
}
template <class T> void merge_value(std::optional<T>& child, const std::optional<T>& parent) {
    if (!child && parent) child = parent;
}

}  // namespace sluice
