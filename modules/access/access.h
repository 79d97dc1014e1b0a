// allow / deny: what the module's directives (directives.cc) and its Access
// phase handler (access_module.cc) share.
#pragma once
#include <vector>

#include "access_rules.h"
#include "core/module.h"
#include "http/http_phases.h"

namespace sluice {
extern Module access_module;
}

namespace sluice::access {

struct AccessLocConf : ModuleConf {
    // nginx semantics: a level with rules of its own does not inherit its
    // parent's; one without uses the nearest ancestor's list.
    std::vector<AccessRule> own;
    const std::vector<AccessRule>* effective = nullptr;
};

http::Next check_access(http::Request& r);

}  // namespace sluice::access
