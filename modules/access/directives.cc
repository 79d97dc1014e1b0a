// allow / deny ADDRESS[/PREFIX] | all | unix: — in http, server and location,
// evaluated in configuration order.
#include "access.h"
#include "core/conf.h"
#include "http/http_core.h"

namespace sluice::access {

namespace {

bool set_rule(ConfContext& cx, void* conf) {
    auto& c = *static_cast<AccessLocConf*>(conf);
    AccessRule rule;
    rule.deny = cx.name() == "deny";
    switch (parse_cidr(cx.arg(0), rule.cidr)) {
        case CidrParse::Invalid:
            return cx.error("invalid parameter \"%s\"", cx.arg(0).c_str());
        case CidrParse::HostBitsSet:
            cx.warn("low address bits of %s are meaningless", cx.arg(0).c_str());
            break;
        case CidrParse::Ok:
            break;
    }
    c.own.push_back(rule);
    return true;
}

const Directive kDirectives[] = {
    {"allow", kHttpAnyContext, Args(1), ConfLevel::Location, set_rule},
    {"deny", kHttpAnyContext, Args(1), ConfLevel::Location, set_rule},
};

std::unique_ptr<ModuleConf> create_loc_conf() {
    return std::make_unique<AccessLocConf>();
}

bool merge_loc_conf(ConfContext&, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const AccessLocConf&>(parent);
    auto& c = static_cast<AccessLocConf&>(child);
    c.effective = !c.own.empty() ? &c.own : !p.own.empty() ? &p.own : p.effective;
    return true;
}

bool postconfiguration(ConfContext&, http::HttpPhases& phases) {
    phases.add(http::Phase::Access, check_access);
    return true;
}

}  // namespace

}  // namespace sluice::access

namespace sluice {

Module access_module = {
    .name = "access",
    .type = ModuleType::Http,
    .directives = access::kDirectives,
    .create_loc_conf = access::create_loc_conf,
    .merge_loc_conf = access::merge_loc_conf,
    .postconfiguration = access::postconfiguration,
};

}  // namespace sluice
