// The upstream core: balancers on upstreams built in memory (with a heap
// block standing in for the shared zone), passive health, the keep-alive
// pool on socket pairs, re-resolving against a fake DNS server, and
// upstream{} configurations loaded the way the daemon loads them.
#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "core/cycle.h"
#include "http/http_upstream.h"
#include "../../modules/health_check/health_check.h"

namespace sluice::http {
namespace {

// ---- upstreams built in memory ----

struct PeerSpec {
    std::string addr;  // "10.0.0.1:80"
    int weight = 1;
    bool backup = false;
    int max_fails = 1;
    uint64_t fail_timeout_ms = 10000;
    int max_conns = 0;
    bool down = false;
};

sockaddr_storage inet_address(const std::string& text, socklen_t& len) {
    sockaddr_storage a{};
    auto& sin = reinterpret_cast<sockaddr_in&>(a);
    size_t colon = text.rfind(':');
    sin.sin_family = AF_INET;
    sin.sin_port = htons(uint16_t(std::stoi(text.substr(colon + 1))));
    inet_pton(AF_INET, text.substr(0, colon).c_str(), &sin.sin_addr);
    len = sizeof(sockaddr_in);
    return a;
}

class TestUpstream {
public:
    explicit TestUpstream(const std::vector<PeerSpec>& specs, Balancer b = Balancer::RoundRobin,
                          bool consistent = false) {
        u.name = "test";
        u.balancer = b;
        u.hash_consistent = consistent;
        for (const PeerSpec& s : specs) {
            Peer p;
            p.addr = inet_address(s.addr, p.addr_len);
            p.addr_text = s.addr;
            p.weight = s.weight;
            p.backup = s.backup;
            p.max_fails = s.max_fails;
            p.fail_timeout_ms = s.fail_timeout_ms;
            p.max_conns = s.max_conns;
            p.down = s.down;
            u.peers.push_back(p);
        }
        upstream_init_peers(u);
        u.slot_count = u.static_slots = u.peers.size();
        size_ = upstream_shared_size(u.slot_count);
        mem_ = static_cast<char*>(aligned_alloc(64, (size_ + 63) / 64 * 64));
        upstream_attach_shared(u, mem_, false);
    }
    ~TestUpstream() { free(mem_); }

    // Another worker's view of the same shared state.
    std::unique_ptr<TestUpstream> second_worker(const std::vector<PeerSpec>& specs) {
        auto w = std::make_unique<TestUpstream>(specs, u.balancer, u.hash_consistent);
        upstream_attach_shared(w->u, mem_, true);
        return w;
    }

    // Picks and reports success at once; returns the address.
    std::string pick(std::string_view key = "", int64_t now = 1000) {
        Peer* p = upstream_pick_peer(u, key, TriedPeers(), now);
        if (!p) return "null";
        upstream_peer_done_at(u, *p, false, now);
        return p->addr_text;
    }
    Peer& peer(const std::string& addr) {
        for (Peer& p : u.peers)
            if (p.addr_text == addr) return p;
        throw std::runtime_error("no peer " + addr);
    }
    void set_conns(const std::string& addr, int n) { u.shared_state(peer(addr)).active_conns = n; }
    void fail(const std::string& addr, int64_t now) {
        Peer& p = peer(addr);
        u.shared_state(p).active_conns++;
        upstream_peer_done_at(u, p, true, now);
    }

    Upstream u;

private:
    char* mem_ = nullptr;
    size_t size_ = 0;
};

std::vector<PeerSpec> three(int wa, int wb, int wc) {
    return {{"10.0.0.1:80", wa}, {"10.0.0.2:80", wb}, {"10.0.0.3:80", wc}};
}

TEST(UpstreamRoundRobin, SmoothWeightedSequenceIsNginxs) {
    TestUpstream t(three(5, 1, 1));
    std::string seq;
    for (int i = 0; i < 7; ++i) {
        std::string a = t.pick();
        seq += a == "10.0.0.1:80" ? 'a' : a == "10.0.0.2:80" ? 'b' : 'c';
    }
    EXPECT_EQ(seq, "aabacaa");
    // And it repeats.
    std::string again;
    for (int i = 0; i < 7; ++i) again += t.pick()[7];
    EXPECT_EQ(again, "1121311");
}

TEST(UpstreamRoundRobin, WeightedDistributionWithinOnePercent) {
    TestUpstream t(three(3, 2, 1));
    std::map<std::string, int> n;
    for (int i = 0; i < 10000; ++i) n[t.pick()]++;
    EXPECT_NEAR(n["10.0.0.1:80"], 5000, 100);
    EXPECT_NEAR(n["10.0.0.2:80"], 3333, 100);
    EXPECT_NEAR(n["10.0.0.3:80"], 1667, 100);
}

TEST(UpstreamRoundRobin, TriedPeersAreSkipped) {
    TestUpstream t(three(1, 1, 1));
    TriedPeers tried;
    tried.add(0);
    tried.add(1);
    Peer* p = upstream_pick_peer(t.u, "", tried, 1000);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(p->addr_text, "10.0.0.3:80");
    tried.add(2);
    EXPECT_EQ(upstream_pick_peer(t.u, "", tried, 1000), nullptr);
}

TEST(UpstreamRoundRobin, CountersFollowSelectAndDone) {
    TestUpstream t(three(1, 1, 1));
    Peer* p = upstream_pick_peer(t.u, "", TriedPeers(), 1000);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(t.u.shared_state(*p).active_conns.load(), 1);
    EXPECT_EQ(t.u.shared_state(*p).requests.load(), 1u);
    EXPECT_EQ(p->worker_conns, 1u);
    upstream_peer_done_at(t.u, *p, false, 1000);
    EXPECT_EQ(t.u.shared_state(*p).active_conns.load(), 0);
    EXPECT_EQ(p->worker_conns, 0u);
}

TEST(UpstreamLeastConn, PrefersTheLeastLoaded) {
    TestUpstream t(three(1, 1, 1), Balancer::LeastConn);
    t.set_conns("10.0.0.1:80", 5);
    t.set_conns("10.0.0.2:80", 2);
    t.set_conns("10.0.0.3:80", 3);
    EXPECT_EQ(t.pick(), "10.0.0.2:80");
    // Connections held by the picks themselves count too.
    std::vector<Peer*> held;
    for (int i = 0; i < 2; ++i) held.push_back(upstream_pick_peer(t.u, "", TriedPeers(), 1000));
    EXPECT_EQ(held[0]->addr_text, "10.0.0.2:80");  // 2 -> 3
    EXPECT_NE(held[1], nullptr);                   // 3 vs 3: a tie, either of b and c
    EXPECT_NE(held[1]->addr_text, "10.0.0.1:80");
}

TEST(UpstreamLeastConn, WeightedAndTiesGoRoundRobin) {
    TestUpstream t({{"10.0.0.1:80", 2}, {"10.0.0.2:80", 1}}, Balancer::LeastConn);
    t.set_conns("10.0.0.1:80", 2);  // 2/2 = 1 per weight
    t.set_conns("10.0.0.2:80", 1);  // 1/1
    std::map<std::string, int> n;
    for (int i = 0; i < 300; ++i) n[t.pick()]++;
    // Tied: weighted round robin among the tied peers, 2:1.
    EXPECT_EQ(n["10.0.0.1:80"], 200);
    EXPECT_EQ(n["10.0.0.2:80"], 100);
}

// ---- hash ----

std::vector<PeerSpec> servers(int n) {
    std::vector<PeerSpec> v;
    for (int i = 1; i <= n; ++i) v.push_back({"10.0.1." + std::to_string(i) + ":8080"});
    return v;
}

std::map<std::string, std::string> owners(TestUpstream& t, int keys) {
    std::map<std::string, std::string> m;
    for (int i = 0; i < keys; ++i) {
        std::string k = "user-" + std::to_string(i);
        m[k] = t.pick(k);
    }
    return m;
}

TEST(UpstreamHash, SameKeySamePeerAndRehashPastDownPeers) {
    TestUpstream t(servers(4), Balancer::Hash);
    std::string first = t.pick("/some/uri");
    for (int i = 0; i < 10; ++i) EXPECT_EQ(t.pick("/some/uri"), first);
    std::map<std::string, int> n;
    for (auto& [k, v] : owners(t, 4000)) n[v]++;
    for (auto& [addr, count] : n) EXPECT_NEAR(count, 1000, 150) << addr;
    t.peer(first).down = true;
    std::string second = t.pick("/some/uri");
    EXPECT_NE(second, first);
    EXPECT_NE(second, "null");
}

TEST(UpstreamHash, KetamaPointsPerWeight) {
    TestUpstream t({{"10.0.1.1:8080", 1}, {"10.0.1.2:8080", 3}}, Balancer::Hash, true);
    EXPECT_EQ(t.u.ketama.size(), size_t(160 * 4));  // no two points collide here
    EXPECT_TRUE(std::is_sorted(t.u.ketama.begin(), t.u.ketama.end()));
}

TEST(UpstreamHash, ConsistentRemovingAServerMovesOnlyItsKeys) {
    TestUpstream five(servers(5), Balancer::Hash, true);
    auto before = owners(five, 10000);
    auto specs = servers(5);
    specs.erase(specs.begin() + 2);  // 10.0.1.3 leaves
    TestUpstream four(specs, Balancer::Hash, true);
    auto after = owners(four, 10000);
    int moved = 0;
    for (auto& [k, owner] : before) {
        if (after[k] == owner) continue;
        ++moved;
        EXPECT_EQ(owner, "10.0.1.3:8080") << k;
    }
    EXPECT_GT(moved, 1000);  // about a fifth
    EXPECT_LT(moved, 3000);
}

TEST(UpstreamHash, ConsistentAddingAServerMovesAboutASixth) {
    TestUpstream five(servers(5), Balancer::Hash, true);
    auto before = owners(five, 10000);
    TestUpstream six(servers(6), Balancer::Hash, true);
    auto after = owners(six, 10000);
    int moved = 0;
    for (auto& [k, owner] : before) {
        if (after[k] == owner) continue;
        ++moved;
        EXPECT_EQ(after[k], "10.0.1.6:8080") << k;  // keys only move to the newcomer
    }
    EXPECT_NEAR(moved, 10000 / 6, 600);
}

TEST(UpstreamHash, ConsistentWalksPastUnusablePeers) {
    TestUpstream t(servers(3), Balancer::Hash, true);
    std::string owner = t.pick("k");
    t.peer(owner).down = true;
    std::string next = t.pick("k");
    EXPECT_NE(next, owner);
    EXPECT_NE(next, "null");
    t.peer(owner).down = false;
    EXPECT_EQ(t.pick("k"), owner);  // back where it was
}

// ---- random ----

TEST(UpstreamRandom, WeightedDistribution) {
    TestUpstream t({{"10.0.0.1:80", 3}, {"10.0.0.2:80", 1}}, Balancer::Random);
    std::map<std::string, int> n;
    for (int i = 0; i < 100000; ++i) n[t.pick()]++;
    EXPECT_NEAR(n["10.0.0.1:80"], 75000, 1000);
}

TEST(UpstreamRandom, TwoPicksTheLessLoadedOfTwo) {
    TestUpstream t({{"10.0.0.1:80"}, {"10.0.0.2:80"}}, Balancer::RandomTwo);
    t.set_conns("10.0.0.1:80", 10);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(t.pick(), "10.0.0.2:80");
    t.set_conns("10.0.0.1:80", 0);
    t.set_conns("10.0.0.2:80", 4);
    for (int i = 0; i < 100; ++i) EXPECT_EQ(t.pick(), "10.0.0.1:80");
}

TEST(UpstreamRandom, TwoAvoidsTheBusiestOfMany) {
    TestUpstream t(servers(4), Balancer::RandomTwo);
    t.set_conns("10.0.1.1:8080", 100);
    // Two distinct candidates: the busiest can never win.
    for (int i = 0; i < 1000; ++i) EXPECT_NE(t.pick(), "10.0.1.1:8080");
}

// ---- health, limits, backup ----

TEST(UpstreamPassiveHealth, DownAfterMaxFailsAndBackAfterFailTimeout) {
    std::vector<PeerSpec> specs = {{"10.0.0.1:80", 1, false, 2, 10000}, {"10.0.0.2:80", 1, false, 2, 10000}};
    TestUpstream t(specs);
    Peer& a = t.peer("10.0.0.1:80");
    t.fail("10.0.0.1:80", 1000);
    EXPECT_TRUE(upstream_peer_usable(t.u, a, 1001));  // one of two
    t.fail("10.0.0.1:80", 2000);
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 2001));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(t.pick("", 5000), "10.0.0.2:80");

    // Every worker sees it down: the state is shared.
    auto other = t.second_worker(specs);
    EXPECT_FALSE(upstream_peer_usable(other->u, other->peer("10.0.0.1:80"), 5000));

    // After fail_timeout one request may try it; others keep away meanwhile.
    int64_t later = 2000 + 10000 + 1;
    EXPECT_TRUE(upstream_peer_usable(t.u, a, later));
    TriedPeers skip_b;
    skip_b.add(1);
    Peer* probe = upstream_pick_peer(t.u, "", skip_b, later);
    ASSERT_EQ(probe, &a);
    EXPECT_EQ(upstream_pick_peer(other->u, "", skip_b, later), nullptr);
    upstream_peer_done_at(t.u, *probe, false, later + 5);
    // The probe succeeded: in service for everyone, failures forgotten.
    EXPECT_TRUE(upstream_peer_usable(other->u, other->peer("10.0.0.1:80"), later + 6));
    t.fail("10.0.0.1:80", later + 10);
    EXPECT_TRUE(upstream_peer_usable(t.u, a, later + 11));
}

TEST(UpstreamPassiveHealth, FailedProbeDisablesAgain) {
    TestUpstream t({{"10.0.0.1:80", 1, false, 1, 1000}, {"10.0.0.2:80"}});
    Peer& a = t.peer("10.0.0.1:80");
    t.fail("10.0.0.1:80", 1000);
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 1500));
    TriedPeers skip_b;
    skip_b.add(1);
    Peer* probe = upstream_pick_peer(t.u, "", skip_b, 2001);
    ASSERT_EQ(probe, &a);
    upstream_peer_done_at(t.u, *probe, true, 2002);
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 2500));
    EXPECT_TRUE(upstream_peer_usable(t.u, a, 3003));
}

TEST(UpstreamPassiveHealth, FailuresOutsideTheWindowDoNotAddUp) {
    TestUpstream t({{"10.0.0.1:80", 1, false, 2, 1000}, {"10.0.0.2:80"}});
    Peer& a = t.peer("10.0.0.1:80");
    t.fail("10.0.0.1:80", 1000);
    t.fail("10.0.0.1:80", 2500);  // the first one's window is over
    EXPECT_TRUE(upstream_peer_usable(t.u, a, 2501));
    t.fail("10.0.0.1:80", 2600);
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 2601));
}

TEST(UpstreamPassiveHealth, MaxFailsZeroAndLoneServerNeverGoDown) {
    TestUpstream off({{"10.0.0.1:80", 1, false, 0}, {"10.0.0.2:80"}});
    for (int i = 0; i < 5; ++i) off.fail("10.0.0.1:80", 1000);
    EXPECT_TRUE(upstream_peer_usable(off.u, off.peer("10.0.0.1:80"), 1001));
    // nginx: a single server is never considered unavailable.
    TestUpstream lone({{"10.0.0.1:80"}});
    for (int i = 0; i < 5; ++i) lone.fail("10.0.0.1:80", 1000);
    EXPECT_EQ(lone.pick("", 1001), "10.0.0.1:80");
}

TEST(UpstreamPassiveHealth, ActiveHealthUnhealthyIsSkipped) {
    TestUpstream t(three(1, 1, 1));
    t.u.shared_state(t.peer("10.0.0.2:80")).unhealthy = 1;
    for (int i = 0; i < 30; ++i) EXPECT_NE(t.pick(), "10.0.0.2:80");
}

// Requests that failed while a peer was down by its checks (max_fails
// reached) must not keep it out for fail_timeout once the checks pass again.
TEST(UpstreamPassiveHealth, ActiveHealthRecoveryClearsPassiveDownState) {
    TestUpstream t({{"10.0.0.1:80", 1, false, 1, 30000}, {"10.0.0.2:80"}});
    Peer& a = t.peer("10.0.0.1:80");
    PeerShared& s = t.u.shared_state(a);
    health_check::HealthCheck hc;
    hc.passes = 2;
    EXPECT_EQ(health_check::record_check(hc, s, false), -1);
    t.fail("10.0.0.1:80", 1000);
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 1001));
    EXPECT_EQ(health_check::record_check(hc, s, true), 0);  // one pass of two
    EXPECT_FALSE(upstream_peer_usable(t.u, a, 1002));
    EXPECT_EQ(health_check::record_check(hc, s, true), +1);
    EXPECT_TRUE(upstream_peer_usable(t.u, a, 1003));
    // Its effective weight recovers over a round, as after any failure.
    std::multiset<std::string> picks;
    for (int i = 0; i < 4; ++i) picks.insert(t.pick("", 1004));
    EXPECT_EQ(picks.count("10.0.0.1:80"), 2u);
}

TEST(UpstreamLimits, MaxConnsRespectedAcrossWorkers) {
    std::vector<PeerSpec> specs = {{"10.0.0.1:80", 1, false, 1, 10000, 2}, {"10.0.0.2:80", 1, false, 1, 10000, 1}};
    TestUpstream t(specs);
    auto other = t.second_worker(specs);
    Peer* p1 = upstream_pick_peer(t.u, "", TriedPeers(), 1000);
    Peer* p2 = upstream_pick_peer(other->u, "", TriedPeers(), 1000);
    Peer* p3 = upstream_pick_peer(t.u, "", TriedPeers(), 1000);
    ASSERT_TRUE(p1 && p2 && p3);
    EXPECT_EQ(upstream_pick_peer(other->u, "", TriedPeers(), 1000), nullptr);  // 2 + 1 in flight
    upstream_peer_done_at(t.u, *p1, false, 1000);
    EXPECT_NE(upstream_pick_peer(other->u, "", TriedPeers(), 1000), nullptr);
}

TEST(UpstreamBackup, UsedOnlyWhenPrimariesAreUnusable) {
    TestUpstream t({{"10.0.0.1:80"}, {"10.0.0.9:80", 1, true}, {"10.0.0.2:80"}});
    EXPECT_EQ(t.u.primary_count, 2u);
    EXPECT_TRUE(t.u.peers.back().backup);
    for (int i = 0; i < 20; ++i) EXPECT_NE(t.pick(), "10.0.0.9:80");
    t.peer("10.0.0.1:80").down = true;
    t.fail("10.0.0.2:80", 1000);
    EXPECT_EQ(t.pick("", 1001), "10.0.0.9:80");
    TriedPeers tried;
    tried.add(2);  // the backup already failed this request
    EXPECT_EQ(upstream_pick_peer(t.u, "", tried, 1001), nullptr);
}

TEST(UpstreamBackup, AllDownIsNull) {
    TestUpstream t({{"10.0.0.1:80", 1, false, 1, 10000, 0, true}, {"10.0.0.2:80", 1, true, 1, 10000, 0, true}});
    EXPECT_EQ(t.pick(), "null");
    for (Balancer b : {Balancer::LeastConn, Balancer::Hash, Balancer::Random, Balancer::RandomTwo}) {
        TestUpstream d({{"10.0.0.1:80", 1, false, 1, 10000, 0, true}, {"10.0.0.2:80", 1, false, 1, 10000, 0, true}}, b);
        EXPECT_EQ(d.pick("k"), "null") << int(b);
    }
}

// ---- shared zone across reloads ----

TEST(UpstreamShared, KeptStateFollowsAddresses) {
    TestUpstream t(three(1, 1, 1));
    t.fail("10.0.0.2:80", 1000);
    t.u.shared_state(t.peer("10.0.0.2:80")).down_until_ms = 99999;
    // The same zone under a changed configuration: 10.0.0.3 became 10.0.0.4.
    auto next = t.second_worker({{"10.0.0.1:80"}, {"10.0.0.2:80"}, {"10.0.0.4:80"}});
    EXPECT_EQ(next->u.shared_state(next->peer("10.0.0.2:80")).down_until_ms.load(), 99999);
    EXPECT_EQ(next->u.shared_state(next->peer("10.0.0.4:80")).fails.load(), 0u);
}

TEST(UpstreamShared, ResolvedAddressesKeepTheirSlots) {
    Upstream u;
    u.name = "dyn";
    UpstreamServerConf s;
    s.name = "svc.test:8080";
    s.host = "svc.test";
    s.port = 8080;
    s.resolve = true;
    u.servers.push_back(s);
    u.slot_count = 8;
    u.static_slots = 0;
    std::vector<char> mem(upstream_shared_size(u.slot_count) + 64);
    void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t(63));
    upstream_attach_shared(u, aligned, false);
    auto addrs_of = [](std::vector<std::string> texts, std::vector<socklen_t>& lens) {
        std::vector<sockaddr_storage> v;
        lens.clear();
        for (auto& t : texts) {
            socklen_t len;
            v.push_back(inet_address(t, len));
            lens.push_back(len);
        }
        return v;
    };
    std::vector<socklen_t> lens;
    auto a = addrs_of({"10.0.0.1:8080", "10.0.0.2:8080"}, lens);
    EXPECT_TRUE(upstream_apply_resolved(u, 0, a, lens, 1000));
    ASSERT_EQ(u.peers.size(), 2u);
    EXPECT_FALSE(upstream_apply_resolved(u, 0, a, lens, 1000));  // unchanged
    size_t slot2 = u.peers[1].shared_index;
    Peer* held = upstream_pick_peer(u, "", TriedPeers(), 1000);
    ASSERT_NE(held, nullptr);
    auto b = addrs_of({"10.0.0.2:8080", "10.0.0.3:8080"}, lens);
    EXPECT_TRUE(upstream_apply_resolved(u, 0, b, lens, 2000));
    ASSERT_EQ(u.peers.size(), 2u);
    EXPECT_EQ(u.peers[0].addr_text, "10.0.0.2:8080");
    EXPECT_EQ(u.peers[0].shared_index, slot2);
    EXPECT_EQ(u.peers[1].addr_text, "10.0.0.3:8080");
    EXPECT_EQ(u.retired_peers.size(), 1u);
    // The request in flight finishes on the retired copy.
    upstream_peer_done_at(u, *held, false, 2001);
    EXPECT_EQ(held->worker_conns, 0u);
}

// ---- keep-alive pool ----

class UpstreamKeepalive : public ::testing::Test {
protected:
    void SetUp() override { base_ = event_base_new(); }
    void TearDown() override {
        for (UpstreamConnection* c : taken_) upstream_connection_close(c);
        for (int fd : far_) close(fd);
        event_base_free(base_);
    }
    // A connected pair: the near end goes into the pool, the far end plays the upstream.
    UpstreamConnection* connection(uint64_t requests = 1) {
        int sv[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        far_.push_back(sv[1]);
        UpstreamConnection* c = upstream_connection_open(base_, sv[0], nullptr, nullptr);
        c->requests = requests;
        return c;
    }
    // A connection the test took back from the pool (closed at the end).
    UpstreamConnection* taken(UpstreamConnection* c) {
        if (c) taken_.push_back(c);
        return c;
    }
    void spin() {
        for (int i = 0; i < 5; ++i) event_base_loop(base_, EVLOOP_NONBLOCK);
    }
    // The far end sees EOF (or a reset, when data was left unread) once the near end is closed.
    static bool far_closed(int far) {
        char c;
        ssize_t n = recv(far, &c, 1, MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }

    event_base* base_ = nullptr;
    std::vector<int> far_;
    std::vector<UpstreamConnection*> taken_;
    socklen_t len_a_ = 0, len_b_ = 0;
    sockaddr_storage a_ = inet_address("10.0.0.1:80", len_a_);
    sockaddr_storage b_ = inet_address("10.0.0.2:80", len_b_);
};

TEST_F(UpstreamKeepalive, ReusesOnlyForTheSamePeer) {
    KeepalivePool pool(base_, 4, 60000, 100);
    UpstreamConnection* c = connection(3);
    EXPECT_TRUE(pool.put(a_, len_a_, c));
    EXPECT_EQ(pool.idle_count(), 1u);
    EXPECT_EQ(pool.get(b_, len_b_), nullptr);
    EXPECT_EQ(taken(pool.get(a_, len_a_)), c);
    EXPECT_EQ(c->requests, 3u);
    EXPECT_EQ(pool.idle_count(), 0u);
    EXPECT_EQ(pool.get(a_, len_a_), nullptr);
}

TEST_F(UpstreamKeepalive, UnsolicitedDataOrEofCloses) {
    KeepalivePool pool(base_, 4, 60000, 100);
    pool.put(a_, len_a_, connection());
    pool.put(a_, len_a_, connection());
    ASSERT_EQ(write(far_[0], "x", 1), 1);  // unsolicited byte on the first
    shutdown(far_[1], SHUT_WR);            // EOF on the second
    spin();
    EXPECT_EQ(pool.idle_count(), 0u);
    EXPECT_TRUE(far_closed(far_[0]));
    EXPECT_TRUE(far_closed(far_[1]));
}

// The read event stays added while the connection is idle and after it is
// taken: no syscall either way, and it reaches whoever holds it.
TEST_F(UpstreamKeepalive, ReadEventStaysAddedAndReachesTheHolder) {
    KeepalivePool pool(base_, 4, 60000, 100);
    UpstreamConnection* c = connection();
    pool.put(a_, len_a_, c);
    EXPECT_TRUE(c->reading);
    EXPECT_TRUE(event_pending(&c->rev, EV_READ, nullptr));
    spin();
    ASSERT_EQ(taken(pool.get(a_, len_a_)), c);
    EXPECT_TRUE(event_pending(&c->rev, EV_READ, nullptr));
    int reads = 0;
    c->owner = &reads;
    c->handler = [](UpstreamConnection& conn, short what) {
        if (what & EV_READ) ++*static_cast<int*>(conn.owner);
        upstream_connection_want_read(conn, false);
    };
    ASSERT_EQ(write(far_[0], "HTTP", 4), 4);
    spin();
    EXPECT_EQ(reads, 1);
}

// A connection the upstream closed while the loop had not run yet is still
// handed out (get() makes no syscall): the caller's first read or write
// fails and the proxy retries on a fresh connection.
TEST_F(UpstreamKeepalive, DeadConnectionIsNoticedByTheLoop) {
    KeepalivePool pool(base_, 4, 60000, 100);
    pool.put(a_, len_a_, connection());
    pool.put(a_, len_a_, connection());
    shutdown(far_[0], SHUT_WR);
    spin();
    EXPECT_EQ(pool.idle_count(), 1u);
    EXPECT_TRUE(far_closed(far_[0]));
    EXPECT_NE(taken(pool.get(a_, len_a_)), nullptr);
    EXPECT_EQ(pool.get(a_, len_a_), nullptr);
}

TEST_F(UpstreamKeepalive, LeastRecentlyUsedMakesRoom) {
    KeepalivePool pool(base_, 2, 60000, 100);
    UpstreamConnection *c1 = connection(), *c2 = connection(), *c3 = connection();
    pool.put(a_, len_a_, c1);
    pool.put(a_, len_a_, c2);
    pool.put(b_, len_b_, c3);
    EXPECT_EQ(pool.idle_count(), 2u);
    EXPECT_TRUE(far_closed(far_[0]));  // c1 was the oldest
    EXPECT_EQ(taken(pool.get(a_, len_a_)), c2);
    EXPECT_EQ(taken(pool.get(b_, len_b_)), c3);
}

TEST_F(UpstreamKeepalive, RequestLimit) {
    KeepalivePool pool(base_, 2, 60000, 5);
    EXPECT_FALSE(pool.put(a_, len_a_, connection(5)));
    EXPECT_EQ(pool.idle_count(), 0u);
    EXPECT_TRUE(far_closed(far_[0]));
}

TEST_F(UpstreamKeepalive, IdleTimeout) {
    KeepalivePool pool(base_, 2, 30, 100);
    pool.put(a_, len_a_, connection());
    timeval tv{0, 200000};
    event_base_loopexit(base_, &tv);
    event_base_dispatch(base_);
    EXPECT_EQ(pool.idle_count(), 0u);
    EXPECT_TRUE(far_closed(far_[0]));
}

// A timer still pending for an earlier deadline (a request's) fires early:
// the idle connection waits on until its own timeout.
TEST_F(UpstreamKeepalive, IdleTimeoutAfterAnEarlierTimer) {
    KeepalivePool pool(base_, 2, 150, 100);
    UpstreamConnection* c = connection();
    timeval now;
    event_base_gettimeofday_cached(base_, &now);
    int64_t now_ms = int64_t(now.tv_sec) * 1000 + now.tv_usec / 1000;
    upstream_connection_timer(*c, now_ms + 20, now_ms);
    pool.put(a_, len_a_, c);
    timeval early{0, 80000};
    event_base_loopexit(base_, &early);
    event_base_dispatch(base_);
    EXPECT_EQ(pool.idle_count(), 1u);
    timeval late{0, 300000};
    event_base_loopexit(base_, &late);
    event_base_dispatch(base_);
    EXPECT_EQ(pool.idle_count(), 0u);
    EXPECT_TRUE(far_closed(far_[0]));
}

TEST_F(UpstreamKeepalive, WithoutPoolCloses) {
    Upstream u;
    Peer p;
    p.addr = a_;
    p.addr_len = len_a_;
    upstream_keepalive_put(u, p, connection());
    EXPECT_TRUE(far_closed(far_[0]));
    EXPECT_EQ(upstream_keepalive_get(u, p), nullptr);
}

// ---- resolve against a fake DNS server ----

// Answers A queries from `answers` (TTL 1) and AAAA queries with no data.
class FakeDns {
public:
    explicit FakeDns(event_base* base) {
        fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        sockaddr_in sin{};
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
        socklen_t len = sizeof sin;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
        port_ = ntohs(sin.sin_port);
        ev_ = event_new(base, fd_, EV_READ | EV_PERSIST, on_query, this);
        event_add(ev_, nullptr);
    }
    ~FakeDns() {
        event_free(ev_);
        close(fd_);
    }
    uint16_t port() const { return port_; }
    std::vector<std::string> answers;
    int queries = 0;

private:
    static void on_query(evutil_socket_t fd, short, void* arg) {
        auto& self = *static_cast<FakeDns*>(arg);
        unsigned char q[512];
        sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
        if (n < 17) return;
        ++self.queries;
        size_t qend = 12;
        while (qend < size_t(n) && q[qend]) qend += q[qend] + 1;
        qend += 5;  // root label, QTYPE, QCLASS
        uint16_t qtype = uint16_t(q[qend - 4] << 8 | q[qend - 3]);
        std::string r(reinterpret_cast<char*>(q), qend);
        size_t count = qtype == 1 ? self.answers.size() : 0;
        r[2] = char(0x81);
        r[3] = char(0x80);
        r[6] = 0;
        r[7] = char(count);
        r[8] = r[9] = r[10] = r[11] = 0;
        for (size_t i = 0; i < count; ++i) {
            unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4};
            inet_pton(AF_INET, self.answers[i].c_str(), rr + 12);
            r.append(reinterpret_cast<char*>(rr), 16);
        }
        sendto(fd, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
    int fd_ = -1;
    uint16_t port_ = 0;
    event* ev_ = nullptr;
};

bool run_until(event_base* base, const std::function<bool()>& done, int max_ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(max_ms);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        timeval tv{0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return true;
}

std::set<std::string> addresses_of(const Upstream& u) {
    std::set<std::string> s;
    for (const Peer& p : u.peers) s.insert(p.addr_text);
    return s;
}

TEST(UpstreamResolve, ReResolvesInTheBackground) {
    event_base* base = event_base_new();
    {
        FakeDns dns(base);
        dns.answers = {"10.0.0.1", "10.0.0.2"};
        Upstream u;
        u.name = "dyn";
        UpstreamServerConf s;
        s.name = "svc.test:8080";
        s.host = "svc.test";
        s.port = 8080;
        s.resolve = true;
        u.servers.push_back(s);
        auto rc = std::make_shared<ResolverConf>();
        rc->nameservers = {"127.0.0.1:" + std::to_string(dns.port())};
        rc->timeout_ms = 3000;
        u.resolver = rc;
        u.slot_count = 8;
        u.static_slots = 0;
        std::vector<char> mem(upstream_shared_size(u.slot_count) + 64);
        void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(mem.data()) + 63) & ~uintptr_t(63));
        upstream_attach_shared(u, aligned, false);

        ASSERT_TRUE(upstream_resolve_start(u, base));
        std::set<std::string> first = {"10.0.0.1:8080", "10.0.0.2:8080"};
        ASSERT_TRUE(run_until(base, [&] { return addresses_of(u) == first; }, 3000)) << dns.queries;
        dns.answers = {"10.0.0.3"};
        // The TTL is 1s: the next round picks up the change.
        std::set<std::string> second = {"10.0.0.3:8080"};
        ASSERT_TRUE(run_until(base, [&] { return addresses_of(u) == second; }, 4000));
        upstream_resolve_stop(u);
        upstream_resolve_stop_all();
    }
    event_base_free(base);
}

// ---- upstream{} configurations ----

class UpstreamConf {
public:
    explicit UpstreamConf(const std::string& text) {
        char tmpl[] = "/tmp/sluice-upstream-XXXXXX";
        dir_ = mkdtemp(tmpl);
        path_ = dir_ + "/sluice.conf";
        mkdir((dir_ + "/logs").c_str(), 0755);
        std::ofstream(path_) << text;
        StartOptions opts;
        opts.prefix = dir_ + "/";
        opts.conf_path = path_;
        cycle_ = Cycle::load(opts, nullptr, error_);
    }
    ~UpstreamConf() {
        std::string cmd = "rm -rf '" + dir_ + "'";
        if (system(cmd.c_str()) != 0) perror("rm");
    }
    Cycle* cycle() { return cycle_.get(); }
    const std::string& error() const { return error_; }
    const std::string& path() const { return path_; }

private:
    std::string dir_, path_, error_;
    std::unique_ptr<Cycle> cycle_;
};

std::string http(const std::string& body) { return "events {}\nhttp {\n" + body + "}\n"; }

TEST(UpstreamConfig, AllDirectivesLoad) {
    UpstreamConf c(http(R"(upstream backend {
    zone backend 64k;
    least_conn;
    server 127.0.0.1:8081 weight=5 max_fails=3 fail_timeout=30s max_conns=100;
    server 127.0.0.1:8082;
    server [::1]:8083 down;
    server localhost backup;
    keepalive 16;
    keepalive_timeout 30s;
    keepalive_requests 500;
}
upstream by_key {
    hash $request_uri consistent;
    server 127.0.0.1:9001;
    server 127.0.0.1:9002 weight=2;
}
upstream p2c {
    random two least_conn;
    server 127.0.0.1:9003;
    server 127.0.0.1:9004;
}
)"));
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    Upstream* u = find_upstream(*c.cycle(), "backend");
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->balancer, Balancer::LeastConn);
    EXPECT_EQ(u->servers.size(), 4u);
    ASSERT_GE(u->peers.size(), 4u);  // localhost may be 127.0.0.1 and ::1
    EXPECT_EQ(u->primary_count, 3u);
    EXPECT_EQ(u->peers[0].addr_text, "127.0.0.1:8081");
    EXPECT_EQ(u->peers[0].weight, 5);
    EXPECT_EQ(u->peers[0].max_fails, 3);
    EXPECT_EQ(u->peers[0].fail_timeout_ms, 30000u);
    EXPECT_EQ(u->peers[0].max_conns, 100);
    EXPECT_EQ(u->peers[2].addr_text, "[::1]:8083");
    EXPECT_TRUE(u->peers[2].down);
    EXPECT_TRUE(u->peers.back().backup);
    EXPECT_EQ(u->peers.back().addr_text.substr(u->peers.back().addr_text.size() - 3), ":80");
    EXPECT_EQ(u->keepalive, 16u);
    EXPECT_EQ(u->keepalive_timeout_ms, 30000u);
    EXPECT_EQ(u->keepalive_requests, 500u);
    ASSERT_NE(u->zone, nullptr);
    EXPECT_EQ(u->zone->name, "upstream:backend");
    Upstream* h = find_upstream(*c.cycle(), "by_key");
    ASSERT_NE(h, nullptr);
    EXPECT_TRUE(h->hash_consistent);
    EXPECT_EQ(h->hash_key.source(), "$request_uri");
    EXPECT_EQ(h->ketama.size(), 160u * 3);
    EXPECT_EQ(find_upstream(*c.cycle(), "p2c")->balancer, Balancer::RandomTwo);
    EXPECT_EQ(find_upstream(*c.cycle(), "nope"), nullptr);
}

TEST(UpstreamConfig, DefaultsAndZoneMapping) {
    UpstreamConf c(http("upstream b {\n server 127.0.0.1:1;\n server 127.0.0.1:2;\n}\n"));
    ASSERT_NE(c.cycle(), nullptr) << c.error();
    Upstream* u = find_upstream(*c.cycle(), "b");
    EXPECT_EQ(u->balancer, Balancer::RoundRobin);
    EXPECT_EQ(u->keepalive, 0u);
    EXPECT_EQ(u->keepalive_timeout_ms, 60000u);
    EXPECT_EQ(u->keepalive_requests, 1000u);
    EXPECT_EQ(u->peers[0].weight, 1);
    EXPECT_EQ(u->peers[0].max_fails, 1);
    EXPECT_EQ(u->peers[0].fail_timeout_ms, 10000u);
    std::string err;
    ASSERT_TRUE(c.cycle()->map_shm_zones(nullptr, err)) << err;
    ASSERT_NE(u->shared, nullptr);
    EXPECT_EQ(u->shared->slot_count, 2u);
    EXPECT_EQ(upstream_pick_peer(*u, "", TriedPeers(), 1000)->addr_text, "127.0.0.1:1");
}

TEST(UpstreamConfig, ReloadKeepsSharedState) {
    std::string text = http("upstream b {\n server 127.0.0.1:1;\n server 127.0.0.1:2;\n}\n");
    UpstreamConf first(text), second(text), bigger(http("upstream b {\n server 127.0.0.1:1;\n server 127.0.0.1:2;\n"
                                                         " server 127.0.0.1:3;\n}\n"));
    std::string err;
    ASSERT_TRUE(first.cycle()->map_shm_zones(nullptr, err)) << err;
    Upstream* u1 = find_upstream(*first.cycle(), "b");
    u1->shared_state(u1->peers[1]).down_until_ms = 12345;
    ASSERT_TRUE(second.cycle()->map_shm_zones(first.cycle(), err)) << err;
    Upstream* u2 = find_upstream(*second.cycle(), "b");
    EXPECT_EQ(u2->shared, u1->shared);
    EXPECT_EQ(u2->shared_state(u2->peers[1]).down_until_ms.load(), 12345);
    // Another peer count: a new zone, fresh state.
    ASSERT_TRUE(bigger.cycle()->map_shm_zones(second.cycle(), err)) << err;
    Upstream* u3 = find_upstream(*bigger.cycle(), "b");
    EXPECT_EQ(u3->shared_state(u3->peers[1]).down_until_ms.load(), 0);
}

TEST(UpstreamConfig, ResolveNeedsAResolver) {
    UpstreamConf ok(http("resolver 127.0.0.1 valid=10s ipv6=off;\nupstream d {\n server localhost:8080 resolve;\n"
                         " server 127.0.0.1:1 resolve;\n}\n"));
    ASSERT_NE(ok.cycle(), nullptr) << ok.error();
    Upstream* u = find_upstream(*ok.cycle(), "d");
    ASSERT_NE(u->resolver, nullptr);
    EXPECT_EQ(u->resolver->nameservers, std::vector<std::string>{"127.0.0.1:53"});
    EXPECT_EQ(u->resolver->valid_ms, 10000u);
    EXPECT_FALSE(u->resolver->ipv6);
    EXPECT_TRUE(u->servers[0].resolve);
    EXPECT_FALSE(u->servers[1].resolve);  // an IP address has nothing to re-resolve
    EXPECT_EQ(u->static_slots, 1u);
    EXPECT_EQ(u->slot_count, 1u + 32u);
    // A resolve server that does not resolve yet is not an error.
    UpstreamConf later(http("upstream d {\n resolver 127.0.0.1:5353;\n resolver_timeout 5s;\n"
                            " server no-such-host.invalid resolve;\n}\n"));
    ASSERT_NE(later.cycle(), nullptr) << later.error();
    Upstream* l = find_upstream(*later.cycle(), "d");
    EXPECT_TRUE(l->peers.empty());
    EXPECT_EQ(l->resolver->timeout_ms, 5000u);
}

void expect_error(const std::string& text, const std::string& message, int line) {
    UpstreamConf c(text);
    EXPECT_EQ(c.cycle(), nullptr) << text;
    EXPECT_EQ(c.error(), message + " in " + c.path() + ":" + std::to_string(line)) << text;
}

TEST(UpstreamConfig, ErrorsNameFileAndLine) {
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n}\nupstream a {\n server 127.0.0.1:2;\n}\n"),
                 "duplicate upstream \"a\"", 6);
    expect_error(http("upstream a {\n server :80;\n}\n"), "invalid host in upstream \":80\"", 4);
    expect_error(http("upstream a {\n server 127.0.0.1:99999;\n}\n"), "invalid port in upstream \"127.0.0.1:99999\"", 4);
    expect_error(http("upstream a {\n server no-such-host.invalid;\n}\n"),
                 "host not found in upstream \"no-such-host.invalid\"", 4);
    expect_error(http("upstream a {\n server 127.0.0.1:1 slow_start=10s;\n}\n"),
                 "invalid parameter \"slow_start=10s\"", 4);
    expect_error(http("upstream a {\n server 127.0.0.1:1 weight=0;\n}\n"), "invalid parameter \"weight=0\"", 4);
    expect_error(http("upstream a {\n hash $uri;\n server 127.0.0.1:1;\n server 127.0.0.1:2 backup;\n}\n"),
                 "balancing method does not support the \"backup\" parameter", 6);
    expect_error(http("upstream a {\n server 127.0.0.1:2 backup;\n random two;\n server 127.0.0.1:1;\n}\n"),
                 "balancing method does not support the \"backup\" parameter", 4);
    expect_error(http("upstream a {\n}\n"), "no servers are inside upstream \"a\"", 3);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n keepalive 0;\n}\n"),
                 "invalid value \"0\" in \"keepalive\" directive", 5);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n keepalive 2;\n keepalive 3;\n}\n"),
                 "\"keepalive\" directive is duplicate", 6);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n hash $uri inconsistent;\n}\n"),
                 "invalid parameter \"inconsistent\"", 5);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n random three;\n}\n"), "invalid parameter \"three\"", 5);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n hash $nosuchvar;\n}\n"), "unknown \"nosuchvar\" variable",
                 5);
    expect_error(http("upstream a {\n server localhost resolve;\n}\n"),
                 "no resolver defined to resolve \"localhost\" in upstream \"a\"", 4);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n listen 80;\n}\n"), "\"listen\" directive is not allowed here",
                 5);
    expect_error(http("least_conn;\n"), "\"least_conn\" directive is not allowed here", 3);
    expect_error(http("resolver 127.0.0.1 ipv4=off ipv6=off;\n"), "\"ipv4\" and \"ipv6\" cannot both be \"off\"", 3);
    expect_error(http("upstream a {\n server 127.0.0.1:1;\n zone z 0;\n}\n"), "invalid zone size \"0\"", 5);
}

}  // namespace
}  // namespace sluice::http
