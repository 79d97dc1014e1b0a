// The TLS module: `listen ... ssl` addresses get one SSL_CTX per server
// (ssl_certificate, ssl_protocols, ssl_ciphers, ssl_verify_client, ...), SNI
// picks the server's context, sessions resume from a shared-memory cache or
// tickets under keys every worker shares, and $ssl_* variables describe the
// connection. The transport itself is core's (src/event/tls.*, HttpConnection).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/conf.h"
#include "event/tls.h"
#include "http/http_core.h"

namespace sluice {
extern Module ssl_module;
}

namespace sluice::ssl {

using http::AddressServers;
using http::CoreSrvConf;
using http::HttpPhases;
using http::Next;
using http::Phase;
using http::Variables;

enum class VerifyClient : uint8_t { Off, On, Optional, OptionalNoCa };

// Where a file directive was written, for `-t` errors found when the
// context is built.
struct FileRef {
    std::string path;
    std::string conf_file;
    int conf_line = 0;
};

class SessionCache;
struct TicketKey;

// ssl_* of one server (or http{} level before merging).
struct SslSrvConf : ModuleConf {
    std::vector<FileRef> certificates, certificate_keys;
    bool certificates_set = false;
    std::optional<unsigned> protocols;
    std::optional<std::string> ciphers;
    std::optional<bool> prefer_server_ciphers;
    std::optional<std::string> ecdh_curve;
    // ssl_session_cache: off | none | [builtin[:size]] [shared:name:size]
    bool session_cache_set = false;
    bool session_cache_off = false;   // "off": no resumption from a cache at all
    int64_t builtin_cache_size = -1;  // sessions; -1: no builtin cache
    SessionCache* shared_cache = nullptr;
    std::optional<uint64_t> session_timeout_sec;
    std::optional<bool> session_tickets;
    std::vector<FileRef> ticket_key_files;
    bool ticket_key_files_set = false;
    std::optional<FileRef> client_certificate, trusted_certificate, crl;
    std::optional<VerifyClient> verify_client;
    std::optional<int64_t> verify_depth;

    // Built after merging, for servers on a `listen ... ssl` address.
    tls::SslCtxPtr ctx;
    std::vector<TicketKey>* ticket_keys = nullptr;  // owned by the cycle
    CoreSrvConf* server = nullptr;
};

SslSrvConf& srv_conf_of(const CoreSrvConf& server);

// ssl_module.cc: the contexts and their callbacks.
bool build_server_context(ConfContext& cx, SslSrvConf& conf);
bool install_request_checks(ConfContext& cx, HttpPhases& phases);

// ssl_variables.cc
bool add_variables(Variables& variables);

}  // namespace sluice::ssl
