#include "core/conf.h"
#include "http/http_core.h"
#include "headers.h"

namespace sluice::http {

namespace {

bool valid_header_name(std::string_view n) {
    if (n.empty()) return false;
    for (char c : n) {
        bool tchar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
        if (!tchar) return false;
    }
    return true;
}

bool set_add_header(ConfContext& cx, void* conf) {
    auto& c = *static_cast<HeadersConf*>(conf);
    c.set = true;
    AddHeader h;
    h.name = cx.arg(0);
    if (!valid_header_name(h.name)) return cx.error("invalid header name \"%s\"", h.name.c_str());
    if (cx.arg(1).find_first_of("\r\n") != std::string::npos)
        return cx.error("invalid header value in \"add_header\" directive");
    if (!h.value.compile(cx, cx.arg(1))) return false;
    if (cx.arg_count() == 3) {
        if (cx.arg(2) != "always") return cx.invalid_value(2);
        h.always = true;
    }
    c.own.push_back(std::move(h));
    return true;
}

std::unique_ptr<ModuleConf> create_loc() { return std::make_unique<HeadersConf>(); }

bool merge_loc(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const HeadersConf&>(parent);
    auto& c = static_cast<HeadersConf&>(child);
    c.effective = c.set ? &c.own : (p.set ? &p.own : p.effective);
    return true;
}

bool postconfiguration(ConfContext&, HttpPhases& phases) {
    phases.add_header_filter(headers_filter);
    return true;
}

const Directive kDirectives[] = {
    {"add_header", kHttpAnyContext, Args(2, 3), ConfLevel::Location, set_add_header},
};

}  // namespace
}  // namespace sluice::http

namespace sluice {

Module headers_module = {
    .name = "headers",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_loc_conf = http::create_loc,
    .merge_loc_conf = http::merge_loc,
    .postconfiguration = http::postconfiguration,
};

}  // namespace sluice
