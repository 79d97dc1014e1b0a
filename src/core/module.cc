#include "core/module.h"

namespace sluice {

namespace {
int g_http_modules = -1;
}

void number_modules() {
    if (g_http_modules >= 0) return;
    int core = 0, http = 0;
    for (int i = 0; compiled_modules[i]; ++i) {
        Module& m = *compiled_modules[i];
        m.index = i;
        m.ctx_index = m.type == ModuleType::Http ? http++ : core++;
    }
    g_http_modules = http;
}

int http_module_count() {
    number_modules();
    return g_http_modules;
}

}  // namespace sluice
