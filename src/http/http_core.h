// The http core module's configuration: http{}, server{}, location{}, and the
// runtime tables built from them (server lookup by address and name, the
// location tree, the flattened phase handlers).
#pragma once
#include <openssl/types.h>
#include <sys/socket.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/conf.h"
#include "core/cycle.h"
#include "core/regex.h"
#include "http/http_phases.h"
#include "http/http_variables.h"

namespace sluice {
extern Module http_core_module;
}

namespace sluice::http {

struct LocationConf;
struct ServerConf;

// Hash for string-keyed maps that are looked up with string_views.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};


// error_page CODE ... [=[RESPONSE]] URI
struct ErrorPage {
    int status = 0;
    int override_status = -1;  // -1: keep; 0: "=" (the status of the page's own response)
    ComplexValue uri;
};

// The http core module's location-level configuration; one per level
// (http, server, each location). Fields are std::optional until merged.
struct CoreLocConf : ModuleConf {
    // Location identity (only meaningful for real locations).
    enum class Match : uint8_t { None, Prefix, Exact, NoRegexPrefix, Regex, RegexCaseless, Named };
    Match match = Match::None;
    std::string name;  // the prefix, exact string, regex source or @name
    std::unique_ptr<Regex> regex;
    LocationConf* location = nullptr;  // back pointer for real locations

    std::optional<std::string> default_type;
    using TypesMap = std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>;
    std::shared_ptr<TypesMap> types;  // lowercase extension -> MIME type
    std::optional<uint64_t> client_max_body_size;
    std::optional<uint64_t> client_body_timeout_ms;
    std::optional<uint64_t> send_timeout_ms;
    std::optional<uint64_t> keepalive_timeout_ms;
    std::optional<uint64_t> keepalive_requests;
    std::optional<bool> server_tokens;
    std::optional<bool> merge_slashes;
    std::optional<bool> allow_encoded_slashes;  // sluice: %2F / %5C in paths (default off: 400)
    std::optional<bool> internal;
    std::optional<bool> log_not_found;
    std::optional<bool> recursive_error_pages;
    std::optional<bool> absolute_redirect;
    std::optional<bool> port_in_redirect;
    std::optional<bool> tcp_nodelay;
    std::optional<bool> sendfile;
    // satisfy all|any: how the Access phase combines its handlers' verdicts
    // (http_phases.h, "Access phase handlers").
    enum class Satisfy : uint8_t { All, Any };
    std::optional<Satisfy> satisfy;
    std::vector<ErrorPage> error_pages;
    bool error_pages_set = false;
    const std::vector<ErrorPage>* inherited_error_pages = nullptr;
    const std::vector<ErrorPage>* effective_error_pages() const {
        return error_pages_set ? &error_pages : inherited_error_pages;
    }
};

// A location{} block: its configuration objects (one per http module) and
// nested locations.
struct LocationConf {
    CoreLocConf* core = nullptr;
    std::vector<ModuleConf*> confs;  // indexed by Module::ctx_index
    LocationConf* parent = nullptr;
    // Nested locations, split by kind for matching.
    std::vector<LocationConf*> exact;     // "= /x"
    std::vector<LocationConf*> prefixes;  // "/x" and "^~ /x", longest first
    std::vector<LocationConf*> regexes;   // "~" and "~*", in configuration order
    std::vector<LocationConf*> named;     // "@name" (server level only)
    // Content handler chosen by a directive (proxy_pass, return-only...):
    // when set, it replaces the Content phase handlers.
    PhaseHandler content_handler = nullptr;

    template <class T> T& conf(const Module& m) const { return *static_cast<T*>(confs[size_t(m.ctx_index)]); }
};

struct ServerName {
    std::string name;                 // lowercase; "*.example.com", "www.example.*", "" (no Host)
    std::unique_ptr<Regex> regex;     // "~..." names
};

// The http core module's server-level configuration.
struct CoreSrvConf : ModuleConf {
    std::vector<ServerName> server_names;
    std::vector<ModuleConf*> srv_confs;  // every http module's server conf, by ctx_index
    LocationConf* root_location = nullptr;  // server-level confs and the location tree
    std::optional<uint64_t> client_header_timeout_ms;
    std::optional<uint64_t> client_header_buffer_size;
    std::optional<uint64_t> large_client_header_buffers_num;
    std::optional<uint64_t> large_client_header_buffers_size;
    std::optional<bool> underscores_in_headers;
    bool listen_set = false;
    std::string conf_file;  // where the server{} starts, for messages
    int conf_line = 0;
};

// All servers reachable through one listening address, and how to choose.
struct AddressServers {
    CoreSrvConf* default_server = nullptr;
    std::unordered_map<std::string, CoreSrvConf*, StringHash, std::equal_to<>> exact;
    std::vector<std::pair<std::string, CoreSrvConf*>> wildcard_head;  // "*.example.com" stored as ".example.com"
    std::vector<std::pair<std::string, CoreSrvConf*>> wildcard_tail;  // "www.example.*" stored as "www.example."
    std::vector<std::pair<const Regex*, CoreSrvConf*>> regexes;
    bool default_server_explicit = false;
    std::vector<CoreSrvConf*> servers;  // in order
    // `listen ... ssl` on any of its listens makes the address TLS (nginx).
    // The TLS module sets ssl_ctx (the default server's context) and reports
    // a server without certificates at ssl_file:ssl_line.
    bool ssl = false;
    std::string ssl_file;
    int ssl_line = 0;
    SSL_CTX* ssl_ctx = nullptr;  // owned by the TLS module's configuration
};

// One `listen` directive, kept until the http{} block is done and addresses are grouped.
struct ListenSpec {
    sockaddr_storage addr{};
    socklen_t len = 0;
    std::string text;
    bool default_server = false, reuseport = false, deferred = false, bind = false, ssl = false;
    int backlog = 511, rcvbuf = -1, sndbuf = -1;
    int ipv6only = -1;
    std::string file;
    int line = 0;
};

// The http core module's main configuration: one per http{}.
struct CoreMainConf : ModuleConf {
    std::vector<ModuleConf*> main_confs;  // every http module's main conf, by ctx_index
    Variables variables;
    HttpPhases phases;
    std::vector<CoreSrvConf*> servers;
    std::vector<std::unique_ptr<AddressServers>> addresses;
    size_t module_count = 0;
    std::vector<std::pair<std::string_view, std::string_view>> default_types;
    std::vector<std::pair<CoreSrvConf*, ListenSpec>> listens;
    bool seen = false;
};

// The http main configuration of the running cycle (null without http{}).
CoreMainConf* http_main_conf(const Cycle&);

// Chooses the server for a Host (lowercase, without port, may be empty); one
// that names none gets `fallback` (the server TLS SNI chose), else the
// address's default server.
CoreSrvConf* find_server(const AddressServers&, std::string_view host, Request* r, CoreSrvConf* fallback = nullptr);

// Selects the location for `path`; sets regex captures on the request.
LocationConf* find_location(const LocationConf& server_root, std::string_view path, Request* r);
LocationConf* find_named_location(const CoreSrvConf&, std::string_view name);

// Used by directives of other modules that set a location's content handler.
LocationConf* current_location(ConfContext& cx);
// The http core module's main conf for the http{} block being read.
CoreMainConf& current_main_conf(ConfContext& cx);

}  // namespace sluice::http
