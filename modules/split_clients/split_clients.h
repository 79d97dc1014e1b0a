// The split_clients module's private interface, shared by directives.cc,
// split_clients_module.cc and the unit tests.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/conf.h"
#include "http/http_variables.h"

namespace sluice {
extern Module split_clients_module;
}

namespace sluice::http::split_clients {

// nginx's ngx_murmur_hash2(): 32-bit MurmurHash2 with seed 0. Bucket
// assignments must be the ones nginx computes, so that a client keeps its
// bucket when traffic moves between nginx and sluice.
uint32_t murmur_hash2(std::string_view data);

// "0.5%" -> 50: hundredths of a percent, at most two decimals, as nginx's
// ngx_atofp(..., 2). Zero, a missing '%' and anything else: nullopt.
std::optional<uint32_t> parse_percent(std::string_view text);

struct Part {
    // While reading: hundredths of a percent (0 for "*"). After
    // finish_parts(): the exclusive upper bound of the bucket's hash range
    // (0 still means "the rest").
    uint32_t bound = 0;
    std::string value;
};

// Turns percentages into cumulative hash bounds exactly as nginx does;
// false when they add up to more than 100%.
bool finish_parts(std::vector<Part>& parts);

// The bucket of a hash: the first part whose bound is above it, or "*".
// Null when the percentages leave the hash uncovered (the value is then "").
const Part* choose_part(const std::vector<Part>& parts, uint32_t hash);

struct SplitClients {
    ComplexValue key;
    std::vector<Part> parts;
    std::string variable;
};

struct SplitMainConf : ModuleConf {
    std::vector<std::unique_ptr<SplitClients>> splits;
};

// Reads the entries of a split_clients block (the children of cx.statement()).
bool parse_parts(ConfContext& cx, std::vector<Part>& parts);

// The getter of every split_clients variable; `data` is the SplitClients.
bool split_variable(Request& r, std::string_view& value, uintptr_t data);

}  // namespace sluice::http::split_clients
