// The gzip filters: which responses are compressed (nginx's
// ngx_http_gzip_header_filter and ngx_http_gzip_ok) and the streaming deflate
// of their bodies into a bounded set of output buffers.
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>

#include "accept_encoding.h"
#include "core/str.h"
#include "gzip.h"
#include "core/http_date.h"
#include "http/http_request.h"

namespace sluice::http {

namespace {

// ---- the decision ----

bool type_listed(const GzipLocConf& c, std::string_view content_type) {
    if (c.any_type) return true;
    std::string_view t = content_type.substr(0, content_type.find(';'));
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (t.empty()) return false;
    if (iequals(t, "text/html")) return true;
    for (const std::string& listed : *c.types)
        if (iequals(t, listed)) return true;
    return false;
}

// A directive's token in a comma-separated header (Cache-Control values).
bool lists_token(std::string_view value, std::string_view token) {
    while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        item = item.substr(0, item.find('='));
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (iequals(item, token)) return true;
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    }
    return false;
}

bool any_header_lists(const HeadersOut& out, std::string_view name, std::string_view token) {
    for (const Header& h : out.headers)
        if (iequals(h.name, name) && lists_token(h.value, token)) return true;
    return false;
}

bool accepts_gzip(const Request& r) {
    AcceptedCodings codings;
    for (const Header& h : r.head().headers)
        if (iequals(h.name, "accept-encoding")) parse_accept_encoding(h.value, codings);
    return gzip_acceptable(codings);
}

// nginx's r->headers_in.msie6: MSIE 4 to 6, except 6.0 with SV1 (XP SP2),
// which handles gzip.
bool is_msie6(std::string_view ua) {
    size_t at = ua.find("MSIE ");
    if (at == std::string_view::npos || at + 7 > ua.size()) return false;
    char major = ua[at + 5];
    if (major < '4' || major > '6' || ua[at + 6] != '.') return false;
    return major != '6' || ua.find("SV1", at) == std::string_view::npos;
}

bool disabled_for_agent(const Request& r, const GzipDisable& d) {
    std::string_view ua = r.header("User-Agent");
    if (d.msie6 && is_msie6(ua)) return true;
    for (const auto& re : d.user_agents)
        if (re->match(ua)) return true;
    return false;
}

// gzip_proxied, judged as nginx does when the request came through a proxy
// (it has a Via header).
bool proxied_allows(Request& r, unsigned p) {
    if (p & kProxiedOff) return false;
    if (p & kProxiedAny) return true;
    bool has_auth = false;
    r.header("Authorization", &has_auth);
    if (has_auth && (p & kProxiedAuth)) return true;
    const HeadersOut& out = r.headers_out();
    if (const Header* e = out.find("Expires")) {
        if (!(p & kProxiedExpired)) return false;
        int64_t expires = parse_http_date(e->value);
        if (expires < 0) return false;
        const Header* d = out.find("Date");
        int64_t date = d ? parse_http_date(d->value) : current_msec() / 1000;
        return expires < date;
    }
    if (out.find("Cache-Control")) {
        return ((p & kProxiedNoCache) && any_header_lists(out, "Cache-Control", "no-cache")) ||
               ((p & kProxiedNoStore) && any_header_lists(out, "Cache-Control", "no-store")) ||
               ((p & kProxiedPrivate) && any_header_lists(out, "Cache-Control", "private"));
    }
    if ((p & kProxiedNoLastModified) && out.last_modified >= 0) return false;
    if ((p & kProxiedNoEtag) && !out.etag.empty()) return false;
    return true;
}

// nginx's ngx_http_gzip_ok: what the request allows.
bool request_allows(Request& r, const GzipLocConf& c) {
    if (*c.http_version == 11 && r.http10()) return false;
    if (!accepts_gzip(r)) return false;
    if (c.disable && disabled_for_agent(r, *c.disable)) return false;
    bool via = false;
    r.header("Via", &via);
    return !via || proxied_allows(r, *c.proxied);
}

// What the response allows (the first half of ngx_http_gzip_header_filter),
// plus Cache-Control: no-transform (RFC 9110 7.7), which nginx ignores.
bool response_allows(Request& r, const GzipLocConf& c) {
    const HeadersOut& out = r.headers_out();
    int s = out.status;
    if (s != 200 && s != 403 && s != 404) return false;
    if (r.method() == Method::Head) return false;  // no body to compress (nginx's header_only)
    if (out.content_length >= 0 && uint64_t(out.content_length) < *c.min_length) return false;
    if (const Header* ce = out.find("Content-Encoding"); ce && !ce->value.empty()) return false;
    if (!type_listed(c, out.content_type)) return false;
    return !any_header_lists(out, "Cache-Control", "no-transform");
}

// Vary: Accept-Encoding once: merged into an existing Vary that lacks it.
void add_vary(Request& r) {
    HeadersOut& out = r.headers_out();
    for (Header& h : out.headers) {
        if (!iequals(h.name, "vary")) continue;
        if (lists_token(h.value, "accept-encoding") || lists_token(h.value, "*")) return;
    }
    for (Header& h : out.headers) {
        if (!iequals(h.name, "vary")) continue;
        std::string_view v = h.value;
        while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
        std::pmr::string merged(v, r.arena());
        merged.append(v.empty() ? "Accept-Encoding" : ", Accept-Encoding");
        h.value = r.copy(merged);
        return;
    }
    out.add("Vary", "Accept-Encoding");
}

// nginx's ngx_http_weak_etag: the compressed body is not byte-identical.
void weaken_etag(Request& r) {
    std::string_view& etag = r.headers_out().etag;
    if (etag.empty() || etag.starts_with("W/")) return;
    if (etag[0] != '"') {
        etag = {};
        return;
    }
    std::pmr::string weak("W/", r.arena());
    weak.append(etag);
    etag = r.copy(weak);
}

// ---- the compression ----

struct GzipCtx {
    z_stream zs;
    bool started = false;
    bool finished = false;
    bool input_ended = false;  // the producer's last piece arrived
    int level = 1;
    int wbits = MAX_WBITS;
    int memlevel = MAX_MEM_LEVEL - 1;
    size_t buffer_size = 4096;
    size_t buffers_num = 32;
    // Output buffers, reused once the connection has written them all.
    char** blocks = nullptr;
    size_t block_count = 0, block_capacity = 0;
    size_t block = 0, used = 0;  // where the next output goes
    // Input kept back to compress as the output drains (files, stable memory).
    BodyBuf* held = nullptr;
    size_t held_count = 0, held_capacity = 0, held_first = 0;
    char* read_buf = nullptr;  // a file's bytes on their way to deflate
    bool unbounded = false;    // this call must take all its input (the producer reuses it)
    uint64_t zin = 0, zout = 0;
};

void end_deflate(void* arg) {
    auto* ctx = static_cast<GzipCtx*>(arg);
    if (ctx->started) deflateEnd(&ctx->zs);
}

bool start_deflate(Request& r, GzipCtx& ctx) {
    memset(&ctx.zs, 0, sizeof ctx.zs);
    // windowBits + 16: zlib writes the gzip header and trailer.
    if (deflateInit2(&ctx.zs, ctx.level, Z_DEFLATED, ctx.wbits + 16, ctx.memlevel, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    ctx.started = true;
    r.add_cleanup(end_deflate, &ctx);
    return true;
}

template <class T> T* grow(Request& r, T* old, size_t count, size_t& capacity) {
    size_t cap = capacity ? capacity * 2 : 4;
    auto* p = static_cast<T*>(r.arena()->allocate(cap * sizeof(T), alignof(T)));
    if (count) memcpy(static_cast<void*>(p), old, count * sizeof(T));
    capacity = cap;
    return p;
}

// The buffer the next output goes to; a new one when all are in use.
char* output_room(Request& r, GzipCtx& ctx, size_t& room) {
    if (ctx.used == ctx.buffer_size) {
        ++ctx.block;
        ctx.used = 0;
    }
    if (ctx.block == ctx.block_count) {
        if (ctx.block_count == ctx.block_capacity)
            ctx.blocks = grow(r, ctx.blocks, ctx.block_count, ctx.block_capacity);
        ctx.blocks[ctx.block_count++] = static_cast<char*>(r.arena()->allocate(ctx.buffer_size, 16));
    }
    room = ctx.buffer_size - ctx.used;
    return ctx.blocks[ctx.block] + ctx.used;
}

void append_output(BodyChain& out, const char* p, size_t n) {
    if (n == 0) return;
    if (!out.bufs.empty()) {
        std::string_view& prev = out.bufs.back().data;
        if (prev.data() + prev.size() == p) {
            prev = {prev.data(), prev.size() + n};
            return;
        }
    }
    out.bufs.push_back({{p, n}});
}

// Runs deflate over `in` with `flush` until it has taken all of it (and,
// for Z_SYNC_FLUSH / Z_FINISH, written all it owes).
bool deflate_into(Request& r, GzipCtx& ctx, std::string_view in, int flush, BodyChain& out) {
    ctx.zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    ctx.zs.avail_in = uInt(in.size());
    do {
        size_t room;
        char* p = output_room(r, ctx, room);
        ctx.zs.next_out = reinterpret_cast<Bytef*>(p);
        ctx.zs.avail_out = uInt(room);
        int rc = deflate(&ctx.zs, flush);
        if (rc == Z_STREAM_ERROR) return false;
        size_t produced = room - ctx.zs.avail_out;
        append_output(out, p, produced);
        ctx.used += produced;
        if (rc == Z_STREAM_END) {
            ctx.finished = true;
            break;
        }
    } while (ctx.zs.avail_out == 0 || ctx.zs.avail_in > 0);
    ctx.zin += in.size();
    return true;
}

// Has this round used the buffers gzip_buffers grants? Then held input waits
// for the client.
bool budget_spent(const GzipCtx& ctx) {
    return !ctx.unbounded && ctx.block + 1 >= ctx.buffers_num && ctx.used > 0;
}

// Compresses one held piece within the budget; false on error. Leaves the
// rest of the piece in place.
bool compress_held(Request& r, GzipCtx& ctx, BodyBuf& b, BodyChain& out) {
    if (b.file_fd < 0) {
        while (!b.data.empty() && !budget_spent(ctx)) {
            std::string_view piece = ctx.unbounded ? b.data : b.data.substr(0, ctx.buffer_size);
            if (!deflate_into(r, ctx, piece, Z_NO_FLUSH, out)) return false;
            b.data.remove_prefix(piece.size());
        }
        return true;
    }
    if (!ctx.read_buf) ctx.read_buf = static_cast<char*>(r.arena()->allocate(ctx.buffer_size, 16));
    while (b.file_size > 0 && !budget_spent(ctx)) {
        size_t want = size_t(std::min<off_t>(b.file_size, off_t(ctx.buffer_size)));
        ssize_t got = ::pread(b.file_fd, ctx.read_buf, want, b.file_pos);
        if (got <= 0) return false;  // a read error, or the file shrank under us
        if (!deflate_into(r, ctx, {ctx.read_buf, size_t(got)}, Z_NO_FLUSH, out)) return false;
        b.file_pos += got;
        b.file_size -= got;
    }
    return true;
}

bool piece_done(const BodyBuf& b) { return b.file_fd >= 0 ? b.file_size == 0 : b.data.empty(); }

void hold(Request& r, GzipCtx& ctx, const BodyBuf& b) {
    if (ctx.held_first == ctx.held_count) ctx.held_first = ctx.held_count = 0;
    if (ctx.held_count == ctx.held_capacity) ctx.held = grow(r, ctx.held, ctx.held_count, ctx.held_capacity);
    ctx.held[ctx.held_count++] = b;
}

// Held pieces first, in order, as far as the budget goes; true when none is left.
bool drain_held(Request& r, GzipCtx& ctx, BodyChain& out, bool& ok) {
    while (ctx.held_first < ctx.held_count) {
        BodyBuf& b = ctx.held[ctx.held_first];
        if (!compress_held(r, ctx, b, out)) {
            ok = false;
            return false;
        }
        if (!piece_done(b)) return false;
        ++ctx.held_first;
    }
    return true;
}

}  // namespace

void gzip_memory_levels(int64_t content_length, int& wbits, int& memlevel) {
    wbits = MAX_WBITS;
    memlevel = MAX_MEM_LEVEL - 1;
    if (content_length <= 0) return;
    // zlib's actual window is 262 bytes smaller than 1 << wbits.
    while (wbits > 9 && content_length < (int64_t(1) << (wbits - 1)) - 262) {
        --wbits;
        --memlevel;
    }
    if (memlevel < 1) memlevel = 1;
}

bool gzip_header_filter(Request& r) {
    const auto& c = r.loc_conf<GzipLocConf>(gzip_module);
    if (!c.enable || !response_allows(r, c)) return true;
    // Every response that would be compressed for some client varies by
    // Accept-Encoding, the identity one included (a cache must not serve it
    // to a gzip client, nor the reverse).
    if (*c.vary) add_vary(r);
    if (!request_allows(r, c)) return true;

    auto* ctx = r.make<GzipCtx>();
    HeadersOut& out = r.headers_out();
    ctx->level = int(*c.comp_level);
    gzip_memory_levels(out.content_length, ctx->wbits, ctx->memlevel);
    ctx->buffer_size = size_t(*c.buffers_size);
    ctx->buffers_num = size_t(*c.buffers_num);
    r.set_module_ctx(gzip_module, ctx);
    r.filter_body();
    out.remove("Content-Encoding");
    out.add("Content-Encoding", "gzip");
    out.content_length = -1;  // chunked for HTTP/1.1, the connection's end for 1.0
    out.remove("Accept-Ranges");
    weaken_etag(r);
    return true;
}

bool gzip_body_filter(Request& r, BodyChain& chain) {
    auto* ctx = static_cast<GzipCtx*>(r.module_ctx(gzip_module));
    if (!ctx || ctx->finished) return true;
    if (!ctx->started && !start_deflate(r, *ctx)) return false;
    // The connection wrote everything queued: every output buffer is free.
    if (r.output_pending() == 0) {
        ctx->block = 0;
        ctx->used = 0;
    }
    // Files and stable memory are taken as the client reads; other memory
    // (the proxy's window) is reused once send_body returns, so all of it is
    // compressed now, whatever the budget: that producer paces itself by
    // output_pending().
    bool transient = false;
    for (const BodyBuf& b : chain.bufs) {
        if (b.file_fd < 0 && !chain.stable) transient = true;
        hold(r, *ctx, b);
    }
    if (chain.last) ctx->input_ended = true;
    BodyChain out(r.arena());
    ctx->unbounded = transient;
    bool ok = true;
    bool all_taken = drain_held(r, *ctx, out, ok);
    ctx->unbounded = false;
    if (!ok) return false;
    chain.last = false;
    if (!all_taken) {
        r.hold_body();
    } else if (ctx->input_ended) {
        if (!deflate_into(r, *ctx, {}, Z_FINISH, out)) return false;
        chain.last = true;
    } else if (chain.flush && !deflate_into(r, *ctx, {}, Z_SYNC_FLUSH, out)) {
        return false;
    }
    ctx->zout += out.size();
    chain.bufs.swap(out.bufs);
    return true;
}

bool gzip_ratio_variable(Request& r, std::string_view& value, uintptr_t) {
    auto* ctx = static_cast<GzipCtx*>(r.module_ctx(gzip_module));
    if (!ctx || !ctx->finished || ctx->zout == 0) return false;
    // nginx's rounding: two decimals, the third rounds half up.
    uint64_t whole = ctx->zin / ctx->zout;
    uint64_t frac = (ctx->zin * 100 / ctx->zout) % 100;
    if ((ctx->zin * 1000 / ctx->zout) % 10 > 4 && ++frac > 99) {
        ++whole;
        frac = 0;
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%llu.%02llu", static_cast<unsigned long long>(whole),
                     static_cast<unsigned long long>(frac));
    value = r.copy({buf, size_t(n)});
    return true;
}

}  // namespace sluice::http
