// `match NAME { ... }` blocks: reading their conditions and testing a
// probe's reply against them, with nginx Plus's semantics (every condition
// must hold).
#include "core/str.h"
#include "health_check.h"

namespace sluice::http::health_check {

namespace {

constexpr int kMinStatus = 100;
constexpr int kMaxStatus = 599;

// ---- reading ----

const std::string& arg_of(const conf::Statement& st, size_t i) { return st.args[i + 1].text; }
size_t arg_count_of(const conf::Statement& st) { return st.args.size() - 1; }

std::optional<int> parse_status(std::string_view text) {
    auto v = conf::parse_number(text);
    if (!v || *v < kMinStatus || *v > kMaxStatus) return std::nullopt;
    return int(*v);
}

// "200" or "200-399".
bool parse_status_range(std::string_view text, StatusRange& out) {
    size_t dash = text.find('-');
    auto low = parse_status(text.substr(0, dash));
    auto high = dash == std::string_view::npos ? low : parse_status(text.substr(dash + 1));
    if (!low || !high || *low > *high) return false;
    out = {*low, *high};
    return true;
}

bool parse_status_line(ConfContext& cx, const conf::Statement& st, Match& m) {
    StatusCondition c;
    size_t i = 0;
    if (arg_count_of(st) > 0 && arg_of(st, 0) == "!") {
        c.negate = true;
        i = 1;
    }
    if (i == arg_count_of(st)) return cx.error_at(st, "invalid number of arguments in \"status\" directive");
    for (; i < arg_count_of(st); ++i) {
        StatusRange r;
        if (!parse_status_range(arg_of(st, i), r))
            return cx.error_at(st, "invalid status \"%s\" in \"status\" directive", arg_of(st, i).c_str());
        c.ranges.push_back(r);
    }
    m.status.push_back(std::move(c));
    return true;
}

bool valid_header_name(std::string_view name) {
    if (name.empty()) return false;
    for (char c : name)
        if (!chars::kToken(c)) return false;
    return true;
}

// "~" / "!~" / "~*" / "!~*": compiles `pattern` into `out`.
bool compile_regex(ConfContext& cx, const conf::Statement& st, std::string_view op, const std::string& pattern,
                   std::unique_ptr<Regex>& out) {
    std::string err;
    out = Regex::compile(pattern, op.ends_with('*'), err);
    if (!out) return cx.error_at(st, "%s", err.c_str());
    return true;
}

bool regex_op(std::string_view op) { return op == "~" || op == "~*" || op == "!~" || op == "!~*"; }

bool parse_header_comparison(ConfContext& cx, const conf::Statement& st, HeaderCondition& c) {
    const std::string& op = arg_of(st, 1);
    c.value = arg_of(st, 2);
    if (op == "=") {
        c.op = HeaderCondition::Op::Equal;
    } else if (op == "!=") {
        c.op = HeaderCondition::Op::NotEqual;
    } else if (regex_op(op)) {
        c.op = op[0] == '!' ? HeaderCondition::Op::NotMatches : HeaderCondition::Op::Matches;
        if (!compile_regex(cx, st, op, c.value, c.regex)) return false;
    } else {
        return cx.error_at(st, "invalid operator \"%s\" in \"header\" directive", op.c_str());
    }
    return true;
}

bool parse_header_line(ConfContext& cx, const conf::Statement& st, Match& m) {
    HeaderCondition c;
    size_t n = arg_count_of(st);
    bool absent = n == 2 && arg_of(st, 0) == "!";
    if (n != 1 && n != 3 && !absent) return cx.error_at(st, "invalid number of arguments in \"header\" directive");
    c.name = arg_of(st, absent ? 1 : 0);
    if (!valid_header_name(c.name)) return cx.error_at(st, "invalid header name \"%s\"", c.name.c_str());
    c.op = absent ? HeaderCondition::Op::Absent : HeaderCondition::Op::Present;
    if (n == 3 && !parse_header_comparison(cx, st, c)) return false;
    m.headers.push_back(std::move(c));
    return true;
}

bool parse_body_line(ConfContext& cx, const conf::Statement& st, Match& m) {
    if (arg_count_of(st) != 2) return cx.error_at(st, "invalid number of arguments in \"body\" directive");
    const std::string& op = arg_of(st, 0);
    if (!regex_op(op)) return cx.error_at(st, "invalid operator \"%s\" in \"body\" directive", op.c_str());
    BodyCondition c;
    c.negate = op[0] == '!';
    if (!compile_regex(cx, st, op, arg_of(st, 1), c.regex)) return false;
    m.body.push_back(std::move(c));
    return true;
}

bool parse_condition(ConfContext& cx, const conf::Statement& st, Match& m) {
    if (st.block) return cx.error_at(st, "unexpected \"{\" in \"match\" block");
    const std::string& name = st.name();
    if (name == "status") return parse_status_line(cx, st, m);
    if (name == "header") return parse_header_line(cx, st, m);
    if (name == "body") return parse_body_line(cx, st, m);
    return cx.error_at(st, "unknown directive \"%s\" in \"match\" block", name.c_str());
}

// ---- testing a reply ----

bool status_holds(const StatusCondition& c, int status) {
    bool in = false;
    for (const StatusRange& r : c.ranges) in = in || (status >= r.low && status <= r.high);
    return in != c.negate;
}

bool any_field(const ResponseHead& head, std::string_view name, auto&& test) {
    for (const Header& h : head.headers)
        if (iequals(h.name, name) && test(h.value)) return true;
    return false;
}

bool header_holds(const HeaderCondition& c, const ResponseHead& head) {
    using Op = HeaderCondition::Op;
    auto present = [](std::string_view) { return true; };
    auto equal = [&](std::string_view v) { return v == c.value; };
    auto matches = [&](std::string_view v) { return c.regex->match(v); };
    switch (c.op) {
    case Op::Present: return any_field(head, c.name, present);
    case Op::Absent: return !any_field(head, c.name, present);
    case Op::Equal: return any_field(head, c.name, equal);
    case Op::NotEqual: return !any_field(head, c.name, equal);
    case Op::Matches: return any_field(head, c.name, matches);
    case Op::NotMatches: return !any_field(head, c.name, matches);
    }
    return false;
}

}  // namespace

const char* stage_text(CheckStage stage) {
    switch (stage) {
    case CheckStage::Passed: return "checking";
    case CheckStage::Connect: return "connecting to upstream";
    case CheckStage::Send: return "sending request to upstream";
    case CheckStage::ReadHead: return "reading response header from upstream";
    case CheckStage::ReadBody: return "reading response body from upstream";
    case CheckStage::Status: return "checking status code";
    case CheckStage::Headers: return "checking headers";
    case CheckStage::Body: return "checking body";
    case CheckStage::Timeout: return "waiting for upstream (timed out)";
    }
    return "checking";
}

CheckStage evaluate(const Match* match, const ResponseHead& head, std::string_view body) {
    if (!match) return head.status >= 200 && head.status <= 399 ? CheckStage::Passed : CheckStage::Status;
    for (const StatusCondition& c : match->status)
        if (!status_holds(c, head.status)) return CheckStage::Status;
    for (const HeaderCondition& c : match->headers)
        if (!header_holds(c, head)) return CheckStage::Headers;
    for (const BodyCondition& c : match->body)
        if (c.regex->match(body) == c.negate) return CheckStage::Body;
    return CheckStage::Passed;
}

bool parse_match_block(ConfContext& cx, const conf::Statement& block, Match& m) {
    for (const conf::Statement& st : block.children)
        if (!parse_condition(cx, st, m)) return false;
    return true;
}

}  // namespace sluice::http::health_check
