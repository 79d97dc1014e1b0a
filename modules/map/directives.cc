// The map module's configuration: `map SOURCE $variable { ... }` builds a
// table of keys and values and defines the variable; map_hash_* are accepted
// for nginx compatibility.
#include <algorithm>

#include "core/str.h"
#include "http/http_core.h"
#include "map.h"

namespace sluice::http::map {

namespace {

bool is_valid_wildcard(std::string_view key) {
    if (std::count(key.begin(), key.end(), '*') > 1) return false;
    if (key.find("..") != std::string_view::npos) return false;
    return key.find('*') == std::string_view::npos || (key.size() > 2 && key.substr(0, 2) == "*.") ||
           (key.size() > 2 && key.substr(key.size() - 2) == ".*");
}

bool insert_unique(KeyTable& table, std::string_view key, int value) {
    return table.emplace(to_lower(key), value).second;
}

AddKey add_hostname(MapTable& t, std::string_view key, int value) {
    if (!is_valid_wildcard(key)) return AddKey::InvalidWildcard;
    if (key.size() > 2 && key.substr(0, 2) == "*.")
        return insert_unique(t.wildcard_head, key.substr(2), value) ? AddKey::Ok : AddKey::Conflict;
    if (key.size() > 2 && key.substr(key.size() - 2) == ".*")
        return insert_unique(t.wildcard_tail, key.substr(0, key.size() - 2), value) ? AddKey::Ok : AddKey::Conflict;
    if (key.size() > 1 && key[0] == '.') {
        // ".example.com" is both "example.com" and "*.example.com".
        key.remove_prefix(1);
        if (t.exact.contains(key) || t.wildcard_head.contains(key)) return AddKey::Conflict;
        insert_unique(t.exact, key, value);
        insert_unique(t.wildcard_head, key, value);
        return AddKey::Ok;
    }
    if (!key.empty() && key.back() == '.') key.remove_suffix(1);  // names are matched without it
    return insert_unique(t.exact, key, value) ? AddKey::Ok : AddKey::Conflict;
}

int add_value(ConfContext& cx, MapTable& t, std::string_view text) {
    ComplexValue v;
    if (!v.compile(cx, text)) return -1;
    t.values.push_back(std::move(v));
    return int(t.values.size() - 1);
}

// The regex is compiled before its value, so the value can use its named groups.
bool add_regex(ConfContext& cx, const conf::Statement& entry, MapTable& t) {
    std::string_view key = std::string_view(entry.args[0].text).substr(1);
    bool caseless = !key.empty() && key[0] == '*';
    if (caseless) key.remove_prefix(1);
    std::string err;
    auto re = Regex::compile(key, caseless, err);
    if (!re) return cx.error_at(entry, "%s", err.c_str());
    // Named groups are variables of their own, usable anywhere in the configuration.
    auto& vars = current_main_conf(cx).variables;
    for (auto& [name, group] : re->named_groups())
        if (vars.add_indexed(name) < 0) return cx.error_at(entry, "the duplicate \"%s\" variable", name.c_str());
    int value = add_value(cx, t, entry.args[1].text);
    if (value < 0) return false;
    t.ovector_size = std::max(t.ovector_size, 2 * (size_t(re->capture_count()) + 1));
    t.regexes.push_back({std::move(re), value});
    return true;
}

bool parse_entry(ConfContext& cx, const conf::Statement& entry, MapTable& t) {
    const auto& args = entry.args;
    if (entry.block) return cx.error_at(entry, "unexpected \"{\" in \"map\" block");
    if (args.size() == 1 && args[0].text == "hostnames") {
        t.hostnames = true;
        return true;
    }
    if (args.size() == 1 && args[0].text == "volatile") {
        t.no_cache = true;
        return true;
    }
    if (args.size() != 2) return cx.error_at(entry, "invalid number of the map parameters");

    std::string_view key = args[0].text;
    if (!key.empty() && key[0] == '~') return add_regex(cx, entry, t);
    if (key == "default" && t.default_value >= 0) return cx.error_at(entry, "duplicate default map parameter");
    int value = add_value(cx, t, args[1].text);
    if (value < 0) return false;
    if (key == "default") {
        t.default_value = value;
        return true;
    }
    if (!key.empty() && key[0] == '\\') key.remove_prefix(1);  // "\default", "\~not-a-regex"

    AddKey added = add_key(t, key, value);
    if (added == AddKey::InvalidWildcard)
        return cx.error_at(entry, "invalid hostname or wildcard \"%.*s\"", int(key.size()), key.data());
    if (added == AddKey::Conflict)
        return cx.error_at(entry, "conflicting parameter \"%.*s\"", int(key.size()), key.data());
    return true;
}

bool set_map_block(ConfContext& cx, void* conf) {
    auto& mc = *static_cast<MapMainConf*>(conf);
    const std::string& var = cx.arg(1);
    if (var.size() < 2 || var[0] != '$') return cx.error("invalid variable name \"%s\"", var.c_str());

    auto map = std::make_unique<Map>();
    map->variable = var.substr(1);
    if (!map->source.compile(cx, cx.arg(0))) return false;
    if (!parse_entries(cx, *map)) return false;

    unsigned flags = kVarChangeable | (map->table.no_cache ? kVarNoCache : 0u);
    auto data = reinterpret_cast<uintptr_t>(map.get());
    if (current_main_conf(cx).variables.add(map->variable, map_variable, data, flags) < 0)
        return cx.error("the duplicate \"%s\" variable", map->variable.c_str());
    mc.maps.push_back(std::move(map));
    return true;
}

std::unique_ptr<ModuleConf> create_main_conf() { return std::make_unique<MapMainConf>(); }

const Directive kDirectives[] = {
    {"map", kHttpContext, Block(2, 2), ConfLevel::Main, set_map_block},
    {"map_hash_max_size", kHttpContext, Args(1), ConfLevel::Main, set_number<&MapMainConf::hash_max_size>},
    {"map_hash_bucket_size", kHttpContext, Args(1), ConfLevel::Main, set_size<&MapMainConf::hash_bucket_size>},
};

}  // namespace

AddKey add_key(MapTable& t, std::string_view key, int value) {
    if (t.hostnames) return add_hostname(t, key, value);
    return insert_unique(t.exact, key, value) ? AddKey::Ok : AddKey::Conflict;
}

bool parse_entries(ConfContext& cx, Map& map) {
    for (const conf::Statement& entry : cx.statement().children)
        if (!parse_entry(cx, entry, map.table)) return false;
    return true;
}

}  // namespace sluice::http::map

namespace sluice {

Module map_module = {
    .name = "map",
    .type = ModuleType::Http,
    .directives = http::map::kDirectives,
    .create_main_conf = http::map::create_main_conf,
};

}  // namespace sluice
