// The split_clients module's configuration:
//   split_clients "${remote_addr}AAA" $variant { 0.5% .one; 2.0% .two; * ""; }
#include "http/http_core.h"
#include "split_clients.h"

namespace sluice::http::split_clients {

namespace {

constexpr uint32_t kHundredPercent = 10000;  // in hundredths of a percent

bool parse_part(ConfContext& cx, const conf::Statement& entry, std::vector<Part>& parts) {
    if (entry.block) return cx.error_at(entry, "unexpected \"{\" in \"split_clients\" block");
    if (entry.args.size() != 2) return cx.error_at(entry, "invalid number of the split_clients parameters");
    const std::string& percent = entry.args[0].text;
    Part part;
    part.value = entry.args[1].text;
    if (percent != "*") {
        auto p = parse_percent(percent);
        if (!p) return cx.error_at(entry, "invalid percent value \"%s\"", percent.c_str());
        part.bound = *p;
    }
    parts.push_back(std::move(part));
    return true;
}

bool set_split_clients_block(ConfContext& cx, void* conf) {
    auto& mc = *static_cast<SplitMainConf*>(conf);
    const std::string& var = cx.arg(1);
    if (var.size() < 2 || var[0] != '$') return cx.error("invalid variable name \"%s\"", var.c_str());

    auto split = std::make_unique<SplitClients>();
    split->variable = var.substr(1);
    if (!split->key.compile(cx, cx.arg(0))) return false;
    if (!parse_parts(cx, split->parts)) return false;
    if (!finish_parts(split->parts)) return cx.error("percent total is greater than 100%%");

    auto data = reinterpret_cast<uintptr_t>(split.get());
    if (current_main_conf(cx).variables.add(split->variable, split_variable, data, kVarChangeable) < 0)
        return cx.error("the duplicate \"%s\" variable", split->variable.c_str());
    mc.splits.push_back(std::move(split));
    return true;
}

std::unique_ptr<ModuleConf> create_main_conf() { return std::make_unique<SplitMainConf>(); }

const Directive kDirectives[] = {
    {"split_clients", kHttpContext, Block(2, 2), ConfLevel::Main, set_split_clients_block},
};

}  // namespace

std::optional<uint32_t> parse_percent(std::string_view text) {
    if (text.size() < 2 || text.back() != '%') return std::nullopt;
    text.remove_suffix(1);
    uint64_t value = 0;
    int decimals = -1;  // digits seen after the dot; -1 before it
    for (char c : text) {
        if (c == '.') {
            if (decimals >= 0) return std::nullopt;
            decimals = 0;
            continue;
        }
        if (c < '0' || c > '9' || decimals == 2) return std::nullopt;
        value = value * 10 + uint64_t(c - '0');
        if (decimals >= 0) ++decimals;
        // Anything this large fails the 100% check anyway; stop before overflow.
        if (value > 100 * uint64_t(kHundredPercent)) return uint32_t(kHundredPercent + 1);
    }
    for (int d = decimals < 0 ? 0 : decimals; d < 2; ++d) value *= 10;
    if (value == 0) return std::nullopt;
    return uint32_t(value);
}

bool finish_parts(std::vector<Part>& parts) {
    // nginx's arithmetic, to the bit: the bound of each bucket is the running
    // sum of percent * 0xffffffff / 10000 in 32 bits.
    uint32_t sum = 0, last = 0;
    for (Part& part : parts) {
        sum = part.bound ? sum + part.bound : kHundredPercent;
        if (sum > kHundredPercent) return false;
        if (part.bound) {
            last += uint32_t(part.bound * uint64_t(0xffffffff) / kHundredPercent);
            part.bound = last;
        }
    }
    return true;
}

bool parse_parts(ConfContext& cx, std::vector<Part>& parts) {
    for (const conf::Statement& entry : cx.statement().children)
        if (!parse_part(cx, entry, parts)) return false;
    return true;
}

}  // namespace sluice::http::split_clients

namespace sluice {

Module split_clients_module = {
    .name = "split_clients",
    .type = ModuleType::Http,
    .directives = http::split_clients::kDirectives,
    .create_main_conf = http::split_clients::create_main_conf,
};

}  // namespace sluice
