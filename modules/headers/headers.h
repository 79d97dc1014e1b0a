// add_header: response headers set by the configuration.
#pragma once
#include <string>
#include <vector>

#include "core/module.h"
#include "http/http_variables.h"

namespace sluice {
extern Module headers_module;
}

namespace sluice::http {

struct AddHeader {
    std::string name;
    ComplexValue value;
    bool always = false;
};

struct HeadersConf : ModuleConf {
    // nginx semantics: a level inherits add_header from its parent only if
    // it has none of its own.
    std::vector<AddHeader> own;
    const std::vector<AddHeader>* effective = nullptr;
    bool set = false;
};

bool headers_filter(Request& r);

}  // namespace sluice::http
