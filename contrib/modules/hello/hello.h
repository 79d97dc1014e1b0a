// What the hello module's two halves share: the location configuration that
// directives.cc fills in and hello_module.cc reads per request.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/module.h"
#include "http/http_phases.h"

namespace sluice {
extern Module hello_module;
}

namespace sluice::hello {

// std::optional: "not set at this level", so merge can inherit from the parent.
struct HelloLocConf : ModuleConf {
    std::optional<std::string> require_header;  // header name; "" after merge: not configured
    std::optional<std::string> require_value;
};

// The request path (hello_module.cc), installed by directives.cc.
http::Next check_header(http::Request& r);
bool add_hello_header(http::Request& r);
bool greeting_variable(http::Request& r, std::string_view& value, uintptr_t data);

}  // namespace sluice::hello
