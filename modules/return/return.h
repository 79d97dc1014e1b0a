// The `return` directive: stop processing and answer with a status, a body
// text or a redirect (nginx's rewrite-module `return`).
#pragma once
#include <optional>

#include "core/module.h"
#include "http/http_variables.h"

namespace sluice {
extern Module return_module;
}

namespace sluice::http {

struct ReturnConf : ModuleConf {
    int status = 0;  // 0: no return at this level
    bool has_text = false;
    ComplexValue text;  // body, or the Location of a redirect
    bool server_level = false;
};

Next return_server_rewrite(Request& r);
Next return_rewrite(Request& r);

}  // namespace sluice::http
