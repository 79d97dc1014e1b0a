// API-key authentication: what the module's directives (directives.cc) and its
// request path (auth_api_key_module.cc) share.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "api_key_file.h"
#include "core/module.h"
#include "http/http_phases.h"
#include "http/http_variables.h"

namespace sluice {
extern Module auth_api_key_module;
}

namespace sluice::auth_api_key {

constexpr std::string_view kDefaultHeader = "X-API-Key";

// Where a request's key is taken from: a header or any variable. The header
// stays in the request, as nginx leaves Authorization to auth_basic: an
// internal redirect (index, error_page) runs the access checks again and
// needs it. `proxy_set_header X-API-Key "";` keeps it from the upstream.
struct KeySource {
    std::string header;        // empty in token mode
    http::ComplexValue token;  // token=$variable
    std::string challenge;     // the WWW-Authenticate value of a 401
};

struct ApiKeyLocConf : ModuleConf {
    // auth_api_key: switch and source are inherited together from the
    // nearest level that has the directive.
    std::optional<bool> enabled;
    std::shared_ptr<const KeySource> source;
    std::string conf_file;  // where auth_api_key is, for the no-key-file error
    int conf_line = 0;

    // auth_api_key_file (repeatable): a level with its own files does not
    // inherit its parent's, as nginx does with list directives.
    std::shared_ptr<ApiKeyTable> own_table;
    std::shared_ptr<const ApiKeyTable> table;
};

http::Next check_api_key(http::Request& r);
bool consumer_variable(http::Request& r, std::string_view& value, uintptr_t data);

}  // namespace sluice::auth_api_key
