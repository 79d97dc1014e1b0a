// HTTP caching semantics for a shared cache: RFC 9111 (storing, freshness,
// age, reuse, validation, invalidation), RFC 5861 (stale-while-revalidate,
// stale-if-error) and the RFC 9110 conditionals a cache answers itself.
//
// Pure functions over parsed heads: no I/O, no clock (every function that
// needs "now" takes it, in seconds since the epoch), no exceptions, no heap.
// Views point into the caller's header values; bounded lists are fixed arrays.
// The storage engine (http_cache_store) keeps bytes; this file decides what
// the bytes mean. The proxy wiring calls, per request:
//
//   lookup:     method_is_cacheable -> parse_request_cache_info -> (store
//               lookup by primary key) -> vary_matches -> decide_reuse
//   hit:        answer_from_cache (client If-None-Match / If-Modified-Since),
//               format_age for the Age header, HEAD served from the GET entry
//   forward:    conditional_request_validators (EXPIRED entries), then
//               on 304: select_for_update + merge_not_modified_headers;
//               on a full response: parse_response_cache_info -> storability
//               -> make_entry_policy (kept beside the entry in the zone);
//               on an error: may_serve_stale_on_error
//   unsafe:     invalidation_targets (POST/PUT/DELETE/PATCH/unknown)
//
// Cache poisoning (guidance for the wiring step)
// ------------------------------------------------
// A cached body is shared by every client whose request maps to its key, so
// nothing that changes the body may come from a request header the key does
// not cover:
//  - Key on the client's Host (`$host`), not only `$proxy_host`, whenever the
//    upstream sees the client's Host (proxy_set_header Host $host): virtual
//    hosts behind one upstream otherwise share entries.
//  - Headers in kUnkeyedRiskHeaders (X-Forwarded-Host, X-Original-URL,
//    X-HTTP-Method-Override, ...) are honoured by many frameworks to build
//    absolute links or to reroute a request. On a cacheable request either
//    strip them before forwarding (the gateway sets X-Forwarded-* itself:
//    DESIGN.md invariant) or put them in the key; never forward them
//    unkeyed. request_has_unkeyed_risk() finds them.
//  - A response to a request carrying Authorization is shared only when
//    §3.5 allows it (storability() enforces it); Cookie is not covered by the
//    RFC: a gateway that forwards Cookie upstream should key on it, or cache
//    only locations whose upstream ignores cookies.
//  - Vary is honoured with byte-exact comparison (vary_matches()), so a
//    variant is served only to requests with the same values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "http/http_parse.h"

namespace sluice::http::cache {

// §1.2.2: a delta-seconds too large to represent, and any overflowing
// calculation, is taken as 2^31 seconds.
inline constexpr int64_t kDeltaSecondsMax = int64_t(1) << 31;

// A directive absent from a field (max-age, s-maxage, ...).
inline constexpr int64_t kAbsent = -1;

// ---- configuration: where nginx's proxy_cache_* directives land ------------

// proxy_ignore_headers: the response fields the cache acts as if absent.
enum IgnoreHeader : uint8_t {
    kIgnoreCacheControl = 1 << 0,
    kIgnoreExpires = 1 << 1,
    kIgnoreSetCookie = 1 << 2,  // Set-Cookie no longer prevents storing
    kIgnoreVary = 1 << 3,       // one entry per key whatever Vary says
};

// proxy_cache_use_stale: when a stale entry may be served (the "out-of-band
// contract" §4.2.4 allows), in addition to what the response itself allows.
enum UseStale : uint16_t {
    kStaleError = 1 << 0,  // no connection to any upstream server
    kStaleTimeout = 1 << 1,
    kStaleInvalidHeader = 1 << 2,  // the upstream sent an unparseable head
    kStaleUpdating = 1 << 3,       // while another request revalidates the entry
    kStaleHttp500 = 1 << 4,
    kStaleHttp502 = 1 << 5,
    kStaleHttp503 = 1 << 6,
    kStaleHttp504 = 1 << 7,
    kStaleHttp403 = 1 << 8,
    kStaleHttp404 = 1 << 9,
    kStaleHttp429 = 1 << 10,
};

// proxy_cache_valid [code ...|any] time: one row per code; status 0 is "any".
struct ValidTime {
    int status = 0;
    int64_t seconds = 0;
};

inline constexpr size_t kMaxValidTimes = 16;
inline constexpr size_t kMaxVaryFields = 16;

// Bit for a Method in CachePolicyConfig::methods.
constexpr uint32_t method_bit(Method m) {
    return uint32_t(1) << unsigned(m);
}

// Trivially copyable, so the proxy's location config can hold it by value.
struct CachePolicyConfig {
    // proxy_cache_methods. GET and HEAD are always cacheable (nginx adds them
    // whatever the list says); POST only when listed, and then the key has to
    // cover the body (nginx's footgun: it does not by default).
    uint32_t methods = method_bit(Method::Get) | method_bit(Method::Head);
    std::array<ValidTime, kMaxValidTimes> valid{};  // proxy_cache_valid
    size_t valid_count = 0;
    uint8_t ignore_headers = 0;      // IgnoreHeader bits
    uint16_t use_stale = 0;          // UseStale bits
    bool revalidate = false;         // proxy_cache_revalidate: conditional requests for EXPIRED entries
    bool background_update = false;  // proxy_cache_background_update
    bool convert_head = true;        // proxy_cache_convert_head: fill a HEAD miss with GET
    // A private cache (never the gateway's) may store `private` responses.
    bool shared = true;
    // Heuristic freshness (§4.2.2): a fraction of the time since Last-Modified.
    // nginx has none; 0 turns it off.
    int heuristic_percent = 10;
    int64_t heuristic_max = 86400;
    // nginx ignores the request's Cache-Control; RFC 9111 §5.2.1 lets clients
    // ask for revalidation (no-cache, max-age=0). true = nginx's behaviour,
    // which shields the upstream from clients that always send no-cache.
    bool ignore_request_cache_control = false;

    // Adds a proxy_cache_valid row; false when the table is full.
    bool add_valid(int status, int64_t seconds);
};

// ---- Cache-Control (§5.2) --------------------------------------------------

// Request and response directives in one record (the sets overlap).
// Times are seconds; kAbsent when the directive is not present.
struct CacheControl {
    bool present = false;  // at least one Cache-Control field line
    // response directives (§5.2.2)
    bool no_store = false;
    bool no_cache = false;  // qualified or not (see no_cache_fields)
    bool private_ = false;  // qualified or not (see private_fields)
    bool public_ = false;
    bool must_revalidate = false;
    bool proxy_revalidate = false;
    bool must_understand = false;
    bool no_transform = false;
    bool immutable = false;     // RFC 8246
    int64_t max_age = kAbsent;  // request or response
    int64_t s_maxage = kAbsent;
    int64_t stale_while_revalidate = kAbsent;  // RFC 5861 §3
    int64_t stale_if_error = kAbsent;          // RFC 5861 §4, request or response
    std::string_view no_cache_fields;          // the argument of the first qualified no-cache
    std::string_view private_fields;
    // request directives (§5.2.1)
    int64_t max_stale = kAbsent;  // kDeltaSecondsMax for a bare "max-stale"
    int64_t min_fresh = kAbsent;
    bool only_if_cached = false;
};

// Parses every Cache-Control field line in `headers` (§5.2):
//  - directive names are case-insensitive tokens; unknown ones are ignored;
//  - arguments may be tokens or quoted-strings for every directive ("for the
//    directives defined below that define arguments, recipients ought to
//    accept both forms", §5.2), so max-age="10" is 10;
//  - a delta-seconds argument that is not 1*DIGIT (negative, empty, missing,
//    "10s") makes max-age / s-maxage 0: "caches are encouraged to consider
//    responses that have invalid freshness information ... to be stale"
//    (§4.2.1). Invalid max-stale / min-fresh / stale-* are ignored;
//  - an overflowing delta-seconds is kDeltaSecondsMax (§1.2.2);
//  - a directive given twice with different values (§4.2.1 "either the
//    first occurrence should be used or the response should be considered
//    stale"): max-age and s-maxage become 0 (stale); for the others the
//    most restrictive value wins (smallest max-age / max-stale /
//    stale-while-revalidate / stale-if-error, largest min-fresh);
//  - directives that only restrict (no-store, no-cache, private,
//    must-revalidate) count even when given a stray argument; directives
//    that only relax (public, immutable) are ignored when malformed.
// Conflicting directives (max-age with no-cache, public with private) are
// all recorded; the consumers honour the most restrictive (§4.2.1).
CacheControl parse_cache_control(std::span<const Header> headers);

// The request directives a cache acts on. Without any Cache-Control field,
// "Pragma: no-cache" counts as "Cache-Control: no-cache" (§5.4); Pragma in a
// response means nothing.
struct RequestCacheInfo {
    Method method = Method::Unknown;
    CacheControl cc;
    bool has_authorization = false;
    // Client conditionals (RFC 9110 §13.1). A cache ignores If-Match and
    // If-Unmodified-Since (§4.3.2: "not applicable to a cache").
    bool has_if_none_match = false;   // every line is read by answer_from_cache()
    int64_t if_modified_since = -1;   // -1: absent, invalid, or a list (RFC 9110 §13.1.3)
    bool has_range = false;           // partial responses are not served from cache
    std::span<const Header> headers;  // the request's fields, for If-None-Match lines
};

// cfg.ignore_request_cache_control clears cc (and the Pragma fallback).
RequestCacheInfo parse_request_cache_info(Method method, std::span<const Header> headers, const CachePolicyConfig& cfg);

// The response facts every decision below needs, parsed once. The
// proxy_ignore_headers flags of cfg are applied here: an ignored field is
// reported absent.
struct ResponseCacheInfo {
    int status = 0;
    CacheControl cc;
    int64_t date = -1;  // Date, -1 when absent or invalid
    bool has_expires = false;
    int64_t expires = -1;  // Expires; 0 ("already expired", §5.3) when invalid
                           // or repeated with different values (§4.2.1)
    int64_t last_modified = -1;
    int64_t age = 0;                       // Age (§5.1); 0 when absent or invalid
    std::string_view etag;                 // the first ETag line when it is a valid entity-tag
    std::string_view last_modified_value;  // raw, for If-Modified-Since (RFC 9110 §13.1.3)
    bool has_set_cookie = false;
    bool has_vary = false;
    bool vary_star = false;  // "Vary: *", an invalid member, or too many members
};

ResponseCacheInfo parse_response_cache_info(int status, std::span<const Header> headers, const CachePolicyConfig& cfg);

// Age (§5.1): 1*DIGIT, capped at kDeltaSecondsMax; the first line counts.
// Garbage ("abc", "-1", "1.5") is treated as no Age at all (age_value is "0
// if not available", §4.2.3): the response then looks younger than it may
// be, but an invalid field carries no information to be conservative about.
int64_t parse_age(std::span<const Header> headers);

// Expires (§5.3): an invalid date, "0" included, is a time in the past.
// Returns -1 when absent, else the time (0 for "already expired").
int64_t parse_expires(std::span<const Header> headers);

// ---- storing (§3) -----------------------------------------------------------

// Why a response is not stored; Store when it may be.
enum class StoreVerdict : uint8_t {
    Store,
    MethodNotCacheable,      // §3: "the request method is understood by the cache" (and configured)
    HeadResponse,            // the fill was a HEAD: no body to serve a GET with
    StatusNotFinal,          // 1xx (§3)
    PartialContent,          // 206: this cache does not combine partial content (§3.3, §3.4)
    NotModified,             // 304 updates an entry (§4.3.4), never is one
    StatusNotUnderstood,     // must-understand with a status this cache does not know (§5.2.2.3)
    NoStore,                 // no-store in the request or the response (§5.2.1.5, §5.2.2.5)
    Private,                 // private in a shared cache (§5.2.2.7)
    Authorization,           // request had Authorization; response has no public/s-maxage/must-revalidate (§3.5)
    SetCookie,               // nginx: not cached unless proxy_ignore_headers Set-Cookie
    VaryStar,                // "Vary: *" never matches a request (§4.1): not stored at all
    NoFreshnessInformation,  // no explicit expiry, no public, not heuristically cacheable, no proxy_cache_valid (§3)
    NeverReusable,           // lifetime 0 (or no-cache), no validator used (revalidate off or none),
                             // no stale-while-revalidate / stale-if-error in the response
                             // nothing allows stale: storing is pointless
};

std::string_view store_verdict_name(StoreVerdict v);

// Whether a complete response may be stored (§3). A close-delimited body
// (neither Content-Length nor chunked) is only storable once the connection
// closed cleanly after it; a body that ended early is incomplete (§3.3): the
// caller checks completeness, this function judges headers only.
// HEAD responses carry no body: fill the cache with GET (proxy_cache_convert_head).
// response_time is when the head arrived (for Expires without Date).
StoreVerdict storability(const RequestCacheInfo& req, const ResponseCacheInfo& resp, const CachePolicyConfig& cfg,
                         int64_t response_time);

// The method to send upstream on a miss or a refetch: GET for HEAD with
// convert_head (nginx's default), so the entry has a body; a HEAD hit is then
// the GET entry's head without its body (RFC 9110 §9.3.2: "the same header
// fields as if the request method had been GET"). Pass the method actually
// sent upstream to storability(): a HEAD response is never stored.
Method cache_fill_method(Method request_method, const CachePolicyConfig& cfg);

// Whether a method's responses may be looked up and stored (cfg.methods).
bool method_is_cacheable(Method method, const CachePolicyConfig& cfg);

// RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe; anything else,
// unknown methods included, is unsafe and invalidates (§4.4).
bool method_is_unsafe(Method method);

// Statuses whose semantics this cache knows (RFC 9110 §15, RFC 6585 429).
bool status_understood(int status);

// RFC 9110 §15.1: heuristically cacheable statuses (200, 203, 204, 206, 300,
// 301, 308, 404, 405, 410, 414, 501).
bool status_heuristically_cacheable(int status);

// §3.1: fields never stored: Connection and the fields it lists, the other
// hop-by-hop fields (Keep-Alive, Proxy-Connection, TE, Transfer-Encoding,
// Upgrade, Trailer), the proxy's own Proxy-Authenticate,
// Proxy-Authentication-Info and Proxy-Authorization, and Age (the cache
// sends its own, §4: "replacing any present in the response").
// `headers` is the whole response, for its Connection list.
bool header_storable(std::string_view name, std::span<const Header> headers);

// ---- freshness (§4.2.1, §4.2.2) ---------------------------------------------

enum class FreshnessSource : uint8_t { None, SMaxAge, MaxAge, Expires, ValidTime, Heuristic };

struct Freshness {
    int64_t lifetime = 0;  // seconds, 0..kDeltaSecondsMax
    FreshnessSource source = FreshnessSource::None;
};

// §4.2.1 for a shared cache: s-maxage, else max-age, else Expires - Date
// (Date, when missing or invalid, is the response time: RFC 9110 §6.6.1).
// Without any of them: the proxy_cache_valid time for the status (nginx:
// Cache-Control / Expires take precedence unless ignored), else the §4.2.2
// heuristic for a heuristically cacheable status or a `public` response:
// heuristic_percent of (Date - Last-Modified), at most heuristic_max,
// only when Last-Modified is present and not after Date.
Freshness freshness_lifetime(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg, int64_t response_time);

// proxy_cache_valid for a status: the row for the status, else "any"; -1 if none.
int64_t configured_valid_time(int status, const CachePolicyConfig& cfg);

// ---- age (§4.2.3) -------------------------------------------------------------

// request_time: when the request that got this response was sent;
// response_time: when the response head was received. All saturate at
// kDeltaSecondsMax and never go negative.
int64_t apparent_age(int64_t date_value, int64_t response_time);
int64_t corrected_age_value(int64_t age_value, int64_t request_time, int64_t response_time);
int64_t corrected_initial_age(int64_t date_value, int64_t age_value, int64_t request_time, int64_t response_time);
int64_t resident_time(int64_t response_time, int64_t now);
int64_t current_age(int64_t corrected_initial_age, int64_t response_time, int64_t now);

// The Age field value sent with a stored response (§5.1: delta-seconds,
// §4: replacing any Age the response had). buf holds at least 24 bytes.
std::string_view format_age(int64_t age, char* buf);

// ---- what the cache keeps beside an entry -----------------------------------

enum EntryFlag : uint16_t {
    kEntryNoCache = 1 << 0,         // §5.2.2.4: revalidate before every reuse
    kEntryNoStaleServing = 1 << 1,  // must-revalidate, proxy-revalidate, s-maxage (§5.2.2.2, .8, .10)
    kEntryHasEtag = 1 << 2,
    kEntryHasLastModified = 1 << 3,
    kEntryImmutable = 1 << 4,
};

// Everything decide_reuse() and may_serve_stale_on_error() need, computed
// once at store time and refreshed on 304. Trivially copyable: it lives in
// the shared-memory zone next to the entry.
struct EntryPolicy {
    int64_t response_time = 0;
    int64_t corrected_initial_age = 0;
    int64_t freshness_lifetime = 0;
    int64_t stale_while_revalidate = kAbsent;  // from the response (RFC 5861 §3)
    int64_t stale_if_error = kAbsent;          // from the response (RFC 5861 §4)
    int64_t date = 0;                          // Date, or response_time without one
    int64_t last_modified = -1;
    int32_t status = 0;
    uint16_t flags = 0;  // EntryFlag bits
};

// A response stored without a valid Date gets one, format_http_date(response_time)
// (RFC 9110 §6.6.1: a recipient "MUST ... append a corresponding Date header
// field ... if it is cached or forwarded"); date here is that time.
EntryPolicy make_entry_policy(const ResponseCacheInfo& resp, const CachePolicyConfig& cfg, int64_t request_time,
                              int64_t response_time);

// ---- reuse (§4, §4.2.4, §4.3; RFC 5861) ---------------------------------------

enum class CacheDecision : uint8_t {
    Hit,              // fresh and acceptable: serve it
    StaleUpdating,    // serve stale: another request is revalidating it (UPDATING)
    StaleBackground,  // serve stale and revalidate in the background (STALE)
    StaleAllowed,     // serve stale: the client's max-stale accepts it (STALE)
    Revalidate,       // forward with conditional_request_validators() (EXPIRED; 304 -> REVALIDATED)
    Refetch,          // forward unconditionally: no validator, or proxy_cache_revalidate off (EXPIRED)
    Miss,             // no usable entry (MISS)
    Bypass,           // proxy_cache_bypass said so (BYPASS)
    GatewayTimeout,   // only-if-cached and nothing usable: answer 504 (§5.2.1.7)
};

// $upstream_cache_status values.
enum class UpstreamCacheStatus : uint8_t { None, Miss, Bypass, Expired, Stale, Updating, Revalidated, Hit };

UpstreamCacheStatus cache_status_for(CacheDecision d);
std::string_view cache_status_name(UpstreamCacheStatus s);

// What the reuse decision is given besides the entry.
struct ReuseContext {
    int64_t now = 0;
    bool update_in_progress = false;  // another request holds the entry's update lock
    bool bypass = false;              // proxy_cache_bypass evaluated non-empty and not "0"
};

// May a stored response answer this request (§4)? `entry` is null on a
// miss. The order of the rules:
//  1. bypass -> Bypass; no entry -> Miss (GatewayTimeout with only-if-cached).
//  2. Response no-cache (with or without field names: the qualified form is
//     treated as unqualified, which §5.2.2.4 allows) and request no-cache
//     (§5.2.1.4) -> validate first.
//  3. Fresh (§4.2: lifetime > current_age) and within the request's max-age
//     (§5.2.1.1) and min-fresh (§5.2.1.3) -> Hit.
//  4. Stale: never served when kEntryNoStaleServing or no-cache is set
//     (§4.2.4, §5.2.2.2: "in all circumstances"). Otherwise the client's
//     max-stale (§5.2.1.2) -> StaleAllowed; within stale-while-revalidate or
//     with use_stale updating: StaleUpdating when another request is
//     updating, StaleBackground when background_update is on.
//  5. Else Revalidate (validator present and cfg.revalidate) or Refetch;
//     GatewayTimeout instead when the request says only-if-cached.
// A request Range is the caller's business (this cache stores no partials).
CacheDecision decide_reuse(const RequestCacheInfo& req, const EntryPolicy* entry, const CachePolicyConfig& cfg,
                           const ReuseContext& ctx);

enum class UpstreamFailure : uint8_t { Error, Timeout, InvalidHeader, Status };

// After forwarding for a stale entry failed (or answered `status` with
// UpstreamFailure::Status): may the stale entry be served instead?
//  - never under must-revalidate / proxy-revalidate / s-maxage / no-cache
//    (§5.2.2.2: "if a cache is disconnected, the cache MUST generate an
//    error response rather than reuse the stale response");
//  - yes when cfg.use_stale lists the failure (nginx; any staleness);
//  - yes within the response's or the request's stale-if-error window when
//    the failure would be a 500, 502, 503 or 504 (RFC 5861 §4).
bool may_serve_stale_on_error(const RequestCacheInfo& req, const EntryPolicy& entry, const CachePolicyConfig& cfg,
                              UpstreamFailure failure, int status, int64_t now);

// ---- validation (§4.3) --------------------------------------------------------

// The conditional request for a stored response (§4.3.1): If-None-Match with
// its entity tag (MUST, when it has one), If-Modified-Since with its
// Last-Modified exactly as received (SHOULD; RFC 9110 §13.1.3 recommends
// the received string). Empty views: do not send that field. The caller
// first removes the client's own If-None-Match, If-Modified-Since, If-Match,
// If-Unmodified-Since, If-Range and Range (the cache validates its entry,
// not the client's copy: §4.3.2), see header_replaced_on_revalidation().
struct Validators {
    std::string_view if_none_match;
    std::string_view if_modified_since;
};
Validators conditional_request_validators(const ResponseCacheInfo& stored);
bool header_replaced_on_revalidation(std::string_view request_field_name);

// §4.3.4: does a 304 apply to the entry that was revalidated?
//  - the 304 has a strong ETag: the stored ETag must be strong and equal;
//  - it has a weak ETag: weak comparison with the stored ETag;
//  - no ETag but Last-Modified: equal to the stored Last-Modified;
//  - no validator at all: only if the stored response has none either.
// Otherwise the 304 "MUST NOT" be used to update: refetch unconditionally.
bool not_modified_matches(const ResponseCacheInfo& stored, const ResponseCacheInfo& not_modified);

// §3.2 and §4.3.4: which of a 304's fields replace the stored ones. Every
// field does ("the cache MUST add each header field in the provided response
// to the stored response, replacing field values that are already present"),
// except Content-Length (§3.2), those not stored (header_storable, §3.1), and
// those the stored body depends upon: Content-Encoding, Content-Range,
// Transfer-Encoding (§3.2 lets a cache omit them).
bool header_updated_by_not_modified(std::string_view name, std::span<const Header> not_modified);

// The stored response's fields after a 304: stored fields not replaced, in
// their order, then the 304's updating fields. Writes at most out.size()
// headers and returns how many, or SIZE_MAX if they do not fit. The views
// point into both inputs. Afterwards run parse_response_cache_info and
// storability() on the result: a 304 that adds no-store, private or
// Set-Cookie makes the entry unstorable (serve it to this client, then drop
// the entry), and make_entry_policy() with the revalidation's request and
// response times gives the new freshness. Two details: the entry keeps its
// stored status (parse the merged head with it, not 304), and Age is not
// stored, so set info.age = parse_age(not_modified) before make_entry_policy.
size_t merge_not_modified_headers(std::span<const Header> stored, std::span<const Header> not_modified,
                                  std::span<Header> out);

// ---- answering a client from a stored response (RFC 9110 §13.2.2) ----------

// Entity-tag comparison (RFC 9110 §8.8.3.2). Tags are `"opaque"` or
// `W/"opaque"`; an invalid tag never matches.
bool etag_valid(std::string_view tag);
bool etag_strong_match(std::string_view a, std::string_view b);
bool etag_weak_match(std::string_view a, std::string_view b);

// If-None-Match (RFC 9110 §13.1.2): "*" matches any stored response; a list
// matches when one member weakly matches `etag`. Members are parsed as
// entity-tags, so a comma inside quotes does not split a tag.
bool if_none_match_matches(std::string_view field_value, std::string_view etag);

enum class ClientConditional : uint8_t { Send, NotModified };

// For GET and HEAD (the only methods served from cache), RFC 9110 §13.2.2
// steps 3 and 4: If-None-Match when present decides alone; otherwise
// If-Modified-Since (valid date, single member) against the stored
// Last-Modified, or the stored Date (§4.3.2) when there is none: not
// modified when that time is at or before the field's date.
// stored_response_time stands in for a missing Date.
ClientConditional answer_from_cache(const RequestCacheInfo& req, const ResponseCacheInfo& stored,
                                    int64_t stored_response_time);

// RFC 9110 §15.4.5: the stored fields a 304 from the cache carries:
// Cache-Control, Content-Location, Date, ETag, Expires, Vary, and
// Last-Modified when there is no ETag (it then guides cache updates).
// Age is added by the cache as for any reuse (§4).
bool header_in_not_modified(std::string_view name, bool stored_has_etag);

// ---- Vary (§4.1) --------------------------------------------------------------

struct VaryFields {
    std::array<std::string_view, kMaxVaryFields> names{};  // as written, in order
    size_t count = 0;
    bool star = false;  // "*", an invalid member, or more than kMaxVaryFields: never matches
};

// All Vary lines of a response, members split on commas and trimmed. With
// proxy_ignore_headers Vary (kIgnoreVary) the wiring skips Vary altogether:
// one entry per key, no secondary key.
VaryFields parse_vary(std::span<const Header> response_headers);

// The secondary key of a request for these Vary fields: per name, in order,
// the lowercase name, then ':' and the value when the request has the field
// (absent and empty differ, §4.1), then '\n'. The value is every field line
// of that name (names compared case-insensitively) joined, list members
// trimmed of OWS and joined with ", " and empty members dropped: the
// "adding or removing whitespace" and "combining multiple header field
// lines" of §4.1. Values are then compared byte for byte (no
// field-specific case folding or reordering, which §4.1 permits but does
// not require). Returns the length written to out, or SIZE_MAX when it does
// not fit or vary.star (such a response never matches).
size_t vary_key(const VaryFields& vary, std::span<const Header> request_headers, std::span<char> out);

// Whether a new request selects the stored variant whose request produced
// `stored_key` (vary_key of the original request).
bool vary_matches(const VaryFields& vary, std::string_view stored_key, std::span<const Header> request_headers);

// ---- invalidation (§4.4) -------------------------------------------------------

// The origin of the target URI (RFC 9110 §4.3.1): scheme, host (any case),
// port (0: the scheme's default).
struct Origin {
    std::string_view scheme;
    std::string_view host;
    uint16_t port = 0;
};

// Up to three URIs to invalidate, as path-and-query (the $request_uri part
// of the cache key; the scheme and host are the request's by construction).
// Every variant (every Vary entry) under each must go.
struct InvalidationTargets {
    std::array<std::string_view, 3> uris{};
    size_t count = 0;
};

// §4.4: after an unsafe method (method_is_unsafe) answered with a non-error
// status (2xx or 3xx): the target URI (MUST), and the Location and
// Content-Location URIs (MAY) when they have the same origin (MUST NOT
// otherwise: it would let one origin invalidate another's entries).
// Same origin: an absolute-path reference ("/a?b"), or an absolute URI or
// network-path reference whose scheme, host (case-insensitive) and port
// (default ports folded) equal the target's. Relative-path references
// ("../a") are skipped: resolving them needs the dot-segment removal the
// wiring step's URI normalizer does. URIs with userinfo are skipped.
// `target_path` is the request's path-and-query as received.
InvalidationTargets invalidation_targets(Method method, int status, const Origin& origin, std::string_view target_path,
                                         std::span<const Header> response_headers);

// ---- poisoning defences --------------------------------------------------------

// Request headers that frameworks commonly honour to change a response
// (absolute links, routing, method) but that the default key does not cover.
inline constexpr std::array<std::string_view, 10> kUnkeyedRiskHeaders = {
    "x-forwarded-host", "x-forwarded-server", "x-forwarded-scheme", "x-forwarded-proto",      "x-forwarded-prefix",
    "x-host",           "x-original-url",     "x-rewrite-url",      "x-http-method-override", "forwarded",
};

// The first such header in a request, or an empty view. The wiring strips
// them (or keys on them) before forwarding a cacheable request.
std::string_view request_has_unkeyed_risk(std::span<const Header> request_headers);

// §3.5: a shared cache may reuse a response to a request with Authorization
// only when the response has public, s-maxage or must-revalidate.
bool authorization_allows_sharing(const CacheControl& response_cc);

}  // namespace sluice::http::cache
