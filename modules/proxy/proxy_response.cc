// The upstream's response: its head parsed strictly (anything doubtful is a
// 502 and the connection is never reused), its headers mapped to the
// client's response, and its body relayed as it arrives through a window of
// proxy_buffers (proxy_buffer_size without proxy_buffering): reading pauses
// while the client has not taken what the window holds.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "core/log.h"
#include "core/str.h"
#include "http/http_connection.h"
#include "proxy.h"

namespace sluice::http {

namespace {

constexpr size_t kMaxConnectionTokens = 16;

bool is_hop_by_hop(std::string_view n) {
    switch (n.size()) {
    case 2: return field_name_is(n, "te");
    case 7: return field_name_is(n, "upgrade") || field_name_is(n, "trailer");
    case 10: return field_name_is(n, "connection") || field_name_is(n, "keep-alive");
    case 14: return field_name_is(n, "content-length");
    case 16: return field_name_is(n, "proxy-connection");
    case 17: return field_name_is(n, "transfer-encoding");
    default: return false;
    }
}

bool hidden(const ProxyHiddenHeaders& h, std::string_view name) {
    if (istarts_with(name, "x-accel-")) {
        for (const std::string& n : h.passed_x_accel)
            if (field_name_is(name, n)) return false;
        return true;
    }
    for (const std::string& n : h.names)
        if (n.size() == name.size() && field_name_is(name, n)) return true;
    return false;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

size_t connection_tokens(const ResponseHead& h, std::string_view* out) {
    size_t n = 0;
    for (const Header& f : h.headers) {
        if (!field_name_is(f.name, "connection")) continue;
        std::string_view list = f.value;
        while (!list.empty() && n < kMaxConnectionTokens) {
            size_t comma = list.find(',');
            std::string_view t = trim_ows(list.substr(0, comma));
            if (!t.empty()) out[n++] = t;
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }
    return n;
}

bool named_in(std::string_view name, const std::string_view* tokens, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (iequals(tokens[i], name)) return true;
    return false;
}

// IMF-fixdate (RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT"; -1 otherwise.
int64_t parse_http_date(std::string_view s) {
    static constexpr std::string_view kMonths = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (s.size() != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || s.substr(25) != " GMT")
        return -1;
    auto num = [&](size_t at, size_t len, int& out) {
        out = 0;
        for (size_t i = at; i < at + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return false;
            out = out * 10 + (s[i] - '0');
        }
        return true;
    };
    int day, year, hour, min, sec;
    size_t mon = kMonths.find(s.substr(8, 3));
    if (mon == std::string_view::npos || mon % 3 != 0 || !num(5, 2, day) || !num(12, 4, year) ||
        !num(17, 2, hour) || !num(20, 2, min) || !num(23, 2, sec))
        return -1;
    if (day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60 || year < 1970) return -1;
    tm t{};
    t.tm_year = year - 1900;
    t.tm_mon = int(mon / 3);
    t.tm_mday = day;
    t.tm_hour = hour;
    t.tm_min = min;
    t.tm_sec = sec;
    return int64_t(timegm(&t));
}

int64_t parse_length(std::string_view v) {
    if (v.empty() || v.size() > 18) return -1;
    int64_t n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return -1;
        n = n * 10 + (c - '0');
    }
    return n;
}

bool has_error_page(Request& r, int status) {
    const auto* pages = r.core_conf().effective_error_pages();
    if (!pages) return false;
    for (const ErrorPage& p : *pages)
        if (p.status == status) return true;
    return false;
}

// The head moves into the arena so the window is free for the body and
// the headers outlive it (the log phase reads $sent_http_*).
void keep_head(ProxyCtx& ctx) {
    ResponseHead& h = *ctx.resp;
    char* copy = static_cast<char*>(ctx.r->arena()->allocate(h.head_length, 1));
    memcpy(copy, ctx.block, h.head_length);
    auto rebase = [&](std::string_view v) {
        return v.empty() ? v : std::string_view(copy + (v.data() - ctx.block), v.size());
    };
    h.reason = rebase(h.reason);
    for (Header& f : h.headers) {
        f.name = rebase(f.name);
        f.value = rebase(f.value);
    }
}

void map_headers(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    const ResponseHead& h = *ctx.resp;
    HeadersOut& out = r.headers_out();
    std::string_view tokens[kMaxConnectionTokens];
    size_t ntokens = connection_tokens(h, tokens);
    const ProxyHiddenHeaders& hide = *ctx.conf->hidden;
    out.status = h.status;
    if (status_reason(h.status).empty() && !h.reason.empty()) out.status_line = h.reason;
    int64_t length = -1;
    for (const Header& f : h.headers) {
        std::string_view n = f.name;
        if (field_name_is(n, "content-length")) length = parse_length(f.value);
        if (is_hop_by_hop(n) || hidden(hide, n) || named_in(n, tokens, ntokens)) continue;
        if (field_name_is(n, "content-type") && out.content_type.empty()) out.content_type = f.value;
        else if (field_name_is(n, "location") && out.location.empty()) out.location = f.value;
        else if (field_name_is(n, "etag") && out.etag.empty()) out.etag = f.value;
        else if (field_name_is(n, "last-modified") && out.last_modified < 0 && (out.last_modified = parse_http_date(f.value)) >= 0) {}
        else out.add(n, f.value);
    }
    using Body = ResponseHead::Body;
    if (h.body == Body::Length) out.content_length = int64_t(h.content_length);
    else if (h.body == Body::None && r.method() == Method::Head) out.content_length = length;  // what a GET would get
    else out.content_length = -1;  // chunked or until close: the core frames it for the client
}

// ---- the body ----

void pause_reading(ProxyCtx& ctx) {
    ctx.paused = true;
    proxy_want_read(ctx, false);
    proxy_disarm_timer(ctx, ProxyTimer::Read);  // the client is slow, not the upstream: send_timeout applies
}

void decide_reuse(ProxyCtx& ctx) {
    ctx.reusable = ctx.upstream->keepalive > 0 && ctx.resp->keep_alive && !ctx.asked_close && ctx.request_sent &&
                   !ctx.extra_bytes;
}

// Turns bytes of the window into body pieces for the client; false when
// the response ended (or failed) and nothing more is to be read.
bool relay_data(ProxyCtx& ctx, const char* p, size_t n) {
    Request& r = *ctx.r;
    BodyChain& chain = *ctx.chain;
    chain.bufs.clear();
    chain.last = false;
    chain.flush = !*ctx.conf->buffering;  // as nginx's unbuffered relay flushes each read
    bool bad_chunk = false;
    using Body = ResponseHead::Body;
    switch (ctx.resp->body) {
    case Body::Length: {
        size_t take = size_t(std::min<uint64_t>(n, ctx.body_left));
        if (take) chain.bufs.push_back({{p, take}});
        ctx.body_left -= take;
        if (n > take) ctx.extra_bytes = true;
        chain.last = ctx.body_left == 0;
        break;
    }
    case Body::Chunked:
        while (n > 0) {
            size_t used = 0;
            std::string_view data;
            auto st = ctx.decoder.decode(p, n, used, data);
            p += used;
            n -= used;
            if (st == ChunkedDecoder::Status::Data) {
                if (!data.empty()) chain.bufs.push_back({data});
                continue;
            }
            if (st == ChunkedDecoder::Status::Done) {
                chain.last = true;
                if (n > 0) ctx.extra_bytes = true;
            } else if (st == ChunkedDecoder::Status::Error) {
                bad_chunk = true;
            }
            break;
        }
        break;
    case Body::UntilClose:
        if (n) chain.bufs.push_back({{p, n}});
        break;
    case Body::None:
        if (n) ctx.extra_bytes = true;
        chain.last = true;
        break;
    }
    if (ctx.cache) {
        for (const BodyBuf& b : chain.bufs) proxy_cache_body(ctx, b.data);
        // Stored before the client gets the last byte: a client that asks
        // again at once, in any worker, finds the entry.
        if (chain.last) proxy_cache_complete(ctx);
    }
    if ((!chain.bufs.empty() || chain.last) && !ctx.sink && !r.send_body(chain)) {
        proxy_finish(ctx, 0);  // the client is gone
        return false;
    }
    if (bad_chunk) {
        proxy_fail(ctx, kFtInvalidHeader, "upstream sent invalid chunked response while reading upstream", 0);
        return false;
    }
    if (chain.last) {
        decide_reuse(ctx);
        proxy_response_complete(ctx);
        return false;
    }
    return true;
}

void relay(ProxyCtx& ctx) {
    ctx.in_relay = true;
    for (;;) {
        // The window is free again once the client took everything it held
        // (the cache copies what it stores at once).
        if (ctx.sink || ctx.r->output_pending() == 0) ctx.used = 0;
        size_t space = ctx.block_size - ctx.used;
        if (space == 0) {
            pause_reading(ctx);
            break;
        }
        ssize_t n = proxy_read(ctx, ctx.block + ctx.used, space);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            proxy_fail(ctx, kFtError, "recv() failed while reading upstream", errno);
            break;
        }
        if (n == 0) {
            if (ctx.resp->body == ResponseHead::Body::UntilClose) {
                ctx.upstream_eof = true;
                BodyChain& chain = *ctx.chain;
                chain.bufs.clear();
                chain.last = true;
                if (ctx.cache) proxy_cache_complete(ctx);  // before the client's last byte, as in relay_data
                if (!ctx.sink && !ctx.r->send_body(chain)) {
                    proxy_finish(ctx, 0);
                    break;
                }
                proxy_response_complete(ctx);
                break;
            }
            proxy_fail(ctx, kFtError, "upstream prematurely closed connection while reading upstream", 0);
            break;
        }
        ctx.attempt->bytes_received += uint64_t(n);
        proxy_arm_timer(ctx, ProxyTimer::Read, *ctx.conf->read_timeout_ms);
        char* data = ctx.block + ctx.used;
        ctx.used += size_t(n);
        if (!relay_data(ctx, data, size_t(n))) break;
        if (size_t(n) < space) break;  // the socket is most likely empty: wait for the next event
    }
    ctx.in_relay = false;
}

// ---- the head ----

void send_upgrade(ProxyCtx& ctx) {
    const ResponseHead& h = *ctx.resp;
    const ProxyHiddenHeaders& hide = *ctx.conf->hidden;
    auto passes = [&](std::string_view n) {
        return field_name_is(n, "upgrade") || (!is_hop_by_hop(n) && !hidden(hide, n));
    };
    constexpr std::string_view kStatus = "HTTP/1.1 101 Switching Protocols\r\n";
    constexpr std::string_view kConnection = "Connection: upgrade\r\n\r\n";
    // The gateway's Server and Date, as on every response it sends, unless
    // proxy_pass_header lets the upstream's stand for them.
    bool has_server = false, has_date = false;
    size_t extra = ctx.head_filled - h.head_length;
    size_t total = kStatus.size() + kConnection.size() + extra;
    for (const Header& f : h.headers) {
        if (!passes(f.name)) continue;
        total += f.name.size() + f.value.size() + 4;
        if (field_name_is(f.name, "server")) has_server = true;
        else if (field_name_is(f.name, "date")) has_date = true;
    }
    std::string_view server = has_server ? std::string_view() : server_header_value(*ctx.r);
    std::string_view date = has_date ? std::string_view() : http_date_now();
    if (!has_server) total += 8 + server.size() + 2;
    if (!has_date) total += 6 + date.size() + 2;
    char* out = static_cast<char*>(ctx.r->arena()->allocate(total, 1));
    char* p = out;
    auto put = [&](std::string_view s) {
        if (s.empty()) return;
        memcpy(p, s.data(), s.size());
        p += s.size();
    };
    put(kStatus);
    if (!has_server) {
        put("Server: ");
        put(server);
        put("\r\n");
    }
    if (!has_date) {
        put("Date: ");
        put(date);
        put("\r\n");
    }
    for (const Header& f : h.headers) {
        if (!passes(f.name)) continue;
        put(f.name);
        put(": ");
        put(f.value);
        put("\r\n");
    }
    put(kConnection);
    put({ctx.block + h.head_length, extra});
    proxy_start_tunnel(ctx, {out, size_t(p - out)});
}

void handle_head(ProxyCtx& ctx) {
    Request& r = *ctx.r;
    ResponseHead& h = *ctx.resp;
    ctx.attempt->header_ms = current_msec();
    ctx.attempt->status = h.status;
    if (h.status == 101) {
        if (ctx.upgrade_requested && r.head().upgrade) return send_upgrade(ctx);
        proxy_fail(ctx, kFtInvalidHeader, "upstream sent unexpected 101 while reading response header from upstream", 0);
        return;
    }
    if (h.other_codings && h.body != ResponseHead::Body::None) {
        // The body would reach the client re-framed but still gzip- (or
        // deflate-) coded, with nothing saying so.
        proxy_fail(ctx, kFtInvalidHeader,
                   "upstream sent a transfer coding other than chunked while reading response header from upstream", 0);
        return;
    }
    uint32_t ft = proxy_status_failure(h.status);
    if (ft && proxy_retry_status(ctx, ft, h.status)) return;
    if (ctx.cache && proxy_cache_on_head(ctx)) {
        // The cache answered (a revalidated entry, or a stale one instead
        // of an error status): this response goes no further.
        ctx.attempt->end_ms = current_msec();
        proxy_finish(ctx, r.status());
        return;
    }
    if (!ctx.sink && *ctx.conf->intercept_errors && h.status >= 300 && has_error_page(r, h.status)) {
        ctx.attempt->end_ms = current_msec();
        proxy_finish(ctx, h.status);
        return;
    }
    ctx.head_done = true;
    // An upstream that answers before it has the whole request body (an
    // echo, a streaming RPC) still reads it: the body keeps flowing while
    // the response does. Should the response end first, the rest of the
    // body is the core's to discard and the connection is not reused.
    keep_head(ctx);
    if (h.body == ResponseHead::Body::Chunked) ctx.decoder.reset();
    ctx.body_left = h.content_length;
    r.set_drain_handler(proxy_on_drain, &ctx);
    if (!ctx.sink) {
        map_headers(ctx);
        if (!r.send_header()) {
            proxy_finish(ctx, 0);
            return;
        }
        // A head without body bytes yet goes to the client now: the body may be
        // long in coming (a stream, an echo waiting for the request body).
        if (ctx.head_filled == h.head_length && h.body != ResponseHead::Body::None && !r.connection().flush()) {
            proxy_finish(ctx, 0);
            return;
        }
    }
    proxy_arm_timer(ctx, ProxyTimer::Read, *ctx.conf->read_timeout_ms);
    // Body bytes that came with the head are in the window after it.
    ctx.used = ctx.head_filled;
    ctx.in_relay = true;
    bool more = relay_data(ctx, ctx.block + h.head_length, ctx.head_filled - h.head_length);
    ctx.in_relay = false;
    if (more) relay(ctx);
}

size_t window_size(const ProxyLocConf& conf) {
    size_t head = size_t(*conf.buffer_size);
    if (!*conf.buffering) return head;
    return std::max(head, size_t(*conf.buffers_num * *conf.buffers_size));
}

void read_head(ProxyCtx& ctx) {
    const ProxyLocConf& conf = *ctx.conf;
    if (!ctx.block) {
        ctx.block_size = window_size(conf);
        ctx.block = proxy_block_get(ctx.block_size);
    }
    const size_t limit = size_t(*conf.buffer_size);
    ssize_t n = proxy_read(ctx, ctx.block + ctx.head_filled, limit - ctx.head_filled);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        proxy_fail(ctx, kFtError, "recv() failed while reading response header from upstream", errno);
        return;
    }
    if (n == 0) {
        proxy_fail(ctx, kFtError, "upstream prematurely closed connection while reading response header from upstream", 0);
        return;
    }
    ctx.attempt->bytes_received += uint64_t(n);
    ctx.head_filled += size_t(n);
    if (ctx.request_sent) proxy_arm_timer(ctx, ProxyTimer::Read, *conf.read_timeout_ms);
    ParseLimits limits;
    limits.max_request_line = limit;
    limits.max_header_line = limit;
    limits.max_head = limit;
    for (;;) {
        ParseResult rc = parse_response_head(ctx.block, ctx.head_filled, limits, ctx.head_upstream, *ctx.resp);
        if (rc == ParseResult::Incomplete) {
            if (ctx.head_filled == limit)
                proxy_fail(ctx, kFtInvalidHeader, "upstream sent too big header while reading response header from upstream", 0);
            return;
        }
        if (rc == ParseResult::Error) {
            char what[160];
            snprintf(what, sizeof what, "upstream sent invalid header (%s) while reading response header from upstream",
                     ctx.resp->error_reason ? ctx.resp->error_reason : "bad head");
            proxy_fail(ctx, kFtInvalidHeader, what, 0);
            return;
        }
        const ResponseHead& h = *ctx.resp;
        if (h.status >= 200 || h.status == 101) break;
        // 100 Continue or 103 Early Hints: informational, skipped.
        memmove(ctx.block, ctx.block + h.head_length, ctx.head_filled - h.head_length);
        ctx.head_filled -= h.head_length;
        if (ctx.head_filled == 0) return;
    }
    handle_head(ctx);
}

}  // namespace

bool proxy_header_hidden(const ProxyHiddenHeaders& h, std::string_view name) { return hidden(h, name); }

uint32_t proxy_status_failure(int status) {
    switch (status) {
    case 500: return kFtHttp500;
    case 502: return kFtHttp502;
    case 503: return kFtHttp503;
    case 504: return kFtHttp504;
    case 403: return kFtHttp403;
    case 404: return kFtHttp404;
    case 429: return kFtHttp429;
    default: return 0;
    }
}

void proxy_on_readable(ProxyCtx& ctx) {
    if (ctx.finished) return;
    if (!ctx.head_done) read_head(ctx);
    else if (!ctx.paused) relay(ctx);
}

void proxy_on_drain(Request&, void* arg) {
    auto& ctx = *static_cast<ProxyCtx*>(arg);
    // Inside relay() the loop itself sees the window free again.
    if (ctx.finished || !ctx.head_done || ctx.in_relay || !ctx.paused) return;
    ctx.paused = false;
    ctx.used = 0;
    proxy_want_read(ctx, true);
    proxy_arm_timer(ctx, ProxyTimer::Read, *ctx.conf->read_timeout_ms);
    relay(ctx);
}

}  // namespace sluice::http
