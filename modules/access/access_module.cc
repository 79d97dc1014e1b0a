// allow / deny on the request path: the first rule that matches the client
// decides (http_phases.h: Access phase handlers).
#include "access.h"
#include "core/log.h"
#include "http/http_connection.h"
#include "http/http_request.h"

namespace sluice::access {

http::Next check_access(http::Request& r) {
    const auto* rules = r.loc_conf<AccessLocConf>(access_module).effective;
    if (!rules) return http::Next::Continue;
    const AccessRule* rule = first_matching_rule(*rules, r.connection().peer());
    if (!rule) return http::Next::Continue;
    if (!rule->deny) return http::Next::NextPhase;
    // With satisfy any the engine logs it, once no other handler granted.
    if (*r.core_conf().satisfy == http::CoreLocConf::Satisfy::All)
        SLUICE_LOG(LogLevel::Error, "*%llu access forbidden by rule, client: %s",
                   static_cast<unsigned long long>(r.connection_number()), std::string(r.remote_addr()).c_str());
    r.set_status(403);
    return http::Next::Finish;
}

}  // namespace sluice::access
