// API keys on the request path: the key is hashed, the digest looked up, and
// the consumer it belongs to named in $api_key_consumer. Nothing here
// allocates outside the request's arena.
#include "auth_api_key.h"
#include "core/log.h"
#include "core/str.h"
#include "http/http_request.h"

namespace sluice::auth_api_key {

namespace {

const ApiKeyLocConf& conf_of(http::Request& r) {
    return r.loc_conf<ApiKeyLocConf>(auth_api_key_module);
}

// The key the client presented, or why there is none usable. Two headers
// are refused: which one a later hop would read is anybody's guess.
const char* presented_key(http::Request& r, const KeySource& src, std::string_view& key) {
    if (src.header.empty()) {
        key = src.token.eval(r);
        return key.empty() ? "no API key" : nullptr;
    }
    size_t count = 0;
    for (const http::Header& h : r.head().headers) {
        if (!iequals(h.name, src.header)) continue;
        key = h.value;
        ++count;
    }
    if (count > 1) return "several API key headers";
    return key.empty() ? "no API key" : nullptr;
}

http::Next deny(http::Request& r, const KeySource& src, const char* why) {
    // info: the client caused it (and never log the key itself).
    SLUICE_LOG(LogLevel::Info, "*%llu API key authentication failed: %s, client: %s",
               static_cast<unsigned long long>(r.connection_number()), why, std::string(r.remote_addr()).c_str());
    r.headers_out().add("WWW-Authenticate", src.challenge);
    r.set_status(401);
    return http::Next::Finish;
}

}  // namespace

// Access phase (http_phases.h): granted, denied with 401, or declined where
// auth_api_key is off.
http::Next check_api_key(http::Request& r) {
    const ApiKeyLocConf& c = conf_of(r);
    if (!*c.enabled) return http::Next::Continue;
    std::string_view key;
    if (const char* why = presented_key(r, *c.source, key)) return deny(r, *c.source, why);
    Digest digest;
    if (!sha256(key, digest)) {
        SLUICE_LOG(LogLevel::Alert, "*%llu SHA-256 of an API key failed",
                   static_cast<unsigned long long>(r.connection_number()));
        r.set_status(500);
        return http::Next::Finish;
    }
    const std::string* consumer = c.table->find(digest);
    if (!consumer) return deny(r, *c.source, "unknown API key");
    r.set_module_ctx(auth_api_key_module, const_cast<std::string*>(consumer));
    return http::Next::NextPhase;
}

// $api_key_consumer: the consumer whose key authenticated this request; not
// found (empty, "-" in logs) otherwise.
bool consumer_variable(http::Request& r, std::string_view& value, uintptr_t) {
    const auto* consumer = static_cast<const std::string*>(r.module_ctx(auth_api_key_module));
    if (!consumer) return false;
    value = *consumer;
    return true;
}

}  // namespace sluice::auth_api_key
