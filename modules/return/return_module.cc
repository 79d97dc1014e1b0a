#include "http/http_connection.h"
#include "http/http_request.h"
#include "return.h"

namespace sluice::http {

bool return_is_redirect(int status);

namespace {

Next answer(Request& r, const ReturnConf& c) {
    if (c.status == 444) {
        // nginx's "close the connection without a response".
        r.set_keep_alive(false);
        r.connection().force_close();
        return Next::Suspend;
    }
    if (!c.has_text) {
        r.set_status(c.status);
        return Next::Finish;
    }
    std::string_view text = c.text.eval(r);
    if (return_is_redirect(c.status)) {
        r.headers_out().location = text;
        r.set_status(c.status);
        return Next::Finish;  // the default page with Location, as nginx
    }
    r.send_response(c.status, r.core_conf().default_type.value_or("text/plain"), text);
    return Next::Finish;
}

}  // namespace

Next return_server_rewrite(Request& r) {
    if (r.internal()) return Next::NextPhase;  // nginx skips server rewrites after an internal redirect
    const auto& c = *static_cast<ReturnConf*>(r.server().root_location->confs[size_t(return_module.ctx_index)]);
    return c.status ? answer(r, c) : Next::Continue;
}

Next return_rewrite(Request& r) {
    if (&r.location() == r.server().root_location) return Next::Continue;
    const auto& c = r.loc_conf<ReturnConf>(return_module);
    return c.status ? answer(r, c) : Next::Continue;
}

}  // namespace sluice::http
