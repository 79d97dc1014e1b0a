// The static module's directives: root, alias, index.
#include "core/conf.h"
#include "core/cycle.h"
#include "http/http_core.h"
#include "static.h"

namespace sluice::http {

namespace {

constexpr std::string_view kDefaultRoot = "html";
constexpr std::string_view kDefaultIndex = "index.html";

// A root or alias that refers to itself would need the path to find the path.
bool refers_to_document_root(std::string_view value) {
    return value.find("$document_root") != std::string_view::npos ||
           value.find("$realpath_root") != std::string_view::npos ||
           value.find("${document_root}") != std::string_view::npos ||
           value.find("${realpath_root}") != std::string_view::npos;
}

// root PATH | alias PATH: one of them per level, as nginx allows.
bool set_root_or_alias(ConfContext& cx, void* conf) {
    auto& c = *static_cast<StaticLocConf*>(conf);
    const bool alias = cx.name() == "alias";
    if (c.root) {
        if (c.root->alias == alias) return cx.duplicate();
        return cx.error("\"%s\" directive is duplicate, \"%s\" directive was specified earlier", cx.name().c_str(),
                        c.root->alias ? "alias" : "root");
    }
    const CoreLocConf& loc = *current_location(cx)->core;
    if (alias && loc.match == CoreLocConf::Match::Named)
        return cx.error("the \"alias\" directive cannot be used inside the named location");
    std::string text = cx.arg(0);
    if (refers_to_document_root(text))
        return cx.error("the $document_root variable cannot be used in the \"%s\" directive", cx.name().c_str());

    // "root /var/www/;" means "/var/www": the URI brings its own slash.
    if (!alias && text.size() > 1 && text.back() == '/') text.pop_back();
    auto root = std::make_shared<DocumentRoot>();
    root->alias = alias;
    root->prefix = cx.cycle().prefix;
    if (!text.empty() && text[0] != '$') text = cx.full_path(text);
    if (!root->value.compile(cx, text)) return false;
    if (root->value.is_constant()) root->constant = text;
    if (alias) {
        root->alias_whole = loc.match == CoreLocConf::Match::Regex || loc.match == CoreLocConf::Match::RegexCaseless;
        root->alias_location = loc.name;
    }
    c.root = std::move(root);
    return true;
}

// index FILE...: several directives at one level add up, as in nginx.
bool set_index(ConfContext& cx, void* conf) {
    auto& c = *static_cast<StaticLocConf*>(conf);
    if (!c.index) c.index = std::make_shared<std::vector<ComplexValue>>();
    for (size_t i = 0; i < cx.arg_count(); ++i) {
        const std::string& name = cx.arg(i);
        if (name.empty())
            return cx.error("index \"%s\" in \"index\" directive is invalid", name.c_str());
        if (name[0] == '/' && i + 1 != cx.arg_count())
            cx.warn("only the last index in \"index\" directive should be absolute");
        ComplexValue v;
        if (!v.compile(cx, name)) return false;
        c.index->push_back(std::move(v));
    }
    return true;
}

const Directive kDirectives[] = {
    {"root", kHttpAnyContext, Args(1), ConfLevel::Location, set_root_or_alias},
    {"alias", kLocationContext, Args(1), ConfLevel::Location, set_root_or_alias},
    {"index", kHttpAnyContext, AnyArgs(1), ConfLevel::Location, set_index},
};

std::unique_ptr<ModuleConf> create_loc_conf() { return std::make_unique<StaticLocConf>(); }

std::shared_ptr<const DocumentRoot> default_root(ConfContext& cx) {
    auto root = std::make_shared<DocumentRoot>();
    root->constant = cx.full_path(kDefaultRoot);
    root->prefix = cx.cycle().prefix;
    return root;
}

std::shared_ptr<std::vector<ComplexValue>> default_index(ConfContext& cx) {
    auto index = std::make_shared<std::vector<ComplexValue>>(1);
    if (!index->front().compile(cx, kDefaultIndex)) return nullptr;
    return index;
}

bool merge_loc_conf(ConfContext& cx, const ModuleConf& parent_conf, ModuleConf& child_conf) {
    auto& parent = static_cast<const StaticLocConf&>(parent_conf);
    auto& child = static_cast<StaticLocConf&>(child_conf);
    if (!child.root) child.root = parent.root ? parent.root : default_root(cx);
    if (!child.index) child.index = parent.index ? parent.index : default_index(cx);
    return child.index != nullptr;
}

bool postconfiguration(ConfContext& cx, HttpPhases& phases) {
    if (!add_static_variables(current_main_conf(cx).variables))
        return cx.error("the static module's variables are already defined by another module");
    phases.add(Phase::Content, static_handler);
    return true;
}

}  // namespace

}  // namespace sluice::http

namespace sluice {

Module static_module = {
    .name = "static",
    .type = ModuleType::Http,
    .directives = http::kDirectives,
    .create_loc_conf = http::create_loc_conf,
    .merge_loc_conf = http::merge_loc_conf,
    .postconfiguration = http::postconfiguration,
};

}  // namespace sluice
