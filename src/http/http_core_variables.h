#pragma once
#include "http/http_variables.h"

namespace sluice::http {
// Defines the core variables ($uri, $args, $http_*, $remote_addr, ...).
void add_core_variables(Variables&);
}
