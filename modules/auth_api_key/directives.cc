// auth_api_key off | on [header=NAME | token=$variable];
// auth_api_key_file PATH;  (repeatable; read while the configuration loads)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "auth_api_key.h"
#include "core/conf.h"
#include "http/http_core.h"

namespace sluice::auth_api_key {

namespace {

// Larger than any sane key list; keeps a wrong path (a log, a device) from
// eating the master's memory.
constexpr off_t kMaxKeyFileSize = 64 << 20;

bool valid_header_name(std::string_view n) {
    if (n.empty()) return false;
    for (char c : n) {
        bool tchar = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
        if (!tchar) return false;
    }
    return true;
}

// The optional second argument: header=NAME or token=$variable.
bool parse_key_source(ConfContext& cx, KeySource& src) {
    src.header = kDefaultHeader;
    if (cx.arg_count() == 2) {
        std::string_view param = cx.arg(1);
        if (param.starts_with("header=")) {
            src.header = param.substr(7);
            if (!valid_header_name(src.header)) return cx.error("invalid header name \"%s\"", src.header.c_str());
        } else if (param.starts_with("token=$")) {
            src.header.clear();
            if (!src.token.compile(cx, param.substr(6))) return false;
        } else {
            return cx.error("invalid parameter \"%s\", it must be \"header=NAME\" or \"token=$variable\"",
                            cx.arg(1).c_str());
        }
    }
    // RFC 9110 challenge syntax; tells a client which header carries the key.
    src.challenge = src.header.empty() ? "APIKey" : "APIKey header=\"" + src.header + "\"";
    return true;
}

bool set_auth_api_key(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ApiKeyLocConf*>(conf);
    if (c.enabled) return cx.duplicate();
    if (cx.arg(0) == "off") {
        if (cx.arg_count() > 1) return cx.error("\"auth_api_key off\" takes no parameters");
        c.enabled = false;
        return true;
    }
    if (cx.arg(0) != "on")
        return cx.error("invalid value \"%s\" in \"auth_api_key\" directive, it must be \"on\" or \"off\"",
                        cx.arg(0).c_str());
    auto src = std::make_shared<KeySource>();
    if (!parse_key_source(cx, *src)) return false;
    c.enabled = true;
    c.source = std::move(src);
    c.conf_file = cx.statement().file;
    c.conf_line = cx.statement().line;
    return true;
}

bool read_whole_file(const std::string& path, std::string& text, std::string& error) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        error = "open() \"" + path + "\" failed (" + std::to_string(errno) + ": " + strerror(errno) + ")";
        return false;
    }
    struct stat st;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= kMaxKeyFileSize;
    if (!ok) error = "\"" + path + "\" is not a regular file of at most 64 MiB";
    text.resize(ok ? size_t(st.st_size) : 0);
    size_t got = 0;
    while (ok && got < text.size()) {
        ssize_t n = read(fd, text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = "read() \"" + path + "\" failed";
            ok = false;
        }
        got += size_t(n > 0 ? n : 0);
    }
    close(fd);
    return ok;
}

bool set_auth_api_key_file(ConfContext& cx, void* conf) {
    auto& c = *static_cast<ApiKeyLocConf*>(conf);
    std::string path = cx.full_path(cx.arg(0));
    std::string text, error;
    if (!read_whole_file(path, text, error)) return cx.error("%s", error.c_str());
    if (!c.own_table) c.own_table = std::make_shared<ApiKeyTable>();
    if (!c.own_table->add_file_text(text, error))
        return cx.error("invalid API key file \"%s\", %s", path.c_str(), error.c_str());
    return true;
}

const Directive kDirectives[] = {
    {"auth_api_key", kHttpAnyContext, Args(1, 2), ConfLevel::Location, set_auth_api_key},
    {"auth_api_key_file", kHttpAnyContext, Args(1), ConfLevel::Location, set_auth_api_key_file},
};

std::unique_ptr<ModuleConf> create_loc_conf() {
    return std::make_unique<ApiKeyLocConf>();
}

bool merge_loc_conf(ConfContext& cx, const ModuleConf& parent, ModuleConf& child) {
    auto& p = static_cast<const ApiKeyLocConf&>(parent);
    auto& c = static_cast<ApiKeyLocConf&>(child);
    if (!c.enabled) {
        c.enabled = p.enabled.value_or(false);
        c.source = p.source;
        c.conf_file = p.conf_file;
        c.conf_line = p.conf_line;
    }
    c.table = c.own_table ? c.own_table : p.own_table ? p.own_table : p.table;
    // Fail at load time rather than answer every request with 401.
    if (*c.enabled && !c.table)
        return cx.error_in(c.conf_file, c.conf_line, "\"auth_api_key\" is on but no \"auth_api_key_file\" applies");
    return true;
}

bool postconfiguration(ConfContext& cx, http::HttpPhases& phases) {
    phases.add(http::Phase::Access, check_api_key);
    auto& vars = http::current_main_conf(cx).variables;
    if (vars.add("api_key_consumer", consumer_variable, 0) < 0)
        return cx.error("the duplicate \"api_key_consumer\" variable");
    return true;
}

}  // namespace

}  // namespace sluice::auth_api_key

namespace sluice {

Module auth_api_key_module = {
    .name = "auth_api_key",
    .type = ModuleType::Http,
    .directives = auth_api_key::kDirectives,
    .create_loc_conf = auth_api_key::create_loc_conf,
    .merge_loc_conf = auth_api_key::merge_loc_conf,
    .postconfiguration = auth_api_key::postconfiguration,
};

}  // namespace sluice
