#include "core/conf.h"
#include "http/http_core.h"
#include "return.h"

namespace sluice::http {

namespace {

bool is_redirect(int status) { return status == 301 || status == 302 || status == 303 || status == 307 || status == 308; }

bool set_return(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ReturnConf*>(conf);
    if (c.status) return cx.duplicate();
    const std::string& first = cx.arg(0);
    auto code = conf::parse_number(first);
    if (!code) {
        // "return URL": a 302 to a URL with a scheme or a variable.
        if (cx.arg_count() != 1 ||
            !(first.rfind("http://", 0) == 0 || first.rfind("https://", 0) == 0 || first.rfind("$scheme", 0) == 0))
            return cx.error("invalid return code \"%s\"", first.c_str());
        c.status = 302;
        c.has_text = true;
        return c.text.compile(cx, first);
    }
    if (*code < 100 || *code > 999) return cx.error("invalid return code \"%s\"", first.c_str());
    c.status = int(*code);
    c.server_level = cx.context() == kServerContext;
    if (cx.arg_count() == 2) {
        c.has_text = true;
        return c.text.compile(cx, cx.arg(1));
    }
    return true;
}

std::unique_ptr<ModuleConf> create_loc() { return std::make_unique<ReturnConf>(); }

bool postconfiguration(ConfContext&, HttpPhases& phases) {
    phases.add(Phase::ServerRewrite, return_server_rewrite);
    phases.add(Phase::Rewrite, return_rewrite);
    return true;
}

const Directive kDirectives[] = {
    {"return", kServerContext | kLocationContext, Args(1, 2), ConfLevel::Location, set_return},
};

}  // namespace

bool return_is_redirect(int status) { return is_redirect(status); }

}  // namespace sluice::http

namespace sluice {

// No merge: like nginx's rewrite directives, a `return` belongs to its own
// level (server-level ones run in the server-rewrite phase).
Module return_module = {
    .name = "return",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_loc_conf = http::create_loc,
    .postconfiguration = http::postconfiguration,
};

}  // namespace sluice
