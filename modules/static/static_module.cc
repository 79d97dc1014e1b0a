// The static module's request path: maps the URI to a file under root or
// alias, answers a directory with its index file (an internal redirect, so
// the index URI finds its own location), and sends files with validators
// and conditional requests as nginx's static, index and not-modified code do.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "core/http_date.h"
#include "core/log.h"
#include "core/str.h"
#include "http/http_request.h"
#include "http/uri.h"
#include "static.h"

namespace sluice::http {

namespace {

// ---- small helpers ----------------------------------------------------------

Next finish(Request& r, int status) {
    r.set_status(status);
    return Next::Finish;
}

// Joins the parts in the request's arena, NUL-terminated for system calls.
std::string_view concat(Request& r, std::initializer_list<std::string_view> parts) {
    size_t total = 0;
    for (std::string_view p : parts) total += p.size();
    char* out = static_cast<char*>(r.arena()->allocate(total + 1, 1));
    size_t pos = 0;
    for (std::string_view p : parts) {
        if (p.empty()) continue;  // an empty view may have no data pointer
        memcpy(out + pos, p.data(), p.size());
        pos += p.size();
    }
    out[total] = '\0';
    return {out, total};
}

// The error log line nginx writes for a request: the message, then who asked what.
void log_request_error(Request& r, LogLevel level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void log_request_error(Request& r, LogLevel level, const char* fmt, ...) {
    if (!ErrorLog::instance().enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    std::string_view client = r.remote_addr(), method = r.method_name(), target = r.request_uri();
    std::string_view host = r.head().host;
    const auto& names = r.server().server_names;
    std::string_view server = names.empty() ? std::string_view() : std::string_view(names.front().name);
    log_error(level, "*%llu %s, client: %.*s, server: %.*s, request: \"%.*s %.*s HTTP/%d.%d\"%s%.*s%s",
              static_cast<unsigned long long>(r.connection_number()), msg, int(client.size()), client.data(), int(server.size()), server.data(), int(method.size()),
              method.data(), int(target.size()), target.data(), r.head().version_major, r.head().version_minor,
              host.empty() ? "" : ", host: \"", int(host.size()), host.data(), host.empty() ? "" : "\"");
}

void log_syscall_error(Request& r, LogLevel level, const char* call, std::string_view path, int err) {
    log_request_error(r, level, "%s \"%.*s\" failed (%d: %s)", call, int(path.size()), path.data(), err,
                      strerror(err));
}

void close_fd(void* arg) { ::close(int(reinterpret_cast<intptr_t>(arg))); }

// ---- URI to path ------------------------------------------------------------

// decode_path_for_fs() fills a std::string; one buffer per process keeps its
// capacity between requests, so only a URI longer than any before allocates.
std::string& decode_buffer() {
    static std::string buffer = [] {
        std::string b;
        b.reserve(4096);
        return b;
    }();
    return buffer;
}

// How long uri[0, encoded_len) is once decoded. An escape cut by the boundary
// counts as inside it, so the rest never starts with half an escape.
size_t decoded_length(std::string_view uri, size_t encoded_len) {
    size_t i = 0, n = 0;
    while (i < encoded_len && i < uri.size()) {
        i += uri[i] == '%' ? 3 : 1;
        ++n;
    }
    return n;
}

bool has_dot_segment(std::string_view path) {
    size_t start = 0;
    for (;;) {
        size_t slash = path.find('/', start);
        std::string_view segment = path.substr(start, slash == std::string_view::npos ? slash : slash - start);
        if (segment == "." || segment == "..") return true;
        if (slash == std::string_view::npos) return false;
        start = slash + 1;
    }
}

int map_alias_whole(Request& r, std::string_view alias, bool constant, std::string_view& path) {
    // A constant alias is the admin's path as written. With variables, the
    // captures come from the normalized (still percent-encoded) URI.
    if (constant) {
        path = alias;
        return 0;
    }
    std::string& decoded = decode_buffer();
    if (!decode_path_for_fs(alias, decoded)) return 400;
    path = concat(r, {decoded});
    return 0;
}

// ---- conditional requests (RFC 9110 §13) -----------------------------------

// Whether a list of entity tags ("*", or `"a", W/"b"`) names `etag`.
bool etag_listed(std::string_view list, std::string_view etag, bool weak) {
    auto trim = [](std::string_view v) {
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
        return v;
    };
    if (trim(list) == "*") return true;
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view tag = trim(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        if (tag.starts_with("W/")) {
            if (!weak) continue;  // strong comparison never matches a weak tag
            tag.remove_prefix(2);
        }
        if (tag == etag) return true;
    }
    return false;
}

enum class Precondition { Send, NotModified, Failed };

Precondition evaluate_preconditions(Request& r, int64_t mtime, std::string_view etag) {
    bool found = false;
    std::string_view v = r.header("If-Match", &found);
    if (found && !etag_listed(v, etag, false)) return Precondition::Failed;
    if (!found) {
        v = r.header("If-Unmodified-Since", &found);
        int64_t t = found ? parse_http_date(v) : -1;
        if (t >= 0 && mtime > t) return Precondition::Failed;
    }
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    v = r.header("If-None-Match", &found);
    if (found) return etag_listed(v, etag, true) ? Precondition::NotModified : Precondition::Send;
    // nginx's default ("if_modified_since exact"): only the date we sent matches.
    v = r.header("If-Modified-Since", &found);
    if (found && parse_http_date(v) == mtime) return Precondition::NotModified;
    return Precondition::Send;
}

// ---- the response -----------------------------------------------------------

void append_hex(char*& p, uint64_t v) {
    char buf[16];
    int n = 0;
    do {
        buf[n++] = "0123456789abcdef"[v & 0xf];
        v >>= 4;
    } while (v);
    while (n) *p++ = buf[--n];
}

// nginx's ETag: "mtime-size" in hex.
std::string_view make_etag(Request& r, int64_t mtime, int64_t size) {
    char* out = static_cast<char*>(r.arena()->allocate(40, 1));
    char* p = out;
    *p++ = '"';
    append_hex(p, uint64_t(mtime));
    *p++ = '-';
    append_hex(p, uint64_t(size));
    *p++ = '"';
    return {out, size_t(p - out)};
}

std::string_view content_type_for(Request& r, std::string_view uri) {
    const CoreLocConf& core = r.core_conf();
    std::string_view fallback = core.default_type ? std::string_view(*core.default_type) : "text/plain";
    size_t dot = uri.rfind('.');
    size_t slash = uri.rfind('/');
    if (!core.types || dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash))
        return fallback;
    std::string_view ext = uri.substr(dot + 1);
    // Short enough for the small-string buffer: the lookup key costs no allocation.
    constexpr size_t kMaxExtension = 15;
    if (ext.empty() || ext.size() > kMaxExtension) return fallback;
    char lower[kMaxExtension];
    for (size_t i = 0; i < ext.size(); ++i) lower[i] = ascii_lower(ext[i]);
    auto it = core.types->find(std::string(lower, ext.size()));
    return it == core.types->end() ? fallback : std::string_view(it->second);
}

// The end of a response without a body (HEAD, 304, an empty file).
Next end_body(Request& r) {
    auto* chain = r.make<BodyChain>(r.arena());
    chain->last = true;
    r.send_body(*chain);
    return Next::Finish;
}

Next send_not_modified(Request& r) {
    HeadersOut& out = r.headers_out();
    out.status = 304;
    out.content_type = {};
    out.content_length = -1;
    if (!r.send_header()) return Next::Finish;
    return end_body(r);
}

Next send_file(Request& r, int fd, const struct stat& st) {
    HeadersOut& out = r.headers_out();
    out.status = 200;
    out.content_length = st.st_size;
    out.last_modified = st.st_mtime;
    out.etag = make_etag(r, st.st_mtime, st.st_size);
    out.content_type = content_type_for(r, r.uri());
    switch (evaluate_preconditions(r, st.st_mtime, out.etag)) {
    case Precondition::Failed: return finish(r, 412);
    case Precondition::NotModified: return send_not_modified(r);
    case Precondition::Send: break;
    }
    if (!r.send_header()) return Next::Finish;
    if (r.method() == Method::Head || st.st_size == 0) return end_body(r);
    auto* chain = r.make<BodyChain>(r.arena());
    chain->bufs.push_back(BodyBuf{{}, fd, 0, st.st_size});
    chain->last = true;
    r.send_body(*chain);
    return Next::Finish;
}

Next not_allowed(Request& r) {
    // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
    r.headers_out().add("Allow", "GET, HEAD");
    return finish(r, 405);
}

// A directory asked for without its slash: nginx's 301 to "uri/". The core
// makes the Location absolute (absolute_redirect, port_in_redirect).
Next redirect_to_directory(Request& r) {
    std::string_view args = r.args();
    r.headers_out().location = concat(r, {r.uri(), "/", args.empty() ? "" : "?", args});
    return finish(r, 301);
}

Next open_failed(Request& r, std::string_view path, int err) {
    switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        if (r.core_conf().log_not_found.value_or(true)) log_syscall_error(r, LogLevel::Error, "open()", path, err);
        return finish(r, 404);
    case EACCES:
    case ELOOP:
    case EMLINK:
        log_syscall_error(r, LogLevel::Error, "open()", path, err);
        return finish(r, 403);
    default:
        log_syscall_error(r, LogLevel::Crit, "open()", path, err);
        return finish(r, 500);
    }
}

Next serve_file(Request& r, const StaticLocConf& conf) {
    std::string_view path;
    if (int status = map_uri_to_path(r, conf, r.uri(), path)) return finish(r, status);
    // O_NONBLOCK: a FIFO in the tree must not hang the worker in open().
    int fd = ::open(path.data(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return open_failed(r, path, errno);
    r.add_cleanup(close_fd, reinterpret_cast<void*>(intptr_t(fd)));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        log_syscall_error(r, LogLevel::Crit, "fstat()", path, errno);
        return finish(r, 500);
    }
    if (S_ISDIR(st.st_mode)) return redirect_to_directory(r);
    if (!S_ISREG(st.st_mode)) {
        log_request_error(r, LogLevel::Crit, "\"%.*s\" is not a regular file", int(path.size()), path.data());
        return finish(r, 404);
    }
    // nginx answers POST to an existing file with 405, to a missing one with 404.
    if (r.method() == Method::Post) return not_allowed(r);
    return send_file(r, fd, st);
}

// ---- index ------------------------------------------------------------------

// internal_redirect() runs the phases again before it returns, and that run
// answers or suspends the request: this handler must not finish it again.
constexpr Next kRedirected = Next::Suspend;

Next redirect_to_index(Request& r, std::string_view uri) {
    r.internal_redirect(uri, r.args());
    return kRedirected;
}

Next index_error(Request& r, std::string_view path, int err) {
    if (err == EACCES) {
        log_request_error(r, LogLevel::Error, "\"%.*s\" is forbidden (%d: %s)", int(path.size()), path.data(), err,
                          strerror(err));
        return finish(r, 403);
    }
    if (r.core_conf().log_not_found.value_or(true))
        log_request_error(r, LogLevel::Error, "\"%.*s\" is not found (%d: %s)", int(path.size()), path.data(), err,
                          strerror(err));
    return finish(r, 404);
}

// After an index file was not found: tells a missing directory (404) from a
// directory without that file (try the next one). Returns true, with
// `result` set, when that answers the request.
bool directory_missing(Request& r, std::string_view dir, Next& result) {
    struct stat st;
    if (stat(dir.data(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) return false;
        log_request_error(r, LogLevel::Alert, "\"%.*s\" is not a directory", int(dir.size()), dir.data());
        result = finish(r, 500);
        return true;
    }
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
        result = index_error(r, dir, err);
        return true;
    }
    // EACCES on the directory itself: searching it worked for the index file.
    if (err == EACCES) return false;
    log_syscall_error(r, LogLevel::Crit, "stat()", dir, err);
    result = finish(r, 500);
    return true;
}

Next serve_directory_index(Request& r, const StaticLocConf& conf) {
    std::string_view dir;
    if (int status = map_uri_to_path(r, conf, r.uri(), dir)) return finish(r, status);
    bool dir_tested = false;
    for (const ComplexValue& index : *conf.index) {
        std::string_view name = index.is_constant() ? index.constant() : index.eval(r);
        if (name.empty()) continue;
        if (name[0] == '/') return redirect_to_index(r, name);
        if (has_dot_segment(name)) continue;  // a name from a variable must stay in the directory
        std::string_view file = concat(r, {dir, name});
        struct stat st;
        if (stat(file.data(), &st) == 0) return redirect_to_index(r, concat(r, {r.uri(), name}));
        int err = errno;
        if (err == ENOENT) {
            Next result;
            if (!dir_tested && directory_missing(r, dir, result)) return result;
            dir_tested = true;
            continue;
        }
        if (err == ENOTDIR || err == ENAMETOOLONG || err == EACCES) return index_error(r, file, err);
        log_syscall_error(r, LogLevel::Crit, "stat()", file, err);
        return finish(r, 500);
    }
    log_request_error(r, LogLevel::Error, "directory index of \"%.*s\" is forbidden", int(dir.size()), dir.data());
    return finish(r, 403);
}

// ---- variables --------------------------------------------------------------

const StaticLocConf& static_conf(Request& r) { return r.loc_conf<StaticLocConf>(static_module); }

bool get_document_root(Request& r, std::string_view& value, uintptr_t) {
    value = document_root(r, static_conf(r));
    return true;
}

bool get_realpath_root(Request& r, std::string_view& value, uintptr_t) {
    std::string_view root = document_root(r, static_conf(r));
    std::string_view path = concat(r, {root});  // NUL-terminated
    char resolved[PATH_MAX];
    if (!realpath(path.data(), resolved)) {
        log_syscall_error(r, LogLevel::Crit, "realpath()", path, errno);
        return false;
    }
    value = r.copy(resolved);
    return true;
}

bool get_request_filename(Request& r, std::string_view& value, uintptr_t) {
    return map_uri_to_path(r, static_conf(r), r.uri(), value) == 0;
}

}  // namespace

std::string_view document_root(Request& r, const StaticLocConf& conf) {
    const DocumentRoot& root = *conf.root;
    if (root.value.is_constant()) return root.constant;
    std::string_view value = root.value.eval(r);
    if (!root.alias && value.size() > 1 && value.back() == '/') value.remove_suffix(1);
    if (value.empty() || value[0] != '/') value = concat(r, {root.prefix, value});
    return value;
}

int map_uri_to_path(Request& r, const StaticLocConf& conf, std::string_view uri, std::string_view& path) {
    const DocumentRoot& root = *conf.root;
    std::string_view base = document_root(r, conf);
    if (root.alias && root.alias_whole) return map_alias_whole(r, base, root.value.is_constant(), path);

    // Decoding also refuses NUL and any "." or ".." segment, however encoded.
    std::string& decoded = decode_buffer();
    if (!decode_path_for_fs(uri, decoded)) return 400;
    if (!root.alias) {
        if (base == "/") base = {};
        path = concat(r, {base, decoded});
        return 0;
    }
    // The alias replaces what its location matched. A URI changed inside the
    // location may not start with that any more: then all of it is appended.
    size_t skip = 0;
    if (uri.starts_with(root.alias_location)) skip = decoded_length(uri, root.alias_location.size());
    path = concat(r, {base, std::string_view(decoded).substr(std::min(skip, decoded.size()))});
    // "location /i { alias /data/x/; }" would turn "/i../y" into "/data/x/../y".
    size_t last_slash = base.rfind('/');
    if (has_dot_segment(path.substr(last_slash == std::string_view::npos ? 0 : last_slash + 1))) return 404;
    return 0;
}

Next static_handler(Request& r) {
    Method m = r.method();
    if (m != Method::Get && m != Method::Head && m != Method::Post) return not_allowed(r);
    const StaticLocConf& conf = static_conf(r);
    std::string_view uri = r.uri();
    if (!uri.empty() && uri.back() == '/') return serve_directory_index(r, conf);
    return serve_file(r, conf);
}

bool add_static_variables(Variables& variables) {
    // The location can change within a request (internal redirects): no caching.
    return variables.add("document_root", get_document_root, 0, kVarNoCache) >= 0 &&
           variables.add("realpath_root", get_realpath_root, 0, kVarNoCache) >= 0 &&
           variables.add("request_filename", get_request_filename, 0, kVarNoCache) >= 0;
}

}  // namespace sluice::http
