// The prober: in every worker a timer per upstream with health_check; on
// each tick the worker tries to hold the upstream's prober lease (in the
// shared zone), and only the holder probes. A probe is a non-blocking
// connect, one `GET uri` with `Connection: close`, and a bounded read of the
// reply, all on the worker's loop; over TLS (after a handshake) when a
// location proxies to the upstream with https://. Results go to the peers' shared slots, so
// every worker's balancer sees them at once.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <event2/event.h>

#include "core/log.h"
#include "event/worker.h"
#include "health_check.h"
#include "http/http_chunked.h"
#include "http/http_upstream_tls.h"

namespace sluice::http::health_check {

namespace {

// A count that never wraps back to 0, which would read as "never checked".
constexpr uint32_t kMaxConsecutive = UINT32_MAX / 2;
constexpr size_t kReadChunk = 16 * 1024;

struct EventFree {
    void operator()(event* e) const { event_free(e); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    int get() const { return fd_; }
    void reset(int fd = -1) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// Heartbeats compare times taken in different workers: the monotonic clock
// is the same in every process and does not jump.
int64_t monotonic_msec() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

timeval to_timeval(uint64_t ms) { return {time_t(ms / 1000), suseconds_t((ms % 1000) * 1000)}; }

PeerShared& slot_at(UpstreamShared& sh, size_t i) { return (&sh.peers[0])[i]; }

uint32_t bump(std::atomic<uint32_t>& counter) {
    uint32_t n = counter.load(std::memory_order_relaxed);
    if (n < kMaxConsecutive) ++n;
    counter.store(n, std::memory_order_relaxed);
    return n;
}

// The holder died (its pid is gone) or stopped renewing the lease.
bool lease_abandoned(int32_t holder, int64_t heartbeat, int64_t now_ms, uint64_t stale_ms) {
    if (now_ms - heartbeat > int64_t(stale_ms)) return true;
    return kill(pid_t(holder), 0) == -1 && errno == ESRCH;
}

// " (111: Connection refused)" for socket errors, else "".
std::string error_detail(int err) {
    if (err == 0 || err == EPROTO || err == EMSGSIZE) return "";
    return " (" + std::to_string(err) + ": " + strerror(err) + ")";
}

}  // namespace

// ---- one probe ----

// What a probe needs of a peer: copied, since resolve may replace the peer
// list while the probe runs.
struct ProbeTarget {
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    std::string addr_text;
    size_t slot = 0;
    uint64_t addr_key = 0;  // the slot still holds this address when the result lands
};

class Probe {
public:
    Probe(Prober& prober, ProbeTarget target, const Upstream& u)
        : prober_(prober), target_(std::move(target)), upstream_(u) {}
    ~Probe() { upstream_tls_close(tls_); }  // before fd_ closes
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;

    // Connects and sends `request`; the outcome reaches the prober later
    // (or at once, when the connect fails at once).
    void start(event_base* base, std::string request, uint64_t timeout_ms, const Match* match);
    const ProbeTarget& target() const { return target_; }
    bool done() const { return done_; }
    // OpenSSL's reason when the probe failed in TLS, else "".
    const std::string& tls_error() const { return tls_error_; }

private:
    static void on_writable(evutil_socket_t, short, void* self);
    static void on_readable(evutil_socket_t, short, void* self);
    static void on_timeout(evutil_socket_t, short, void* self);
    bool open_socket(event_base* base);
    void connected();
    void start_tls();
    void handshake_step();
    ssize_t receive(char* buf, size_t len);
    void send_some();
    void read_some();
    void read_into_head();
    void read_into_body();
    void parse_head();
    void feed_body(const char* p, size_t n);
    void body_ended();
    void finish(CheckStage stage, int err = 0);

    Prober& prober_;
    ProbeTarget target_;
    const Upstream& upstream_;
    UpstreamConnection tls_;   // only its TLS fields: the probe's own events drive it
    bool handshaking_ = false;
    std::string tls_error_;
    const Match* match_ = nullptr;
    Fd fd_;
    EventPtr write_ev_, read_ev_, timer_;
    std::string request_;
    size_t sent_ = 0;
    bool connected_ = false;
    bool done_ = false;
    // The head is parsed in place: views into head_buf_ stay valid because
    // it never grows; body bytes go to body_.
    ParseLimits limits_;
    std::unique_ptr<char[]> head_buf_;
    size_t head_len_ = 0;
    ResponseHead head_;
    bool head_done_ = false;
    std::string body_;
    uint64_t body_left_ = 0;  // Body::Length
    ChunkedDecoder chunked_;
};

// ---- the per-worker prober of one upstream ----

class Prober {
public:
    Prober(HealthCheck& hc, event_base* base);
    ~Prober();
    Prober(const Prober&) = delete;
    Prober& operator=(const Prober&) = delete;

    bool start();
    void probe_finished(const Probe& probe, CheckStage stage, int err);

private:
    static void on_tick(evutil_socket_t, short, void* self);
    void tick();
    void schedule(uint64_t delay_ms);
    uint64_t next_delay();
    void update_lease();
    void give_up_lease();
    void probe_peers();
    bool in_flight(size_t slot) const;
    void start_probe(const Peer& peer);
    std::string request_for(const Peer& peer) const;
    void log_failure(const ProbeTarget& t, CheckStage stage, const std::string& detail) const;
    void log_change(const ProbeTarget& t, int change, CheckStage stage, const std::string& detail) const;

    HealthCheck& hc_;
    Upstream& u_;
    event_base* base_;
    EventPtr timer_;
    int32_t self_;
    bool holding_ = false;
    uint64_t random_;
    // In flight, and finished ones until the next tick: a probe is never
    // freed inside its own callback.
    std::vector<std::unique_ptr<Probe>> probes_;
};

// ---- Probe ----

bool Probe::open_socket(event_base* base) {
    int fd = socket(target_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    fd_.reset(fd);
    write_ev_.reset(event_new(base, fd, EV_WRITE, on_writable, this));
    read_ev_.reset(event_new(base, fd, EV_READ | EV_PERSIST, on_readable, this));
    timer_.reset(evtimer_new(base, on_timeout, this));
    return write_ev_ && read_ev_ && timer_;
}

void Probe::start(event_base* base, std::string request, uint64_t timeout_ms, const Match* match) {
    request_ = std::move(request);
    match_ = match;
    if (!open_socket(base)) return finish(CheckStage::Connect, errno);
    timeval tv = to_timeval(timeout_ms);
    evtimer_add(timer_.get(), &tv);
    int rc = connect(fd_.get(), reinterpret_cast<const sockaddr*>(&target_.addr), target_.addr_len);
    if (rc < 0 && errno != EINPROGRESS) return finish(CheckStage::Connect, errno);
    event_add(write_ev_.get(), nullptr);
}

void Probe::on_writable(evutil_socket_t, short, void* self) {
    auto& p = *static_cast<Probe*>(self);
    if (!p.connected_) return p.connected();
    if (p.handshaking_) return p.handshake_step();
    p.send_some();
}

void Probe::on_readable(evutil_socket_t, short, void* self) {
    auto& p = *static_cast<Probe*>(self);
    if (p.handshaking_) return p.handshake_step();
    p.read_some();
}

void Probe::on_timeout(evutil_socket_t, short, void* self) {
    auto& p = *static_cast<Probe*>(self);
    p.finish(CheckStage::Timeout, ETIMEDOUT);
}

void Probe::connected() {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) return finish(CheckStage::Connect, err);
    connected_ = true;
    if (upstream_.probe_tls) return start_tls();
    send_some();
}

void Probe::start_tls() {
    tls_.fd = fd_.get();
    if (!upstream_tls_start(tls_, *upstream_.probe_tls, upstream_.probe_tls_name, upstream_.probe_tls_sni,
                            target_.addr_text, tls_error_))
        return finish(CheckStage::Connect, EPROTO);
    handshaking_ = true;
    handshake_step();
}

void Probe::handshake_step() {
    switch (upstream_tls_handshake(tls_, tls_error_)) {
    case tls::IoStatus::Done:
        handshaking_ = false;
        tls_error_.clear();
        event_del(read_ev_.get());  // added again once the request is out
        return send_some();
    case tls::IoStatus::WantRead: event_add(read_ev_.get(), nullptr); return;
    case tls::IoStatus::WantWrite: event_add(write_ev_.get(), nullptr); return;
    default: return finish(CheckStage::Connect, EPROTO);
    }
}

// read(2), or through TLS (EPROTO with the reason in tls_error_).
ssize_t Probe::receive(char* buf, size_t len) {
    if (!tls_.ssl) return read(fd_.get(), buf, len);
    ssize_t n = upstream_tls_read(tls_, buf, len);
    if (n < 0 && errno == EPROTO) tls_error_ = upstream_tls_last_error();
    return n;
}

void Probe::send_some() {
    iovec iov{request_.data() + sent_, request_.size() - sent_};
    ssize_t n = tls_.ssl ? upstream_tls_writev(tls_, &iov, 1) : send(fd_.get(), iov.iov_base, iov.iov_len, MSG_NOSIGNAL);
    if (n < 0 && errno == EPROTO && tls_.ssl) tls_error_ = upstream_tls_last_error();
    if (n < 0 && errno != EAGAIN && errno != EINTR) return finish(CheckStage::Send, errno);
    if (n > 0) sent_ += size_t(n);
    if (sent_ < request_.size()) {
        event_add(write_ev_.get(), nullptr);
        return;
    }
    head_buf_ = std::make_unique<char[]>(limits_.max_head);
    event_add(read_ev_.get(), nullptr);
}

void Probe::read_some() {
    if (!head_done_) return read_into_head();
    read_into_body();
}

void Probe::read_into_head() {
    size_t room = limits_.max_head - head_len_;
    ssize_t n = receive(head_buf_.get() + head_len_, room);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) finish(CheckStage::ReadHead, errno);
        return;
    }
    if (n == 0) return finish(CheckStage::ReadHead, ECONNRESET);  // closed before a whole head
    head_len_ += size_t(n);
    parse_head();
}

// A 1xx interim head is skipped; the final head decides, and the bytes after
// it start the body.
void Probe::parse_head() {
    for (;;) {
        head_.reset();
        ParseResult r = parse_response_head(head_buf_.get(), head_len_, limits_, false, head_);
        if (r == ParseResult::Error) return finish(CheckStage::ReadHead, EPROTO);
        if (r == ParseResult::Incomplete) {
            if (head_len_ == limits_.max_head) finish(CheckStage::ReadHead, EMSGSIZE);
            return;
        }
        if (head_.status >= 200) break;
        memmove(head_buf_.get(), head_buf_.get() + head_.head_length, head_len_ - head_.head_length);
        head_len_ -= head_.head_length;
    }
    head_done_ = true;
    if (!match_ || !match_->needs_body()) return finish(evaluate(match_, head_, {}));
    body_left_ = head_.content_length;
    if (head_.body == ResponseHead::Body::None) return body_ended();
    feed_body(head_buf_.get() + head_.head_length, head_len_ - head_.head_length);
}

void Probe::read_into_body() {
    char buf[kReadChunk];
    ssize_t n = receive(buf, sizeof buf);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) finish(CheckStage::ReadBody, errno);
        return;
    }
    if (n == 0) {
        // Only a body delimited by the close may end here.
        if (head_.body == ResponseHead::Body::UntilClose) return body_ended();
        return finish(CheckStage::ReadBody, ECONNRESET);
    }
    feed_body(buf, size_t(n));
}

// Keeps at most kMaxProbeBody bytes; the body conditions see that much.
void Probe::feed_body(const char* p, size_t n) {
    auto keep = [&](std::string_view data) {
        body_.append(data.substr(0, kMaxProbeBody - body_.size()));
        return body_.size() >= kMaxProbeBody;
    };
    switch (head_.body) {
    case ResponseHead::Body::None: return body_ended();
    case ResponseHead::Body::Length: {
        size_t take = size_t(std::min<uint64_t>(n, body_left_));
        body_left_ -= take;
        if (keep({p, take}) || body_left_ == 0) body_ended();
        return;
    }
    case ResponseHead::Body::UntilClose:
        if (keep({p, n})) body_ended();
        return;
    case ResponseHead::Body::Chunked:
        while (n > 0 && !done_) {
            size_t used = 0;
            std::string_view data;
            auto status = chunked_.decode(p, n, used, data);
            if (status == ChunkedDecoder::Status::Error) return finish(CheckStage::ReadBody, EPROTO);
            if (status == ChunkedDecoder::Status::Done || (status == ChunkedDecoder::Status::Data && keep(data)))
                return body_ended();
            p += used;
            n -= used;
        }
        return;
    }
}

void Probe::body_ended() { finish(evaluate(match_, head_, body_)); }

void Probe::finish(CheckStage stage, int err) {
    if (done_) return;
    done_ = true;
    if (timer_) event_del(timer_.get());
    if (write_ev_) event_del(write_ev_.get());
    if (read_ev_) event_del(read_ev_.get());
    upstream_tls_close(tls_);
    fd_.reset();
    head_buf_.reset();
    std::string().swap(body_);
    prober_.probe_finished(*this, stage, err);
}

// ---- Prober ----

Prober::Prober(HealthCheck& hc, event_base* base)
    : hc_(hc), u_(*hc.upstream), base_(base), self_(int32_t(getpid())) {
    random_ = (uint64_t(self_) << 32) ^ uint64_t(monotonic_msec()) ^ 0x9e3779b97f4a7c15ull;
}

Prober::~Prober() {
    give_up_lease();
    probes_.clear();
}

bool Prober::start() {
    timer_.reset(evtimer_new(base_, on_tick, this));
    if (!timer_) return false;
    // The first tick at once: with `mandatory`, peers serve only once checked.
    schedule(0);
    return true;
}

void Prober::on_tick(evutil_socket_t, short, void* self) { static_cast<Prober*>(self)->tick(); }

void Prober::tick() {
    std::erase_if(probes_, [](const auto& p) { return p->done(); });
    // A worker that is shutting down leaves the checks to the others.
    if (Worker::current().shutting_down()) return give_up_lease();
    update_lease();
    if (holding_) probe_peers();
    schedule(next_delay());
}

void Prober::schedule(uint64_t delay_ms) {
    timeval tv = to_timeval(delay_ms);
    evtimer_add(timer_.get(), &tv);
}

// jitter=: spreads the checks of many upstreams (and of many gateways).
uint64_t Prober::next_delay() {
    if (hc_.jitter_ms == 0) return hc_.interval_ms;
    random_ ^= random_ >> 12;
    random_ ^= random_ << 25;
    random_ ^= random_ >> 27;
    return hc_.interval_ms + (random_ * 0x2545f4914f6cdd1dull) % (hc_.jitter_ms + 1);
}

void Prober::update_lease() {
    bool was = holding_;
    holding_ = u_.shared && hold_lease(*u_.shared, self_, monotonic_msec(), hc_.lease_stale_ms());
    if (holding_ && !was)
        SLUICE_LOG(LogLevel::Notice, "health checks of upstream \"%s\" run in this worker", u_.name.c_str());
    if (!holding_ && was)
        SLUICE_LOG(LogLevel::Notice, "health checks of upstream \"%s\" were taken over by another worker",
                   u_.name.c_str());
}

void Prober::give_up_lease() {
    if (holding_ && u_.shared) release_lease(*u_.shared, self_);
    holding_ = false;
}

bool Prober::in_flight(size_t slot) const {
    for (const auto& p : probes_)
        if (!p->done() && p->target().slot == slot) return true;
    return false;
}

void Prober::probe_peers() {
    for (const Peer& peer : u_.peers) {
        // Several resolved addresses may share a slot: one probe each.
        if (peer.down || in_flight(peer.shared_index)) continue;
        start_probe(peer);
    }
}

std::string Prober::request_for(const Peer& peer) const {
    std::string host = peer.server_name;
    if (peer.addr.ss_family == AF_UNIX) host = "localhost";
    else if (host.find(':') != std::string::npos) host = "[" + host + "]";  // an IPv6 literal
    return "GET " + hc_.uri + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
}

void Prober::start_probe(const Peer& peer) {
    ProbeTarget t;
    t.addr = peer.addr;
    t.addr_len = peer.addr_len;
    t.addr_text = peer.addr_text;
    t.slot = peer.shared_index;
    t.addr_key = upstream_address_key(peer.addr, peer.addr_len);
    if (hc_.port && t.addr.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in&>(t.addr).sin_port = htons(hc_.port);
    else if (hc_.port && t.addr.ss_family == AF_INET6)
        reinterpret_cast<sockaddr_in6&>(t.addr).sin6_port = htons(hc_.port);
    probes_.push_back(std::make_unique<Probe>(*this, std::move(t), u_));
    probes_.back()->start(base_, request_for(peer), hc_.timeout_ms(), hc_.match);
}

void Prober::probe_finished(const Probe& probe, CheckStage stage, int err) {
    const ProbeTarget& t = probe.target();
    // A worker that lost the lease (or is leaving) drops its late results.
    if (!holding_ || Worker::current().shutting_down() || !u_.shared) return;
    if (u_.shared->prober_pid.load(std::memory_order_acquire) != self_) return;
    if (t.slot >= u_.shared->slot_count) return;
    PeerShared& s = slot_at(*u_.shared, t.slot);
    // Resolve gave the slot to another address meanwhile.
    if (s.addr_key.load(std::memory_order_acquire) != t.addr_key) return;
    std::string detail = probe.tls_error().empty() ? error_detail(err) : " (SSL: " + probe.tls_error() + ")";
    if (stage != CheckStage::Passed) log_failure(t, stage, detail);
    int change = record_check(hc_, s, stage == CheckStage::Passed);
    if (change != 0) log_change(t, change, stage, detail);
}

void Prober::log_failure(const ProbeTarget& t, CheckStage stage, const std::string& detail) const {
    SLUICE_LOG(LogLevel::Info, "health check \"%s\" of peer %s in upstream \"%s\" failed while %s%s",
               hc_.uri.c_str(), t.addr_text.c_str(), u_.name.c_str(), stage_text(stage), detail.c_str());
}

void Prober::log_change(const ProbeTarget& t, int change, CheckStage stage, const std::string& detail) const {
    if (change > 0) {
        SLUICE_LOG(LogLevel::Notice, "peer is healthy while checking response, health check \"%s\" of peer %s "
                   "in upstream \"%s\"", hc_.uri.c_str(), t.addr_text.c_str(), u_.name.c_str());
        return;
    }
    SLUICE_LOG(LogLevel::Warn, "peer is unhealthy while %s%s, health check \"%s\" of peer %s in upstream \"%s\"",
               stage_text(stage), detail.c_str(), hc_.uri.c_str(), t.addr_text.c_str(),
               u_.name.c_str());
}

// ---- shared state ----

HealthCheck::HealthCheck() = default;
HealthCheck::~HealthCheck() = default;

bool never_checked(const PeerShared& s) {
    return s.check_passes.load(std::memory_order_relaxed) == 0 && s.check_fails.load(std::memory_order_relaxed) == 0;
}

void apply_initial_state(const HealthCheck& hc, Upstream& u) {
    if (!u.shared) return;
    for (const Peer& p : u.peers) {
        PeerShared& s = u.shared_state(p);
        if (never_checked(s)) s.unhealthy.store(hc.mandatory ? 1 : 0, std::memory_order_release);
    }
}

void clear_health_state(Upstream& u) {
    if (!u.shared) return;
    for (size_t i = 0; i < u.shared->slot_count; ++i) {
        PeerShared& s = slot_at(*u.shared, i);
        s.unhealthy.store(0, std::memory_order_release);
        s.check_passes.store(0, std::memory_order_relaxed);
        s.check_fails.store(0, std::memory_order_relaxed);
    }
    // An old worker still probing sees it no longer holds the lease.
    u.shared->prober_pid.store(0, std::memory_order_release);
}

bool hold_lease(UpstreamShared& sh, int32_t self, int64_t now_ms, uint64_t stale_ms) {
    int32_t holder = sh.prober_pid.load(std::memory_order_acquire);
    if (holder == self) {
        sh.prober_heartbeat_ms.store(now_ms, std::memory_order_release);
        return true;
    }
    // The pid first, then its heartbeat: a taker stores the heartbeat before
    // it swaps the pid in, so whoever sees the new pid sees a fresh heartbeat
    // and does not take the lease from a worker that has just taken it.
    if (holder != 0 && !lease_abandoned(holder, sh.prober_heartbeat_ms.load(std::memory_order_acquire), now_ms,
                                        stale_ms))
        return false;
    sh.prober_heartbeat_ms.store(now_ms, std::memory_order_seq_cst);
    return sh.prober_pid.compare_exchange_strong(holder, self, std::memory_order_seq_cst);
}

void release_lease(UpstreamShared& sh, int32_t self) {
    int32_t expected = self;
    sh.prober_pid.compare_exchange_strong(expected, 0, std::memory_order_acq_rel);
}

int record_check(const HealthCheck& hc, PeerShared& s, bool passed) {
    bool first = never_checked(s);
    bool unhealthy = s.unhealthy.load(std::memory_order_acquire) != 0;
    if (passed) {
        s.check_fails.store(0, std::memory_order_relaxed);
        uint32_t n = bump(s.check_passes);
        // `mandatory`: the first check decides, whatever passes= says.
        if (!unhealthy || (!first && n < hc.passes)) return 0;
        // Requests that failed while the peer was down (passive health)
        // must not keep it out for another fail_timeout: the checks that
        // just passed are the newer news.
        s.fails.store(0, std::memory_order_relaxed);
        s.down_until_ms.store(0, std::memory_order_release);
        s.unhealthy.store(0, std::memory_order_release);
        return +1;
    }
    s.check_passes.store(0, std::memory_order_relaxed);
    uint32_t n = bump(s.check_fails);
    if (n < hc.fails || (unhealthy && !first)) return 0;
    s.unhealthy.store(1, std::memory_order_release);
    return -1;
}

// ---- the worker's hooks ----

namespace {

HealthMainConf* main_conf_of(Cycle& cycle) {
    return static_cast<HealthMainConf*>(cycle.main_conf(health_check_module));
}

}  // namespace

bool init_worker(Cycle& cycle) {
    HealthMainConf* mc = main_conf_of(cycle);
    if (!mc) return true;
    for (auto& hc : mc->checks) {
        if (!hc->upstream->shared) continue;
        hc->prober = std::make_unique<Prober>(*hc, Worker::current().base());
        if (!hc->prober->start()) return false;
    }
    return true;
}

void exit_worker(Cycle& cycle) {
    HealthMainConf* mc = main_conf_of(cycle);
    if (!mc) return;
    for (auto& hc : mc->checks) hc->prober.reset();
}

}  // namespace sluice::http::health_check
