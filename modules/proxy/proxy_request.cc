// The request as the upstream sees it: a re-serialized head (never the
// client's bytes), the configured headers, the client's end-to-end headers,
// an edited query string, and the body with canonical framing, either
// buffered first (replayable on a retry) or streamed with backpressure.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/log.h"
#include "core/str.h"
#include "proxy.h"

namespace sluice::http {

namespace {

constexpr size_t kMaxConnectionTokens = 16;
constexpr size_t kSmallBodyInArena = 2048;
constexpr size_t kMaxSendfileChunk = size_t(1) << 30;

// RFC 9110 §7.6.1's connection-specific fields, the framing the proxy
// chooses itself, Expect (the core answered it), and credentials meant for
// a proxy rather than the origin (RFC 9110 §11.7.2).
bool is_hop_by_hop(std::string_view n) {
    switch (n.size()) {
    case 2: return field_name_is(n, "te");
    case 6: return field_name_is(n, "expect");
    case 7: return field_name_is(n, "upgrade") || field_name_is(n, "trailer");
    case 10: return field_name_is(n, "connection") || field_name_is(n, "keep-alive");
    case 14: return field_name_is(n, "content-length");
    case 16: return field_name_is(n, "proxy-connection");
    case 17: return field_name_is(n, "transfer-encoding");
    case 19: return field_name_is(n, "proxy-authorization");
    default: return false;
    }
}

// Never passed from a client: URL overrides that IIS, Symfony, Laravel and
// others route by (a client could reach /admin through /public), and
// HTTP2-Settings, which belongs to an h2c upgrade the gateway never makes
// (RFC 9113 §3.2.1: connection-specific).
bool is_untrusted(std::string_view n) {
    switch (n.size()) {
    case 14: return field_name_is(n, "x-original-url") || field_name_is(n, "x-original-uri") ||
                    field_name_is(n, "http2-settings");
    case 13: return field_name_is(n, "x-rewrite-url");
    default: return false;
    }
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool has_token(std::string_view list, std::string_view lowercase_token) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        if (field_name_is(trim_ows(list.substr(0, comma)), lowercase_token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

// Names listed in the client's Connection header(s): hop-by-hop too.
size_t connection_tokens(const Request& r, std::string_view* out) {
    size_t n = 0;
    for (const Header& h : r.head().headers) {
        if (!field_name_is(h.name, "connection")) continue;
        std::string_view list = h.value;
        while (!list.empty() && n < kMaxConnectionTokens) {
            size_t comma = list.find(',');
            std::string_view t = trim_ows(list.substr(0, comma));
            if (!t.empty() && !is_hop_by_hop(t)) out[n++] = t;
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }
    return n;
}

bool forwarded(std::string_view name, const std::vector<ProxyHeader>& set, const std::string_view* tokens,
               size_t ntokens) {
    if (is_hop_by_hop(name) || is_untrusted(name)) return false;
    for (const ProxyHeader& h : set)
        if (h.lower.size() == name.size() && field_name_is(name, h.lower)) return false;
    for (size_t i = 0; i < ntokens; ++i)
        if (iequals(tokens[i], name)) return false;
    return true;
}

bool safe_value(std::string_view v) {
    for (char c : v)
        if (c == '\r' || c == '\n' || c == '\0') return false;
    return true;
}

char* put(char* p, std::string_view s) {
    if (s.empty()) return p;  // an empty view may have no data() at all: memcpy must not see it
    memcpy(p, s.data(), s.size());
    return p + s.size();
}

char* put_header(char* p, std::string_view name, std::string_view value) {
    p = put(p, name);
    *p++ = ':';
    *p++ = ' ';
    p = put(p, value);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

// ---- the query string ----

// A query name as a backend decodes it, for comparison ("%64ebug" is "debug").
size_t decode_name(std::string_view raw, char* out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < raw.size() && n < cap; ++i) {
        char c = raw[i];
        if (c == '%' && i + 2 < raw.size() && chars::kHexValue(raw[i + 1]) >= 0 && chars::kHexValue(raw[i + 2]) >= 0) {
            c = char(chars::kHexValue(raw[i + 1]) * 16 + chars::kHexValue(raw[i + 2]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        out[n++] = c;
    }
    return n;
}

bool edited(std::string_view item, const std::vector<ProxyArgEdit>& edits) {
    std::string_view raw = item.substr(0, item.find('='));
    char name[256];
    if (raw.size() > sizeof name) return false;
    std::string_view decoded(name, decode_name(raw, name, sizeof name));
    for (const ProxyArgEdit& e : edits)
        if (decoded == e.name) return true;
    return false;
}

// Query-safe characters of a value; everything else is percent-encoded, so
// a variable's bytes can never add or split an argument.
bool query_value_safe(char c) { return chars::kUnreserved(c) || (c != '&' && c != '=' && c != '+' && c != '#' && c != '%' && chars::kTarget(c)); }

char* put_encoded(char* p, std::string_view v) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : v) {
        if (query_value_safe(c)) {
            *p++ = c;
        } else {
            *p++ = '%';
            *p++ = kHex[(unsigned char)c >> 4];
            *p++ = kHex[(unsigned char)c & 15];
        }
    }
    return p;
}

std::string_view edit_args(Request& r, std::string_view args, const std::vector<ProxyArgEdit>& edits) {
    if (edits.empty()) return args;
    // As many values as edits (the configuration sets no limit), in the arena.
    auto* values = static_cast<std::string_view*>(
        r.arena()->allocate(sizeof(std::string_view) * edits.size(), alignof(std::string_view)));
    size_t cap = args.size() + 1;
    for (size_t i = 0; i < edits.size(); ++i) {
        values[i] = {};
        if (edits[i].remove) continue;
        values[i] = edits[i].value.eval(r);
        cap += edits[i].name.size() + 2 + 3 * values[i].size();
    }
    char* out = static_cast<char*>(r.arena()->allocate(cap, 1));
    char* p = out;
    while (!args.empty()) {
        size_t amp = args.find('&');
        std::string_view item = args.substr(0, amp);
        if (!item.empty() && !edited(item, edits)) {
            if (p != out) *p++ = '&';
            p = put(p, item);
        }
        if (amp == std::string_view::npos) break;
        args.remove_prefix(amp + 1);
    }
    for (size_t i = 0; i < edits.size(); ++i) {
        // An empty value removes the argument, as an empty proxy_set_header does.
        if (edits[i].remove || values[i].empty()) continue;
        if (p != out) *p++ = '&';
        p = put(p, edits[i].name);
        *p++ = '=';
        p = put_encoded(p, values[i]);
    }
    return {out, size_t(p - out)};
}

std::string_view request_path(ProxyCtx& ctx, std::string_view url_uri, bool has_url_uri) {
    Request& r = *ctx.r;
    const ProxyTarget& t = *ctx.conf->target;
    if (t.has_variables) return has_url_uri ? url_uri : r.uri();
    if (!t.has_uri) return r.uri();
    std::string_view uri = r.uri();
    const std::string& prefix = t.location_prefix;
    if (uri.size() < prefix.size() || uri.compare(0, prefix.size(), prefix) != 0) return uri;
    std::string_view rest = uri.substr(prefix.size());
    size_t n = t.uri.size() + rest.size();
    char* p = static_cast<char*>(r.arena()->allocate(n ? n : 1, 1));
    put(put(p, t.uri), rest);
    return {p, n};
}

// ---- the buffered body ----

int open_temp_file(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) {
        ::mkdir(dir.c_str(), 0700);
        fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    }
    if (fd >= 0) return fd;
    if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
        // No O_TMPFILE on this filesystem: a named file, unlinked at once.
        std::string tmpl = dir + "/XXXXXXXXXX";
        fd = mkostemp(tmpl.data(), O_CLOEXEC);
        if (fd >= 0) ::unlink(tmpl.c_str());
    }
    return fd;
}

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        data.remove_prefix(size_t(n));
    }
    return true;
}

bool buffer_body(ProxyCtx& ctx, std::string_view data) {
    Request& r = *ctx.r;
    if (!ctx.body_mem && ctx.body_file < 0) {
        const RequestHead& h = r.head();
        size_t cap = size_t(*ctx.conf->client_body_buffer_size);
        if (h.body == RequestHead::Body::Length && h.content_length <= kSmallBodyInArena) {
            cap = size_t(h.content_length);
            ctx.body_mem = static_cast<char*>(r.arena()->allocate(cap ? cap : 1, 1));
        } else if (cap > 0) {
            ctx.body_mem = proxy_block_get(cap);
            ctx.body_mem_pooled = true;
        }
        ctx.body_mem_cap = cap;
    }
    size_t take = std::min(data.size(), ctx.body_mem_cap - ctx.body_mem_len);
    if (take) {
        memcpy(ctx.body_mem + ctx.body_mem_len, data.data(), take);
        ctx.body_mem_len += take;
        data.remove_prefix(take);
    }
    if (data.empty()) return true;
    if (ctx.body_file < 0) {
        ctx.body_file = open_temp_file(*ctx.conf->client_body_temp_path);
        if (ctx.body_file < 0) {
            proxy_log(ctx, LogLevel::Crit, errno, "cannot create a temporary file in \"%s\" for the request body",
                      ctx.conf->client_body_temp_path->c_str());
            return false;
        }
        proxy_log(ctx, LogLevel::Info, 0, "a client request body is buffered to a temporary file");
    }
    if (!write_all(ctx.body_file, data)) {
        proxy_log(ctx, LogLevel::Crit, errno, "write() to the request body's temporary file failed");
        return false;
    }
    ctx.body_file_len += data.size();
    return true;
}

// ---- sending ----

enum class Wrote { All, Blocked, Failed };

Wrote write_vec(ProxyCtx& ctx, iovec* iov, int cnt, size_t& written) {
    ssize_t n = proxy_writev(ctx, iov, cnt);
    if (n >= 0) {
        written = size_t(n);
        size_t total = 0;
        for (int i = 0; i < cnt; ++i) total += iov[i].iov_len;
        return written == total ? Wrote::All : Wrote::Blocked;
    }
    written = 0;
    if (errno == EAGAIN || errno == EINTR) return Wrote::Blocked;
    return Wrote::Failed;
}

void request_written(ProxyCtx& ctx) {
    ctx.request_sent = true;
    proxy_want_write(ctx, false);
    proxy_disarm_timer(ctx, ProxyTimer::Send);
    if (!ctx.head_done) proxy_arm_timer(ctx, ProxyTimer::Read, *ctx.conf->read_timeout_ms);
}

bool blocked(ProxyCtx& ctx) {
    proxy_want_write(ctx, true);
    proxy_arm_timer(ctx, ProxyTimer::Send, *ctx.conf->send_timeout_ms);
    return true;
}

// sendfile(2) cannot encrypt: the file's bytes go through TLS from a buffer.
// A write that must wait is retried from the same offset, so OpenSSL gets
// the same bytes again, as it requires.
ssize_t send_file_tls(ProxyCtx& ctx, off_t off, size_t want) {
    char buf[tls::kRecordSize];
    ssize_t got = ::pread(ctx.body_file, buf, std::min(want, sizeof buf), off);
    if (got <= 0) {
        if (got == 0) errno = EIO;
        return -1;
    }
    iovec iov{buf, size_t(got)};
    return proxy_writev(ctx, &iov, 1);
}

// Head, then the buffered body (memory, then the file): one logical stream.
bool send_buffered(ProxyCtx& ctx) {
    const uint64_t body_total = ctx.body_mem_len + ctx.body_file_len;
    for (;;) {
        if (ctx.head_sent < ctx.head.size() || ctx.body_sent < ctx.body_mem_len) {
            iovec iov[2];
            int cnt = 0;
            if (ctx.head_sent < ctx.head.size())
                iov[cnt++] = {const_cast<char*>(ctx.head.data()) + ctx.head_sent, ctx.head.size() - ctx.head_sent};
            if (ctx.body_sent < ctx.body_mem_len)
                iov[cnt++] = {ctx.body_mem + ctx.body_sent, ctx.body_mem_len - ctx.body_sent};
            size_t n = 0;
            Wrote w = write_vec(ctx, iov, cnt, n);
            size_t to_head = std::min<size_t>(n, ctx.head.size() - ctx.head_sent);
            ctx.head_sent += to_head;
            ctx.body_sent += n - to_head;
            if (w == Wrote::Failed) {
                proxy_fail(ctx, kFtError, "writev() failed while sending request to upstream", errno);
                return false;
            }
            if (w == Wrote::Blocked) return blocked(ctx);
            continue;
        }
        if (ctx.body_sent < body_total) {
            off_t off = off_t(ctx.body_sent - ctx.body_mem_len);
            size_t want = size_t(std::min<uint64_t>(body_total - ctx.body_sent, kMaxSendfileChunk));
            ssize_t n = ctx.ssl ? send_file_tls(ctx, off, want) : ::sendfile(ctx.fd, ctx.body_file, &off, want);
            if (n > 0) {
                ctx.body_sent += uint64_t(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return blocked(ctx);
            proxy_fail(ctx, kFtError, "sendfile() failed while sending request to upstream", n < 0 ? errno : EIO);
            return false;
        }
        request_written(ctx);
        return true;
    }
}

bool flush_stage(ProxyCtx& ctx) {
    while (ctx.stage_off < ctx.stage_len) {
        iovec iov{ctx.stage + ctx.stage_off, ctx.stage_len - ctx.stage_off};
        ssize_t n = ctx.ssl ? proxy_writev(ctx, &iov, 1) : ::write(ctx.fd, iov.iov_base, iov.iov_len);
        if (n > 0) {
            ctx.stage_off += size_t(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return blocked(ctx);
        proxy_fail(ctx, kFtError, "write() failed while sending request to upstream", n < 0 ? errno : EIO);
        return false;
    }
    ctx.stage_off = ctx.stage_len = 0;
    return true;
}

void stage_bytes(ProxyCtx& ctx, const iovec* iov, int cnt, size_t skip) {
    size_t need = 0;
    for (int i = 0; i < cnt; ++i) need += iov[i].iov_len;
    need -= skip;
    if (need > ctx.stage_cap) {
        // Bounded by the largest piece the core hands over (its read buffer).
        ctx.stage_cap = std::max(need, size_t(16384));
        ctx.stage = static_cast<char*>(ctx.r->arena()->allocate(ctx.stage_cap, 1));
    }
    size_t at = 0;
    for (int i = 0; i < cnt; ++i) {
        const char* p = static_cast<const char*>(iov[i].iov_base);
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(ctx.stage + at, p + skip, len - skip);
        at += len - skip;
        skip = 0;
    }
    ctx.stage_off = 0;
    ctx.stage_len = at;
}

// Streams body bytes (or the chunked terminator) to the upstream; false to
// pause the client's body until the socket drains.
bool stream_out(ProxyCtx& ctx, std::string_view data, bool last) {
    char size_line[24];
    iovec iov[3];
    int cnt = 0;
    const bool chunked = ctx.body_mode == ProxyBodyMode::StreamChunked;
    if (chunked && !data.empty()) {
        int len = snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
        iov[cnt++] = {size_line, size_t(len)};
    }
    if (!data.empty()) iov[cnt++] = {const_cast<char*>(data.data()), data.size()};
    if (chunked) {
        std::string_view tail = last ? (data.empty() ? "0\r\n\r\n" : "\r\n0\r\n\r\n") : "\r\n";
        iov[cnt++] = {const_cast<char*>(tail.data()), tail.size()};
    }
    if (cnt == 0) return true;
    size_t n = 0;
    Wrote w = write_vec(ctx, iov, cnt, n);
    if (w == Wrote::All) return true;
    if (w == Wrote::Failed) {
        proxy_fail(ctx, kFtError, "writev() failed while sending request body to upstream", errno);
        return false;
    }
    stage_bytes(ctx, iov, cnt, n);
    blocked(ctx);
    return false;
}

void start_streaming_body(ProxyCtx& ctx) {
    ctx.body_started = true;
    ctx.r->read_body(&ctx.reader);
}

bool send_streaming(ProxyCtx& ctx) {
    if (ctx.head_sent < ctx.head.size()) {
        iovec iov{const_cast<char*>(ctx.head.data()) + ctx.head_sent, ctx.head.size() - ctx.head_sent};
        size_t n = 0;
        Wrote w = write_vec(ctx, &iov, 1, n);
        ctx.head_sent += n;
        if (w == Wrote::Failed) {
            proxy_fail(ctx, kFtError, "writev() failed while sending request to upstream", errno);
            return false;
        }
        if (w == Wrote::Blocked) return blocked(ctx);
    }
    if (!ctx.body_started) {
        proxy_want_write(ctx, false);
        proxy_disarm_timer(ctx, ProxyTimer::Send);
        start_streaming_body(ctx);  // may deliver the whole body at once
        return true;
    }
    if (!flush_stage(ctx)) return false;
    if (ctx.body_done) {
        request_written(ctx);
        return true;
    }
    proxy_want_write(ctx, false);
    proxy_disarm_timer(ctx, ProxyTimer::Send);
    if (ctx.body_paused) {
        ctx.body_paused = false;
        ctx.r->resume_body();
    }
    return true;
}

}  // namespace

// ---- the body reader ----

bool ProxyBodyReader::on_body_data(Request&, std::string_view data) {
    ProxyCtx& c = *ctx;
    // Once the response is over, the rest of the body is the core's to discard.
    if (c.finished) return false;
    if (c.body_mode == ProxyBodyMode::Buffered) {
        if (buffer_body(c, data)) return true;
        proxy_finish(c, 500);
        return false;
    }
    // Going up, the body has its own timeout (proxy_send_timeout, armed
    // when the socket does not take it); it never delays proxy_read_timeout.
    if (stream_out(c, data, false)) return true;
    c.body_paused = true;
    return false;
}

void ProxyBodyReader::on_body_end(Request&, int status) {
    ProxyCtx& c = *ctx;
    if (c.finished) return;
    if (status != 0) {
        // 400, 408, 413 or 499: the client's body is broken; so is what the
        // upstream got of it.
        proxy_finish(c, status);
        return;
    }
    c.body_done = true;
    if (c.body_mode == ProxyBodyMode::Buffered) {
        proxy_body_buffered(c);
        return;
    }
    proxy_watch_client(c);
    if (c.body_mode == ProxyBodyMode::StreamChunked && !stream_out(c, {}, true)) {
        c.body_paused = true;
        return;  // the terminator went to the stage; send_streaming finishes it
    }
    if (!c.finished && c.stage_off == c.stage_len) request_written(c);
}

// ---- public ----

ProxyBodyMode proxy_body_mode(const ProxyCtx& ctx) {
    const Request& r = *ctx.r;
    if (!r.body_expected()) return ProxyBodyMode::None;
    const bool chunked = r.head().body == RequestHead::Body::Chunked;
    // An HTTP/1.0 upstream cannot take chunked: the length must be known first.
    if (*ctx.conf->request_buffering || (chunked && *ctx.conf->http_minor == 0)) return ProxyBodyMode::Buffered;
    return chunked ? ProxyBodyMode::StreamChunked : ProxyBodyMode::Stream;
}

std::string_view proxy_add_x_forwarded_for(Request& r) {
    size_t total = 0, count = 0;
    for (const Header& h : r.head().headers) {
        if (!field_name_is(h.name, "x-forwarded-for")) continue;
        total += h.value.size() + 2;
        ++count;
    }
    std::string_view addr = r.remote_addr();
    if (count == 0) return addr;
    char* out = static_cast<char*>(r.arena()->allocate(total + addr.size(), 1));
    char* p = out;
    for (const Header& h : r.head().headers) {
        if (!field_name_is(h.name, "x-forwarded-for")) continue;
        p = put(p, h.value);
        p = put(p, ", ");
    }
    p = put(p, addr);
    return {out, size_t(p - out)};
}

std::string_view proxy_request_uri(ProxyCtx& ctx, std::string_view url_uri, bool has_url_uri) {
    Request& r = *ctx.r;
    std::string_view path = request_path(ctx, url_uri, has_url_uri);
    std::string_view args = edit_args(r, r.args(), *ctx.conf->args);
    if (args.empty()) return path;
    size_t n = path.size() + 1 + args.size();
    char* p = static_cast<char*>(r.arena()->allocate(n, 1));
    char* q = put(p, path);
    *q++ = '?';
    put(q, args);
    return {p, n};
}

bool proxy_build_request(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    const ProxyLocConf& conf = *ctx.conf;
    const std::vector<ProxyHeader>& set = *conf.headers;
    std::string_view method = r.method() == Method::Unknown ? r.method_name() : method_name(r.method());
    if (ctx.cache) method = proxy_cache_upstream_method(ctx, method);
    ctx.head_upstream = method == "HEAD";
    std::string_view version = *conf.http_minor == 1 ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n";
    size_t total = method.size() + 1 + ctx.uri.size() + version.size() + 2;

    auto* values = static_cast<std::string_view*>(
        r.arena()->allocate(sizeof(std::string_view) * (set.size() + 1), alignof(std::string_view)));
    ctx.asked_close = *conf.http_minor == 0;
    ctx.sent_authorization = false;
    ctx.upgrade_requested = false;
    for (size_t i = 0; i < set.size(); ++i) {
        std::string_view v = set[i].value.eval(r);
        if (!safe_value(v)) {
            proxy_log(ctx, LogLevel::Error, 0, "the value of header \"%s\" has CR, LF or NUL; the header is not sent",
                      set[i].name.c_str());
            v = {};
        }
        // An h2c upgrade is never passed on: the gateway speaks HTTP/1.1 to
        // the upstream, and a switch would hand the client a raw tunnel.
        if (set[i].lower == "upgrade" && has_token(v, "h2c")) v = {};
        values[i] = v;
        if (v.empty()) continue;
        if (set[i].lower == "authorization") ctx.sent_authorization = true;
        total += set[i].name.size() + 4 + v.size();
        if (set[i].lower == "connection" && has_token(v, "close")) ctx.asked_close = true;
        if (set[i].lower == "upgrade" && *conf.http_minor == 1) ctx.upgrade_requested = true;
    }

    char length[48];
    std::string_view framing;
    if (ctx.body_mode == ProxyBodyMode::Buffered) {
        int n = snprintf(length, sizeof length, "Content-Length: %llu\r\n",
                         static_cast<unsigned long long>(ctx.body_mem_len + ctx.body_file_len));
        framing = {length, size_t(n)};
    } else if (ctx.body_mode == ProxyBodyMode::Stream) {
        int n = snprintf(length, sizeof length, "Content-Length: %llu\r\n",
                         static_cast<unsigned long long>(r.head().content_length));
        framing = {length, size_t(n)};
    } else if (ctx.body_mode == ProxyBodyMode::StreamChunked) {
        framing = "Transfer-Encoding: chunked\r\n";
    }
    total += framing.size();
    const std::string_view cache_extra = ctx.cache ? proxy_cache_request_headers(ctx) : std::string_view();
    total += cache_extra.size();

    std::string_view tokens[kMaxConnectionTokens];
    size_t ntokens = 0;
    const auto& in = r.head().headers;
    auto* pass = static_cast<const Header**>(r.arena()->allocate(sizeof(Header*) * (in.size() + 1), alignof(Header*)));
    size_t npass = 0;
    if (*conf.pass_request_headers) {
        ntokens = connection_tokens(r, tokens);
        for (const Header& h : in) {
            if (!forwarded(h.name, set, tokens, ntokens)) continue;
            if (ctx.cache && proxy_cache_skips_request_header(ctx, h.name)) continue;
            if (h.name.size() == 13 && field_name_is(h.name, "authorization")) ctx.sent_authorization = true;
            pass[npass++] = &h;
            total += h.name.size() + 4 + h.value.size();
        }
    }

    char* out = static_cast<char*>(r.arena()->allocate(total, 1));
    char* p = put(out, method);
    *p++ = ' ';
    p = put(p, ctx.uri);
    p = put(p, version);
    for (size_t i = 0; i < set.size(); ++i)
        if (!values[i].empty()) p = put_header(p, set[i].name, values[i]);
    p = put(p, framing);
    p = put(p, cache_extra);
    for (size_t i = 0; i < npass; ++i) p = put_header(p, pass[i]->name, pass[i]->value);
    *p++ = '\r';
    *p++ = '\n';
    ctx.head = {out, size_t(p - out)};
    return true;
}

bool proxy_send(ProxyCtx& ctx) {
    if (ctx.body_mode == ProxyBodyMode::Stream || ctx.body_mode == ProxyBodyMode::StreamChunked)
        return send_streaming(ctx);
    return send_buffered(ctx);
}

void proxy_rewind_request(ProxyCtx& ctx) {
    ctx.head_sent = 0;
    ctx.body_sent = 0;
    ctx.request_sent = false;
    ctx.stage_off = ctx.stage_len = 0;
}

void proxy_release_body(ProxyCtx& ctx) {
    if (ctx.body_mem_pooled) proxy_block_put(ctx.body_mem, ctx.body_mem_cap);
    ctx.body_mem = nullptr;
    ctx.body_mem_pooled = false;
    if (ctx.body_file >= 0) ::close(ctx.body_file);
    ctx.body_file = -1;
}

}  // namespace sluice::http
