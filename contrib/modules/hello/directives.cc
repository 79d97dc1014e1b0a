// The hello module's configuration: its directive table, its location
// configuration with create and merge, and the hook that installs its phase
// handler, header filter and variable.
#include "hello.h"

#include "core/conf.h"
#include "http/http_core.h"

namespace sluice::hello {

namespace {

// hello_require_header NAME VALUE: two arguments, so it needs a setter of its
// own; a directive with one value uses a generic one (see kDirectives).
bool set_require_header(ConfContext& cx, void* conf) {
    auto& c = *static_cast<HelloLocConf*>(conf);
    if (c.require_header) return cx.duplicate();
    if (cx.arg(0).empty()) return cx.invalid_value(0);
    c.require_header = cx.arg(0);
    c.require_value = cx.arg(1);
    return true;
}

const Directive kDirectives[] = {
    {"hello_require_header", kLocationContext, Args(2), ConfLevel::Location, set_require_header},
    // A one-value directive needs no setter of its own: set_flag<&HelloLocConf::field>,
    // set_string, set_msec... (core/conf.h) do the parsing and the duplicate check.
};

std::unique_ptr<ModuleConf> create_loc_conf() { return std::make_unique<HelloLocConf>(); }

// Child, else parent, else default: "" means the check is off.
bool merge_loc_conf(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const HelloLocConf&>(parent);
    auto& c = static_cast<HelloLocConf&>(child);
    merge_value(c.require_header, p.require_header, "");
    merge_value(c.require_value, p.require_value, "");
    return true;
}

// Runs once the http{} block is read and merged. Directives that used
// $hello_greeting before this point hold a pending reference that this
// definition fills in; a name nothing defines is reported after all modules
// have run this hook.
bool postconfiguration(ConfContext& cx, http::HttpPhases& phases) {
    phases.add(http::Phase::Access, check_header);
    phases.add_header_filter(add_hello_header);
    auto& vars = http::current_main_conf(cx).variables;
    if (vars.add("hello_greeting", greeting_variable, 0) < 0)
        return cx.error("the duplicate \"hello_greeting\" variable");
    return true;
}

}  // namespace

}  // namespace sluice::hello

namespace sluice {

Module hello_module = {
    .name = "hello",
    .type = ModuleType::Http,
    .directives = hello::kDirectives,
    .create_loc_conf = hello::create_loc_conf,
    .merge_loc_conf = hello::merge_loc_conf,
    .postconfiguration = hello::postconfiguration,
};

}  // namespace sluice
