// What the auth_jwt module's configuration (directives.cc) and request path
// (auth_jwt_module.cc) share.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/module.h"
#include "http/http_phases.h"
#include "http/http_variables.h"
#include "jwt_cache.h"
#include "jwt_keys.h"
#include "jwt_token.h"
#include "key_url.h"

namespace sluice {
extern Module auth_jwt_module;
}

namespace sluice::auth_jwt {

constexpr size_t kDefaultCacheEntries = 1024;
constexpr int64_t kDefaultCacheTtlSec = 300;

// `auth_jwt REALM [token=$var]` or `auth_jwt off`, inherited as one setting.
struct AuthSetting {
    bool enabled = false;
    std::string realm;
    std::shared_ptr<http::ComplexValue> token;  // null: the Authorization header
};

struct RequireRule {
    std::vector<std::shared_ptr<http::ComplexValue>> values;
    int status = 401;
};

struct AuthJwtLocConf : ModuleConf {
    std::optional<AuthSetting> auth;
    // auth_jwt_key_file: the keys of this level, and the slot that serves
    // them (or the parent's slot after merge, when this level has none).
    KeySet own_keys;
    std::shared_ptr<KeySlot> keys;
    // auth_jwt_key_url: the source this level declared, and the one that
    // feeds `keys` (this level's, or the parent's with its slot).
    KeyUrlSource* own_key_url = nullptr;
    KeyUrlSource* key_url = nullptr;
    std::optional<std::string> key_url_trusted_certificate;
    std::optional<uint32_t> algs;
    std::optional<uint64_t> leeway_sec;
    std::optional<bool> require_exp;
    std::optional<uint64_t> max_size;
    // Lists: a level inherits its parent's only when it has none of its own.
    std::optional<std::vector<ClaimEquals>> claim_equals;
    std::optional<std::vector<RequireRule>> require;
    // Built at merge: the WWW-Authenticate values.
    std::string challenge;          // Bearer realm="..."
    std::string challenge_invalid;  // Bearer realm="...", error="invalid_token"
};

// A variable defined by auth_jwt_claim_set or auth_jwt_header_set.
struct PathVariable {
    bool header = false;
    std::vector<std::string> path;
};

struct AuthJwtMainConf : ModuleConf {
    std::optional<uint64_t> cache_entries;  // 0: off
    std::optional<uint64_t> cache_ttl_sec;
    std::vector<std::unique_ptr<PathVariable>> path_variables;
    // One per distinct auth_jwt_key_url URL.
    std::vector<std::unique_ptr<KeyUrlSource>> key_urls;
    // Where each was declared: the trusted certificate in effect there
    // is resolved after the merge.
    std::vector<std::pair<KeyUrlSource*, const AuthJwtLocConf*>> key_url_levels;
};

// The request path (auth_jwt_module.cc).
http::Next access_handler(http::Request& r);
bool claim_variable(http::Request& r, std::string_view& value, uintptr_t data);
bool header_variable(http::Request& r, std::string_view& value, uintptr_t data);
bool payload_variable(http::Request& r, std::string_view& value, uintptr_t data);
bool path_variable(http::Request& r, std::string_view& value, uintptr_t data);

// The worker's hooks: start and stop the key URL fetchers.
bool init_worker(Cycle& cycle);
void exit_worker(Cycle& cycle);

}  // namespace sluice::auth_jwt
