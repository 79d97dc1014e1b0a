// The static module: `root`, `alias` and `index`, and the content handler
// that serves files (nginx's static and index modules). Shared between the
// request path (static_module.cc) and the directives (directives.cc).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "core/module.h"
#include "http/http_phases.h"
#include "http/http_variables.h"

namespace sluice {
extern Module static_module;
}

namespace sluice::http {

class Request;

// Where a location's files are. `root` appends the URI to the path; `alias`
// replaces the part of the URI its location matched. Shared by the nested
// locations that inherit it, as nginx inherits root and alias together.
struct DocumentRoot {
    ComplexValue value;
    bool alias = false;
    // An alias in a regex location is the whole path (captures fill it in).
    bool alias_whole = false;
    // The name of the location that declared the alias: the URI prefix it replaces.
    std::string alias_location;
    // The absolute path when `value` has no variables (prefix applied,
    // root's trailing slash removed).
    std::string constant;
    // For values with variables that evaluate to a relative path.
    std::string prefix;
};

struct StaticLocConf : ModuleConf {
    std::shared_ptr<const DocumentRoot> root;
    std::shared_ptr<std::vector<ComplexValue>> index;  // in the order to try
};

// $document_root, $realpath_root, $request_filename; false if one is taken.
bool add_static_variables(Variables& variables);

// The content-phase handler.
Next static_handler(Request& r);

// The document root of the request's location, evaluated (arena or config memory).
std::string_view document_root(Request& r, const StaticLocConf& conf);

// Maps a normalized URI to a NUL-terminated filesystem path in the request's
// arena. Returns 0, or the status to answer with: 400 when the URI cannot be
// decoded safely, 404 when an alias would lead outside its directory.
int map_uri_to_path(Request& r, const StaticLocConf& conf, std::string_view uri, std::string_view& path);

}  // namespace sluice::http
