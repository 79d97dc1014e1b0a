// The gzip module's configuration (nginx's names, defaults and contexts):
//
//   gzip on|off;                                  off
//   gzip_types MIME-TYPE ...;                     text/html (always), or *
//   gzip_min_length LENGTH;                       20
//   gzip_comp_level 1..9;                         1
//   gzip_buffers NUMBER SIZE;                     32 4k
//   gzip_vary on|off;                             off
//   gzip_proxied off|expired|no-cache|no-store|private|no_last_modified|no_etag|auth|any ...;   off
//   gzip_disable REGEX|msie6 ...;                 none
//   gzip_http_version 1.0|1.1;                    1.1
//
// and the variable $gzip_ratio.
#include <algorithm>

#include "core/conf.h"
#include "core/str.h"
#include "gzip.h"
#include "http/http_core.h"
#include "http/http_phases.h"

namespace sluice::http {

namespace {

constexpr uint64_t kMaxBuffersNum = 1024;
constexpr uint64_t kMinBufferSize = 64;
constexpr uint64_t kMaxBufferSize = 16 * 1024 * 1024;

GzipMainConf& main_conf(ConfContext& cx) {
    return *static_cast<GzipMainConf*>(cx.http->main[size_t(gzip_module.ctx_index)]);
}

bool set_gzip(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (!set_flag<&GzipLocConf::enable_set>(cx, conf)) return false;
    if (*c.enable_set) main_conf(cx).used = true;
    return true;
}

bool set_types(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (c.types) return cx.duplicate();
    std::vector<std::string> types;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        std::string t = cx.arg(i);
        std::transform(t.begin(), t.end(), t.begin(), [](char ch) { return ascii_lower(ch); });
        if (t != "*" && t.find('/') == std::string::npos) return cx.invalid_value(i);
        types.push_back(std::move(t));
    }
    c.types = std::move(types);
    return true;
}

bool set_comp_level(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (c.comp_level) return cx.duplicate();
    auto v = conf::parse_number(cx.arg(0));
    if (!v || *v < 1 || *v > 9)
        return cx.error("invalid value \"%s\" in \"gzip_comp_level\" directive, it must be between 1 and 9",
                        cx.arg(0).c_str());
    c.comp_level = *v;
    return true;
}

bool set_buffers(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (c.buffers_num) return cx.duplicate();
    auto num = conf::parse_number(cx.arg(0));
    if (!num || *num < 1 || uint64_t(*num) > kMaxBuffersNum)
        return cx.error("invalid number of buffers \"%s\" in \"gzip_buffers\" directive (1..%llu)", cx.arg(0).c_str(),
                        static_cast<unsigned long long>(kMaxBuffersNum));
    auto size = conf::parse_size(cx.arg(1));
    if (!size || *size < kMinBufferSize || *size > kMaxBufferSize)
        return cx.error("invalid buffer size \"%s\" in \"gzip_buffers\" directive (64..16m)", cx.arg(1).c_str());
    c.buffers_num = uint64_t(*num);
    c.buffers_size = *size;
    return true;
}

constexpr EnumEntry kProxiedFlags[] = {
    {"off", kProxiedOff},
    {"expired", kProxiedExpired},
    {"no-cache", kProxiedNoCache},
    {"no-store", kProxiedNoStore},
    {"private", kProxiedPrivate},
    {"no_last_modified", kProxiedNoLastModified},
    {"no_etag", kProxiedNoEtag},
    {"auth", kProxiedAuth},
    {"any", kProxiedAny},
    {{}, 0},
};

bool set_proxied(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (c.proxied) return cx.duplicate();
    unsigned flags = 0;
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        int v;
        if (!lookup_enum(cx, kProxiedFlags, i, v)) return false;
        flags |= unsigned(v);
    }
    if ((flags & kProxiedOff) && flags != kProxiedOff)
        return cx.error("\"off\" cannot be combined with other values in \"gzip_proxied\" directive");
    c.proxied = flags;
    return true;
}

bool set_disable(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (!c.disable) c.disable = std::make_shared<GzipDisable>();
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        if (cx.arg(i) == "msie6") {
            c.disable->msie6 = true;
            continue;
        }
        std::string err;
        auto re = Regex::compile(cx.arg(i), true, err);
        if (!re) return cx.error("%s", err.c_str());
        c.disable->user_agents.push_back(std::move(re));
    }
    return true;
}

bool set_http_version(ConfContext& cx, void* conf) {
    auto& c = *static_cast<GzipLocConf*>(conf);
    if (c.http_version) return cx.duplicate();
    if (cx.arg(0) == "1.0") c.http_version = 10;
    else if (cx.arg(0) == "1.1") c.http_version = 11;
    else return cx.invalid_value(0);
    return true;
}

std::unique_ptr<ModuleConf> create_main() { return std::make_unique<GzipMainConf>(); }
std::unique_ptr<ModuleConf> create_loc() { return std::make_unique<GzipLocConf>(); }

bool merge_loc(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const GzipLocConf&>(parent);
    auto& c = static_cast<GzipLocConf&>(child);
    merge_value(c.enable_set, p.enable_set, false);
    c.enable = *c.enable_set;
    if (!c.types) c.types = p.types ? *p.types : std::vector<std::string>();
    c.any_type = std::find(c.types->begin(), c.types->end(), "*") != c.types->end();
    merge_value(c.min_length, p.min_length, 20);
    merge_value(c.comp_level, p.comp_level, 1);
    if (!c.buffers_num) {
        c.buffers_num = p.buffers_num ? *p.buffers_num : 32;
        c.buffers_size = p.buffers_size ? *p.buffers_size : 4096;
    }
    merge_value(c.vary, p.vary, false);
    merge_value(c.proxied, p.proxied, unsigned(kProxiedOff));
    if (!c.disable) c.disable = p.disable;
    merge_value(c.http_version, p.http_version, 11);
    return true;
}

bool postconfiguration(ConfContext& cx, HttpPhases& phases) {
    if (current_main_conf(cx).variables.add("gzip_ratio", gzip_ratio_variable, 0, kVarNoCache) < 0)
        return cx.error("the duplicate \"gzip_ratio\" variable");
    if (!main_conf(cx).used) return true;
    phases.add_header_filter(gzip_header_filter);
    phases.add_body_filter(gzip_body_filter);
    return true;
}

const Directive kDirectives[] = {
    {"gzip", kHttpAnyContext, Args(1), ConfLevel::Location, set_gzip},
    {"gzip_types", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_types},
    {"gzip_min_length", kHttpAnyContext, Args(1), ConfLevel::Location, set_size<&GzipLocConf::min_length>},
    {"gzip_comp_level", kHttpAnyContext, Args(1), ConfLevel::Location, set_comp_level},
    {"gzip_buffers", kHttpAnyContext, Args(2), ConfLevel::Location, set_buffers},
    {"gzip_vary", kHttpAnyContext, Args(1), ConfLevel::Location, set_flag<&GzipLocConf::vary>},
    {"gzip_proxied", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_proxied},
    {"gzip_disable", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_disable},
    {"gzip_http_version", kHttpAnyContext, Args(1), ConfLevel::Location, set_http_version},
};

}  // namespace
}  // namespace sluice::http

namespace sluice {

Module gzip_module = {
    .name = "gzip",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_main_conf = http::create_main,
    .create_loc_conf = http::create_loc,
    .merge_loc_conf = http::merge_loc,
    .postconfiguration = http::postconfiguration,
};

}  // namespace sluice
