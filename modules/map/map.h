// The map module's private interface: the compiled `map` block, shared by
// directives.cc (which builds it) and map_module.cc (which evaluates it), and
// used by the unit tests.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/conf.h"
#include "core/regex.h"
#include "http/http_variables.h"

namespace sluice {
extern Module map_module;
}

namespace sluice::http::map {

// Keys are matched ignoring case, as nginx does; hashing and comparing
// without case lets the request path look a value up without lowercasing a
// copy of it.
struct CaselessHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
};
struct CaselessEqual {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const;
};
using KeyTable = std::unordered_map<std::string, int, CaselessHash, CaselessEqual>;

struct RegexKey {
    std::unique_ptr<Regex> regex;
    int value = -1;
};

// The entries of one map block. Keys refer to values by index.
struct MapTable {
    std::vector<ComplexValue> values;
    KeyTable exact;
    KeyTable wildcard_head;  // "*.example.com" stored as "example.com"
    KeyTable wildcard_tail;  // "www.example.*" stored as "www.example"
    std::vector<RegexKey> regexes;  // in configuration order
    int default_value = -1;
    bool hostnames = false;
    bool no_cache = false;          // `volatile`
    size_t ovector_size = 2;        // enough for the regex with the most groups
};

// What a lookup found. `value` is an index into MapTable::values, -1 when
// nothing matched; `regex` is set when a regex matched (the ovector passed to
// find_value then holds its groups).
struct MapMatch {
    int value = -1;
    const Regex* regex = nullptr;
};

// nginx's order: exact key, longest "*.suffix", longest "prefix.*", the first
// regex that matches. Matching is on match_key(value).
MapMatch find_value(const MapTable&, std::string_view value, size_t* ovector, size_t ovector_size);

// What is matched: the value, without a trailing dot in a hostnames map.
std::string_view match_key(const MapTable&, std::string_view value);

// Adds an exact key, or with `hostnames` a mask ("*.a.com", ".a.com",
// "www.a.*"); the result is for the caller's error message.
enum class AddKey { Ok, Conflict, InvalidWildcard };
AddKey add_key(MapTable&, std::string_view key, int value);

struct Map {
    ComplexValue source;
    MapTable table;
    std::string variable;
};

struct MapMainConf : ModuleConf {
    std::vector<std::unique_ptr<Map>> maps;
    // Accepted so nginx configurations load; the tables here grow as needed.
    std::optional<int64_t> hash_max_size;
    std::optional<uint64_t> hash_bucket_size;
};

// Reads the entries of a map block (the children of cx.statement()).
bool parse_entries(ConfContext& cx, Map& map);

// The getter of every map variable; `data` is the Map.
bool map_variable(Request& r, std::string_view& value, uintptr_t data);

}  // namespace sluice::http::map
